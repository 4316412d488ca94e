#!/usr/bin/env node
/**
 * `emotorch-run`: starts N ranks of a script on this machine with torchrun's environment
 * (static rendezvous), prefixes their output with their rank, forwards signals, and fails the
 * whole job with the failing rank's exit status as soon as any rank fails.
 *
 *   npx emotorch-run --nproc-per-node 2 train.mjs --epochs 3
 *   npx emotorch-run --nnodes 2 --node-rank 0 --nproc-per-node 4 --master-addr 10.0.0.1 --master-port 29500 train.mjs
 *
 * Thin on purpose: parsing, spawning and supervision only; the rendezvous itself is done by the
 * ranks (et.distributed.init(): rank 0 hosts the store at MASTER_ADDR:MASTER_PORT).
 */
import { spawn, ChildProcess } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The most of a rank's error file that is shown (the rest is cut: it is a message, not a log). */
const MAX_ERROR_FILE_BYTES = 64 * 1024;

/**
 * The start of a rank's error file, or '' when there is none. Only a regular file is read (opened
 * without blocking, so a FIFO put in its place cannot hang the launcher), and at most
 * {@link MAX_ERROR_FILE_BYTES} of it.
 */
function readErrorFile(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch {
    return ''; // no error file: only Python's elastic error handler writes one
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return '';
    const buf = Buffer.alloc(Math.min(st.size, MAX_ERROR_FILE_BYTES));
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return buf.toString('utf8', 0, n).trim() + (st.size > MAX_ERROR_FILE_BYTES ? ` … (${st.size - MAX_ERROR_FILE_BYTES} more bytes in the error file)` : '');
  } catch {
    return '';
  } finally {
    fs.closeSync(fd);
  }
}

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  masterPort: number;
  rdzvId: string;
  /** Run the command itself instead of `node script`. */
  noNode: boolean;
  /** Prefix each output line with `[rankN]: `. */
  prefix: boolean;
  /** After a failure (or a signal forwarded to them), how long the ranks get before SIGKILL. */
  killGraceMs: number;
  command: string[];
}

const USAGE = `Usage: emotorch-run [options] script.mjs [script args…]

Starts --nproc-per-node copies of \`node script.mjs\` with torchrun's environment (RANK,
WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GROUP_RANK, ROLE_RANK, …);
the script calls et.distributed.init().

Options (torchrun's names; '-' or '_', '--x v' or '--x=v'):
  --nproc-per-node N   ranks on this machine (default 1)
  --nnodes M           machines (default 1)
  --node-rank R        this machine's index, 0 … M-1 (default 0)
  --master-addr A      address of node 0, where rank 0 hosts the rendezvous store (default 127.0.0.1)
  --master-port P      its port (default 29500)
  --rdzv-id ID         job id given to the ranks as TORCHELASTIC_RUN_ID; their store keys are under it
                       (default: a random id on one node, none with --nnodes > 1: give the same on every node)
  --no-node            run the command as given instead of \`node script\` (torchrun's --no-python)
  --no-prefix          do not prefix output lines with [rankN]:
  --kill-grace-ms T    after a rank fails, the others get SIGTERM, and after a signal to the launcher
                       the ranks get that signal; ranks alive T ms later get SIGKILL (default 30000)
  -h, --help           this text

The job ends when every rank has exited; as soon as one fails, the others are stopped and
emotorch-run exits with the failing rank's status (128 + signal number for a signal).`;

class UsageError extends Error {}

function int(v: string | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new UsageError(
      `Expected an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ''} for --${name} but received ${v === undefined ? 'nothing' : JSON.stringify(v)}`,
    );
  return Number(v);
}

/** Parses argv (without node and the launcher's path). @throws UsageError */
export function parseArgs(argv: string[]): LaunchOptions | 'help' {
  const o: LaunchOptions = {
    nprocPerNode: 1,
    nnodes: 1,
    nodeRank: 0,
    masterAddr: '127.0.0.1',
    masterPort: 29500,
    rdzvId: '',
    noNode: false,
    prefix: true,
    killGraceMs: 30000,
    command: [],
  };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') return 'help';
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('--')) break;
    const eq = a.indexOf('=');
    const name = (eq >= 0 ? a.slice(2, eq) : a.slice(2)).replace(/_/g, '-');
    const value = () => {
      if (eq >= 0) return a.slice(eq + 1);
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      return argv[++i];
    };
    switch (name) {
      case 'nproc-per-node':
        o.nprocPerNode = int(value(), name, 1, 4096);
        break;
      case 'nnodes':
        o.nnodes = int(value(), name, 1, 1 << 16);
        break;
      case 'node-rank':
        o.nodeRank = int(value(), name, 0);
        break;
      case 'master-addr':
        o.masterAddr = value();
        if (!o.masterAddr) throw new UsageError('--master-addr needs a host name or address');
        break;
      case 'master-port':
        o.masterPort = int(value(), name, 1, 65535);
        break;
      case 'rdzv-id':
        o.rdzvId = value();
        if (!o.rdzvId) throw new UsageError('--rdzv-id needs a non-empty id');
        break;
      case 'kill-grace-ms':
        o.killGraceMs = int(value(), name, 0);
        break;
      case 'no-node':
        o.noNode = true;
        break;
      case 'no-prefix':
        o.prefix = false;
        break;
      default:
        throw new UsageError(`unknown option --${name} (see --help)`);
    }
  }
  o.command = argv.slice(i);
  if (!o.command.length) throw new UsageError('no script given (see --help)');
  if (o.nodeRank >= o.nnodes) throw new UsageError(`Expected --node-rank from 0 to ${o.nnodes - 1} (--nnodes ${o.nnodes}) but received ${o.nodeRank}`);
  // One node: a fresh id per job. Several: every node's launcher must give the same (torchrun's 'none' unless --rdzv-id).
  if (!o.rdzvId) o.rdzvId = o.nnodes === 1 ? `et-${randomBytes(6).toString('hex')}` : 'none';
  return o;
}

export const SIGNALS_TO_HANDLE = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'] as const;

/**
 * The variables torchrun (its LocalElasticAgent, static rendezvous) gives local rank `localRank`:
 * test/fixtures/torchrun-env.json is the list recorded from torchrun itself. One value differs on
 * purpose: TORCHELASTIC_USE_AGENT_STORE is False, since this launcher hosts no store (rank 0 does).
 */
export function rankEnv(o: LaunchOptions, localRank: number, errorFile: string, base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const world = o.nnodes * o.nprocPerNode;
  const rank = o.nodeRank * o.nprocPerNode + localRank;
  const env: Record<string, string> = {
    RANK: String(rank),
    LOCAL_RANK: String(localRank),
    GROUP_RANK: String(o.nodeRank),
    ROLE_RANK: String(rank),
    ROLE_NAME: 'default',
    LOCAL_WORLD_SIZE: String(o.nprocPerNode),
    WORLD_SIZE: String(world),
    GROUP_WORLD_SIZE: String(o.nnodes),
    ROLE_WORLD_SIZE: String(world),
    MASTER_ADDR: o.masterAddr,
    MASTER_PORT: String(o.masterPort),
    TORCHELASTIC_RESTART_COUNT: '0',
    TORCHELASTIC_MAX_RESTARTS: '0',
    TORCHELASTIC_RUN_ID: o.rdzvId,
    TORCHELASTIC_USE_AGENT_STORE: 'False',
    TORCHELASTIC_ERROR_FILE: errorFile,
    TORCHELASTIC_SIGNALS_TO_HANDLE: SIGNALS_TO_HANDLE.join(','),
    TORCH_NCCL_ASYNC_ERROR_HANDLING: base.TORCH_NCCL_ASYNC_ERROR_HANDLING ?? '1',
  };
  // As torchrun: one OpenMP thread per rank unless told otherwise (several ranks share the cores).
  env.OMP_NUM_THREADS = base.OMP_NUM_THREADS ?? (o.nprocPerNode > 1 ? '1' : '');
  if (!env.OMP_NUM_THREADS) delete env.OMP_NUM_THREADS;
  return env;
}

/** Copies a child's stream to `out`, line by line, each line prefixed. */
function pipeLines(src: NodeJS.ReadableStream, out: NodeJS.WritableStream, prefix: string): Promise<void> {
  return new Promise((resolve) => {
    let rest = '';
    src.setEncoding('utf8');
    src.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop()!;
      if (lines.length) out.write(lines.map((l) => prefix + l + '\n').join(''));
    });
    src.on('end', () => {
      if (rest) out.write(prefix + rest + '\n');
      resolve();
    });
  });
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `was killed by ${signal}` : `exited with code ${code}`;
}

/** Runs the job; resolves to the launcher's exit status. */
export async function launch(o: LaunchOptions, log: (s: string) => void = (s) => process.stderr.write(`emotorch-run: ${s}\n`)): Promise<number> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-run-'));
  const [cmd, ...args] = o.noNode ? o.command : [process.execPath, ...o.command];
  const children: Array<{ rank: number; p: ChildProcess; exited: Promise<void>; code: number | null; signal: NodeJS.Signals | null; done: boolean }> = [];
  let failure: { rank: number; status: number; why: string } | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;

  const stopOthers = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    for (const c of children) if (!c.done) c.p.kill(signal);
    killTimer = setTimeout(() => {
      for (const c of children) if (!c.done) c.p.kill('SIGKILL');
    }, o.killGraceMs);
    killTimer.unref();
  };

  const onSignal = (sig: NodeJS.Signals) => {
    log(`got ${sig}: forwarding it to the ranks (SIGKILL for those still running after ${o.killGraceMs} ms)`);
    for (const c of children) if (!c.done) c.p.kill(sig);
    if (!failure) failure = { rank: -1, status: 128 + (os.constants.signals[sig] ?? 15), why: `stopped by ${sig}` };
    if (!killTimer) {
      killTimer = setTimeout(() => {
        for (const c of children) if (!c.done) c.p.kill('SIGKILL');
      }, o.killGraceMs);
      killTimer.unref();
    }
  };
  for (const s of SIGNALS_TO_HANDLE) process.on(s, onSignal);

  try {
    for (let local = 0; local < o.nprocPerNode; local++) {
      const errorFile = path.join(tmp, String(local), 'error.json');
      fs.mkdirSync(path.dirname(errorFile), { recursive: true });
      const env = { ...process.env, ...rankEnv(o, local, errorFile) };
      const rank = Number(env.RANK);
      // Its own process group: a terminal's Ctrl-C reaches the launcher once, which forwards it once.
      const p = spawn(cmd, args, { env, stdio: ['inherit', o.prefix ? 'pipe' : 'inherit', o.prefix ? 'pipe' : 'inherit'], detached: true });
      const c = { rank, p, exited: Promise.resolve(), code: null as number | null, signal: null as NodeJS.Signals | null, done: false };
      const streams = o.prefix ? [pipeLines(p.stdout!, process.stdout, `[rank${rank}]: `), pipeLines(p.stderr!, process.stderr, `[rank${rank}]: `)] : [];
      c.exited = new Promise<void>((resolve) => {
        p.on('error', (e) => {
          c.done = true;
          c.code = 127;
          if (!failure) failure = { rank, status: 127, why: `could not start: ${e.message}` };
          stopOthers('SIGTERM');
          resolve();
        });
        // eslint-disable-next-line @typescript-eslint/no-misused-promises -- it awaits only pipeLines, which never rejects
        p.on('exit', async (code, signal) => {
          await Promise.all(streams);
          c.done = true;
          c.code = code;
          c.signal = signal;
          if ((code !== 0 || signal) && !failure) {
            const status = signal ? 128 + (os.constants.signals[signal] ?? 0) : (code ?? 1);
            failure = { rank, status, why: describeExit(code, signal) };
            const detail = readErrorFile(errorFile);
            log(
              `rank ${rank} (local rank ${rank - o.nodeRank * o.nprocPerNode}, pid ${p.pid}) ${failure.why}: stopping the other ranks${detail ? `\n${detail}` : ''}`,
            );
            stopOthers('SIGTERM');
          }
          resolve();
        });
      });
      children.push(c);
    }
    await Promise.all(children.map((c) => c.exited));
  } finally {
    if (killTimer) clearTimeout(killTimer);
    for (const s of SIGNALS_TO_HANDLE) process.removeListener(s, onSignal);
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (failure) {
    const f = failure as { rank: number; status: number; why: string };
    if (f.rank >= 0) log(`job failed: rank ${f.rank} ${f.why} (exit status ${f.status})`);
    return f.status;
  }
  return 0;
}

async function main(): Promise<void> {
  let o: LaunchOptions | 'help';
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`emotorch-run: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  if (o === 'help') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  process.exitCode = await launch(o);
}

if (require.main === module) void main();
