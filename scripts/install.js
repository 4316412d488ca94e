#!/usr/bin/env node
'use strict';
// `npm install` hook: use a prebuilt or already-built addon when one loads; otherwise make sure
// libtorch is present (provisioning it into .libtorch/ with pip when neither $LIBTORCH nor
// python3's torch is there) and build the addon with cmake-js (node-gyp when cmake is missing).
//   EMOTORCH_BUILD_FROM_SOURCE=1  always build
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const lt = require('./libtorch');

const ROOT = path.resolve(__dirname, '..');
const log = (m) => process.stderr.write(`emotorch: ${m}\n`);

function addonLoads() {
  try {
    require('node-gyp-build')(ROOT);
    return true;
  } catch {
    return false;
  }
}

function run(cmd, args, opts = {}) {
  log(`$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: ROOT, ...opts });
  return r.status === 0;
}

function provisionLibtorch() {
  const target = path.join(ROOT, '.libtorch');
  log(`libtorch not found; installing ${lt.PIP_PIN} into ${target} (a few hundred MB, once)`);
  const py = process.env.EMOTORCH_PYTHON || 'python3';
  const ok = run(py, ['-m', 'pip', 'install', '--no-deps', '--no-compile', '--disable-pip-version-check', '--target', target, lt.PIP_PIN]);
  if (!ok) {
    log('installing libtorch with pip failed.\n' + lt.howToFix());
    process.exit(1);
  }
}

function hasCmake() {
  return spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
}

function build() {
  const jobs = String(Math.max(1, require('os').availableParallelism?.() ?? require('os').cpus().length));
  if (hasCmake()) {
    return run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--log-level', 'warn', '-p', jobs]);
  }
  log('cmake not found; building with node-gyp instead');
  const gyp = process.env.npm_config_node_gyp || require.resolve('node-gyp/bin/node-gyp.js');
  return run(process.execPath, [gyp, 'rebuild', '-j', jobs]);
}

function main() {
  const force = /^(1|true)$/i.test(process.env.EMOTORCH_BUILD_FROM_SOURCE || '');
  if (!force && addonLoads()) {
    log('native addon found (prebuilt or already built)');
    return;
  }
  let found;
  try {
    found = lt.find();
  } catch (e) {
    log(e.message);
    process.exit(1);
  }
  if (!found) {
    provisionLibtorch();
    found = lt.find();
    if (!found) {
      log('libtorch is still not found after installing it.\n' + lt.howToFix());
      process.exit(1);
    }
  }
  log(`building the native addon against libtorch ${found.version} (${found.source}: ${found.root})`);
  const t0 = Date.now();
  if (!build()) {
    log('the native build failed; see the compiler output above.');
    process.exit(1);
  }
  log(`built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (!addonLoads()) {
    log('the addon was built but does not load; try LD_LIBRARY_PATH=' + found.libdir);
    process.exit(1);
  }
}

if (fs.existsSync(path.join(ROOT, 'native'))) main();
