/**
 * Config misuse, table-driven (test/misuse/tables.ts CONFIG_ROWS): for every model and every
 * field, random invalid values of the field's kind make `create()` throw ERR_INVALID_ARG naming
 * the field; so do head counts that do not divide and lists of different lengths.
 */
import { describe, it, expect } from 'vitest';
import { fc } from '@fast-check/vitest';
import * as et from '../../lib/index';
import { CONFIG_ROWS, FieldKind } from './tables';

const RUNS = 6;

const nonInteger = fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x));
const notANumber = fc.constantFrom<unknown>(NaN, Infinity, -Infinity, '8', true, [4], {});

/** Values that are invalid for a field of this kind. */
export function invalidValues(kind: FieldKind): fc.Arbitrary<unknown> {
  if (typeof kind === 'object')
    return fc.oneof(
      fc.string().map((s) => `no_such_${s}`),
      fc.constantFrom<unknown>(1, true, ['x']),
    );
  switch (kind) {
    case 'posint':
      return fc.oneof(fc.integer({ min: -1e9, max: 0 }), nonInteger, notANumber);
    case 'nonneg':
      return fc.oneof(fc.integer({ min: -1e9, max: -1 }), nonInteger, notANumber);
    case 'prob':
      return fc.oneof(fc.double({ min: -1e6, max: -1e-9, noNaN: true }), fc.double({ min: 1 + 1e-9, max: 1e6, noNaN: true }), notANumber);
    case 'posnum':
      return fc.oneof(fc.double({ min: -1e6, max: 0, noNaN: true }), notANumber);
    case 'nonnegnum':
      return fc.oneof(fc.double({ min: -1e6, max: -1e-9, noNaN: true }), notANumber);
    case 'bool':
      return fc.constantFrom<unknown>('true', 'false', 'yes', 1, 0, [true]);
    case 'act':
      return fc.oneof(
        fc.string().map((s) => `no_such_act_${s}`),
        fc.constantFrom<unknown>(1, true, ['gelu']),
      );
    case 'posintlist':
      return fc.oneof(
        fc.constant<unknown>([]),
        fc.constantFrom<unknown>(8, '8,8', [8, 'x']),
        fc.tuple(fc.oneof(fc.integer({ min: -1e6, max: 0 }), nonInteger, fc.constant(NaN)), fc.nat(1)).map(([bad, at]) => (at ? [8, bad] : [bad, 8])),
      );
  }
}

/** Expects `fn` to throw ERR_INVALID_ARG whose message names one of `fields`. */
function expectInvalid(fn: () => unknown, fields: string[], shown: unknown): void {
  let err: unknown;
  let made: unknown;
  try {
    made = fn();
  } catch (e) {
    err = e;
  }
  const desc = `${fields.join(' / ')} = ${typeof shown === 'number' || typeof shown === 'string' ? (JSON.stringify(shown) ?? String(shown)) : JSON.stringify(shown)}`;
  expect(made, `create() accepted ${desc}`).toBeUndefined();
  expect(err, desc).toBeInstanceOf(et.EmotorchError);
  expect((err as et.EmotorchError).code, `${desc}: ${(err as Error).message}`).toBe('ERR_INVALID_ARG');
  expect(
    fields.some((f) => (err as Error).message.includes(f)),
    `the message names ${fields.join(' or ')}: ${(err as Error).message}`,
  ).toBe(true);
}

describe.each(CONFIG_ROWS)('$name config', (row) => {
  it('the small valid config creates a module', () => {
    expect(row.create(row.valid)).toBeInstanceOf(et.nn.Module);
  });

  it.each(Object.entries(row.fields))('%s: invalid values throw ERR_INVALID_ARG naming it', (field, kind) => {
    fc.assert(
      fc.property(invalidValues(kind), (v) => {
        expectInvalid(() => row.create({ ...row.valid, [field]: v }), [field], v);
      }),
      { numRuns: RUNS, seed: 7 },
    );
  });

  it.each(row.divides ?? [])('%s must be divisible by %s', (a, b) => {
    const total = row.valid[a] as number;
    const bad = [...Array(total + 1).keys()].filter((k) => k > 1 && total % k !== 0);
    fc.assert(
      fc.property(fc.constantFrom(...bad), (k) => {
        expectInvalid(() => row.create({ ...row.valid, [b]: k }), [a, b], k);
      }),
      { numRuns: Math.min(RUNS, bad.length), seed: 7 },
    );
  });

  it.each((row.sameLength ?? []).map((g) => [g.join(', '), g]))('%s must have the same length', (_n, group) => {
    fc.assert(
      fc.property(fc.constantFrom(...(group as string[])), fc.integer({ min: 1, max: 4 }), (field, extra) => {
        const list = row.valid[field] as number[];
        expectInvalid(() => row.create({ ...row.valid, [field]: [...list, ...Array(extra).fill(list[list.length - 1])] }), group as string[], field);
      }),
      { numRuns: RUNS, seed: 7 },
    );
  });
});

describe('LLaMA config: head size', () => {
  const llama = CONFIG_ROWS.find((r) => r.name === 'LlamaForCausalLM')!;
  it('an odd head size (rotary turns pairs of features) throws ERR_INVALID_ARG naming where it came from', () => {
    expectInvalid(() => llama.create({ ...llama.valid, head_dim: 5 }), ['head_dim'], 5);
    expectInvalid(
      () => llama.create({ ...llama.valid, hidden_size: 12, num_attention_heads: 4, num_key_value_heads: 2 }),
      ['hidden_size / num_attention_heads'],
      12,
    );
    expect(llama.create({ ...llama.valid, head_dim: 6 })).toBeInstanceOf(et.nn.Module);
  });
});
