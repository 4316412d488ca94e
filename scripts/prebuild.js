#!/usr/bin/env node
'use strict';
// `npm run prebuild`: prebuildify (node-gyp, binding.gyp) for this platform, against the running
// Node's own headers (no header download), N-API so one build serves every Node version.
const path = require('path');
const { spawnSync } = require('child_process');

const nodedir = path.resolve(process.execPath, '..', '..');
const bin = require.resolve('prebuildify/bin.js');
const r = spawnSync(process.execPath, [bin, '--napi', '--strip', '--target', process.version.slice(1)], {
  stdio: 'inherit',
  cwd: path.resolve(__dirname, '..'),
  env: { ...process.env, npm_config_nodedir: nodedir, JOBS: process.env.JOBS || 'max' },
});
process.exit(r.status ?? 1);
