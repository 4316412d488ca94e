import * as path from 'path';
import * as fs from 'fs';
import { expect } from 'vitest';
import * as et from '../lib/index';

export const FIXTURES = path.join(__dirname, 'fixtures');

export { tmpdir } from './tmp';

/** The CPU's feature flags as /proc/cpuinfo lists them (avx512_bf16, amx_bf16, …); [] where it cannot be read. */
export function cpuFlags(): string[] {
  try {
    const line = fs
      .readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return line ? line.split(':')[1].trim().split(/\s+/) : [];
  } catch {
    return [];
  }
}

/** Max |a - b| over all elements (both converted to float64 on the CPU). */
export function maxAbsDiff(a: et.Tensor, b: et.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return a
    .to({ dtype: 'float64' })
    .sub(b.to({ dtype: 'float64' }))
    .abs()
    .max()
    .item();
}

/** Asserts an async call rejects with an EmotorchError of `code` whose message matches `re`. */
export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: string, re?: RegExp): Promise<et.EmotorchError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a rejection').toBeInstanceOf(et.EmotorchError);
  const e = err as et.EmotorchError;
  expect(e.code).toBe(code);
  if (re) expect(e.message).toMatch(re);
  expect(e.message).not.toMatch(/Exception raised from|frame #/);
  return e;
}

/** Asserts a sync call throws an EmotorchError of `code` whose message matches `re`. */
export function throwsWith(fn: () => unknown, code: string, re?: RegExp): et.EmotorchError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(et.EmotorchError);
  const e = err as et.EmotorchError;
  expect(e.code).toBe(code);
  if (re) expect(e.message).toMatch(re);
  expect(e.message).not.toMatch(/Exception raised from|frame #/);
  return e;
}

/**
 * Spawns `emotorch serve <args> --port 0` (dist/cli/main.js) and waits for its "listening on"
 * line. `stop()` ends it with SIGTERM and resolves with its exit code.
 */
export async function spawnServer(args: string[], timeoutMs = 120_000): Promise<{ url: string; stderr: () => string; stop: () => Promise<number | null> }> {
  const { spawn } = await import('child_process');
  const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
  const p = spawn(process.execPath, [cli, 'serve', ...args, '--port', '0'], {
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '',
    err = '';
  p.stderr.on('data', (d) => {
    err += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      p.kill();
      reject(new Error(`the server did not start: ${err}`));
    }, timeoutMs);
    p.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    p.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}): ${err}`));
    });
  });
  const exited = new Promise<number | null>((resolve) => p.on('exit', (code) => resolve(code)));
  return {
    url,
    stderr: () => err,
    stop: () => {
      p.kill('SIGTERM');
      return exited;
    },
  };
}

/** SALMONN's decode_config.yaml (the original layout) for the tiny SALMONN fixture, and the config it amounts to. */
export function salmonnDecodeYaml(dir: string, generate: Record<string, unknown> = {}): { file: string; config: Record<string, unknown> } {
  const config = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'config.json'), 'utf8'));
  const model = {
    llama_path: path.join(FIXTURES, 'salmonn', 'llm'),
    whisper_path: path.join(FIXTURES, 'whisper'),
    beats_path: path.join(FIXTURES, 'beats', 'beats.pt'),
    ckpt: path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'),
    token: '',
    low_resource: false,
    ...Object.fromEntries(Object.entries(config).filter(([k]) => k !== 'qformer')),
  };
  const gen = {
    max_new_tokens: 5,
    num_beams: 2,
    do_sample: false,
    min_length: 1,
    temperature: 1.0,
    top_p: 0.9,
    repetition_penalty: 1.0,
    length_penalty: 1.0,
    ...generate,
  };
  const lines = [
    'model:',
    ...Object.entries(model).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
    '  qformer:',
    ...Object.entries(config.qformer).map(([k, v]) => `    ${k}: ${v}`),
    'generate:',
    ...Object.entries(gen).map(
      ([k, v]) =>
        `  ${k}: ${typeof v === 'number' && Number.isInteger(v) && ['temperature', 'top_p', 'repetition_penalty', 'length_penalty'].includes(k) ? v.toFixed(1) : v}`,
    ),
  ];
  const file = path.join(dir, 'decode_config.yaml');
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return { file, config: { ...config, ...gen } };
}

/** A character tokenizer.json with USDM's layout on the fixture's 160 ids ("\n" 13, "▁" 28, <|continue|> 100, <|correspond|> 101, 57 units from 102, <pad> 159). */
export function usdmToyTokenizer(file: string): void {
  const chars: Record<number, string> = { 13: '\n', 28: '▁', 56: '#', 57: '.', 58: ',', 59: "'" };
  for (let k = 0; k < 26; k++) {
    chars[30 + k] = String.fromCharCode(97 + k);
    chars[60 + k] = String.fromCharCode(65 + k);
  }
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let i = 3; i < 100; i++) vocab[chars[i] ?? `[${i}]`] = i;
  const special = [
    [0, '<unk>'],
    [1, '<s>'],
    [2, '</s>'],
    [100, '<|continue|>'],
    [101, '<|correspond|>'],
    ...Array.from({ length: 57 }, (_, u) => [102 + u, `<|unit${u}|>`]),
    [159, '<pad>'],
  ] as Array<[number, string]>;
  fs.writeFileSync(
    file,
    JSON.stringify({
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
    }),
  );
  fs.writeFileSync(path.join(path.dirname(file), 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' }));
}

/** naver-ai/usdm's configs/ds_config_zero3_bf16.json, key for key (train_sft.py's default --deepspeed_config). */
export const USDM_DS_CONFIG = {
  bf16: { enabled: true },
  zero_optimization: {
    stage: 3,
    offload_param: { device: 'cpu', pin_memory: true },
    offload_optimizer: { device: 'cpu', pin_memory: true },
    stage3_gather_16bit_weights_on_model_save: true,
    memory_efficient_linear: true,
  },
  optimizer: { type: 'Adam', params: { lr: 'auto', betas: 'auto', eps: 'auto', weight_decay: 'auto' } },
  train_batch_size: 'auto',
  train_micro_batch_size_per_gpu: 'auto',
  gradient_accumulation_steps: 'auto',
};
