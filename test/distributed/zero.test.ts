import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { runRanks, RankResult } from './util';
import { tmpdir } from '../tmp';

// ShardedDataParallel (ZeRO stages 1–3) on Gloo against plain DDP trained beside it in the same
// processes (same initial weights, same data), and against one process on the whole batch: the
// gathered weights after 20 AdamW steps.
const ok = (res: RankResult[]) => {
  for (const r of res) expect(r.code, `rank ${r.rank}: ${r.signal ?? ''} ${r.stderr}`).toBe(0);
};

describe('ShardedDataParallel on 2 ranks: each stage = DDP = one process', () => {
  const res: Record<number, RankResult[]> = {};
  beforeAll(async () => {
    for (const stage of [1, 2, 3]) res[stage] = await runRanks(2, { scenario: 'zero', stage, steps: 20 }, { timeoutMs: 60_000 });
  }, 150_000);

  for (const stage of [1, 2, 3]) {
    it(`stage ${stage}: weights after 20 AdamW steps within 1e-6 of DDP's and of the whole batch in one process`, () => {
      ok(res[stage]);
      const r0 = res[stage][0].result;
      console.log(`ZeRO-${stage}, 2 ranks: max |w - DDP| ${r0.ddpDiff}, max |w - one process| ${r0.refDiff}`);
      expect(r0.ddpDiff).toBeLessThan(1e-6);
      expect(r0.refDiff).toBeLessThan(1e-6);
      // the module called directly after the last step computes with the stepped weights
      for (const r of res[stage]) expect(r.result.directDiff).toBeLessThan(1e-5);
    });
  }

  it('units are the native models (frozen parameters left out); the full state dict on rank 0 only, with every key', () => {
    const r0 = res[3][0].result;
    expect(r0.units.map((u: { name: string }) => u.name)).toEqual(['body.layers', 'head']);
    expect(r0.units.flatMap((u: { parameters: string[] }) => u.parameters)).not.toContain('inp.weight');
    expect(r0.fullKeys).toEqual([
      'inp.weight',
      'inp.bias',
      'body.layers.0.weight',
      'body.layers.0.bias',
      'body.layers.1.weight',
      'body.layers.1.bias',
      'head.weight',
      'head.bias',
    ]);
    expect(res[3][1].result.fullKeys).toEqual([]);
  });

  it('memory of parameters + gradients + optimizer state: stage 3 ≤ (1/2 + 10 %) of DDP, stage 2 below stage 1', () => {
    const [m1, m2, m3] = [1, 2, 3].map((s) => res[s][0].result);
    console.log(`bytes per rank: DDP ${m1.ddpBytes}, ZeRO-1 ${m1.zeroBytes}, ZeRO-2 ${m2.zeroBytes}, ZeRO-3 ${m3.zeroBytes}`);
    expect(m3.zeroBytes).toBeLessThanOrEqual((1 / 2 + 0.1) * m3.ddpBytes);
    expect(m2.zeroBytes).toBeLessThan(m1.zeroBytes);
    expect(m3.zeroBytes).toBeLessThan(m2.zeroBytes);
  });

  it('at stage 3 a freed parameter read through the module is an error (no crash); stateDict() is refused; detach() gives the module back', () => {
    for (const r of res[3]) {
      expect(r.result.readFreed).toBe('ERR_DIST_STATE');
      expect(r.result.stateDictError).toBe('ERR_DIST_STATE');
      expect(r.result.detachedSame).toBe(true);
    }
  });
});

describe('ShardedDataParallel on 3 ranks', () => {
  it('stage 3 with offload and 2 micro-batches of accumulation = DDP with noSync, within 1e-6', async () => {
    const res = await runRanks(3, { scenario: 'zero', stage: 3, steps: 20, accum: 2, offload: true }, { timeoutMs: 60_000 });
    ok(res);
    const r0 = res[0].result;
    console.log(`ZeRO-3 offload accum 2, 3 ranks: |w - DDP| ${r0.ddpDiff}, |w - one process| ${r0.refDiff}`);
    expect(r0.ddpDiff).toBeLessThan(1e-6);
    expect(r0.refDiff).toBeLessThan(1e-6);
  }, 70_000);

  it('stage 2, gradients clipped to 0.25: the global norm every step = DDP’s, weights within 1e-6', async () => {
    const res = await runRanks(3, { scenario: 'zero', stage: 2, steps: 20, clip: 0.25 }, { timeoutMs: 60_000 });
    ok(res);
    const r0 = res[0].result;
    expect(r0.norms).toHaveLength(20);
    r0.norms.forEach((n: number, i: number) => expect(Math.abs(n - r0.ddpNorms[i]) / r0.ddpNorms[i]).toBeLessThan(1e-5));
    expect(r0.norms.filter((n: number) => n > 0.25).length).toBeGreaterThanOrEqual(10); // the clip acted
    expect(r0.ddpDiff).toBeLessThan(1e-6);
  }, 70_000);

  describe('a LLaMA: one unit per decoder layer and per module beside them, sharded checkpoints resumed on 2 ranks', () => {
    const dir = path.join(tmpdir(), 'shards');
    let wrote: RankResult[];
    let resumed: RankResult[];
    beforeAll(async () => {
      wrote = await runRanks(3, { scenario: 'zero', stage: 3, steps: 20, model: 'llama', lr: 2e-3, shardDir: dir }, { timeoutMs: 90_000 });
      resumed = await runRanks(2, { scenario: 'zeroResume', stage: 3, model: 'llama', shardDir: dir }, { timeoutMs: 60_000 });
    }, 160_000);

    it('gathers each layer alone; weights after 20 steps within 1e-6 of DDP; memory ≤ (1/3 + 10 %) of DDP', () => {
      ok(wrote);
      const r0 = wrote[0].result;
      // each module beside the layer loop is a unit of its own (the LM head is reduced first in backward)
      expect(r0.units.map((u: { name: string }) => u.name)).toEqual([
        'model.layers.0',
        'model.layers.1',
        'model.layers.2',
        'model.embed_tokens.weight',
        'model.norm.weight',
        'lm_head.weight',
      ]);
      expect(r0.units.slice(3).map((u: { parameters: string[] }) => u.parameters)).toEqual([
        ['model.embed_tokens.weight'],
        ['model.norm.weight'],
        ['lm_head.weight'],
      ]);
      console.log(`ZeRO-3 LLaMA, 3 ranks: |w - DDP| ${r0.ddpDiff}; bytes ${r0.zeroBytes} vs DDP ${r0.ddpBytes}`);
      expect(r0.ddpDiff).toBeLessThan(1e-6);
      expect(r0.zeroBytes).toBeLessThanOrEqual((1 / 3 + 0.1) * r0.ddpBytes);
      expect(fs.readdirSync(dir).sort()).toEqual(['zero-rank-0-of-3.safetensors', 'zero-rank-1-of-3.safetensors', 'zero-rank-2-of-3.safetensors']);
    });

    it('the shards of 3 ranks resume on 2: the same weights bit for bit, the same optimizer state', () => {
      ok(resumed);
      const a = wrote[0].result.whole as Array<[string, number[]]>;
      const b = resumed[0].result.whole as Array<[string, number[]]>;
      expect(b.map(([n]) => n)).toEqual(a.map(([n]) => n));
      for (let i = 0; i < a.length; i++) expect(b[i][1], a[i][0]).toEqual(a[i][1]);
      for (const r of resumed) expect(r.result.optimizerKeys).toBe(wrote[0].result.optimizerKeys); // every shard has its moments and step
      // the second moments summed over all ranks: the same numbers, split 3 ways or 2
      const m3 = wrote[0].result.momentSum as number;
      expect(Math.abs(resumed[0].result.momentSum - m3) / m3).toBeLessThan(1e-12);
      expect(resumed[0].result.missingDir).toBe('ERR_FORMAT');
    });
  });
});

describe('ShardedDataParallel: a rank killed mid-step', () => {
  it('is named (ERR_DIST_PEER) by the others in backward, as DDP names it', async () => {
    const res = await runRanks(2, { scenario: 'zeroKill', failRank: 1, failAt: 3, timeoutMs: 20_000 }, { timeoutMs: 40_000 });
    expect(res[1].signal).toBe('SIGKILL');
    const r0 = res[0].result;
    expect(res[0].code, res[0].stderr).toBe(0);
    console.log(r0.error.message);
    expect(r0.steps).toBe(3);
    expect(r0.error.code).toBe('ERR_DIST_PEER');
    expect(r0.error.message).toMatch(/rank 1 is gone/);
    expect(r0.error.message).toMatch(/ZeRO (parameters|gradients) of/);
    expect(r0.error.afterMs).toBeLessThan(10_000);
  }, 45_000);
});
