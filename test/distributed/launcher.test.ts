import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawn } from 'child_process';
import { DIST, WORKER, LAUNCHER, freePort, ONE_THREAD } from './util';
import { parseArgs } from '../../lib/cli/run';
import { tmpdir } from '../helpers';

const FIXTURE = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'torchrun-env.json'), 'utf8'));

function launch(
  args: string[],
  timeoutMs: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [LAUNCHER, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '',
      stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

describe('emotorch-run', () => {
  it('gives each rank the variables torchrun gives (test/fixtures/torchrun-env.json), prefixes output', async () => {
    const out = path.join(tmpdir(), 'env');
    const port = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.OMP_NUM_THREADS;
    const cfg = { dist: DIST, out, scenario: 'env', parentEnv: JSON.stringify(env) };
    const r = await launch(['--nproc-per-node', '2', '--master-port', String(port), WORKER, JSON.stringify(cfg)], 40_000, env);
    expect(r.code, r.stderr).toBe(0);
    for (const rank of [0, 1]) {
      const got = JSON.parse(fs.readFileSync(`${out}.${rank}.json`, 'utf8'));
      expect(got.sum).toBe(3);
      const want = FIXTURE.ranks[rank] as Record<string, string>;
      const added = got.added as Record<string, string>;
      // The same variable names as torchrun ...
      expect(Object.keys(added).sort()).toEqual(Object.keys(want).sort());
      // ... with the same values, except the run's port and error-file path, and the agent
      // store (this launcher hosts none: rank 0 does, so torch's env:// init agrees).
      for (const [k, v] of Object.entries(want)) {
        if (k === 'MASTER_PORT') expect(added[k]).toBe(String(port));
        else if (k === 'TORCHELASTIC_ERROR_FILE') expect(added[k]).toMatch(new RegExp(`${rank}/error\\.json$`));
        else if (k === 'TORCHELASTIC_USE_AGENT_STORE') expect(added[k]).toBe('False');
        // one node without --rdzv-id: a fresh id per job (torchrun: 'none'), the same for every rank
        else if (k === 'TORCHELASTIC_RUN_ID') expect(added[k]).toMatch(/^et-[0-9a-f]{12}$/);
        else expect(added[k], k).toBe(v);
      }
      expect(added.TORCHELASTIC_RUN_ID).toBe(JSON.parse(fs.readFileSync(`${out}.0.json`, 'utf8')).added.TORCHELASTIC_RUN_ID);
      expect(r.stdout).toContain(`[rank${rank}]: hello from stdout`);
      expect(r.stderr).toContain(`[rank${rank}]: hello from stderr`);
    }
  }, 45_000);

  it('a rank killed mid-run fails the job with its status, naming it, well within the timeout', async () => {
    const port = await freePort();
    const cfg = { dist: DIST, out: path.join(tmpdir(), 'kill'), scenario: 'loop', failRank: 1, failAt: 5, mode: 'kill', timeoutMs: 60_000 };
    const r = await launch(['--nproc-per-node', '2', '--master-port', String(port), '--kill-grace-ms', '2000', WORKER, JSON.stringify(cfg)], 40_000, {
      ...process.env,
      ...ONE_THREAD,
    });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(137); // 128 + SIGKILL
    expect(r.stderr).toMatch(/emotorch-run: rank 1 \(local rank 1, pid \d+\) was killed by SIGKILL: stopping the other ranks/);
    expect(r.stderr).toMatch(/job failed: rank 1 was killed by SIGKILL \(exit status 137\)/);
    expect(r.ms).toBeLessThan(20_000); // not the 60 s collective timeout
  }, 45_000);

  it('a rank exiting with an error code fails the job with that code', async () => {
    const port = await freePort();
    const cfg = { dist: DIST, out: path.join(tmpdir(), 'exit'), scenario: 'loop', failRank: 0, failAt: 2, mode: 'exit', exitCode: 7, timeoutMs: 60_000 };
    const r = await launch(['--nproc-per-node=2', `--master_port=${port}`, WORKER, JSON.stringify(cfg)], 40_000, { ...process.env, ...ONE_THREAD });
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/rank 0 .*exited with code 7/);
  }, 45_000);

  it('forwards a signal to the ranks and SIGKILLs a rank that ignores it after the grace period', async () => {
    const dir = tmpdir();
    const script = path.join(dir, 'ignore-term.cjs');
    fs.writeFileSync(script, "process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); setInterval(() => {}, 1000);");
    const port = await freePort();
    const t0 = Date.now();
    const p = spawn(process.execPath, [LAUNCHER, '--nproc-per-node', '2', '--master-port', String(port), '--kill-grace-ms', '800', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '',
      err = '';
    p.stderr.on('data', (d) => {
      err += d;
    });
    const ready = new Promise<void>((resolve) =>
      p.stdout.on('data', (d) => {
        out += d;
        if ((out.match(/ready/g) ?? []).length === 2) resolve();
      }),
    );
    const exited = new Promise<{ code: number | null; ms: number }>((resolve) => p.on('exit', (code) => resolve({ code, ms: Date.now() - t0 })));
    const guard = setTimeout(() => p.kill('SIGKILL'), 20_000);
    await ready;
    const sent = Date.now();
    p.kill('SIGTERM');
    const r = await exited;
    clearTimeout(guard);
    expect(r.code).toBe(128 + 15);
    expect(out).toMatch(/\[rank0\]: ignoring SIGTERM/);
    expect(out).toMatch(/\[rank1\]: ignoring SIGTERM/);
    expect(err).toMatch(/got SIGTERM: forwarding it to the ranks/);
    expect(Date.now() - sent).toBeGreaterThanOrEqual(700);
    expect(Date.now() - sent).toBeLessThan(10_000);
  }, 30_000);

  it('job ids: a fresh one per single-node job, --rdzv-id as given, none for several nodes', () => {
    const a = parseArgs(['x.mjs']),
      b = parseArgs(['x.mjs']);
    if (a === 'help' || b === 'help') throw new Error('help');
    expect(a.rdzvId).toMatch(/^et-[0-9a-f]{12}$/);
    expect(b.rdzvId).not.toBe(a.rdzvId);
    expect((parseArgs(['--rdzv-id', 'run7', 'x.mjs']) as { rdzvId: string }).rdzvId).toBe('run7');
    expect((parseArgs(['--nnodes', '2', 'x.mjs']) as { rdzvId: string }).rdzvId).toBe('none');
  });

  it('rejects bad options with a usage error naming the option', async () => {
    const r = await launch(['--nproc-per-node', 'two', 'x.mjs'], 10_000);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Expected an integer from 1 to 4096 for --nproc-per-node but received "two"/);
    const r2 = await launch(['--nnodes', '2', '--node-rank', '2', 'x.mjs'], 10_000);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/--node-rank from 0 to 1/);
    const r3 = await launch(['--nproc-per-node', '2'], 10_000);
    expect(r3.stderr).toMatch(/no script given/);
  }, 30_000);
});
