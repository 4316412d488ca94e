// The CPU caching allocator (lib/runtime.ts `et.cpu`, native/memory/cpu_cache.cc).
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'child_process';
import * as os from 'os';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../lib/index';
import { applyCgroupThreads, cgroupCpuLimit } from '../lib/runtime';
import { binding } from '../lib/native';
import { throwsWith, tmpdir } from './helpers';

const MB = 2 ** 20;
const DIST = path.join(__dirname, '..', 'dist', 'index.js');

/** Runs `body` in a fresh node process that loaded emotorch with `env`; returns its stdout, stderr and status. */
function child(body: string, env: Record<string, string>) {
  const script = `const et = require(${JSON.stringify(DIST)});\n(async () => { ${body} })().catch((e) => { console.error(e.code + ': ' + e.message); process.exit(3); });`;
  return spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
}

describe('et.cpu: the CPU caching allocator', () => {
  it('reuses a freed block of the same size class, and what is written into it is right', () => {
    et.cpu.configureCache({ enabled: true, limitMb: 512 });
    et.cpu.emptyCache();
    expect(et.cpu.cacheStats()).toMatchObject({ enabled: true, limitBytes: 512 * MB, cachedBytes: 0, cachedBlocks: 0 });
    const a = et.full([512, 1024], 3); // 2 MiB + its 64-byte header: the 2.25 MiB class
    expect(a.sum().item()).toBe(3 * 512 * 1024);
    a.dispose();
    const s1 = et.cpu.cacheStats();
    expect(s1.cachedBytes).toBeGreaterThanOrEqual(2.25 * MB);
    const b = et.zeros([520, 1024]); // another size in the same class (2 MiB < 2.03 MiB + 64 bytes ≤ 2.25 MiB)
    const s2 = et.cpu.cacheStats();
    expect(s2.hits).toBe(s1.hits + 1);
    expect(s2.cachedBytes).toBe(s1.cachedBytes - 2.25 * MB);
    const abs = b.abs();
    expect(abs.sum().item()).toBe(0); // the old block's 3s are overwritten
    for (const t of [b, abs]) t.dispose();
  });

  it('a training step gives the same numbers with the cache on and off', async () => {
    const run = async () => {
      et.manualSeed(3);
      const lin = et.nn.Linear.create({ in_features: 256, out_features: 1024, bias: true });
      const x = et.randn([600, 256]);
      const losses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const y = await lin.forward(x);
        const sq = y.pow(2);
        const loss = sq.mean();
        await loss.backward();
        const g = lin.parameters()[0].grad!.abs();
        losses.push(loss.item(), g.sum().item());
        for (const t of [y, sq, loss, g]) t.dispose();
      }
      x.dispose();
      lin.dispose();
      return losses;
    };
    et.cpu.configureCache({ enabled: true });
    const on = await run();
    const hits = et.cpu.cacheStats().hits;
    expect(hits).toBeGreaterThan(0);
    const limit = et.cpu.cacheStats().limitBytes;
    et.cpu.configureCache({ enabled: false });
    expect(et.cpu.cacheStats()).toMatchObject({ enabled: false, cachedBytes: 0, limitBytes: limit });
    const off = await run();
    expect(et.cpu.cacheStats().hits).toBe(hits); // off: nothing served from the cache
    expect(off).toEqual(on);
    expect(et.cpu.configureCache({ enabled: true }).limitBytes).toBe(limit); // on again, with its limit
  });

  it('on a miss keeps its blocks while in use + cached stays within 1/8 above the high-water mark of in use', () => {
    et.cpu.configureCache({ enabled: true, limitMb: 512 });
    const big = [et.zeros([2 * MB]), et.zeros([2 * MB])]; // 2 × 8 MiB at once: the mark is at least 16 MiB above what is in use now
    for (const t of big) t.dispose();
    et.cpu.emptyCache();
    et.zeros([MB]).dispose(); // 4 MiB, kept
    const s0 = et.cpu.cacheStats();
    const q = et.zeros([MB / 2]); // 2 MiB: a miss, and 4 + 2 MiB stay under the mark, so the 4 MiB block stays
    const s1 = et.cpu.cacheStats();
    expect(s1.misses).toBe(s0.misses + 1);
    expect(s1.cachedBytes).toBe(s0.cachedBytes);
    const p = et.zeros([MB]);
    expect(et.cpu.cacheStats().hits).toBe(s1.hits + 1);
    for (const t of [p, q]) t.dispose();
    // fill the cache (8 × 8 MiB), then ask for a block past the mark: what is cached goes back
    // first, down to an eighth of the mark (in use + cached + new ≤ max(mark, in use + new) + min(mark / 8, 256 MiB))
    const blocks = Array.from({ length: 8 }, () => et.zeros([2 * MB]));
    for (const t of blocks) t.dispose();
    const s2 = et.cpu.cacheStats();
    expect(s2.cachedBytes).toBeGreaterThanOrEqual(64 * MB);
    const n = Math.max(64 * MB, Math.ceil((s2.peakAllocatedBytes * 1.25 - s2.allocatedBytes) / 4 / MB) * MB); // floats: in use + new passes the mark
    const huge = et.zeros([n]);
    const s3 = et.cpu.cacheStats();
    expect(s3.misses).toBe(s2.misses + 1);
    expect(s3.cachedBytes).toBeLessThan(s2.cachedBytes);
    expect(s3.cachedBytes).toBeLessThanOrEqual(s3.peakAllocatedBytes / 8);
    huge.dispose();
  });

  it('keeps at most the limit, and emptyCache hands everything back', () => {
    et.cpu.configureCache({ enabled: true, limitMb: 3 });
    et.cpu.emptyCache();
    const released0 = et.cpu.cacheStats().released;
    const ts = [et.zeros([512, 1024]), et.zeros([512, 1024]), et.zeros([512, 1024])]; // 3 × 2 MiB (+ header: the 2.25 MiB class)
    for (const t of ts) t.dispose();
    const s = et.cpu.cacheStats();
    expect(s.cachedBytes).toBeLessThanOrEqual(3 * MB);
    expect(s.released).toBeGreaterThanOrEqual(released0 + 2); // one 2.25 MiB block fits in 3 MiB, not two
    expect(et.cpu.emptyCache()).toBe(s.cachedBytes);
    expect(et.cpu.cacheStats().cachedBytes).toBe(0);
    et.cpu.configureCache({ limitMb: 512 });
  });

  it('refuses bad settings by name', () => {
    throwsWith(() => et.cpu.configureCache({ limitMb: -1 }), 'ERR_INVALID_ARG', /limitMb/);
    throwsWith(() => et.cpu.configureCache({ limitMb: 1.5 }), 'ERR_INVALID_ARG', /limitMb/);
    throwsWith(() => et.cpu.configureCache({ limitMb: 2 ** 40 }), 'ERR_INVALID_ARG', /limitMb/);
    throwsWith(() => et.cpu.configureCache({ enabled: 'yes' as never }), 'ERR_INVALID_ARG', /enabled/);
    throwsWith(() => et.cpu.configureCache({ limitMB: 4 } as never), 'ERR_INVALID_ARG', /limitMB/);
    throwsWith(() => et.cpu.configureCache(null as never), 'ERR_INVALID_ARG', /configureCache/);
    throwsWith(() => et.zeros([2 ** 40]), 'ERR_OUT_OF_MEMORY', /allocate/);
  });

  it('reads EMOTORCH_CPU_ALLOCATOR and EMOTORCH_CPU_CACHE_MB when it loads', () => {
    const show = 'console.log(JSON.stringify(et.cpu.cacheStats()));';
    const off = child(show, { EMOTORCH_CPU_ALLOCATOR: 'default' });
    expect(off.status, off.stderr).toBe(0);
    expect(JSON.parse(off.stdout)).toMatchObject({ enabled: false, cachedBytes: 0 });
    const limited = child(show, { EMOTORCH_CPU_ALLOCATOR: 'cache', EMOTORCH_CPU_CACHE_MB: '64' });
    expect(limited.status, limited.stderr).toBe(0);
    expect(JSON.parse(limited.stdout)).toMatchObject({ enabled: true, limitBytes: 64 * MB });
    const bad = child(show, { EMOTORCH_CPU_ALLOCATOR: 'jemalloc' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/EMOTORCH_CPU_ALLOCATOR.*jemalloc/);
    const badMb = child(show, { EMOTORCH_CPU_CACHE_MB: '1e3' });
    expect(badMb.status).not.toBe(0);
    expect(badMb.stderr).toMatch(/EMOTORCH_CPU_CACHE_MB/);
  });

  it('advises blocks of 4 MiB and more to take transparent huge pages; EMOTORCH_CPU_HUGE_PAGES=0 turns that off', () => {
    // the AnonHugePages of this process grow by a 64 MiB tensor written through (where the kernel has them)
    const show = `const fs = require('fs');
      const huge = () => Number(/AnonHugePages:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'))[1]);
      const before = huge();
      const t = et.ones([16, 1024, 1024]);
      const sum = t.sum().item();
      console.log(JSON.stringify({ hugePages: et.cpu.cacheStats().hugePages, grewKb: huge() - before, sum }));`;
    const on = child(show, {});
    expect(on.status, on.stderr).toBe(0);
    const off = child(show, { EMOTORCH_CPU_HUGE_PAGES: '0' });
    expect(off.status, off.stderr).toBe(0);
    const a = JSON.parse(on.stdout),
      b = JSON.parse(off.stdout);
    expect([a.hugePages, b.hugePages, a.sum, b.sum]).toEqual([true, false, 16 * 2 ** 20, 16 * 2 ** 20]);
    const mode = fs.existsSync('/sys/kernel/mm/transparent_hugepage/enabled')
      ? /\[(\w+)\]/.exec(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1]
      : undefined;
    console.log(`transparent huge pages: ${mode ?? 'not on this system'}; AnonHugePages grew by ${a.grewKb} kB (on), ${b.grewKb} kB (off)`);
    if (mode === 'madvise' || mode === 'always') expect(a.grewKb).toBeGreaterThanOrEqual(32 * 1024); // most of the 64 MiB
    if (mode === 'madvise') expect(b.grewKb).toBeLessThan(2 * 1024); // not advised: none
    const bad = child(show, { EMOTORCH_CPU_HUGE_PAGES: 'yes' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/EMOTORCH_CPU_HUGE_PAGES.*yes/);
    throwsWith(() => et.cpu.configureCache({ hugePages: 1 as unknown as boolean }), 'ERR_INVALID_ARG', /hugePages/);
  });

  it("sets libgomp's spin count only while the addon loads: children do not inherit it, a user's value stays", () => {
    const show = 'console.log(String(process.env.GOMP_SPINCOUNT) + " " + String(process.env.OMP_WAIT_POLICY));';
    const env = { ...process.env };
    delete env.GOMP_SPINCOUNT;
    delete env.OMP_WAIT_POLICY;
    const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(DIST)}); ${show}`], { env, encoding: 'utf8' });
    expect(r.stdout.trim()).toBe('undefined undefined');
    expect(child(show, { GOMP_SPINCOUNT: '123' }).stdout.trim()).toMatch(/^123 /);
    expect(child(show, { OMP_WAIT_POLICY: 'passive' }).stdout.trim()).toMatch(/ passive$/);
  });

  it('refuses a misspelt EMOTORCH_CPU_LINEAR when it loads, naming it', () => {
    const show = 'console.log(JSON.stringify(et.cpu.linearBackends()));';
    for (const ok of ['auto', 'onednn', 'blas', 'aten']) expect(child(show, { EMOTORCH_CPU_LINEAR: ok }).status).toBe(0);
    const bad = child(show, { EMOTORCH_CPU_LINEAR: 'mkl' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/EMOTORCH_CPU_LINEAR.*mkl/);
  });
});

describe('threads by the cgroup CPU quota', () => {
  /** A made-up root with proc/self/cgroup and the given files under sys/fs/cgroup. */
  function tree(cgroup: string, files: Record<string, string>): string {
    const root = tmpdir();
    fs.mkdirSync(path.join(root, 'proc/self'), { recursive: true });
    fs.writeFileSync(path.join(root, 'proc/self/cgroup'), cgroup);
    for (const [f, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(root, 'sys/fs/cgroup', f)), { recursive: true });
      fs.writeFileSync(path.join(root, 'sys/fs/cgroup', f), text);
    }
    return root;
  }

  it('reads cgroup v2 cpu.max (the lowest along the path, rounded up) and v1 cfs quota / period', () => {
    const v2 = tree('0::/kubepods/pod1/c1\n', {
      'kubepods/cpu.max': '800000 100000\n',
      'kubepods/pod1/cpu.max': '250000 100000\n',
      'kubepods/pod1/c1/cpu.max': 'max 100000\n',
    });
    expect(cgroupCpuLimit(v2)).toBe(3); // 2.5 CPUs, from pod1
    expect(cgroupCpuLimit(tree('0::/\n', { 'cpu.max': 'max 100000\n' }))).toBeUndefined();
    expect(cgroupCpuLimit(tree('0::/\n', { 'cpu.max': '50000 100000\n' }))).toBe(1); // half a CPU: at least one thread
    const v1 = tree('4:memory:/x\n2:cpu,cpuacct:/docker/abc\n', {
      'cpu,cpuacct/docker/abc/cpu.cfs_quota_us': '200000\n',
      'cpu,cpuacct/docker/abc/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(v1)).toBe(2);
    expect(cgroupCpuLimit(tree('1:cpu:/\n', { 'cpu/cpu.cfs_quota_us': '-1\n', 'cpu/cpu.cfs_period_us': '100000\n' }))).toBeUndefined();
    expect(cgroupCpuLimit(path.join(tmpdir(), 'nothing'))).toBeUndefined();
  });

  it('lowers the thread count to the quota unless OMP_NUM_THREADS or MKL_NUM_THREADS is set', () => {
    const before = et.getNumThreads();
    try {
      et.setNumThreads(2);
      const one = tree('0::/\n', { 'cpu.max': '100000 100000\n' });
      applyCgroupThreads({ OMP_NUM_THREADS: '2' }, one);
      expect(et.getNumThreads()).toBe(2);
      applyCgroupThreads({ MKL_NUM_THREADS: '2' }, one);
      expect(et.getNumThreads()).toBe(2);
      applyCgroupThreads({}, one);
      expect(et.getNumThreads()).toBe(1);
      et.setNumThreads(1);
      applyCgroupThreads({}, tree('0::/\n', { 'cpu.max': '400000 100000\n' })); // a quota above the count changes nothing
      expect(et.getNumThreads()).toBe(1);
    } finally {
      et.setNumThreads(before);
    }
  });
});

describe('adaptive threads', () => {
  const share = (want: number, current: number, cpus: number, others: number, pending = false) => binding.shareThreads(want, current, cpus, others, pending);

  it('gives a thread up when two windows in a row see a core taken, takes it back at once, never below 1', () => {
    expect(share(2, 2, 2, 0.05)).toEqual([2, false]); // quiet
    expect(share(2, 2, 2, 0.7)).toEqual([2, true]); // one window: a vote only
    expect(share(2, 2, 2, 0.7, true)).toEqual([1, false]); // the second agrees
    expect(share(2, 2, 2, 0.1, true)).toEqual([2, false]); // a neighbour that ended costs nothing
    expect(share(2, 1, 2, 1.0)).toEqual([1, false]); // still taken
    expect(share(2, 1, 2, 0.5)).toEqual([1, false]); // between 0.4 and 0.6: as it was (hysteresis)
    expect(share(2, 2, 2, 0.5, true)).toEqual([2, false]);
    expect(share(2, 1, 2, 0.3)).toEqual([2, false]); // free again: at once
    expect(share(2, 2, 2, 1.9, true)).toEqual([1, false]); // at least one thread
    expect(share(8, 8, 8, 2.8, true)).toEqual([5, false]); // 2.8 cores taken of 8
    expect(share(4, 4, 64, 30, true)).toEqual([4, false]); // a big host: 34 free cores, 4 asked for
    expect(share(2, 4, 4, 0)).toEqual([2, false]); // asked for fewer since: never more than asked
  });

  it('refuses a non-boolean and a misspelt EMOTORCH_ADAPTIVE_THREADS, naming them', () => {
    throwsWith(() => et.setAdaptiveThreads('yes' as unknown as boolean), 'ERR_INVALID_ARG', /enabled/);
    const on = child('console.log(et.getAdaptiveThreads())', { EMOTORCH_ADAPTIVE_THREADS: '1' });
    expect(on.stdout.trim()).toBe('true');
    const off = child('console.log(et.getAdaptiveThreads())', { EMOTORCH_ADAPTIVE_THREADS: '0' });
    expect(off.stdout.trim()).toBe('false');
    const bad = child('console.log(et.getAdaptiveThreads())', { EMOTORCH_ADAPTIVE_THREADS: 'yes' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/EMOTORCH_ADAPTIVE_THREADS/);
  });

  // Busy processes on all but one of the CPUs: the count drops below what was asked for (other
  // test processes only take more), and comes back when adaptive threads are turned off.
  const cpus = os.availableParallelism();
  const quota = cgroupCpuLimit('/');
  it.skipIf(cpus < 2 || cpus > 8 || (quota !== undefined && quota < cpus) || os.platform() !== 'linux')(
    'runs with fewer threads beside busy processes, and with the count asked for when turned off',
    async () => {
      const before = et.getNumThreads();
      const lin = et.nn.Linear.create({ in_features: 512, out_features: 512 });
      const x = et.randn([256, 512]);
      const spinners = Array.from({ length: cpus - 1 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
      try {
        et.setNumThreads(cpus);
        await et.noGrad(() => lin.forward(x));
        expect(et.getActiveThreads()).toBe(cpus); // off by default: the count asked for
        et.setAdaptiveThreads(true);
        const t0 = Date.now();
        while (et.getActiveThreads() === cpus && Date.now() - t0 < 5000) await et.noGrad(() => lin.forward(x));
        expect(et.getActiveThreads()).toBeLessThan(cpus);
        expect(et.getNumThreads()).toBe(cpus); // what was asked for stays
        et.setAdaptiveThreads(false);
        await et.noGrad(() => lin.forward(x));
        expect(et.getActiveThreads()).toBe(cpus);
      } finally {
        spinners.forEach((p) => p.kill('SIGKILL'));
        et.setAdaptiveThreads(false);
        et.setNumThreads(before);
      }
    },
  );
});
