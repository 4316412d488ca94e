'use strict';
// Lets Jazzer.js's prebuilt libFuzzer addon load on glibc 2.36 / GCC 12 systems (Debian 12,
// the project's machines). The @jazzer.js/fuzzer 4.0 prebuild for linux-x64 was linked on a
// newer toolchain and asks for three symbols that older systems lack:
//   __isoc23_strtol@GLIBC_2.38, __isoc23_strtoul@GLIBC_2.38  (C23 strtol: same as strtol except
//     that it also accepts a "0b" prefix; libFuzzer only parses its decimal flags with them)
//   _ZSt21ios_base_library_initv@GLIBCXX_3.4.32             (a link-time marker GCC 13 emits
//     so iostreams get initialized; never called, no relocation refers to it)
// dlopen then fails with "version `GLIBC_2.38' not found". This file writes a copy of the addon
// in which those references name strtol / strtoul @GLIBC_2.2.5 and an existing GLIBCXX_3.4
// symbol (by editing .dynsym name offsets and the .gnu.version_r entries; no code changes), and
// redirects the addon's `require` to that copy. Where the original loads, nothing is changed.
//
// Used as `node -r ./scripts/fuzz-compat.cjs ...` (scripts/fuzz.mjs does that).
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');

/** ELF hash of a version name (System V ABI). */
function elfHash(name) {
  let h = 0;
  for (const c of Buffer.from(name)) {
    h = ((h << 4) + c) >>> 0;
    const g = h & 0xf0000000;
    if (g) h ^= g >>> 24;
    h &= ~g >>> 0;
  }
  return h >>> 0;
}

function cstr(buf, off) {
  return buf.toString('latin1', off, buf.indexOf(0, off));
}

/** Returns a patched copy of an ELF64 little-endian shared object, or null if nothing to patch. */
function patchElf(buf) {
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return null;
  const out = Buffer.from(buf);
  const shoff = Number(out.readBigUInt64LE(0x28));
  const shentsize = out.readUInt16LE(0x3a);
  const shnum = out.readUInt16LE(0x3c);
  const secs = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    secs.push({
      type: out.readUInt32LE(o + 4),
      off: Number(out.readBigUInt64LE(o + 0x18)),
      size: Number(out.readBigUInt64LE(o + 0x20)),
      link: out.readUInt32LE(o + 0x28),
    });
  }
  const dynsym = secs.find((s) => s.type === 11); // SHT_DYNSYM
  const versym = secs.find((s) => s.type === 0x6fffffff); // SHT_GNU_versym
  const verneed = secs.find((s) => s.type === 0x6ffffffe); // SHT_GNU_verneed
  if (!dynsym || !versym || !verneed) return null;
  const dynstr = secs[dynsym.link];
  const str = (o) => cstr(out, dynstr.off + o);

  // Version needs: index -> { name, aux offset, file }.
  const needs = new Map();
  for (let o = verneed.off, n = 0; ; n++) {
    const file = str(out.readUInt32LE(o + 4));
    const cnt = out.readUInt16LE(o + 2);
    for (let a = o + out.readUInt32LE(o + 8), k = 0; k < cnt; k++) {
      needs.set(out.readUInt16LE(a + 6), { name: str(out.readUInt32LE(a + 8)), nameOff: out.readUInt32LE(a + 8), aux: a, file });
      const next = out.readUInt32LE(a + 12);
      if (!next) break;
      a += next;
    }
    const next = out.readUInt32LE(o + 12);
    if (!next) break;
    o += next;
  }
  const versionNamed = (name) => [...needs.entries()].find(([, v]) => v.name === name);

  const syms = [];
  for (let i = 0; i < dynsym.size / 24; i++) {
    const o = dynsym.off + i * 24;
    syms.push({ o, nameOff: out.readUInt32LE(o), name: str(out.readUInt32LE(o)), ver: out.readUInt16LE(versym.off + i * 2) & 0x7fff });
  }
  const RENAMES = { __isoc23_strtol: 'strtol', __isoc23_strtoul: 'strtoul' };
  let changed = false;
  for (const s of syms) {
    const need = needs.get(s.ver);
    if (!need) continue;
    if (s.name in RENAMES && need.name === 'GLIBC_2.38') {
      // "__isoc23_strtol" ends with "strtol": point the name at that tail.
      const tail = RENAMES[s.name];
      out.writeUInt32LE(s.nameOff + s.name.length - tail.length, s.o);
      changed = true;
    } else if (s.name === '_ZSt21ios_base_library_initv') {
      // Name any other libstdc++ symbol of the base version instead (no relocation uses it).
      const base = syms.find((t) => needs.get(t.ver)?.name === 'GLIBCXX_3.4');
      if (!base) return null;
      out.writeUInt32LE(base.nameOff, s.o);
      changed = true;
    }
  }
  // Rename the version needs themselves to versions that the older libraries define.
  for (const [from, to] of [
    ['GLIBC_2.38', 'GLIBC_2.2.5'],
    ['GLIBCXX_3.4.32', 'GLIBCXX_3.4'],
  ]) {
    const a = versionNamed(from);
    const b = versionNamed(to);
    if (!a) continue;
    if (!b) return null;
    out.writeUInt32LE(elfHash(to), a[1].aux);
    out.writeUInt32LE(b[1].nameOff, a[1].aux + 8);
    changed = true;
  }
  return changed ? out : null;
}

/** Path of a loadable Jazzer.js fuzzer addon: the original, or a patched copy. */
function compatAddon(original) {
  const cacheDir = path.join(ROOT, 'node_modules', '.cache', 'emotorch-fuzz');
  const patched = path.join(cacheDir, path.basename(original));
  const src = fs.readFileSync(original);
  const stamp = `${fs.statSync(original).size}:${fs.statSync(original).mtimeMs}`;
  if (fs.existsSync(patched) && fs.existsSync(patched + '.stamp') && fs.readFileSync(patched + '.stamp', 'utf8') === stamp) return patched;
  const out = patchElf(src);
  if (!out) return original;
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.writeFileSync(patched + '.tmp', out);
  fs.renameSync(patched + '.tmp', patched);
  fs.writeFileSync(patched + '.stamp', stamp);
  return patched;
}

function install() {
  const dlopen = process.dlopen;
  process.dlopen = function (module, filename, ...rest) {
    if (/[\\/]@jazzer\.js[\\/]fuzzer[\\/]prebuilds[\\/]fuzzer-linux-x64\.node$/.test(filename)) {
      try {
        return dlopen.call(this, module, filename, ...rest);
      } catch (e) {
        if (!/version `(GLIBC_2\.38|GLIBCXX_3\.4\.32)' not found/.test(String(e && e.message))) throw e;
        return dlopen.call(this, module, compatAddon(filename), ...rest);
      }
    }
    return dlopen.call(this, module, filename, ...rest);
  };
}

module.exports = { patchElf, elfHash, compatAddon };
if (require.main !== module) install();
