/**
 * Regression cases from issue 7 for the pickle reader (findings 8, 14, 15): linear LONG decoding,
 * deep nesting, messages that name the file but do not echo its content.
 * Imports the reader directly: it needs no native addon.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parsePickle, readPickle } from '../../lib/io/pickle';
import { EmotorchError } from '../../lib/errors';

/** A protocol-2 pickle of one LONG1 / LONG4 integer with these little-endian two's-complement bytes. */
function longPickle(bytes: Buffer): Buffer {
  const head = bytes.length < 256 ? Buffer.from([0x80, 2, 0x8a, bytes.length]) : Buffer.concat([Buffer.from([0x80, 2, 0x8b]), u32(bytes.length)]);
  return Buffer.concat([head, bytes, Buffer.from('.')]);
}
function u32(n: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(n); return b; }

function codeOf(fn: () => unknown): string | undefined {
  try { fn(); } catch (e) { expect(e).toBeInstanceOf(EmotorchError); return (e as EmotorchError).code; }
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
      [[], 0], [[0xff], -1], [[0x7f], 127], [[0x80], -128], [[0x00, 0x80], -32768],
      [[1, 2, 3, 4, 5, 6, 7], 0x07060504030201], [[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f], 2 ** 53 - 1],
      [[0, 0, 0, 0, 0, 0, 0x20], 2n ** 53n], [[0, 0, 0, 0, 0, 0, 0, 0x80], -(2n ** 63n)],
      [[0x01, 0, 0, 0, 0, 0, 0, 0, 0xff], -(2n ** 64n) + 1n],
    ];
    for (const [bytes, want] of cases) expect(parsePickle(longPickle(Buffer.from(bytes))), `bytes ${bytes}`).toBe(want);
  });
});
