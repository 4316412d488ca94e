/**
 * A training run in a child process (for the resume tests): node resume-child.cjs '<json>'
 * json: { dist, sampleDir, args (TrainingArguments), initSeed?, abortAt?: step, sigintAt?: step (Ctrl-C, with handleSigint), kill?: { step, at: 'write' | 'rename' } }
 * With `kill`, the process SIGKILLs itself in the middle of saving checkpoint-<step>: at its first
 * small-file write ('write': model and optimizer already written) or just before the folder's
 * rename ('rename': everything written).
 */
const fs = require('fs');
const path = require('path');
const cfg = JSON.parse(process.argv[2]);
const et = require(cfg.dist);

if (cfg.kill) {
  const tmp = `tmp-checkpoint-${cfg.kill.step}`;
  const hit = (p) => String(p).includes(tmp);
  const { writeFile, rename } = fs.promises;
  fs.promises.writeFile = (p, ...rest) => (cfg.kill.at === 'write' && hit(p) ? process.kill(process.pid, 'SIGKILL') : writeFile(p, ...rest));
  fs.promises.rename = (a, b) => (cfg.kill.at === 'rename' && hit(a) ? process.kill(process.pid, 'SIGKILL') : rename(a, b));
}

class Classifier extends et.nn.Module {
  constructor() {
    super();
    this.mlp = this.registerModule('mlp', et.nn.Mlp.create({ sizes: [32, 48, 7], dropout: 0.3 }));
  }
  async forward(b) {
    const logits = await this.mlp.forward(b.features);
    return b.labels ? { logits, loss: et.functional.crossEntropy(logits, b.labels) } : { logits };
  }
}
const collate = (items) => ({
  features: et.tensor(Float32Array.from(items.flatMap((x) => [...x.features])), { shape: [items.length, 32] }),
  labels: et.data.stackNumbers(
    items.map((x) => x.label),
    { dtype: 'int64' },
  ),
});

(async () => {
  const ds = await et.data.EcfDataset.fromFile(path.join(cfg.sampleDir, 'ecf.json'), {
    features: { files: { text: 'ecf_text.safetensors', audio: 'ecf_audio.safetensors' } },
  });
  const items = [];
  for await (const u of ds) if (u.label >= 0) items.push({ features: u.features, label: u.label });
  const train = items.filter((_, i) => i % 4 !== 0);
  const evalSet = items.filter((_, i) => i % 4 === 0);
  et.manualSeed(cfg.initSeed ?? 0);
  const model = new Classifier();
  const ac = new AbortController();
  const stopper = {
    name: 'stopper',
    onStepEnd(ctx) {
      if (ctx.state.global_step === cfg.abortAt) ac.abort();
      if (ctx.state.global_step === cfg.sigintAt) process.kill(process.pid, 'SIGINT');
    },
  };
  const trainer = new et.train.Trainer({
    signal: ac.signal,
    callbacks: [stopper],
    handleSigint: !!cfg.sigintAt,
    model,
    trainDataset: { length: train.length, get: (i) => train[i] },
    evalDataset: { length: evalSet.length, get: (i) => evalSet[i] },
    dataCollator: collate,
    args: cfg.args,
  });
  const r = await trainer.train();
  process.stdout.write(JSON.stringify({ globalStep: r.globalStep, stopReason: r.stopReason }));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
