// The install hook without network: libtorch provisioning runs the real pip against fake PEP 503
// indexes (file:// URLs) holding tiny fake torch wheels, into temp directories; the hook's
// decisions (prebuild first, compile last) run with injected effects. Neither the project's
// .libtorch/ nor build/ is touched.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeIndex, writeTorchWheel, writeWheel } from './install/fake-index';

const require = createRequire(import.meta.url);
const ROOT = path.resolve(__dirname, '..');
const inst = require('../scripts/install.js');
const lt = require('../scripts/libtorch.js');

const V = lt.TORCH_VERSION as string; // '2.13.0'
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-install-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let seq = 0;
const freshDir = (name: string) => path.join(tmp, `${name}-${++seq}`);

describe('torchRequest and the pip command lines (no pip run)', () => {
  const T = '/t/.libtorch';
  const base = [
    '-m',
    'pip',
    'install',
    '--no-deps',
    '--no-compile',
    '--no-input',
    '--disable-pip-version-check',
    '--only-binary=:all:',
    '--retries',
    '1',
    '--timeout',
    '15',
    '--upgrade',
    '--target',
    T,
  ];
  const lines = (env: Record<string, string>) => inst.pipAttempts(inst.torchRequest(env), T).map((a: { args: string[] }) => a.args);

  it('defaults: the configured indexes plus PyTorch CPU index, then the configured indexes alone', () => {
    expect(inst.torchRequest({})).toEqual({
      variant: 'cpu',
      version: `${V}+cpu`,
      requirement: `torch==${V}+cpu`,
      indexUrl: 'https://download.pytorch.org/whl/cpu',
      wheel: null,
      wheelIsFile: false,
    });
    expect(lines({})).toEqual([
      [...base, '--extra-index-url', 'https://download.pytorch.org/whl/cpu', `torch==${V}+cpu`],
      [...base, `torch==${V}+cpu`],
    ]);
  });

  it('EMOTORCH_TORCH_VARIANT picks the CUDA build and its index', () => {
    for (const v of ['cu126', 'cu128', 'cu130']) {
      expect(lines({ EMOTORCH_TORCH_VARIANT: v })).toEqual([
        [...base, '--extra-index-url', `https://download.pytorch.org/whl/${v}`, `torch==${V}+${v}`],
        [...base, `torch==${V}+${v}`],
      ]);
    }
  });

  it('EMOTORCH_TORCH_INDEX_URL replaces the extra index; empty leaves only the configured ones', () => {
    expect(lines({ EMOTORCH_TORCH_INDEX_URL: 'https://mirror.example/whl/cpu' })).toEqual([
      [...base, '--extra-index-url', 'https://mirror.example/whl/cpu', `torch==${V}+cpu`],
      [...base, `torch==${V}+cpu`],
    ]);
    expect(lines({ EMOTORCH_TORCH_INDEX_URL: 'file:///srv/whl/cu128', EMOTORCH_TORCH_VARIANT: 'cu128' })[0]).toEqual([
      ...base,
      '--extra-index-url',
      'file:///srv/whl/cu128',
      `torch==${V}+cu128`,
    ]);
    expect(lines({ EMOTORCH_TORCH_INDEX_URL: '' })).toEqual([[...base, `torch==${V}+cpu`]]);
  });

  it('EMOTORCH_TORCH_WHEEL installs offline: a wheel file, or a directory of wheels', () => {
    const dir = freshDir('wheels');
    const file = path.join(dir, writeTorchWheel(dir, `${V}+cpu`));
    expect(inst.torchRequest({ EMOTORCH_TORCH_WHEEL: file })).toMatchObject({ version: `${V}+cpu`, wheel: file, wheelIsFile: true });
    expect(lines({ EMOTORCH_TORCH_WHEEL: file })).toEqual([[...base, '--no-index', '--find-links', dir, file]]);
    // the wheel wins over an index setting: nothing goes to the network
    expect(lines({ EMOTORCH_TORCH_WHEEL: dir, EMOTORCH_TORCH_INDEX_URL: 'https://x/y', EMOTORCH_TORCH_VARIANT: 'cu126' })).toEqual([
      [...base, '--no-index', '--find-links', dir, `torch==${V}+cu126`],
    ]);
  });

  it('rejects unusable settings with a message naming the variable', () => {
    expect(() => inst.torchRequest({ EMOTORCH_TORCH_VARIANT: 'cuda' })).toThrow(
      "Expected cpu or cuXYZ (cu126, cu128, cu130, ...) for EMOTORCH_TORCH_VARIANT but received 'cuda'",
    );
    expect(() => inst.torchRequest({ EMOTORCH_TORCH_INDEX_URL: 'download.pytorch.org/whl/cpu' })).toThrow(
      "Expected an http(s):// or file:// URL (or nothing) for EMOTORCH_TORCH_INDEX_URL but received 'download.pytorch.org/whl/cpu'",
    );
    expect(() => inst.torchRequest({ EMOTORCH_TORCH_WHEEL: path.join(tmp, 'nope.whl') })).toThrow(/EMOTORCH_TORCH_WHEEL .*it does not exist/);
    const odd = path.join(freshDir('odd'), 'numpy-1.0-py3-none-any.whl');
    fs.mkdirSync(path.dirname(odd), { recursive: true });
    fs.writeFileSync(odd, '');
    expect(() => inst.torchRequest({ EMOTORCH_TORCH_WHEEL: odd })).toThrow(/Expected a torch-<version>-<tags>\.whl file for EMOTORCH_TORCH_WHEEL/);
  });
});

// The real pip against fake indexes. Only python3 with pip is needed (the hook needs them too).
const probe = spawnSync('python3', ['-c', 'import sys, pip; print(sys.executable)'], { encoding: 'utf8' });
const PYTHON = probe.status === 0 ? probe.stdout.trim() : '';

describe.skipIf(!PYTHON)('provisionLibtorch with pip and fake indexes (offline)', () => {
  let good: string; // an index with cpu and cu126 torch wheels and one NVIDIA library package
  let broken: string; // an index whose torch link points at a missing file (pip fails hard)
  let nowhere: string; // an index directory that does not exist (pip finds nothing there)
  let files: string;

  beforeAll(() => {
    const g = path.join(tmp, 'good');
    files = path.join(g, 'files');
    const cpu = writeTorchWheel(files, `${V}+cpu`, { requires: ['filelock', 'sympy>=1.13.3'] });
    const cu = writeTorchWheel(files, `${V}+cu126`, {
      requires: ['filelock', 'nvidia-fake-cu12 (==1.0) ; python_version >= "3"', 'nvidia-optional-cu12 ; extra == "opt"'],
    });
    const nv = writeWheel(files, { name: 'nvidia_fake_cu12', version: '1.0', files: { 'nvidia/fake/lib/libfake.so.1': 'not a library\n' } });
    good = writeIndex(g, { torch: [cpu, cu], 'nvidia-fake-cu12': [nv] });
    // A higher build tag makes pip prefer this file over the good one of the same version.
    broken = writeIndex(path.join(tmp, 'broken'), { torch: [`torch-${V}+cpu-1-py3-none-any.whl`] });
    nowhere = pathToFileURL(path.join(tmp, 'nowhere', 'simple')).href;
  });

  // pip sees only what the test gives it: no user or machine pip configuration.
  const pipEnv = (extra: Record<string, string>) => ({
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    TMPDIR: os.tmpdir(),
    PIP_CONFIG_FILE: os.devNull,
    ...extra,
  });
  const provision = (target: string, env: Record<string, string>) =>
    inst.provisionLibtorch({ target, env: pipEnv(env), python: PYTHON, quiet: true, log: () => {} });

  it('installs from the extra (PyTorch-like) index when the configured one lacks torch', () => {
    const target = freshDir('lt');
    const r = provision(target, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_INDEX_URL: good });
    expect(r.used.label).toBe(`your pip indexes plus ${good}`);
    expect(r.tried).toEqual([]);
    expect(r.root).toBe(path.join(target, 'torch'));
    expect(inst.holdsTorch(target, `${V}+cpu`)).toBe(true);
    // scripts/libtorch.js accepts it as a libtorch to build against
    expect(lt.find({ LIBTORCH: r.root })).toMatchObject({ version: V, cuda: false, source: 'LIBTORCH' });
    // --no-deps: torch's Python dependencies are not installed
    expect(fs.readdirSync(target).sort()).toEqual(['torch', `torch-${V}+cpu.dist-info`]);
  });

  it('falls back to the configured indexes alone when the extra index fails', () => {
    const target = freshDir('lt');
    const r = provision(target, { PIP_INDEX_URL: good, EMOTORCH_TORCH_INDEX_URL: broken });
    expect(r.used.label).toBe('your pip indexes only');
    expect(r.tried).toHaveLength(1);
    expect(r.tried[0].label).toBe(`your pip indexes plus ${broken}`);
    expect(r.tried[0].reason).toMatch(/^exit 1: .*torch-2\.13\.0\+cpu-1-py3-none-any\.whl/);
    expect(r.used.args).not.toContain('--extra-index-url');
    expect(inst.holdsTorch(target, `${V}+cpu`)).toBe(true);
  });

  it('when everything fails, says what was tried, why each failed, and how to fix it', () => {
    const target = freshDir('lt');
    let message = '';
    try {
      provision(target, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_INDEX_URL: broken.replace('broken', 'also-missing') });
    } catch (e) {
      message = (e as Error).message;
    }
    const missing = broken.replace('broken', 'also-missing');
    expect(message.split('\n')[0]).toBe(`could not install torch==${V}+cpu (libtorch) into ${target}. Tried:`);
    expect(message).toContain(`  1. your pip indexes plus ${missing}\n     $ ${PYTHON} -m pip install --no-deps`);
    expect(message).toContain(`--target ${target} --extra-index-url ${missing} torch==${V}+cpu\n`);
    expect(message).toContain(`  2. your pip indexes only\n     $ ${PYTHON} -m pip install --no-deps`);
    expect(message).toContain(`--target ${target} torch==${V}+cpu\n`);
    expect(message.match(/-> exit 1: ERROR: Could not find a version that satisfies the requirement torch==2\.13\.0\+cpu/g)).toHaveLength(2);
    expect(message).toContain('EMOTORCH_TORCH_WHEEL=/path/to/torch-...whl');
    expect(message).toContain('https://download.pytorch.org/whl/cpu');
    expect(message).toContain('EMOTORCH_TORCH_INDEX_URL=');
    expect(message).toContain('LIBTORCH=/path/to/libtorch');
    expect(fs.existsSync(path.join(target, 'torch'))).toBe(false);
  });

  it('installs offline from EMOTORCH_TORCH_WHEEL (a file or a directory) without any index', () => {
    const a = freshDir('lt');
    const file = path.join(files, `torch-${V}+cpu-py3-none-any.whl`);
    const r = provision(a, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_WHEEL: file });
    expect(r.used.args).toEqual(expect.arrayContaining(['--no-index', file]));
    expect(inst.holdsTorch(a, `${V}+cpu`)).toBe(true);
    const b = freshDir('lt');
    provision(b, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_WHEEL: files, EMOTORCH_TORCH_VARIANT: 'cu126' });
    expect(inst.holdsTorch(b, `${V}+cu126`)).toBe(true);
    expect(fs.existsSync(path.join(b, 'nvidia', 'fake', 'lib', 'libfake.so.1'))).toBe(true);
  });

  it('a CUDA variant brings its nvidia-* libraries beside torch, and replaces a CPU install', () => {
    const target = freshDir('lt');
    provision(target, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_INDEX_URL: good });
    expect(inst.installedVersion(target)).toBe(`${V}+cpu`);
    const r = provision(target, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_INDEX_URL: good, EMOTORCH_TORCH_VARIANT: 'cu126' });
    expect(inst.installedVersion(target)).toBe(`${V}+cu126`);
    expect(inst.holdsTorch(target, `${V}+cpu`)).toBe(false);
    expect(inst.nvidiaRequirements(target, `${V}+cu126`)).toEqual(['nvidia-fake-cu12 (==1.0) ; python_version >= "3"']);
    // torch/lib/../../nvidia/*/lib: where the CUDA libraries' RPATH looks
    expect(fs.existsSync(path.join(r.root, 'lib', '..', '..', 'nvidia', 'fake', 'lib', 'libfake.so.1'))).toBe(true);
    expect(fs.existsSync(path.join(target, 'nvidia_optional_cu12'))).toBe(false);
    expect(fs.existsSync(path.join(target, 'filelock'))).toBe(false);
    expect(lt.find({ LIBTORCH: r.root })).toMatchObject({ version: V, cuda: true });
  });

  it('a CUDA variant whose nvidia-* libraries are nowhere fails with that step named', () => {
    const target = freshDir('lt');
    const g = path.join(tmp, 'cuda-only');
    const idx = writeIndex(g, { torch: [writeTorchWheel(path.join(g, 'files'), `${V}+cu128`, { requires: ['nvidia-absent-cu12==9'] })] });
    expect(() => provision(target, { PIP_INDEX_URL: nowhere, EMOTORCH_TORCH_INDEX_URL: idx, EMOTORCH_TORCH_VARIANT: 'cu128' })).toThrow(
      /1\. your pip indexes plus .* \(its nvidia-\* libraries\)\n.* nvidia-absent-cu12==9\n     -> exit 1: ERROR: Could not find a version that satisfies the requirement nvidia-absent-cu12==9/,
    );
  });

  it('names a missing python', () => {
    expect(() => inst.provisionLibtorch({ target: freshDir('lt'), env: pipEnv({}), python: path.join(tmp, 'no-python3'), quiet: true, log: () => {} })).toThrow(
      `-> ${path.join(tmp, 'no-python3')} not found`,
    );
  });
});

describe('the install hook: provision libtorch, then the prebuild, compile last', () => {
  interface Plan {
    found?: object | null;
    loads?: boolean[];
    prebuild?: boolean;
    localReady?: boolean;
    buildOk?: boolean;
  }
  const PY_TORCH = { source: 'python3 torch', version: V, root: '/py/torch', libdir: '/py/torch/lib' };
  const LOCAL = { source: 'project .libtorch', version: V, root: 'x', libdir: 'x' };

  function run(env: Record<string, string>, plan: Plan) {
    const root = freshDir('pkg');
    fs.mkdirSync(root, { recursive: true });
    if (plan.localReady) {
      const t = path.join(root, '.libtorch', 'torch');
      for (const f of ['include/ATen/ATen.h', 'lib/libtorch_cpu.so']) {
        fs.mkdirSync(path.dirname(path.join(t, f)), { recursive: true });
        fs.writeFileSync(path.join(t, f), '');
      }
      fs.writeFileSync(path.join(t, 'version.py'), `__version__ = '${V}+cpu'\n`);
    }
    const calls: string[] = [];
    const rel = (p?: string) => (!p ? '-' : p.startsWith(root) ? path.relative(root, p) : p);
    const loads = [...(plan.loads || [])];
    let result: string | undefined;
    let error = '';
    try {
      result = inst.install({
        root,
        env,
        log: () => {},
        find: (e: Record<string, string>) => {
          calls.push(`find ${rel(e.LIBTORCH)}`);
          if (e.LIBTORCH) return { source: 'LIBTORCH', version: V, root: e.LIBTORCH, libdir: e.LIBTORCH + '/lib' };
          return plan.found ?? null;
        },
        loads: () => {
          const ok = loads.shift() ?? false;
          calls.push(`loads ${ok}`);
          return ok ? { ok } : { ok, reason: 'libtorch_cpu.so: cannot open shared object file' };
        },
        provision: (p: { target: string }) => calls.push(`provision ${rel(p.target)}`),
        compile: (e: Record<string, string>) => (calls.push(`compile ${rel(e.LIBTORCH)}`), plan.buildOk ?? true),
        hasPrebuild: () => plan.prebuild ?? false,
      });
    } catch (e) {
      error = (e as Error).message;
    }
    return { result, calls, error };
  }

  it('addonLoads says why an addon does not load, from a child process', () => {
    const root = freshDir('pkg');
    const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    fs.mkdirSync(dir, { recursive: true });
    expect(inst.hasPrebuild(root)).toBe(false);
    expect(inst.addonLoads(root)).toEqual({ ok: false, reason: expect.stringMatching(/^No native build was found for platform=/) });
    fs.writeFileSync(path.join(dir, 'node.napi.node'), 'not a shared object');
    expect(inst.hasPrebuild(root)).toBe(true);
    expect(inst.addonLoads(root)).toEqual({ ok: false, reason: expect.stringContaining(path.join(dir, 'node.napi.node')) });
  });

  it('fresh machine with a prebuild: provisions .libtorch, loads the prebuild, compiles nothing', () => {
    expect(run({}, { prebuild: true, loads: [true] })).toEqual({
      result: 'prebuild',
      error: '',
      calls: ['find -', 'provision .libtorch', 'loads true'],
    });
  });

  it('a prebuild that does not load: compiles against the provisioned .libtorch', () => {
    expect(run({}, { prebuild: true, loads: [false, true] })).toEqual({
      result: 'compiled',
      error: '',
      calls: ['find -', 'provision .libtorch', 'loads false', 'find .libtorch/torch', 'compile .libtorch/torch', 'loads true'],
    });
  });

  it('an addon that already loads is kept', () => {
    expect(run({}, { found: LOCAL, localReady: true, loads: [true], prebuild: true })).toEqual({
      result: 'loads',
      error: '',
      calls: ['find -', 'loads true'],
    });
  });

  it("python3's torch: the prebuild still comes first (with .libtorch), else compile against python3's torch", () => {
    expect(run({}, { found: PY_TORCH, prebuild: true, loads: [false, true] }).calls).toEqual(['find -', 'loads false', 'provision .libtorch', 'loads true']);
    expect(run({}, { found: PY_TORCH, prebuild: false, loads: [false, true] }).calls).toEqual(['find -', 'loads false', 'find -', 'compile -', 'loads true']);
  });

  it("EMOTORCH_TORCH_VARIANT or _WHEEL asks for .libtorch over python3's torch; the index URL alone does not", () => {
    expect(run({ EMOTORCH_TORCH_VARIANT: 'cpu' }, { found: PY_TORCH, loads: [true] }).calls).toEqual([
      'find -',
      'provision .libtorch',
      'find .libtorch/torch',
      'compile .libtorch/torch',
      'loads true',
    ]);
    expect(run({ EMOTORCH_TORCH_INDEX_URL: 'https://mirror.example/whl/cpu' }, { found: PY_TORCH, loads: [false, true] }).calls).toEqual([
      'find -',
      'loads false',
      'find -',
      'compile -',
      'loads true',
    ]);
  });

  it('LIBTORCH: no provisioning and no prebuild, compiled against it', () => {
    expect(run({ LIBTORCH: '/opt/libtorch' }, { prebuild: true, loads: [false, true] }).calls).toEqual([
      'find /opt/libtorch',
      'loads false',
      'find /opt/libtorch',
      'compile /opt/libtorch',
      'loads true',
    ]);
  });

  it('a CUDA variant skips the (CPU) prebuild and a CPU build that loads, and compiles against what it provisioned', () => {
    expect(run({ EMOTORCH_TORCH_VARIANT: 'cu126' }, { found: LOCAL, localReady: true, prebuild: true, loads: [true] }).calls).toEqual([
      'find -',
      'provision .libtorch',
      'find .libtorch/torch',
      'compile .libtorch/torch',
      'loads true',
    ]);
  });

  it('EMOTORCH_BUILD_FROM_SOURCE=1 compiles even when an addon loads', () => {
    expect(run({ EMOTORCH_BUILD_FROM_SOURCE: '1' }, { found: LOCAL, localReady: true, prebuild: true, loads: [true] }).calls).toEqual([
      'find -',
      'find .libtorch/torch',
      'compile .libtorch/torch',
      'loads true',
    ]);
  });

  it('failures are errors with a reason', () => {
    expect(run({}, { found: PY_TORCH, buildOk: false }).error).toBe('the native build failed; see the compiler output above.');
    expect(run({}, { found: PY_TORCH, loads: [false, false] }).error).toMatch(/^the addon was built but does not load \(libtorch_cpu\.so: cannot open/);
    expect(run({ EMOTORCH_TORCH_VARIANT: 'rocm' }, {})).toMatchObject({ calls: [], error: expect.stringMatching(/EMOTORCH_TORCH_VARIANT/) });
  });
});

describe('npm scripts', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const scripts: Record<string, string> = pkg.scripts;

  it('no script is an unintended pre/post hook of another (npm runs preX before X)', () => {
    const intended = new Set(['pretest']); // pretest compiles dist/ before the tests
    const hooks = Object.keys(scripts).filter((s) => /^(pre|post)/.test(s) && scripts[s.replace(/^(pre|post)/, '')] !== undefined);
    expect(hooks.filter((h) => !intended.has(h))).toEqual([]);
    expect(scripts['build:prebuild']).toBe('node scripts/prebuild.js');
  });

  it('`npm run build` runs build alone, and so does each script it chains (checked with npm itself)', () => {
    // npm on a copy of the script names whose bodies only print their name: what runs is what npm decides.
    const dir = freshDir('npm');
    fs.mkdirSync(dir, { recursive: true });
    const echo = Object.fromEntries(Object.keys(scripts).map((s) => [s, `node -e "console.log('ran ${s}')"`]));
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'probe', version: '0.0.0', private: true, scripts: echo }));
    const chained = [...scripts.build.matchAll(/npm run (\S+)/g)].map((m) => m[1]);
    expect(chained.length).toBeGreaterThan(0);
    for (const s of ['build', ...chained]) {
      const r = spawnSync('npm', ['run', s], { cwd: dir, encoding: 'utf8', env: { ...process.env, npm_config_loglevel: 'silent' } });
      expect(r.status).toBe(0);
      expect(r.stdout.split('\n').filter((l) => l.startsWith('ran '))).toEqual([`ran ${s}`]);
    }
  });

  it('CI builds the prebuild with the renamed script', () => {
    const ci = fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).toContain('npm run --silent build:prebuild');
    expect(ci).not.toMatch(/npm run (--silent )?prebuild\b/);
  });
});

describe('the in-process video reader in what the install builds', () => {
  it("is told apart from a build without FFmpeg's headers, and the prebuild check refuses such a prebuild", () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'prebuild-'));
    const without = path.join(dir, 'without.node'),
      withIt = path.join(dir, 'with.node');
    fs.writeFileSync(without, Buffer.concat([Buffer.alloc(64, 1), Buffer.from(`emotorch ${inst.NO_LIBAV_MARK} (libavformat-dev…)`), Buffer.alloc(64)]));
    fs.writeFileSync(withIt, Buffer.alloc(256, 7));
    expect(inst.builtWithoutVideoReader(without)).toBe(true);
    expect(inst.builtWithoutVideoReader(withIt)).toBe(false);
    expect(inst.builtWithoutVideoReader(path.join(dir, 'missing.node'))).toBe(false);
    // the addon built here: the mark is there exactly when the addon says it lacks the reader for that reason
    const built = path.join(ROOT, 'build', 'Release', 'emotorch.node');
    if (fs.existsSync(built)) {
      const why = spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(built)}).videoAvailable()))`], {
        encoding: 'utf8',
      }).stdout;
      expect(inst.builtWithoutVideoReader(built)).toBe(why.includes(inst.NO_LIBAV_MARK));
    }
    // check-prebuild.js (prepublishOnly) on a copy of the scripts beside a prebuild without the reader
    const root = path.join(dir, 'pkg');
    fs.mkdirSync(path.join(root, 'scripts'), { recursive: true });
    for (const f of ['check-prebuild.js', 'install.js', 'libtorch.js']) fs.copyFileSync(path.join(ROOT, 'scripts', f), path.join(root, 'scripts', f));
    const pre = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    fs.mkdirSync(pre, { recursive: true });
    fs.copyFileSync(without, path.join(pre, 'emotorch.node'));
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'check-prebuild.js')], {
      encoding: 'utf8',
      env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/built without FFmpeg's development headers/);
    fs.copyFileSync(withIt, path.join(pre, 'emotorch.node'));
    expect(
      spawnSync(process.execPath, [path.join(root, 'scripts', 'check-prebuild.js')], {
        encoding: 'utf8',
        env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
      }).status,
    ).toBe(0);
  });
});
