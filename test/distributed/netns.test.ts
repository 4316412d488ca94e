import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DIST, WORKER, LAUNCHER, runRanks, freePort } from './util';
import { tmpdir } from '../tmp';

// Two "hosts" on this machine: two network namespaces joined by a veth pair (as the c10d tests
// make them), each running `emotorch-run --nnodes 2` with one rank; a ZeRO-3 run across them
// equals the same run on one host. Needs root and iproute2 (skipped otherwise).
const id = `${process.pid % 10000}`;
const NS = [`etA${id}`, `etB${id}`];
const DEV = [`veA${id}`, `veB${id}`];
const ADDR = ['10.231.7.1', '10.231.7.2'];
const sh = (args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
const canNetns = (() => {
  if (os.platform() !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = `etP${id}`;
  const r = sh(['netns', 'add', probe]);
  if (r.status !== 0) return false;
  sh(['netns', 'del', probe]);
  return true;
})();

describe.skipIf(!canNetns)('ZeRO-3 across two hosts (network namespaces, emotorch-run --nnodes 2)', () => {
  const cfg = { scenario: 'zero', stage: 3, steps: 10, model: 'llama', lr: 2e-3, returnWhole: true };
  let hosts: Array<{ code: number | null; out: string; err: string }>;
  let oneHost: Awaited<ReturnType<typeof runRanks>>;
  let resultFile: string;
  beforeAll(async () => {
    const steps: string[][] = [
      ['netns', 'add', NS[0]],
      ['netns', 'add', NS[1]],
      ['link', 'add', DEV[0], 'type', 'veth', 'peer', 'name', DEV[1]],
      ['link', 'set', DEV[0], 'netns', NS[0]],
      ['link', 'set', DEV[1], 'netns', NS[1]],
      ...[0, 1].flatMap((i) => [
        ['-n', NS[i], 'addr', 'add', `${ADDR[i]}/24`, 'dev', DEV[i]],
        ['-n', NS[i], 'link', 'set', DEV[i], 'up'],
        ['-n', NS[i], 'link', 'set', 'lo', 'up'],
      ]),
    ];
    for (const s of steps) {
      const r = sh(s);
      if (r.status !== 0) throw new Error(`ip ${s.join(' ')}: ${r.stderr}`);
    }
    const port = await freePort();
    const out = path.join(tmpdir(), 'result');
    resultFile = `${out}.0.json`;
    const host = (i: number) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const p = spawn(
          'ip',
          [
            'netns',
            'exec',
            NS[i],
            process.execPath,
            LAUNCHER,
            '--nnodes',
            '2',
            '--node-rank',
            String(i),
            '--nproc-per-node',
            '1',
            '--master-addr',
            ADDR[0],
            '--master-port',
            String(port),
            WORKER,
            JSON.stringify({ dist: DIST, out, ...cfg }),
          ],
          { env: { ...process.env, OMP_NUM_THREADS: '1', GLOO_SOCKET_IFNAME: DEV[i] }, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        const r = { code: null as number | null, out: '', err: '' };
        p.stdout.on('data', (d) => (r.out += d));
        p.stderr.on('data', (d) => (r.err += d));
        const timer = setTimeout(() => p.kill('SIGKILL'), 90_000);
        p.on('exit', (code) => {
          clearTimeout(timer);
          r.code = code;
          resolve(r);
        });
      });
    hosts = await Promise.all([host(0), host(1)]);
    oneHost = await runRanks(2, cfg, { timeoutMs: 90_000 });
  }, 200_000);

  afterAll(() => {
    for (const n of NS) sh(['netns', 'del', n]); // the veth pair goes with its namespaces
  });

  it('trains across the namespaces (each rank reaches the other only through the veth pair)', () => {
    for (const h of hosts) expect(h.code, h.err + h.out).toBe(0);
  });

  it('gives the weights of the same run on one host, bit for bit', () => {
    const across = JSON.parse(fs.readFileSync(resultFile, 'utf8')).whole as Array<[string, number[]]>;
    const local = oneHost[0].result.whole as Array<[string, number[]]>;
    expect(across.map(([n]) => n)).toEqual(local.map(([n]) => n));
    for (let i = 0; i < local.length; i++) expect(across[i][1], local[i][0]).toEqual(local[i][1]);
    expect(oneHost[0].result.ddpDiff).toBeLessThan(1e-6);
  });
});
