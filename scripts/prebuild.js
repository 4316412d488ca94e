#!/usr/bin/env node
'use strict';
// `npm run build:prebuild`: prebuildify (node-gyp, binding.gyp) for this platform, against the
// running Node's own headers (no header download), N-API so one build serves every Node version.
// (Not named `prebuild`: npm would run that before every `npm run build`.) The result,
// prebuilds/<platform>-<arch>/*.node, is what `npm install` tries before compiling; it finds libtorch
// at run time through its RPATH to ../../.libtorch/torch/lib, so build it against the libtorch that
// scripts/install.js provisions (torch TORCH_VERSION, CPU).
const path = require('path');
const { spawnSync } = require('child_process');
const lt = require('./libtorch');

let found;
try {
  found = lt.find();
} catch (e) {
  process.stderr.write(e.message + '\n');
  process.exit(1);
}
if (!found) {
  process.stderr.write('libtorch not found.\n' + lt.howToFix() + '\n');
  process.exit(1);
}
if (found.version !== lt.TORCH_VERSION || found.cuda) {
  process.stderr.write(
    `warning: building the prebuild against libtorch ${found.version}${found.cuda ? ' (CUDA)' : ''} from ${found.root}; ` +
      `a prebuild loads only with the libtorch it was built against, and npm install provisions ${lt.PIP_PIN}\n`,
  );
}
const nodedir = path.resolve(process.execPath, '..', '..');
const bin = require.resolve('prebuildify/bin.js');
const r = spawnSync(process.execPath, [bin, '--napi', '--strip', '--target', process.version.slice(1)], {
  stdio: 'inherit',
  cwd: path.resolve(__dirname, '..'),
  env: { ...process.env, npm_config_nodedir: nodedir, JOBS: process.env.JOBS || 'max' },
});
process.exit(r.status ?? 1);
