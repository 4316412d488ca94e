// One emotorch rank of `npm run bench -- zero`: a LLaMA (et.nn.LlamaForCausalLM in bfloat16, random
// weights) fully fine-tuned under et.distributed.ShardedDataParallel at cfg.stage (float32 master
// shards, float32 reduction), AdamW, on a fixed batch of token ids (bench/zero_torch.py's formula).
// Each rank prints `RESULT {...}`: median step time and its peak RSS.
import * as et from 'emotorch';

const cfg = JSON.parse(process.argv[2]);
et.setNumThreads(cfg.threads);
await et.distributed.init({ timeoutMs: 1_800_000 });
const rank = et.distributed.rank();
et.manualSeed(0);
const model = et.nn.LlamaForCausalLM.create(cfg.model, { dtype: 'bfloat16' });
model.train();
const zero = new et.distributed.ShardedDataParallel(model, { stage: cfg.stage });
await zero.ready;
const opt = new et.optim.AdamW(zero.trainableParameters(), { lr: 1e-5, weightDecay: 0 });
const V = cfg.model.vocab_size;
const ids = [];
for (let i = 0; i < cfg.batch; i++) for (let j = 0; j < cfg.tokens; j++) ids.push((i * 131 + j * 71 + rank * 17) % V);
const inputIds = et.tensor(ids, { shape: [cfg.batch, cfg.tokens], dtype: 'int64' });
const times = [];
for (let s = 0; s < cfg.warmup + cfg.steps; s++) {
  const t0 = process.hrtime.bigint();
  const { loss } = await zero.forward({ inputIds, labels: inputIds });
  await loss.backward();
  await opt.step();
  opt.zeroGrad();
  loss.item();
  if (s >= cfg.warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
await et.distributed.barrier();
console.log(`RESULT ${JSON.stringify({ rank, ms_per_step: times[times.length >> 1], all: times, peak_rss: process.resourceUsage().maxRSS * 1024 })}`);
await et.distributed.destroy();
