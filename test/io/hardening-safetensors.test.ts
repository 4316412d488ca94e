/**
 * Finding 13 of issue 7: the safetensors header reader accepts and rejects what the official
 * library does. The files and the library's verdicts come from
 * scripts/fixtures/safetensors_validation.py (safetensors 0.8.0, safe_open + get_tensor).
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'safetensors_validation');
const VERDICTS = JSON.parse(fs.readFileSync(path.join(DIR, 'verdicts.json'), 'utf8')) as Record<string, { python: 'ok' | 'error'; error?: string }>;

describe('safetensors validation agrees with the official library', () => {
  for (const [name, v] of Object.entries(VERDICTS)) {
    if (name.startsWith('_')) continue;
    const file = path.join(DIR, `${name}.safetensors`);
    it(`${name}: ${v.python === 'ok' ? 'accepted' : `rejected (${v.error!.replace(/^SafetensorError: Error while deserializing header: /, '').slice(0, 60)})`}`, async () => {
      if (v.python === 'ok') {
        const { tensors } = await et.io.loadSafetensors(file);
        expect(tensors.size).toBe(et.io.readSafetensorsHeader(file).entries.size);
      } else {
        throwsWith(() => et.io.readSafetensorsHeader(file), 'ERR_FORMAT', new RegExp(name));
        await rejectsWith(() => et.io.loadSafetensors(file), 'ERR_FORMAT');
      }
    });
  }

  it('reads the values the library reads (unordered keys, zero-size tensors, a repeated name keeps the last entry)', async () => {
    const dataOf = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + 11) % 256));
    const f32 = (b: Buffer) => Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)));
    const u = await et.io.loadSafetensors(path.join(DIR, 'ok_unordered_keys.safetensors'));
    expect(u.tensors.get('a')!.toArray()).toEqual(f32(dataOf(8).subarray(0, 4)));
    expect(u.tensors.get('b')!.toArray()).toEqual(f32(dataOf(8).subarray(4, 8)));
    const z = await et.io.loadSafetensors(path.join(DIR, 'ok_zero_size.safetensors'));
    expect(z.tensors.get('z')!.shape).toEqual([0, 3]);
    expect(z.tensors.get('a')!.toArray()).toEqual(f32(dataOf(8)));
    const d = await et.io.loadSafetensors(path.join(DIR, 'ok_duplicate_name.safetensors'));
    expect(d.tensors.get('a')!.shape).toEqual([2]);
    expect((await et.io.loadSafetensors(path.join(DIR, 'ok_metadata.safetensors'))).metadata).toEqual({ format: 'pt', k: '' });
  });

  it('is stricter than the library in one place: the header must start with "{" (the format says so; the library does not check yet)', () => {
    const file = path.join(tmpdir(), 'space.safetensors');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(3n);
    fs.writeFileSync(file, Buffer.concat([len, Buffer.from(' {}')]));
    throwsWith(() => et.io.readSafetensorsHeader(file), 'ERR_FORMAT', /does not start with '\{'/);
  });

  it('names a dtype of the format that emotorch lacks as unsupported', () => {
    const file = path.join(tmpdir(), 'u16.safetensors');
    const h = Buffer.from('{"a":{"dtype":"U16","shape":[4],"data_offsets":[0,8]}}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    fs.writeFileSync(file, Buffer.concat([len, h, Buffer.alloc(8)]));
    throwsWith(() => et.io.readSafetensorsHeader(file), 'ERR_FORMAT', /unsupported dtype "U16"/);
  });
});
