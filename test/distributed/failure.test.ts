import { describe, it, expect } from 'vitest';
import { runRanks } from './util';

// A rank that dies or hangs: the other fails within the timeout with an error naming it.
describe('failure of a rank', () => {
  it('a killed rank is named (ERR_DIST_PEER) right away, not after the timeout', async () => {
    const t0 = Date.now();
    const res = await runRanks(2, { scenario: 'loop', failRank: 1, failAt: 3, mode: 'kill', timeoutMs: 20_000 }, { timeoutMs: 40_000 });
    expect(res[1].signal).toBe('SIGKILL');
    const r0 = res[0].result;
    console.log(r0.error.message);
    expect(res[0].code, res[0].stderr).toBe(0);
    expect(r0.iterations).toBe(3);
    expect(r0.error.code).toBe('ERR_DIST_PEER');
    expect(r0.error.message).toMatch(/rank 1 is gone/);
    expect(r0.error.message).toMatch(/allReduce \(collective #4/);
    expect(r0.error.afterMs).toBeLessThan(10_000); // connection loss + 1.5 s of heartbeat check
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 45_000);

  it('a hung rank (alive, not calling) is named once the timeout passes', async () => {
    const res = await runRanks(2, { scenario: 'loop', failRank: 1, failAt: 2, mode: 'hang', timeoutMs: 3000 }, { timeoutMs: 30_000, stopWhenRankExits: 0 });
    console.log(res[0].result.error.message);
    const r0 = res[0].result;
    expect(res[0].code, res[0].stderr).toBe(0);
    expect(r0.error.code).toBe('ERR_DIST_PEER');
    expect(r0.error.message).toMatch(/timed out after 3000 ms/);
    expect(r0.error.message).toMatch(/rank 1 is alive but has not reached this collective \(it has issued 2\)/);
    expect(r0.error.afterMs).toBeGreaterThanOrEqual(2900);
    expect(r0.error.afterMs).toBeLessThan(15_000);
    expect(res[1].signal).toBe('SIGKILL'); // the hung rank was killed by the harness
  }, 45_000);

  it('ranks of different jobs (TORCHELASTIC_RUN_ID) on one store do not form a group: each names the rank it misses', async () => {
    const res = await runRanks(
      2,
      { scenario: 'loop', iterations: 2, timeoutMs: 2000 },
      { timeoutMs: 20_000, env: (rank) => ({ TORCHELASTIC_RUN_ID: `job-${rank}` }) },
    );
    expect(res[0].code).toBe(1);
    expect(res[0].stderr).toMatch(/ERR_DIST_INIT rank 1 never joined/);
    expect(res[1].code).toBe(1); // it times out too, or sees rank 0's store go when rank 0 gives up first
    expect(res[1].stderr).toMatch(/ERR_DIST_INIT (rank 0 never joined|rendezvous at 127\.0\.0\.1:\d+ failed)/);
    // the same id: one group
    const ok = await runRanks(2, { scenario: 'loop', iterations: 2, timeoutMs: 5000 }, { timeoutMs: 20_000, env: () => ({ TORCHELASTIC_RUN_ID: 'job-a' }) });
    expect(ok.map((r) => r.result?.iterations)).toEqual([2, 2]);
  }, 45_000);

  it('a rank that never starts is named by init (ERR_DIST_INIT)', async () => {
    // Only rank 0 of 2 is started.
    const res = await runRanks(1, { scenario: 'loop', timeoutMs: 2000 }, { timeoutMs: 20_000, env: () => ({ WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2' }) });
    expect(res[0].code).toBe(1);
    expect(res[0].stderr).toMatch(/ERROR ERR_DIST_INIT rank 1 never joined the group at 127\.0\.0\.1:\d+ within 2000 ms/);
  }, 30_000);
});
