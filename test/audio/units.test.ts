// UnitExtractor: k-means units from a Wav2Vec2 layer against numpy's nearest-centroid argmin on
// HF Wav2Vec2Model's hidden states (scripts/fixtures/wav2vec2.py), and the .npy reader.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const dir = path.join(FIXTURES, 'wav2vec2');
const ref = JSON.parse(fs.readFileSync(path.join(dir, 'units.json'), 'utf8')) as { layer: number; units: number[][]; dedup: number[][] };

describe('UnitExtractor = numpy argmin over HF hidden states', () => {
  it('gives identical units, batched with padding, with and without run-length dedup', async () => {
    const encoder = await et.nn.Wav2Vec2Model.fromPretrained(path.join(dir, 'xlsr'));
    const t = (await et.io.loadSafetensors(path.join(dir, 'xlsr', 'io.safetensors'))).tensors;
    // the fixture's waveform is used as it is (HF gets no normalization either)
    const ux = new et.audio.UnitExtractor({ encoder, layer: ref.layer, centroids: path.join(dir, 'centroids.npy'), normalize: false });
    expect(ux.numUnits).toBe(50);
    const inputs = { inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask')! };
    expect(await ux.predict(inputs)).toEqual(ref.units);
    expect(await ux.predict({ ...inputs, dedup: true })).toEqual(ref.dedup);
    const { units, lengths } = await ux.forward({ ...inputs, dedup: true });
    expect(lengths.toArray()).toEqual([71, 46]);
    expect(units.shape).toEqual([2, 71]);
    expect((units.toArray() as number[][])[1].slice(46).every((v) => v === -1)).toBe(true);
  });
  it('normalizes each clip over its real samples (padding does not change the units)', async () => {
    const encoder = await et.nn.Wav2Vec2Model.fromPretrained(path.join(dir, 'xlsr'));
    const ux = new et.audio.UnitExtractor({ encoder, layer: 3, centroids: et.randn([20, 32]) });
    et.manualSeed(3);
    const wave = et.randn([1, 1200]).mul(0.3).add(0.2);
    const padded = et.cat([wave, et.zeros([1, 400])], 1);
    const mask = et.cat([et.ones([1, 1200]), et.zeros([1, 400])], 1);
    const alone = await ux.predict(wave);
    const [withPad] = await ux.predict({ inputValues: padded, attentionMask: mask });
    expect(withPad).toEqual(alone[0]);
    // scale invariance of the standardization
    expect(await ux.predict(wave.mul(7))).toEqual(alone);
  });
  it('follows new centroids loaded into the extractor (the cached centroid norms are refreshed)', async () => {
    const encoder = await et.nn.Wav2Vec2Model.fromPretrained(path.join(dir, 'xlsr'));
    const t = (await et.io.loadSafetensors(path.join(dir, 'xlsr', 'io.safetensors'))).tensors;
    const c = et.io.readNpy(path.join(dir, 'centroids.npy'));
    const ux = new et.audio.UnitExtractor({ encoder, layer: ref.layer, centroids: c, normalize: false });
    const inputs = { inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask')! };
    expect(await ux.predict(inputs)).toEqual(ref.units);
    // the same centroids in reverse order: unit u becomes 49 − u
    const rows = et.tensor(c.data, { shape: c.shape });
    const reversed = et.cat(
      Array.from({ length: 50 }, (_, i) => rows.slice(0, 49 - i, 50 - i)),
      0,
    );
    await ux.loadStateDict({ 'kmeans.centroids': reversed }, { strict: false });
    expect(await ux.predict(inputs)).toEqual(ref.units.map((r) => r.map((u) => 49 - u)));
  });
  it('reads .npy float16/32/64 in either byte order and rejects other files', () => {
    const a = et.io.readNpy(path.join(dir, 'centroids.npy'));
    expect(a.shape).toEqual([50, 32]);
    const d = tmpdir();
    const npy = (descr: string, body: Buffer, shape = '(2, 2)') => {
      let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shape}, }`;
      h += ' '.repeat(63 - ((10 + h.length) % 64)) + '\n';
      const head = Buffer.alloc(10);
      head.write('\x93NUMPY', 0, 'latin1');
      head[6] = 1;
      head[7] = 0;
      head.writeUInt16LE(h.length, 8);
      const f = path.join(d, `${descr.replace(/[^a-z0-9]/g, '_')}${shape.length}.npy`);
      fs.writeFileSync(f, Buffer.concat([head, Buffer.from(h, 'latin1'), body]));
      return f;
    };
    const vals = [1.5, -2, 0.25, 3];
    const f8 = Buffer.alloc(32);
    vals.forEach((v, i) => f8.writeDoubleBE(v, i * 8));
    expect(Array.from(et.io.readNpy(npy('>f8', f8)).data)).toEqual(vals);
    const f2 = Buffer.from(new Uint16Array([0x3e00, 0xc000, 0x3400, 0x4200]).buffer);
    expect(Array.from(et.io.readNpy(npy('<f2', f2)).data)).toEqual(vals);
    throwsWith(() => et.io.readNpy(npy('<i8', Buffer.alloc(32))), 'ERR_FORMAT', /dtype '<i8'/);
    throwsWith(() => et.io.readNpy(npy('<f4', Buffer.alloc(12))), 'ERR_FORMAT', /12 data bytes for 4 elements/);
    throwsWith(() => et.io.readNpy(path.join(dir, 'units.json')), 'ERR_FORMAT', /magic/);
    throwsWith(() => et.io.readNpy(path.join(d, 'absent.npy')), 'ERR_IO');
    throwsWith(() => et.io.readNpy(d), 'ERR_IO');
  });
  it('rejects bad options and inputs by name', async () => {
    const encoder = await et.nn.Wav2Vec2Model.fromPretrained(path.join(dir, 'xlsr'));
    const c = path.join(dir, 'centroids.npy');
    throwsWith(() => new et.audio.UnitExtractor({ encoder, layer: 4, centroids: c }), 'ERR_INVALID_ARG', /layer/);
    throwsWith(() => new et.audio.UnitExtractor({ encoder, layer: 1, centroids: et.zeros([5, 16]) }), 'ERR_INVALID_ARG', /centroids shape/);
    throwsWith(() => new et.audio.UnitExtractor({ encoder: {} as never, layer: 1, centroids: c }), 'ERR_INVALID_ARG', /encoder/);
    throwsWith(() => new et.audio.UnitExtractor({ encoder, layer: 1, centroids: 42 as never }), 'ERR_INVALID_ARG', /centroids/);
    throwsWith(() => new et.audio.UnitExtractor({ encoder, layer: 1, centroids: c, dedup: 'yes' as never }), 'ERR_INVALID_ARG', /dedup/);
    const ux = new et.audio.UnitExtractor({ encoder, layer: 1, centroids: c });
    await rejectsWith(() => ux.forward({ inputValues: et.zeros([400]) }), 'ERR_INVALID_ARG', /inputValues/);
    await rejectsWith(() => ux.forward({ inputValues: et.zeros([1, 4]) }), 'ERR_INVALID_ARG', /at least 10 samples/);
  });
});
