'use strict';
// Lets a plain `node` child process load the library's TypeScript sources (lib/**/*.ts) directly,
// so corpus replays test the current code without a build: `node -r ./test/fuzz/register-ts.cjs`.
// Transpile only (TypeScript's transpileModule, no type check), cached by content hash.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const ts = require('typescript');

const ROOT = path.resolve(__dirname, '..', '..');
const CACHE = path.join(ROOT, 'node_modules', '.cache', 'emotorch-ts');
const OPTIONS = {
  module: ts.ModuleKind.CommonJS,
  target: ts.ScriptTarget.ES2022,
  esModuleInterop: true,
  resolveJsonModule: true,
  inlineSourceMap: true,
};

function transpile(filename) {
  const src = fs.readFileSync(filename, 'utf8');
  const key = crypto.createHash('sha1').update(ts.version).update('\0').update(filename).update('\0').update(src).digest('hex');
  const cached = path.join(CACHE, `${key}.js`);
  try {
    return fs.readFileSync(cached, 'utf8');
  } catch {
    // not cached yet
  }
  const out = ts.transpileModule(src, { compilerOptions: OPTIONS, fileName: filename }).outputText;
  try {
    fs.mkdirSync(CACHE, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, out);
    fs.renameSync(tmp, cached);
  } catch {
    // a read-only tree still works, only slower
  }
  return out;
}

require.extensions['.ts'] = function (module, filename) {
  module._compile(transpile(filename), filename);
};
