import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { rejectsWith, tmpdir } from '../helpers';

describe('SwiftDataset', () => {
  it('reads query/response records with media paths resolved, JSON and JSONL', async () => {
    const dir = tmpdir();
    const recs = [
      { query: '<video>What is the sentiment?', response: 'positive', videos: ['v/1.mp4'] },
      { query: '<image>Which emotion?', response: 'Surprise', images: '/abs/2.jpg', system: 'You are an analyst.' },
      { query: 'List the emotion-cause pairs.', response: '(3_joy, 2), (4_anger, 4)', videos: ['v/3.mp4'] },
      { query: 'Which action units are active?', response: 'AU6, AU12', videos: [] },
      { query: 'Why does she feel this way?', response: 'Because she got the job.' },
    ];
    fs.writeFileSync(path.join(dir, 'm2se.json'), JSON.stringify(recs));
    fs.writeFileSync(path.join(dir, 'm2se.jsonl'), recs.map((r) => JSON.stringify(r)).join('\n') + '\n');
    for (const f of ['m2se.json', 'm2se.jsonl']) {
      const ds = await et.data.SwiftDataset.fromFile(path.join(dir, f), { inferTask: true });
      expect(ds.length).toBe(5);
      const a = await ds.get(0);
      expect(a).toEqual({ query: recs[0].query, response: 'positive', videos: [path.join(dir, 'v/1.mp4')], images: [], audios: [], task: 'sentiment' });
      expect((await ds.get(1)).images).toEqual(['/abs/2.jpg']);
      expect((await ds.get(1)).system).toBe('You are an analyst.');
      const tasks: string[] = [];
      for await (const it of ds) tasks.push(it.task!);
      expect(tasks).toEqual(['sentiment', 'emotion', 'emotion_cause', 'action_units', 'emotion_reason']);
    }
  });

  it('names file and item for bad records; skipBad and checkFiles', async () => {
    const dir = tmpdir();
    fs.writeFileSync(path.join(dir, 'ok.mp4'), '');
    const f = path.join(dir, 'bad.json');
    fs.writeFileSync(
      f,
      JSON.stringify([
        { query: 'q', response: 'positive', videos: ['ok.mp4'] },
        { query: 'q' },
        { query: 'q', response: 3 },
        'x',
        { query: 'q', response: 'r', videos: ['gone.mp4'] },
      ]),
    );
    await rejectsWith(et.data.SwiftDataset.fromFile(f), 'ERR_DATA', /bad\.json' item 1: response is missing/);
    const ds = await et.data.SwiftDataset.fromFile(f, { skipBad: true, checkFiles: true });
    expect(ds.length).toBe(1);
    expect(ds.skippedItems.map((s) => s.reason)).toEqual([
      expect.stringMatching(/item 1: response is missing/),
      expect.stringMatching(/item 2: response is 3, not a string/),
      expect.stringMatching(/item 3: is "x", not an object/),
      expect.stringMatching(/item 4: videos file '.*gone\.mp4' does not exist/),
    ]);
    expect((await et.data.SwiftDataset.fromFile(f, { skipBad: true })).length).toBe(2);
    fs.writeFileSync(path.join(dir, 'bad.jsonl'), '{"query":"q","response":"r"}\n{oops\n');
    await rejectsWith(et.data.SwiftDataset.fromFile(path.join(dir, 'bad.jsonl')), 'ERR_FORMAT', /bad\.jsonl' line 2 is not JSON/);
  });
});
