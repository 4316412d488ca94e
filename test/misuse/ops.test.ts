/**
 * Tensor ops over random shapes (0–3 dims of size 0–3, empty tensors included) and every dtype,
 * table-driven (test/misuse/tables.ts UNARY_OPS, BINARY_OPS, DIM_OPS): each call returns a
 * well-formed result or throws an EmotorchError with a code. Elementwise ops must broadcast
 * exactly as PyTorch does (and refuse shapes that do not broadcast); reductions over a dim drop
 * that dim, and refuse a dim out of range.
 */
import { describe, expect } from 'vitest';
import { it, fc } from '@fast-check/vitest';
import * as et from '../../lib/index';
import { UNARY_OPS, BINARY_OPS, DIM_OPS } from './tables';

interface Spec {
  dtype: et.DType;
  shape: number[];
  values: number[];
}

const shapeArb = fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 });
const specArb = (shape: fc.Arbitrary<number[]> = shapeArb): fc.Arbitrary<Spec> =>
  fc.tuple(fc.constantFrom(...et.DTYPES), shape).chain(([dtype, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return fc
      .array(fc.integer({ min: dtype === 'uint8' || dtype === 'bool' ? 0 : -3, max: dtype === 'bool' ? 1 : 3 }), { minLength: n, maxLength: n })
      .map((values) => ({ dtype, shape, values }));
  });
const make = (s: Spec) => et.tensor(s.values, { shape: s.shape, dtype: s.dtype });

/** PyTorch's broadcast of two shapes, or null when they do not broadcast. */
export function broadcastShape(a: number[], b: number[]): number[] | null {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return null;
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Runs `fn`: returns its result, or null when it threw an EmotorchError with a code (anything else fails). */
function resultOrCoded(fn: () => unknown, what: string): unknown {
  try {
    return fn();
  } catch (e) {
    expect(e, `${what} threw ${(e as Error)?.name}: ${(e as Error)?.message}`).toBeInstanceOf(et.EmotorchError);
    expect((e as et.EmotorchError).code, what).toMatch(/^ERR_[A-Z_]+$/);
    return null;
  }
}

/** A result must be well formed: tensors have shapes of non-negative integers and readable data. */
function checkResult(r: unknown, what: string): void {
  const seen: et.Tensor[] = [];
  const walk = (v: unknown) => {
    if (v instanceof et.Tensor) {
      expect(
        v.shape.every((d) => Number.isInteger(d) && d >= 0),
        `${what}: shape [${v.shape}]`,
      ).toBe(true);
      expect(v.numel, what).toBe(v.shape.reduce((a, b) => a * b, 1));
      expect(v.dataSync().length, what).toBe(v.numel);
      seen.push(v);
    } else if (Array.isArray(v)) v.forEach(walk);
  };
  walk(r);
  for (const t of seen) t.dispose();
}

const desc = (s: Spec) => `${s.dtype}[${s.shape}]`;

describe('unary ops over random shapes and dtypes', () => {
  for (const op of UNARY_OPS) {
    it.prop([specArb()], { numRuns: 12, seed: 11 })(op.name, (s) => {
      const t = make(s);
      const r = resultOrCoded(() => op.run(t), `${op.name} on ${desc(s)}`);
      if (r !== null) checkResult(r, `${op.name} on ${desc(s)}`);
      t.dispose();
    });
  }
});

describe('binary ops over random (often mismatched) shapes and dtypes', () => {
  for (const op of BINARY_OPS) {
    it.prop([specArb(), specArb()], { numRuns: 20, seed: 12 })(op.name, (sa, sb) => {
      const a = make(sa);
      const b = make(sb);
      const what = `${op.name}(${desc(sa)}, ${desc(sb)})`;
      const r = resultOrCoded(() => op.run(a, b), what);
      if (op.broadcast) {
        const want = broadcastShape(sa.shape, sb.shape);
        if (want === null) expect(r, `${what} must refuse shapes that do not broadcast`).toBeNull();
        else if (r !== null) expect((r as et.Tensor).shape, what).toEqual(want);
      }
      if (r !== null) checkResult(r, what);
      a.dispose();
      b.dispose();
    });
  }
});

describe('ops over a dim, random dims in and out of range', () => {
  for (const op of DIM_OPS) {
    it.prop([specArb(), fc.integer({ min: -5, max: 4 })], { numRuns: 20, seed: 13 })(op.name, (s, dim) => {
      const t = make(s);
      const what = `${op.name} on ${desc(s)}, dim ${dim}`;
      const r = resultOrCoded(() => op.run(t, dim), what);
      if (op.shape) {
        const rank = Math.max(s.shape.length, 1); // a 0-d tensor takes dim 0 and -1, as in PyTorch
        if (dim < -rank || dim >= rank) expect(r, `${what} must refuse a dim out of range`).toBeNull();
        else if (r !== null && s.shape.length > 0) {
          const out = Array.isArray(r) ? r[0] : r;
          expect((out as et.Tensor).shape, what).toEqual(op.shape(s.shape, dim < 0 ? dim + rank : dim));
        }
      }
      if (r !== null) checkResult(r, what);
      t.dispose();
    });
  }
});
