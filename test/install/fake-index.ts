// A fake PyTorch wheel index on disk for the install tests: tiny `torch` wheels (a dist-info and a
// torch/include + torch/lib skeleton, no real libraries) in a PEP 503 "simple" layout that pip
// reads through a file:// URL. Everything is written by the test into a temp directory.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Writes a zip of stored (uncompressed) entries. */
export function writeZip(file: string, entries: Record<string, string | Buffer>): void {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  const DOS_DATE = (1 << 5) | 1; // 1980-01-01
  for (const [name, content] of Object.entries(entries)) {
    const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
    const n = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6); // flags
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(DOS_DATE, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(n.length, 26);
    local.writeUInt16LE(0, 28);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE((3 << 8) | 20, 4); // made by unix, 2.0
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(0, 8);
    cd.writeUInt16LE(0, 10);
    cd.writeUInt16LE(0, 12);
    cd.writeUInt16LE(DOS_DATE, 14);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(n.length, 28);
    cd.writeUInt32LE((0o100644 << 16) >>> 0, 38); // regular file, rw-r--r--
    cd.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    central.push(cd, n);
    offset += local.length + n.length + data.length;
  }
  const cdSize = central.reduce((s, b) => s + b.length, 0);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  const count = Object.keys(entries).length;
  eocd.writeUInt16LE(count, 8);
  eocd.writeUInt16LE(count, 10);
  eocd.writeUInt32LE(cdSize, 12);
  eocd.writeUInt32LE(offset, 16);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat([...locals, ...central, eocd]));
}

export interface WheelSpec {
  name: string; // distribution name as in the file name (underscores)
  version: string;
  build?: string; // optional build tag: pip prefers the higher one among equal versions
  files: Record<string, string>;
  requires?: string[]; // Requires-Dist lines
}

/** Writes a py3-none-any wheel with METADATA, WHEEL and a RECORD of sha256 hashes; returns its file name. */
export function writeWheel(dir: string, w: WheelSpec): string {
  const fileName = `${w.name}-${w.version}${w.build ? '-' + w.build : ''}-py3-none-any.whl`;
  const distInfo = `${w.name}-${w.version}.dist-info`;
  const entries: Record<string, string> = { ...w.files };
  entries[`${distInfo}/METADATA`] = [
    'Metadata-Version: 2.1',
    `Name: ${w.name}`,
    `Version: ${w.version}`,
    ...(w.requires || []).map((r) => `Requires-Dist: ${r}`),
    '',
  ].join('\n');
  entries[`${distInfo}/WHEEL`] = 'Wheel-Version: 1.0\nGenerator: emotorch-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n';
  const record = Object.entries(entries).map(([p, c]) => {
    const hash = crypto.createHash('sha256').update(c).digest('base64url');
    return `${p},sha256=${hash},${Buffer.byteLength(c)}`;
  });
  entries[`${distInfo}/RECORD`] = [...record, `${distInfo}/RECORD,,`, ''].join('\n');
  writeZip(path.join(dir, fileName), entries);
  return fileName;
}

/** A fake torch wheel: the skeleton scripts/libtorch.js recognizes as libtorch, no real code. */
export function writeTorchWheel(dir: string, version: string, opts: { requires?: string[]; build?: string } = {}): string {
  const [major, minor, patch] = version.split('+')[0].split('.');
  const files: Record<string, string> = {
    'torch/__init__.py': '',
    'torch/version.py': `__version__ = '${version}'\ncuda = None\n`,
    'torch/include/ATen/ATen.h': '// fake header for the emotorch install tests\n',
    'torch/include/torch/headeronly/version.h': `#define TORCH_VERSION_MAJOR ${major}\n#define TORCH_VERSION_MINOR ${minor}\n#define TORCH_VERSION_PATCH ${patch}\n`,
    'torch/lib/libtorch_cpu.so': 'not a library\n',
    'torch/lib/libtorch.so': 'not a library\n',
  };
  if (/\+cu\d+$/.test(version)) files['torch/lib/libtorch_cuda.so'] = 'not a library\n';
  return writeWheel(dir, { name: 'torch', version, build: opts.build, files, requires: opts.requires });
}

/**
 * Writes `<root>/simple/<project>/index.html` linking to `<root>/files/<name>` for each listed file
 * (which need not exist: a dangling link is a broken index). Returns the file:// URL of simple/.
 */
export function writeIndex(root: string, projects: Record<string, string[]>): string {
  for (const [project, names] of Object.entries(projects)) {
    const dir = path.join(root, 'simple', project);
    fs.mkdirSync(dir, { recursive: true });
    const links = names.map((n) => `<a href="../../files/${encodeURIComponent(n)}">${n}</a><br/>`).join('\n');
    fs.writeFileSync(path.join(dir, 'index.html'), `<!DOCTYPE html>\n<html><body>\n${links}\n</body></html>\n`);
  }
  return pathToFileURL(path.join(root, 'simple')).href;
}
