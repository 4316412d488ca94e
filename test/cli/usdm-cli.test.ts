// `npx emotorch usdm infer` (dist/cli/main.js, spawned) on the tiny USDM fixture (a random Mistral
// with USDM's id layout) and a tokenizer.json laid out the same way: from units and from a wav
// (units read by et.audio.UnitExtractor over the tiny XLS-R fixture), the JSON equal to
// Usdm.infer's through the public API; usage errors for what the original needs and emotorch lacks.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, USDM_DS_CONFIG, maxAbsDiff, tmpdir, usdmToyTokenizer } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const run = (args: string[], cwd?: string) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000, cwd });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('emotorch usdm infer', () => {
  it('answers units and a wav as Usdm.infer does, and writes the JSON', async () => {
    const dir = tmpdir();
    const tokFile = path.join(dir, 'tokenizer.json');
    usdmToyTokenizer(tokFile);
    const model = path.join(FIXTURES, 'usdm', 'mistral');
    const tok = await et.data.Tokenizer.fromFile(tokFile);
    const ids = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };
    const usdm = await et.systems.usdm.Usdm.fromPretrained(model, { tokenIds: ids });
    const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const want = async (units: number[]) => {
      const r = await et.noGrad(() => usdm.infer(units, codec, { maxNewTokens: 12 }));
      return { user_units: units, user_text: r.userText, agent_text: r.agentText, agent_units: r.agentUnits };
    };

    const outFile = path.join(dir, 'out', 'answer.json');
    const a = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17 50 2 9', '--max_new_tokens', '12', '--output_path', outFile]);
    expect(a.code, a.err).toBe(0);
    expect(JSON.parse(a.out)).toEqual(await want([3, 3, 17, 50, 2, 9]));
    expect(JSON.parse(fs.readFileSync(outFile, 'utf8'))).toEqual(JSON.parse(a.out));
    // the Streamlit demo's sampling flags: sampled as Usdm.infer with them; temperature 0 is greedy
    const base = ['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17 50 2 9', '--max_new_tokens', '12'];
    const s = run([...base, '--temperature', '1.5', '--top_p', '0.9', '--top_k', '20', '--seed', '4']);
    expect(s.code, s.err).toBe(0);
    const sampled = await et.noGrad(() => usdm.infer([3, 3, 17, 50, 2, 9], codec, { maxNewTokens: 12, temperature: 1.5, topP: 0.9, topK: 20, seed: 4 }));
    expect(JSON.parse(s.out)).toMatchObject({ user_text: sampled.userText, agent_text: sampled.agentText, agent_units: sampled.agentUnits });
    const g0 = run([...base, '--temperature', '0', '--top_k', '3']);
    expect(JSON.parse(g0.out)).toEqual(JSON.parse(a.out));
    expect(g0.err).toMatch(/--top_p \/ --top_k sample only with --temperature above 0/);
    expect(run([...base, '--top_p', '1.5']).err).toMatch(/--top_p takes a number in \(0, 1\]/);

    // from speech: the tiny XLS-R fixture read at layer 2 with its 57-or-fewer centroids
    const xlsr = path.join(FIXTURES, 'wav2vec2', 'xlsr'),
      kmeans = path.join(FIXTURES, 'wav2vec2', 'centroids.npy');
    const wav = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
    const ux = new et.audio.UnitExtractor({ encoder: (await et.nn.Wav2Vec2Model.fromPretrained(xlsr)).eval(), layer: 2, centroids: kmeans });
    const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000 });
    const [units] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
    const b = run([
      'usdm',
      'infer',
      '--model',
      model,
      '--tokenizer',
      tokFile,
      '--input_path',
      wav,
      '--xlsr',
      xlsr,
      '--kmeans',
      kmeans,
      '--layer',
      '2',
      '--max_new_tokens',
      '12',
    ]);
    expect(b.code, b.err).toBe(0);
    expect(JSON.parse(b.out)).toEqual(await want(units));

    // usage: one input, no speech decoder; bad units
    expect(run(['usdm', 'infer', '--model', model, '--units', '1', '--input_path', wav]).code).toBe(2);
    expect(run(['usdm', 'infer', '--model', model, '--units', '1', '--reference_path', wav]).err).toMatch(/Voicebox/);
    expect(run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '1 x']).code).toBe(2);
    const big = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '99']);
    expect(big.code).toBe(1);
    expect(big.err).toMatch(/ERR_INVALID_ARG: .*userUnits/);
  }, 300_000);

  it("--max_new_tokens is at most the model's context (256 here): 1e12 or 257 is ERR_INVALID_ARG naming it; an --output_path that is a folder is refused before the work", () => {
    const dir = tmpdir();
    const tokFile = path.join(dir, 'tokenizer.json');
    usdmToyTokenizer(tokFile);
    const model = path.join(FIXTURES, 'usdm', 'mistral');
    for (const n of ['1e12', '257']) {
      const r = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17', '--max_new_tokens', n]);
      expect(r.err).toMatch(
        new RegExp(
          `ERR_INVALID_ARG: Expected a positive integer of at most 256 \\(the model's context length, max_position_embeddings\\) for --max_new_tokens but received ${Number(n)}`,
        ),
      );
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(r.code).toBe(1);
    }
    const folder = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17', '--output_path', dir]);
    expect(folder.err).toMatch(/ERR_INVALID_ARG: --output_path '.*' is not a regular file \(it is a folder\)/);
    expect(folder.code).toBe(1);
  }, 120_000);

  // naver-ai/usdm README.md lines 82 and 92 (`python src/inference.py …`) with their placeholders
  // mapped: YOUR_MODEL_CACHE_DIR a Hugging Face cache holding naver-ai/USDM-DailyTalk (the tiny
  // fixture), INPUT_WAV_PATH / REFERENCE_WAV_PATH a fixture wav, PATH_TO_SAVE_SPOKEN_RESPONSE a
  // .wav path; the cache also holds the decoder inference.py downloads (naver-ai/xlsr-token-Voicebox,
  // nvidia/bigvgan_22khz_80band: the tiny ones of test/fixtures/usdm_voicebox). Added, since the
  // tiny unit extractor is not seamless's xlsr2_1b_v2 (which the original downloads itself): --xlsr,
  // --kmeans, --layer 2; and --max_new_tokens 12 and --flow_steps 3 for time.
  it("README's inference.py lines: --model_cache_dir holds naver-ai/USDM-DailyTalk and the decoder; the spoken answer is written at the .wav path, a reference whose units outspan it is refused", async () => {
    const dir = tmpdir();
    const cache = path.join(dir, 'YOUR_MODEL_CACHE_DIR');
    const snap = path.join(cache, 'models--naver-ai--USDM-DailyTalk', 'snapshots', '0123456789abcdef0123456789abcdef01234567');
    fs.mkdirSync(snap, { recursive: true });
    fs.mkdirSync(path.join(cache, 'models--naver-ai--USDM-DailyTalk', 'refs'));
    fs.writeFileSync(path.join(cache, 'models--naver-ai--USDM-DailyTalk', 'refs', 'main'), '0123456789abcdef0123456789abcdef01234567');
    for (const f of fs.readdirSync(path.join(FIXTURES, 'usdm', 'mistral'))) fs.copyFileSync(path.join(FIXTURES, 'usdm', 'mistral', f), path.join(snap, f));
    usdmToyTokenizer(path.join(snap, 'tokenizer.json'));
    for (const [repo, from] of [
      ['models--naver-ai--xlsr-token-Voicebox', 'voicebox'],
      ['models--nvidia--bigvgan_22khz_80band', 'bigvgan'],
    ]) {
      const s = path.join(cache, repo, 'snapshots', 'fedcba9876543210fedcba9876543210fedcba98');
      fs.mkdirSync(s, { recursive: true });
      fs.mkdirSync(path.join(cache, repo, 'refs'));
      fs.writeFileSync(path.join(cache, repo, 'refs', 'main'), 'fedcba9876543210fedcba9876543210fedcba98');
      for (const f of fs.readdirSync(path.join(FIXTURES, 'usdm_voicebox', from)))
        fs.copyFileSync(path.join(FIXTURES, 'usdm_voicebox', from, f), path.join(s, f));
    }
    const wav = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
    const extractor = [
      '--xlsr',
      path.join(FIXTURES, 'wav2vec2', 'xlsr'),
      '--kmeans',
      path.join(FIXTURES, 'wav2vec2', 'centroids.npy'),
      '--layer',
      '2',
      '--max_new_tokens',
      '12',
      '--flow_steps',
      '3',
      '--seed',
      '4',
    ];
    const answer = path.join(dir, 'answer.wav');
    const env = { ...process.env, OMP_NUM_THREADS: '1', HF_HUB_OFFLINE: '1' };
    const runEnv = (args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 240_000 });
    const line82 = runEnv(['usdm', 'infer', '--input_path', wav, '--output_path', answer, '--model_cache_dir', cache, ...extractor]);
    expect(line82.status, line82.stderr).toBe(0);
    const written = JSON.parse(line82.stdout);
    // the same answer as --model on the snapshot folder
    const direct = run(['usdm', 'infer', '--model', snap, '--input_path', wav, ...extractor]);
    expect(direct.code, direct.err).toBe(0);
    expect(written).toEqual(JSON.parse(direct.out));
    // the spoken answer: the agent's units through the decoder, as UsdmSpeaker from the same seed
    const speaker = await et.systems.usdm.UsdmSpeaker.fromPretrained(
      path.join(FIXTURES, 'usdm_voicebox', 'voicebox'),
      path.join(FIXTURES, 'usdm_voicebox', 'bigvgan'),
    );
    const spoken = await et.audio.readWav(answer, { sampleRate: null });
    expect(spoken.sampleRate).toBe(22050);
    expect(written.agent_units.length).toBeGreaterThan(0);
    const want = await speaker.speak(written.agent_units, { steps: 3, seed: 4 });
    expect(spoken.samples.length).toBe(want.samples.length);
    expect(maxAbsDiff(et.tensor(spoken.samples), et.tensor(want.samples))).toBeLessThan(1e-6);
    const line92 = runEnv(['usdm', 'infer', '--input_path', wav, '--reference_path', wav, '--output_path', answer, '--model_cache_dir', cache, ...extractor]);
    // the reference's units come from the tiny extractor (a unit every 22 samples, not XLS-R's 320), so
    // they span more than the 15 ms clip: refused by name, where the original fails on a shape (the
    // voice itself: test/systems/usdm-speak.test.ts)
    expect(line92.status, line92.stderr).toBe(1);
    expect(line92.stderr).toMatch(/ERR_INVALID_ARG: speak: the reference's \d+ samples at 22050 Hz are fewer than its \d+ units span/);
    // without the extractor's files the message says where they go
    const bare = runEnv(['usdm', 'infer', '--input_path', wav, '--output_path', answer, '--model_cache_dir', cache]);
    expect(bare.status).toBe(2);
    expect(bare.stderr).toMatch(/--xlsr is required .*xlsr2_1b_v2\.pt .*--model_cache_dir/);
  }, 300_000);

  // naver-ai/usdm preprocess/fine-tuning/README.md's line, `python dailytalk_single_turn.py
  // --pretrained_model_name_or_path naver-ai/USTM --model_cache_dir YOUR_MODEL_CACHE_DIR --data_dir
  // YOUR_DATA_PATH/data`, with the split files named (the script's defaults are paths relative to
  // its own folder) and the placeholders mapped: the tokenizer a folder holding the toy tokenizer,
  // the data the DailyTalk-shaped fixture that scripts/fixtures/usdm_dailytalk.py ran the ORIGINAL
  // script on; --xlsr/--kmeans/--layer 2 name the tiny unit extractor (the original downloads seamless's)
  it("usdm preprocess gives the original dailytalk_single_turn.py's train.txt / test.txt lines and resumes from its cached units; usdm sft (train_sft.py's line) trains on them, usdm infer answers with the result; bad input is named", async () => {
    const FX = path.join(FIXTURES, 'usdm_dailytalk');
    const dir = tmpdir();
    const ustm = path.join(dir, 'USTM');
    fs.mkdirSync(ustm);
    usdmToyTokenizer(path.join(ustm, 'tokenizer.json'));
    const out = path.join(dir, 'preprocessed');
    const line = [
      'usdm',
      'preprocess',
      '--pretrained_model_name_or_path',
      ustm,
      '--model_cache_dir',
      path.join(dir, 'cache'),
      '--data_dir',
      path.join(FX, 'data'),
      '--train_metadata_path',
      path.join(FX, 'raw', 'train.txt'),
      '--test_metadata_path',
      path.join(FX, 'raw', 'test.txt'),
      '--output_path',
      out,
      '--xlsr',
      path.join(FIXTURES, 'wav2vec2', 'xlsr'),
      '--kmeans',
      path.join(FIXTURES, 'wav2vec2', 'centroids.npy'),
      '--layer',
      '2',
    ];
    const r = run(line);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/2 training and 1 test dialogues \(1 dropped: a speaker twice in a row\), 10 clips, 0 with units already/);
    const lines = (f: string) => fs.readFileSync(f, 'utf8').split('\n').sort();
    for (const split of ['train', 'test']) expect(lines(path.join(out, `${split}.txt`)), split).toEqual(lines(path.join(FX, 'expected', `${split}.txt`)));
    // an interrupted run resumes: the units are cached per clip
    const [key] = fs.readdirSync(path.join(out, 'units')); // one folder per unit extractor
    fs.rmSync(path.join(out, 'units', key, '1_2_d1.txt'));
    const again = run(line);
    expect(again.code, again.err).toBe(0);
    expect(again.err).toMatch(/10 clips, 9 with units already/);
    expect(lines(path.join(out, 'test.txt'))).toEqual(lines(path.join(FX, 'expected', 'test.txt')));
    // then src/README.md's train_sft.py line (full fine-tuning) on those files, mapped to the tiny
    // model, with --max_steps 2 (emotorch's) for time; then usdm infer with what it wrote
    const model = path.join(dir, 'USTM-model');
    fs.cpSync(path.join(FIXTURES, 'usdm', 'mistral'), model, { recursive: true });
    usdmToyTokenizer(path.join(model, 'tokenizer.json'));
    const sftOut = path.join(dir, 'sft');
    // run from <dir>/src as the README does, ../configs/ holding USDM's DeepSpeed config
    fs.mkdirSync(path.join(dir, 'configs'));
    fs.mkdirSync(path.join(dir, 'src'));
    fs.writeFileSync(path.join(dir, 'configs', 'ds_config_zero3_bf16.json'), JSON.stringify(USDM_DS_CONFIG, null, 2));
    const sft = run(
      [
        'usdm',
        'sft',
        '--output_dir',
        sftOut,
        '--data_path_train',
        path.join(out, 'train.txt'),
        '--data_path_test',
        path.join(out, 'test.txt'),
        '--data_path_cache',
        path.join(dir, 'ds-cache'),
        '--model_name_or_path',
        model,
        '--model_cache_dir',
        path.join(dir, 'cache'),
        '--train_batch_size',
        '2',
        '--gradient_accumulation_steps',
        '1',
        '--max_input_length',
        '8192',
        '--num_train_epochs',
        '1',
        '--seed',
        '1',
        '--logging_steps',
        '1',
        '--deepspeed_config',
        '../configs/ds_config_zero3_bf16.json',
        '--learning_rate',
        '2e-5',
        '--evaluation_strategy',
        'steps',
        '--save_strategy',
        'steps',
        '--eval_steps',
        '2',
        '--save_steps',
        '2',
        '--save_total_limit',
        '1',
        '--max_steps',
        '2',
      ],
      path.join(dir, 'src'),
    );
    expect(sft.code, sft.err).toBe(0);
    for (const f of ['data_path_cache', 'max_input_length']) expect(sft.err).toMatch(new RegExp(`--${f} is accepted .* not used`));
    // one process: the config is read (its tuning keys named), ZeRO has no ranks to shard across
    expect(sft.err).toMatch(
      /not used by emotorch's engine .*: zero_optimization\.offload_param\.pin_memory, zero_optimization\.offload_optimizer\.pin_memory, zero_optimization\.memory_efficient_linear/,
    );
    expect(sft.err).toMatch(/ZeRO stage 3 shards across ranks; one process trains unsharded/);
    expect(sft.out).toMatch(/5 training and 2 evaluation examples, 2 steps, train_loss \d/);
    expect(sft.out).toMatch(/"eval_loss":/);
    expect(fs.readdirSync(sftOut).filter((d) => d.startsWith('checkpoint-'))).toEqual(['checkpoint-2']);
    const wav = path.join(FX, 'data', '1', '2_1_d1.wav');
    const answer = run([
      'usdm',
      'infer',
      '--model',
      sftOut,
      '--input_path',
      wav,
      '--xlsr',
      path.join(FIXTURES, 'wav2vec2', 'xlsr'),
      '--kmeans',
      path.join(FIXTURES, 'wav2vec2', 'centroids.npy'),
      '--layer',
      '2',
      '--max_new_tokens',
      '8',
    ]);
    expect(answer.code, answer.err).toBe(0);
    expect(Object.keys(JSON.parse(answer.out))).toEqual(['user_units', 'user_text', 'agent_text', 'agent_units']);
    // inference.py's user units (librosa.load: the two channels averaged, soxr HQ from 44.1 kHz; seamless's odd-length pad)
    const user = run([
      'usdm',
      'infer',
      '--model',
      sftOut,
      '--input_path',
      path.join(FX, 'infer', 'user.wav'),
      '--xlsr',
      path.join(FIXTURES, 'wav2vec2', 'xlsr'),
      '--kmeans',
      path.join(FIXTURES, 'wav2vec2', 'centroids.npy'),
      '--layer',
      '2',
      '--max_new_tokens',
      '1',
    ]);
    expect(user.code, user.err).toBe(0);
    expect(JSON.parse(user.out).user_units).toEqual(JSON.parse(fs.readFileSync(path.join(FX, 'expected', 'infer_units.json'), 'utf8')).user_units);
    // --resume continues from checkpoint-2
    const resumed = run([
      'usdm',
      'sft',
      '--output_dir',
      sftOut,
      '--data_path_train',
      path.join(out, 'train.txt'),
      '--data_path_test',
      path.join(out, 'test.txt'),
      '--model_name_or_path',
      model,
      '--train_batch_size',
      '2',
      '--gradient_accumulation_steps',
      '1',
      '--max_steps',
      '3',
      '--save_steps',
      '3',
      '--eval_steps',
      '3',
      '--deepspeed_config',
      path.join(dir, 'configs', 'ds_config_zero3_bf16.json'),
      '--resume',
    ]);
    expect(resumed.code, resumed.err).toBe(0);
    expect(resumed.out).toMatch(/, 3 steps,/);

    // bad input: a missing wav, a dialogue whose turns do not run 0..n-1
    const data = path.join(dir, 'data');
    fs.cpSync(path.join(FX, 'data'), data, { recursive: true });
    fs.rmSync(path.join(data, '2', '1_1_d2.wav'));
    const missing = run([...line.slice(0, 7), data, ...line.slice(8, 13), path.join(dir, 'out2'), ...line.slice(14)]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/ERR_IO: the audio of 1_1_d2 '.*1_1_d2\.wav' does not exist/);
    const gap = path.join(dir, 'gap.txt');
    fs.writeFileSync(
      gap,
      fs
        .readFileSync(path.join(FX, 'raw', 'test.txt'), 'utf8')
        .split('\n')
        .filter((l) => !l.startsWith('1_'))
        .join('\n'),
    );
    const bad = run([...line.slice(0, 11), gap, ...line.slice(12)]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/ERR_FORMAT: --test_metadata_path '.*gap\.txt': dialogue d1 has turns 0, 2, not 0 to 1/);
  }, 300_000);

  it("usdm extend-vocab is train_pt.py's vocabulary step: <|continue|>, <|correspond|>, the units and <pad> added, the new rows drawn from N(0, initializer_range), the old ones kept", async () => {
    const dir = tmpdir();
    // a LLaMA-family base whose tokenizer and embedding table have one size (as Mistral's 32 000)
    const base = path.join(dir, 'base');
    fs.mkdirSync(base);
    const full = await et.nn.LlamaForCausalLM.fromPretrained(path.join(FIXTURES, 'salmonn', 'llm'));
    const small = await full.resizeTokenEmbeddings(1500);
    await small.save(path.join(base, 'model.safetensors'));
    fs.writeFileSync(
      path.join(base, 'config.json'),
      JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'llm', 'config.json'), 'utf8')), vocab_size: 1500 }),
    );
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(FIXTURES, 'tokenizers', 'llama', f), path.join(base, f));
    const ext = path.join(dir, 'ext');
    const r = run(['usdm', 'extend-vocab', '--model_name_or_path', base, '--num_unit_tokens', '57', '--output_dir', ext, '--seed', '3']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/60 tokens added \(57 units, <pad>\): vocabulary 1500 -> 1560/);
    const tok = await et.data.Tokenizer.fromFile(ext);
    expect([
      tok.tokenToId('<|continue|>'),
      tok.tokenToId('<|correspond|>'),
      tok.tokenToId('<|unit0|>'),
      tok.tokenToId('<|unit56|>'),
      tok.tokenToId('<pad>'),
    ]).toEqual([1500, 1501, 1502, 1558, 1559]);
    expect(await tok.encode('<|unit3|><|correspond|>', { addSpecialTokens: false })).toEqual([1505, 1501]);
    const m = await et.nn.LlamaForCausalLM.fromPretrained(ext);
    expect(m.config.vocab_size).toBe(1560);
    const w = (mod: et.nn.Module, n: string) => new Map(mod.namedParameters()).get(n)!;
    for (const n of ['model.embed_tokens.weight', 'lm_head.weight']) {
      expect(maxAbsDiff(w(m, n).slice(0, 0, 1500), w(small, n))).toBe(0);
      const fresh = w(m, n).slice(0, 1500, 1560);
      const std = fresh.std().item();
      expect(std, n).toBeGreaterThan(0.07); // initializer_range 0.1 over 60 × 48 draws
      expect(std, n).toBeLessThan(0.13);
    }
    expect(JSON.parse(fs.readFileSync(path.join(ext, 'config.json'), 'utf8'))).toMatchObject({ vocab_size: 1560, pad_token_id: 1559 });
    // the extended folder is a USDM model: its unit ids are read from the tokenizer
    const usdm = await et.systems.usdm.Usdm.fromPretrained(ext, {
      tokenIds: { unit0: 1502, numUnits: 57, continue: 1500, correspond: 1501, pad: 1559, newline: 13, space: 28, bos: 1 },
    });
    const { logits } = await et.noGrad(() => usdm.forward({ inputIds: et.tensor([[1, 1505, 1501, 40]], { dtype: 'int64' }) }));
    expect(logits.shape).toEqual([1, 4, 1560]);
    const mismatch = run([
      'usdm',
      'extend-vocab',
      '--model_name_or_path',
      path.join(FIXTURES, 'salmonn', 'llm'),
      '--num_unit_tokens',
      '4',
      '--output_dir',
      path.join(dir, 'x'),
    ]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.err).toMatch(/ERR_FORMAT: the tokenizer of .* has 1500 tokens and the model 1501 rows/);
  }, 300_000);

  it("usdm sft: a token id past the model's vocabulary is ERR_DATA naming the data file and line, not an index error in the embedding", () => {
    const dir = tmpdir();
    const model = path.join(dir, 'USTM');
    fs.cpSync(path.join(FIXTURES, 'usdm', 'mistral'), model, { recursive: true });
    usdmToyTokenizer(path.join(model, 'tokenizer.json'));
    const train = path.join(dir, 'train.txt'),
      test = path.join(dir, 'test.txt');
    fs.writeFileSync(train, '1 40 41|-100 40 41\n1 40 41|-100 40 41\n');
    fs.writeFileSync(test, '1 40 41|-100 40 41\n\n1 102 160 2|-100 -100 160 2\n'); // the fixture's vocabulary is 160 ids
    const r = run([
      'usdm',
      'sft',
      '--output_dir',
      path.join(dir, 'out'),
      '--data_path_train',
      train,
      '--data_path_test',
      test,
      '--model_name_or_path',
      model,
      '--max_steps',
      '1',
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ERR_DATA: '.*test\.txt' item 2 \(line 3\): ids\[2\] is 160, past the model's vocabulary of 160 tokens \(ids 0 to 159\)/);
    expect(r.err).not.toMatch(/ERR_INDEX|\n\s+at /);
  }, 120_000);

  it("usdm sft under npx emotorch-run (accelerate launch's place) trains data-parallel on 2 ranks, the first writing the model", () => {
    const dir = tmpdir();
    const model = path.join(dir, 'USTM');
    fs.cpSync(path.join(FIXTURES, 'usdm', 'mistral'), model, { recursive: true });
    usdmToyTokenizer(path.join(model, 'tokenizer.json'));
    const data = path.join(FIXTURES, 'usdm_dailytalk', 'expected');
    const out = path.join(dir, 'sft');
    const r = spawnSync(
      process.execPath,
      [
        path.join(__dirname, '..', '..', 'dist', 'cli', 'run.js'),
        '--nproc-per-node',
        '2',
        CLI,
        'usdm',
        'sft',
        '--output_dir',
        out,
        '--data_path_train',
        path.join(data, 'train.txt'),
        '--data_path_test',
        path.join(data, 'test.txt'),
        '--model_name_or_path',
        model,
        '--train_batch_size',
        '1',
        '--gradient_accumulation_steps',
        '1',
        '--max_steps',
        '2',
        '--save_strategy',
        'no',
        '--evaluation_strategy',
        'no',
        '--logging_steps',
        '1',
      ],
      { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    // one summary (rank 0's), saying the ranks
    expect(r.stdout.match(/training and \d+ evaluation examples, 2 steps, train_loss [\d.]+ \(2 ranks\)/g)?.length).toBe(1);
    expect(fs.existsSync(path.join(out, 'model.safetensors'))).toBe(true);
  }, 300_000);

  it("usdm sft --deepspeed_config (USDM's ZeRO-3 bf16 config) on 2 ranks: sharded, bf16 with float32 masters; the first rank writes the 16-bit weights; a bad config is named", async () => {
    const dir = tmpdir();
    const model = path.join(dir, 'USTM');
    fs.cpSync(path.join(FIXTURES, 'usdm', 'mistral'), model, { recursive: true });
    usdmToyTokenizer(path.join(model, 'tokenizer.json'));
    const data = path.join(FIXTURES, 'usdm_dailytalk', 'expected');
    const cfg = path.join(dir, 'ds_config_zero3_bf16.json');
    fs.writeFileSync(cfg, JSON.stringify(USDM_DS_CONFIG));
    const sft = (out: string, config: string) =>
      spawnSync(
        process.execPath,
        [
          path.join(__dirname, '..', '..', 'dist', 'cli', 'run.js'),
          '--nproc-per-node',
          '2',
          CLI,
          'usdm',
          'sft',
          '--output_dir',
          out,
          '--data_path_train',
          path.join(data, 'train.txt'),
          '--data_path_test',
          path.join(data, 'test.txt'),
          '--model_name_or_path',
          model,
          '--train_batch_size',
          '1',
          '--max_steps',
          '2',
          '--save_strategy',
          'no',
          '--evaluation_strategy',
          'no',
          '--logging_steps',
          '1',
          '--deepspeed_config',
          config,
        ],
        { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 },
      );
    const out = path.join(dir, 'sft');
    const r = sft(out, cfg);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/2 steps, train_loss [\d.]+ \(2 ranks\)/g)?.length).toBe(1);
    const saved = await et.io.loadSafetensors(path.join(out, 'model.safetensors'));
    const orig = await et.io.loadSafetensors(path.join(model, 'model.safetensors'));
    expect(new Set([...saved.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['bfloat16']));
    expect([...saved.tensors.keys()].sort()).toEqual([...orig.tensors.keys()].sort());
    // trained: the weights moved from the checkpoint's
    const name = [...orig.tensors.keys()].find((k) => k.includes('layers.0.self_attn.q_proj.weight'))!;
    expect(saved.tensors.get(name)!.float().sub(orig.tensors.get(name)!.float()).abs().max().item()).toBeGreaterThan(0);
    // a key emotorch does not implement is named, not dropped
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ ...USDM_DS_CONFIG, scheduler: { type: 'WarmupLR', params: {} } }));
    const b = sft(path.join(dir, 'sft-bad'), bad);
    expect(b.status).not.toBe(0);
    expect(b.stderr).toMatch(/DeepSpeed config: 'scheduler' is not implemented/);
  }, 300_000);
});

describe("usdm infer / sft --quantize (emotorch's own flag)", () => {
  it('infer answers as Usdm.fromPretrained({ quantize }) does; a format it does not know is a usage error naming the flag', async () => {
    const dir = tmpdir();
    const tokFile = path.join(dir, 'tokenizer.json');
    usdmToyTokenizer(tokFile);
    const model = path.join(FIXTURES, 'usdm', 'mistral');
    const tok = await et.data.Tokenizer.fromFile(tokFile);
    const ids = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };
    const usdm = await et.systems.usdm.Usdm.fromPretrained(model, { tokenIds: ids, quantize: 'q4_0' });
    expect(et.nn.linearLayers(usdm.llm).filter((l) => l.format === 'q4_0').length).toBe(14);
    const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const r = await et.noGrad(() => usdm.infer([3, 3, 17, 50], codec, { maxNewTokens: 8 }));
    const a = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17 50', '--max_new_tokens', '8', '--quantize', 'q4_0']);
    expect(a.code, a.err).toBe(0);
    expect(JSON.parse(a.out)).toEqual({ user_units: [3, 3, 17, 50], user_text: r.userText, agent_text: r.agentText, agent_units: r.agentUnits });
    const bad = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3', '--quantize', 'int4']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--quantize takes int8, q8_0, q4_0, nf4, not 'int4'/);
    // nf4's blocks of 64 do not divide this model's rows of 32: refused naming the layer
    const nf4 = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3', '--quantize', 'nf4']);
    expect(nf4.code).toBe(1);
    expect(nf4.err).toMatch(/ERR_INVALID_ARG: .*nf4.*block of 64.*model\.layers\.0\./);
  }, 120_000);

  it('sft --quantize with --lora trains the adapters over the quantized weights (QLoRA); without --lora it is refused', async () => {
    const dir = tmpdir();
    const model = path.join(dir, 'USTM');
    fs.cpSync(path.join(FIXTURES, 'usdm', 'mistral'), model, { recursive: true });
    usdmToyTokenizer(path.join(model, 'tokenizer.json'));
    const train = path.join(dir, 'train.txt'),
      test = path.join(dir, 'test.txt');
    fs.writeFileSync(train, '1 40 41 42|-100 40 41 42\n1 43 44 45|-100 -100 44 45\n');
    fs.writeFileSync(test, '1 40 41|-100 40 41\n');
    const args = ['usdm', 'sft', '--data_path_train', train, '--data_path_test', test, '--model_name_or_path', model, '--max_steps', '2'];
    const full = run([...args, '--output_dir', path.join(dir, 'full'), '--quantize', 'int8']);
    expect(full.code).toBe(2);
    expect(full.err).toMatch(/--quantize int8 needs --lora/);
    const out = path.join(dir, 'qlora');
    const r = run([
      ...args,
      '--output_dir',
      out,
      '--quantize',
      'int8',
      '--lora',
      '--learning_rate',
      '1e-2',
      '--warmup_ratio',
      '0',
      '--train_batch_size',
      '1',
      '--gradient_accumulation_steps',
      '1',
    ]);
    expect(r.code, r.err).toBe(0);
    const adapter = (await et.io.loadSafetensors(path.join(out, 'adapter_model.safetensors'))).tensors;
    const bs = [...adapter].filter(([k]) => k.includes('lora_B'));
    expect(bs.length).toBe(4); // q_proj and v_proj of 2 layers
    expect(bs.every(([, t]) => t.abs().max().item() > 0)).toBe(true); // moved from peft's zeros
  }, 300_000);
});
