// emotorch side of `npm run bench -- spectra`:
// - spectra: one fine-tuning step of SPECTRA at base size (WavLM-base-plus + RoBERTa-base + 1 fused
//   layer; batch 4, 10 s of audio and 128 tokens per sample; forward, cross-entropy, backward,
//   AdamW) against the Python reference model of scripts/fixtures/spectra.py (HF WavLM / RoBERTa
//   modules, same sizes, same step) in bench/torch_worker.py. Random weights on both sides.
// - spectra_pretrain: one pre-training step of SPECTRA at base size (3 clips and 2 texts per sample:
//   masked acoustic frames, the four combinations through the fused layer, MLM + MAM + response
//   selection + span losses, backward, AdamW) against the ORIGINAL ATForPreTraining on HF modules
//   (SPECTRA_SRC = a folder holding DAMO-ConvAI's spectra/, with the fixture's shims for transformers 5).
// - concat_cache: seconds per training epoch of the SemEval seed classifier
//   (et.systems.semeval.ConcatFusionClassifier) on RoBERTa-base text embeddings, re-encoding every batch
//   versus reading et.systems.semeval.embedUtterances' cache. emotorch only (no Python side).
import * as et from 'emotorch';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The forward under bfloat16 autocast with --bf16 (the backward and the optimizer outside it). */
const amp = (cfg, f) => (cfg.bf16 ? et.autocast({ device: 'cpu', dtype: 'bfloat16' }, f) : f());

// microsoft/wavlm-base-plus and roberta-base dimensions (HF defaults otherwise), dropout as they ship.
const wavlmBasePlus = {
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  conv_dim: [512, 512, 512, 512, 512, 512, 512],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: false,
  feat_extract_norm: 'group',
  do_stable_layer_norm: false,
  num_conv_pos_embeddings: 128,
  num_conv_pos_embedding_groups: 16,
  num_buckets: 320,
  max_bucket_distance: 800,
  hidden_dropout: 0.1,
  attention_dropout: 0.1,
  activation_dropout: 0,
  feat_proj_dropout: 0,
};
const robertaBase = {
  vocab_size: 50265,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  max_position_embeddings: 514,
  type_vocab_size: 2,
  pad_token_id: 1,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
};

async function spectraSetup(cfg) {
  et.manualSeed(0);
  const model = et.systems.spectra.Spectra.create({
    num_class: cfg.num_class,
    audio: { ...cfg.audio, max_length: cfg.samples },
    text: { ...cfg.text, num_fused_layers: cfg.fused },
  }).train();
  const opt = new et.optim.AdamW(model.parameters(), { lr: 2e-5, eps: 1e-8, weightDecay: 0.01 });
  const B = cfg.batch;
  const ids = et.randint(3, cfg.text.vocab_size, [B, cfg.tokens]);
  const batch = {
    inputValues: et.randn([B, cfg.samples]).mul(0.1),
    audioAttentionMask: et.ones([B, cfg.samples], { dtype: 'int64' }),
    inputIds: et.cat([et.zeros([B, 1], { dtype: 'int64' }), ids.slice(1, 1)], 1), // <s> first
    attentionMask: et.ones([B, cfg.tokens], { dtype: 'int64' }),
    labels: et.randint(0, cfg.num_class, [B]),
  };
  return async function step() {
    const { loss } = await amp(cfg, () => model.forward(batch));
    await loss.backward();
    await opt.step();
    opt.zeroGrad();
    return loss;
  };
}

async function spectraPretrainSetup(cfg) {
  et.manualSeed(0);
  const model = et.systems.spectra.SpectraForPreTraining.create(
    { audio: { ...cfg.audio, max_length: cfg.samples }, text: { ...cfg.text, num_fused_layers: cfg.fused, max_length: cfg.tokens } },
    { seed: 1 },
  ).train();
  const opt = new et.optim.AdamW(
    model.parameters().filter((p) => p.requiresGrad),
    { lr: 1e-4, eps: 1e-8, weightDecay: 0.01 },
  );
  const B = cfg.batch,
    S = cfg.samples,
    L = cfg.tokens;
  const text = et.cat([et.zeros([2 * B, 1], { dtype: 'int64' }), et.randint(3, cfg.text.vocab_size - 1, [2 * B, L - 1])], 1);
  const pick = et.rand([B, L]).lt(0.15);
  const labels = text.reshape([B, 2, L]).select(1, 0).maskedFill(pick.logicalNot(), -100);
  const valid = et
    .tensor(
      Array.from({ length: B * L }, (_, i) => (i % L) % 4 === 1),
      { dtype: 'bool' },
    )
    .reshape([B, L]);
  const n = valid.sum().item();
  const batch = {
    audio: et.randn([3 * B, S]).mul(0.1),
    audioAttentionMask: et.ones([3 * B, S]),
    textInput: text,
    mlmLabel: labels,
    textAttentionMask: et.ones([2 * B, L], { dtype: 'int64' }),
    turnId: et.cat([et.zeros([2 * B, L >> 1], { dtype: 'int64' }), et.ones([2 * B, L - (L >> 1)], { dtype: 'int64' })], 1),
    startValid: valid,
    endValid: valid,
    starts: et.rand([n]),
    ends: et.rand([n]),
  };
  return async function step() {
    const { loss } = await amp(cfg, () => model.forward(batch));
    await loss.backward();
    await opt.step();
    opt.zeroGrad();
    return loss;
  };
}

// ---- embedding cache ------------------------------------------------------------------------
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function concatCache({ opt }) {
  const c = { utterances: opt('utterances', 256), tokens: opt('tokens', 24), batch: 4, accumulation: 16, trials: opt('trials', 3) };
  console.log(
    `\n[concat_cache] SemEval seed classifier (Linear(768, 7, bias=false)) on mean-pooled RoBERTa-base text embeddings: one epoch of ${c.utterances} utterances × ${c.tokens} tokens, batch ${c.batch} × accumulation ${c.accumulation}, AdamW`,
  );
  console.log(
    `${c.trials} alternating trials of one epoch each: re-encoding every batch vs et.systems.semeval.embedUtterances' cache (read from disk every epoch)`,
  );
  et.manualSeed(0);
  const encoder = et.nn.RobertaModel.create({ ...robertaBase, type_vocab_size: 1 }, { addPoolingLayer: false }).eval();
  const ids = et.randint(3, robertaBase.vocab_size, [c.utterances, c.tokens]);
  const mask = et.ones([c.utterances, c.tokens], { dtype: 'int64' });
  const labels = et.randint(0, 7, [c.utterances]);
  const keys = Array.from({ length: c.utterances }, (_, i) => `${1 + (i >> 3)}_${1 + (i & 7)}`);
  const rows = (idx) => et.tensor(Float64Array.from(idx), { dtype: 'int64' });
  const encode = async (idx) => {
    const at = rows(idx);
    const m = mask.indexSelect(0, at);
    const { lastHiddenState } = await encoder.forward({ inputIds: ids.indexSelect(0, at), attentionMask: m });
    return { lastHiddenState, attentionMask: m };
  };
  const pool = ({ lastHiddenState: h, attentionMask: m }) => {
    const w = m.to({ dtype: h.dtype }).unsqueeze(2);
    return h.mul(w).sum(1).div(w.sum(1).clamp(1));
  };
  const model = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: robertaBase.hidden_size } });
  const optim = new et.optim.AdamW(model.parameters(), { lr: 1e-3 });
  // One epoch: batches of 4 utterances, an optimizer step every 16 batches.
  const epoch = async (features) => {
    let n = 0;
    for (let s = 0; s < c.utterances; s += c.batch) {
      const idx = Array.from({ length: Math.min(c.batch, c.utterances - s) }, (_, i) => s + i);
      const x = features ? features.indexSelect(0, rows(idx)) : await et.noGrad(async () => pool(await encode(idx)));
      const { loss } = await model.forward({ features: x, labels: labels.indexSelect(0, rows(idx)) });
      await loss.div(c.accumulation).backward();
      if (++n % c.accumulation === 0) {
        await optim.step();
        optim.zeroGrad();
      }
    }
    await optim.step();
    optim.zeroGrad();
  };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-concat-'));
  const cacheFile = path.join(dir, 'text.safetensors');
  let t0 = performance.now();
  await et.systems.semeval.embedUtterances(keys, encode, { cacheFile, batchSize: 16 });
  console.log(
    `building the cache once (encode ${c.utterances} utterances, write ${(fs.statSync(cacheFile).size / 1e6).toFixed(2)} MB): ${((performance.now() - t0) / 1000).toFixed(2)} s`,
  );
  const cached = async () => {
    const m = await et.systems.semeval.embedUtterances(
      keys,
      () => {
        throw new Error('the cache was not used');
      },
      { cacheFile },
    );
    const flat = new Float32Array(c.utterances * robertaBase.hidden_size);
    keys.forEach((k, i) => flat.set(m.get(k), i * robertaBase.hidden_size));
    await epoch(et.tensor(flat, { shape: [c.utterances, robertaBase.hidden_size] }));
  };
  const plain = () => epoch(null);
  await cached(); // warm-up
  await plain();
  const withCache = [],
    without = [];
  for (let t = 0; t < c.trials; t++) {
    t0 = performance.now();
    await plain();
    without.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    await cached();
    withCache.push((performance.now() - t0) / 1000);
    console.log(`  trial ${t + 1}: without cache ${without[t].toFixed(3)} s/epoch   with cache ${withCache[t].toFixed(3)} s/epoch`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const a = median(without),
    b = median(withCache);
  console.log(`median: without cache ${a.toFixed(3)} s/epoch, with cache ${b.toFixed(3)} s/epoch (${(a / b).toFixed(0)}× faster per epoch)`);
}

export const cases = {
  spectra: {
    config: { audio: wavlmBasePlus, text: robertaBase, fused: 1, num_class: 6, batch: 4, samples: 160000, tokens: 128, warmup: 1, steps: 1, trials: 3 },
    describe: (c) =>
      `SPECTRA fine-tuning step at base size (WavLM-base-plus + RoBERTa-base + ${c.fused} fused layer), batch ${c.batch}, ${c.samples / 16000} s audio + ${c.tokens} tokens per sample: forward, cross-entropy, backward, AdamW; Python: scripts/fixtures/spectra.py's reference on HF modules (train mode, layerdrop 0)`,
    setup: spectraSetup,
  },
  spectra_pretrain: {
    config: { audio: wavlmBasePlus, text: robertaBase, fused: 1, batch: 2, samples: 64000, tokens: 96, warmup: 1, steps: 1, trials: 3 },
    describe: (c) =>
      `SPECTRA pre-training step at base size (WavLM-base-plus + RoBERTa-base + ${c.fused} fused layer), batch ${c.batch} × (3 clips of ${c.samples / 16000} s, 2 texts of ${c.tokens} tokens): masked frames, 4 combinations, MLM + MAM + selection + span, backward, AdamW; Python: the ORIGINAL ATForPreTraining (SPECTRA_SRC) on HF modules`,
    setup: spectraPretrainSetup,
  },
  concat_cache: { run: concatCache },
};
