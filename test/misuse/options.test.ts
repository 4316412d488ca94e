/**
 * Call options, table-driven (test/misuse/tables.ts OPTION_ROWS): every public call that takes an
 * options object refuses a name it does not know, and the other spelling of a knob it does know
 * (snake_case for its camelCase), with an ERR_INVALID_ARG naming it, instead of ignoring it
 * (issue 18 point 10: `Salmonn.generate({ max_new_tokens: 3 })` generated 200 tokens).
 */
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { OPTION_ROWS } from './tables';

async function outcome(run: () => unknown): Promise<unknown> {
  try {
    await run();
    return null;
  } catch (e) {
    return e;
  }
}

describe('unknown or misspelt call options are coded errors', () => {
  for (const row of OPTION_ROWS) {
    it(`${row.name}: refuses an unknown name and ${row.wrong.join(', ')}`, async () => {
      for (const bad of ['bogusOption', ...row.wrong]) {
        const e = await outcome(() => row.call({ ...row.valid, [bad]: 1 }));
        expect(e, `${row.name} with '${bad}'`).toBeInstanceOf(et.EmotorchError);
        expect((e as et.EmotorchError).code).toBe('ERR_INVALID_ARG');
        expect((e as et.EmotorchError).message).toContain(`but received "${bad}"`);
      }
    }, 60_000);
  }
});
