// Collectives issued at once (Promise.all), interleaved with other heavy calls, start in call order
// on every rank: each call's job joins the compute queue on the JS thread when the call is made.
// Before, libuv's threads could hand two calls to the compute thread in either order, so ranks
// paired different collectives (wrong sums for equal sizes, an abort inside Gloo for unequal ones).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DIST, LAUNCHER, ONE_THREAD, freePort } from './util';
import { tmpdir } from '../tmp';

const script = `
const et = require(${JSON.stringify(DIST)});
(async () => {
  await et.distributed.init({ timeoutMs: 20000 });
  const r = et.distributed.rank();
  const n = 200;
  const size = (i) => 1 + ((i * 7919) % 97) * 31;  // different sizes, same on every rank
  const calls = [];
  for (let i = 0; i < n; i++) {
    calls.push(et.distributed.allReduce(et.full([size(i)], (r + 1) * (i + 1)), 'sum'));
    if (i % 4 === 0) calls.push(et.randn([96, 96]).matmul(et.randn([96, 96])).data());  // other heavy calls in between
  }
  const out = await Promise.all(calls);
  let bad = 0;
  for (let i = 0, k = 0; i < n; i++, k++) {
    const t = out[k];
    if (i % 4 === 0) k++;
    const v = t.dataSync();
    if (v.length !== size(i) || v.some((x) => x !== 3 * (i + 1))) bad++;  // (1 + 2)(i + 1) over ranks 0 and 1
  }
  console.log('RESULT ' + JSON.stringify({ rank: r, bad }));
  et.distributed.destroy();
})().catch((e) => { console.error(e); process.exit(1); });`;

describe('collectives issued concurrently', () => {
  it('pair up across ranks in call order (200 all-reduces of different sizes at once, with compute calls between)', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'order.cjs');
    fs.writeFileSync(file, script);
    const port = await freePort();
    const r = spawnSync(process.execPath, [LAUNCHER, '--nproc-per-node', '2', '--master-port', String(port), file], {
      env: { ...process.env, ...ONE_THREAD },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const results = r.stdout
      .split('\n')
      .filter((l) => l.includes('RESULT '))
      .map((l) => JSON.parse(l.slice(l.indexOf('RESULT ') + 7)));
    expect(results.map((x) => x.rank).sort()).toEqual([0, 1]);
    expect(results.map((x) => x.bad)).toEqual([0, 0]);
  });
});
