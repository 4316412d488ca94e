import * as path from 'path';
import * as fs from 'fs';
import * as os from 'os';
import { expect } from 'vitest';
import * as et from '../lib/index';

export const FIXTURES = path.join(__dirname, 'fixtures');

/** A fresh temporary folder for one test file. */
export function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-test-'));
}

/** Max |a - b| over all elements (both converted to float64 on the CPU). */
export function maxAbsDiff(a: et.Tensor, b: et.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return a.to({ dtype: 'float64' }).sub(b.to({ dtype: 'float64' })).abs().max().item();
}

/** Asserts an async call rejects with an EmotorchError of `code` whose message matches `re`. */
export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: string, re?: RegExp): Promise<et.EmotorchError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a rejection').toBeInstanceOf(et.EmotorchError);
  const e = err as et.EmotorchError;
  expect(e.code).toBe(code);
  if (re) expect(e.message).toMatch(re);
  expect(e.message).not.toMatch(/Exception raised from|frame #/);
  return e;
}

/** Asserts a sync call throws an EmotorchError of `code` whose message matches `re`. */
export function throwsWith(fn: () => unknown, code: string, re?: RegExp): et.EmotorchError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a throw').toBeInstanceOf(et.EmotorchError);
  const e = err as et.EmotorchError;
  expect(e.code).toBe(code);
  if (re) expect(e.message).toMatch(re);
  expect(e.message).not.toMatch(/Exception raised from|frame #/);
  return e;
}
