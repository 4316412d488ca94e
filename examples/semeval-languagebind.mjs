// The SemEval-2024 Task 3 team's LanguageBind classifier, Experiment 2 (video + audio + language →
// Linear(768·3, 7, bias=False)), end to end on generated data: ECF 2.0 sample conversations, one
// ffmpeg-made clip per utterance (dia{D}utt{U}.mp4 with an audio track; its colour and tone follow
// the emotion), tiny random LanguageBind towers saved as released folders. Frozen towers with the
// embeddings cached once, then the team's TrainingArguments on the Trainer (bf16 autocast);
// weighted F1 per epoch; the ECAC submission file. Then LoRA on the video tower (the authors' fix
// for overfitting), trained end to end for one epoch.
//   npm run example:semeval
//
// Real data: the ECF 2.0 video folder and LanguageBind_Video_FT / LanguageBind_Audio_FT folders
// (config.json, pytorch_model.bin, tokenizer files) in place of the generated ones.
import * as et from 'emotorch';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
if (!et.audio.findFfmpeg()) {
  console.log('semeval-languagebind: skipped, ffmpeg is not on PATH (it decodes the clips)');
  process.exit(0);
}
const dataDir = process.env.EMOTORCH_SAMPLE_DIR ?? path.join(os.tmpdir(), 'emotorch-sample-data');
if (!fs.existsSync(path.join(dataDir, 'ecf.json'))) {
  execFileSync(process.execPath, [path.join(here, '..', 'scripts', 'make-sample-data.mjs'), dataDir], { stdio: 'inherit' });
}
et.manualSeed(0);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'semeval-lb-'));

// 1. One clip per utterance, as the ECF 2.0 video folder names them.
const ds0 = await et.data.EcfDataset.fromFile(path.join(dataDir, 'ecf.json'));
const items0 = await Promise.all([...Array(ds0.length).keys()].map((i) => ds0.get(i)));
const videoDir = path.join(work, 'videos');
fs.mkdirSync(videoDir);
const colour = { surprise: 'yellow', fear: 'purple', sadness: 'blue', neutral: 'gray', joy: 'orange', anger: 'red', disgust: 'green' };
const t0 = Date.now();
for (const it of items0) {
  const k = et.systems.semeval.languageBindLabel(it.emotion);
  execFileSync('ffmpeg', [
    '-v',
    'error',
    '-f',
    'lavfi',
    '-i',
    `color=c=${colour[it.emotion]}:s=96x64:r=10:d=1.5`,
    '-f',
    'lavfi',
    '-i',
    `sine=frequency=${300 + 150 * k}:duration=1.5`,
    '-shortest',
    '-c:v',
    'libx264',
    '-preset',
    'ultrafast',
    '-pix_fmt',
    'yuv420p',
    '-c:a',
    'aac',
    '-y',
    path.join(videoDir, it.videoName),
  ]);
}
console.log(`made ${items0.length} clips in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

// 2. Tiny random towers saved as LanguageBind folders (the released layout: config.json with
//    architectures ["CLIPModel"], weights, the CLIP tokenizer files).
const text = {
  vocab_size: 49408,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  max_position_embeddings: 77,
  hidden_act: 'gelu',
  eos_token_id: 2,
};
const vision = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, image_size: 224, patch_size: 32, hidden_act: 'gelu' };
const tokenizerDir = path.join(here, '..', 'test', 'fixtures', 'clip_tokenizer', 'languagebind');
async function releaseFolder(name, visionExtra) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const config = { projection_dim: 64, logit_scale_init_value: 2.6592, text_config: text, vision_config: { ...vision, ...visionExtra } };
  const model = et.nn.ClipModel.create({
    ...config,
    vision_config: { ...config.vision_config, image_size: visionExtra.num_mel_bins ? [visionExtra.num_mel_bins, visionExtra.target_length] : 224 },
  });
  await model.save(path.join(dir, 'model.safetensors'));
  fs.writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({ architectures: ['CLIPModel'], model_type: name.includes('Video') ? 'LanguageBindVideo' : 'LanguageBindAudio', ...config }, null, 2),
  );
  for (const f of fs.readdirSync(tokenizerDir)) fs.copyFileSync(path.join(tokenizerDir, f), path.join(dir, f));
  return dir;
}
const videoFolder = await releaseFolder('LanguageBind_Video_FT', { add_time_attn: true, num_frames: 8, lora_r: 0 });
const audioFolder = await releaseFolder('LanguageBind_Audio_FT', { add_time_attn: false, num_mel_bins: 112, target_length: 1036, lora_r: 0 });
const tokenizer = await et.data.Tokenizer.fromFile(audioFolder);

// 3. Frozen towers: each utterance's embeddings computed once and cached.
const modalities = ['video', 'audio', 'language'];
const lb = await et.systems.semeval.LanguageBind.fromPretrained({ video: videoFolder, audio: audioFolder });
const t1 = Date.now();
const files = await et.systems.semeval.languageBindEmbeddings(lb, items0, {
  videoDir,
  tokenizer,
  modalities,
  outDir: path.join(work, 'cache'),
  audio: { chunks: 'first' },
  onProgress: (done, total) => {
    if (done === total) console.log(`embedded ${total} utterances (video, audio, language) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
  },
});
const ds = await et.data.EcfDataset.fromFile(path.join(dataDir, 'ecf.json'), { features: { files, order: modalities } });
const items = await Promise.all([...Array(ds.length).keys()].map((i) => ds.get(i)));
const held = new Set(ds.conversations.filter((_, i) => i % 4 === 0).map((c) => c.id));
const subset = (keep) => {
  const xs = items.filter(keep);
  return { length: xs.length, get: (i) => xs[i] };
};
const train = subset((it) => !held.has(it.conversationId)),
  test = subset((it) => held.has(it.conversationId));

const head = et.systems.semeval.LanguageBindClassifier.create({ modalities, embedDim: 64 });
const perEpoch = [];
const trainer = new et.train.Trainer({
  model: head,
  trainDataset: train,
  evalDataset: test,
  dataCollator: (xs) => et.systems.semeval.languageBindCachedCollate(xs),
  computeMetrics: et.systems.semeval.languageBindMetrics,
  // the team's arguments; a larger learning rate than HF's default 5e-5 for 20 epochs of a few dozen items
  args: {
    ...et.systems.semeval.LANGUAGEBIND_SEMEVAL_ARGS,
    num_train_epochs: 20,
    gradient_accumulation_steps: 1,
    learning_rate: 5e-2,
    output_dir: path.join(work, 'run'),
    disable_tqdm: true,
    report_to: 'none',
  },
  callbacks: [{ onEvaluate: (_ctx, metrics) => perEpoch.push(metrics.eval_weighted_f1) }],
});
const before = await trainer.evaluate();
await trainer.train();
const after = await trainer.evaluate();
console.log(
  `frozen towers + cache, ${train.length} train / ${test.length} test utterances: weighted F1 ${before.eval_weighted_f1.toFixed(3)} -> ${after.eval_weighted_f1.toFixed(3)} (macro ${after.eval_macro_f1.toFixed(3)}; chance ≈ ${(1 / 7).toFixed(3)})`,
);
console.log(
  `  weighted F1 per epoch: ${perEpoch
    .slice(1, -1)
    .map((f) => f.toFixed(2))
    .join(' ')}`,
);

// Subtask 2 with the self-cause baseline on the predicted emotions, as a CodaLab submission.
const testItems = items.filter((it) => held.has(it.conversationId));
const { predictions } = await trainer.predict(test);
const pred = Array.from(predictions.argmax(-1).dataSync(), (k) => et.data.ECF_EMOTIONS.indexOf(et.systems.semeval.LANGUAGEBIND_ECF_LABELS[Number(k)]));
const submission = path.join(work, 'Subtask_2_pred.json');
et.metrics.writeEcfSubmission(submission, testItems, et.systems.semeval.selfCausePairs(testItems, pred));
console.log(`  wrote ${submission}`);

// 4. LoRA on the video tower (r 8 on temporal_attn, as LanguageBind's own LoRA), trained end to end.
const lbLora = await et.systems.semeval.LanguageBind.fromPretrained({ video: videoFolder, audio: audioFolder });
const loraLayers = et.nn.applyLora(lbLora.towers.video, {
  r: 8,
  alpha: 16,
  targetModules: ['temporal_attn.q_proj', 'temporal_attn.k_proj', 'temporal_attn.v_proj', 'temporal_attn.out_proj'].flatMap((t) =>
    [0, 1].map((l) => `vision_model.encoder.layers.${l}.${t}`),
  ),
});
lbLora.towers.audio.freeze();
lbLora.language.freeze();
const model = et.systems.semeval.LanguageBindClassifier.create({ modalities, binder: lbLora });
console.log(`LoRA: ${loraLayers.length} layers wrapped, ${model.numParameters(true)} of ${model.numParameters()} parameters trainable`);
const rawTrain = { length: train.length, get: (i) => train.get(i) };
const t2 = Date.now();
const lora = new et.train.Trainer({
  model,
  trainDataset: rawTrain,
  evalDataset: test,
  dataCollator: (xs) => et.systems.semeval.languageBindCollate(xs, { videoDir, modalities, tokenizer, audio: { chunks: 'first' } }),
  computeMetrics: et.systems.semeval.languageBindMetrics,
  args: {
    ...et.systems.semeval.LANGUAGEBIND_SEMEVAL_ARGS,
    num_train_epochs: 1,
    gradient_accumulation_steps: 1,
    learning_rate: 5e-3,
    save_strategy: 'no',
    output_dir: path.join(work, 'lora'),
    disable_tqdm: true,
    report_to: 'none',
  },
});
await lora.train();
const m = await lora.evaluate();
console.log(`LoRA towers, 1 epoch end to end in ${((Date.now() - t2) / 1000).toFixed(1)} s: weighted F1 ${m.eval_weighted_f1.toFixed(3)}`);
fs.rmSync(work, { recursive: true, force: true });
