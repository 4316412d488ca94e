/**
 * Forward misuse, table-driven (test/misuse/tables.ts MODEL_ROWS): each named input replaced by a
 * tensor of random shape (0–4 dims of size 0–5, empty included) and dtype, or by a non-tensor;
 * the forward resolves or rejects with an EmotorchError that has a code, and a good input still
 * works afterwards.
 */
import { describe, expect } from 'vitest';
import { it, fc } from '@fast-check/vitest';
import * as et from '../../lib/index';
import { MODEL_ROWS } from './tables';

const badInput = fc.oneof(
  fc.tuple(fc.constantFrom(...et.DTYPES), fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 4 })).map(([dtype, shape]) => ({ dtype, shape })),
  fc.constantFrom<unknown>(null, 3, 'x', [1, 2], {}),
);

describe('forward with malformed inputs', () => {
  for (const row of MODEL_ROWS) {
    const m = row.create();
    m.eval();
    const names = Object.keys(row.input(0));
    it.prop([fc.constantFrom(...names), badInput], { numRuns: 25, seed: 41 })(`${row.name}: result or coded error`, async (name, bad) => {
      const inputs: Record<string, unknown> = row.input(1);
      const made =
        bad && typeof bad === 'object' && 'shape' in bad ? et.zeros((bad as { shape: number[] }).shape, { dtype: (bad as { dtype: et.DType }).dtype }) : bad;
      inputs[name] = made;
      try {
        const out = await m.forward(inputs as never);
        row.output(out).dispose();
      } catch (e) {
        expect(e, `${name} = ${made instanceof et.Tensor ? `${made.dtype}[${made.shape}]` : JSON.stringify(made)}: ${(e as Error).message}`).toBeInstanceOf(
          et.EmotorchError,
        );
        expect((e as et.EmotorchError).code).toMatch(/^ERR_[A-Z_]+$/);
      }
      const good = await m.forward(row.input(2));
      expect(row.output(good).shape.length).toBeGreaterThan(0);
    });
  }
});
