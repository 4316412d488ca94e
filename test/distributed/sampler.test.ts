import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';

// torch.utils.data.DistributedSampler(shuffle=False) over a grid (scripts/fixtures/distributed_sampler.py)
const cases: Array<{ n: number; replicas: number; rank: number; dropLast: boolean; length: number; indices: number[] }> = JSON.parse(
  fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'distributed', 'sampler.json'), 'utf8'),
);

describe('DistributedSampler', () => {
  it("gives torch's indices and lengths without shuffling (padding by repetition, drop_last)", () => {
    expect(cases.length).toBe(288);
    for (const c of cases) {
      const s = new et.distributed.DistributedSampler(c.n, { numReplicas: c.replicas, rank: c.rank, shuffle: false, dropLast: c.dropLast });
      expect({ ...c, length: s.length, indices: s.indices() }).toEqual(c);
    }
  });

  it('shuffled: the ranks split one seeded permutation per epoch (disjoint, covering, padded like torch)', () => {
    for (const [n, r, dropLast] of [
      [12, 3, false],
      [13, 4, false],
      [13, 4, true],
      [3, 4, false],
    ] as const) {
      const shards = (epoch: number) =>
        Array.from({ length: r }, (_, rank) => new et.distributed.DistributedSampler(n, { numReplicas: r, rank, seed: 5, dropLast }).indices(epoch));
      const e0 = shards(0);
      const per = e0[0].length;
      expect(e0.every((s) => s.length === per)).toBe(true);
      const all = e0.flat();
      if (dropLast) {
        expect(new Set(all).size).toBe(all.length); // disjoint
        expect(all.length).toBe(Math.floor(n / r) * r);
      } else {
        expect(new Set(all)).toEqual(new Set(Array.from({ length: n }, (_, i) => i))); // covering
        expect(all.length).toBe(Math.ceil(n / r) * r); // padded to equal shards
      }
      // the unpadded part of the interleaved permutation is one permutation of 0..n-1
      const interleaved = Array.from({ length: per * r }, (_, i) => e0[i % r][Math.floor(i / r)]);
      if (!dropLast) expect([...interleaved.slice(0, n)].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(shards(0)).toEqual(e0); // same seed and epoch: same order
      if (n > 3) expect(shards(1)).not.toEqual(e0); // another epoch: another order
    }
  });

  it('drives a DataLoader: each epoch visits the shard, in the order setEpoch asks for', async () => {
    const items = Array.from({ length: 10 }, (_, i) => i);
    const sampler = new et.distributed.DistributedSampler(items.length, { numReplicas: 2, rank: 1, seed: 3 });
    const loader = new et.data.DataLoader({ length: items.length, get: (i: number) => items[i] }, { batchSize: 2, sampler, collate: (xs: number[]) => xs });
    expect(loader.length).toBe(3);
    for (const epoch of [0, 1]) {
      loader.setEpoch(epoch);
      const seen: number[] = [];
      for await (const b of loader) seen.push(...(b as number[]));
      expect(seen).toEqual(sampler.indices(epoch));
    }
  });

  it('names bad options', () => {
    const S = et.distributed.DistributedSampler;
    expect(() => new S(-1, { numReplicas: 2, rank: 0 })).toThrow(/dataset/);
    expect(() => new S(4, { numReplicas: 0, rank: 0 })).toThrow(/numReplicas/);
    expect(() => new S(4, { numReplicas: 2, rank: 2 })).toThrow(/rank/);
    expect(() => new S(4, { numReplicas: 2, rank: 0, shuffle: 'yes' as never })).toThrow(/shuffle/);
    expect(() => new S(4, { numReplicas: 2, rank: 0, seed: 1.5 })).toThrow(/seed/);
    expect(() => new S(4)).toThrow(expect.objectContaining({ code: 'ERR_DIST_STATE' })); // no process group
  });
});
