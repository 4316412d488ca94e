import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { throwsWith, rejectsWith } from '../helpers';

const range = (n: number) => ({ length: n, get: (i: number) => i });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function collect<B>(loader: AsyncIterable<B>): Promise<B[]> {
  const out: B[] = [];
  for await (const b of loader) out.push(b);
  return out;
}

describe('DataLoader', () => {
  it('batches in order, with and without drop_last', async () => {
    expect(await collect(new et.data.DataLoader(range(7), { batchSize: 3 }))).toEqual([[0, 1, 2], [3, 4, 5], [6]]);
    const dl = new et.data.DataLoader(range(7), { batchSize: 3, dropLast: true });
    expect(dl.length).toBe(2);
    expect(await collect(dl)).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    expect(await collect(new et.data.DataLoader(range(0), { batchSize: 3 }))).toEqual([]);
  });

  it('shuffles deterministically per (seed, epoch) and advances the epoch each pass', async () => {
    const a = new et.data.DataLoader(range(20), { batchSize: 4, shuffle: true, seed: 7 });
    const e0 = (await collect(a)).flat();
    const e1 = (await collect(a)).flat();
    expect(a.epoch).toBe(2);
    expect([...e0].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(e0).not.toEqual(e1);
    expect(e0).not.toEqual(Array.from({ length: 20 }, (_, i) => i));
    const b = new et.data.DataLoader(range(20), { batchSize: 4, shuffle: true, seed: 7 });
    b.setEpoch(1);
    expect((await collect(b)).flat()).toEqual(e1);
    expect(b.indices(0).flat()).toEqual(e0);
    const c = new et.data.DataLoader(range(20), { batchSize: 4, shuffle: true, seed: 8 });
    expect((await collect(c)).flat()).not.toEqual(e0);
  });

  it('buckets by length: batches hold similar lengths, all items once, keys cached', async () => {
    const lengths = Array.from({ length: 200 }, (_, i) => (i * 37) % 101);
    let gets = 0;
    const ds = {
      length: 200,
      get: async (i: number) => {
        gets++;
        return { i, len: lengths[i] };
      },
    };
    const dl = new et.data.DataLoader(ds, { batchSize: 10, shuffle: true, seed: 1, bucketChunk: 5, bucketBy: (x) => x.len });
    const batches = await collect(dl);
    expect(gets).toBe(200); // items loaded for their keys are reused, not loaded again
    expect(
      batches
        .flat()
        .map((x) => x.i)
        .sort((a, b) => a - b),
    ).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const spread = (b: { len: number }[]) => Math.max(...b.map((x) => x.len)) - Math.min(...b.map((x) => x.len));
    const mean = batches.reduce((s, b) => s + spread(b), 0) / batches.length;
    expect(mean).toBeLessThan(25); // unbucketed random batches of 10 spread ≈ 80
    await collect(dl);
    expect(gets).toBe(400); // second epoch: keys cached, each item loaded once for its batch
    const again = new et.data.DataLoader(ds, { batchSize: 10, shuffle: true, seed: 1, bucketChunk: 5, bucketBy: (x) => x.len });
    expect((await collect(again)).map((b) => b.map((x) => x.i))).toEqual(batches.map((b) => b.map((x) => x.i)));
  });

  it('prefetches: loading the next batches overlaps the consumer', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const ds = {
      length: 8,
      get: async (i: number) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep(20);
        inFlight--;
        return i;
      },
    };
    // How many loads are running while the consumer (the "model") works on a batch.
    const run = async (prefetch: number) => {
      inFlight = 0;
      maxInFlight = 0;
      let busyWhileConsuming = 0;
      for await (const _ of new et.data.DataLoader(ds, { batchSize: 1, prefetch })) {
        await sleep(5);
        busyWhileConsuming = Math.max(busyWhileConsuming, inFlight);
        await sleep(20);
      }
      return busyWhileConsuming;
    };
    expect(await run(0)).toBe(0);
    expect(maxInFlight).toBe(1);
    expect(await run(2)).toBeGreaterThanOrEqual(1);
    expect(maxInFlight).toBeLessThanOrEqual(3);
  });

  it('runs async collate and surfaces dataset errors at their batch without unhandled rejections', async () => {
    const ds = {
      length: 6,
      get: async (i: number) => {
        if (i === 4) throw new et.EmotorchError('item 4 is bad', 'ERR_DATA');
        return i;
      },
    };
    const dl = new et.data.DataLoader(ds, { batchSize: 2, collate: async (xs: number[]) => xs.reduce((a, b) => a + b, 0) });
    const seen: number[] = [];
    await rejectsWith(
      async () => {
        for await (const b of dl) seen.push(b);
      },
      'ERR_DATA',
      /item 4 is bad/,
    );
    expect(seen).toEqual([1, 5]);
    // breaking early is fine
    for await (const _ of new et.data.DataLoader(range(100), { batchSize: 2 })) break;
  });

  it('validates options', () => {
    throwsWith(() => new et.data.DataLoader(range(3), { batchSize: 0 }), 'ERR_INVALID_ARG', /positive integer for batchSize but received 0/);
    throwsWith(() => new et.data.DataLoader({} as never), 'ERR_INVALID_ARG', /for dataset/);
    throwsWith(() => new et.data.DataLoader(range(3), { prefetch: -1 }), 'ERR_INVALID_ARG', /for prefetch/);
    throwsWith(() => new et.data.DataLoader(range(3), { shuffle: 'yes' as never }), 'ERR_INVALID_ARG', /a boolean for shuffle/);
    throwsWith(() => new et.data.DataLoader(range(3)).setEpoch(-1), 'ERR_INVALID_ARG', /for epoch/);
  });
});

describe('collate', () => {
  it('pads sequences with masks and lengths', () => {
    const { values, attentionMask, lengths } = et.data.padSequences([[1, 2, 3], [4], []], { dtype: 'int64', padValue: -1 });
    expect(values.dtype).toBe('int64');
    expect(values.toArray()).toEqual([
      [1, 2, 3],
      [4, -1, -1],
      [-1, -1, -1],
    ]);
    expect(attentionMask.dtype).toBe('bool');
    expect(attentionMask.toArray()).toEqual([
      [true, true, true],
      [true, false, false],
      [false, false, false],
    ]);
    expect(lengths).toEqual([3, 1, 0]);
    const f = et.data.padSequences([Float32Array.from([0.5, 0.25]), Float32Array.from([1, 2, 3, 4])], { maxLength: 3, maskDtype: 'int64' });
    expect(f.values.shape).toEqual([2, 3]);
    expect(f.values.dtype).toBe('float32');
    expect(f.values.toArray()).toEqual([
      [0.5, 0.25, 0],
      [1, 2, 3],
    ]);
    expect(f.attentionMask.dtype).toBe('int64');
    expect(f.attentionMask.toArray()).toEqual([
      [1, 1, 0],
      [1, 1, 1],
    ]);
    // the deprecated name reads the same tensor and is not enumerated
    expect(f.mask).toBe(f.attentionMask);
    expect(Object.keys(f)).toEqual(['values', 'attentionMask', 'lengths']);
    expect(f.lengths).toEqual([2, 3]);
    expect(et.data.stackNumbers([1, 0, 5]).dtype).toBe('int64');
    expect(et.data.stackNumbers([1.5, -0.5]).toArray()).toEqual([1.5, -0.5]);
  });

  it('validates its input', () => {
    throwsWith(() => et.data.padSequences([]), 'ERR_INVALID_ARG', /non-empty array of sequences/);
    throwsWith(() => et.data.padSequences([[1.5]], { dtype: 'int64' }), 'ERR_INVALID_ARG', /integers for dtype int64 for arrays\[0\]\[0\] but received 1\.5/);
    throwsWith(() => et.data.padSequences([[1]], { maskDtype: 'float32' as never }), 'ERR_INVALID_ARG', /for maskDtype/);
    throwsWith(() => et.data.stackNumbers([1.5], { dtype: 'int64' }), 'ERR_INVALID_ARG', /integers for dtype int64/);
  });
});
