/**
 * The command line reads the files it is given as the library reads files (issue 43): a config,
 * YAML or dataset named on the command line that is a device (/dev/zero, /dev/urandom), a FIFO, a
 * folder or too large is a coded error at once (never a read that grows to gigabytes or blocks
 * forever); an output folder that is a file names its option; generation caps are positive
 * integers of at most the model's context; an absurdly long dataset record names its file and line.
 * Every case runs `node dist/cli/main.js` as a user does and expects exit status 1, the coded
 * message and no stack trace, well before the spawn's own time limit.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { FIXTURES, salmonnDecodeYaml, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const FX = path.join(FIXTURES, 'm2se_internvl');
const MiB = 1024 * 1024;

/** Runs the CLI; a run that had to be killed (blocked on a FIFO, reading /dev/zero) is `killed`. */
function run(...args: string[]): { code: number | null; err: string; out: string; killed: boolean } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr, killed: r.signal !== null };
}

/** Exit status 1 with `code` and a message matching `re`, no stack trace, not killed. */
function expectCoded(r: ReturnType<typeof run>, code: string, re: RegExp): void {
  expect(r.killed, `killed (blocked or ran away): ${r.err}`).toBe(false);
  expect(r.err).toMatch(new RegExp(`${code}: `));
  expect(r.err).toMatch(re);
  expect(r.err).not.toMatch(/\n\s+at /);
  expect(r.code).toBe(1);
}

let dir: string;
let fifo: string | null = null;
beforeAll(() => {
  dir = tmpdir();
  const p = path.join(dir, 'pipe');
  if (spawnSync('mkfifo', [p]).status === 0) fifo = p;
});

/** A sparse regular file of `bytes` (nothing is written: only its size counts). */
function sparse(file: string, bytes: number): string {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  return file;
}

describe('config and YAML files: regular files only, at most 16 MiB', () => {
  it('salmonn infer / train --cfg-path /dev/zero and /dev/urandom are ERR_IO at once (they grew to 16.5 GB before)', () => {
    for (const dev of ['/dev/zero', '/dev/urandom']) {
      expectCoded(
        run('salmonn', 'infer', '--cfg-path', dev, '--wav', 'a.wav', '--prompt', 'b'),
        'ERR_IO',
        new RegExp(`--cfg-path.*'${dev}': it is a character device, not a regular file`),
      );
    }
    expectCoded(run('salmonn', 'train', '--cfg-path', '/dev/zero'), 'ERR_IO', /character device/);
  });

  it('a FIFO as --cfg-path (infer and train) is ERR_IO and never blocks', () => {
    if (!fifo) return; // no mkfifo here
    expectCoded(run('salmonn', 'infer', '--cfg-path', fifo, '--wav', 'a.wav', '--prompt', 'b'), 'ERR_IO', /FIFO/);
    expectCoded(run('salmonn', 'train', '--cfg-path', fifo), 'ERR_IO', /FIFO/);
  });

  it('a YAML over 16 MiB, or a folder, is ERR_IO naming its size or kind', () => {
    expectCoded(
      run('salmonn', 'infer', '--cfg-path', sparse(path.join(dir, 'huge.yaml'), 17 * MiB)),
      'ERR_IO',
      new RegExp(`${17 * MiB} bytes, more than the ${16 * MiB}`),
    );
    expectCoded(run('salmonn', 'infer', '--cfg-path', dir), 'ERR_IO', /directory/);
  });

  it('salmonn train: model.prompt_path, datasets.train_ann_path on a device are ERR_IO; run.output_dir that is a file is ERR_INVALID_ARG naming it', () => {
    const d = tmpdir();
    fs.writeFileSync(path.join(d, 'train.json'), JSON.stringify({ annotation: [] }));
    const yaml = (model: Record<string, string>, train: string, out: string) => {
      const f = path.join(d, 'config.yaml');
      fs.writeFileSync(
        f,
        [
          'model:',
          `  llama_path: ${JSON.stringify(path.join(FIXTURES, 'salmonn', 'llm'))}`,
          `  whisper_path: ${JSON.stringify(path.join(FIXTURES, 'whisper'))}`,
          ...Object.entries(model).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
          'datasets:',
          `  train_ann_path: ${JSON.stringify(train)}`,
          'run:',
          `  output_dir: ${JSON.stringify(out)}`,
          '  iters_per_epoch: 1',
          '  optims:',
          '    max_epoch: 1',
          '    init_lr: 0.001',
          '    min_lr: 0.0001',
        ].join('\n'),
      );
      return f;
    };
    expectCoded(
      run('salmonn', 'train', '--cfg-path', yaml({ prompt_path: '/dev/zero' }, path.join(d, 'train.json'), path.join(d, 'out'))),
      'ERR_IO',
      /model\.prompt_path: cannot read '\/dev\/zero'/,
    );
    expectCoded(run('salmonn', 'train', '--cfg-path', yaml({}, '/dev/urandom', path.join(d, 'out'))), 'ERR_IO', /\/dev\/urandom/);
    const file = path.join(d, 'a-file');
    fs.writeFileSync(file, 'x');
    expectCoded(
      run('salmonn', 'train', '--cfg-path', yaml({}, path.join(d, 'train.json'), file)),
      'ERR_INVALID_ARG',
      /run\.output_dir '.*a-file' is a regular file, not a folder/,
    );
  });

  it("a model folder's config.json, a checkpoint's sft_args.json and semeval's semeval_config.json: devices, FIFOs, huge or malformed files are coded", () => {
    const model = tmpdir();
    fs.symlinkSync('/dev/zero', path.join(model, 'config.json'));
    const recs = path.join(FX, 'records.json');
    expectCoded(
      run('m2se', 'infer', '--model', model, '--val_dataset', recs),
      'ERR_IO',
      /the model config: cannot read .*config\.json': it is a character device/,
    );
    fs.unlinkSync(path.join(model, 'config.json'));
    sparse(path.join(model, 'config.json'), 17 * MiB);
    expectCoded(run('m2se', 'infer', '--model', model, '--val_dataset', recs), 'ERR_IO', /more than the 16777216/);

    const ckpt = tmpdir();
    fs.writeFileSync(path.join(ckpt, 'sft_args.json'), '{ "model": ');
    expectCoded(run('m2se', 'infer', '--ckpt_dir', ckpt, '--val_dataset', recs), 'ERR_FORMAT', /sft_args\.json.*is not JSON/); // a raw SyntaxError stack before
    if (fifo) {
      fs.unlinkSync(path.join(ckpt, 'sft_args.json'));
      spawnSync('mkfifo', [path.join(ckpt, 'sft_args.json')]);
      expectCoded(run('m2se', 'infer', '--ckpt_dir', ckpt, '--val_dataset', recs), 'ERR_IO', /FIFO/); // blocked forever before

      const out = tmpdir();
      spawnSync('mkfifo', [path.join(out, 'semeval_config.json')]);
      expectCoded(
        run('semeval', 'predict', '--model_dir', out, '--test_file', 'x.json', '--features', 'text=t.safetensors'),
        'ERR_IO',
        /not a 'semeval train' output: .*FIFO/,
      );
    }
  });
});

describe('output folders: a file where a folder goes names its option', () => {
  it('m2se sft --output_dir <an existing file> (and a path below a file) is ERR_INVALID_ARG naming --output_dir, not a stack trace', () => {
    const file = path.join(dir, 'not-a-folder');
    fs.writeFileSync(file, 'x');
    const args = [
      'm2se',
      'sft',
      '--model',
      path.join(FX, 'internlm2'),
      '--tokenizer',
      path.join(FX, 'tokenizer.json'),
      '--dataset',
      path.join(FX, 'records.json'),
      '--max_steps',
      '1',
    ];
    expectCoded(run(...args, '--output_dir', file), 'ERR_INVALID_ARG', /--output_dir '.*not-a-folder' is a regular file, not a folder/);
    expectCoded(
      run(...args, '--output_dir', path.join(file, 'runs')),
      'ERR_INVALID_ARG',
      /--output_dir '.*runs' cannot be a folder: '.*not-a-folder' above it is a regular file/,
    );
  });
});

describe('generation caps: positive integers of at most the model context', () => {
  const infer = (...extra: string[]) =>
    run(
      'm2se',
      'infer',
      '--model',
      path.join(FX, 'internlm2'),
      '--tokenizer',
      path.join(FX, 'tokenizer.json'),
      '--val_dataset',
      path.join(FX, 'records.json'),
      '--result_dir',
      path.join(dir, 'infer'),
      ...extra,
    );

  it('m2se infer --max_new_tokens 1e12, the context + 1 or 2.5 is ERR_INVALID_ARG naming the flag and the context (4096)', () => {
    for (const bad of ['1e12', '4097', '2.5', '0']) {
      expectCoded(
        infer('--max_new_tokens', bad),
        'ERR_INVALID_ARG',
        /at most 4096 \(the model's context length, max_position_embeddings\) for --max_new_tokens/,
      );
    }
  });

  it("salmonn infer: the YAML's generate.max_new_tokens 1e12 is ERR_INVALID_ARG naming the key and the file", () => {
    const { file } = salmonnDecodeYaml(tmpdir(), { max_new_tokens: 1e12 });
    expectCoded(
      run('salmonn', 'infer', '--cfg-path', file, '--wav', 'a.wav', '--prompt', 'b'),
      'ERR_INVALID_ARG',
      /decode_config\.yaml': generate\.max_new_tokens but received 1000000000000/,
    );
  });

  it('spectra finetune --audio_length 1e9 (every clip padded to it) and --text_length 1e9 are ERR_INVALID_ARG naming the flag', () => {
    expectCoded(run('spectra', 'finetune', '--task', 'iemocap', '--audio_length', '1e9'), 'ERR_INVALID_ARG', /\(0, 600\] for --audio_length/);
    expectCoded(run('spectra', 'finetune', '--task', 'iemocap', '--text_length', '1000000000'), 'ERR_INVALID_ARG', /for --text_length/);
  });
});

describe('dataset records of absurd length: a coded error naming the file and line, never an abort in the tokenizer', () => {
  it('m2se sft on a 20 MB single-line .json and a .jsonl with a 20 MB line: ERR_DATA naming the file, the item and the line', () => {
    const d = tmpdir();
    const big = 'a'.repeat(20 * MiB);
    const json = path.join(d, 'one-line.json');
    const jsonl = path.join(d, 'big.jsonl');
    try {
      fs.writeFileSync(json, `[${JSON.stringify({ query: big, response: 'x' })}]`);
      fs.writeFileSync(jsonl, `${JSON.stringify({ query: 'q', response: 'r' })}\n\n${JSON.stringify({ query: 'q', response: big })}\n`);
      const sft = (set: string) =>
        run(
          'm2se',
          'sft',
          '--model',
          path.join(FX, 'internlm2'),
          '--tokenizer',
          path.join(FX, 'tokenizer.json'),
          '--dataset',
          set,
          '--max_steps',
          '1',
          '--output_dir',
          path.join(d, 'out'),
        );
      expectCoded(sft(json), 'ERR_DATA', new RegExp(`one-line\\.json' item 0: its text .* has ${20 * MiB + 1} characters, more than the ${2 * MiB}`));
      expectCoded(sft(jsonl), 'ERR_DATA', /big\.jsonl' item 1 \(line 3\): its text/);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
