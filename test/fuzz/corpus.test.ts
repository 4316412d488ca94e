/**
 * Replays every fuzz corpus file (the seeds and the crash/hang reproducers in test/fuzz/crashes/)
 * through its format's target, each format in child processes: a file passes when it parses or is
 * refused with an EmotorchError that has a code. A crash, hang (> 10 s) or memory blow-up
 * (> 4 GB) is reported against its file and does not stop the others. The media corpora's attack
 * files (playlists, manifests, scripts: `attack-*`) must be refused with ERR_FORMAT, not decoded.
 */
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import { createRequire } from 'module';

const require = createRequire(import.meta.url);
const { FORMATS } = require('./targets.cjs') as { FORMATS: string[] };
const { corpusFiles, replay } = require('./replay-runner.cjs') as {
  corpusFiles(format: string): { seeds: string[]; crashes: string[] };
  replay(
    format: string,
    files: string[],
    opts?: { timeoutMs?: number },
  ): Promise<Map<string, { outcome: string; code?: string; message?: string; error?: string }>>;
};

type Outcome = { outcome: string; code?: string; message?: string; error?: string };
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

// HLS / DASH / ffconcat / SDP / image2 pattern files naming absolute paths (test/fuzz/media_seeds.py):
// each reader must refuse them with ERR_FORMAT. The plain ones are refused from their bytes before
// ffmpeg or ffprobe runs; the playlist behind an ID3 tag or inside a RIFF/AVI header reaches at
// most the one demuxer its header names, which cannot read it.
const MEDIA = FORMATS.filter((f) => ['image', 'video', 'audio'].includes(f));
describe.each(MEDIA)('media attack seeds: %s', (format) => {
  const attacks = corpusFiles(format).seeds.filter((f) => path.basename(f).startsWith('attack-'));
  it('has the attack seeds', () => {
    expect(attacks.map((f) => path.basename(f).replace(/\..*$/, '')).sort()).toEqual([
      'attack-dash',
      'attack-ffconcat',
      'attack-hls',
      'attack-id3-hls',
      'attack-image2',
      'attack-riff-hls',
      'attack-sdp',
    ]);
  });
  it.each(attacks.map((f) => [rel(f), f]))('%s is refused with ERR_FORMAT', (_name, file) => {
    const r = results.get(file);
    expect(r, 'replayed').toBeDefined();
    expect([r!.outcome, r!.code], r!.message ?? r!.error ?? '').toEqual(['coded', 'ERR_FORMAT']);
    if (!/attack-(id3|riff)-/.test(file)) expect(r!.message).toMatch(/its content is not one of the (image|video|audio) formats read here/);
  });
});
