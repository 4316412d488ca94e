#!/usr/bin/env node
'use strict';
// The one libtorch discovery used by CMakeLists.txt (cmake-js), binding.gyp (node-gyp,
// prebuildify) and scripts/install.js. Order: $LIBTORCH, then python3's installed `torch`
// package, then the project-local `.libtorch/` that `npm install` provisions (scripts/install.js).
//
//   node scripts/libtorch.js            JSON description
//   node scripts/libtorch.js --root     one field (root, include, libdir, version, cuda, abi, std)
//   node scripts/libtorch.js --cflags   compiler flags, space separated
//   node scripts/libtorch.js --ldflags  linker flags (libs + rpath), space separated
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const MIN = [2, 1];
const PROJECT_ROOT = path.resolve(__dirname, '..');
const LOCAL = path.join(PROJECT_ROOT, '.libtorch', 'torch');
// The torch release that `npm install` provisions and that prebuilds are built against. Its `+cpu`
// build is on PyTorch's own wheel index (not on pypi.org); CUDA builds are on .../whl/cu126 etc.
const TORCH_VERSION = '2.13.0';
const PIP_PIN = `torch==${TORCH_VERSION}+cpu`;
const torchIndexUrl = (variant) => `https://download.pytorch.org/whl/${variant}`;

function howToFix() {
  return [
    'emotorch needs libtorch >= ' + MIN.join('.') + '. Possible solutions:',
    '  - set LIBTORCH to an unpacked libtorch directory (it contains include/ and lib/), or',
    '  - install PyTorch for python3 (EMOTORCH_PYTHON picks another interpreter):',
    `      python3 -m pip install ${PIP_PIN} --extra-index-url ${torchIndexUrl('cpu')}`,
    '  - or run `npm install` again with python3 and pip available: it installs ' + PIP_PIN + ' into',
    '    ' + path.join(PROJECT_ROOT, '.libtorch') + ' (offline: EMOTORCH_TORCH_WHEEL=/path/to/torch-*.whl or a',
    '    directory of wheels; a mirror: EMOTORCH_TORCH_INDEX_URL; CUDA: EMOTORCH_TORCH_VARIANT=cu126 etc.)',
  ].join('\n');
}

function isLibtorch(dir) {
  return (
    !!dir &&
    fs.existsSync(path.join(dir, 'include', 'ATen', 'ATen.h')) &&
    (fs.existsSync(path.join(dir, 'lib', 'libtorch_cpu.so')) ||
      fs.existsSync(path.join(dir, 'lib', 'libtorch.so')) ||
      fs.existsSync(path.join(dir, 'lib', 'libtorch_cpu.dylib')))
  );
}

function fromPython(env) {
  // Every python3 on PATH, in order, until one has torch. ($PYTHON is not used: node-gyp sets it
  // to the interpreter it runs gyp with, and build tools put /usr/bin early on PATH.)
  const candidates = env.EMOTORCH_PYTHON ? [env.EMOTORCH_PYTHON] : [];
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    const exe = path.join(dir, 'python3');
    if (dir && !dir.includes('node_gyp_bins') && fs.existsSync(exe) && !candidates.includes(exe)) candidates.push(exe);
  }
  for (const py of candidates) {
    try {
      const out = execFileSync(py, ['-c', 'import os, torch; print(os.path.dirname(torch.__file__))'], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 60000,
        env: { ...env, PYTHONPATH: '' },
      }).trim();
      if (out) return out;
    } catch {
      // no torch for this interpreter
    }
  }
  return null;
}

function readVersion(root) {
  const candidates = [
    path.join(root, 'include', 'torch', 'headeronly', 'version.h'),
    path.join(root, 'include', 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'),
  ];
  for (const f of candidates) {
    if (!fs.existsSync(f)) continue;
    const text = fs.readFileSync(f, 'utf8');
    const get = (k) => {
      const m = text.match(new RegExp('#define\\s+' + k + '\\s+(\\d+)'));
      return m ? Number(m[1]) : null;
    };
    const major = get('TORCH_VERSION_MAJOR');
    if (major !== null) return [major, get('TORCH_VERSION_MINOR') || 0, get('TORCH_VERSION_PATCH') || 0];
  }
  const bv = path.join(root, 'build-version');
  if (fs.existsSync(bv)) {
    const m = fs.readFileSync(bv, 'utf8').match(/(\d+)\.(\d+)\.(\d+)/);
    if (m) return [Number(m[1]), Number(m[2]), Number(m[3])];
  }
  return null;
}

function readAbi(root) {
  const cfg = path.join(root, 'share', 'cmake', 'Torch', 'TorchConfig.cmake');
  if (fs.existsSync(cfg) && /_GLIBCXX_USE_CXX11_ABI=0/.test(fs.readFileSync(cfg, 'utf8'))) return 0;
  return 1;
}

function describe(root, source) {
  const version = readVersion(root);
  if (!version) throw new Error(`Found libtorch at ${root} (from ${source}) but could not read its version.\n` + howToFix());
  if (version[0] < MIN[0] || (version[0] === MIN[0] && version[1] < MIN[1])) {
    throw new Error(`libtorch ${version.join('.')} at ${root} (from ${source}) is too old.\n` + howToFix());
  }
  const libdir = path.join(root, 'lib');
  const cuda = fs.existsSync(path.join(libdir, 'libtorch_cuda.so'));
  const include = [path.join(root, 'include'), path.join(root, 'include', 'torch', 'csrc', 'api', 'include')];
  // libtorch >= 2.10 headers need C++20; older ones build as C++17.
  const std = version[0] > 2 || version[1] >= 10 ? 20 : 17;
  return { root, source, version: version.join('.'), libdir, include, cuda, abi: readAbi(root), std };
}

// The libtorch to build against, or null. `env` and `local` (the provisioned copy) are injectable
// for tests; throws when $LIBTORCH is set but wrong, or a libtorch is too old.
function find(env = process.env, local = LOCAL) {
  const given = env.LIBTORCH;
  if (given) {
    if (!isLibtorch(given)) throw new Error(`LIBTORCH=${given} is not a libtorch directory (no include/ATen/ATen.h or lib/libtorch_cpu.so).\n` + howToFix());
    return describe(path.resolve(given), 'LIBTORCH');
  }
  const py = fromPython(env);
  if (py && isLibtorch(py)) return describe(py, 'python3 torch');
  if (isLibtorch(local)) return describe(local, 'project .libtorch');
  return null;
}

function cflags(lt) {
  return [...lt.include.map((d) => '-I' + d), `-D_GLIBCXX_USE_CXX11_ABI=${lt.abi}`, `-std=c++${lt.std}`];
}

function libs(lt) {
  const l = ['-L' + lt.libdir, '-Wl,--no-as-needed'];
  if (lt.cuda) l.push('-ltorch_cuda', '-lc10_cuda');
  l.push('-ltorch', '-ltorch_cpu', '-lc10', '-Wl,--as-needed');
  return l;
}

function rpaths(lt) {
  // Absolute path of the libtorch built against, plus the project-local provisioned one relative
  // to the addon (build/Release/x.node and prebuilds/linux-x64/x.node are both two levels down).
  return [lt.libdir, '$ORIGIN/../../.libtorch/torch/lib'];
}

// The addon's translation units: every .cc under native/, one list for both build systems.
function sources() {
  const out = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.cc')) out.push(path.relative(PROJECT_ROOT, p).split(path.sep).join('/'));
    }
  };
  walk(path.join(PROJECT_ROOT, 'native'));
  return out;
}

module.exports = { find, isLibtorch, howToFix, cflags, libs, rpaths, sources, TORCH_VERSION, PIP_PIN, torchIndexUrl, LOCAL };

if (require.main === module) {
  if (process.argv[2] === '--sources') {
    process.stdout.write(sources().join('\n') + '\n');
    process.exit(0);
  }
  let lt;
  try {
    lt = find();
  } catch (e) {
    process.stderr.write(String(e.message) + '\n');
    process.exit(1);
  }
  if (!lt) {
    process.stderr.write('libtorch not found.\n' + howToFix() + '\n');
    process.exit(1);
  }
  const arg = process.argv[2];
  if (!arg) process.stdout.write(JSON.stringify(lt, null, 2) + '\n');
  else if (arg === '--cflags') process.stdout.write(cflags(lt).join(' ') + '\n');
  else if (arg === '--ldflags') process.stdout.write([...libs(lt), ...rpaths(lt).map((r) => '-Wl,-rpath,' + r)].join(' ') + '\n');
  // For binding.gyp: libs and the absolute rpath (binding.gyp adds the $ORIGIN one literally, since
  // gyp drops the quotes a command's output would need to protect it).
  else if (arg === '--gyp-ldflags') process.stdout.write([...libs(lt), '-Wl,-rpath,' + lt.libdir].join(' ') + '\n');
  else if (arg === '--include') process.stdout.write(lt.include.join(' ') + '\n');
  else if (arg.startsWith('--') && arg.slice(2) in lt) {
    const v = lt[arg.slice(2)];
    process.stdout.write((typeof v === 'boolean' ? (v ? '1' : '0') : String(v)) + '\n');
  } else {
    process.stderr.write(`unknown option ${arg}\n`);
    process.exit(2);
  }
}
