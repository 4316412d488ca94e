/**
 * `emotorch usdm infer`: USDM's `src/inference.py` (speech → XLS-R k-means units → the three
 * greedy stages: user transcript, agent text, agent units), on local files. emotorch has no
 * Voicebox / BigVGAN speech decoder, so the agent's units are written instead of a wav.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../index';
import { Command, UsageError, checkOutputFile, contextLength, maxNewTokens, need, num, str, writeTextFile } from './common';

/** The unit vocabulary's ids as the tokenizer has them (USDM's Mistral layout by default). */
async function tokenIds(tok: et.data.Tokenizer): Promise<et.systems.UsdmTokenIds> {
  const d = et.systems.USDM_TOKEN_IDS;
  const id = (t: string, fallback: number) => tok.tokenToId(t) ?? fallback;
  const unit0 = id('<|unit0|>', d.unit0);
  let numUnits = 0;
  while (tok.tokenToId(`<|unit${numUnits}|>`) === unit0 + numUnits) numUnits++;
  const nl = await tok.encode('\n');   // the original: tokenizer("\n").input_ids[-1]
  return {
    newline: nl[nl.length - 1] ?? d.newline, space: id('▁', d.space), continue: id('<|continue|>', d.continue), correspond: id('<|correspond|>', d.correspond),
    unit0, numUnits: numUnits || d.numUnits, pad: id('<pad>', d.pad), bos: tok.bosTokenId ?? d.bos,
  };
}

/** The model inference.py loads. */
const USDM_REPO = 'naver-ai/USDM-DailyTalk';

export const USDM_INFER: Command = {
  summary: "USDM's inference.py: a wav (or its units) → user transcript, agent text and agent units (JSON; no speech decoder)",
  flags: {
    input_path: { kind: 'string', help: 'the user\'s speech (wav, or any format ffmpeg reads), 16 kHz after resampling' },
    units: { kind: 'string', help: 'instead of --input_path: the user\'s units, space-separated' },
    model: { kind: 'string', help: 'the USDM folder (naver-ai/USDM-DailyTalk layout: config.json, safetensors, tokenizer)' },
    tokenizer: { kind: 'string', help: 'a tokenizer file or folder (default: the model folder)' },
    xlsr: { kind: 'string', help: 'the unit extractor\'s encoder: xlsr2_1b_v2.pt (fairseq2) or an HF Wav2Vec2 folder' },
    kmeans: { kind: 'string', help: 'the k-means centroids (kmeans_10k.npy)' },
    layer: { kind: 'number', help: 'the XLS-R hidden state the units are read at (seamless: 35)', default: '35' },
    max_new_tokens: { kind: 'number', help: "tokens per stage at most, at most the model's context (max_position_embeddings); default 512 or the context if smaller" },
    model_cache_dir: { kind: 'string', help: "the original's Hugging Face cache folder: --model (default naver-ai/USDM-DailyTalk, as inference.py) is read from it" },
    output_path: { kind: 'string', help: "write the JSON here too (default: stdout only); a .wav path (the original's spoken answer) gets the JSON beside it as <name>.json, since emotorch has no speech decoder" },
    reference_path: { kind: 'string', help: "the speaker reference of the original's Voicebox decoder: emotorch writes the agent's units, not speech", unused: true },
  },
  async run(v, _pos, out) {
    if ((v.input_path === undefined) === (v.units === undefined)) throw new UsageError('give exactly one of --input_path and --units');
    const cacheDir = str(v, 'model_cache_dir');
    // inference.py: AutoModelForCausalLM.from_pretrained("naver-ai/USDM-DailyTalk", cache_dir=args.model_cache_dir)
    const dir = cacheDir !== undefined
      ? await et.hub.resolvePretrainedPath(str(v, 'model') ?? USDM_REPO, { cacheDir })
      : need(v, 'model');
    let outFile = str(v, 'output_path');
    if (outFile && /\.wav$/i.test(outFile)) {
      const json = outFile.replace(/\.wav$/i, '.json');
      process.stderr.write(`emotorch usdm infer: --output_path ${outFile}: the original writes the spoken answer there (Voicebox + BigVGAN), which emotorch does not synthesize: the agent's text and units go to ${json}\n`);
      outFile = json;
    }
    if (outFile) checkOutputFile(outFile, '--output_path');   // checked before the work
    const maxNew = num(v, 'max_new_tokens');
    if (maxNew !== undefined && (!Number.isInteger(maxNew) || maxNew < 1)) throw new UsageError('--max-new-tokens must be a positive integer');
    const tok = await et.data.Tokenizer.fromFile(str(v, 'tokenizer') ?? dir);
    const ids = await tokenIds(tok);
    let userUnits: number[];
    if (v.units !== undefined) {
      userUnits = str(v, 'units')!.trim().split(/[\s,]+/).map(Number);
      if (!userUnits.length || !userUnits.every((u) => Number.isInteger(u) && u >= 0)) throw new UsageError(`--units takes non-negative integers, not '${str(v, 'units')}'`);
    } else {
      // the original downloads seamless's xlsr2_1b_v2 and kmeans_10k.npy itself; here they are files,
      // given or found in --model_cache_dir under those names
      const found = (name: string) => (cacheDir !== undefined && fs.existsSync(path.join(cacheDir, name)) ? path.join(cacheDir, name) : undefined);
      const file = (k: 'xlsr' | 'kmeans', name: string) => str(v, k) ?? found(name) ?? (() => {
        throw new UsageError(`--${k} is required with --input_path: the unit extractor's ${name} (inference.py downloads it from seamless; put it in --model_cache_dir or pass --${k})`);
      })();
      const xlsr = file('xlsr', 'xlsr2_1b_v2.pt'), kmeans = file('kmeans', 'kmeans_10k.npy');
      const layer = num(v, 'layer')!;
      const encoder = await et.nn.Wav2Vec2Model.fromPretrained(xlsr, xlsr.endsWith('.pt') ? { config: et.nn.WAV2VEC2_XLSR2_1B_V2 } : {});
      const ux = new et.audio.UnitExtractor({ encoder: encoder.eval(), layer, centroids: kmeans });
      const { samples } = await et.audio.readAudio(str(v, 'input_path')!, { sampleRate: 16000 });
      [userUnits] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
    }
    const usdm = await et.systems.Usdm.fromPretrained(dir, { tokenIds: ids });
    const maxNewTokensPerStage = maxNewTokens(maxNew, contextLength(usdm), '--max_new_tokens', 512);
    const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const r = await et.noGrad(() => usdm.infer(userUnits, codec, { maxNewTokens: maxNewTokensPerStage }));
    const json = JSON.stringify({ user_units: userUnits, user_text: r.userText, agent_text: r.agentText, agent_units: r.agentUnits });
    if (outFile) writeTextFile(outFile, `${json}\n`, '--output_path');
    out(json);
  },
};
