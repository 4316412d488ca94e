/**
 * Regression cases from issue 7 for the torch.save reader (findings 11, 14, 17): overlapping
 * entries, directories pointing past the end, deflated entries. The deflated archives are
 * torch.save output re-zipped by Python (scripts/fixtures/torchfile_variants.py), and torch
 * itself reads them.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'torchfile_hardening');
const EXPECTED = JSON.parse(fs.readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as {
  w: number[];
  b: number[];
  v: number[];
  torch_reads: Record<string, boolean>;
};

/** A stored-entry zip whose central directory may name one local record several times. */
function zipWithCentral(records: { name: string; data: Buffer }[], central: { name: string; record: number }[]): Buffer {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const r of records) {
    const n = Buffer.from(r.name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt32LE(r.data.length, 18);
    local.writeUInt32LE(r.data.length, 22);
    local.writeUInt16LE(n.length, 26);
    offsets.push(offset);
    parts.push(local, n, r.data);
    offset += 30 + n.length + r.data.length;
  }
  const cd: Buffer[] = [];
  for (const c of central) {
    const n = Buffer.from(c.name);
    const h = Buffer.alloc(46);
    h.writeUInt32LE(0x02014b50, 0);
    h.writeUInt32LE(records[c.record].data.length, 20);
    h.writeUInt32LE(records[c.record].data.length, 24);
    h.writeUInt16LE(n.length, 28);
    h.writeUInt32LE(offsets[c.record], 42);
    cd.push(h, n);
  }
  const cdBuf = Buffer.concat(cd);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(central.length, 8);
  eocd.writeUInt16LE(central.length, 10);
  eocd.writeUInt32LE(cdBuf.length, 12);
  eocd.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cdBuf, eocd]);
}

describe('torch.save reader hardening', () => {
  for (const name of ['plain.pt', 'deflated_pkl.pt', 'deflated_all.pt']) {
    it(`reads ${name} as torch does (finding 17: a deflated data.pkl was reported as big-endian)`, async () => {
      expect(EXPECTED.torch_reads[name]).toBe(true);
      const obj = (await et.io.loadTorchFile(path.join(DIR, name))) as Map<string, et.Tensor>;
      expect(obj.get('w')!.shape).toEqual([2, 3]);
      expect(obj.get('w')!.toArray().flat()).toEqual(EXPECTED.w);
      expect(obj.get('b')!.toArray()).toEqual(EXPECTED.b);
      expect(obj.get('v')!.toArray()).toEqual(EXPECTED.v);
    });
  }

  it('refuses an archive whose directory names one stored record 300 times (finding 11: loaded as 300 copies)', async () => {
    const file = path.join(tmpdir(), 'bomb.pt');
    const records = [
      { name: 'archive/data.pkl', data: Buffer.from('\x80\x02}q\x00.', 'latin1') },
      { name: 'archive/data/0', data: Buffer.alloc(1 << 20) },
    ];
    const central = [{ name: 'archive/data.pkl', record: 0 }, ...Array.from({ length: 300 }, (_, i) => ({ name: `archive/data/${i}`, record: 1 }))];
    fs.writeFileSync(file, zipWithCentral(records, central));
    await rejectsWith(() => et.io.loadTorchFile(file), 'ERR_FORMAT', /bomb\.pt.*overlap/);
  });

  it('answers every one-byte corruption of the zip directory with a result or a coded error (finding 14: RangeError)', async () => {
    const good = fs.readFileSync(path.join(DIR, 'plain.pt'));
    let eocd = good.length - 22;
    while (good.readUInt32LE(eocd) !== 0x06054b50) eocd--;
    const cdStart = good.readUInt32LE(eocd + 16);
    const dir = tmpdir();
    const codes = new Map<string, number>();
    for (let p = cdStart; p < good.length; p++) {
      for (const v of [0x00, 0x7f, 0xff]) {
        if (good[p] === v) continue;
        const b = Buffer.from(good);
        b[p] = v;
        const file = path.join(dir, 'mutant.pt');
        fs.writeFileSync(file, b);
        let code = 'ok';
        try {
          await et.io.loadTorchFile(file);
        } catch (e) {
          expect(e, `byte ${p} = ${v}: ${(e as Error).message}`).toBeInstanceOf(et.EmotorchError);
          code = (e as et.EmotorchError).code;
        }
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    expect([...codes.keys()].every((c) => c === 'ok' || c === 'ERR_FORMAT')).toBe(true);
    expect(codes.get('ERR_FORMAT')).toBeGreaterThan(100);
  });

  it('refuses directories and offsets that point past the end with ERR_FORMAT', async () => {
    const good = fs.readFileSync(path.join(DIR, 'plain.pt'));
    const eocd = good.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
    const cd = good.readUInt32LE(eocd + 16);
    const dir = tmpdir();
    const cases: [string, (b: Buffer) => void][] = [
      ['directory offset', (b) => b.writeUInt32LE(good.length + 1000, eocd + 16)],
      ['entry count', (b) => b.writeUInt16LE(0xfffe, eocd + 10)],
      ['local header offset', (b) => b.writeUInt32LE(0x7ffffff0, cd + 42)],
      ['extra field length', (b) => b.writeUInt16LE(0xffff, cd + 30)],
      ['compressed size', (b) => b.writeUInt32LE(0xfffffff0, cd + 20)],
      [
        'zip64 record offset',
        (b) => {
          b.writeUInt32LE(0xffffffff, eocd + 16);
          b.writeBigUInt64LE(1n << 40n, eocd - 12);
        },
      ],
      [
        'zip64 directory offset',
        (b) => {
          b.writeUInt32LE(0xffffffff, eocd + 16);
          b.writeBigUInt64LE(1n << 40n, good.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06])) + 48);
        },
      ],
    ];
    for (const [what, mutate] of cases) {
      const b = Buffer.from(good);
      mutate(b);
      const file = path.join(dir, `${what.replace(/ /g, '-')}.pt`);
      fs.writeFileSync(file, b);
      await rejectsWith(
        () =>
          et.io.loadTorchFile(file).then(() => {
            throw new Error(`${what} loaded`);
          }),
        'ERR_FORMAT',
        /is not a readable torch\.save file/,
      );
    }
  });
});
