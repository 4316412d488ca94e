// SPECTRA pre-training end to end on a generated corpus, then fine-tuning the result:
//   1. audio + word alignments (Google Speech-to-Text JSON, as the original's process_pretrain.py
//      reads) → a pre-training corpus: transcripts.pkl and one .npy clip per slice;
//   2. a tiny SpectraForPreTraining pre-trained for a few epochs with main.py's recipe (MLM, masked
//      acoustic frames, response selection, word boundaries), saved as ATForPreTraining saves;
//   3. the saved folder loaded by Spectra.fromPretrained and fine-tuned on MOSI-style sample data.
//   npm run example:spectra-pretrain
//
// At full size, on LibriSpeech-960 / Spotify-style data (GPU), the command line does the same:
//   npx emotorch spectra process-pretrain --speech_dir SPEECH --text_dir TEXT --save_processed_speech_dir OUT --save_processed_text_filename transcripts.pkl --hours 960
//   npx emotorch-run --nproc-per-node 8 node_modules/emotorch/dist/cli/main.js spectra pretrain --apex_level=1 --audio_length=10 --audio_path=wavlm-base-plus \
//     --batch_size=24 --data_path OUT --epochs=5 --grad_acc=4 --lr=1e-4 --model_save_path=runs --model_name=spectra \
//     --save_interval=1 --text_path=roberta-base --transcripts=OUT/transcripts.pkl
import * as et from 'emotorch';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'spectra-pretrain-'));
et.manualSeed(0);

// 1. A tiny "podcast" corpus: two shows, three episodes, each a few seconds of tones (one per word).
const WORDS = [
  'hello',
  'there',
  'how',
  'are',
  'you',
  'today',
  'fine',
  'thanks',
  'and',
  'what',
  'about',
  'the',
  'weather',
  'it',
  'is',
  'sunny',
  'rain',
  'later',
  'maybe',
  'yes',
];
let seed = 7;
const rand = () => {
  seed = (seed * 16807) % 2147483647;
  return seed / 2147483647;
};
const rate = 16000;
for (const [show, episodes] of [
  ['show_a', 2],
  ['show_b', 1],
]) {
  fs.mkdirSync(path.join(work, 'speech', show), { recursive: true });
  fs.mkdirSync(path.join(work, 'text', show), { recursive: true });
  for (let e = 0; e < episodes; e++) {
    const words = [];
    let t = 0.2;
    while (t < 11) {
      const w = WORDS[Math.floor(rand() * WORDS.length)],
        len = 0.2 + 0.3 * rand();
      words.push({ startTime: `${t.toFixed(1)}s`, endTime: `${(t + len).toFixed(1)}s`, word: rand() < 0.2 ? w[0].toUpperCase() + w.slice(1) : w });
      t += len + 0.1 + (rand() < 0.15 ? 0.8 : 0); // now and then a pause: a new turn
    }
    const samples = new Float32Array(Math.ceil((t + 0.5) * rate));
    for (const w of words) {
      const f = 150 + 40 * WORDS.indexOf(w.word.toLowerCase());
      const a = Math.round(parseFloat(w.startTime) * rate),
        b = Math.round(parseFloat(w.endTime) * rate);
      for (let i = a; i < b; i++) samples[i] = 0.3 * Math.sin((2 * Math.PI * f * i) / rate) + 0.02 * (rand() - 0.5);
    }
    fs.writeFileSync(path.join(work, 'speech', show, `ep${e}.wav`), et.audio.encodeWav(samples, rate));
    fs.writeFileSync(path.join(work, 'text', show, `ep${e}.json`), JSON.stringify({ results: [{ alternatives: [{ words }] }] }));
  }
}
// A word-level tokenizer with RoBERTa's special tokens (<s> 0, <pad> 1, </s> 2, <unk> 3, <mask> last).
const vocab = Object.fromEntries(['<s>', '<pad>', '</s>', '<unk>', ...WORDS, '<mask>'].map((w, i) => [w, i]));
const special = ['<s>', '<pad>', '</s>', '<unk>', '<mask>'].map((w) => ({
  id: vocab[w],
  content: w,
  single_word: false,
  lstrip: false,
  rstrip: false,
  normalized: false,
  special: true,
}));
const tokenizer = await et.data.Tokenizer.fromJSON({
  version: '1.0',
  added_tokens: special,
  normalizer: null,
  pre_tokenizer: { type: 'Whitespace' },
  post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false },
  decoder: null,
  model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
});
const corpus = await et.systems.spectra.buildSpectraPretrainCorpus({
  speechDir: path.join(work, 'speech'),
  textDir: path.join(work, 'text'),
  outDir: path.join(work, 'corpus'),
  transcriptsName: 'transcripts.pkl',
  maxSliceSeconds: 2,
  encode: (w) => tokenizer.encode(w),
});
console.log(`corpus: ${corpus.clips} clips, ${(corpus.tenths / 10).toFixed(1)} s → ${corpus.transcripts}`);

// 2. Pre-training: a tiny SPECTRA (WavLM with 7 conv layers + RoBERTa + 1 fused layer, width 32).
const audio = {
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 64,
  conv_dim: [32, 32, 32, 32, 32, 32, 32],
  num_conv_pos_embeddings: 16,
  num_conv_pos_embedding_groups: 4,
  num_buckets: 32,
  max_bucket_distance: 64,
  max_length: 32000,
};
const text = {
  vocab_size: 256,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 64,
  max_position_embeddings: 130,
  max_length: 64,
};
const model = et.systems.spectra.SpectraForPreTraining.create({ audio, text }, { seed: 1 });
const train = await et.systems.spectra.SpectraPretrainDataset.fromFile(corpus.transcripts, { seed: 2 });
console.log(`pre-training on ${train.length} (context, response) pairs, ${model.numParameters()} parameters`);
const t0 = Date.now();
const { trainer, output, saved } = await et.systems.spectra.pretrainSpectra({
  model,
  train,
  saveDir: path.join(work, 'runs'),
  modelName: 'spectra',
  saveInterval: 2,
  seed: 3,
  collate: { tokenizer },
  args: { per_device_train_batch_size: 4, gradient_accumulation_steps: 1, num_train_epochs: 4, learning_rate: 2e-3, logging_steps: 2, disable_tqdm: true },
});
const logged = trainer.state.log_history.filter((r) => r.mlm !== undefined);
const losses = (r) => ['loss', 'mlm', 'mam', 'rs', 'span'].map((k) => `${k} ${r[k].toFixed(3)}`).join(', ');
console.log(`  first steps: ${losses(logged[0])}\n  last steps:  ${losses(logged[logged.length - 1])}`);
console.log(
  `  ${output.globalStep} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s, mean loss ${output.trainingLoss.toFixed(3)}; saved ${saved.map((d) => path.basename(d)).join(', ')}`,
);

// 3. Fine-tuning the pre-trained folder: Spectra.fromPretrained skips the five pre-training heads.
const dataDir = process.env.EMOTORCH_SAMPLE_DIR ?? path.join(os.tmpdir(), 'emotorch-sample-data');
if (!fs.existsSync(path.join(dataDir, 'spectra_mosi.pkl'))) {
  execFileSync(process.execPath, [path.join(here, '..', 'scripts', 'make-sample-data.mjs'), dataDir], { stdio: 'inherit' });
}
const mosi = await et.data.SpectraDataset.fromFile(path.join(dataDir, 'spectra_mosi.pkl'), { task: 'mosi' });
const cls = await et.systems.spectra.Spectra.fromPretrained(saved[saved.length - 1], { task: 'mosi' });
console.log(
  `fine-tuning ${path.basename(saved[saved.length - 1])} on ${mosi.length} MOSI-style items (skipped ${cls.loadInfo.skipped.length} head tensors, new: ${cls.loadInfo.initialized.join(', ')})`,
);
const ft = await et.systems.spectra.Spectra.finetune({
  task: 'mosi',
  model: cls,
  train: mosi,
  collate: { audioLength: 12000, textLength: 64, regression: true },
  args: {
    output_dir: path.join(work, 'mosi'),
    per_device_train_batch_size: 8,
    num_train_epochs: 2,
    learning_rate: 1e-3,
    logging_steps: 10,
    disable_tqdm: true,
    report_to: 'none',
    save_strategy: 'no',
  },
});
console.log(`  ${ft.output.globalStep} steps, final train loss ${ft.output.trainingLoss.toFixed(3)}`);
fs.rmSync(work, { recursive: true, force: true });
