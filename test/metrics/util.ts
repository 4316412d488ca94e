/** Shared helpers of the metrics tests: fixture loading and max-difference bookkeeping. */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { expect } from 'vitest';

export const DIR = path.join(__dirname, '..', 'fixtures', 'metrics');
export const TOL = 1e-9;

/** Reads a gzipped JSON fixture, turning the "NaN" / "Infinity" strings back into numbers. */
export function load(name: string): any {
  return JSON.parse(zlib.gunzipSync(fs.readFileSync(path.join(DIR, `${name}.gz`))).toString('utf8'), (_k, v) =>
    v === 'NaN' ? NaN : v === 'Infinity' ? Infinity : v === '-Infinity' ? -Infinity : v,
  );
}

const maxDiff = new Map<string, { diff: number; n: number }>();

/** Asserts |a − b| ≤ TOL (NaN equals NaN) and records the difference under `metric`. */
export function close(metric: string, a: number, b: number, where = ''): void {
  const both = (Number.isNaN(a) && Number.isNaN(b)) || a === b;
  const d = both ? 0 : Math.abs(a - b);
  const m = maxDiff.get(metric) ?? { diff: 0, n: 0 };
  m.diff = Math.max(m.diff, Number.isNaN(d) ? Infinity : d);
  m.n++;
  maxDiff.set(metric, m);
  if (!both && !(d <= TOL)) expect.fail(`${metric}${where ? ` (${where})` : ''}: ${a} vs reference ${b}`);
}

/** Element-wise {@link close}. */
export function closeAll(metric: string, a: readonly number[], b: readonly number[], where = ''): void {
  expect(a.length, `${metric} ${where} length`).toBe(b.length);
  a.forEach((v, i) => close(metric, v, b[i], `${where}[${i}]`));
}

/** Exact equality, recorded under `metric` as a difference of 0 (or a failure). */
export function exact(metric: string, a: unknown, b: unknown, where = ''): void {
  expect(a, `${metric} ${where}`).toEqual(b);
  const m = maxDiff.get(metric) ?? { diff: 0, n: 0 };
  m.n++;
  maxDiff.set(metric, m);
}

/** Prints "metric  max|diff|  comparisons" for every metric compared in this file. */
export function report(title: string): void {
  const lines = [...maxDiff]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `  ${k.padEnd(44)} ${v.diff.toExponential(2).padStart(9)}  (${v.n} comparisons)`);
  console.log(`${title}: max |ours − reference|\n${lines.join('\n')}`);
}
