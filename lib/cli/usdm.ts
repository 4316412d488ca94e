/**
 * `emotorch usdm infer`: USDM's `src/inference.py` (speech → XLS-R k-means units → the three
 * stages: user transcript, agent text, agent units → the token Voicebox and BigVGAN: the spoken
 * answer), on local files; `usdm preprocess`, `usdm sft`, `usdm extend-vocab`.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../index';
import {
  Command,
  UsageError,
  Values,
  checkOutputFile,
  contextLength,
  maxNewTokens,
  need,
  num,
  outputFolder,
  quantizeFlag,
  readTextFile,
  str,
  writeTextFile,
} from './common';

/** The unit vocabulary's ids as the tokenizer has them (USDM's Mistral layout by default). */
export async function tokenIds(tok: et.data.Tokenizer): Promise<et.systems.usdm.UsdmTokenIds> {
  const d = et.systems.usdm.USDM_TOKEN_IDS;
  const id = (t: string, fallback: number) => tok.tokenToId(t) ?? fallback;
  const unit0 = id('<|unit0|>', d.unit0);
  let numUnits = 0;
  while (tok.tokenToId(`<|unit${numUnits}|>`) === unit0 + numUnits) numUnits++;
  const nl = await tok.encode('\n'); // the original: tokenizer("\n").input_ids[-1]
  return {
    newline: nl[nl.length - 1] ?? d.newline,
    space: id('▁', d.space),
    continue: id('<|continue|>', d.continue),
    correspond: id('<|correspond|>', d.correspond),
    unit0,
    numUnits: numUnits || d.numUnits,
    pad: id('<pad>', d.pad),
    bos: tok.bosTokenId ?? d.bos,
  };
}

/**
 * seamless's unit extractor as the originals use it (xlsr2_1b_v2, layer 35, kmeans_10k.npy): the
 * files given (--xlsr, --kmeans) or found in --model_cache_dir under those names (the originals
 * download them themselves).
 * @throws UsageError naming the missing file
 */
export async function unitExtractor(v: Values, cacheDir: string | undefined, when: string, script: string): Promise<et.audio.UnitExtractor> {
  const found = (name: string) => (cacheDir !== undefined && fs.existsSync(path.join(cacheDir, name)) ? path.join(cacheDir, name) : undefined);
  const file = (k: 'xlsr' | 'kmeans', name: string) =>
    str(v, k) ??
    found(name) ??
    (() => {
      throw new UsageError(
        `--${k} is required ${when}: the unit extractor's ${name} (${script} downloads it from seamless; put it in --model_cache_dir or pass --${k})`,
      );
    })();
  const xlsr = file('xlsr', 'xlsr2_1b_v2.pt'),
    kmeans = file('kmeans', 'kmeans_10k.npy');
  const encoder = await et.nn.Wav2Vec2Model.fromPretrained(xlsr, xlsr.endsWith('.pt') ? { config: et.nn.WAV2VEC2_XLSR2_1B_V2 } : {});
  return new et.audio.UnitExtractor({ encoder: encoder.eval(), layer: num(v, 'layer')!, centroids: kmeans });
}

/**
 * The decoder's settings from --flow_steps and --guidance (each absent: undefined, the speaker's
 * default), checked before any model loads.
 * @throws UsageError naming the flag
 */
export function decoderSettings(v: Values): { steps?: number; guidance?: number } {
  const steps = num(v, 'flow_steps'),
    guidance = num(v, 'guidance');
  if (steps !== undefined && (!Number.isInteger(steps) || steps < 1 || steps > 1999))
    throw new UsageError(`--flow_steps takes an integer from 1 to 1999, not ${steps}`);
  if (guidance !== undefined && !(Number.isFinite(guidance) && guidance >= 0 && guidance <= 100))
    throw new UsageError(`--guidance takes a number from 0 to 100, not ${guidance}`);
  return { ...(steps !== undefined ? { steps } : {}), ...(guidance !== undefined ? { guidance } : {}) };
}

/**
 * A speaker reference as the original's reconstruct_speech reads --reference_path: its units from
 * the file at 16 kHz (librosa.load: soxr HQ), its samples at the file's own rate (for the log-mel).
 */
export async function readReference(file: string, ux: et.audio.UnitExtractor): Promise<et.systems.usdm.UsdmReference> {
  const at16 = await et.audio.readAudio(file, et.systems.usdm.USDM_AUDIO);
  const [units] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(at16.samples).reshape([1, at16.samples.length]) }));
  const own = await et.audio.readAudio(file, { sampleRate: null });
  return { units, samples: own.samples, sampleRate: own.sampleRate };
}

/** The model inference.py loads. */
const USDM_REPO = 'naver-ai/USDM-DailyTalk';

export const USDM_INFER: Command = {
  summary: "USDM's inference.py: a wav (or its units) → user transcript, agent text and agent units (JSON), and the spoken answer (--output_path a.wav)",
  flags: {
    input_path: { kind: 'string', help: "the user's speech (wav, or any format ffmpeg reads), resampled to 16 kHz as librosa.load does (soxr HQ)" },
    units: { kind: 'string', help: "instead of --input_path: the user's units, space-separated" },
    model: { kind: 'string', help: 'the USDM folder (naver-ai/USDM-DailyTalk layout: config.json, safetensors, tokenizer)' },
    tokenizer: { kind: 'string', help: 'a tokenizer file or folder (default: the model folder)' },
    xlsr: { kind: 'string', help: "the unit extractor's encoder: xlsr2_1b_v2.pt (fairseq2) or an HF Wav2Vec2 folder" },
    kmeans: { kind: 'string', help: 'the k-means centroids (kmeans_10k.npy)' },
    layer: { kind: 'number', help: 'the XLS-R hidden state the units are read at (seamless: 35)', default: '35' },
    max_new_tokens: {
      kind: 'number',
      help: "tokens per stage at most, at most the model's context (max_position_embeddings); default 512 or the context if smaller",
    },
    model_cache_dir: {
      kind: 'string',
      help: "the original's Hugging Face cache folder: --model (default naver-ai/USDM-DailyTalk, as inference.py) is read from it",
    },
    output_path: {
      kind: 'string',
      help: 'a .wav path: the spoken answer (22.05 kHz float32, clamped to [-1, 1], as the original), through --voicebox and --vocoder (or their hub folders in --model_cache_dir); any other path: the JSON, written there too',
    },
    reference_path: {
      kind: 'string',
      help: "the speaker's voice (a wav any rate, mono): its units (needs --xlsr and --kmeans) and its log-mel in front of the answer, as the original",
    },
    voicebox: { kind: 'string', help: 'the unit-to-mel decoder folder (naver-ai/xlsr-token-Voicebox: config.json, model.safetensors)' },
    vocoder: { kind: 'string', help: 'the vocoder folder (nvidia/bigvgan_22khz_80band: config.json, bigvgan_generator.pt)' },
    flow_steps: { kind: 'number', help: "the decoder's n_timesteps (inference.py 50; the Streamlit demo's slider 15): (n + 1) / 2 Heun steps", default: '50' },
    guidance: { kind: 'number', help: "the decoder's classifier-free guidance (the original's gradient_scale)", default: '1' },
    seed: { kind: 'number', help: "the decoder's noise seed, and the LLM's sampling seed with --temperature (default: not seeded)" },
    temperature: {
      kind: 'number',
      help: "the Streamlit demo's sampling (vLLM's meanings): 0 or absent greedy, as inference.py; above 0 each stage samples at it",
    },
    top_p: { kind: 'number', help: "the demo's top_p with --temperature: nucleus sampling's mass in (0, 1]" },
    top_k: { kind: 'number', help: "the demo's top_k with --temperature: the k likeliest ids (0 or -1: all; 1: greedy)" },
    quantize: {
      kind: 'string',
      help: "emotorch's own (the original has none): int8, nf4, q8_0 or q4_0: the decoder's Linear layers quantized as they load (bytes a weight: int8 1, q8_0 1.06, q4_0 0.56, nf4 0.52; float32 4), the LM head in float",
    },
  },
  async run(v, _pos, out) {
    if ((v.input_path === undefined) === (v.units === undefined)) throw new UsageError('give exactly one of --input_path and --units');
    const cacheDir = str(v, 'model_cache_dir');
    // inference.py: AutoModelForCausalLM.from_pretrained("naver-ai/USDM-DailyTalk", cache_dir=args.model_cache_dir)
    const dir = cacheDir !== undefined ? await et.hub.resolvePretrainedPath(str(v, 'model') ?? USDM_REPO, { cacheDir }) : need(v, 'model');
    const outFile = str(v, 'output_path');
    const wavOut = outFile !== undefined && /\.wav$/i.test(outFile);
    if (outFile) checkOutputFile(outFile, '--output_path'); // checked before the work
    // the decoder (inference.py's initialize_decoder: the two hub folders in --model_cache_dir)
    let speakerDirs: [string, string] | null = null;
    if (wavOut || v.reference_path !== undefined) {
      const vb = str(v, 'voicebox') ?? (cacheDir !== undefined ? await et.hub.resolvePretrainedPath('naver-ai/xlsr-token-Voicebox', { cacheDir }) : undefined);
      const voc = str(v, 'vocoder') ?? (cacheDir !== undefined ? await et.hub.resolvePretrainedPath('nvidia/bigvgan_22khz_80band', { cacheDir }) : undefined);
      if (!vb || !voc)
        throw new UsageError(
          'the spoken answer (--output_path *.wav, --reference_path) needs the Voicebox and BigVGAN folders: --voicebox and --vocoder (or --model_cache_dir holding them)',
        );
      if (!wavOut) throw new UsageError('--reference_path is the voice of the spoken answer: give --output_path a .wav path');
      speakerDirs = [vb, voc];
    }
    const decoder = decoderSettings(v);
    const seed = num(v, 'seed');
    if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) throw new UsageError(`--seed takes a non-negative integer, not ${seed}`);
    const temperature = num(v, 'temperature'),
      topP = num(v, 'top_p'),
      topK = num(v, 'top_k');
    if (temperature !== undefined && !(Number.isFinite(temperature) && temperature >= 0))
      throw new UsageError(`--temperature takes a number ≥ 0, not ${temperature}`);
    if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new UsageError(`--top_p takes a number in (0, 1], not ${topP}`);
    if (topK !== undefined && !(Number.isInteger(topK) && topK >= -1)) throw new UsageError(`--top_k takes an integer ≥ -1, not ${topK}`);
    if ((topP !== undefined || topK !== undefined) && !temperature)
      process.stderr.write('emotorch usdm infer: --top_p / --top_k sample only with --temperature above 0 (greedy otherwise, as vLLM)\n');
    const sampling = {
      ...(temperature !== undefined ? { temperature } : {}),
      ...(topP !== undefined ? { topP } : {}),
      ...(topK !== undefined ? { topK } : {}),
      ...(temperature && seed !== undefined ? { seed } : {}),
    };
    const maxNew = num(v, 'max_new_tokens');
    if (maxNew !== undefined && (!Number.isInteger(maxNew) || maxNew < 1)) throw new UsageError('--max-new-tokens must be a positive integer');
    const tok = await et.data.Tokenizer.fromFile(str(v, 'tokenizer') ?? dir);
    const ids = await tokenIds(tok);
    let userUnits: number[];
    if (v.units !== undefined) {
      userUnits = str(v, 'units')!
        .trim()
        .split(/[\s,]+/)
        .map(Number);
      if (!userUnits.length || !userUnits.every((u) => Number.isInteger(u) && u >= 0))
        throw new UsageError(`--units takes non-negative integers, not '${str(v, 'units')}'`);
    } else {
      const ux = await unitExtractor(v, cacheDir, 'with --input_path', 'inference.py');
      const { samples } = await et.audio.readAudio(str(v, 'input_path')!, et.systems.usdm.USDM_AUDIO);
      [userUnits] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
    }
    const quantize = quantizeFlag(v);
    const usdm = await et.systems.usdm.Usdm.fromPretrained(dir, { tokenIds: ids, ...(quantize ? { quantize } : {}) });
    const maxNewTokensPerStage = maxNewTokens(maxNew, contextLength(usdm), '--max_new_tokens', 512);
    const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const r = await et.noGrad(() => usdm.infer(userUnits, codec, { maxNewTokens: maxNewTokensPerStage, ...sampling }));
    const json = JSON.stringify({ user_units: userUnits, user_text: r.userText, agent_text: r.agentText, agent_units: r.agentUnits });
    if (speakerDirs) {
      const speaker = await et.systems.usdm.UsdmSpeaker.fromPretrained(...speakerDirs);
      const refPath = str(v, 'reference_path');
      const reference =
        refPath === undefined ? undefined : await readReference(refPath, await unitExtractor(v, cacheDir, 'with --reference_path', 'inference.py'));
      if (!r.agentUnits.length) throw new UsageError('the model answered with no units: there is no speech to write');
      const spoken = await et.noGrad(() =>
        speaker.speak(r.agentUnits, { ...decoder, ...(reference ? { reference } : {}), ...(seed !== undefined ? { seed } : {}) }),
      );
      writeTextFile(outFile!, et.audio.encodeWav(spoken.samples, spoken.sampleRate, { format: 'float32' }), '--output_path');
      process.stderr.write(
        `emotorch usdm infer: the spoken answer (${(spoken.samples.length / spoken.sampleRate).toFixed(2)} s at ${spoken.sampleRate} Hz) → ${outFile}\n`,
      );
    } else if (outFile) writeTextFile(outFile, `${json}\n`, '--output_path');
    out(json);
  },
};

/** A shuffle seeded once (mulberry32 draws, Fisher–Yates): the same seed, the same orders. Returns shuffled copies. */
function seededShuffle(seed: number): <T>(xs: readonly T[]) => T[] {
  let st = seed >>> 0;
  const rand = () => {
    st = (st + 0x6d2b79f5) >>> 0;
    let r = Math.imul(st ^ (st >>> 15), st | 1);
    r ^= r + Math.imul(r ^ (r >>> 7), r | 61);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
  return <T>(xs: readonly T[]) => {
    const a = [...xs];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  };
}

/** The longest example dailytalk_single_turn.py keeps, in tokens (its MAX_LENGTH). */
const DAILYTALK_MAX_LENGTH = 8192;

/** One turn of DailyTalk's metadata: `<turn>_<speaker>_d<dialogue>|…|text|…`. */
interface DailyTalkTurn {
  id: string;
  turn: number;
  speaker: string;
  text: string;
}

/**
 * The original's get_dict: the turns of each dialogue in turn order; a dialogue whose numbering
 * has a gap is ERR_FORMAT (the original asserts), one where a speaker talks twice in a row is
 * dropped (as the original drops it) and counted.
 */
function dailyTalkDialogues(file: string, what: string): { dialogues: Map<string, DailyTalkTurn[]>; dropped: number } {
  const text = readTextFile(file, what, 1 << 30);
  const dialogues = new Map<string, DailyTalkTurn[]>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    const f = line.split('|');
    const id = f[0];
    const m = /^(\d+)_([^_]+)_(.+)$/.exec(id);
    if (f.length < 3 || !m)
      throw new et.EmotorchError(
        `${what} '${file}' line ${i + 1}: not DailyTalk's '<turn>_<speaker>_d<dialogue>|…|text|…' (${JSON.stringify(line.slice(0, 80))})`,
        'ERR_FORMAT',
      );
    const dialogue = id.split('_').pop()!;
    const turns = dialogues.get(dialogue) ?? [];
    turns.push({ id, turn: Number(m[1]), speaker: m[2], text: f[f.length - 2] });
    dialogues.set(dialogue, turns);
  });
  let dropped = 0;
  for (const [d, turns] of dialogues) {
    turns.sort((a, b) => a.turn - b.turn);
    if (turns[turns.length - 1].turn !== turns.length - 1) {
      throw new et.EmotorchError(
        `${what} '${file}': dialogue ${d} has turns ${turns.map((t) => t.turn).join(', ')}, not 0 to ${turns.length - 1} (the metadata does not match the split)`,
        'ERR_FORMAT',
      );
    }
    if (turns.some((t, k) => k > 0 && t.speaker === turns[k - 1].speaker)) {
      dialogues.delete(d);
      dropped++;
    }
  }
  return { dialogues, dropped };
}

export const USDM_PREPROCESS: Command = {
  summary:
    "USDM's preprocess/fine-tuning/dailytalk_single_turn.py: DailyTalk → train.txt / test.txt of `ids|labels` lines (every pair of consecutive turns, units from speech)",
  flags: {
    pretrained_model_name_or_path: {
      kind: 'string',
      help: 'the tokenizer: a folder, or a repo id read through the Hugging Face cache',
      default: 'naver-ai/USTM',
    },
    model_cache_dir: { kind: 'string', help: 'the Hugging Face cache folder for a repo id (and where xlsr2_1b_v2.pt / kmeans_10k.npy may lie)' },
    train_metadata_path: {
      kind: 'string',
      help: "the training split's metadata (DailyTalk's train_phone.txt renamed)",
      default: '../../dataset/fine-tuning/dailytalk/raw/train.txt',
    },
    test_metadata_path: {
      kind: 'string',
      help: "the test split's metadata (val_phone.txt renamed)",
      default: '../../dataset/fine-tuning/dailytalk/raw/test.txt',
    },
    output_path: {
      kind: 'string',
      help: 'where train.txt and test.txt go (units are cached under units/<extractor>/ there: a run resumes)',
      default: '../../dataset/fine-tuning/dailytalk/preprocessed',
    },
    data_dir: { kind: 'string', help: "DailyTalk's data/ folder: <data_dir>/<dialogue>/<turn>_<speaker>_d<dialogue>.wav" },
    xlsr: { kind: 'string', help: "the unit extractor's encoder: xlsr2_1b_v2.pt (fairseq2) or an HF Wav2Vec2 folder" },
    kmeans: { kind: 'string', help: 'the k-means centroids (kmeans_10k.npy)' },
    layer: { kind: 'number', help: 'the XLS-R hidden state the units are read at (seamless: 35)', default: '35' },
    batch_size: { kind: 'number', help: 'clips per unit-extraction batch', default: '8' },
    seed: { kind: 'number', help: "the lines' shuffle (the original shuffles without a seed)", default: '42' },
  },
  async run(v, _pos, out) {
    const dataDir = need(v, 'data_dir');
    const outDir = outputFolder(str(v, 'output_path')!, '--output_path');
    const batch = num(v, 'batch_size')!;
    if (!Number.isInteger(batch) || batch < 1) throw new UsageError('--batch_size must be a positive integer');
    const seed = num(v, 'seed')!;
    if (!Number.isInteger(seed) || seed < 0) throw new UsageError('--seed must be a non-negative integer');
    const train = dailyTalkDialogues(str(v, 'train_metadata_path')!, '--train_metadata_path');
    const test = dailyTalkDialogues(str(v, 'test_metadata_path')!, '--test_metadata_path');
    const cacheDir = str(v, 'model_cache_dir');
    const tokDir = await et.hub.resolvePretrainedPath(str(v, 'pretrained_model_name_or_path')!, cacheDir ? { cacheDir } : {});
    const tok = await et.data.Tokenizer.fromFile(tokDir);
    const ids = await tokenIds(tok);
    // every clip's units (cached per clip: an interrupted run resumes), in batches
    const turns = [...train.dialogues.values(), ...test.dialogues.values()].flat();
    const wavOf = (t: DailyTalkTurn) => path.join(dataDir, t.id.split('_').pop()!.slice(1), `${t.id}.wav`);
    for (const t of turns) {
      const why = et.io.notAFile(wavOf(t));
      if (why)
        throw new et.EmotorchError(
          `the audio of ${t.id} '${wavOf(t)}' ${why} (DailyTalk keeps <data_dir>/<dialogue>/<turn>_<speaker>_d<dialogue>.wav)`,
          'ERR_IO',
        );
    }
    // cached per extractor (its files and layer) and per way of reading the audio (the resampler, seamless's
    // padding): a run with another one does not take stale units
    const extractorKey = createHash('sha1')
      .update(
        JSON.stringify([
          str(v, 'xlsr') ?? null,
          str(v, 'kmeans') ?? null,
          cacheDir ?? null,
          num(v, 'layer'),
          et.systems.usdm.USDM_AUDIO.resample.method,
          'seamlessPad',
        ]),
      )
      .digest('hex')
      .slice(0, 12);
    const unitDir = path.join(outDir, 'units', extractorKey);
    fs.mkdirSync(unitDir, { recursive: true });
    const cached = (t: DailyTalkTurn) => path.join(unitDir, `${t.id}.txt`);
    const todo = turns.filter((t) => !fs.existsSync(cached(t)));
    process.stderr.write(
      `emotorch usdm preprocess: ${train.dialogues.size} training and ${test.dialogues.size} test dialogues (${train.dropped + test.dropped} dropped: a speaker twice in a row), ${turns.length} clips, ${turns.length - todo.length} with units already\n`,
    );
    if (todo.length) {
      const ux = await unitExtractor(v, cacheDir, "for the units of DailyTalk's speech", 'dailytalk_single_turn.py');
      const t0 = Date.now();
      for (let s = 0; s < todo.length; s += batch) {
        const part = todo.slice(s, s + batch);
        const waves = await Promise.all(part.map(async (t) => (await et.audio.readAudio(wavOf(t), et.systems.usdm.USDM_AUDIO)).samples));
        const T = Math.max(...waves.map((w) => w.length));
        const wave = new Float32Array(part.length * T),
          mask = new Float32Array(part.length * T);
        waves.forEach((w, b) => {
          wave.set(w, b * T);
          mask.fill(1, b * T, b * T + w.length);
        });
        const units = await et.noGrad(() =>
          ux.predict({ inputValues: et.tensor(wave, { shape: [part.length, T] }), attentionMask: et.tensor(mask, { shape: [part.length, T] }), dedup: false }),
        );
        part.forEach((t, b) => fs.writeFileSync(cached(t), units[b].join(' ')));
        const done = Math.min(s + batch, todo.length);
        process.stderr.write(`emotorch usdm preprocess: units of ${done}/${todo.length} clips (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
      }
    }
    const unitsOf = (t: DailyTalkTurn) => fs.readFileSync(cached(t), 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    const newline = ids.newline,
      bos = ids.bos;
    let tooLong = 0;
    // each dialogue's consecutive pairs from turn 0 and from turn 1 (the original's even and odd metadata)
    const lines = async (dialogues: Map<string, DailyTalkTurn[]>) => {
      const outLines: string[] = [];
      for (const turnsOf of dialogues.values()) {
        for (const start of [0, 1]) {
          for (let k = start; k + 1 < turnsOf.length; k += 2) {
            const user = turnsOf[k],
              agent = turnsOf[k + 1];
            const text = et.data.usdm.usdmText(
              { userUnits: unitsOf(user), userText: user.text.toLowerCase(), agentText: agent.text.toLowerCase(), agentUnits: unitsOf(agent) },
              { numUnits: ids.numUnits },
            );
            const exIds = [bos, ...(await tok.encode(text, { addSpecialTokens: false }))];
            if (exIds.length > DAILYTALK_MAX_LENGTH) {
              tooLong++;
              continue;
            }
            outLines.push(et.data.usdm.formatUsdmLine({ ids: exIds, labels: et.systems.usdm.usdmSftLabels(exIds, { newline, correspond: ids.correspond }) }));
          }
        }
      }
      return outLines;
    };
    // a seeded shuffle where the original shuffles unseeded
    const shuffle = seededShuffle(seed);
    const trainLines = shuffle(await lines(train.dialogues)),
      testLines = shuffle(await lines(test.dialogues));
    writeTextFile(path.join(outDir, 'train.txt'), trainLines.join('\n'), '--output_path');
    writeTextFile(path.join(outDir, 'test.txt'), testLines.join('\n'), '--output_path');
    out(
      `train.txt: ${trainLines.length} examples, test.txt: ${testLines.length}${tooLong ? ` (${tooLong} longer than ${DAILYTALK_MAX_LENGTH} tokens left out)` : ''} in ${outDir}`,
    );
  },
};

/** Refuses a data flag whose files are not there (before the model loads). */
function checkDataFiles(files: string[], flag: string): void {
  for (const f of files) {
    const why = et.io.notAFile(f);
    if (why) throw new et.EmotorchError(`${flag} '${f}' ${why}`, 'ERR_IO');
  }
}

/** The files of a data flag, each of `ids|labels` lines, read into examples (every id below the model's `vocabSize`, else ERR_DATA naming the file and line). */
async function usdmLines(files: string[], flag: string, vocabSize: number): Promise<Array<{ ids: number[]; labels: number[] }>> {
  checkDataFiles(files, flag);
  const out: Array<{ ids: number[]; labels: number[] }> = [];
  for (const f of files) out.push(...(await et.data.usdm.readUsdmLines(f, { vocabSize })));
  if (!out.length) throw new et.EmotorchError(`${flag}: ${files.join(', ')} hold no examples`, 'ERR_FORMAT');
  return out;
}

export const USDM_SFT: Command = {
  summary: "USDM's src/train_sft.py: supervised fine-tuning on preprocess's ids|labels lines (full or LoRA), the original's recipe on the Trainer",
  flags: {
    output_dir: { kind: 'string', help: 'checkpoints (checkpoint-N), logs and the final model' },
    model_name_or_path: { kind: 'string', help: 'the model: a folder, or a repo id read through the hub cache', default: 'naver-ai/USTM' },
    model_cache_dir: { kind: 'string', help: 'the Hugging Face cache folder for a repo id' },
    data_path_train: { kind: 'list', help: 'training files of ids|labels lines' },
    data_path_test: { kind: 'list', help: 'evaluation files of ids|labels lines' },
    data_path_cache: { kind: 'string', help: "the datasets library's cache: the line files are read directly", unused: true },
    train_batch_size: { kind: 'number', help: 'per device', default: '2' },
    eval_batch_size: { kind: 'number', help: 'per device', default: '2' },
    gradient_accumulation_steps: { kind: 'number', help: 'micro-batches per step', default: '4' },
    learning_rate: { kind: 'number', help: 'AdamW (betas 0.9 / 0.95, weight decay 0.01, as train_sft.py)', default: '2e-5' },
    lr_scheduler_type: { kind: 'string', help: 'linear, cosine, constant, …', default: 'cosine' },
    warmup_ratio: { kind: 'number', help: 'share of the steps warming up', default: '0.03' },
    dropout: { kind: 'number', help: 'defined by train_sft.py, which never reads it', unused: true },
    logging_steps: { kind: 'number', help: 'log every N steps', default: '50' },
    max_input_length: {
      kind: 'number',
      help: "train_sft.py sets the tokenizer's model_max_length, which the pre-tokenized lines never pass through",
      unused: true,
    },
    num_train_epochs: { kind: 'number', help: 'epochs', default: '1' },
    num_unit_tokens: { kind: 'number', help: 'defined by train_sft.py, which never reads it (the unit vocabulary comes from the tokenizer)', unused: true },
    lora: { kind: 'bool', help: 'LoRA instead of every parameter (peft defaults: q_proj, v_proj)' },
    lora_r: { kind: 'number', help: 'LoRA rank', default: '8' },
    lora_alpha: { kind: 'number', help: 'LoRA alpha', default: '16' },
    lora_dropout: { kind: 'number', help: 'LoRA dropout', default: '0.1' },
    deepspeed_config: {
      kind: 'string',
      help: "a DeepSpeed config (USDM's configs/ds_config_zero3_bf16.json): ZeRO stage 1-3 and CPU offload across the ranks of npx emotorch-run, its optimizer and bf16 (see docs/distributed.md)",
    },
    seed: { kind: 'number', help: 'random seed (also the data shuffle)', default: '42' },
    resume: { kind: 'bool', help: 'continue from the newest checkpoint-N in --output_dir (none: from the start, saying so)' },
    evaluation_strategy: { kind: 'string', help: 'no, steps or epoch', default: 'steps' },
    eval_steps: { kind: 'number', help: 'evaluate every N steps', default: '1000' },
    save_strategy: { kind: 'string', help: 'no, steps or epoch', default: 'steps' },
    save_steps: { kind: 'number', help: 'save every N steps', default: '1000' },
    save_total_limit: { kind: 'number', help: 'checkpoints kept', default: '2' },
    load_best_model_at_end: { kind: 'bool', help: "the best evaluation loss's checkpoint at the end" },
    max_steps: { kind: 'number', help: 'stop after N optimizer steps (emotorch; -1: the epochs decide)', default: '-1' },
    quantize: {
      kind: 'string',
      help: "emotorch's own (the original has none): int8, nf4, q8_0 or q4_0: the decoder's Linear layers quantized as they load (bytes a weight: int8 1, q8_0 1.06, q4_0 0.56, nf4 0.52; float32 4), the LM head in float; with --lora only: QLoRA, the adapters in float32 over the quantized weights",
    },
  },
  async run(v, _pos, out) {
    const outDir = outputFolder(need(v, 'output_dir'), '--output_dir', false);
    // under npx emotorch-run (accelerate launch's place): data-parallel over its ranks, rank 0 writing
    const ddp = Number(process.env.WORLD_SIZE ?? '1') > 1;
    if (ddp) await et.distributed.init();
    try {
      await usdmSft(v, outDir, ddp && et.distributed.rank() !== 0 ? () => {} : out);
    } finally {
      if (ddp) await et.distributed.destroy();
    }
  },
};

/** `usdm sft`'s work on one rank (`out` silent on all but the first). */
async function usdmSft(v: Values, outDir: string, out: (line: string) => void): Promise<void> {
  const cacheDir = str(v, 'model_cache_dir');
  const dir = await et.hub.resolvePretrainedPath(str(v, 'model_name_or_path')!, cacheDir ? { cacheDir } : {});
  const trainFiles = need(v, 'data_path_train') as unknown as string[],
    testFiles = need(v, 'data_path_test') as unknown as string[];
  checkDataFiles(trainFiles, '--data_path_train');
  checkDataFiles(testFiles, '--data_path_test');
  const int = (k: string, min: number) => {
    const x = num(v, k)!;
    if (!Number.isInteger(x) || x < min) throw new UsageError(`--${k} must be an integer ≥ ${min}`);
    return x;
  };
  const seed = int('seed', 0);
  const tok = await et.data.Tokenizer.fromFile(dir);
  const ids = await tokenIds(tok);
  et.manualSeed(seed); // train_sft.py's set_seed, before the model (LoRA's A matrices are drawn)
  const lora =
    v.lora === true ? { r: int('lora_r', 1), alpha: num(v, 'lora_alpha')!, dropout: num(v, 'lora_dropout')!, targetModules: ['q_proj', 'v_proj'] } : false;
  const quantize = quantizeFlag(v);
  if (quantize && !lora) throw new UsageError(`--quantize ${quantize} needs --lora: quantized weights do not train (QLoRA trains adapters over them)`);
  const usdm = await et.systems.usdm.Usdm.fromPretrained(dir, { tokenIds: ids, lora, ...(quantize ? { quantize } : {}) });
  // read once the model is there: an id past its vocabulary is named by file and line
  const train = await usdmLines(trainFiles, '--data_path_train', usdm.llm.config.vocab_size);
  const test = await usdmLines(testFiles, '--data_path_test', usdm.llm.config.vocab_size);
  // datasets' shuffle(seed): the order here comes from a seeded shuffle of our own
  const shuffle = seededShuffle(seed);
  const trainSet = shuffle(train),
    testSet = shuffle(test);
  const strategy = (k: string) => {
    const s = str(v, k)!;
    if (!['no', 'steps', 'epoch'].includes(s)) throw new UsageError(`--${k} takes no, steps or epoch, not '${s}'`);
    return s as 'no' | 'steps' | 'epoch';
  };
  let resume: string | null = null;
  if (v.resume === true) {
    const steps = fs.existsSync(outDir) ? fs.readdirSync(outDir).flatMap((d) => (/^checkpoint-\d+$/.test(d) ? [Number(d.slice(11))] : [])) : [];
    if (steps.length) resume = path.join(outDir, `checkpoint-${Math.max(...steps)}`);
    else process.stderr.write(`emotorch usdm sft: --resume: there are no checkpoints in ${outDir}: training from the start\n`);
  }
  const trainer = new et.train.Trainer({
    model: usdm,
    trainDataset: { length: trainSet.length, get: (i) => trainSet[i] },
    evalDataset: { length: testSet.length, get: (i) => testSet[i] },
    dataCollator: (items) => usdm.collate(items as Array<{ ids: number[]; labels: number[] }>),
    args: {
      output_dir: outputFolder(outDir, '--output_dir'),
      learning_rate: num(v, 'learning_rate'),
      per_device_train_batch_size: int('train_batch_size', 1),
      per_device_eval_batch_size: int('eval_batch_size', 1),
      gradient_accumulation_steps: int('gradient_accumulation_steps', 1),
      lr_scheduler_type: str(v, 'lr_scheduler_type') as never,
      warmup_ratio: num(v, 'warmup_ratio'),
      num_train_epochs: num(v, 'num_train_epochs'),
      max_steps: int('max_steps', -1),
      logging_steps: int('logging_steps', 1),
      seed,
      eval_strategy: strategy('evaluation_strategy'),
      eval_steps: int('eval_steps', 1),
      save_strategy: strategy('save_strategy'),
      save_steps: int('save_steps', 1),
      save_total_limit: int('save_total_limit', 1),
      load_best_model_at_end: v.load_best_model_at_end === true,
      ...(v.load_best_model_at_end === true ? { metric_for_best_model: 'loss' } : {}),
      // train_sft.py's fixed settings: gradient checkpointing, bfloat16, AdamW betas 0.9 / 0.95, weight decay 0.01
      gradient_checkpointing: true,
      bf16: true,
      adam_beta1: 0.9,
      adam_beta2: 0.95,
      weight_decay: 0.01,
      report_to: [],
      resume_from_checkpoint: resume,
      deepspeed: str(v, 'deepspeed_config') ?? null,
    },
  });
  trainer.on('log', (r) => out(JSON.stringify(r)));
  const result = await trainer.train();
  // the fine-tuned model as a folder `usdm infer --model` loads (LoRA: a peft adapter on the base), by the first rank
  if (et.distributed.isInitialized() && et.distributed.rank() !== 0) return;
  if (lora) await et.nn.saveLoraAdapter(usdm.llm, outDir, { baseModel: path.resolve(dir) });
  else {
    await usdm.llm.save(path.join(outDir, 'model.safetensors'));
    for (const f of fs.readdirSync(dir)) {
      if (/^(config|generation_config|tokenizer|tokenizer_config|special_tokens_map)\.json$|^tokenizer\.model$/.test(f))
        fs.copyFileSync(path.join(dir, f), path.join(outDir, f));
    }
  }
  out(
    `${trainSet.length} training and ${testSet.length} evaluation examples, ${result.globalStep} steps, train_loss ${result.trainingLoss.toFixed(6)}${et.distributed.isInitialized() ? ` (${et.distributed.worldSize()} ranks)` : ''}; ${lora ? 'adapter' : 'model'} in ${outDir}`,
  );
}

/**
 * The most unit tokens `usdm extend-vocab` adds: 2^18. With a base's own vocabulary that passes
 * the largest released LLM vocabularies (Gemma's 256 000); speech units are hundreds to tens of
 * thousands (USDM's 10 000). More would only exhaust the heap building the token list.
 */
const MAX_UNIT_TOKENS = 262_144;

/**
 * Refuses a vocabulary growth whose resize needs more memory than the machine has available
 * (resizeTokenEmbeddings builds the grown model beside the loaded one, with the grown tables and
 * the new rows drawn in float32), before any of it is allocated.
 * @throws EmotorchError ERR_OUT_OF_MEMORY naming --num_unit_tokens
 */
function checkResizeMemory(llm: et.nn.LlamaForCausalLM, added: number): void {
  const { vocab_size: v0, hidden_size: h, tie_word_embeddings: tied } = llm.config;
  const tables = tied ? 1 : 2;
  const params = llm.parameters();
  const bytes = ({ float64: 8, float32: 4, bfloat16: 2, float16: 2 } as Record<string, number>)[params[0].dtype] ?? 4;
  const total = params.reduce((a, p) => a + p.numel, 0);
  const need = bytes * (total + added * h * tables) + bytes * (v0 + added) * h * tables + 4 * 2 * added * h * tables;
  const have = et.cpu.availableMemory();
  if (need > 0.9 * have) {
    const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;
    throw new et.EmotorchError(
      `--num_unit_tokens ${added - 3}: resizing the embeddings to ${v0 + added} rows of ${h} needs ${gib(need)} and the machine has ${gib(have)} available`,
      'ERR_OUT_OF_MEMORY',
    );
  }
}

export const USDM_EXTEND_VOCAB: Command = {
  summary:
    "USDM's src/train_pt.py vocabulary step: a Mistral-family model and tokenizer extended with <|continue|>, <|correspond|>, the <|unitN|> tokens and <pad>, the new rows drawn as the original",
  flags: {
    model_name_or_path: { kind: 'string', help: 'the base model folder (or a repo id read through the hub cache)', default: 'mistralai/Mistral-7B-v0.1' },
    model_cache_dir: { kind: 'string', help: 'the Hugging Face cache folder for a repo id' },
    num_unit_tokens: { kind: 'number', help: `speech unit tokens (<|unit0|> …), 1 to ${MAX_UNIT_TOKENS}`, default: '10000' },
    output_dir: { kind: 'string', help: 'the extended model folder (config.json, model.safetensors, tokenizer files)' },
    seed: { kind: 'number', help: 'random seed (the new rows are drawn)', default: '42' },
  },
  async run(v, _pos, out) {
    const outDir = outputFolder(need(v, 'output_dir'), '--output_dir', false);
    const n = num(v, 'num_unit_tokens')!;
    if (!Number.isInteger(n) || n < 1 || n > MAX_UNIT_TOKENS) {
      throw new et.EmotorchError(`Expected an integer from 1 to ${MAX_UNIT_TOKENS} for --num_unit_tokens but received ${v.num_unit_tokens}`, 'ERR_INVALID_ARG');
    }
    const cacheDir = str(v, 'model_cache_dir');
    const dir = await et.hub.resolvePretrainedPath(str(v, 'model_name_or_path')!, cacheDir ? { cacheDir } : {});
    const tok = await et.data.Tokenizer.fromFile(dir);
    et.manualSeed(num(v, 'seed')!);
    const llm = await et.nn.LlamaForCausalLM.fromPretrained(dir);
    const v0 = llm.config.vocab_size;
    // train_pt.py resizes to len(tokenizer): with the two of one size (Mistral's 32 000), the new tokens are the new rows
    if (tok.getVocabSize() !== v0)
      throw new et.EmotorchError(
        `the tokenizer of '${dir}' has ${tok.getVocabSize()} tokens and the model ${v0} rows: the new tokens would not be the new rows (train_pt.py resizes the model to the tokenizer)`,
        'ERR_FORMAT',
      );
    checkResizeMemory(llm, n + 3);
    // train_pt.py: add_special_tokens for <|continue|>, <|correspond|> and each unit, then <pad> when there is no pad token
    tok.addSpecialTokens(['<|continue|>', '<|correspond|>', ...Array.from({ length: n }, (_, i) => `<|unit${i}|>`)]);
    const addPad = tok.padTokenId === undefined;
    if (addPad) tok.addSpecialTokens(['<pad>']);
    const V = tok.getVocabSize(),
      added = V - v0;
    // resize_token_embeddings(len(tokenizer)), the new rows of the embeddings and then of the head drawn from N(0, initializer_range)
    const std = llm.config.initializer_range,
      h = llm.config.hidden_size;
    const embed = et.randn([added, h]).mul(std);
    const lmHead = llm.config.tie_word_embeddings ? undefined : et.randn([added, h]).mul(std);
    const bigger = added > 0 ? await llm.resizeTokenEmbeddings(V, { rows: { embed, lmHead } }) : llm;
    fs.mkdirSync(outDir, { recursive: true });
    await bigger.save(path.join(outDir, 'model.safetensors'));
    const cfg = JSON.parse(readTextFile(path.join(dir, 'config.json'), 'the model config'));
    const padId = tok.padTokenId ?? tok.tokenToId('<pad>');
    writeTextFile(
      path.join(outDir, 'config.json'),
      JSON.stringify({ ...cfg, vocab_size: V, pad_token_id: padId, end_token_id: tok.eosTokenId ?? cfg.eos_token_id }, null, 2),
      '--output_dir',
    );
    writeTextFile(path.join(outDir, 'tokenizer.json'), JSON.stringify(tok.toJSON()), '--output_dir');
    const tcFile = path.join(dir, 'tokenizer_config.json');
    const tc = fs.existsSync(tcFile) ? JSON.parse(readTextFile(tcFile, 'the tokenizer config')) : {};
    writeTextFile(path.join(outDir, 'tokenizer_config.json'), JSON.stringify({ ...tc, ...(addPad ? { pad_token: '<pad>' } : {}) }, null, 2), '--output_dir');
    out(`${added} tokens added (${n} units${addPad ? ', <pad>' : ''}): vocabulary ${v0} -> ${V}; written to ${outDir}`);
  },
};
