import { describe, it, expect, beforeAll } from 'vitest';
import { runRanks, RankResult } from './util';

// DDP over 2 Gloo ranks x batch 4 against 1 process x batch 8 (computed on rank 0 alongside):
// gradients every step and weights after 20 AdamW steps; noSync accumulation; frozen parameters.
describe('DistributedDataParallel on 2 ranks', () => {
  let res: RankResult[];
  beforeAll(async () => {
    // A 4 KB bucket cap: several buckets, launched in order while backward runs.
    res = await runRanks(2, { scenario: 'ddp', steps: 20, bucketCapMb: 4 / 1024 }, { timeoutMs: 60_000 });
  }, 70_000);

  it('both ranks finish', () => {
    for (const r of res) expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
  });

  it('rank 0 weights (frozen ones too) reach every rank when wrapped', () => {
    expect(res[0].result.initDiff).toBe(0);
    expect(res[1].result.before).not.toEqual(res[0].result.before); // seeded differently
    expect(res[1].result.wrapped).toEqual(res[0].result.wrapped);
    expect(res[1].result.wrapped).toEqual(res[0].result.before);
  });

  it('gradients equal those of one process with the doubled batch, every step, within 1e-6', () => {
    const g = res[0].result.gradDiffs as number[];
    expect(g).toHaveLength(20);
    console.log(`DDP gradients: max diff over 20 steps ${Math.max(...g)}`);
    expect(Math.max(...g)).toBeLessThan(1e-6);
  });

  it('weights after 20 AdamW steps equal, within 1e-6', () => {
    console.log(`DDP weights after 20 AdamW steps: max diff ${res[0].result.weightDiff}`);
    expect(res[0].result.weightDiff).toBeLessThan(1e-6);
  });

  it('noSync accumulates locally, the next backward averages the sum', () => {
    expect(res[0].result.accumDiff).toBeLessThan(1e-6);
  });

  it('noSync around the forward only: its later backward does not average; the next synced one averages the sum', () => {
    // Without averaging, the two ranks' gradients (of different data) differ.
    for (const r of res) expect(r.result.deferredRankDiff).toBeGreaterThan(1e-3);
    expect(res[0].result.deferredAccumDiff).toBeLessThan(1e-6);
  });

  it('a backward that failed after its buckets were sent does not affect the next one', () => {
    for (const r of res) expect(r.result.failedBackward).toBe('ERR_TORCH');
    expect(res[0].result.afterFailureDiff).toBeLessThan(1e-6);
  });

  it('frozen parameters are left out (no bucket, no gradient)', () => {
    for (const r of res) {
      expect(r.result.frozenGrad).toEqual([true, true]);
      const names = (r.result.buckets as string[][]).flat();
      expect(names.some((n) => n.startsWith('inp.'))).toBe(false);
      expect(names).toContain('head.weight');
      expect((r.result.buckets as string[][]).length).toBeGreaterThan(1);
    }
  });
});

describe('unused parameters; modules that differ across ranks', () => {
  let plain: RankResult[], find: RankResult[], mismatch: RankResult[];
  beforeAll(async () => {
    [plain, find, mismatch] = await Promise.all([
      runRanks(2, { scenario: 'unused', part: 'plain' }, { timeoutMs: 60_000 }),
      runRanks(2, { scenario: 'unused', part: 'find' }, { timeoutMs: 60_000 }),
      runRanks(2, { scenario: 'mismatch' }, { timeoutMs: 60_000 }),
    ]);
  }, 70_000);

  it('without findUnusedParameters, backward names the parameter', () => {
    for (const r of plain) {
      expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
      expect(r.result.plain.code).toBe('ERR_DIST_UNUSED');
      expect(r.result.plain.message).toMatch(/spare\.weight/);
      expect(r.result.plain.message).toMatch(/findUnusedParameters/);
    }
  });

  it('after ERR_DIST_UNUSED the group is marked broken: the next collective fails at once, saying why', () => {
    for (const r of plain) {
      expect(r.result.next.code).toBe('ERR_DIST_BROKEN');
      expect(r.result.next.message).toMatch(/no gradient \(spare\.weight/);
      expect(r.result.next.ms).toBeLessThan(1000);
    }
  });

  it('a layer of another width on one rank: ERR_INVALID_ARG on both ranks naming it, no abort, group usable', () => {
    for (const r of mismatch) {
      expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
      expect(r.result.error.code).toBe('ERR_INVALID_ARG');
      expect(r.result.error.message).toMatch(/rank 1 differs from rank 0/);
      expect(r.result.error.message).toMatch(/entry #\d+, rank 1 differs there/);
      expect(r.result.after).toBe(2);
    }
    console.log(mismatch[1].result.error.message);
    expect(mismatch[0].result.error.message).toMatch(/parameter 'head\.weight' \[5, 24\] float32/);
    expect(mismatch[1].result.error.message).toMatch(/parameter 'head\.weight' \[6, 24\] float32/);
  });

  it('with it, gradients average and the unused parameter gets none', () => {
    for (const r of find) {
      expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
      expect(r.result.spareGrad).toEqual([true, true]);
      expect(r.result.headSame).toBe(0);
    }
  });
});
