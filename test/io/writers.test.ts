// et.io.writeNpy and et.io.pickleValue: the bytes numpy's np.save writes (references made with
// numpy 2 by hand: np.save of float32 [0.1, 0.2, 0.3] and of arange(6).reshape(2, 3) * 0.5), and
// pickles that read back as the values (Python's pickle.load was checked by hand to read the same).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { tmpdir, throwsWith } from '../helpers';

const NP_SAVE_1D =
  'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDMsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIArNzMw9zcxMPpqZmT4=';
const NP_SAVE_2D =
  'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAPwAAgD8AAMA/AAAAQAAAIEA=';

describe('writers', () => {
  it('writeNpy writes what np.save writes', () => {
    const dir = tmpdir();
    et.io.writeNpy(path.join(dir, 'a.npy'), new Float32Array([0.1, 0.2, 0.3]));
    expect(fs.readFileSync(path.join(dir, 'a.npy')).toString('base64')).toBe(NP_SAVE_1D);
    et.io.writeNpy(
      path.join(dir, 'b.npy'),
      Float32Array.from([0, 1, 2, 3, 4, 5], (x) => x * 0.5),
      [2, 3],
    );
    expect(fs.readFileSync(path.join(dir, 'b.npy')).toString('base64')).toBe(NP_SAVE_2D);
    expect(et.io.readNpy(path.join(dir, 'b.npy')).shape).toEqual([2, 3]);
    throwsWith(() => et.io.writeNpy(path.join(dir, 'c.npy'), new Float32Array(5), [2, 3]), 'ERR_INVALID_ARG', /shape of 5 values/);
    throwsWith(() => et.io.writeNpy(path.join(dir, 'no', 'such', 'c.npy'), new Float32Array(1)), 'ERR_IO', /cannot write/);
  });

  it('pickleValue: lists, dicts, strings, ints (small and 64-bit), floats, booleans and None read back; what pickle cannot hold is named', () => {
    const value = [
      ['a.npy', [0, 713, 2], ['it\u2019s', 1, 2, 0, 8000], -1],
      { k: 1.5, big: 2 ** 40, neg: -7, no: null, t: true, f: false },
      Array.from({ length: 2500 }, (_, i) => i),
    ];
    const back = et.io.parsePickle(et.io.pickleValue(value)) as unknown[];
    expect([back[0], back[2]]).toEqual([value[0], value[2]]);
    expect(Object.fromEntries(back[1] as Map<string, unknown>)).toEqual(value[1]); // a Python dict reads as a Map
    throwsWith(() => et.io.pickleValue([1, NaN]), 'ERR_INVALID_ARG', /value\[1\]/);
    throwsWith(() => et.io.pickleValue([2 ** 60]), 'ERR_INVALID_ARG', /within ±2\^53/);
    const cyc: unknown[] = [];
    cyc.push(cyc);
    throwsWith(() => et.io.pickleValue(cyc as never), 'ERR_INVALID_ARG', /cycles/);
    throwsWith(() => et.io.pickleValue([() => 1] as never), 'ERR_INVALID_ARG', /None, a bool/);
  });
});
