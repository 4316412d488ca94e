// Decoding on a GPU with bfloat16, int8, q8_0, q4_0 and nf4 weights (issue 58), beside PyTorch +
// transformers in bfloat16 on the same shapes, in one run. On the raw binding alone (only Node.js and
// build/Release are needed, no node_modules or dist/: what a lent GPU machine can be given), so it
// runs where the npm bench cannot.
//   node bench/quant_cuda.cjs [--device cuda] [--case 1.1b|7b|tiny] [--tokens 128] [--formats bfloat16,int8,…] [--no-reference]
// Random weights (the time does not depend on their values); a 32-token prompt; greedy decoding with
// every token forced (no end of sequence). Printed per format: one row's tokens/s after the first,
// the first token's time (the prompt pass), 16 rows decoded together (tokens/s over all rows) and the
// GPU memory the weights take. The PyTorch side (bench/quant_cuda_torch.py, python3 or
// EMOTORCH_PYTHON): LlamaForCausalLM in bfloat16 on the same device, `generate` the same way.
const path = require('path');
const { spawnSync } = require('child_process');
const b = require(path.resolve(__dirname, '../build/Release/emotorch.node'));

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const dev = arg('device', 'cuda');
const SHAPES = {
  tiny: { vocab_size: 512, hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 },
  '1.1b': { vocab_size: 32000, hidden_size: 2048, intermediate_size: 5632, num_hidden_layers: 22, num_attention_heads: 32, num_key_value_heads: 4 },
  '7b': { vocab_size: 32000, hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32 },
};
const name = arg('case', '1.1b');
const shape = SHAPES[name];
if (!shape) throw new Error(`--case: one of ${Object.keys(SHAPES).join(', ')}, not '${name}'`);
const N = Number(arg('tokens', '128'));
const BATCH = 16;
const PROMPT = 32;
const formats = arg('formats', 'bfloat16,int8,q8_0,q4_0,nf4').split(',');
const kinds = b.modelKinds();
const defaults = (fields) => Object.fromEntries(fields.map((f) => [f.name, f.type === 'config' ? defaults(f.fields) : JSON.parse(f.default)]));
const config = { ...defaults(kinds.llama), ...shape, max_position_embeddings: 2048 };
const sync = () => (dev.startsWith('cuda') ? b.cudaSynchronize?.() : undefined);
const prompt = (seed) =>
  b.fromData(
    BigInt64Array.from({ length: PROMPT }, (_, i) => BigInt(3 + ((i * 7919 + seed * 104729) % (shape.vocab_size - 10)))),
    [1, PROMPT],
    'int64',
    'int64',
    dev,
    false,
  );
const gen = (n) => ({
  max_new_tokens: n,
  min_new_tokens: n,
  num_beams: 1,
  top_k: 0,
  temperature: 1,
  top_p: 1,
  repetition_penalty: 1,
  length_penalty: 1,
  do_sample: false,
  early_stopping: 'true',
  eos_token_id: [],
  pad_token_id: 0,
  seed: -1,
  banned_token_ranges: [],
  allowed_token_ranges: [],
});
const weightBytes = (m) => {
  let n = 0;
  for (const named of [m.namedParameters(), m.namedBuffers()])
    for (const h of named[1]) n += h.numel() * { bfloat16: 2, float16: 2, float32: 4, uint8: 1, int8: 1, int64: 8 }[h.dtype()];
  return n;
};
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function timeOurs(fmt) {
  const m = b.createModule('llama', config, dev, 'bfloat16');
  m.setTraining(false);
  b.setGradEnabled(false);
  let quantS = 0;
  if (fmt !== 'bfloat16') {
    const t0 = process.hrtime.bigint();
    const targets = b
      .linearLayers(m)
      .map(([n]) => n)
      .filter((n) => n !== 'lm_head');
    await b.quantizeLinears(m, targets, fmt);
    sync();
    quantS = ms(t0) / 1000;
  }
  const run = async (n) => {
    const t0 = process.hrtime.bigint();
    const out = await m.generate(prompt(1), null, null, gen(n), null).result;
    out.dataSync();
    return ms(t0);
  };
  await run(4);
  const first = [],
    rate = [];
  for (let t = 0; t < 3; t++) {
    const t1 = await run(1);
    const tn = await run(N + 1);
    first.push(t1);
    rate.push((N * 1000) / (tn - t1));
  }
  // 16 rows decoded together (the serve path): each row's prompt, then N/2 steps of all rows
  const rows = [];
  for (let r = 0; r < BATCH; r++) rows.push(await m.startDecode(prompt(r + 2), null, null, gen(N), null));
  await m.decodeStep(rows);
  const steps = Math.max(8, N >> 1);
  const t0 = process.hrtime.bigint();
  for (let s = 0; s < steps; s++) await m.decodeStep(rows);
  const batched = (BATCH * steps * 1000) / ms(t0);
  for (const r of rows) await m.endDecode(r);
  const bytes = weightBytes(m);
  m.dispose();
  return { tokS: median(rate), firstMs: median(first), batched, gib: bytes / 2 ** 30, quantS };
}

(async () => {
  console.log(`decoding on ${dev}: ${name} LLaMA shape (${JSON.stringify(shape)}), prompt ${PROMPT}, ${N} tokens, libtorch ${b.versions().libtorch}`);
  const rows = [];
  for (const fmt of formats) {
    const r = await timeOurs(fmt);
    rows.push([`emotorch ${fmt}`, r]);
    console.log(
      `emotorch ${fmt}: ${r.tokS.toFixed(1)} tok/s, first token ${r.firstMs.toFixed(1)} ms, ${BATCH} rows ${r.batched.toFixed(0)} tok/s, weights ${(r.gib * 1024).toFixed(0)} MiB` +
        (r.quantS ? `, quantized in ${r.quantS.toFixed(1)} s` : ''),
    );
  }
  let ref = null;
  if (!process.argv.includes('--no-reference')) {
    const py = process.env.EMOTORCH_PYTHON || 'python3';
    const res = spawnSync(py, [path.join(__dirname, 'quant_cuda_torch.py'), JSON.stringify({ shape, device: dev, prompt: PROMPT, tokens: N, batch: BATCH })], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (res.status === 0) {
      ref = JSON.parse(res.stdout.trim().split('\n').pop());
      rows.push([`PyTorch ${ref.torch} + transformers bfloat16`, ref]);
    } else console.log(`the PyTorch side failed (exit status ${res.status}): no reference row`);
  }
  console.log('\n| row | tok/s (1 row) | first token | tok/s (16 rows) | weights | / PyTorch bf16 (1 row) | / emotorch bf16 (1 row) |');
  console.log('|---|---|---|---|---|---|---|');
  const ours = rows.find(([n]) => n === 'emotorch bfloat16')?.[1];
  for (const [n, r] of rows)
    console.log(
      `| ${n} | ${r.tokS.toFixed(1)} | ${r.firstMs.toFixed(1)} ms | ${r.batched.toFixed(0)} | ${(r.gib * 1024).toFixed(0)} MiB | ${ref ? (r.tokS / ref.tokS).toFixed(2) : '–'} | ${ours ? (r.tokS / ours.tokS).toFixed(2) : '–'} |`,
    );
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
