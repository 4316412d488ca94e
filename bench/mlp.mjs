// emotorch side of `npm run bench -- mlp`: the same MLP, data and AdamW step as bench/torch_worker.py.
import * as et from 'emotorch';

async function setup(cfg) {
  et.manualSeed(0);
  const model = et.nn.Mlp.create({ sizes: cfg.sizes, activation: 'relu' });
  const opt = new et.optim.AdamW(model.parameters(), { lr: 1e-3 });
  const x = et.randn([cfg.batch, cfg.sizes[0]]);
  const y = et.randint(0, cfg.sizes[cfg.sizes.length - 1], [cfg.batch]);
  return async function step() {
    const loss = et.functional.crossEntropy(await model.forward(x), y);
    await loss.backward();
    await opt.step();
    opt.zeroGrad();
    return loss;
  };
}

export const cases = {
  mlp: {
    config: { sizes: [1024, 1024, 1024, 1024, 16], batch: 64, warmup: 10, steps: 40, trials: 7 },
    describe: (c) => `MLP ${c.sizes.join('→')} (3 × 1024 hidden, ReLU), batch ${c.batch}, cross-entropy + backward + AdamW step`,
    setup,
  },
};
