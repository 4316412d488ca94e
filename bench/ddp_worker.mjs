// One emotorch process of `npm run bench -- ddp`: a RoBERTa-base shaped classifier (RobertaModel
// without pooler + a linear head on <s>, dropout on) trained with AdamW on a fixed batch of
// `batch` sequences (split over the ranks when launched by emotorch-run). Rank 0 prints
// `RESULT {"ms_per_step": …}` (median over the timed steps).
import * as et from 'emotorch';

const cfg = JSON.parse(process.argv[2]);
const ddp = !!process.env.WORLD_SIZE;
et.setNumThreads(cfg.threads);
if (ddp) await et.distributed.init({ timeoutMs: 600_000 });
const world = ddp ? et.distributed.worldSize() : 1;
const rank = ddp ? et.distributed.rank() : 0;

class Classifier extends et.nn.Module {
  constructor() {
    super();
    this.roberta = this.registerModule('roberta', et.nn.RobertaModel.create(cfg.model, { addPoolingLayer: false }));
    this.head = this.registerModule('head', et.nn.Linear.create({ in_features: cfg.model.hidden_size, out_features: cfg.labels }));
  }
  async forward(b) {
    const { lastHiddenState } = await this.roberta.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask });
    const logits = await this.head.forward(lastHiddenState.select(1, 0));
    return { loss: et.functional.crossEntropy(logits, b.labels), logits };
  }
}

et.manualSeed(0);
const model = new Classifier();
const net = ddp ? new et.nn.DistributedDataParallel(model) : model;
const opt = new et.optim.AdamW(net.trainableParameters(), { lr: 1e-5, weightDecay: 0.01 });
// The same token ids as bench/ddp_torch.py (a fixed formula); each rank takes its rows.
const per = cfg.batch / world;
const ids = [],
  labels = [];
for (let i = rank * per; i < (rank + 1) * per; i++) {
  for (let j = 0; j < cfg.tokens; j++) ids.push(j === 0 ? 0 : 3 + ((i * 131 + j * 71) % (cfg.model.vocab_size - 3)));
  labels.push(i % cfg.labels);
}
const batch = {
  inputIds: et.tensor(ids, { shape: [per, cfg.tokens], dtype: 'int64' }),
  attentionMask: et.ones([per, cfg.tokens], { dtype: 'int64' }),
  labels: et.tensor(labels, { dtype: 'int64' }),
};
const times = [];
for (let s = 0; s < cfg.warmup + cfg.steps; s++) {
  const t0 = process.hrtime.bigint();
  const { loss } = await net.forward(batch);
  await loss.backward();
  await opt.step();
  opt.zeroGrad();
  loss.item();
  if (s >= cfg.warmup) times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
times.sort((a, b) => a - b);
if (ddp) await et.distributed.destroy();
if (rank === 0) console.log(`RESULT ${JSON.stringify({ ms_per_step: times[times.length >> 1], all: times })}`);
