/**
 * One documented list of error codes (DESIGN rule 11): every `ERR_…` code written in lib/ or
 * native/ is a key of `et.errorCodes`, every key is used somewhere, each has a one-line meaning,
 * and docs/errors.md's "Error codes" table is that list, row for row.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';

const ROOT = path.join(__dirname, '..', '..');
const ERRORS_TS = path.join(ROOT, 'lib', 'errors.ts');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (/\.(ts|cc|cpp|h|hpp)$/.test(e.name)) out.push(p);
  }
  return out;
}

/** code → the files (relative) that write it, over lib/ and native/ except the list itself. */
function codesInSources(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const f of [...sources(path.join(ROOT, 'lib')), ...sources(path.join(ROOT, 'native'))]) {
    if (f === ERRORS_TS) continue;
    for (const code of new Set(fs.readFileSync(f, 'utf8').match(/ERR_[A-Z_]+/g) ?? [])) {
      found.set(code, [...(found.get(code) ?? []), path.relative(ROOT, f)]);
    }
  }
  return found;
}

/** The markdown table docs/errors.md should hold. */
function expectedTable(): string {
  return Object.entries(et.errorCodes)
    .map(([c, d]) => `| \`${c}\` | ${d.replace(/\|/g, '\\|')} |`)
    .join('\n');
}

describe('error codes', () => {
  const listed = Object.keys(et.errorCodes);

  it('every code used in lib/ and native/ is in et.errorCodes', () => {
    const missing = [...codesInSources()].filter(([c]) => !listed.includes(c)).map(([c, files]) => `${c} (${files.join(', ')})`);
    expect(missing, 'add these to ERROR_CODES in lib/errors.ts, with a one-line meaning, and to docs/errors.md').toEqual([]);
  });

  it('every listed code is used somewhere, and documented in one line', () => {
    const used = codesInSources();
    expect(
      listed.filter((c) => !used.has(c)),
      'codes no source raises any more',
    ).toEqual([]);
    for (const [c, d] of Object.entries(et.errorCodes)) {
      expect(c).toMatch(/^ERR_[A-Z_]+[A-Z]$/);
      expect(typeof d === 'string' && d.length > 10 && !d.includes('\n'), `${c}: a one-line meaning`).toBe(true);
    }
  });

  it("docs/errors.md's Error codes table is et.errorCodes, row for row", () => {
    const doc = fs.readFileSync(path.join(ROOT, 'docs', 'errors.md'), 'utf8');
    const start = doc.indexOf('# Error codes');
    expect(start, 'docs/errors.md has a "# Error codes" section').toBeGreaterThanOrEqual(0);
    const rows = doc
      .slice(start)
      .split('\n')
      .filter((l) => l.startsWith('| `ERR_'))
      .join('\n');
    expect(rows, `docs/errors.md's table should read:\n${expectedTable()}`).toBe(expectedTable());
  });

  it('errors thrown carry a listed code', () => {
    let err: unknown;
    try {
      et.tensor([1, 2]).reshape([3]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(et.EmotorchError);
    expect(listed).toContain((err as et.EmotorchError).code);
  });
});
