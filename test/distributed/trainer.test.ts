import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { runRanks, RankResult } from './util';
import { USDM_DS_CONFIG, tmpdir } from '../helpers';

// The Trainer on 2 ranks x batch 4 against one process x batch 8 (no process group): the loss
// curve, the gathered eval metrics, rank 0 alone writing; a 2-rank checkpoint resumed on 1 rank.
type Log = Record<string, number>;
const losses = (logs: Log[]) => logs.filter((r) => r.loss !== undefined).map((r) => [r.step, r.loss, r.grad_norm, r.learning_rate]);
const evals = (logs: Log[]) => logs.filter((r) => r.eval_loss !== undefined).map((r) => [r.step, r.eval_loss, r.eval_accuracy, r.eval_n]);
function maxDiff(a: number[][], b: number[][]): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  a.forEach((row, i) =>
    row.forEach((v, j) => {
      d = Math.max(d, Math.abs(v - b[i][j]));
    }),
  );
  return d;
}

describe('Trainer over 2 ranks', () => {
  const root = tmpdir();
  let two: RankResult[], one: RankResult[], resumed: RankResult[];
  beforeAll(async () => {
    [two, one] = [
      await runRanks(2, { scenario: 'trainer', distributed: true, outputDir: path.join(root, 'two') }, { timeoutMs: 60_000 }),
      await runRanks(1, { scenario: 'trainer', distributed: false, outputDir: path.join(root, 'one') }, { timeoutMs: 60_000 }),
    ];
    // The 2-rank checkpoint of step 4, resumed by one process of batch 8.
    resumed = await runRanks(
      1,
      { scenario: 'trainer', distributed: false, outputDir: path.join(root, 'resumed'), resume: path.join(root, 'two', 'checkpoint-4') },
      { timeoutMs: 60_000 },
    );
  }, 120_000);

  it('all runs finish', () => {
    for (const r of [...two, ...one, ...resumed]) expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
  });

  it('2 ranks x batch 4 give the loss curve of 1 x batch 8 (within 1e-5), on both ranks', () => {
    const ref = losses(one[0].result.logs);
    expect(ref).toHaveLength(8);
    for (const r of two) {
      const d = maxDiff(losses(r.result.logs), ref);
      console.log(`rank ${r.rank}: loss curve (loss, grad norm, lr) max diff ${d}`);
      expect(d).toBeLessThan(1e-5);
    }
  });

  it('eval metrics are reduced over the ranks: the whole set, as one process sees it', () => {
    const ref = evals(one[0].result.logs);
    expect(ref.map((e) => e[3])).toEqual([13, 13]);
    for (const r of two) expect(maxDiff(evals(r.result.logs), ref)).toBeLessThan(1e-5);
  });

  it('only rank 0 writes checkpoints, log.jsonl and plots', () => {
    const files = fs.readdirSync(path.join(root, 'two')).sort();
    expect(files).toEqual(expect.arrayContaining(['checkpoint-4', 'checkpoint-8', 'log.jsonl']));
    const lines = fs
      .readFileSync(path.join(root, 'two', 'log.jsonl'), 'utf8')
      .trim()
      .split('\n');
    expect(lines.filter((l) => l.includes('"loss"')).length).toBe(8); // once, not once per rank
    const keys = Object.keys(JSON.parse(fs.readFileSync(path.join(root, 'two', 'checkpoint-4', 'trainer_state.json'), 'utf8')).emotorch.data);
    expect(keys).toEqual(expect.arrayContaining(['world', 'perDevice']));
  });

  it('a checkpoint written by 2 ranks resumes on 1 rank (steps 5-8 as the uninterrupted runs)', () => {
    const after = (logs: Log[]) => losses(logs).filter((r) => r[0] > 4);
    const d = maxDiff(after(resumed[0].result.logs), after(one[0].result.logs));
    console.log(`resumed on 1 rank: steps 5-8 max diff ${d}`);
    expect(d).toBeLessThan(1e-5);
    expect(resumed[0].result.globalStep).toBe(8);
  });
});

describe("Trainer with args.deepspeed (USDM's ZeRO-3 layout) over 2 ranks", () => {
  const root = tmpdir();
  // USDM's config without bf16 (float32 here, to compare with the float32 run)
  const { bf16: _bf16, ...ds } = USDM_DS_CONFIG;
  const dsFull = { ...ds, gradient_clipping: 'auto' };
  let zero: RankResult[], one: RankResult[], resumed: RankResult[];
  beforeAll(async () => {
    zero = await runRanks(2, { scenario: 'trainer', distributed: true, deepspeed: dsFull, outputDir: path.join(root, 'zero') }, { timeoutMs: 60_000 });
    one = await runRanks(1, { scenario: 'trainer', distributed: false, outputDir: path.join(root, 'one') }, { timeoutMs: 60_000 });
    resumed = await runRanks(
      2,
      { scenario: 'trainer', distributed: true, deepspeed: dsFull, outputDir: path.join(root, 'resumed'), resume: path.join(root, 'zero', 'checkpoint-4') },
      { timeoutMs: 60_000 },
    );
  }, 150_000);

  it('the loss curve (loss, global grad norm, lr) and eval metrics of one process with the whole batch, within 1e-5', () => {
    for (const r of [...zero, ...one, ...resumed]) expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
    for (const r of zero) {
      const d = maxDiff(losses(r.result.logs), losses(one[0].result.logs));
      console.log(`ZeRO-3 Trainer rank ${r.rank}: loss curve max diff ${d}`);
      expect(d).toBeLessThan(1e-5);
      expect(maxDiff(evals(r.result.logs), evals(one[0].result.logs))).toBeLessThan(1e-5);
    }
  });

  it("checkpoints hold every rank's shards and the gathered weights; after train() the model is whole again", () => {
    const ck = path.join(root, 'zero', 'checkpoint-4');
    expect(fs.readdirSync(path.join(ck, 'zero')).sort()).toEqual(['zero-rank-0-of-2.safetensors', 'zero-rank-1-of-2.safetensors']);
    expect(fs.existsSync(path.join(ck, 'model.safetensors'))).toBe(true);
    expect(fs.existsSync(path.join(ck, 'optimizer.safetensors'))).toBe(false);
    const w0 = zero[0].result.weights as number[][];
    expect(zero[1].result.weights).toEqual(w0);
    const ref = one[0].result.weights ?? null;
    expect(ref).toBeNull(); // (the one-process run reports none)
  });

  it('a ZeRO checkpoint resumes: steps 5-8 as the uninterrupted run', () => {
    const after = (logs: Log[]) => losses(logs).filter((r) => r[0] > 4);
    const d = maxDiff(after(resumed[0].result.logs), after(zero[0].result.logs));
    console.log(`ZeRO-3 resumed: steps 5-8 max diff ${d}`);
    expect(d).toBeLessThan(1e-6);
    expect(resumed[0].result.globalStep).toBe(8);
  });
});

describe('Trainer.train() twice on 2 ranks', () => {
  const root = tmpdir();
  let two: RankResult[], one: RankResult[];
  beforeAll(async () => {
    [two, one] = await Promise.all([
      runRanks(
        2,
        { scenario: 'trainer', distributed: true, twice: true, maxSteps: 4, timeoutMs: 5000, outputDir: path.join(root, 'two') },
        { timeoutMs: 60_000 },
      ),
      runRanks(1, { scenario: 'trainer', distributed: false, twice: true, maxSteps: 4, outputDir: path.join(root, 'one') }, { timeoutMs: 60_000 }),
    ]);
  }, 70_000);

  it('both calls give the loss curve of one process x batch 8', () => {
    for (const r of [...two, ...one]) expect(r.code, `rank ${r.rank}: ${r.stderr}`).toBe(0);
    const ref1 = losses(one[0].result.first),
      ref2 = losses(one[0].result.logs);
    expect(ref1).toHaveLength(4);
    expect(ref2).toHaveLength(4);
    for (const r of two) {
      expect(maxDiff(losses(r.result.first), ref1)).toBeLessThan(1e-5);
      expect(maxDiff(losses(r.result.logs), ref2)).toBeLessThan(1e-5);
    }
  });

  it('the DDP wrapper the Trainer made is detached when train() ends: a backward on one rank alone works', () => {
    expect(two[1].result.alone).toBe('ok');
  });

  it('a callback that stops training on one rank stops every rank at that step', async () => {
    const r = await runRanks(
      2,
      { scenario: 'trainer', distributed: true, stopOnRank: 1, maxSteps: 8, timeoutMs: 10_000, outputDir: path.join(root, 'stop') },
      { timeoutMs: 60_000 },
    );
    for (const x of r) {
      expect(x.code, x.stderr).toBe(0);
      expect(x.result.globalStep).toBe(3);
      expect(x.result.stopReason).toBe('callback');
    }
  }, 70_000);
});
