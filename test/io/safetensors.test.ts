import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

const MIXED = path.join(FIXTURES, 'foundation', 'mixed_dtypes.safetensors');

describe('safetensors', () => {
  it('reads a file written by the safetensors library, with bf16, f16, int64, bool and metadata', async () => {
    const { tensors, metadata } = await et.io.loadSafetensors(MIXED);
    expect(metadata).toEqual({ format: 'pt', note: 'written by safetensors' });
    expect(tensors.get('bf16')!.dtype).toBe('bfloat16');
    expect(tensors.get('f16')!.dtype).toBe('float16');
    expect(maxAbsDiff(tensors.get('f16')!, tensors.get('f32')!)).toBeLessThan(2e-3);
    expect(maxAbsDiff(tensors.get('bf16')!, tensors.get('f32')!)).toBeLessThan(2e-2);
    expect(tensors.get('i64')!.toArray()).toEqual([0, 1, 2, 3, 4]);
    expect(tensors.get('flag')!.toArray()).toEqual([true, false]);
  });

  it('round-trips every dtype and loads a subset', async () => {
    const file = path.join(tmpdir(), 'all.safetensors');
    const src = new Map(et.DTYPES.map((d) => [`t_${d}`, et.tensor([[0, 1, 1]], { dtype: d })] as [string, et.Tensor]));
    src.set('empty', et.zeros([0, 4]));
    src.set('scalar', et.tensor(3.5));
    await et.io.saveSafetensors(file, src, { k: 'v' });
    const { tensors, metadata } = await et.io.loadSafetensors(file);
    expect(metadata).toEqual({ k: 'v' });
    for (const [k, t] of src) {
      expect(tensors.get(k)!.dtype).toBe(t.dtype);
      expect(tensors.get(k)!.shape).toEqual(t.shape);
      expect(tensors.get(k)!.toArray()).toEqual(t.toArray());
    }
    const only = await et.io.loadSafetensors(file, { only: ['t_int64'] });
    expect([...only.tensors.keys()]).toEqual(['t_int64']);
    await rejectsWith(() => et.io.loadSafetensors(file, { only: ['nope'] }), 'ERR_STATE_DICT', /no tensor named 'nope'/);
  });

  it('gives tensors that can be changed without touching the file', async () => {
    const file = path.join(tmpdir(), 'cow.safetensors');
    await et.io.saveSafetensors(file, { a: et.ones([4]) });
    const bytes = fs.readFileSync(file);
    const { tensors } = await et.io.loadSafetensors(file);
    const a = tensors.get('a')!;
    a.requiresGrad = true;
    const opt = new et.optim.SGD([a], { lr: 1 });
    a.grad = et.ones([4]);
    await opt.step(); // writes into the mapped tensor
    expect(a.toArray()).toEqual([0, 0, 0, 0]);
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
  });

  it('rejects truncated, corrupt and odd files with the file named', async () => {
    const dir = tmpdir();
    const good = path.join(dir, 'good.safetensors');
    await et.io.saveSafetensors(good, { w: et.randn([16, 16]) });
    const bytes = fs.readFileSync(good);

    const truncated = path.join(dir, 'truncated.safetensors');
    fs.writeFileSync(truncated, bytes.subarray(0, bytes.length - 10));
    await rejectsWith(
      () => et.io.loadSafetensors(truncated),
      'ERR_FORMAT',
      /truncated.safetensors' is truncated: its tensors end at byte 1024 of the data section but the file holds 1014/,
    );

    const tiny = path.join(dir, 'tiny.safetensors');
    fs.writeFileSync(tiny, bytes.subarray(0, 5));
    await rejectsWith(() => et.io.loadSafetensors(tiny), 'ERR_FORMAT', /fewer than the 8-byte header length/);

    const headerCut = path.join(dir, 'headercut.safetensors');
    fs.writeFileSync(headerCut, bytes.subarray(0, 20));
    await rejectsWith(() => et.io.loadSafetensors(headerCut), 'ERR_FORMAT', /header length field exceeds the file/);

    const garbage = path.join(dir, 'garbage.safetensors');
    const g = Buffer.from(bytes);
    g.write('{"w":{"dtyp', 8, 'utf8');
    g[20] = 0x00;
    fs.writeFileSync(garbage, g);
    await rejectsWith(() => et.io.loadSafetensors(garbage), 'ERR_FORMAT', /garbage.safetensors' is not a valid safetensors file/);

    const badDtype = path.join(dir, 'baddtype.safetensors');
    const hdr = JSON.stringify({ w: { dtype: 'F8_E5M2', shape: [1], data_offsets: [0, 1] } });
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hdr.length));
    fs.writeFileSync(badDtype, Buffer.concat([len, Buffer.from(hdr), Buffer.alloc(1)]));
    await rejectsWith(() => et.io.loadSafetensors(badDtype), 'ERR_FORMAT', /unsupported dtype "F8_E5M2"/);

    const badSize = path.join(dir, 'badsize.safetensors');
    const hdr2 = JSON.stringify({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } });
    len.writeBigUInt64LE(BigInt(hdr2.length));
    fs.writeFileSync(badSize, Buffer.concat([len, Buffer.from(hdr2), Buffer.alloc(8)]));
    await rejectsWith(() => et.io.loadSafetensors(badSize), 'ERR_FORMAT', /spans 8 bytes but float32 \[3\] needs 12/);

    await rejectsWith(() => et.io.loadSafetensors(path.join(dir, 'missing.safetensors')), 'ERR_IO', /cannot read .*missing.safetensors/);
    throwsWith(() => et.io.readSafetensorsHeader(42 as unknown as string), 'ERR_INVALID_ARG', /file path/);
  });

  it('keeps the old file when a save fails', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'keep.safetensors');
    await et.io.saveSafetensors(file, { a: et.ones([2]) });
    await rejectsWith(() => et.io.saveSafetensors(path.join(dir, 'no', 'such', 'dir.safetensors'), { a: et.ones([2]) }), 'ERR_IO', /cannot create/);
    await rejectsWith(() => et.io.saveSafetensors(file, { a: 'x' as unknown as et.Tensor }), 'ERR_INVALID_ARG', /Tensor for tensors\['a'\]/);
    expect((await et.io.loadSafetensors(file)).tensors.get('a')!.toArray()).toEqual([1, 1]);
    expect(fs.readdirSync(dir)).toEqual(['keep.safetensors']);
  });
});
