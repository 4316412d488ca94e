/**
 * The import rule of ARCHITECTURE.md: lib/ is a house of rooms, and a file imports only from its
 * own room and the rooms its room may import (never upward). Every relative import of every
 * lib/**\/*.ts is checked: `import … from`, `export … from`, `import type`, dynamic `import()` and
 * `require()`. The ROOMS table below is the one source of the rule (ARCHITECTURE.md shows it).
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const LIB = path.join(__dirname, '..', 'lib');

/**
 * The rooms, lowest first: where each lives under lib/ (a folder, or files at lib/'s top) and the
 * rooms it may import besides itself.
 */
const ROOMS: Record<string, { paths: string[]; mayImport: string[] }> = {
  core: { paths: ['errors.ts', 'dtype.ts', 'device.ts', 'native.ts', 'types/'], mayImport: [] },
  tensor: { paths: ['tensor.ts', 'functional.ts', 'runtime.ts'], mayImport: ['core'] },
  io: { paths: ['io/'], mayImport: ['core', 'tensor'] },
  nn: { paths: ['nn/'], mayImport: ['core', 'tensor', 'io'] },
  audio: { paths: ['audio/'], mayImport: ['core', 'tensor', 'io', 'nn'] },
  vision: { paths: ['vision/'], mayImport: ['core', 'tensor', 'io', 'audio'] },
  data: { paths: ['data/'], mayImport: ['core', 'tensor', 'io', 'audio', 'vision'] },
  distributed: { paths: ['distributed/'], mayImport: ['core', 'tensor', 'nn', 'data'] },
  metrics: { paths: ['metrics/'], mayImport: ['core', 'tensor', 'io', 'data'] },
  train: { paths: ['train/'], mayImport: ['core', 'tensor', 'io', 'nn', 'data', 'distributed', 'metrics'] },
  systems: { paths: ['systems/'], mayImport: ['core', 'tensor', 'io', 'nn', 'audio', 'vision', 'data', 'distributed', 'train', 'metrics'] },
  cli: { paths: ['cli/'], mayImport: ['api'] },
  api: { paths: ['index.ts', 'api/'], mayImport: ['core', 'tensor', 'io', 'nn', 'audio', 'vision', 'data', 'distributed', 'train', 'metrics', 'systems'] },
};

/**
 * The files that may import the raw binding (lib/native.ts): the typed wrappers. The list only
 * shrinks; a new file that needs a native call goes through one of these.
 */
const RAW_BINDING = [
  'index.ts', 'runtime.ts', 'device.ts', 'tensor.ts', 'io/safetensors.ts', 'io/torchfile.ts', 'nn/module.ts',
  'audio/features.ts', 'distributed/group.ts', 'distributed/ddp.ts', 'train/optim.ts',
];

/** The room of a file (its path relative to lib/, with '/' separators), or null. */
function roomOf(rel: string): string | null {
  for (const [room, { paths }] of Object.entries(ROOMS)) {
    if (paths.some((p) => (p.endsWith('/') ? rel.startsWith(p) : rel === p))) return room;
  }
  return null;
}

function libFiles(dir = LIB): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return libFiles(p);
    return e.name.endsWith('.ts') ? [path.relative(LIB, p).split(path.sep).join('/')] : [];
  });
}

/** A relative import's target under lib/ (`x.ts`, `x.d.ts` or `x/index.ts`), or null when it leaves lib/ (package.json). */
function resolve(fromRel: string, spec: string): string | null {
  const base = path.join(LIB, path.dirname(fromRel), spec);
  const rel = path.relative(LIB, base).split(path.sep).join('/');
  if (rel.startsWith('..')) return null;
  for (const c of [`${rel}.ts`, `${rel}.d.ts`, `${rel}/index.ts`, rel]) if (fs.existsSync(path.join(LIB, c)) && fs.statSync(path.join(LIB, c)).isFile()) return c;
  return `${rel}.ts`;  // unresolved: still roomed by its path
}

/** Every breach of the rule in one file's source: `<file> imports '<spec>' (<room>): <room> may import …`. */
function breaches(rel: string, source: string): string[] {
  const room = roomOf(rel);
  if (!room) return [`${rel} is in no room: add its folder to ROOMS in test/architecture.test.ts and to ARCHITECTURE.md`];
  const out: string[] = [];
  for (const { fileName: spec } of ts.preProcessFile(source, true, true).importedFiles) {
    if (!spec.startsWith('./') && !spec.startsWith('../')) continue;
    const target = resolve(rel, spec);
    if (target === null) continue;
    const to = roomOf(target);
    if (to !== room && !(to !== null && ROOMS[room].mayImport.includes(to))) {
      out.push(`${rel} imports '${spec}' (${to ?? 'no room'}): ${room} may import ${[room, ...ROOMS[room].mayImport].join(', ')}`);
    }
    if (target === 'native.ts' && !RAW_BINDING.includes(rel)) {
      out.push(`${rel} imports the raw binding '${spec}': only the typed wrappers may (${RAW_BINDING.join(', ')})`);
    }
  }
  return out;
}

/** lib/ files that a file imports by relative path (type imports included), resolved. */
function importsOf(rel: string, source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((i) => i.fileName)
    .filter((spec) => spec.startsWith('./') || spec.startsWith('../'))
    .map((spec) => resolve(rel, spec)).filter((t): t is string => t !== null && t !== rel);
}

/** The import circles of a graph (file → the files it imports): each circle's files, sorted (Tarjan's strongly connected components). */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>(), low = new Map<string, number>(), stack: string[] = [], onStack = new Set<string>(), out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next); low.set(v, next); next++;
    stack.push(v); onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('architecture: no import circles', () => {
  it('the check finds a circle through three files, and not a file that only points into it', () => {
    expect(circles(new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]]))).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(circles(new Map([['data.ts', []], ['model.ts', ['data.ts']], ['recipe.ts', ['model.ts', 'data.ts']]]))).toEqual([]);
  });

  it("no files of lib/ import each other, directly or through others, type imports included (a system's folder reads data → model → recipe)", () => {
    const graph = new Map(libFiles().map((rel) => [rel, importsOf(rel, fs.readFileSync(path.join(LIB, rel), 'utf8'))] as [string, string[]]));
    expect(circles(graph)).toEqual([]);
  });
});

describe('architecture: systems', () => {
  it('lib/systems holds the five systems as their users name them, each with an index.ts (et.systems.<name>)', () => {
    const dir = path.join(LIB, 'systems');
    const systems = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name).sort();
    expect(systems).toEqual(['m2se', 'salmonn', 'semeval', 'spectra', 'usdm']);
    for (const s of systems) expect(fs.existsSync(path.join(dir, s, 'index.ts')), `lib/systems/${s}/index.ts`).toBe(true);
  });
});

describe('architecture: imports', () => {
  it('the rule catches an upward import, a dynamic import, a require and a raw binding import', () => {
    const src = [
      "import { x } from '../distributed/ddp';",
      "export { y } from './module';",
      "const z = () => import('../train/trainer');",
      "const w = require('../systems/index');",
      "import { binding } from '../native';",
      "// import { v } from '../cli/run';  (a comment is no import)",
    ].join('\n');
    expect(breaches('nn/index.ts', src)).toEqual([
      "nn/index.ts imports '../distributed/ddp' (distributed): nn may import nn, core, tensor, io",
      "nn/index.ts imports '../train/trainer' (train): nn may import nn, core, tensor, io",
      "nn/index.ts imports '../systems/index' (systems): nn may import nn, core, tensor, io",
      "nn/index.ts imports the raw binding '../native': only the typed wrappers may (" + RAW_BINDING.join(', ') + ')',
    ]);
  });

  it('every room it may import is a room, and no room may import itself back through another', () => {
    const names = Object.keys(ROOMS);
    for (const [room, { mayImport }] of Object.entries(ROOMS)) {
      for (const r of mayImport) {
        expect(names, `${room} may import '${r}'`).toContain(r);
        expect(ROOMS[r].mayImport, `${room} and ${r} may import each other`).not.toContain(room);
      }
    }
  });

  it('no file of lib/ imports from a room its room may not import', () => {
    const all = libFiles();
    expect(all.length).toBeGreaterThan(50);
    const found = all.flatMap((rel) => breaches(rel, fs.readFileSync(path.join(LIB, rel), 'utf8')));
    expect(found).toEqual([]);
  });
});
