/**
 * The import rule of ARCHITECTURE.md: lib/ is a house of rooms, and a file imports only from its
 * own room and the rooms its room may import (never upward). Every relative import of every
 * lib/**\/*.ts is checked: `import … from`, `export … from`, `import type`, dynamic `import()` and
 * `require()`. The ROOMS table below is the one source of the rule (ARCHITECTURE.md shows it).
 * native/ has the same rule for its `#include`s (NATIVE_ROOMS), and only native/bridge includes
 * Node's headers.
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
  distributed: { paths: ['distributed/'], mayImport: ['core', 'tensor', 'io', 'nn', 'data'] },
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
  'index.ts',
  'runtime.ts',
  'device.ts',
  'tensor.ts',
  'io/safetensors.ts',
  'io/torchfile.ts',
  'nn/module.ts',
  'nn/quant.ts',
  'audio/features.ts',
  'distributed/group.ts',
  'distributed/ddp.ts',
  'train/optim.ts',
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
  for (const c of [`${rel}.ts`, `${rel}.d.ts`, `${rel}/index.ts`, rel])
    if (fs.existsSync(path.join(LIB, c)) && fs.statSync(path.join(LIB, c)).isFile()) return c;
  return `${rel}.ts`; // unresolved: still roomed by its path
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
  return ts
    .preProcessFile(source, true, true)
    .importedFiles.map((i) => i.fileName)
    .filter((spec) => spec.startsWith('./') || spec.startsWith('../'))
    .map((spec) => resolve(rel, spec))
    .filter((t): t is string => t !== null && t !== rel);
}

/** The import circles of a graph (file → the files it imports): each circle's files, sorted (Tarjan's strongly connected components). */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>(),
    low = new Map<string, number>(),
    stack: string[] = [],
    onStack = new Set<string>(),
    out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('architecture: no import circles', () => {
  it('the check finds a circle through three files, and not a file that only points into it', () => {
    expect(
      circles(
        new Map([
          ['a.ts', ['b.ts']],
          ['b.ts', ['c.ts']],
          ['c.ts', ['a.ts']],
          ['d.ts', ['a.ts']],
        ]),
      ),
    ).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(
      circles(
        new Map([
          ['data.ts', []],
          ['model.ts', ['data.ts']],
          ['recipe.ts', ['model.ts', 'data.ts']],
        ]),
      ),
    ).toEqual([]);
  });

  it("no files of lib/ import each other, directly or through others, type imports included (a system's folder reads data → model → recipe)", () => {
    const graph = new Map(libFiles().map((rel) => [rel, importsOf(rel, fs.readFileSync(path.join(LIB, rel), 'utf8'))] as [string, string[]]));
    expect(circles(graph)).toEqual([]);
  });
});

describe('architecture: systems', () => {
  it('lib/systems holds the five systems as their users name them, each with an index.ts (et.systems.<name>)', () => {
    const dir = path.join(LIB, 'systems');
    const systems = fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name)
      .sort();
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

// ---- native/: the same rule for #include ---------------------------------------------------------

const NATIVE = path.join(__dirname, '..', 'native');
/** The include folders the build adds besides native/ (CMakeLists.txt, binding.gyp). */
const NATIVE_INCLUDE_DIRS = [NATIVE, path.join(NATIVE, 'distributed', 'gloo_shim')];

/**
 * native/'s rooms, lowest first: where each lives under native/ (a folder, or files at native/'s
 * top) and the rooms whose headers it may include besides its own. `base` is `config.h` (the config
 * reader and the kind registry), `error.h` (`et::CodedError`) and the precompiled header.
 */
const NATIVE_ROOMS: Record<string, { paths: string[]; mayInclude: string[] }> = {
  base: { paths: ['config.h', 'error.h', 'pch.h'], mayInclude: [] },
  kernels: { paths: ['kernels/'], mayInclude: ['base'] },
  blocks: { paths: ['blocks/'], mayInclude: ['base', 'kernels'] },
  models: { paths: ['models/'], mayInclude: ['base', 'kernels', 'blocks'] },
  train: { paths: ['train/'], mayInclude: ['base', 'kernels', 'blocks'] },
  audio: { paths: ['audio/'], mayInclude: ['base', 'kernels', 'blocks', 'models'] },
  io: { paths: ['io/'], mayInclude: ['base'] },
  memory: { paths: ['memory/'], mayInclude: ['base'] },
  media: { paths: ['media/'], mayInclude: ['base'] },
  runtime: { paths: ['runtime/'], mayInclude: ['base'] },
  distributed: { paths: ['distributed/'], mayInclude: ['base', 'models', 'memory'] },
  bridge: { paths: ['bridge/'], mayInclude: ['base', 'kernels', 'blocks', 'models', 'train', 'audio', 'io', 'memory', 'media', 'runtime', 'distributed'] },
  addon: { paths: ['addon.cc'], mayInclude: ['bridge'] },
};

/** Node's headers (N-API, libuv): only native/bridge includes them; the rest throws `et::CodedError`. */
const NODE_HEADERS = ['napi.h', 'napi-inl.h', 'node_api.h', 'js_native_api.h', 'node.h', 'uv.h'];

/** The native room of a file (its path relative to native/, with '/' separators), or null. */
function nativeRoomOf(rel: string): string | null {
  for (const [room, { paths }] of Object.entries(NATIVE_ROOMS)) {
    if (paths.some((p) => (p.endsWith('/') ? rel.startsWith(p) : rel === p))) return room;
  }
  return null;
}

function nativeFiles(dir = NATIVE): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return nativeFiles(p);
    return /\.(cc|cpp|cu|h|hpp|cuh)$/.test(e.name) ? [path.relative(NATIVE, p).split(path.sep).join('/')] : [];
  });
}

/** A file's `#include`s (comments left out): each with its delimiter and the name between. */
function includesOf(source: string): { quoted: boolean; spec: string }[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  return [...code.matchAll(/^[ \t]*#[ \t]*include[ \t]*([<"])([^>"]+)[>"]/gm)].map((m) => ({ quoted: m[1] === '"', spec: m[2] }));
}

/**
 * An include's target under native/, as the compiler finds it: beside the including file (`"…"`
 * only), then in each include folder; a `"…"` include found nowhere is still roomed by its path
 * from native/. null: a header from outside native/ (libtorch, the standard library).
 */
function resolveInclude(fromRel: string, quoted: boolean, spec: string): string | null {
  const dirs = [...(quoted ? [path.join(NATIVE, path.dirname(fromRel))] : []), ...NATIVE_INCLUDE_DIRS];
  for (const d of dirs) {
    const p = path.join(d, spec);
    const rel = path.relative(NATIVE, p).split(path.sep).join('/');
    if (!rel.startsWith('..') && fs.existsSync(p) && fs.statSync(p).isFile()) return rel;
  }
  const rel = path.posix.normalize(spec);
  return quoted && !rel.startsWith('..') && nativeRoomOf(rel) !== null ? rel : null;
}

/** Every breach of the include rule in one native file's source, naming the file and the include. */
function nativeBreaches(rel: string, source: string): string[] {
  const room = nativeRoomOf(rel);
  if (!room) return [`native/${rel} is in no room: add its folder to NATIVE_ROOMS in test/architecture.test.ts and to ARCHITECTURE.md`];
  const out: string[] = [];
  for (const { quoted, spec } of includesOf(source)) {
    const shown = quoted ? `"${spec}"` : `<${spec}>`;
    if (room !== 'bridge' && NODE_HEADERS.includes(path.posix.basename(spec))) {
      out.push(`native/${rel} includes ${shown}: only native/bridge includes Node's headers`);
      continue;
    }
    const target = resolveInclude(rel, quoted, spec);
    if (target === null) continue;
    const to = nativeRoomOf(target);
    if (to !== room && !(to !== null && NATIVE_ROOMS[room].mayInclude.includes(to))) {
      out.push(`native/${rel} includes ${shown} (${to ?? 'no room'}): ${room} may include ${[room, ...NATIVE_ROOMS[room].mayInclude].join(', ')}`);
    }
  }
  return out;
}

describe('architecture: native includes', () => {
  it('the rule catches an upward include, a relative one, a bridge header and napi.h, and not a comment', () => {
    const src = [
      '#include "kernels/norms.h"',
      '#include "blocks/lora.h"',
      '#include "../models/llama.h"',
      '#  include "bridge/bridge.h"',
      '#include <napi.h>',
      '#include <ATen/ATen.h>',
      '#include "config.h"',
      '// #include "train/optim.h"',
      '/* #include "models/whisper.h" */',
    ].join('\n');
    expect(nativeBreaches('kernels/example.cc', src)).toEqual([
      'native/kernels/example.cc includes "blocks/lora.h" (blocks): kernels may include kernels, base',
      'native/kernels/example.cc includes "../models/llama.h" (models): kernels may include kernels, base',
      'native/kernels/example.cc includes "bridge/bridge.h" (bridge): kernels may include kernels, base',
      "native/kernels/example.cc includes <napi.h>: only native/bridge includes Node's headers",
    ]);
    expect(nativeBreaches('bridge/example.cc', src)).toEqual([]);
    expect(nativeBreaches('models/example.cc', '#include "train/optim.h"\n#include "blocks/attention.h"\n#include "models/model.h"')).toEqual([
      'native/models/example.cc includes "train/optim.h" (train): models may include models, base, kernels, blocks',
    ]);
    expect(nativeBreaches('example/x.cc', '')).toEqual([
      'native/example/x.cc is in no room: add its folder to NATIVE_ROOMS in test/architecture.test.ts and to ARCHITECTURE.md',
    ]);
  });

  it('every room it may include is a room, and no two rooms may include each other', () => {
    const names = Object.keys(NATIVE_ROOMS);
    for (const [room, { mayInclude }] of Object.entries(NATIVE_ROOMS)) {
      for (const r of mayInclude) {
        expect(names, `${room} may include '${r}'`).toContain(r);
        expect(NATIVE_ROOMS[r].mayInclude, `${room} and ${r} may include each other`).not.toContain(room);
      }
    }
  });

  it("no file of native/ includes a header of a room its room may not include, nor Node's headers outside native/bridge", () => {
    const all = nativeFiles();
    expect(all.length).toBeGreaterThan(50);
    const found = all.flatMap((rel) => nativeBreaches(rel, fs.readFileSync(path.join(NATIVE, rel), 'utf8')));
    expect(found).toEqual([]);
  });

  it('no files of native/ include each other, directly or through others', () => {
    const graph = new Map(
      nativeFiles().map((rel) => {
        const targets = includesOf(fs.readFileSync(path.join(NATIVE, rel), 'utf8'))
          .map(({ quoted, spec }) => resolveInclude(rel, quoted, spec))
          .filter((t): t is string => t !== null && t !== rel);
        return [rel, targets] as [string, string[]];
      }),
    );
    expect(circles(graph)).toEqual([]);
  });
});
