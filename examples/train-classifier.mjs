// Train an emotion classifier with et.train.Trainer on the sample data (ECF 2.0 utterances with
// per-modality embeddings, as the SemEval-2024 Task 3 experiments train), with HF
// TrainingArguments: evaluation and checkpoints every epoch, the best model kept and restored,
// early stopping, a progress bar, log.jsonl, SVG learning curves and TensorBoard files.
//   npm run example:train-classifier [-- outDir]
import * as et from 'emotorch';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-train-'));
const dataDir = path.join(out, 'data');
console.log(`emotorch ${et.versions.emotorch} on libtorch ${et.versions.libtorch}; writing to ${out}`);

// 1. Data: the sample ECF conversations with 16-dim text and audio embeddings per utterance.
const made = spawnSync(process.execPath, [path.join(here, '..', 'scripts', 'make-sample-data.mjs'), dataDir, '--per-class', '16'], { encoding: 'utf8' });
if (made.status !== 0) throw new Error(made.stderr);
const ecf = await et.data.EcfDataset.fromFile(path.join(dataDir, 'ecf.json'), {
  features: { files: { text: 'ecf_text.safetensors', audio: 'ecf_audio.safetensors' } },
});
const items = [];
for await (const u of ecf) if (u.label >= 0) items.push({ features: u.features, label: u.label });
const split = (keep) => {
  const xs = items.filter((_, i) => keep(i));
  return { length: xs.length, get: (i) => xs[i] };
};
const trainSet = split((i) => i % 5 !== 0);
const evalSet = split((i) => i % 5 === 0);

// 2. A model in the forward convention: named inputs in, { logits, loss } out.
class Classifier extends et.nn.Module {
  constructor() {
    super();
    this.mlp = this.registerModule('mlp', et.nn.Mlp.create({ sizes: [ecf.featureSize, 64, et.data.ECF_EMOTIONS.length], activation: 'gelu', dropout: 0.1 }));
  }
  async forward({ features, labels }) {
    const logits = await this.mlp.forward(features);
    return labels ? { logits, loss: et.functional.crossEntropy(logits, labels) } : { logits };
  }
}
const dataCollator = (batch) => ({
  features: et.tensor(Float32Array.from(batch.flatMap((x) => [...x.features])), { shape: [batch.length, ecf.featureSize] }),
  labels: et.data.stackNumbers(
    batch.map((x) => x.label),
    { dtype: 'int64' },
  ),
});
const computeMetrics = ({ predictions, labelIds }) => ({ accuracy: predictions.argmax(-1).eq(labelIds).float().mean().item() });

// 3. The Trainer, with the SemEval experiment's TrainingArguments where they apply.
et.manualSeed(0);
const trainer = new et.train.Trainer({
  model: new Classifier(),
  trainDataset: trainSet,
  evalDataset: evalSet,
  dataCollator,
  computeMetrics,
  callbacks: [new et.train.EarlyStoppingCallback({ patience: 3 })],
  handleSigint: true, // Ctrl-C: finish the step, save a checkpoint, stop
  args: {
    output_dir: out,
    num_train_epochs: 15,
    per_device_train_batch_size: 16,
    per_device_eval_batch_size: 32,
    learning_rate: 3e-3,
    weight_decay: 0.01,
    warmup_ratio: 0.1,
    lr_scheduler_type: 'cosine',
    logging_steps: 5,
    eval_strategy: 'epoch',
    save_strategy: 'epoch',
    save_total_limit: 2,
    load_best_model_at_end: true,
    report_to: ['tensorboard'],
    seed: 0, // best model by eval loss (the default metric)
  },
});
const result = await trainer.train();
const final = await trainer.evaluate();
console.log(
  `stopped: ${result.stopReason} after ${result.globalStep} steps; best eval loss ${trainer.state.best_metric} at ${trainer.state.best_model_checkpoint}`,
);
console.log(`restored best model: eval accuracy ${final.eval_accuracy.toFixed(3)}, eval loss ${final.eval_loss.toFixed(4)}`);
console.log(
  `files: ${fs
    .readdirSync(out)
    .filter((f) => f !== 'data')
    .sort()
    .join(', ')}`,
);
