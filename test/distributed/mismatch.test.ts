import { describe, it, expect, beforeAll } from 'vitest';
import { runRanks, RankResult } from './util';

// Collectives that differ across ranks: before the check, Gloo aborted rank 0 (SIGABRT,
// `op.preamble.length <= op.nbytes`). Now both ranks get ERR_DIST_MISMATCH naming what each called.
describe('collectives that differ across ranks', () => {
  let res: RankResult[];
  beforeAll(async () => {
    res = await runRanks(2, { scenario: 'collectiveMismatch', timeoutMs: 20_000 }, { timeoutMs: 60_000 });
  }, 70_000);

  const caseOf = (rank: number, name: string) => res[rank].result.cases.find((c: any) => c.name === name);

  it('both ranks finish (no abort) and the group works after every refusal', () => {
    for (const r of res) expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
    for (const r of res) for (const c of r.result.cases) expect(c.after, `${c.name} rank ${r.rank}`).toBe(2);
  });

  it('each difference is refused on both ranks with the same message naming both calls', () => {
    const want: Record<string, RegExp> = {
      shape: /rank 0 called allReduce\(sum\) of a float32 \[2, 3\] tensor; rank 1 called allReduce\(sum\) of a float32 \[3, 2\] tensor/,
      numel: /rank 0 called allReduce\(sum\) of a float32 \[1000\] tensor; rank 1 called allReduce\(sum\) of a float32 \[10\] tensor/,
      dtype: /rank 0 called allGather of a float32 \[4\] tensor; rank 1 called allGather of a float64 \[4\] tensor/,
      op: /rank 0 called allReduce\(max\) of a float32 \[4\] tensor; rank 1 called barrier\(\)/,
      reduce: /rank 0 called allReduce\(sum\) .*; rank 1 called allReduce\(max\)/,
      src: /rank 0 called broadcast\(from rank 0\) .*; rank 1 called broadcast\(from rank 1\)/,
      ddp: /rank 0 called allReduce\(sum\) of a float32 \[\] tensor; rank 1 called DDP gradient bucket 0 \(of \d+\) of a float32 \[\d+\] tensor/,
    };
    for (const [name, re] of Object.entries(want)) {
      const a = caseOf(0, name).error,
        b = caseOf(1, name).error;
      expect(a?.code, name).toBe('ERR_DIST_MISMATCH');
      expect(a.message, name).toMatch(re);
      expect(a.message, name).toMatch(/every rank must call the same collectives/);
      expect(b?.message, name).toMatch(re);
    }
  });

  it('matching calls pass the check (a strided view matches a contiguous tensor of its shape)', () => {
    for (const name of ['same', 'layout']) {
      expect(caseOf(0, name).error, name).toBeNull();
      expect(caseOf(1, name).error, name).toBeNull();
    }
  });
});

describe('checkCollectives', () => {
  it('ranks that differ in it are refused by init on every rank', async () => {
    const res = await runRanks(2, { scenario: 'checksDiffer', timeoutMs: 5000 }, { timeoutMs: 30_000 });
    expect(res[0].code).toBe(1);
    expect(res[0].stderr).toMatch(/ERR_DIST_INIT rank 0 checks collectives across ranks but rank 1 do not/);
    expect(res[1].stderr).toMatch(/ERR_DIST_INIT rank 1 does not check collectives across ranks but rank 0 do/);
  }, 40_000);

  it('EMOTORCH_DIST_CHECKS=0 on every rank turns the check off; a bad value is refused', async () => {
    const off = await runRanks(2, { scenario: 'loop', iterations: 3, timeoutMs: 5000 }, { timeoutMs: 30_000, env: () => ({ EMOTORCH_DIST_CHECKS: '0' }) });
    expect(off.map((r) => r.result?.iterations)).toEqual([3, 3]);
    const bad = await runRanks(
      1,
      { scenario: 'loop', iterations: 1, timeoutMs: 5000 },
      { timeoutMs: 30_000, env: () => ({ EMOTORCH_DIST_CHECKS: 'yes', WORLD_SIZE: '1', LOCAL_WORLD_SIZE: '1' }) },
    );
    expect(bad[0].stderr).toMatch(/ERR_DIST_ENV Expected '1' or '0' for the environment variable EMOTORCH_DIST_CHECKS but received 'yes'/);
  }, 60_000);
});
