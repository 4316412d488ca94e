// USDM's documented path from the command line, as the USDM READMEs run it, on a generated
// DailyTalk-shaped folder and tiny random models (no downloads, about a minute on a CPU):
//   npx emotorch usdm preprocess   (preprocess/fine-tuning/dailytalk_single_turn.py's flags)
//   npx emotorch usdm sft          (src/train_sft.py's flags)
//   npx emotorch usdm infer        (src/inference.py's flags)
// The stand-ins, written to a temporary folder: a DailyTalk layout (data/<n>/<turn>_<speaker>_d<n>.wav
// and the split files) of generated tones; a tokenizer laid out like USDM's (characters, then
// <|continue|>, <|correspond|>, 32 units, <pad>); a tiny random LLaMA as "naver-ai/USTM"; a tiny
// random XLS-R-shaped encoder with 32 centroids drawn from its own frames, read at layer 2.
// With the real ones: --pretrained_model_name_or_path naver-ai/USTM --model_cache_dir <cache> and
// xlsr2_1b_v2.pt / kmeans_10k.npy in that cache (or --xlsr / --kmeans), --layer 35 (the default).
//   npm run example:usdm-cli
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { createRequire } from 'module';
import * as os from 'os';
import * as path from 'path';
import * as et from 'emotorch';

const CLI = path.join(path.dirname(createRequire(import.meta.url).resolve('emotorch')), 'cli', 'main.js');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-usdm-cli-'));
const t0 = Date.now();
const secs = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
et.manualSeed(0);
let seed = 7;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

function emotorch(...args) {
  console.log(`$ npx emotorch ${args.map((a) => (a.startsWith(root) ? `…${a.slice(root.length)}` : a)).join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const show = (s) =>
    s
      .trim()
      .split('\n')
      .filter(Boolean)
      .slice(-3)
      .forEach((l) => console.log(`  ${l.length > 160 ? `${l.slice(0, 160)}…` : l}`));
  show(r.stderr);
  show(r.stdout);
  if (r.status !== 0) throw new Error(`emotorch ${args[0]} ${args[1]} exited ${r.status}`);
  return r.stdout;
}

// ---- a DailyTalk-shaped folder: 8 dialogues of 4 turns, speakers alternating; each word a tone
const WORDS = ['hello', 'hi', 'how', 'are', 'you', 'fine', 'thanks', 'good', 'night', 'sleep', 'well', 'see', 'soon', 'bye'];
const data = path.join(root, 'dailytalk', 'data'),
  raw = path.join(root, 'dailytalk', 'raw');
const split = { train: [], test: [] };
for (let d = 0; d < 8; d++) {
  for (let t = 0; t < 4; t++) {
    const words = Array.from({ length: 2 + Math.floor(rand() * 2) }, () => WORDS[Math.floor(rand() * WORDS.length)]);
    const wave = [];
    for (const w of words) {
      const f = 200 + 60 * WORDS.indexOf(w);
      for (let i = 0; i < 2400; i++) wave.push(0.3 * Math.sin((2 * Math.PI * f * i) / 16000) + 0.02 * (rand() - 0.5));
      for (let i = 0; i < 800; i++) wave.push(0.01 * (rand() - 0.5));
    }
    const id = `${t}_${1 + (t % 2)}_d${d}`;
    fs.mkdirSync(path.join(data, String(d)), { recursive: true });
    fs.writeFileSync(path.join(data, String(d), `${id}.wav`), et.audio.encodeWav(new Float32Array(wave), 16000));
    split[d < 6 ? 'train' : 'test'].push(`${id}|{}|${words.join(' ')}|${1 + (t % 2)}`);
  }
}
fs.mkdirSync(raw, { recursive: true });
for (const s of ['train', 'test']) fs.writeFileSync(path.join(raw, `${s}.txt`), split[s].join('\n'));

// ---- the tokenizer: "▁", "\n", letters, then <|continue|>, <|correspond|>, the units and <pad>
const K = 32,
  LETTER0 = 5,
  NEWLINE = 3,
  SPACE = 4,
  CONTINUE = LETTER0 + 36,
  CORRESPOND = CONTINUE + 1,
  UNIT0 = CONTINUE + 2,
  PAD = UNIT0 + K,
  V = PAD + 1;
const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2, '\n': NEWLINE, '▁': SPACE };
[..."abcdefghijklmnopqrstuvwxyz.,'?!-:;()"].forEach((c, i) => {
  vocab[c] = LETTER0 + i;
});
const special = [
  [0, '<unk>'],
  [1, '<s>'],
  [2, '</s>'],
  [CONTINUE, '<|continue|>'],
  [CORRESPOND, '<|correspond|>'],
  ...Array.from({ length: K }, (_, u) => [UNIT0 + u, `<|unit${u}|>`]),
  [PAD, '<pad>'],
];
const tokenizerJson = {
  version: '1.0',
  truncation: null,
  padding: null,
  pre_tokenizer: null,
  post_processor: null,
  added_tokens: special.map(([id, content]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
  normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
  decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'Fuse' }] },
  model: {
    type: 'BPE',
    dropout: null,
    unk_token: '<unk>',
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    vocab,
    merges: [],
  },
};
const ustm = path.join(root, 'USTM');
fs.mkdirSync(ustm);
fs.writeFileSync(path.join(ustm, 'tokenizer.json'), JSON.stringify(tokenizerJson));

// ---- "naver-ai/USTM": a tiny random LLaMA with that vocabulary
const llmConfig = {
  model_type: 'llama',
  architectures: ['LlamaForCausalLM'],
  vocab_size: V,
  hidden_size: 96,
  intermediate_size: 256,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 512,
  initializer_range: 0.05,
  rms_norm_eps: 1e-6,
  bos_token_id: 1,
  eos_token_id: 2,
  tie_word_embeddings: false,
};
await et.nn.LlamaForCausalLM.create(llmConfig).save(path.join(ustm, 'model.safetensors'));
fs.writeFileSync(path.join(ustm, 'config.json'), JSON.stringify(llmConfig));

// ---- the unit extractor: a tiny XLS-R-shaped encoder and centroids from its own frames (layer 2)
const xlsrConfig = {
  model_type: 'wav2vec2',
  conv_dim: [32, 32, 32, 32, 32, 32, 32],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: 64,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  intermediate_size: 128,
  num_conv_pos_embeddings: 16,
  num_conv_pos_embedding_groups: 4,
};
const xlsr = path.join(root, 'xlsr');
fs.mkdirSync(xlsr);
const encoder = et.nn.Wav2Vec2Model.create(xlsrConfig).eval();
await encoder.save(path.join(xlsr, 'model.safetensors'));
fs.writeFileSync(path.join(xlsr, 'config.json'), JSON.stringify(xlsrConfig));
const frames = [];
for (const line of split.train.slice(0, 8)) {
  const id = line.split('|')[0];
  const { samples } = await et.audio.readAudio(path.join(data, id.split('_d')[1], `${id}.wav`), { sampleRate: 16000 });
  const x = et.tensor(samples, { shape: [1, samples.length] });
  const norm = x.sub(x.mean()).div(x.sub(x.mean()).square().mean().add(1e-5).sqrt());
  frames.push(...(await et.noGrad(() => encoder.hiddenStateAt(norm, 2))).hiddenState.toArray()[0]);
}
const centroids = new Float32Array(Array.from({ length: K }, () => frames[Math.floor(rand() * frames.length)]).flat());
// kmeans.npy: a float32 (K, 64) array in numpy's .npy format
const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${K}, 64), }`;
const pad = 64 - ((10 + header.length + 1) % 64);
const npyHead = Buffer.concat([Buffer.from([0x93]), Buffer.from('NUMPY'), Buffer.from([1, 0]), Buffer.alloc(2), Buffer.from(`${header}${' '.repeat(pad)}\n`)]);
npyHead.writeUInt16LE(npyHead.length - 10, 8);
fs.writeFileSync(path.join(root, 'kmeans.npy'), Buffer.concat([npyHead, Buffer.from(centroids.buffer)]));
console.log(`stand-ins written to ${root} (${secs()})\n`);

// ---- the three READMEs' commands
const pre = path.join(root, 'preprocessed');
emotorch(
  'usdm',
  'preprocess',
  '--pretrained_model_name_or_path',
  ustm,
  '--model_cache_dir',
  path.join(root, 'cache'),
  '--data_dir',
  data,
  '--train_metadata_path',
  path.join(raw, 'train.txt'),
  '--test_metadata_path',
  path.join(raw, 'test.txt'),
  '--output_path',
  pre,
  '--xlsr',
  xlsr,
  '--kmeans',
  path.join(root, 'kmeans.npy'),
  '--layer',
  '2',
);
const sft = path.join(root, 'sft');
emotorch(
  'usdm',
  'sft',
  '--output_dir',
  sft,
  '--data_path_train',
  path.join(pre, 'train.txt'),
  '--data_path_test',
  path.join(pre, 'test.txt'),
  '--data_path_cache',
  path.join(root, 'cache'),
  '--model_name_or_path',
  ustm,
  '--train_batch_size',
  '4',
  '--gradient_accumulation_steps',
  '1',
  '--num_train_epochs',
  '20',
  '--seed',
  '0',
  '--logging_steps',
  '20',
  '--learning_rate',
  '3e-3',
  '--evaluation_strategy',
  'steps',
  '--save_strategy',
  'steps',
  '--eval_steps',
  '40',
  '--save_steps',
  '80',
  '--save_total_limit',
  '1',
);
const held = split.test[2].split('|');
const answer = JSON.parse(
  emotorch(
    'usdm',
    'infer',
    '--model',
    sft,
    '--input_path',
    path.join(data, held[0].split('_d')[1], `${held[0]}.wav`),
    '--xlsr',
    xlsr,
    '--kmeans',
    path.join(root, 'kmeans.npy'),
    '--layer',
    '2',
    '--max_new_tokens',
    '40',
  ),
);
console.log(
  `\nheld-out clip "${held[2]}": transcript "${answer.user_text.trim()}", answer "${answer.agent_text.trim()}", ${answer.agent_units.length} answer units (${secs()} in all)`,
);
fs.rmSync(root, { recursive: true, force: true });
