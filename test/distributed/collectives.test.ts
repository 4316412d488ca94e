import { describe, it, expect, beforeAll } from 'vitest';
import { runRanks, RankResult } from './util';

// Two ranks (Gloo, 127.0.0.1, one thread each) run worker.cjs's `collectives` scenario; the
// expected values are computed here from the same input formula, independently of the library.
const W = 2;
function input(dtype: string, n: number, salt: number, rank: number): number[] {
  const v = Array.from({ length: n }, (_, i) => (((rank + 1) * (i + 1) * 7 + salt * 3) % 23) - (dtype === 'uint8' || dtype === 'bool' ? 0 : 11));
  return dtype === 'bool' ? v.map((x) => (x % 2 === 0 ? 1 : 0)) : v;
}
function reduce(op: string, xs: number[][]): number[] {
  return xs[0].map((_, i) => {
    const col = xs.map((x) => x[i]);
    switch (op) {
      case 'sum':
        return col.reduce((a, b) => a + b, 0);
      case 'avg':
        return col.reduce((a, b) => a + b, 0) / col.length;
      case 'max':
        return Math.max(...col);
      case 'min':
        return Math.min(...col);
      case 'product':
        return col.reduce((a, b) => a * b, 1);
      default:
        throw new Error(op);
    }
  });
}
/** The logical (row-major) order of the [2, n/2] view `t.reshape([n/2, 2]).transpose(0, 1)`. */
function transposed(v: number[]): number[] {
  const out: number[] = [];
  for (let j = 0; j < 2; j++) for (let k = 0; k < v.length / 2; k++) out.push(v[k * 2 + j]);
  return out;
}

const CASES: Array<Record<string, unknown>> = [];
for (const dtype of ['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int8']) {
  for (const op of ['sum', 'max', 'min']) CASES.push({ dtype, n: 37, op });
}
for (const dtype of ['float32', 'float64', 'float16', 'bfloat16']) CASES.push({ dtype, n: 10, op: 'avg' });
for (const dtype of ['float32', 'int64']) CASES.push({ dtype, n: 9, op: 'product' });
CASES.push({ dtype: 'uint8', n: 12, op: 'sum' }, { dtype: 'uint8', n: 12, op: 'max' });
CASES.push({ dtype: 'bool', n: 12, op: 'max' }, { dtype: 'bool', n: 12, op: 'min' });
CASES.push({ dtype: 'float32', n: 100_003, op: 'sum', salt: 1 }); // large, odd length
CASES.push({ dtype: 'float32', n: 0, op: 'sum' }, { dtype: 'int64', n: 0, op: 'max' }); // 0 elements
CASES.push({ dtype: 'float32', n: 16, op: 'sum', strided: true }, { dtype: 'int32', n: 10, op: 'max', strided: true });
CASES.push({ dtype: 'float32', n: 11, op: 'broadcast', src: 1 }, { dtype: 'int64', n: 6, op: 'broadcast', src: 0 });
CASES.push({ dtype: 'float64', n: 0, op: 'broadcast', src: 1 }, { dtype: 'float32', n: 8, op: 'broadcast', src: 1, strided: true });
CASES.push({ dtype: 'float32', n: 7, op: 'allGather' }, { dtype: 'int8', n: 5, op: 'allGather' }, { dtype: 'float32', n: 0, op: 'allGather' });
CASES.push({ dtype: 'float64', n: 8, op: 'allGather', strided: true });
CASES.push({ dtype: 'float32', n: 10, op: 'reduceScatter', reduce: 'sum' }, { dtype: 'int64', n: 6, op: 'reduceScatter', reduce: 'max' });
CASES.push({ dtype: 'float64', n: 4, op: 'reduceScatter', reduce: 'avg' });

describe('collectives on 2 Gloo ranks', () => {
  let res: RankResult[];
  beforeAll(async () => {
    res = await runRanks(W, { scenario: 'collectives', cases: CASES }, { timeoutMs: 60_000 });
  }, 70_000);

  it('both ranks finish cleanly', () => {
    for (const r of res) expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
    expect(res.map((r) => r.result.world)).toEqual([2, 2]);
  });

  it('every case gives the independently computed values on every rank', () => {
    for (const r of res) {
      for (const c of r.result.cases) {
        const dtype = c.dtype as string,
          n = c.n as number,
          salt = (c.salt as number) ?? 0;
        const ins = [0, 1].map((k) => input(dtype, n, salt, k));
        const view = (v: number[]) => (c.strided ? transposed(v) : v);
        const label = `rank ${r.rank} ${JSON.stringify({ ...c, got: undefined, base: undefined })}`;
        if (c.op === 'broadcast') {
          expect(c.got, label).toEqual(view(ins[c.src]));
          if (c.strided) expect(c.base, label).toEqual(ins[c.src]);
        } else if (c.op === 'allGather') {
          expect(c.got, label).toEqual(ins.map(view));
        } else if (c.op === 'reduceScatter') {
          const full = reduce(c.reduce, ins);
          expect(c.got, label).toEqual(full.slice((r.rank * n) / W, ((r.rank + 1) * n) / W));
        } else {
          const want = reduce(c.op, ins).map((v) => (dtype === 'bool' ? (v ? 1 : 0) : v));
          expect(c.got, label).toEqual(view(want));
          if (c.strided) expect(c.base, label).toEqual(want);
        }
      }
    }
  });

  it('Gloo is used through the declaration shim with the library layout', () => {
    const rows = res[0].result.layout as Array<{ name: string; ok: boolean; detail: string }>;
    expect(rows.length).toBeGreaterThan(5);
    for (const row of rows) expect(row.ok, `${row.name} (${row.detail})`).toBe(true);
  });
});
