// SPECTRA fine-tuning with the paper's recipe (et.systems.spectra.Spectra.finetune on et.train.Trainer),
// on generated sample data: IEMOCAP-style 6-class emotion with the previous turn (audio + text
// history, turn ids) and MOSI-style sentiment regression. The model is a tiny random-weight
// SPECTRA so that it runs on a CPU in a minute or two; metrics before and after training.
//   npm run example:spectra
//
// With the real checkpoint (GPU), the same calls at full size:
//   const train = await et.data.SpectraDataset.fromFile('data/iemocap/train.pkl', { task: 'iemocap' });
//   const valid = await et.data.SpectraDataset.fromFile('data/iemocap/valid.pkl', { task: 'iemocap' });
//   const { trainer } = await et.systems.spectra.Spectra.finetune({ task: 'iemocap', model: 'SPECTRA-base/',
//     train, eval: valid, args: { output_dir: 'runs/iemocap', bf16: true }, load: { device: 'cuda' } });
//   (SPECTRA-base/ = huggingface.co/publicstaticvo/SPECTRA-base: audio_config.json, text_config.json,
//    pytorch_model.bin; batch 24, 5 epochs, lr 2e-5, 10 s audio, 512 tokens are the defaults.)
import * as et from 'emotorch';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dataDir = process.env.EMOTORCH_SAMPLE_DIR ?? path.join(os.tmpdir(), 'emotorch-sample-data');
if (!fs.existsSync(path.join(dataDir, 'spectra_iemocap.pkl'))) {
  execFileSync(process.execPath, [path.join(here, '..', 'scripts', 'make-sample-data.mjs'), dataDir], { stdio: 'inherit' });
}
et.manualSeed(0);
const device = et.cuda.isAvailable() ? 'cuda' : 'cpu';

// A tiny SPECTRA: WavLM (7 conv layers, 320× downsampling) + RoBERTa + 1 fused layer, width 32.
const tiny = (task) =>
  et.systems.spectra.Spectra.create(
    {
      task,
      audio: {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 64,
        conv_dim: [32, 32, 32, 32, 32, 32, 32],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 4,
        num_buckets: 32,
        max_bucket_distance: 64,
        max_length: 12000,
      },
      text: {
        vocab_size: 256,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 64,
        max_position_embeddings: 130,
        max_length: 64,
      },
    },
    { device },
  );

// Deterministic split: every 4th item is held out.
const split = (ds) => {
  const pick = (keep) => {
    const idx = [...Array(ds.length).keys()].filter(keep);
    return { length: idx.length, get: (i) => ds.get(idx[i]) };
  };
  return [pick((i) => i % 4 !== 0), pick((i) => i % 4 === 0)];
};

async function score(model, ds, task, collate) {
  model.eval();
  const logits = [],
    labels = [];
  for (let s = 0; s < ds.length; s += 8) {
    const items = await Promise.all([...Array(Math.min(8, ds.length - s)).keys()].map((i) => ds.get(s + i)));
    const batch = et.systems.spectra.Spectra.collate(items, { ...collate, device });
    logits.push((await et.noGrad(() => model.forward({ ...batch, labels: null }))).logits.to({ device: 'cpu' }));
    labels.push(batch.labels.to({ device: 'cpu' }));
  }
  return et.systems.spectra.spectraMetrics(task)({ predictions: et.cat(logits, 0), labelIds: et.cat(labels, 0) });
}

const show = (m) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${Number.isFinite(v) ? v.toFixed(3) : v}`)
    .join(', ');

for (const [task, file, epochs, lr] of [
  ['iemocap', 'spectra_iemocap.pkl', 20, 3e-3],
  ['mosi', 'spectra_mosi.pkl', 12, 1e-3],
]) {
  const ds = await et.data.SpectraDataset.fromFile(path.join(dataDir, file), { task });
  const [train, test] = split(ds);
  const model = tiny(task);
  const collate = { audioLength: 12000, textLength: 64, multiAudio: true, regression: task === 'mosi' };
  console.log(`\n${task}: ${train.length} train / ${test.length} test items (${ds.layout} layout), ${model.numParameters()} parameters`);
  console.log('  before:', show(await score(model, test, task, collate)));
  const t0 = Date.now();
  const { output } = await et.systems.spectra.Spectra.finetune({
    task,
    model,
    train,
    eval: test,
    collate,
    args: {
      output_dir: fs.mkdtempSync(path.join(os.tmpdir(), `spectra-${task}-`)),
      per_device_train_batch_size: 8,
      per_device_eval_batch_size: 8,
      num_train_epochs: epochs,
      learning_rate: lr,
      logging_steps: 10,
      disable_tqdm: true,
      report_to: 'none',
      use_cpu: device === 'cpu',
    },
  });
  console.log(`  trained ${output.globalStep} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s, final train loss ${output.trainingLoss.toFixed(3)}`);
  console.log('  after: ', show(await score(model, test, task, collate)));
}
