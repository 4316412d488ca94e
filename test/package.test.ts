// The package as published: the ES module wrapper's names are the CommonJS build's, found without
// loading the native addon (so `npm pack` / `prepare` work in a checkout that has not built it),
// and package.json's bin entries are what `npm pkg fix` leaves (publish warns otherwise).
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tmpdir } from './helpers';

const ROOT = path.join(__dirname, '..');

describe('the package', () => {
  it('dist/index.mjs exports every name of dist/index.js, and writing it never loads the addon', () => {
    const dir = tmpdir();
    // a preload that makes any .node load fail: the wrapper must not need the addon
    const noAddon = path.join(dir, 'no-addon.js');
    fs.writeFileSync(noAddon, "require('module')._extensions['.node'] = (m, f) => { throw new Error('loaded the addon: ' + f); };\n");
    const out = path.join(dir, 'index.mjs');
    const r = spawnSync(process.execPath, ['--require', noAddon, path.join(ROOT, 'scripts', 'esm-wrapper.js'), out], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const names = /export const \{ ([^}]*) \} = cjs;/.exec(fs.readFileSync(out, 'utf8'))![1].split(', ').sort();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cjs = Object.keys(require(path.join(ROOT, 'dist', 'index.js')))
      .filter((n) => n !== 'default' && n !== '__esModule')
      .sort();
    expect(names).toEqual(cjs);
  });

  it("package.json's bin paths are as npm normalizes them (no ./, files that the build makes)", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    for (const [name, file] of Object.entries(pkg.bin as Record<string, string>)) {
      expect(file, name).toBe(path.posix.normalize(file));
      expect(file.startsWith('./'), name).toBe(false);
      expect(fs.existsSync(path.join(ROOT, file)), file).toBe(true);
    }
  });
});
