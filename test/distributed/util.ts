import * as fs from 'fs';
import * as path from 'path';
import * as net from 'net';
import { spawn } from 'child_process';
import { tmpdir } from '../tmp';

export const DIST = path.join(__dirname, '..', '..', 'dist', 'index.js');
export const WORKER = path.join(__dirname, 'worker.cjs');
export const LAUNCHER = path.join(__dirname, '..', '..', 'dist', 'cli', 'run.js');

/** A port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface RankResult {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  result: any;
}

/** One thread per rank, as the issue asks (2 cores shared). */
export const ONE_THREAD = { OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' };

/**
 * Starts `world` ranks of worker.cjs with torchrun's variables and the scenario `cfg`; resolves
 * when all have exited (killing all of them after `timeoutMs`). A rank's result is the JSON it
 * wrote to `<out>.<rank>.json` (null if none).
 */
export async function runRanks(
  world: number,
  cfg: Record<string, unknown>,
  opts: { timeoutMs?: number; env?: (rank: number) => Record<string, string>; stopWhenRankExits?: number } = {},
): Promise<RankResult[]> {
  const port = await freePort();
  const out = path.join(tmpdir(), 'result');
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const procs = Array.from({ length: world }, (_, rank) => {
    const env = {
      ...process.env,
      ...ONE_THREAD,
      RANK: String(rank),
      WORLD_SIZE: String(world),
      LOCAL_RANK: String(rank),
      LOCAL_WORLD_SIZE: String(world),
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      ...(opts.env?.(rank) ?? {}),
    };
    const p = spawn(process.execPath, [WORKER, JSON.stringify({ dist: DIST, out, ...cfg })], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const r: RankResult = { rank, code: null, signal: null, stdout: '', stderr: '', result: null };
    p.stdout.on('data', (d) => {
      r.stdout += d;
    });
    p.stderr.on('data', (d) => {
      r.stderr += d;
    });
    const done = new Promise<RankResult>((resolve) =>
      p.on('exit', (code, signal) => {
        r.code = code;
        r.signal = signal;
        try {
          r.result = JSON.parse(fs.readFileSync(`${out}.${rank}.json`, 'utf8'));
        } catch {
          r.result = null;
        }
        resolve(r);
      }),
    );
    return { p, done };
  });
  const timer = setTimeout(() => {
    for (const { p } of procs) p.kill('SIGKILL');
  }, timeoutMs);
  // A rank left hanging on purpose is killed once the rank under test is done.
  if (opts.stopWhenRankExits !== undefined) {
    procs[opts.stopWhenRankExits].done.then(() =>
      setTimeout(() => {
        for (const { p } of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
      }, 200),
    );
  }
  try {
    return await Promise.all(procs.map((x) => x.done));
  } finally {
    clearTimeout(timer);
  }
}
