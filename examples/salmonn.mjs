// SALMONN fine-tuned on the emotional-trajectory task (seed 002) with et.train.Trainer.
//
// Toy run on the CPU (no downloads):   npm run example:salmonn      (STEPS=… PER_CLASS=…)
//   A tiny SALMONN (random small Whisper, BEATs, Q-Former and LLaMA; the llama tokenizer of the
//   test fixtures) learns, from generated 3-turn dialogues whose turns carry their emotion in the
//   voice (pitch, contour, tremolo, loudness: scripts/make-sample-data.mjs), to answer the
//   fine-tune's target: a sentence and the `\n情绪序列: a -> b -> c` suffix. The transcript is not
//   fed here (its words name the emotions), so the audio is the only cue.
//
// The same script with the real checkpoints (on a GPU when one is present: bf16, the Trainer moves
// the model there):
//   SALMONN_WHISPER=whisper-large-v2/ SALMONN_BEATS=BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt \
//   SALMONN_LLM=vicuna-13b-v1.1/ SALMONN_CKPT=salmonn_v1.pth SALMONN_DATA=task1_train.json \
//   [SALMONN_CONFIG=config.json] STEPS=2000 npm run example:salmonn
//   The data is the challenge's JSON (dialogue_id, task, input_text, target_text, emotion_sequence,
//   audio_files) read with the challenge prompts and the transcript fed; the first HELD_OUT (12)
//   dialogues are held out. Only SALMONN's own parts train (LoRA, Q-Former, norms, projection),
//   with the fork's optimiser block (finetune.yaml: AdamW lr 3e-5, weight decay 0.05, warmup up to
//   3000 steps, cosine to 1e-5; batch 8, here 2 × 4 accumulation).
//
// Token accuracy, ROUGE-L and emotion-sequence accuracy (et.metrics) on the held-out dialogues are
// printed before and after, and one held-out answer.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const REAL = !!env.SALMONN_LLM;
const STEPS = Number(env.STEPS ?? 300);
const PER_CLASS = Number(env.PER_CLASS ?? 24);
const HELD_OUT = Number(env.HELD_OUT ?? 12);
et.manualSeed(0);

// ---- data: dialogues, each turn followed by 0.1 s of silence (the fork's EmoMultiTaskDataset)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'salmonn-example-'));
let ds;
if (REAL) {
  if (!env.SALMONN_DATA) throw new Error('SALMONN_DATA: the challenge JSON to fine-tune on');
  ds = await et.data.SalmonnDataset.fromFile(env.SALMONN_DATA, { prompts: { ...et.data.SALMONN_CHALLENGE_PROMPTS } });
} else {
  execFileSync(process.execPath, [path.join(root, 'scripts', 'make-sample-data.mjs'), dir, '--per-class', String(PER_CLASS)], { stdio: 'ignore' });
  ds = await et.data.SalmonnDataset.fromFile(path.join(dir, 'salmonn.json'), {
    includeInputText: false,
    prompts: { task1_emotional_trajectory: 'Describe how the emotion of the speaker changes.' },
  });
}
const items = [];
for (let i = 0; i < ds.length; i++) {
  const it = await ds.get(i);
  if (it.task === 'task1_emotional_trajectory') items.push(it);
}
const evalItems = items.slice(0, HELD_OUT);
const trainItems = items.slice(HELD_OUT);
const asDataset = (xs) => ({ length: xs.length, get: (i) => xs[i] });
const dataCollator = (batch) => et.systems.salmonn.Salmonn.collate(batch);
console.log(`${trainItems.length} training and ${evalItems.length} held-out dialogues; target e.g. ${JSON.stringify(evalItems[0].target)}`);

// ---- the model
let model;
if (REAL) {
  const config = env.SALMONN_CONFIG ? JSON.parse(fs.readFileSync(env.SALMONN_CONFIG, 'utf8')) : {};
  model = await et.systems.salmonn.Salmonn.fromPretrained({
    whisper: env.SALMONN_WHISPER,
    beats: env.SALMONN_BEATS || null,
    llm: env.SALMONN_LLM,
    checkpoint: env.SALMONN_CKPT || null,
    config: { max_txt_len: 512, ...config },
  });
  if (et.cuda.isAvailable()) await model.to({ device: 'cuda' });
} else {
  const tokenizer = await et.data.Tokenizer.fromFile(path.join(root, 'test', 'fixtures', 'tokenizers', 'llama', 'tokenizer.json'));
  const whisper = et.nn.WhisperEncoder.create({ d_model: 64, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 128 });
  const beats = et.nn.BeatsEncoder.create({
    embed_dim: 32,
    encoder_embed_dim: 32,
    encoder_layers: 1,
    encoder_attention_heads: 2,
    encoder_ffn_embed_dim: 64,
    conv_pos: 16,
    conv_pos_groups: 4,
    deep_norm: true,
    relative_position_embedding: true,
    gru_rel_pos: true,
    dropout: 0,
    attention_dropout: 0,
  });
  // Random toy weights need larger initial scales than the pretrained parts they stand for: with the
  // usual 0.02 the Q-Former's output hardly varies with the audio and the LLM's attention stays flat,
  // and nothing learns to listen (tried: emotion accuracy stays at chance).
  const llm = et.nn.LlamaForCausalLM.create({
    vocab_size: 1500,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 512,
    initializer_range: 0.15,
  });
  model = new et.systems.salmonn.Salmonn(
    { whisper, beats, llm, tokenizer },
    {
      qformer: { hidden_size: 64, num_attention_heads: 2, intermediate_size: 128, initializer_range: 0.1 },
      lora_rank: 16,
      lora_alpha: 32,
      lora_dropout: 0,
      max_txt_len: 64,
      num_beams: 1,
      max_new_tokens: 48,
    },
  );
  // A random LLaMA knows no words: let its output layer learn them too (a real Vicuna keeps it frozen).
  for (const [n, p] of model.llama_model.namedParameters()) if (n === 'lm_head.weight') p.requiresGrad = true;
}
console.log(`trainable parameters: ${model.numParameters(true)} of ${model.numParameters()}`);

// ---- evaluation: teacher-forced token accuracy and loss, then answers (greedy in the toy run, the
// original's 4-beam search with real checkpoints) scored with ROUGE-L and the emotion sequence
const gpu = REAL && et.cuda.isAvailable();
const amp = (fn) => (gpu ? et.autocast({ device: 'cuda', dtype: 'bfloat16' }, fn) : fn());
const EVAL_BATCH = REAL ? 2 : evalItems.length;
async function evaluate() {
  model.eval();
  const acc = new et.metrics.TokenAccuracy();
  let lossSum = 0;
  const answers = [];
  for (let i = 0; i < evalItems.length; i += EVAL_BATCH) {
    const part = evalItems.slice(i, i + EVAL_BATCH);
    const out = await et.noGrad(() => amp(() => model.forward(dataCollator(part))));
    acc.update(out.logits, out.labels);
    lossSum += out.loss.item() * part.length;
    answers.push(
      ...(await amp(() =>
        model.generate(
          part.map((x) => x.audio),
          part.map((x) => x.prompt),
        ),
      )),
    );
  }
  const seq = et.metrics.emotionSequenceAccuracy(
    answers,
    evalItems.map((x) => x.emotionSequence),
  );
  const rougeL = et.metrics.rouge(
    answers,
    evalItems.map((x) => x.target),
  ).rougeL.fmeasure;
  model.train();
  return { loss: lossSum / evalItems.length, tokenAccuracy: acc.compute().accuracy, rougeL, emotionExact: seq.exact, emotionPosition: seq.position, answers };
}
const show = (m) =>
  Object.fromEntries(
    Object.entries(m)
      .filter(([k]) => k !== 'answers')
      .map(([k, v]) => [k, Number(v.toFixed(3))]),
  );
// chance for the per-position emotion: always answering the training set's most frequent emotion
const counts = {};
for (const x of trainItems) for (const e of x.emotionSequence) counts[e] = (counts[e] ?? 0) + 1;
const majority = Object.entries(counts).sort((a, b) => b[1] - a[1])[0][0];
const chance = evalItems.flatMap((x) => x.emotionSequence).filter((e) => e === majority).length / (3 * evalItems.length);

const before = await evaluate();
console.log('before', show(before));

// ---- training with the Trainer
const out = path.join(dir, 'run');
const trainer = new et.train.Trainer({
  model,
  trainDataset: asDataset(trainItems),
  dataCollator,
  args: REAL
    ? {
        output_dir: out,
        max_steps: STEPS,
        per_device_train_batch_size: 2,
        gradient_accumulation_steps: 4,
        learning_rate: 3e-5,
        weight_decay: 0.05,
        warmup_steps: Math.min(3000, Math.ceil(STEPS / 10)),
        lr_scheduler_type: 'cosine_with_min_lr',
        lr_scheduler_kwargs: { min_lr: 1e-5 },
        logging_steps: 10,
        save_strategy: 'no',
        report_to: [],
        seed: 0,
        bf16: gpu,
      }
    : {
        output_dir: out,
        max_steps: STEPS,
        per_device_train_batch_size: 4,
        learning_rate: 3e-3,
        weight_decay: 0.01,
        warmup_steps: 10,
        lr_scheduler_type: 'linear',
        logging_steps: 10,
        save_strategy: 'no',
        report_to: [],
        seed: 0,
      },
});
trainer.on('log', (r) => {
  if (r.loss !== undefined) console.log(`step ${r.step} loss ${r.loss.toFixed(4)} lr ${r.learning_rate.toExponential(2)}`);
});
const t0 = Date.now();
await trainer.train();
console.log(`trained ${STEPS} steps in ${((Date.now() - t0) / 1000).toFixed(0)} s`);

const after = await evaluate();
console.log('after ', show(after));
console.log(`emotion position accuracy ${after.emotionPosition.toFixed(3)} vs chance ${chance.toFixed(3)} (always '${majority}')`);
console.log('held-out dialogue', evalItems[0].id, 'gold:', JSON.stringify(evalItems[0].target));
console.log('                 generated:', JSON.stringify(after.answers[0]));
fs.rmSync(dir, { recursive: true, force: true });
