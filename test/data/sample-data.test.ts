import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { tmpdir } from '../helpers';

const SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'make-sample-data.mjs');
let dir: string;

/** Nearest-centroid accuracy (leave nothing out: a separability check, not an evaluation). */
function centroidAccuracy(xs: Float32Array[] | number[][], ys: number[]): number {
  const dim = xs[0].length;
  const sums = new Map<number, { s: number[]; n: number }>();
  xs.forEach((x, i) => {
    const c = sums.get(ys[i]) ?? { s: new Array(dim).fill(0), n: 0 };
    for (let d = 0; d < dim; d++) c.s[d] += x[d];
    c.n++;
    sums.set(ys[i], c);
  });
  const centres = [...sums.entries()].map(([y, c]) => [y, c.s.map((v) => v / c.n)] as const);
  let ok = 0;
  xs.forEach((x, i) => {
    let best = -1,
      bestD = Infinity;
    for (const [y, m] of centres) {
      let dd = 0;
      for (let d = 0; d < dim; d++) dd += (x[d] - m[d]) ** 2;
      if (dd < bestD) {
        bestD = dd;
        best = y;
      }
    }
    if (best === ys[i]) ok++;
  });
  return ok / xs.length;
}

/** Crude audio features: zero-crossing rate of each half (pitch and contour), RMS, length. */
function audioFeatures(x: Float32Array): number[] {
  const zcr = (a: Float32Array) => {
    let z = 0;
    for (let i = 1; i < a.length; i++) if (a[i - 1] < 0 !== a[i] < 0) z++;
    return z / a.length;
  };
  const h = x.length >> 1;
  let e = 0;
  for (const v of x) e += v * v;
  return [zcr(x.subarray(0, h)) * 100, zcr(x.subarray(h)) * 100, Math.sqrt(e / x.length) * 20, (x.length / 16000) * 5];
}

beforeAll(() => {
  dir = tmpdir();
  const r = spawnSync(process.execPath, [SCRIPT, dir, '--per-class', '6', '--seed', '3'], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
});

describe('scripts/make-sample-data.mjs', () => {
  it('writes SALMONN data that loads, with audible classes and 3-turn trajectories', async () => {
    const ds = await et.data.SalmonnDataset.fromFile(path.join(dir, 'salmonn.json'));
    expect(ds.length).toBe(7 * 6 + 2 * 6);
    const feats: number[][] = [];
    const ys: number[] = [];
    for (let i = 0; i < 42; i++) {
      const it = await ds.get(i);
      feats.push(audioFeatures(it.audio));
      ys.push(et.data.ECF_EMOTIONS.indexOf(it.target as never));
    }
    const acc = centroidAccuracy(feats, ys);
    console.log(`synthetic audio: nearest-centroid accuracy over 7 emotions from 4 crude features ${acc.toFixed(2)}`);
    expect(acc).toBeGreaterThan(0.8);
    const traj = await ds.get(42);
    expect(traj.emotionSequence).toHaveLength(3);
    expect(traj.target).toMatch(/\n情绪序列: \w+ -> \w+ -> \w+$/);
    expect(traj.instruction).toMatch(/^A: .*\nB: .*\nA: /);
  });

  it('writes ECF conversations and embeddings that load and separate the 7 emotions', async () => {
    const ds = await et.data.EcfDataset.fromFile(path.join(dir, 'ecf.json'), {
      features: { files: { text: 'ecf_text.safetensors', audio: 'ecf_audio.safetensors' } },
    });
    expect(ds.featureSize).toBe(32);
    const xs: Float32Array[] = [];
    const ys: number[] = [];
    for await (const u of ds) {
      xs.push(u.features!);
      ys.push(u.label);
    }
    expect(new Set(ys).size).toBe(7);
    const acc = centroidAccuracy(xs, ys);
    console.log(`ECF embeddings: nearest-centroid accuracy ${acc.toFixed(2)}`);
    expect(acc).toBeGreaterThan(0.9);
    expect(ds.conversations.some((c) => c.pairs.length > 0)).toBe(true);
  });

  it('writes ms-swift, SPECTRA and USDM files that load', async () => {
    const sw = await et.data.SwiftDataset.fromFile(path.join(dir, 'swift.json'), { checkFiles: true, inferTask: true });
    expect(sw.length).toBe(2 * 42);
    const tasks = new Set<string>();
    for await (const r of sw) tasks.add(r.task!);
    expect(tasks).toEqual(new Set(['sentiment', 'emotion']));

    const iem = await et.data.SpectraDataset.fromFile(path.join(dir, 'spectra_iemocap.pkl'), { task: 'iemocap' });
    expect(iem.layout).toBe('samples');
    expect(iem.length).toBe(36);
    const b = await iem.get(1);
    expect(b.turnIds!.length).toBe(b.textIds.length);
    expect(b.prevAudio).toBeInstanceOf(Float32Array);
    const mosi = await et.data.SpectraDataset.fromFile(path.join(dir, 'spectra_mosi.pkl'), { task: 'mosi' });
    expect(mosi.layout).toBe('indexed');
    expect(mosi.length).toBe(42);
    expect((await mosi.get(1)).prevAudio).toBe((await mosi.get(0)).audio);

    const us = await et.data.UsdmDataset.fromFile(path.join(dir, 'usdm.txt'));
    expect(us.length).toBe(24);
    const ex = await us.get(0);
    expect(ex.labels.filter((l) => l !== -100).length).toBeGreaterThan(0);
    expect(ex.ids).toContain(32001); // <|correspond|>

    // everything batches
    const loader = new et.data.DataLoader(iem, {
      batchSize: 8,
      shuffle: true,
      bucketBy: (x) => x.audio.length,
      collate: (items) => ({ audio: et.data.padSequences(items.map((x) => x.audio)), labels: et.data.stackNumbers(items.map((x) => x.label)) }),
    });
    let n = 0;
    for await (const batch of loader) {
      expect(batch.audio.values.shape[0]).toBe(batch.labels.shape[0]);
      n++;
    }
    expect(n).toBe(5);
  });
});
