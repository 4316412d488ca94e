/**
 * Use after dispose, table-driven (test/misuse/tables.ts DISPOSED_USES, MODEL_ROWS): touching a
 * disposed tensor in any way, of any dtype and shape, throws (or rejects with) ERR_DISPOSED;
 * disposing twice is a no-op or ERR_DISPOSED; a disposed module refuses to run.
 */
import { describe, expect } from 'vitest';
import { it, fc } from '@fast-check/vitest';
import * as et from '../../lib/index';
import { DISPOSED_USES, MODEL_ROWS } from './tables';

const FLOATS: et.DType[] = ['float32', 'float64'];

async function expectDisposed(fn: () => unknown, what: string): Promise<void> {
  let err: unknown;
  try {
    const r = fn();
    if (r && typeof (r as Promise<unknown>).then === 'function') await r;
  } catch (e) {
    err = e;
  }
  expect(err, `${what} did not throw`).toBeInstanceOf(et.EmotorchError);
  expect((err as et.EmotorchError).code, `${what}: ${(err as Error).message}`).toBe('ERR_DISPOSED');
}

describe('a disposed tensor', () => {
  for (const use of DISPOSED_USES) {
    it.prop([fc.constantFrom(...FLOATS), fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 2 }), fc.boolean()], { numRuns: 4, seed: 21 })(
      `${use.name} throws ERR_DISPOSED`,
      async (dtype, shape, twice) => {
        const d = et.ones(shape, { dtype });
        const live = et.ones(shape, { dtype });
        d.dispose();
        if (twice) {
          // Disposing again is either a no-op or ERR_DISPOSED, never a crash or another error.
          try {
            d.dispose();
          } catch (e) {
            expect((e as et.EmotorchError).code, String(e)).toBe('ERR_DISPOSED');
          }
        }
        await expectDisposed(() => use.run(d, live), `${use.name} on a disposed ${dtype}[${shape}]`);
        live.dispose();
      },
    );
  }

  it('stays disposed when another handle to the same data lives', async () => {
    const a = et.ones([2, 2]);
    const v = a.reshape([4]);
    a.dispose();
    await expectDisposed(() => a.add(1), 'add on the disposed base');
    expect(Array.from(v.dataSync())).toEqual([1, 1, 1, 1]);
    v.dispose();
  });
});

describe('a disposed module', () => {
  for (const row of MODEL_ROWS) {
    it(`${row.name}: forward after dispose() rejects with ERR_DISPOSED`, async () => {
      const m = row.create();
      m.eval();
      const x = row.input(1);
      expect(typeof (m as unknown as { dispose?: unknown }).dispose, `${row.name} has a dispose() method`).toBe('function');
      (m as unknown as { dispose(): void }).dispose();
      await expectDisposed(() => m.forward(x), `${row.name}.forward after dispose`);
      await expectDisposed(() => m.parameters()[0].sum(), `${row.name} parameter after dispose`);
    });
  }
});
