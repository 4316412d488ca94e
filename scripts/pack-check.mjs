#!/usr/bin/env node
// The package as a user gets it: `npm pack` (within the size budget), `npm publish --dry-run`,
// then the tarball installed into an empty project, where the prebuild inside it must be used
// (no compile), `require('emotorch')` and `import * as et from 'emotorch'` must work, `npx emotorch
// --help` must answer, and the quickstart example must run.
//   npm run build:prebuild && npm run pack:check
// Exit status 0 when all of it holds; each failure is named on stderr.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The tarball may hold at most this much (compressed): the addon, dist/, lib/, native/. */
export const BUDGET_MB = 5;
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const failures = [];
const fail = (m) => {
  failures.push(m);
  console.error(`pack-check: FAIL ${m}`);
};
const step = (m) => console.log(`== ${m}`);

const prebuilds = path.join(ROOT, 'prebuilds', `${process.platform}-${process.arch}`);
if (!fs.existsSync(prebuilds) || !fs.readdirSync(prebuilds).some((f) => f.endsWith('.node'))) {
  console.error(`pack-check: no prebuild in ${prebuilds}: run \`npm run build:prebuild\` first`);
  process.exit(1);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-pack-'));
try {
  step('npm pack');
  const packed = JSON.parse(
    execFileSync(npm, ['pack', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }),
  )[0];
  const tgz = path.join(work, packed.filename);
  const mb = (b) => (b / 1048576).toFixed(1);
  console.log(
    `${packed.filename}: ${mb(packed.size)} MB packed, ${mb(packed.unpackedSize)} MB unpacked, ${packed.entryCount} files (budget ${BUDGET_MB} MB packed)`,
  );
  if (packed.size > BUDGET_MB * 1048576) fail(`the tarball is ${mb(packed.size)} MB, over the ${BUDGET_MB} MB budget`);
  const files = packed.files.map((f) => f.path);
  for (const must of ['dist/index.js', 'dist/index.mjs', 'dist/index.d.ts', 'dist/cli/main.js', 'scripts/install.js', 'CMakeLists.txt', 'README.md']) {
    if (!files.includes(must)) fail(`the tarball lacks ${must}`);
  }
  if (!files.some((f) => f.startsWith(`prebuilds/${process.platform}-${process.arch}/`) && f.endsWith('.node'))) fail('the tarball has no prebuild');
  const stray = files.filter((f) => /^(test|bench|examples|build|\.libtorch|\.ci)\//.test(f) || f.endsWith('.log'));
  if (stray.length) fail(`the tarball holds files a user does not need: ${stray.slice(0, 5).join(', ')}${stray.length > 5 ? ', …' : ''}`);

  step('npm publish --dry-run');
  const pub = spawnSync(npm, ['publish', '--dry-run'], { cwd: ROOT, encoding: 'utf8' });
  const warned = (pub.stderr || '')
    .split('\n')
    .filter((l) => /npm (warn|error)/i.test(l) && !/Unknown (user|env) config/.test(l) && !/EBADENGINE|engine/i.test(l));
  if (pub.status !== 0) fail(`npm publish --dry-run exited ${pub.status}: ${(pub.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  else if (warned.length) fail(`npm publish --dry-run warns: ${warned.join(' | ')}`);
  else console.log('clean');

  step('install the tarball into an empty project');
  const app = path.join(work, 'app');
  fs.mkdirSync(app);
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }, null, 2));
  const t0 = Date.now();
  const inst = spawnSync(npm, ['install', tgz, '--no-audit', '--no-fund', '--foreground-scripts'], {
    cwd: app,
    encoding: 'utf8',
    env: { ...process.env, LIBTORCH: '' },
  });
  const log = `${inst.stdout}\n${inst.stderr}`;
  console.log(
    log
      .split('\n')
      .filter((l) => /emotorch:/.test(l))
      .join('\n'),
  );
  console.log(`installed in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (inst.status !== 0) {
    fail(`npm install of the tarball exited ${inst.status}: ${log.trim().split('\n').slice(-5).join(' | ')}`);
  } else {
    if (/building the native addon/.test(log)) fail('the install compiled the addon instead of using the prebuild');
    if (!/using the prebuilt addon|native addon found/.test(log)) fail('the install did not report using the prebuild');
    const pkg = path.join(app, 'node_modules', 'emotorch');
    if (fs.existsSync(path.join(pkg, 'build'))) fail('the install left a build/ folder (it compiled)');

    step('require, import, npx emotorch --help, the quickstart');
    const node = (args, what) => {
      const r = spawnSync(process.execPath, args, { cwd: app, encoding: 'utf8', timeout: 600_000 });
      if (r.status !== 0) fail(`${what} exited ${r.status}: ${`${r.stderr}`.trim().split('\n').slice(-3).join(' | ')}`);
      return r.stdout;
    };
    const cjs = node(
      [
        '-e',
        "const et = require('emotorch'); console.log('require: ' + et.versions.emotorch + ' on libtorch ' + et.versions.libtorch + ', ' + require('node-gyp-build').resolve(require('path').dirname(require.resolve('emotorch/package.json'))))",
      ],
      "require('emotorch')",
    );
    console.log(cjs.trim());
    if (!/prebuilds/.test(cjs)) fail(`the installed package does not load its prebuild: ${cjs.trim()}`);
    console.log(
      node(
        ['--input-type=module', '-e', "import * as et from 'emotorch'; const x = et.tensor([1, 2, 3]); console.log('import: sum', x.sum().item())"],
        "import * as et from 'emotorch'",
      ).trim(),
    );
    const npx = spawnSync(npm, ['exec', '--', 'emotorch', '--help'], { cwd: app, encoding: 'utf8' });
    if (npx.status !== 0 || !/Usage: emotorch/.test(npx.stdout))
      fail(`npx emotorch --help exited ${npx.status}: ${npx.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    else console.log('npx emotorch --help: ok');
    fs.copyFileSync(path.join(ROOT, 'examples', 'quickstart.mjs'), path.join(app, 'quickstart.mjs'));
    const q = node(['quickstart.mjs'], 'the quickstart example');
    console.log(q.trim().split('\n').slice(-2).join('\n'));
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`pack-check: ${failures.length} failure(s)`);
  process.exit(1);
}
console.log('pack-check: the package installs and runs as a user gets it');
