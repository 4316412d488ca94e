// Helpers of the SPECTRA pre-training tests and the documentation's code blocks: a generated
// corpus in process_pretrain.py's input layout (audio + Google Speech-to-Text word times), a
// word-level tokenizer with RoBERTa's special tokens, and tiny WavLM / RoBERTa folders.
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../lib/index';
import { FIXTURES } from './helpers';

export const WORDS = ['hello', 'there', 'how', 'are', 'you', 'today', 'fine', 'thanks', 'and', 'what'];
export const VOCAB = Object.fromEntries(['<s>', '<pad>', '</s>', '<unk>', ...WORDS, '<mask>'].map((w, i) => [w, i]));

/** A word-level tokenizer.json with RoBERTa's special tokens and post-processor. */
export function tokenizerJson(): Record<string, unknown> {
  const special = ['<s>', '<pad>', '</s>', '<unk>', '<mask>'].map((w) => ({
    id: VOCAB[w],
    content: w,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special,
    normalizer: null,
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false },
    decoder: null,
    model: { type: 'WordLevel', vocab: VOCAB, unk_token: '<unk>' },
  };
}

/** speech/<show>/epN.wav + text/<show>/epN.json: words of 0.2-0.5 s, a longer pause now and then. */
export function corpus(root: string, words: Array<Record<string, string>[]> | null = null): void {
  let seed = 3;
  const rand = () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647;
  };
  const shows: Array<[string, number]> = [
    ['show_a', 2],
    ['show_b', 1],
  ];
  let k = 0;
  for (const [show, n] of shows) {
    fs.mkdirSync(path.join(root, 'speech', show), { recursive: true });
    fs.mkdirSync(path.join(root, 'text', show), { recursive: true });
    for (let e = 0; e < n; e++, k++) {
      let w = words?.[k];
      if (!w) {
        w = [];
        let t = 0.3;
        while (t < 6) {
          const len = 0.2 + 0.3 * rand();
          w.push({ startTime: `${t.toFixed(1)}s`, endTime: `${(t + len).toFixed(1)}s`, word: WORDS[Math.floor(rand() * WORDS.length)] });
          t += len + 0.1 + (rand() < 0.2 ? 0.7 : 0);
        }
      }
      const end = parseFloat(w[w.length - 1].endTime) + 0.5;
      const samples = Float32Array.from({ length: Math.ceil(end * 16000) }, (_, i) => 0.2 * Math.sin(i / (5 + k)) + 0.01 * (rand() - 0.5));
      fs.writeFileSync(path.join(root, 'speech', show, `ep${e}.wav`), et.audio.encodeWav(samples, 16000));
      fs.writeFileSync(
        path.join(root, 'text', show, `ep${e}.json`),
        JSON.stringify({ results: [{ alternatives: [{ words: [] }] }, { alternatives: [{ words: w }] }] }),
      );
    }
  }
}

/**
 * `<root>/roberta` (the tiny RoBERTa fixture, hidden 48, with the word-level tokenizer) and
 * `<root>/wavlm` (a tiny random WavLM, hidden 48, 320× downsampling, as Hugging Face saves one).
 */
export async function tinyEncoders(root: string): Promise<{ textPath: string; audioPath: string }> {
  const textPath = path.join(root, 'roberta');
  fs.cpSync(path.join(FIXTURES, 'roberta'), textPath, { recursive: true });
  fs.writeFileSync(path.join(textPath, 'tokenizer.json'), JSON.stringify(tokenizerJson()));
  const audioPath = path.join(root, 'wavlm');
  fs.mkdirSync(audioPath, { recursive: true });
  const cfg = {
    model_type: 'wavlm',
    hidden_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 96,
    conv_dim: [16, 16, 16, 16, 16, 16, 16],
    num_conv_pos_embeddings: 16,
    num_conv_pos_embedding_groups: 4,
    num_buckets: 32,
    max_bucket_distance: 64,
  };
  const wavlm = et.nn.WavLMModel.create(cfg);
  fs.writeFileSync(path.join(audioPath, 'config.json'), JSON.stringify(wavlm.config));
  await et.io.saveSafetensors(path.join(audioPath, 'model.safetensors'), wavlm.stateDict(), { format: 'pt' });
  wavlm.dispose();
  return { textPath, audioPath };
}
