import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { tmpdir } from '../helpers';
import { makeSampleData, readJsonl } from './util';

// Runs train in child processes against the built package (npm test builds dist first).
const DIST = path.join(__dirname, '..', '..', 'dist', 'index.js');
const CHILD = path.join(__dirname, 'resume-child.cjs');
const root = tmpdir();
const sampleDir = path.join(root, 'sample');
beforeAll(() => makeSampleData(sampleDir, 6));

const ARGS = {
  max_steps: 14,
  per_device_train_batch_size: 6,
  gradient_accumulation_steps: 2,
  learning_rate: 5e-3,
  weight_decay: 0.01,
  warmup_steps: 3,
  lr_scheduler_type: 'cosine',
  logging_steps: 1,
  save_steps: 3,
  eval_strategy: 'steps',
  eval_steps: 4,
  disable_tqdm: true,
  seed: 7,
};

function run(out: string, extra: Record<string, unknown> = {}, opts: Record<string, unknown> = {}) {
  const cfg = { dist: DIST, sampleDir, args: { ...ARGS, output_dir: out, ...extra }, ...opts };
  return spawnSync(process.execPath, [CHILD, JSON.stringify(cfg)], { encoding: 'utf8', timeout: 60_000 });
}
/** Train-loss records (loss, lr, grad norm) and eval losses after `step`, by step. */
function after(out: string, step: number) {
  const log = readJsonl(path.join(out, 'log.jsonl'));
  const pick = (r: Record<string, number>) =>
    r.loss !== undefined ? [r.step, r.loss, r.learning_rate, r.grad_norm, r.epoch] : r.eval_loss !== undefined ? [r.step, r.eval_loss] : null;
  return log
    .filter((r) => r.step > step)
    .map(pick)
    .filter(Boolean);
}

let reference: unknown[];
describe('resume is exact', () => {
  beforeAll(() => {
    const out = path.join(root, 'ref');
    const r = run(out);
    expect(r.status, r.stderr).toBe(0);
    reference = readJsonl(path.join(out, 'log.jsonl')).filter((x) => x.loss !== undefined);
    expect(reference.length).toBe(14);
  });

  it('after an abort (checkpoint saved on stop): every later logged loss equals the uninterrupted run bit for bit', () => {
    const out = path.join(root, 'abort');
    const a = run(out, {}, { abortAt: 5 });
    expect(a.status, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual({ globalStep: 5, stopReason: 'aborted' });
    expect(
      fs
        .readdirSync(out)
        .filter((n) => n.startsWith('checkpoint-'))
        .sort(),
    ).toEqual(['checkpoint-3', 'checkpoint-5']);
    const b = run(out, { resume_from_checkpoint: true }, { initSeed: 99 });
    expect(b.status, b.stderr).toBe(0);
    const got = after(out, 5);
    expect(got.length).toBe(9 + 2); // train logs 6..14, evaluations at 8 and 12
    expect(got).toEqual(after(path.join(root, 'ref'), 5));
  });

  for (const [at, step, from] of [
    ['write', 9, 6],
    ['rename', 12, 9],
  ] as const) {
    it(`after kill -9 during a save (${at === 'write' ? 'half-written' : 'written, not renamed'} checkpoint-${step}): resumes from checkpoint-${from}, bit for bit`, () => {
      const out = path.join(root, `kill-${at}`);
      const a = run(out, {}, { kill: { step, at } });
      expect(a.signal).toBe('SIGKILL');
      expect(fs.existsSync(path.join(out, `tmp-checkpoint-${step}`))).toBe(true);
      expect(fs.existsSync(path.join(out, `checkpoint-${step}`))).toBe(false);
      const b = run(out, { resume_from_checkpoint: true }, { initSeed: 99 });
      expect(b.status, b.stderr).toBe(0);
      expect(fs.existsSync(path.join(out, `tmp-checkpoint-${step}`))).toBe(false);
      const got = after(out, from);
      expect(got.length).toBeGreaterThan(5);
      expect(got).toEqual(after(path.join(root, 'ref'), from));
      const state = JSON.parse(fs.readFileSync(path.join(out, 'checkpoint-14', 'trainer_state.json'), 'utf8'));
      expect(state.global_step).toBe(14);
      expect(state.log_history.filter((r: { loss?: number }) => r.loss !== undefined).map((r: { loss: number }) => r.loss)).toEqual(
        reference.map((r) => (r as { loss: number }).loss),
      );
    });
  }

  it('Ctrl-C (SIGINT with handleSigint) finishes the step, saves a checkpoint and exits cleanly', () => {
    const out = path.join(root, 'sigint');
    const a = run(out, {}, { sigintAt: 4 });
    expect(a.status, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual({ globalStep: 4, stopReason: 'aborted' });
    expect(fs.existsSync(path.join(out, 'checkpoint-4', 'trainer_state.json'))).toBe(true);
  });
});
