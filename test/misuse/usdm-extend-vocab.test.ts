// `usdm extend-vocab --num_unit_tokens` bounded (issue 56): 1e9 ran the heap out and aborted
// (SIGABRT) building the token list, 1e15 / 1e20 exited with an uncoded RangeError and its stack.
// Every value outside 1..262144 is now ERR_INVALID_ARG naming the flag and the range, before the
// model is read; run through the command line in a child process, as a user runs it.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { FIXTURES, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

function extendVocab(n: string): { status: number | null; signal: NodeJS.Signals | null; err: string; ms: number } {
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    [
      CLI,
      'usdm',
      'extend-vocab',
      '--model_name_or_path',
      path.join(FIXTURES, 'salmonn', 'llm'),
      '--num_unit_tokens',
      n,
      '--output_dir',
      path.join(tmpdir(), 'ext'),
    ],
    { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 60_000 },
  );
  return { status: r.status, signal: r.signal, err: r.stderr, ms: Date.now() - t0 };
}

describe('usdm extend-vocab --num_unit_tokens', () => {
  it('is ERR_INVALID_ARG naming the flag and its range for 1e9, 1e15, 1e20 and every other value outside 1..262144, at once', () => {
    for (const n of ['1e9', '1e15', '1e20', '262145', '0', '-3', '2.5']) {
      const r = extendVocab(n);
      expect(r.signal, `${n}: ${r.err}`).toBeNull();
      expect(r.status, `${n}: ${r.err}`).toBe(1);
      expect(r.err, n).toMatch(new RegExp(`ERR_INVALID_ARG: Expected an integer from 1 to 262144 for --num_unit_tokens but received ${n.replace('.', '\\.')}`));
      expect(r.err, n).not.toMatch(/RangeError|\n\s+at /);
      expect(r.ms, n).toBeLessThan(20_000);
    }
    // not a number at all: the flag parser's usage error (exit 2), naming the flag
    const word = extendVocab('ten');
    expect(word.status).toBe(2);
    expect(word.err).toMatch(/--num_unit_tokens takes a number, not 'ten'/);
  });

  it('takes 262144: the run goes on to the model (whose tokenizer here is one row short: ERR_FORMAT)', () => {
    const r = extendVocab('262144');
    expect(r.status, r.err).toBe(1);
    expect(r.err).toMatch(/ERR_FORMAT: the tokenizer of .* has 1500 tokens and the model 1501 rows/);
  });
});
