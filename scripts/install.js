#!/usr/bin/env node
'use strict';
// `npm install` hook (`node scripts/install.js`): prebuilds first.
//   1. Use the addon if it already loads (built before, or a prebuild whose libtorch is there).
//   2. Make sure libtorch is there: $LIBTORCH, python3's torch, or the project's `.libtorch/`, which
//      is provisioned with pip (provisionLibtorch below) when nothing else is found, when a prebuild
//      needs it, or when EMOTORCH_TORCH_VARIANT or EMOTORCH_TORCH_WHEEL asks for it.
//   3. Try the prebuild (prebuilds/<platform>-<arch>/, a CPU build against torch TORCH_VERSION).
//   4. Compile (cmake-js; node-gyp when cmake is missing) only when no prebuild loads.
// Environment:
//   EMOTORCH_BUILD_FROM_SOURCE=1   always compile
//   EMOTORCH_TORCH_VARIANT         cpu (default) | cu126 | cu128 | cu130 | any cuXYZ PyTorch publishes
//   EMOTORCH_TORCH_INDEX_URL       extra pip index for torch (default https://download.pytorch.org/whl/<variant>;
//                                  empty: only your own pip configuration)
//   EMOTORCH_TORCH_WHEEL           a torch-*.whl file or a directory of wheels: install offline from it
//   EMOTORCH_PYTHON                the python that runs pip (default python3)
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const lt = require('./libtorch');

const ROOT = path.resolve(__dirname, '..');
const PIP_RETRIES = 1; // pip's --retries and --timeout (s): an unreachable index costs ~30 s, not minutes
const PIP_TIMEOUT = 15;
const defaultLog = (m) => process.stderr.write(`emotorch: ${m}\n`);
const truthy = (v) => /^(1|true|yes)$/i.test(v || '');
const lastLines = (text, n = 3) =>
  (text || '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-n)
    .join(' | ');

/**
 * What to install, read from the environment (EMOTORCH_TORCH_VARIANT, EMOTORCH_TORCH_INDEX_URL,
 * EMOTORCH_TORCH_WHEEL).
 * @param {NodeJS.ProcessEnv} env
 * @returns {{variant: string, version: string, requirement: string, indexUrl: string, wheel: string|null, wheelIsFile: boolean}}
 * @throws {Error} when a variable holds something unusable (the message names it)
 * @example torchRequest({ EMOTORCH_TORCH_VARIANT: 'cu128' }).requirement // 'torch==2.13.0+cu128'
 */
function torchRequest(env = process.env) {
  const variant = (env.EMOTORCH_TORCH_VARIANT || 'cpu').trim();
  if (!/^(cpu|cu\d{3})$/.test(variant)) {
    throw new Error(`Expected cpu or cuXYZ (cu126, cu128, cu130, ...) for EMOTORCH_TORCH_VARIANT but received '${variant}'`);
  }
  const indexUrl = env.EMOTORCH_TORCH_INDEX_URL === undefined ? lt.torchIndexUrl(variant) : env.EMOTORCH_TORCH_INDEX_URL.trim();
  if (indexUrl && !/^(https?|file):\/\/\S+$/.test(indexUrl)) {
    throw new Error(`Expected an http(s):// or file:// URL (or nothing) for EMOTORCH_TORCH_INDEX_URL but received '${indexUrl}'`);
  }
  let version = `${lt.TORCH_VERSION}+${variant}`;
  let wheel = null;
  let wheelIsFile = false;
  if (env.EMOTORCH_TORCH_WHEEL) {
    wheel = path.resolve(env.EMOTORCH_TORCH_WHEEL);
    const st = fs.statSync(wheel, { throwIfNoEntry: false });
    if (!st || !(st.isFile() || st.isDirectory())) {
      throw new Error(
        `Expected a torch-*.whl file or a directory of wheels for EMOTORCH_TORCH_WHEEL but received '${wheel}' (${st ? 'not a file or directory' : 'it does not exist'})`,
      );
    }
    if (st.isFile()) {
      const m = path.basename(wheel).match(/^torch-([^-]+)-.+\.whl$/);
      if (!m) throw new Error(`Expected a torch-<version>-<tags>.whl file for EMOTORCH_TORCH_WHEEL but received '${wheel}'`);
      version = decodeURIComponent(m[1]);
      wheelIsFile = true;
    }
  }
  return { variant, version, requirement: `torch==${version}`, indexUrl, wheel, wheelIsFile };
}

/**
 * The pip installs to try, in order: offline from EMOTORCH_TORCH_WHEEL when set (nothing else);
 * otherwise the pip configuration's own indexes plus PyTorch's (or EMOTORCH_TORCH_INDEX_URL's), then
 * the pip configuration's indexes alone.
 * @param {ReturnType<typeof torchRequest>} req
 * @param {string} target the --target directory
 * @returns {{label: string, source: string[], args: string[]}[]} args follow `python`
 */
function pipAttempts(req, target) {
  const sources = [];
  if (req.wheel) {
    const links = req.wheelIsFile ? path.dirname(req.wheel) : req.wheel;
    sources.push({ label: `offline from ${req.wheel}`, source: ['--no-index', '--find-links', links] });
  } else {
    if (req.indexUrl) sources.push({ label: `your pip indexes plus ${req.indexUrl}`, source: ['--extra-index-url', req.indexUrl] });
    sources.push({ label: 'your pip indexes only', source: [] });
  }
  const spec = req.wheelIsFile ? req.wheel : req.requirement;
  return sources.map((s) => ({ ...s, args: [...pipBase(target), ...s.source, spec] }));
}

function pipBase(target) {
  return [
    '-m',
    'pip',
    'install',
    '--no-deps',
    '--no-compile',
    '--no-input',
    '--disable-pip-version-check',
    '--only-binary=:all:',
    '--retries',
    String(PIP_RETRIES),
    '--timeout',
    String(PIP_TIMEOUT),
    '--upgrade',
    '--target',
    target,
  ];
}

// A CUDA wheel loads its NVIDIA libraries from ../../nvidia/*/lib (the pip packages nvidia-*): the
// torch package's own Requires-Dist lists them. Only those are installed beside it (no triton, sympy...).
function nvidiaRequirements(target, version) {
  const meta = path.join(target, `torch-${version}.dist-info`, 'METADATA');
  if (!fs.existsSync(meta)) return [];
  return fs
    .readFileSync(meta, 'utf8')
    .split(/\r?\n/)
    .filter((l) => /^Requires-Dist:\s*nvidia-/i.test(l) && !/\bextra\s*==/.test(l))
    .map((l) => l.replace(/^Requires-Dist:\s*/i, '').trim());
}

/** The version in <target>/torch/version.py (`__version__ = '2.13.0+cpu'`), or null. */
function installedVersion(target) {
  const f = path.join(target, 'torch', 'version.py');
  const m = fs.existsSync(f) && fs.readFileSync(f, 'utf8').match(/^__version__\s*=\s*['"]([^'"]+)['"]/m);
  return m ? m[1] : null;
}

/** Whether `target` holds torch `version` with its headers and libraries. */
function holdsTorch(target, version) {
  return installedVersion(target) === version && lt.isLibtorch(path.join(target, 'torch'));
}

function runPip(python, args, env, quiet) {
  const r = spawnSync(python, args, {
    env,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['ignore', quiet ? 'pipe' : 'inherit', 'pipe'],
  });
  if (!quiet && r.stderr) process.stderr.write(r.stderr);
  if (r.error) return { ok: false, reason: r.error.code === 'ENOENT' ? `${python} not found` : String(r.error.message) };
  if (r.status !== 0) {
    const errors = (r.stderr || '')
      .split('\n')
      .filter((l) => /^ERROR:/.test(l))
      .join(' | ');
    return { ok: false, reason: `exit ${r.status ?? r.signal}: ${errors || lastLines(r.stderr) || 'no message'}` };
  }
  return { ok: true };
}

function failureText(req, target, python, tried) {
  const page = req.indexUrl || lt.torchIndexUrl(req.variant);
  const lines = [`could not install ${req.requirement} (libtorch) into ${target}. Tried:`];
  tried.forEach((t, i) => {
    lines.push(`  ${i + 1}. ${t.label}${t.step ? ` (${t.step})` : ''}`, `     $ ${[python, ...t.args].join(' ')}`, `     -> ${t.reason}`);
  });
  lines.push('Possible solutions:');
  if (req.wheel) {
    lines.push(
      `  - check that ${req.wheel} is a torch wheel for this python and platform` +
        (req.variant === 'cpu' ? '' : ', with its nvidia-* dependency wheels beside it'),
    );
  }
  lines.push(
    `  - no network here: download the ${req.requirement.replace('==', '-')} wheel for this python from ${page}/torch/ elsewhere`,
    `    and set EMOTORCH_TORCH_WHEEL=/path/to/torch-...whl (or a directory of wheels${req.variant === 'cpu' ? '' : ', nvidia-* ones included'})`,
    `  - behind a mirror or proxy: EMOTORCH_TORCH_INDEX_URL=<a mirror of ${lt.torchIndexUrl(req.variant)}>, or configure pip (pip config list)`,
    '  - use a libtorch you have: LIBTORCH=/path/to/libtorch (an unpacked libtorch zip or a torch package folder)',
    '  - python3 or its pip missing: install them, or point EMOTORCH_PYTHON at a python with pip',
  );
  return lines.join('\n');
}

/**
 * Installs torch (its headers and shared libraries are libtorch) into `target` with pip, trying
 * the sources of pipAttempts in order; for a CUDA wheel also its nvidia-* runtime libraries.
 * @param {{target?: string, env?: NodeJS.ProcessEnv, python?: string, log?: (m: string) => void, quiet?: boolean}} [opts]
 *   target defaults to <project>/.libtorch; quiet captures pip's output instead of showing it
 * @returns {{request: ReturnType<typeof torchRequest>, root: string, used: object, tried: object[]}}
 *   root is the libtorch directory (<target>/torch)
 * @throws {Error} on an unusable EMOTORCH_TORCH_* setting, or when every attempt failed: the message
 *   lists each command, why it failed, and how to fix it
 * @example provisionLibtorch({ target: '/tmp/lt', env: { ...process.env, EMOTORCH_TORCH_VARIANT: 'cu128' } })
 */
function provisionLibtorch(opts = {}) {
  const env = opts.env || process.env;
  const target = path.resolve(opts.target || path.join(ROOT, '.libtorch'));
  const python = opts.python || env.EMOTORCH_PYTHON || 'python3';
  const log = opts.log || defaultLog;
  const req = torchRequest(env);
  const tried = [];
  for (const attempt of pipAttempts(req, target)) {
    log(`installing ${req.requirement} into ${target} (${attempt.label}; a few hundred MB, once)`);
    let r = runPip(python, attempt.args, env, opts.quiet);
    if (r.ok && !holdsTorch(target, req.version)) {
      r = { ok: false, reason: `pip succeeded but ${target} holds no torch ${req.version} with include/ and lib/` };
    }
    if (!r.ok) {
      tried.push({ ...attempt, reason: r.reason });
      continue;
    }
    const nvidia = nvidiaRequirements(target, req.version);
    if (nvidia.length) {
      const args = [...pipBase(target), ...attempt.source, ...nvidia];
      log(`installing the NVIDIA libraries ${req.requirement} needs (${nvidia.length} packages)`);
      const d = runPip(python, args, env, opts.quiet);
      if (!d.ok) {
        tried.push({ ...attempt, args, step: 'its nvidia-* libraries', reason: d.reason });
        continue;
      }
    }
    return { request: req, root: path.join(target, 'torch'), used: attempt, tried };
  }
  throw new Error(failureText(req, target, python, tried));
}

/** Loads the addon in a child process (a crash or a missing library cannot take the installer down). */
function addonLoads(root = ROOT, env = process.env) {
  const code = 'try { require(process.argv[1])(process.argv[2]) } catch (e) { process.stderr.write(String(e && e.message)); process.exit(1) }';
  const r = spawnSync(process.execPath, ['-e', code, require.resolve('node-gyp-build'), root], {
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 120000,
  });
  return r.status === 0 ? { ok: true } : { ok: false, reason: (r.stderr || '').split('\n')[0].trim() || `exit ${r.status ?? r.signal}` };
}

function hasPrebuild(root = ROOT) {
  const dir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  return fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.endsWith('.node'));
}

/** The message the addon carries when it was built without FFmpeg's headers (native/media/video.cc). */
const NO_LIBAV_MARK = "was built without FFmpeg's headers";

/**
 * Whether a built addon lacks the in-process video reader (compiled where FFmpeg's development
 * headers were missing): it then carries the message that says so.
 * @param {string} file the .node file
 * @returns {boolean}
 * @example builtWithoutVideoReader('build/Release/emotorch.node') // false where the headers were there
 */
function builtWithoutVideoReader(file) {
  try {
    return fs.readFileSync(file).includes(NO_LIBAV_MARK);
  } catch {
    return false;
  }
}

function compile(root, env, log) {
  const jobs = String(Math.max(1, os.availableParallelism?.() ?? os.cpus().length));
  const run = (cmd, args) => {
    log(`$ ${[cmd, ...args].join(' ')}`);
    return spawnSync(cmd, args, { stdio: 'inherit', cwd: root, env }).status === 0;
  };
  if (spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0) {
    return run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--log-level', 'warn', '-p', jobs]);
  }
  log('cmake not found; building with node-gyp instead');
  const gyp = env.npm_config_node_gyp || require.resolve('node-gyp/bin/node-gyp.js');
  return run(process.execPath, [gyp, 'rebuild', '-j', jobs]);
}

/**
 * The install hook's decisions, with every effect injectable (tests pass fakes).
 * @param {object} [o] root, env, log, find(env), loads(), provision({target, env}), compile(env),
 *   hasPrebuild()
 * @returns {'loads' | 'prebuild' | 'compiled'} how the addon came to load
 * @throws {Error} when libtorch cannot be found or installed, or the build fails or does not load
 */
function install(o = {}) {
  const root = o.root || ROOT;
  const env = o.env || process.env;
  const log = o.log || defaultLog;
  const find = o.find || ((e) => lt.find(e, path.join(root, '.libtorch', 'torch')));
  const loads = o.loads || ((e) => addonLoads(root, e));
  const provision = o.provision || ((p) => provisionLibtorch({ ...p, log }));
  const build = o.compile || ((e) => compile(root, e, log));
  const prebuilt = o.hasPrebuild || (() => hasPrebuild(root));

  const target = path.join(root, '.libtorch');
  const force = truthy(env.EMOTORCH_BUILD_FROM_SOURCE);
  const req = torchRequest(env);
  const found = find(env);
  // Provision .libtorch (and build against it) when nothing else is there, when it is what is in
  // use, or when EMOTORCH_TORCH_VARIANT / _WHEEL asks for it; $LIBTORCH always wins. (The index URL
  // only says where from.)
  const asked = Boolean(env.EMOTORCH_TORCH_VARIANT || env.EMOTORCH_TORCH_WHEEL);
  const useLocal = !env.LIBTORCH && (!found || found.source === 'project .libtorch' || asked);
  const localReady = holdsTorch(target, req.version);

  if (!force && (!useLocal || localReady)) {
    const first = loads(env);
    if (first.ok) {
      log('native addon found (prebuilt or already built)');
      return 'loads';
    }
  }
  // Prebuilds are CPU builds against torch TORCH_VERSION, found through .libtorch (their RPATH).
  const tryPrebuild = !force && !env.LIBTORCH && req.variant === 'cpu' && prebuilt();
  if ((useLocal || tryPrebuild) && !localReady) provision({ target, env });
  if (tryPrebuild) {
    const p = loads(env);
    if (p.ok) {
      log(`using the prebuilt addon with libtorch ${req.version} in ${target}`);
      return 'prebuild';
    }
    log(`the prebuilt addon does not load (${p.reason}); compiling instead`);
  }
  const buildEnv = useLocal ? { ...env, LIBTORCH: path.join(target, 'torch') } : env;
  const lib = find(buildEnv);
  if (!lib) throw new Error('libtorch not found.\n' + lt.howToFix());
  log(`building the native addon against libtorch ${lib.version} (${lib.source}: ${lib.root})`);
  const t0 = Date.now();
  if (!build(buildEnv)) throw new Error('the native build failed; see the compiler output above.');
  log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  const after = loads(env);
  if (!after.ok) throw new Error(`the addon was built but does not load (${after.reason}); try LD_LIBRARY_PATH=${lib.libdir}`);
  if (builtWithoutVideoReader(path.join(root, 'build', 'Release', 'emotorch.node'))) {
    log(
      "built without FFmpeg's development headers: video will be read through the ffmpeg executables (about 4x slower than " +
        'in the process). For the in-process reader install libavformat-dev libavcodec-dev libswscale-dev (Debian/Ubuntu) and ' +
        'run `npm rebuild emotorch`; the prebuilt addon carries it already.',
    );
  }
  return 'compiled';
}

module.exports = {
  torchRequest,
  pipAttempts,
  provisionLibtorch,
  holdsTorch,
  installedVersion,
  nvidiaRequirements,
  install,
  addonLoads,
  hasPrebuild,
  builtWithoutVideoReader,
  NO_LIBAV_MARK,
  PIP_RETRIES,
  PIP_TIMEOUT,
};

if (require.main === module && fs.existsSync(path.join(ROOT, 'native'))) {
  try {
    install();
  } catch (e) {
    defaultLog(e.message);
    process.exit(1);
  }
}
