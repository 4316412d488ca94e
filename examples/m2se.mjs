// M2SE / EmoVerse (seed 004) on InternVL2, the model the original fine-tunes: multistage, multitask
// LoRA instruction tuning over ms-swift records with pictures and videos, scored with M2SE's
// compute_result (et.metrics.m2seComputeResult).
//
// Toy run on the CPU (no downloads, a few minutes on 2 cores):   npm run example:m2se
//   (EPOCHS1=… EPOCHS2=… PER_CLASS=…; needs ffmpeg)
//   A tiny random InternVL2 (InternViT 2 layers on 56-px tiles + mlp1 + a 2-layer InternLM2, the
//   llama tokenizer of the test fixtures with InternVL2's special tokens) is tuned in two stages on
//   generated records of the three M2SE tasks, where what decides the answer is where M2SE's data
//   has it:
//   - sentiment: a short video (ffmpeg-made, 12 frames) whose colour says it: green clips are
//     "Positive.", red ones "Negative."; the words are the same for both, so only the frames tell;
//   - emotion (MELD's query and its seven answers): a picture whose colour says the emotion, the
//     words neutral; each record's picture is one of four noisy variants of its colour;
//   - emotion cause (ECF's query: a conversation with an emotion per utterance; the answer
//     "k_emotion,j"): text alone, as ECF 2.0's conversations.
//   The vision tower is frozen (as ms-swift leaves it); LoRA on every Linear of the LLM and mlp1.
//   Stage 1 learns sentiment and emotion; stage 2 starts from stage 1's adapter and learns emotion
//   cause with a replay of stage 1's data. Held-out records are answered greedily (m2seInfer ->
//   swift-infer JSONL) and scored before training, after stage 1 and after stage 2.
//
// A random model knows no language, so LoRA here has rank 16 and a larger learning rate than the
// recipe's (r 8, lr 1e-4, for a pretrained model), with batches of 8 in one forward.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const PER_CLASS = Number(env.PER_CLASS ?? 16);
const EPOCHS1 = Number(env.EPOCHS1 ?? 12);
const EPOCHS2 = Number(env.EPOCHS2 ?? 12);
const TEST_PER_TASK = Number(env.TEST_PER_TASK ?? 28);
et.manualSeed(0);
et.setNumThreads(Math.max(1, Math.min(4, os.cpus().length)));

let seed = 12345;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const shuffle = (xs) => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs;
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'm2se-internvl-example-'));

// ---- media made by ffmpeg: coloured clips and pictures with noise
const ffmpeg = (...a) => execFileSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', ...a]);
const COLOURS = { Joy: 'yellow', Sadness: 'blue', Anger: 'red', Fear: 'purple', Surprise: 'orange', Disgust: 'green', Neutral: 'gray' };
const EMOTIONS = Object.keys(COLOURS);
const clips = { Positive: [], Negative: [] };
for (const [label, colour] of [
  ['Positive', 'green'],
  ['Negative', 'red'],
]) {
  for (let k = 0; k < 4; k++) {
    const f = path.join(dir, `${label.toLowerCase()}-${k}.mp4`);
    ffmpeg('-f', 'lavfi', '-i', `color=c=${colour}:s=64x48:r=12:d=1`, '-vf', `noise=alls=${20 + 5 * k}:allf=t`, '-c:v', 'libx264', '-pix_fmt', 'yuv420p', f);
    clips[label].push(path.basename(f));
  }
}
const pictures = Object.fromEntries(EMOTIONS.map((e) => [e, []]));
for (const [e, colour] of Object.entries(COLOURS)) {
  for (let k = 0; k < 4; k++) {
    const f = path.join(dir, `${e.toLowerCase()}-${k}.png`);
    ffmpeg('-f', 'lavfi', '-i', `color=c=${colour}:s=${k % 2 ? '80x56' : '56x56'}:d=1`, '-vf', `noise=alls=${15 + 5 * k}:allf=u`, '-frames:v', '1', f);
    pictures[e].push(path.basename(f));
  }
}

// ---- generated records, ms-swift's format (media paths relative to the dataset file)
const NAMES = ['Alice', 'Bob', 'Carol', 'Dave', 'Emma', 'Frank'];
const THINGS = ['the party', 'the movie', 'the trip', 'the meeting', 'the dinner', 'the game'];
const CUES = { Joy: 'happy', Sadness: 'sad', Anger: 'angry', Fear: 'afraid', Surprise: 'surprised', Disgust: 'disgusted' };
const said = () => `${pick(NAMES)} talked about ${pick(THINGS)}`;
const sentiment = (label) => ({
  query: `<video>The person says: '${said()}' Please determine the sentiment of the video: positive or negative.`,
  response: `${label}.`,
  videos: [pick(clips[label])],
});
const emotion = (label) => ({
  query: `<image>The person says: '${said()}' Please determine which emotion label in the picture represents: anger, sadness, surprise, disgust, joy, neutral or fear.`,
  response: `${label}.`,
  images: [pick(pictures[label])],
});
const PAIR_EMOTIONS = Object.keys(CUES);
const cause = (label) => {
  const n = 2 + Math.floor(rand() * 2);
  const byOther = rand() < 0.5;
  const lines = [];
  for (let i = 1; i < n; i++) lines.push(`${i}_neutral. ${pick(NAMES)}: ${said()}`);
  const target = `${n}_${label.toLowerCase()}. ${pick(NAMES)}: I am ${CUES[label]}${byOther ? ' because of what you said' : ` about ${pick(THINGS)}`}`;
  lines.push(target);
  return {
    query: `Below is a conversation with an emotion label for each utterance. Identify the utterances that elicited the emotion in the target utterance.\nInput conversation:${lines.join('\n')}\nTarget utterance:${target}\nThe emotion-cause indices of the target utterance are:`,
    response: `${n}_${label.toLowerCase()},${byOther ? n - 1 : n}`,
  };
};
const make = (fn, labels, perClass) => labels.flatMap((l) => Array.from({ length: perClass }, () => fn(l)));
const train = {
  sentiment: make(sentiment, ['Positive', 'Negative'], PER_CLASS * 2),
  emotion: make(emotion, EMOTIONS, PER_CLASS),
  cause: make(cause, PAIR_EMOTIONS, PER_CLASS),
};
const test = {
  sentiment: make(sentiment, ['Positive', 'Negative'], Math.round(TEST_PER_TASK / 2)),
  emotion: make(emotion, EMOTIONS, Math.round(TEST_PER_TASK / 7)),
  pairs: make(cause, PAIR_EMOTIONS, Math.round(TEST_PER_TASK / 6)),
};
const write = (name, recs) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(recs, null, 1));
  return f;
};
const stage1 = write('emt_data_first.json', shuffle([...train.sentiment, ...train.emotion]));
const stage2 = write(
  'emt_data_second.json',
  shuffle([...train.cause, ...train.sentiment.filter((_, i) => i % 3 === 0), ...train.emotion.filter((_, i) => i % 3 === 0)]),
);
const testFiles = Object.fromEntries(Object.entries(test).map(([k, v]) => [k, write(`${k}_test.json`, v)]));
console.log(
  `media: ${clips.Positive.length + clips.Negative.length} clips, ${EMOTIONS.length * 4} pictures (ffmpeg); stage 1: ${train.sentiment.length + train.emotion.length} records, stage 2: ${JSON.parse(fs.readFileSync(stage2, 'utf8')).length}; test: ${Object.values(
    test,
  )
    .map((v) => v.length)
    .join(' / ')}`,
);

// ---- the model: a tiny random InternVL2 (InternLM2 LLM, as EmoVerse-8B) and its tokenizer
const tokenizer = await et.data.Tokenizer.fromFile(path.join(root, 'test', 'fixtures', 'm2se_internvl', 'tokenizer.json'));
const vocab = tokenizer.vocabSize;
const model = et.systems.m2se.InternVL.create({
  vision_config: {
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    patch_size: 14,
    image_size: 56,
    qkv_bias: true,
    qk_normalization: false,
    norm_type: 'layer_norm',
    drop_path_rate: 0,
  },
  llm_config: {
    architectures: ['InternLM2ForCausalLM'],
    vocab_size: vocab,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 4096,
    rope_theta: 1000000,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    initializer_range: 0.15,
  },
  downsample_ratio: 0.5,
  ps_version: 'v2',
  force_image_size: 56,
  template: 'internlm2-chat',
});
console.log(`InternVL2: ${model.numImageToken} image tokens per tile; ${model.parameters().reduce((a, p) => a + p.numel, 0)} parameters`);

async function evaluate(tag) {
  const out = {};
  for (const [task, file] of Object.entries(testFiles)) {
    const jsonl = path.join(dir, `${tag.replace(/ /g, '-')}-${task}.jsonl`);
    await et.systems.m2se.m2seInfer({ model, tokenizer, dataset: file, outFile: jsonl, maxNewTokens: task === 'pairs' ? 10 : 6 });
    const r = et.metrics.m2seComputeResult(jsonl, task);
    out[task] = task === 'pairs' ? { F1: r.micro.f1, WF1: r.weightedF1 } : { accuracy: r.accuracy, weightedF1: r.weightedF1 };
  }
  const f = (x) => x.toFixed(3);
  console.log(
    `${tag.padEnd(14)} sentiment (from the video) acc ${f(out.sentiment.accuracy)} | emotion (from the picture) acc ${f(out.emotion.accuracy)} wF1 ${f(out.emotion.weightedF1)} | cause pairs F1 ${f(out.pairs.F1)}`,
  );
  return out;
}
console.log('chance: sentiment 0.5, emotion 1/7 = 0.143; a random model writes no label, so it starts at 0');
const before = await evaluate('before');

const args = {
  per_device_train_batch_size: 8,
  gradient_accumulation_steps: 1,
  learning_rate: 3e-3,
  warmup_ratio: 0.05,
  lr_scheduler_type: 'cosine',
  save_strategy: 'no',
  logging_steps: 10,
};
const lora = { r: 16, alpha: 32, dropout: 0 }; // targets: ms-swift's default for InternVL2 (every Linear of the LLM and mlp1)
const t0 = Date.now();
const [r1] = await et.systems.m2se.m2seStages({
  model,
  tokenizer,
  lora,
  outputDir: path.join(dir, 'runs'),
  stages: [{ datasets: [stage1], args: { ...args, num_train_epochs: EPOCHS1 } }],
});
const acc = (out) =>
  JSON.parse(
    fs
      .readFileSync(path.join(out, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .filter((l) => l.includes('"acc"'))
      .at(-1) ?? '{}',
  ).acc;
console.log(
  `stage 1: ${r1.examples} examples, ${r1.globalStep} steps, training loss ${r1.trainingLoss.toFixed(3)}, last logged swift acc (sentence) ${acc(r1.outputDir)}`,
);
const after1 = await evaluate('after stage 1');
const [r2] = await et.systems.m2se.m2seStages({
  model,
  tokenizer,
  outputDir: path.join(dir, 'runs-2'),
  stages: [{ datasets: [stage2], args: { ...args, num_train_epochs: EPOCHS2 } }],
});
console.log(
  `stage 2: ${r2.examples} examples, ${r2.globalStep} steps, training loss ${r2.trainingLoss.toFixed(3)}, last logged acc ${acc(r2.outputDir)} (${((Date.now() - t0) / 1000).toFixed(0)} s of training)`,
);
const after2 = await evaluate('after stage 2');

const above = after2.sentiment.accuracy > 0.5 && after2.emotion.accuracy > 1 / 7 && after2.pairs.F1 > before.pairs.F1;
console.log(
  above
    ? 'after the two stages every task scores above chance: the video and picture tasks through the vision tower'
    : 'WARNING: some task is not above chance after training',
);
void after1;
fs.rmSync(dir, { recursive: true, force: true });
if (!above) process.exitCode = 1;
