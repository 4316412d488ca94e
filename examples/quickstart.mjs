// Quickstart: train a small emotion classifier over concatenated per-modality utterance
// embeddings (the SemEval-2024 Task 3 setup, on synthetic embeddings), save it, load it back.
//   npm run example:quickstart
import * as et from 'emotorch';
import * as os from 'os';
import * as path from 'path';

const EMOTIONS = ['neutral', 'anger', 'joy', 'sadness'];
const DIM = 32; // per modality (text, audio)

console.log(`emotorch ${et.versions.emotorch} on libtorch ${et.versions.libtorch} (CUDA: ${et.versions.cuda})`);
const device = et.cuda.isAvailable() ? 'cuda' : 'cpu';
et.manualSeed(0);

// Synthetic utterances: each emotion has a centre in text space and in audio space; samples are
// noisy copies, and the two modalities are concatenated as in the seed's classifier.
const centres = et.randn([EMOTIONS.length, 2 * DIM]);
function batch(n) {
  const labels = et.randint(0, EMOTIONS.length, [n]);
  const x = centres.index(labels).add(et.randn([n, 2 * DIM]).mul(3.5));
  return { x: x.to({ device }), y: labels.to({ device }) };
}
const train = batch(2048);
const test = batch(512);

const model = et.nn.Mlp.create({ sizes: [2 * DIM, 64, EMOTIONS.length], activation: 'gelu', dropout: 0.1 }, { device });
const epochs = 10,
  batchSize = 64,
  steps = epochs * (train.x.shape[0] / batchSize);
const opt = new et.optim.AdamW(et.optim.decayGroups(model, 0.01), { lr: 3e-3 });
const sched = new et.optim.LRScheduler(opt, et.optim.schedules.linearWarmupCosine({ warmupSteps: steps / 10, totalSteps: steps, peakLr: 3e-3 }));

async function accuracy(split) {
  model.eval();
  const logits = await et.noGrad(() => model.forward(split.x));
  model.train();
  return logits.argmax(1).eq(split.y).float().mean().item();
}

console.log(`before training: test accuracy ${(100 * (await accuracy(test))).toFixed(1)}%`);
for (let epoch = 0; epoch < epochs; epoch++) {
  const order = et.randperm(train.x.shape[0]).to({ device });
  let total = 0;
  for (let i = 0; i < train.x.shape[0]; i += batchSize) {
    const idx = order.slice(0, i, i + batchSize);
    const loss = et.functional.crossEntropy(await model.forward(train.x.index(idx)), train.y.index(idx));
    await loss.backward();
    await et.optim.clipGradNorm(model.parameters(), 1.0);
    await opt.step();
    opt.zeroGrad();
    sched.step();
    total += loss.item();
  }
  console.log(`epoch ${epoch + 1}/${epochs}  loss ${(total / (train.x.shape[0] / batchSize)).toFixed(4)}  lr ${opt.getLr().toExponential(2)}`);
}
const acc = await accuracy(test);
console.log(`after training: test accuracy ${(100 * acc).toFixed(1)}%`);

const file = path.join(os.tmpdir(), 'emotorch-quickstart.safetensors');
await model.save(file, { metadata: { labels: EMOTIONS.join(',') } });
const again = et.nn.Mlp.create({ sizes: [2 * DIM, 64, EMOTIONS.length], activation: 'gelu' }, { device });
await again.load(file);
again.eval();
const probs = (await again.forward(test.x.slice(0, 0, 3))).softmax(-1).toArray();
probs.forEach((p, i) => console.log(`utterance ${i}: ${EMOTIONS[p.indexOf(Math.max(...p))]} (gold ${EMOTIONS[test.y.select(0, i).item()]})`));
console.log(`saved and reloaded ${file}`);
if (acc < 0.7) {
  console.error('accuracy is unexpectedly low');
  process.exit(1);
}
