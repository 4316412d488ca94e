/**
 * Replays every fuzz corpus file (the seeds and the crash/hang reproducers in test/fuzz/crashes/)
 * through its format's target, each format in child processes: a file passes when it parses or is
 * refused with an EmotorchError that has a code. A crash, hang (> 10 s) or memory blow-up
 * (> 4 GB) is reported against its file and does not stop the others.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import { createRequire } from 'module';

const require = createRequire(import.meta.url);
const { FORMATS } = require('./targets.cjs') as { FORMATS: string[] };
const { corpusFiles, replay } = require('./replay-runner.cjs') as {
  corpusFiles(format: string): { seeds: string[]; crashes: string[] };
  replay(format: string, files: string[], opts?: { timeoutMs?: number }): Promise<Map<string, { outcome: string; code?: string; error?: string }>>;
};

type Outcome = { outcome: string; code?: string; error?: string };
const results = new Map<string, Outcome>();

beforeAll(async () => {
  // Two formats at a time (two cores); each child loads the library once for all its files.
  const queue = [...FORMATS];
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      const { seeds, crashes } = corpusFiles(f);
      for (const [file, r] of await replay(f, [...seeds, ...crashes])) results.set(file, r);
    }
  };
  await Promise.all([worker(), worker()]);
}, 300_000);

const rel = (f: string) => path.relative(path.join(process.cwd(), 'test', 'fuzz'), f);

describe.each(FORMATS)('fuzz corpus: %s', (format) => {
  const { seeds, crashes } = corpusFiles(format);
  it('has seeds', () => {
    expect(seeds.length).toBeGreaterThan(0);
  });
  it.each([...seeds, ...crashes].map((f) => [rel(f), f]))('%s parses or gives a coded EmotorchError', (_name, file) => {
    const r = results.get(file);
    expect(r, 'replayed').toBeDefined();
    expect(['ok', 'coded'], `${r!.outcome}: ${r!.error ?? ''}`).toContain(r!.outcome);
  });
});
