/**
 * Concurrent calls, table-driven (test/misuse/tables.ts MODEL_ROWS): many forwards started at
 * once on one module give the same outputs as the same forwards run one after another.
 */
import { describe, expect } from 'vitest';
import { it, fc } from '@fast-check/vitest';
import * as et from '../../lib/index';
import { MODEL_ROWS } from './tables';

describe('concurrent forwards on one module', () => {
  for (const row of MODEL_ROWS) {
    const m = row.create();
    m.eval();
    it.prop([fc.array(fc.nat(1000), { minLength: 2, maxLength: 8 })], { numRuns: 3, seed: 31 })(`${row.name}: parallel = sequential`, async (seeds) => {
      const inputs = seeds.map((s) => row.input(s));
      const sequential: Float32Array[] = [];
      for (const x of inputs) sequential.push((await et.noGrad(() => m.forward(x)).then(row.output)).float().dataSync() as Float32Array);
      const parallel = await Promise.all(inputs.map((x) => et.noGrad(() => m.forward(x)).then(row.output)));
      parallel.forEach((t, i) => {
        const got = t.float().dataSync() as Float32Array;
        expect(got.length, `call ${i}`).toBe(sequential[i].length);
        let worst = 0;
        for (let k = 0; k < got.length; k++) worst = Math.max(worst, Math.abs(got[k] - sequential[i][k]));
        expect(worst, `${row.name} call ${i} of ${seeds.length}: max |parallel − sequential|`).toBeLessThanOrEqual(1e-6);
      });
    });
  }
});
