/**
 * Regression cases from issue 7 (findings 10, 14, 15): every reader of a user-named file refuses
 * anything but a regular file before reading a byte (a directory, a FIFO that would block
 * forever, /dev/zero and /dev/urandom that never end, a symlink to a device) with ERR_IO naming
 * the path, and never quotes a file's content in its message.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { rejectsWith, tmpdir } from '../helpers';

const DIR = tmpdir();
const fifo = (name: string): string => {
  const p = path.join(DIR, name);
  const r = spawnSync('mkfifo', [p]);
  if (r.status !== 0) throw new Error(`mkfifo failed: ${r.stderr}`);
  return p;
};
const sub = path.join(DIR, 'a-directory.json');
fs.mkdirSync(sub);
const link = path.join(DIR, 'link-to-zero.wav');
fs.symlinkSync('/dev/zero', link);
const SPECIAL: [string, string, RegExp][] = [
  ['a directory', sub, /directory/],
  ['a FIFO', fifo('pipe.bin'), /FIFO/],
  ['/dev/zero', '/dev/zero', /character device/],
  ['/dev/urandom', '/dev/urandom', /character device/],
  ['a symlink to /dev/zero', link, /character device/],
];

const READERS: [string, (p: string) => Promise<unknown>][] = [
  ['et.audio.readWav', (p) => et.audio.readWav(p)],
  ['et.io.readPickle', (p) => et.io.readPickle(p)],
  ['et.io.loadSafetensors', (p) => et.io.loadSafetensors(p)],
  ['et.io.readSafetensorsHeader', async (p) => et.io.readSafetensorsHeader(p)],
  ['et.io.loadTorchFile', (p) => et.io.loadTorchFile(p)],
  ['Module.load', (p) => et.nn.Linear.create({ in_features: 2, out_features: 2 }).load(p)],
  ['SalmonnDataset.fromFile', (p) => et.data.SalmonnDataset.fromFile(p)],
  ['SwiftDataset.fromFile', (p) => et.data.SwiftDataset.fromFile(p)],
  ['EcfDataset.fromFile', (p) => et.data.EcfDataset.fromFile(p)],
  ['UsdmDataset.fromFile', (p) => et.data.UsdmDataset.fromFile(p)],
  ['SpectraDataset.fromFile', (p) => et.data.SpectraDataset.fromFile(p)],
];

describe('only regular files are read (finding 10: /dev/zero and FIFOs hung; finding 14: EISDIR was uncoded)', () => {
  for (const [reader, read] of READERS) {
    it(`${reader} refuses a directory, a FIFO, devices and a symlink to one`, async () => {
      for (const [what, p, kind] of SPECIAL) {
        const e = await rejectsWith(() => read(p), 'ERR_IO', kind);
        expect(e.message, what).toContain(p);
      }
    });
  }

  it('refuses dataset audio paths to /dev/urandom and FIFOs when items are read, and when files are checked', async () => {
    const file = path.join(DIR, 'salmonn.json');
    fs.writeFileSync(
      file,
      JSON.stringify([
        { path: '/dev/urandom', text: 'a' },
        { path: fifo('audio.wav'), text: 'b' },
      ]),
    );
    const ds = await et.data.SalmonnDataset.fromFile(file, { checkFiles: false });
    await rejectsWith(ds.get(0), 'ERR_DATA', /'\/dev\/urandom' is a device, not a regular file/);
    await rejectsWith(ds.get(1), 'ERR_DATA', /audio\.wav' is a FIFO, not a regular file/);
    const checked = await et.data.SalmonnDataset.fromFile(file, { skipBad: true });
    expect(checked.length).toBe(0);
    expect(checked.skippedItems.map((s) => s.reason)).toEqual([expect.stringMatching(/is a device/), expect.stringMatching(/is a FIFO/)]);
  });

  it('a prefetching DataLoader over FIFO audio paths fails fast and leaves the thread pool free', async () => {
    const file = path.join(DIR, 'fifos.json');
    fs.writeFileSync(file, JSON.stringify(Array.from({ length: 8 }, (_, i) => ({ path: fifo(`clip${i}.wav`), text: String(i) }))));
    const ds = await et.data.SalmonnDataset.fromFile(file, { checkFiles: false });
    const loader = new et.data.DataLoader(ds, { batchSize: 1, prefetch: 6 });
    await rejectsWith(
      async () => {
        for await (const _ of loader) {
          /* consume */
        }
      },
      'ERR_DATA',
      /is a FIFO/,
    );
    // every libuv worker still answers: reads, a native forward
    await Promise.all(Array.from({ length: 8 }, () => fs.promises.readFile(file)));
    const lin = et.nn.Linear.create({ in_features: 2, out_features: 3 });
    expect((await lin.forward(et.ones([1, 2]))).shape).toEqual([1, 3]);
  });
});

describe('deeply nested dataset JSON (finding 14: stack overflow)', () => {
  it('refuses items nested 100 000 deep with ERR_DATA that names the field, never a stack overflow', async () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    const deepObj = '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000);
    const cases: [string, number, string, (f: string) => Promise<{ skippedItems: { reason: string }[] }>][] = [
      [
        'salmonn',
        4,
        `[{"path":"x.wav","text":"a","id":${deep}},{"path":${deep},"text":"a"},{"path":"x.wav","text":${deepObj}},${deep}]`,
        (f) => et.data.SalmonnDataset.fromFile(f, { skipBad: true, checkFiles: false }),
      ],
      [
        'swift',
        3,
        `[{"query":${deep},"response":"r"},{"query":"q","response":"r","audios":${deep}},${deepObj}]`,
        (f) => et.data.SwiftDataset.fromFile(f, { skipBad: true }),
      ],
      [
        'ecf',
        2,
        `[{"conversation_ID":${deep},"conversation":[]},{"conversation_ID":1,"conversation":[{"utterance_ID":${deep}}]}]`,
        (f) => et.data.EcfDataset.fromFile(f, { skipBad: true }),
      ],
    ];
    for (const [name, items, text, load] of cases) {
      const file = path.join(DIR, `deep-${name}.json`);
      fs.writeFileSync(file, text);
      const ds = await load(file);
      expect(ds.skippedItems.length, name).toBe(items);
      for (const s of ds.skippedItems) expect(s.reason, name).not.toMatch(/call stack/);
    }
  });
});

describe('messages name the file and the problem, never its content (finding 15)', () => {
  const secret = 'root:x:0:0:SECRET-VALUE:/root:/bin/bash\n';
  const file = path.join(DIR, 'passwd');
  fs.writeFileSync(file, secret.repeat(3));
  for (const [reader, read] of READERS) {
    it(`${reader} does not quote a passwd-like file`, async () => {
      let err: unknown;
      try {
        await read(file);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(et.EmotorchError);
      const msg = (err as Error).message.split(file).join('<file>');
      expect(msg).toContain('<file>');
      expect(msg).not.toMatch(/root|SECRET|bash|:0:/);
      // nor the file's bytes as a number (a u64 header length, a u32 string length)
      for (let k = 0; k + 4 <= 16; k++) expect(msg).not.toContain(String(Buffer.from(secret).readUInt32LE(k)));
      expect(msg).not.toContain(String(Buffer.from(secret).readBigUInt64LE(0)));
    });
  }
});
