import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'pickle');
type Expected = Record<string, { dtype: string; shape: number[]; values: (string | number | boolean)[] }>;

function checkArrays(arrays: Map<unknown, unknown>, expected: Expected): void {
  expect([...arrays.keys()].sort()).toEqual(Object.keys(expected).sort());
  for (const [key, exp] of Object.entries(expected)) {
    const a = arrays.get(key) as et.data.NdArray;
    expect(a, key).toBeInstanceOf(et.data.NdArray);
    expect(a.shape, key).toEqual(exp.shape);
    expect(a.dtype, key).toBe(exp.dtype);
    const got = Array.from(a.data as ArrayLike<unknown>, (v) =>
      typeof v === 'bigint' ? String(v) : a.dtype === 'bool' ? v === 1 : typeof exp.values[0] === 'string' ? String(v) : v,
    );
    expect(got, key).toEqual(exp.values);
  }
}

describe('readPickle', () => {
  for (const np of ['np1', 'np2']) {
    const expected = JSON.parse(fs.readFileSync(path.join(DIR, `arrays_${np}.json`), 'utf8')) as Expected;
    for (const proto of [2, 4, 5]) {
      it(`reads numpy ${np === 'np1' ? '1.x' : '2.x'} arrays and Python values pickled at protocol ${proto}`, async () => {
        const obj = (await et.data.readPickle(path.join(DIR, `arrays_${np}_p${proto}.pkl`))) as Map<string, Map<unknown, unknown>>;
        checkArrays(obj.get('arrays')!, expected);
        const a = obj.get('arrays')!;
        expect((a.get('f4') as et.data.NdArray).data).toBeInstanceOf(Float32Array);
        expect((a.get('f2') as et.data.NdArray).data).toBeInstanceOf(Float32Array);
        expect((a.get('i8') as et.data.NdArray).data).toBeInstanceOf(BigInt64Array);
        expect((a.get('u2') as et.data.NdArray).data).toBeInstanceOf(Uint16Array);
        expect((a.get('fortran') as et.data.NdArray).toNumbers()).toEqual(Array.from({ length: 24 }, (_, i) => i));

        const x = obj.get('extras')!;
        expect(x.get('scalar_f4')).toBe(1.5);
        expect(x.get('scalar_i8')).toBe(-42);
        expect(x.get('scalar_bool')).toBe(true);
        expect(x.get('scalar_f8')).toBe(0.1);
        const objs = x.get('objects') as et.data.NdArray;
        expect(objs.dtype).toBe('object');
        expect(objs.shape).toEqual([3]);
        expect(Array.from((objs.data[0] as et.data.NdArray).data as Float32Array)).toEqual([0, 1, 2]);
        expect(objs.data.slice(1)).toEqual([null, 'x']);
        expect(x.get('tuple')).toEqual([1, 'two', 3]);
        expect(x.get('list')).toEqual([null, true, false]);
        expect(x.get('set')).toEqual(new Set([1, 2]));
        expect(x.get('frozenset')).toEqual(new Set(['a']));
        expect([...(x.get('ordered') as Map<string, number>).entries()]).toEqual([
          ['z', 1],
          ['a', 2],
        ]);
        expect(x.get('bytes')).toEqual(Buffer.from([0, 255, 97, 98]));
        expect(x.get('empty_bytes')).toEqual(Buffer.alloc(0));
        expect(x.get('bytearray')).toEqual(Buffer.from('xyz'));
        expect(x.get('int_keys')).toEqual(
          new Map([
            [0, 'zero'],
            [7, 'seven'],
          ]),
        );
        expect([...(x.get('tuple_keys') as Map<unknown, string>).entries()]).toEqual([[[1, 2], 'pair']]);
        expect(x.get('big')).toBe(2n ** 70n);
        expect(x.get('neg')).toBe(-(2 ** 40));
        expect(x.get('neg_big')).toBe(-(2n ** 70n));
        expect(x.get('unicode')).toBe('héllo 情绪 🎵');
        expect(x.get('float')).toBe(-1.25e-300);
        const shared = x.get('shared') as unknown[][];
        expect(shared[0]).toBe(shared[1]); // memo keeps identity
      });
    }
  }

  it("returns plain objects under { dict: 'object' } and reads protocol 0 text pickles", async () => {
    const obj = (await et.data.readPickle(path.join(DIR, 'arrays_np2_p4.pkl'), { dict: 'object' })) as Record<string, Record<string, unknown>>;
    expect(obj.extras.int_keys).toEqual({ 0: 'zero', 7: 'seven' });
    const t = await et.data.readPickle(path.join(DIR, 'text_p0.pkl'), { dict: 'object' });
    expect(t).toEqual({ a: [1, 2.5, 'héllo', null, true, [3, 4]], b: -7, c: 2n ** 70n });
  });

  it('refuses globals outside the allow-list without running them', async () => {
    await rejectsWith(
      et.data.readPickle(path.join(DIR, 'evil_os_system.pkl')),
      'ERR_FORMAT',
      /evil_os_system\.pkl.*pickle references (posix|os)\.system, which emotorch does not load \(it could run code\)/,
    );
    await rejectsWith(et.data.readPickle(path.join(DIR, 'evil_eval.pkl')), 'ERR_FORMAT', /references builtins\.eval/);
    const marker = path.join(tmpdir(), 'pwned');
    const classic = Buffer.from(`cos\nsystem\n(S'touch ${marker}'\ntR.`, 'latin1');
    throwsWith(() => et.data.parsePickle(classic, {}, 'classic.pkl'), 'ERR_FORMAT', /'classic\.pkl': pickle references os\.system/);
    expect(fs.existsSync(marker)).toBe(false);
    throwsWith(
      () => et.data.parsePickle(Buffer.from('\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x07getattr\x94\x93.', 'latin1')),
      'ERR_FORMAT',
      /builtins\.getattr/,
    );
    // numpy subclasses and other numpy functions are outside the list too
    throwsWith(() => et.data.parsePickle(Buffer.from('cnumpy\nload\n.', 'latin1')), 'ERR_FORMAT', /numpy\.load/);
  });

  it('rejects truncated and corrupt pickles with the file named, never crashing', async () => {
    const dir = tmpdir();
    const good = fs.readFileSync(path.join(DIR, 'arrays_np2_p5.pkl'));
    for (const cut of [1, 10, 100, 1000, good.length - 1]) {
      const f = path.join(dir, `cut${cut}.pkl`);
      fs.writeFileSync(f, good.subarray(0, cut));
      await rejectsWith(et.data.readPickle(f), 'ERR_FORMAT', new RegExp(`cut${cut}\\.pkl' is (truncated|not a readable pickle)`));
    }
    throwsWith(() => et.data.parsePickle(Buffer.from([0x80, 0x04, 0xff])), 'ERR_FORMAT', /an unknown opcode at byte 2/);
    throwsWith(() => et.data.parsePickle(Buffer.from('a.', 'latin1')), 'ERR_FORMAT', /empty stack/);
    throwsWith(() => et.data.parsePickle(Buffer.from('h\x05.', 'latin1')), 'ERR_FORMAT', /memo entry 5/);
    throwsWith(() => et.data.parsePickle(Buffer.from('\x80\x06.', 'latin1')), 'ERR_FORMAT', /protocol 6/);
    throwsWith(() => et.data.parsePickle(Buffer.from('PK\x03\x04rest', 'latin1'), {}, 'model.pt'), 'ERR_FORMAT', /'model\.pt' is a zip archive/);
    // a huge declared length is caught before any allocation
    throwsWith(() => et.data.parsePickle(Buffer.from('\x80\x04\x8e\xff\xff\xff\xff\xff\x00\x00\x00.', 'latin1')), 'ERR_FORMAT', /truncated/);
    // random corruption of a real pickle: an EmotorchError or a value, never a crash or a hang
    let errors = 0;
    for (let s = 0; s < 300; s++) {
      const g = Buffer.from(good);
      for (let k = 0; k < 4; k++) g[Math.floor(Math.random() * g.length)] = Math.floor(Math.random() * 256);
      try {
        et.data.parsePickle(g);
      } catch (e) {
        expect(e).toBeInstanceOf(et.EmotorchError);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(0);
    await rejectsWith(et.data.readPickle(path.join(dir, 'absent.pkl')), 'ERR_IO', /absent\.pkl/);
    throwsWith(() => et.data.parsePickle(good, { dict: 'json' as never }), 'ERR_INVALID_ARG', /'map' or 'object' for dict/);
  });

  it('needs buffers for out-of-band protocol 5 data', () => {
    // pickle.dumps(np.arange(3, dtype='f4'), protocol=5, buffer_callback=...) — NEXT_BUFFER path, hand-assembled
    const p = Buffer.concat([
      Buffer.from('\x80\x05\x8c\x12numpy.core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x97\x98', 'latin1'),
      Buffer.from(
        '\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x03\x85\x94\x8c\x01C\x94t\x94R\x94.',
        'latin1',
      ),
    ]);
    throwsWith(() => et.data.parsePickle(p), 'ERR_FORMAT', /out-of-band buffers \(NEXT_BUFFER\) but no buffers were given/);
    const a = et.data.parsePickle(p, { buffers: [Buffer.from(new Float32Array([1, 2, 3]).buffer)] }) as et.data.NdArray;
    expect(Array.from(a.data as Float32Array)).toEqual([1, 2, 3]);
  });

  it('decodes large protocol-2 arrays (bytes as latin-1 text) exactly, and big non-latin-1 text as text', () => {
    // numpy's protocol-2 form, assembled by hand: _reconstruct(ndarray, (0,), b'b') + BUILD with codecs.encode(text, 'latin1')
    const vals = Float32Array.from({ length: 40000 }, (_, i) => Math.sin(i) * 1e3);
    const raw = Buffer.from(vals.buffer);
    const uni = (t: string) => {
      const u = Buffer.from(t, 'utf8');
      const h = Buffer.alloc(5);
      h[0] = 0x58;
      h.writeUInt32LE(u.length, 1);
      return Buffer.concat([h, u]);
    };
    const p = Buffer.concat([
      Buffer.from('\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85c_codecs\nencode\nq\x01', 'latin1'),
      uni('b'),
      uni('latin1'),
      Buffer.from('q\x02\x86R\x87R(K\x01M\x40\x9c\x85cnumpy\ndtype\n', 'latin1'),
      uni('f4'),
      Buffer.from('\x89\x88\x87R(K\x03', 'latin1'),
      uni('<'),
      Buffer.from('NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89h\x01', 'latin1'),
      uni(raw.toString('latin1')),
      Buffer.from('h\x02\x86Rtb.', 'latin1'),
    ]);
    const a = et.data.parsePickle(p) as et.data.NdArray;
    expect(a.shape).toEqual([40000]);
    expect(Buffer.from((a.data as Float32Array).buffer, (a.data as Float32Array).byteOffset, 160000).equals(raw)).toBe(true);
    const text = '情绪'.repeat(40000);
    const q = Buffer.concat([Buffer.from('\x80\x02c_codecs\nencode\n', 'latin1'), uni(text), uni('utf-8'), Buffer.from('\x86R.', 'latin1')]);
    expect((et.data.parsePickle(q) as Buffer).toString('utf8')).toBe(text);
  });

  const python = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!python)('loads a ~64 MB pickle within 2.5× its size in extra memory (python3 + numpy present)', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'big.pkl');
    const script = `import pickle, numpy as np
rng = np.random.default_rng(0)
audio = [rng.standard_normal(16000 * 10).astype('f4') for _ in range(100)]
items = [[i, list(range(20)), i % 6, i - 1, list(range(5))] for i in range(100)]
pickle.dump([audio, items], open(${JSON.stringify(file)}, 'wb'), protocol=4)`;
    const r = spawnSync('python3', ['-c', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const size = fs.statSync(file).size;
    (globalThis as { gc?: () => void }).gc?.();
    const before = process.memoryUsage();
    const t0 = performance.now();
    const obj = (await et.data.readPickle(file)) as [et.data.NdArray[], unknown[]];
    const ms = performance.now() - t0;
    const after = process.memoryUsage();
    const rss = after.rss - before.rss;
    const ext = after.arrayBuffers - before.arrayBuffers;
    console.log(
      `pickle ${(size / 1e6).toFixed(1)} MB: loaded in ${ms.toFixed(0)} ms; rss +${(rss / 1e6).toFixed(1)} MB (${(rss / size).toFixed(2)}×), arrayBuffers +${(ext / 1e6).toFixed(1)} MB`,
    );
    expect(obj[0].length).toBe(100);
    expect(obj[0][99].shape).toEqual([160000]);
    expect(rss).toBeLessThan(2.5 * size);
  });

  it('lives in et.io (lib/io imports nothing from lib/data) and stays reachable from et.data', () => {
    expect(et.io.readPickle).toBe(et.data.readPickle);
    expect(et.io.parsePickle).toBe(et.data.parsePickle);
    expect(et.io.NdArray).toBe(et.data.NdArray);
    const dir = path.join(__dirname, '..', '..', 'lib', 'io');
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      expect(fs.readFileSync(path.join(dir, f), 'utf8'), f).not.toMatch(/from '\.\.\/data\//);
    }
  });
});
