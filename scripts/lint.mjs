#!/usr/bin/env node
// `npm run lint`: ESLint, `prettier --check` and `clang-format --dry-run --Werror` over the project's code; every
// check runs, and the exit status is 1 when any of them failed.
// `npm run format` (`--fix`): prettier and clang-format rewrite the same files in place (ESLint's rules are not applied).
// The rules live in eslint.config.mjs, .prettierrc.json and .clang-format; CONTRIBUTING.md says why.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import { createRequire } from 'module';
import * as path from 'path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const require = createRequire(import.meta.url);
const fix = process.argv.includes('--fix');

/** The TypeScript and JavaScript: these folders and the configuration files at the top. */
const JS_DIRS = ['lib', 'test', 'bench', 'scripts', 'examples'];
const JS_TOP = ['eslint.config.mjs', 'vitest.config.mts'];
/** The C++: every source and header under native/. */
const CPP = /\.(cc|h|cpp|hpp|cu|cuh)$/;

function bin(pkg, name) {
  const dir = path.dirname(require.resolve(`${pkg}/package.json`));
  const b = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).bin;
  return path.join(dir, typeof b === 'string' ? b : b[name]);
}

function cppFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? cppFiles(p) : CPP.test(e.name) ? [path.relative(root, p)] : [];
  });
}

function run(what, cmd, args) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  const ok = r.status === 0;
  console.log(`${ok ? 'ok    ' : 'FAILED'} ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)${r.error ? `: ${r.error.message}` : ''}`);
  return ok;
}

const jsGlobs = [`{${JS_DIRS.join(',')}}/**/*.{ts,mts,cts,js,mjs,cjs}`, ...JS_TOP];
const cpp = cppFiles(path.join(root, 'native'));
const { clangFormatPath } = require('clang-format-node');
const results = fix
  ? [
      run('prettier --write', process.execPath, [bin('prettier', 'prettier'), '--write', '--log-level', 'warn', ...jsGlobs]),
      run(`clang-format -i (${cpp.length} files)`, clangFormatPath, ['-i', ...cpp]),
    ]
  : [
      run('eslint', process.execPath, [bin('eslint', 'eslint'), ...JS_DIRS, ...JS_TOP]),
      run('prettier --check', process.execPath, [bin('prettier', 'prettier'), '--check', '--log-level', 'warn', ...jsGlobs]),
      run(`clang-format --dry-run --Werror (${cpp.length} files)`, clangFormatPath, ['--dry-run', '--Werror', '--ferror-limit=5', ...cpp]),
    ];
if (results.includes(false)) {
  if (!fix) console.log("lint failed: `npm run format` fixes the formatting; ESLint's findings are fixed by hand (eslint.config.mjs says why each rule is on)");
  process.exitCode = 1;
}
