import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { rejectsWith, tmpdir } from '../helpers';

let dir: string;
const conv = (id: number, emotions: string[], pairs: [string, string][]) => ({
  conversation_ID: id,
  conversation: emotions.map((e, k) => ({
    utterance_ID: k + 1,
    text: `line ${k + 1}`,
    speaker: k % 2 ? 'Rachel' : 'Ross',
    emotion: e,
    video_name: `dia${id}utt${k + 1}.mp4`,
  })),
  'emotion-cause_pairs': pairs,
});
const write = (name: string, json: unknown): string => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(json));
  return f;
};

beforeAll(async () => {
  dir = tmpdir();
  const text = new Map<string, et.Tensor>();
  const video = new Map<string, et.Tensor>();
  for (const [c, n] of [
    [1, 3],
    [2, 2],
  ]) {
    for (let u = 1; u <= n; u++) {
      text.set(`${c}_${u}`, et.full([4], c * 10 + u));
      video.set(`${c}_${u}`, et.full([2], -(c * 10 + u)).to({ dtype: 'float16' }));
    }
  }
  await et.io.saveSafetensors(path.join(dir, 'text.safetensors'), text);
  await et.io.saveSafetensors(path.join(dir, 'video.safetensors'), video);
});

describe('EcfDataset', () => {
  it('gives one item per utterance with label indices and parsed emotion-cause pairs', async () => {
    const f = write('ecf.json', [
      conv(
        1,
        ['neutral', 'surprise', 'joy'],
        [
          ['2_surprise', '1'],
          ['2_surprise', '2'],
          ['3_joy', '2'],
        ],
      ),
      conv(2, ['Anger', 'sadness'], [['2_sadness', '1_because of the rain']]),
    ]);
    const ds = await et.data.EcfDataset.fromFile(f);
    expect(ds.length).toBe(5);
    expect(ds.featureSize).toBe(0);
    const u = await ds.get(1);
    expect(u).toMatchObject({
      conversationId: 1,
      utteranceId: 2,
      text: 'line 2',
      speaker: 'Rachel',
      emotion: 'surprise',
      label: 6,
      causes: [1, 2],
      videoName: 'dia1utt2.mp4',
    });
    expect(u.features).toBeUndefined();
    expect((await ds.get(3)).label).toBe(1); // 'Anger' → anger
    expect(et.data.ECF_EMOTIONS).toEqual(['neutral', 'anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise']);
    expect(ds.conversations[0].pairs[0]).toEqual({ emotion: { utterance: 2, emotion: 'surprise' }, cause: { utterance: 1 } });
    expect(ds.conversations[1].pairs[0]).toEqual({ emotion: { utterance: 2, emotion: 'sadness' }, cause: { utterance: 1, span: 'because of the rain' } });
  });

  it('concatenates per-utterance embeddings in the given modality order', async () => {
    const f = write('ecf2.json', [conv(1, ['neutral', 'joy', 'joy'], []), conv(2, ['fear', 'fear'], [])]);
    const ds = await et.data.EcfDataset.fromFile(f, {
      features: { files: { text: 'text.safetensors', video: 'video.safetensors' }, order: ['video', 'text'] },
    });
    expect(ds.featureSize).toBe(6);
    expect(Array.from((await ds.get(4)).features!)).toEqual([-22, -22, 22, 22, 22, 22]);
    const textOnly = await et.data.EcfDataset.fromFile(f, { features: { files: { text: 'text.safetensors' }, key: (c, u) => `${c}_${u}` } });
    expect(Array.from((await textOnly.get(0)).features!)).toEqual([11, 11, 11, 11]);
  });

  it('names file, conversation and utterance for bad data; skipBad skips', async () => {
    const f = write('bad.json', [
      conv(1, ['neutral', 'joy', 'joy'], []),
      conv(2, ['happy', 'fear'], []), // unknown emotion: one utterance
      conv(3, ['fear', 'fear'], [['5_fear', '1']]), // pair names a missing utterance: whole conversation
      { conversation_ID: 4 },
    ]);
    await rejectsWith(
      et.data.EcfDataset.fromFile(f),
      'ERR_DATA',
      /bad\.json' item 1: \(conversation_ID 2, utterance_ID 1\) emotion "happy" is not one of neutral/,
    );
    const ds = await et.data.EcfDataset.fromFile(f, { skipBad: true });
    expect(ds.length).toBe(4);
    expect(ds.skippedItems.map((s) => s.index)).toEqual([1, 2, 3]);
    expect(ds.skippedItems[1].reason).toMatch(/item 2: \(conversation_ID 3\) emotion-cause_pairs\[0\] refers to utterance 5/);
    expect(ds.skippedItems[2].reason).toMatch(/item 3: \(conversation_ID 4\) has no conversation list/);
    expect(ds.conversations.map((c) => c.id)).toEqual([1, 2]);
    // an utterance with no embedding
    const g = write('feat.json', [conv(1, ['neutral', 'joy', 'joy'], []), conv(9, ['joy'], [])]);
    await rejectsWith(
      et.data.EcfDataset.fromFile(g, { features: { files: { text: 'text.safetensors' } } }),
      'ERR_DATA',
      /feat\.json' item 1: \(conversation_ID 9, utterance_ID 1\) the text embeddings '.*text\.safetensors' have no tensor '9_1'/,
    );
    expect((await et.data.EcfDataset.fromFile(g, { skipBad: true, features: { files: { text: 'text.safetensors' } } })).length).toBe(3);
    await rejectsWith(et.data.EcfDataset.fromFile(g, { features: { files: { text: 'absent.safetensors' } } }), 'ERR_IO', /absent\.safetensors/);
    await rejectsWith(
      et.data.EcfDataset.fromFile(g, { features: { files: { text: 'text.safetensors' }, order: ['audio'] } }),
      'ERR_INVALID_ARG',
      /for features\.order/,
    );
  });
});
