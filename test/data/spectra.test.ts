import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith } from '../helpers';

const DIR = path.join(FIXTURES, 'pickle');

describe('SpectraDataset', () => {
  it('reads the [audio_list, items] layout with previous turns', async () => {
    const ds = await et.data.SpectraDataset.fromFile(path.join(DIR, 'spectra_indexed.pkl'), { task: 'iemocap' });
    expect(ds.layout).toBe('indexed');
    expect(ds.length).toBe(3);
    const a = await ds.get(0);
    expect(a.audio).toBeInstanceOf(Float32Array);
    expect(a.audio.length).toBe(1600);
    expect(a.textIds).toEqual([0, 11, 22, 2]);
    expect(a.label).toBe(1);
    expect(a.prevAudio).toBeUndefined();
    const b = await ds.get(1);
    expect(b.audio.length).toBe(800);
    expect(b.prevAudio).toBe(a.audio); // the same clip from audio_list
    expect(b.prevTextIds).toEqual([0, 11, 22, 2]);
    const c = await ds.get(2);
    expect(c.textIds).toEqual([0, 44, 55, 2]); // from an int64 numpy array
    expect(c.label).toBe(5); // from a numpy int64 scalar
    const all: number[] = [];
    for await (const it of ds) all.push(it.label);
    expect(all).toEqual([1, 4, 5]);
  });

  it('reads the plain list of samples with turn ids and previous audio', async () => {
    const ds = await et.data.SpectraDataset.fromFile(path.join(DIR, 'spectra_samples.pkl'), { task: 'mosi' });
    expect(ds.layout).toBe('samples');
    expect(ds.length).toBe(3);
    expect((await ds.get(0)).label).toBe(1.5);
    const b = await ds.get(1);
    expect(b.label).toBe(-0.5);
    expect(b.turnIds).toEqual([0, 1, 1]);
    const c = await ds.get(2);
    expect(c.label).toBe(2.75);
    expect(c.prevAudio!.length).toBe(1600);
  });

  it('checks labels against the task and names file and item for bad items', async () => {
    await rejectsWith(
      et.data.SpectraDataset.fromFile(path.join(DIR, 'spectra_samples.pkl'), { task: 'iemocap' }),
      'ERR_DATA',
      /spectra_samples\.pkl' item 0: label 1\.5 is not an integer class in 0\.\.5 for task iemocap/,
    );
    const bad = path.join(DIR, 'spectra_bad.pkl');
    await rejectsWith(et.data.SpectraDataset.fromFile(bad, { task: 'iemocap' }), 'ERR_DATA', /spectra_bad\.pkl' item 1: label 9/);
    const ds = await et.data.SpectraDataset.fromFile(bad, { task: 'iemocap', skipBad: true });
    expect(ds.length).toBe(2);
    expect(ds.skipped).toBe(4);
    expect(ds.skippedItems.map((s) => s.index)).toEqual([1, 2, 3, 4]);
    expect(ds.skippedItems[1].reason).toMatch(/item 2: audio_idx is 7, not an index into the 2 audio clips/);
    expect(ds.skippedItems[2].reason).toMatch(/item 3: text_ids\[1\] is "x", not a token id/);
    expect(ds.skippedItems[3].reason).toMatch(/item 4: audio_list\[1\] has shape \[2,300\], not one channel/);
    expect((await ds.get(1)).prevTextIds).toEqual([0, 5, 2]);
    // without a task any finite label passes
    expect((await et.data.SpectraDataset.fromFile(bad, { skipBad: true })).skipped).toBe(3);
  });

  it('validates options and file shape', async () => {
    await rejectsWith(
      et.data.SpectraDataset.fromFile(path.join(DIR, 'spectra_samples.pkl'), { task: 'meld' as never }),
      'ERR_INVALID_ARG',
      /for task but received "meld"/,
    );
    await rejectsWith(
      et.data.SpectraDataset.fromFile(path.join(DIR, 'spectra_samples.pkl'), { skipbad: true } as never),
      'ERR_INVALID_ARG',
      /for option name but received "skipbad"/,
    );
    await rejectsWith(et.data.SpectraDataset.fromFile(path.join(DIR, 'text_p0.pkl')), 'ERR_FORMAT', /text_p0\.pkl' is not a SPECTRA pickle/);
    const ds = await et.data.SpectraDataset.fromFile(path.join(DIR, 'spectra_samples.pkl'));
    await rejectsWith(ds.get(3), 'ERR_INVALID_ARG', /an index below the dataset's length 3 for index but received 3/);
  });
});
