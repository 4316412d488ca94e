/**
 * Regression cases from issue 7 for the pickle reader (findings 8, 14, 15): linear LONG decoding,
 * deep nesting, messages that name the file but do not echo its content.
 * Imports the reader directly: it needs no native addon.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { parsePickle, readPickle } from '../../lib/io/pickle';
import { EmotorchError } from '../../lib/errors';
import { tmpdir } from '../tmp';

/** A protocol-2 pickle of one LONG1 / LONG4 integer with these little-endian two's-complement bytes. */
function longPickle(bytes: Buffer): Buffer {
  const head = bytes.length < 256 ? Buffer.from([0x80, 2, 0x8a, bytes.length]) : Buffer.concat([Buffer.from([0x80, 2, 0x8b]), u32(bytes.length)]);
  return Buffer.concat([head, bytes, Buffer.from('.')]);
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EmotorchError);
    return (e as EmotorchError).code;
  }
  return undefined;
}

describe('pickle LONG1 / LONG4 (finding 8: was quadratic, 300 KB took 96 s)', () => {
  it('decodes a 1 MB LONG4 of 0x55 bytes as (256^n - 1) / 3', () => {
    const n = 1 << 20;
    const v = parsePickle(longPickle(Buffer.alloc(n, 0x55)));
    expect(v === ((1n << BigInt(8 * n)) - 1n) / 3n).toBe(true);
  });
  it('decodes a 1 MB negative LONG4 (0xAA bytes) as -(256^n + 2) / 3', () => {
    const n = (1 << 20) + 3;
    const v = parsePickle(longPickle(Buffer.alloc(n, 0xaa)));
    expect(v === -((1n << BigInt(8 * n)) + 2n) / 3n).toBe(true);
  });
  it('decodes small and boundary LONG1 values', () => {
    const cases: [number[], number | bigint][] = [
      [[], 0],
      [[0xff], -1],
      [[0x7f], 127],
      [[0x80], -128],
      [[0x00, 0x80], -32768],
      [[1, 2, 3, 4, 5, 6, 7], 0x07060504030201],
      [[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f], 2 ** 53 - 1],
      [[0, 0, 0, 0, 0, 0, 0x20], 2n ** 53n],
      [[0, 0, 0, 0, 0, 0, 0, 0x80], -(2n ** 63n)],
      [[0x01, 0, 0, 0, 0, 0, 0, 0, 0xff], -(2n ** 64n) + 1n],
    ];
    for (const [bytes, want] of cases) expect(parsePickle(longPickle(Buffer.from(bytes))), `bytes ${bytes}`).toBe(want);
  });
});

describe('deep nesting (finding 14: stack overflow)', () => {
  const D = 200_000;
  const deepTuple = (head: number[], tail: number[]): Buffer => Buffer.concat([Buffer.from(head), Buffer.alloc(D, 0x85), Buffer.from(tail)]);
  it('builds deeply nested lists and tuples without recursion', () => {
    let v = parsePickle(Buffer.concat([Buffer.from([0x80, 2]), Buffer.alloc(D, 0x5d), Buffer.alloc(D - 1, 0x61), Buffer.from('.')])) as unknown[];
    let depth = 1;
    while (v.length) {
      v = v[0] as unknown[];
      depth++;
    }
    expect(depth).toBe(D);
    expect(Array.isArray(parsePickle(deepTuple([0x80, 2, 0x4e], [0x2e])))).toBe(true);
  });
  it('refuses a deep tuple as a dict key under { dict: "object" } or as an encoding, with ERR_FORMAT and no stack overflow', () => {
    const key = deepTuple([0x80, 2, 0x7d, 0x4e], [0x4e, 0x73, 0x2e]); // {} then SETITEM(deep tuple → None)
    expect(parsePickle(key)).toBeInstanceOf(Map);
    const enc = Buffer.concat([Buffer.from('\x80\x02c_codecs\nencode\n\x8c\x01a', 'latin1'), deepTuple([0x4e], [0x86, 0x52, 0x2e])]);
    for (const [buf, opts] of [
      [key, { dict: 'object' as const }],
      [enc, {}],
    ] as const) {
      let err: unknown;
      try {
        parsePickle(buf, opts);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EmotorchError);
      expect((err as EmotorchError).code).toBe('ERR_FORMAT');
      expect((err as EmotorchError).message).not.toMatch(/call stack/);
    }
  });
});

describe('messages name the file and the problem, not its content (finding 15)', () => {
  const dir = tmpdir();
  const texts = [
    'root:x:0:0:secret:/root:/bin/bash\n',
    'Isecret-value\n.',
    'Lsecret\n.',
    'Fsecret-value\n.',
    'S"secret\n.',
    'g secret\n.',
    'c secret\nvalue\n.',
    '\x80\x02csecret-1\nsecret-2\n.',
    '\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x05\x00\x00\x00#sec!\x85RC\x00\x86R.',
  ];
  texts.forEach((text, i) => {
    it(`does not quote a file that starts ${JSON.stringify(text.slice(0, 12))}`, async () => {
      const file = path.join(dir, `content-${i}.pkl`);
      fs.writeFileSync(file, Buffer.from(text, 'latin1'));
      let err: unknown;
      try {
        await readPickle(file);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(EmotorchError);
      const e = err as EmotorchError;
      expect(e.code).toBe('ERR_FORMAT');
      expect(e.message).toContain(file);
      expect(e.message.replace(file, '')).not.toMatch(/secret|root|sec!/);
    });
  });
  it('still names a refused global that is a Python name', () => {
    expect(codeOf(() => parsePickle(Buffer.from('\x80\x02cos\nsystem\n.', 'latin1')))).toBe('ERR_FORMAT');
    expect(() => parsePickle(Buffer.from('\x80\x02cos\nsystem\n.', 'latin1'))).toThrow(/os\.system/);
  });
});
