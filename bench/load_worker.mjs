// emotorch's side of `npm run bench -- load` (bench/load.mjs), one fresh process per call:
//   node bench/load_worker.mjs DIR DTYPE PROMPT NEW
//       loads the checkpoint with LlamaForCausalLM.fromPretrained in DTYPE, then greedy-decodes NEW
//       tokens after a PROMPT-token prompt
//   node bench/load_worker.mjs salmonn DIR DTYPE SECONDS NEW
//       loads bench/load_worker.py make-salmonn's set with Salmonn.fromPretrained (the towers in
//       DTYPE), then answers an instruction about a SECONDS-long clip, greedy, NEW tokens; the first
//       token's latency is audio encoding + prompt + one token, the decode rate is timed between
//       the first and the last token of that one answer
//   node bench/load_worker.mjs salmonn DIR DTYPE SECONDS NEW low_resource
//       the same with the YAML's `low_resource: True` (the LLaMA's Linear layers in int8)
//   node bench/load_worker.mjs internvl DIR DTYPE NEW
//       loads bench/load_worker.py make-internvl's folder with InternVL.fromPretrained in DTYPE and
//       answers a question about one picture (test/fixtures/m2se_internvl/face.png, tiled as
//       InternVL2's dynamic_preprocess), greedy, NEW tokens
// Prints one JSON line with the fields of bench/load_worker.py's.
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';

const status = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
if (process.env.BENCH_THREADS) et.setNumThreads(Number(process.env.BENCH_THREADS));

async function llama(dir, dtype, prompt, nNew) {
  const t0 = performance.now();
  const model = await et.nn.LlamaForCausalLM.fromPretrained(dir, { dtype });
  const loadMs = performance.now() - t0;
  const peak = status('VmHWM'),
    rss = status('VmRSS');
  const P = Number(prompt),
    N = Number(nNew);
  const ids = et.arange(3, 3 + P, 1, { dtype: 'int64' }).reshape([1, P]);
  const t1 = performance.now();
  await et.noGrad(() => model.generate({ inputIds: ids }, { maxNewTokens: 1 }));
  const first = performance.now() - t1;
  // decoding: N tokens less 1 token, both timed warm, so the prompt's cost cancels
  const t2 = performance.now();
  await et.noGrad(() => model.generate({ inputIds: ids }, { maxNewTokens: 1 }));
  const one = (performance.now() - t2) / 1000;
  const t3 = performance.now();
  const { newTokens } = await et.noGrad(() => model.generate({ inputIds: ids }, { maxNewTokens: N, minNewTokens: N }));
  const total = (performance.now() - t3) / 1000;
  return {
    load_ms: loadMs,
    peak_rss_mb: peak,
    rss_mb: rss,
    first_token_ms: first,
    tokens_per_s: (N - 1) / Math.max(total - one, 1e-9),
    end_peak_rss_mb: status('VmHWM'),
    tokens: newTokens.toArray()[0].map(Number),
  };
}

async function salmonn(dir, dtype, seconds, nNew, lowResource) {
  const tokenizer = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures', 'tokenizers', 'llama', 'tokenizer.json');
  const t0 = performance.now();
  const model = await et.systems.salmonn.Salmonn.fromPretrained({
    whisper: path.join(dir, 'whisper'),
    beats: path.join(dir, 'beats.pt'),
    llm: path.join(dir, 'llm'),
    tokenizer,
    checkpoint: path.join(dir, 'salmonn.pth'),
    dtype,
    ...(lowResource === 'low_resource' ? { config: { low_resource: true } } : {}),
  });
  const loadMs = performance.now() - t0;
  const peak = status('VmHWM'),
    rss = status('VmRSS');
  const n = Math.round(Number(seconds) * 16000);
  const wave = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = i / 16000;
    wave[i] = 0.3 * Math.sin(2 * Math.PI * (220 * t + 40 * t * t)) * (1 + 0.5 * Math.sin(2 * Math.PI * 2 * t));
  }
  const N = Number(nNew);
  const stamps = [];
  const t1 = performance.now();
  const [tokens] = await model.generateTokens([wave], 'Describe the emotion of the speaker.', {
    numBeams: 1,
    maxNewTokens: N,
    minLength: N,
    onTokens: () => stamps.push(performance.now()),
  });
  const end = performance.now();
  return {
    load_ms: loadMs,
    peak_rss_mb: peak,
    rss_mb: rss,
    first_token_ms: stamps[0] - t1,
    tokens_per_s: (N - 1) / Math.max((end - stamps[0]) / 1000, 1e-9),
    end_peak_rss_mb: status('VmHWM'),
    tokens,
  };
}

async function internvl(dir, dtype, nNew) {
  const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures', 'm2se_internvl');
  const t0 = performance.now();
  const tokenizer = await et.data.Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
  const model = await et.systems.m2se.InternVL.fromPretrained(dir, { dtype, imgContextTokenId: tokenizer.tokenToId('<IMG_CONTEXT>') });
  const loadMs = performance.now() - t0;
  const peak = status('VmHWM'),
    rss = status('VmRSS');
  const N = Number(nNew);
  const stamps = [];
  const t1 = performance.now();
  const record = {
    query: '<image>What emotion does this face show?',
    response: '',
    history: [],
    images: [path.join(fixture, 'face.png')],
    videos: [],
    audios: [],
  };
  const {
    items: [item],
  } = await et.systems.m2se.m2seInternVLItems([record], model, tokenizer, { inference: true });
  const pixelValues = await et.systems.m2se.m2seInternVLPixels(item, model.config.force_image_size);
  const inputIds = et.tensor(item.ids, { dtype: 'int64' }).reshape([1, item.ids.length]);
  const newTokens = await et.noGrad(() =>
    model.generate(
      { inputIds, pixelValues: pixelValues.to({ dtype: model.vision_model.parameters()[0].dtype }) },
      { maxNewTokens: N, minNewTokens: N, onTokens: () => stamps.push(performance.now()) },
    ),
  );
  const end = performance.now();
  return {
    load_ms: loadMs,
    peak_rss_mb: peak,
    rss_mb: rss,
    first_token_ms: stamps[0] - t1,
    tokens_per_s: (N - 1) / Math.max((end - stamps[0]) / 1000, 1e-9),
    end_peak_rss_mb: status('VmHWM'),
    tokens: newTokens.toArray()[0].map(Number),
    tiles: pixelValues.shape[0],
    prompt_tokens: item.ids.length,
  };
}

const args = process.argv.slice(2);
const out = args[0] === 'salmonn' ? await salmonn(...args.slice(1)) : args[0] === 'internvl' ? await internvl(...args.slice(1)) : await llama(...args);
console.log(JSON.stringify(out));
