// SALMONN fine-tuned with LoRA on the emotional-trajectory task, at toy size on the CPU:
//   npm run example:salmonn
// A tiny SALMONN (random small Whisper, BEATs and LLaMA; the llama tokenizer of the test fixtures)
// is trained with a plain AdamW loop on generated 3-turn dialogues whose emotions are audible
// (scripts/make-sample-data.mjs), then evaluated before/after with et.metrics.
//
// With the real checkpoints on a GPU, build the model with
//   et.systems.Salmonn.fromPretrained({ whisper: 'whisper-large-v2/', beats: 'BEATs_cpt2.pt',
//     llm: 'vicuna-13b-v1.1/', checkpoint: 'salmonn_v1.pth' })
// then `await model.to({ device: 'cuda', dtype: 'bfloat16' })` and run the same loop.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const STEPS = Number(process.env.STEPS ?? 120);
et.manualSeed(0);

// ---- data: 3-turn dialogues (turns joined with 0.1 s of silence, as EmoMultiTaskDataset)
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'salmonn-example-'));
execFileSync(process.execPath, [path.join(root, 'scripts', 'make-sample-data.mjs'), dir, '--per-class', '6'], { stdio: 'ignore' });
const ds = await et.data.SalmonnDataset.fromFile(path.join(dir, 'salmonn.json'), { minSeconds: 1, maxSeconds: 30 });
const items = [];
for (let i = 0; i < ds.length; i++) {
  const it = await ds.get(i);
  if (it.task !== 'task1_emotional_trajectory') continue;
  // the answer: the emotion sequence (the trajectory suffix, in words the toy tokenizer knows)
  items.push({ audio: it.audio, prompt: it.prompt, target: it.emotionSequence.join(' -> '), seq: it.emotionSequence });
}
const evalSet = items.slice(0, 4);
const train = items.slice(4);
console.log(`${train.length} training and ${evalSet.length} held-out dialogues`);

// ---- a tiny SALMONN
const tokenizer = await et.data.Tokenizer.fromFile(path.join(root, 'test', 'fixtures', 'tokenizers', 'llama', 'tokenizer.json'));
const whisper = et.nn.WhisperEncoder.create({ d_model: 32, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 64 });
const beats = et.nn.BeatsEncoder.create({ embed_dim: 32, encoder_embed_dim: 32, encoder_layers: 1, encoder_attention_heads: 2,
  encoder_ffn_embed_dim: 64, conv_pos: 16, conv_pos_groups: 4, deep_norm: true, relative_position_embedding: true, gru_rel_pos: true,
  dropout: 0, attention_dropout: 0 });
const llm = et.nn.LlamaForCausalLM.create({ vocab_size: 1500, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512 });
const model = new et.systems.Salmonn({ whisper, beats, llm, tokenizer }, {
  qformer: { hidden_size: 32, num_attention_heads: 2, intermediate_size: 64 }, lora_rank: 8, lora_alpha: 32, lora_dropout: 0.05,
  max_txt_len: 64, num_beams: 1, max_new_tokens: 16,
});
console.log(`trainable parameters: ${model.numParameters(true)} of ${model.numParameters()}`);

async function evaluate() {
  model.eval();
  const batch = { audio: evalSet.map((x) => x.audio), prompt: evalSet.map((x) => x.prompt), target: evalSet.map((x) => x.target) };
  const out = await et.noGrad(() => model.forward(batch));
  const acc = et.metrics.tokenAccuracy(out.logits, out.labels).accuracy;
  const gens = [];
  for (const x of evalSet) gens.push((await model.generate([x.audio], x.prompt))[0]);
  const seq = et.metrics.emotionSequenceAccuracy(gens.map((g) => `情绪序列: ${g}`), evalSet.map((x) => x.seq));
  const rougeL = et.metrics.rouge(gens, evalSet.map((x) => x.target)).rougeL.fmeasure;
  model.train();
  return { loss: out.loss.item(), tokenAccuracy: acc, rougeL, emotionPosition: seq.position, gens };
}

const before = await evaluate();
console.log('before', { ...before, gens: undefined });
const opt = new et.optim.AdamW(model.trainableParameters(), { lr: 1e-2 });
model.train();
for (let step = 1; step <= STEPS; step++) {
  const b = [train[(2 * step) % train.length], train[(2 * step + 1) % train.length]];
  const { loss } = await model.forward({ audio: b.map((x) => x.audio), prompt: b.map((x) => x.prompt), target: b.map((x) => x.target) });
  await loss.backward();
  await opt.step();
  opt.zeroGrad();
  if (step % 10 === 0) console.log(`step ${step} loss ${loss.item().toFixed(4)}`);
}
const after = await evaluate();
console.log('after', { ...after, gens: undefined });
console.log('held-out dialogue:', JSON.stringify(evalSet[0].target), '→', JSON.stringify(after.gens[0]));
fs.rmSync(dir, { recursive: true, force: true });
