// The CUDA smoke check of the native side on the raw binding alone (no node_modules, no dist/):
// configs from the C++ field lists (modelKinds), named inputs and outputs, generation through the
// CausalLM bridge (greedy, beam, decoding rows); each result on the device against the same
// module's CPU result. `node scripts/cuda-smoke.cjs [cuda|cpu]` after building build/Release.
const path = require('path');
const b = require(path.resolve(__dirname, '../build/Release/emotorch.node'));
const dev = process.argv[2] || 'cuda';
const kinds = b.modelKinds();
const defaults = (fields) => Object.fromEntries(fields.map((f) => [f.name, f.type === 'config' ? defaults(f.fields) : JSON.parse(f.default)]));
const cfg = (kind, over) => ({ ...defaults(kinds[kind]), ...over });
const f32 = (h) => new Float32Array(h.dataSync()[0]);
const maxDiff = (a, c) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - c[i])), 0);
const rand = (n, seed) => {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    a[i] = s / 2147483648 - 0.5;
  }
  return a;
};
let failed = 0;
const check = (name, ok, info) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name} ${info ?? ''}`);
  if (!ok) failed++;
};
(async () => {
  console.log(`kinds: ${Object.keys(kinds).length} (${Object.keys(kinds).join(', ')})`);
  // LLaMA: logits and loss by name, CPU then the same module moved
  const llama = b.createModule(
    'llama',
    cfg('llama', { vocab_size: 128, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 }),
    null,
    null,
  );
  const ids = [5, 9, 17, 33, 2, 8, 100, 3, 7, 11, 12, 13];
  const mk = (d) => b.fromData(BigInt64Array.from(ids.map(BigInt)), [2, 6], 'int64', 'int64', d, false);
  const mask = (d) => b.fromData(BigInt64Array.from([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1].map(BigInt)), [2, 6], 'int64', 'int64', d, false);
  const cpuOut = await llama.forward({ input_ids: mk('cpu'), attention_mask: mask('cpu'), labels: mk('cpu') });
  const g = {
    max_new_tokens: 8,
    min_new_tokens: 0,
    num_beams: 1,
    top_k: 0,
    temperature: 1,
    top_p: 1,
    repetition_penalty: 1,
    length_penalty: 1,
    do_sample: false,
    early_stopping: 'true',
    eos_token_id: [2],
    pad_token_id: 0,
    seed: -1,
    banned_token_ranges: [],
    allowed_token_ranges: [],
  };
  const cpuGen = Array.from(new BigInt64Array((await llama.generate(mk('cpu'), null, mask('cpu'), g, null).result).dataSync()[0]));
  const cpuBeam = Array.from(new BigInt64Array((await llama.generate(mk('cpu'), null, mask('cpu'), { ...g, num_beams: 3 }, null).result).dataSync()[0]));
  await llama.to(dev, null);
  const t0 = Date.now();
  const out = await llama.forward({ input_ids: mk(dev), attention_mask: mask(dev), labels: mk(dev) });
  check('llama forward: named outputs', Object.keys(out).sort().join() === 'logits,loss', Object.keys(out).join());
  check(
    'llama logits on ' + dev + ' = CPU',
    maxDiff(f32(out.logits), f32(cpuOut.logits)) < 1e-3,
    `max |diff| ${maxDiff(f32(out.logits), f32(cpuOut.logits)).toExponential(2)} (${out.logits.device()})`,
  );
  check('llama loss on ' + dev + ' = CPU', Math.abs(out.loss.item() - cpuOut.loss.item()) < 1e-4, `${out.loss.item()} vs ${cpuOut.loss.item()}`);
  const gen = Array.from(new BigInt64Array((await llama.generate(mk(dev), null, mask(dev), g, null).result).dataSync()[0]));
  check('greedy generate (CausalLM bridge) = CPU', gen.join() === cpuGen.join(), gen.join(' '));
  const beam = Array.from(new BigInt64Array((await llama.generate(mk(dev), null, mask(dev), { ...g, num_beams: 3 }, null).result).dataSync()[0]));
  check('beam search = CPU', beam.join() === cpuBeam.join(), beam.join(' '));
  const one = b.fromData(BigInt64Array.from([5n, 9n, 17n]), [1, 3], 'int64', 'int64', dev, false);
  const row = await llama.startDecode(one, null, null, g, null);
  const steps = [];
  for (let i = 0; i < 4; i++) steps.push((await llama.decodeStep([row]))[0]);
  await llama.endDecode(row);
  check(
    'decoding rows (startDecode/decodeStep)',
    steps.every((t) => t >= 0 && t < 128),
    steps.join(' '),
  );
  let err = '';
  try {
    await llama.forward({ input_ids: mk(dev), inputIds: mk(dev) });
  } catch (e) {
    err = `${e.code}: ${e.message}`;
  }
  check('unread input named', /takes no input 'inputIds'/.test(err), err);
  console.log(`llama on ${dev}: ${Date.now() - t0} ms`);
  // Whisper, RoBERTa, CLIP: outputs by name on the device = CPU
  const cases = [
    [
      'whisper_encoder',
      { num_mel_bins: 16, d_model: 64, encoder_layers: 2, encoder_attention_heads: 4, encoder_ffn_dim: 128, max_source_positions: 32 },
      (d) => ({ input_features: b.fromData(rand(2 * 16 * 40, 1), [2, 16, 40], 'float32', 'float32', d, false) }),
      'last_hidden_state',
    ],
    [
      'roberta',
      { vocab_size: 128, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 128, max_position_embeddings: 40 },
      (d) => ({ input_ids: mk(d), attention_mask: mask(d) }),
      'pooler_output',
    ],
    [
      'wavlm',
      {
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        conv_dim: [32, 32],
        conv_kernel: [10, 3],
        conv_stride: [5, 2],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 4,
      },
      (d) => ({ input_values: b.fromData(rand(2 * 4000, 2), [2, 4000], 'float32', 'float32', d, false) }),
      'last_hidden_state',
    ],
  ];
  for (const [kind, over, inputs, key] of cases) {
    const m = b.createModule(kind, cfg(kind, over), null, null);
    m.setTraining(false);
    const c = await m.forward(inputs('cpu'));
    await m.to(dev, null);
    const o = await m.forward(inputs(dev));
    const d = maxDiff(f32(o[key]), f32(c[key]));
    check(`${kind} ${key} on ${dev} = CPU`, d < 2e-3, `max |diff| ${d.toExponential(2)}; outputs ${Object.keys(o).join(',')}`);
  }
  console.log(failed ? `${failed} FAILED` : 'all ok');
  process.exit(failed ? 1 : 0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
