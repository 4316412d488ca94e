import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { rejectsWith, tmpdir } from '../helpers';

let dir: string;
const tone = (n: number, v: number): Float32Array => new Float32Array(n).fill(v);

beforeAll(() => {
  dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'wav'));
  fs.writeFileSync(path.join(dir, 'wav', 'a.wav'), et.audio.encodeWav(tone(8000, 0.25), 16000));
  fs.writeFileSync(path.join(dir, 'wav', 'b.wav'), et.audio.encodeWav(tone(4000, -0.5), 16000));
  fs.writeFileSync(path.join(dir, 'wav', 'c8k.wav'), et.audio.encodeWav(tone(4000, 0.125), 8000)); // 0.5 s at 8 kHz
});

const write = (name: string, json: unknown): string => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, JSON.stringify(json));
  return f;
};

const trajectory = {
  dialogue_id: 'dlg_1',
  task: 'task1_emotional_trajectory',
  input_text: 'A: hi\nB: oh no\nA: wow',
  target_text: 'The mood falls, then lifts.',
  emotion_sequence: ['happy', 'sad', 'surprise'],
  audio_files: ['wav/a.wav', 'wav/b.wav', 'wav/c8k.wav'],
};

describe('SalmonnDataset', () => {
  it('follows each trajectory turn with 0.1 s silence and appends the emotion sequence to the target', async () => {
    const ds = await et.data.SalmonnDataset.fromFile(write('traj.json', [trajectory]));
    const it = await ds.get(0);
    // the fork's dataset.py: concatenate([audio_concat, audio, zeros(1600)]) for every turn, the last one too
    expect(it.audio.length).toBe(8000 + 1600 + 4000 + 1600 + 8000 + 1600);
    expect(it.audio[100]).toBeCloseTo(0.25, 4);
    expect(it.audio[8000 + 800]).toBe(0); // silence
    expect(it.audio[8000 + 1600 + 100]).toBeCloseTo(-0.5, 4);
    expect(it.audio[8000 + 1600 + 4000 + 1600 + 4000]).toBeCloseTo(0.125, 4);
    expect(Array.from(it.audio.subarray(8000 + 1600 + 4000 + 1600 + 8000)).every((v) => v === 0)).toBe(true);
    expect(it.target).toBe('The mood falls, then lifts.\n情绪序列: happy -> sad -> surprise');
    expect(it.emotionSequence).toEqual(['happy', 'sad', 'surprise']);
    expect(it.instruction).toBe(trajectory.input_text); // fed by default (the original never did)
    expect(it.prompt).toBe(`USER: <Speech><SpeechHere></Speech> ${trajectory.input_text}\nASSISTANT:`);
    expect(it.id).toBe('dlg_1');
    expect(it.task).toBe('task1_emotional_trajectory');
  });

  it('supports the original behaviour, prompts per task, silence and length limits', async () => {
    const f = write('traj2.json', [trajectory]);
    const ds = await et.data.SalmonnDataset.fromFile(f, {
      includeInputText: false,
      silence: 0.5,
      maxSeconds: 2,
      prompts: { task1_emotional_trajectory: ['<SpeechHere>'] },
    });
    const it = await ds.get(0);
    expect(it.instruction).toBe('');
    expect(it.prompt).toBe('USER: <Speech><SpeechHere></Speech>\nASSISTANT:');
    expect(it.audio.length).toBe(32000); // cut at 2 s
    expect(it.audio[8000 + 7999]).toBe(0); // 0.5 s silence (dataset_v1.py's gap)
    expect(it.audio[8000 + 8000 + 100]).toBeCloseTo(-0.5, 4);
    const padded = await (await et.data.SalmonnDataset.fromFile(write('short.json', [{ path: 'wav/b.wav', text: 'x' }]), { minSeconds: 1 })).get(0);
    expect(padded.audio.length).toBe(16000);
  });

  it('lowercases the suffix emotions, adds the suffix to task1 only, fills the challenge prompts with input_text', async () => {
    const items = [
      { ...trajectory, emotion_sequence: [' Happy', 'SAD ', 'Surprise'] },
      { ...trajectory, dialogue_id: 'dlg_2', task: 'task2_emotional_reasoning', target_text: 'Because of the news.' },
      { ...trajectory, dialogue_id: 'dlg_3', target_text: '', emotion_sequence: undefined },
    ];
    const f = write('traj3.json', items);
    const P = et.data.SALMONN_CHALLENGE_PROMPTS;
    expect(Object.keys(P)).toEqual(['task1_emotional_trajectory', 'task2_emotional_reasoning', 'task3_empathy']);
    const ds = await et.data.SalmonnDataset.fromFile(f, { prompts: P as Record<string, string> });
    const [a, b, c] = [await ds.get(0), await ds.get(1), await ds.get(2)];
    expect(a.target).toBe('The mood falls, then lifts.\n情绪序列: happy -> sad -> surprise');
    expect(a.emotionSequence).toEqual(['happy', 'sad', 'surprise']);
    // train_prompt.json wrapped by prompt_template 'USER: {}\nASSISTANT:', its {} holding input_text
    expect(a.prompt).toBe(
      `USER: <Speech><SpeechHere></Speech> 任务类型: task1_emotional_trajectory\nUSER: ${trajectory.input_text}\nASSISTANT: 请根据以上对话，描述用户情绪的变化轨迹：\nASSISTANT:`,
    );
    expect(b.target).toBe('Because of the news.'); // no suffix outside task1
    expect(b.prompt).toContain(`任务类型: task2_emotional_reasoning\nUSER: ${trajectory.input_text}\nASSISTANT: 请根据以上对话，分析用户情绪背后的原因：`);
    expect(c.target).toBe(trajectory.input_text); // empty target_text: the input text is supervised, no emotions, no suffix
    expect(c.emotionSequence).toBeUndefined();
    const orig = await et.data.SalmonnDataset.fromFile(f, { prompts: P as Record<string, string>, includeInputText: false, emotionSuffix: false });
    const o = await orig.get(0);
    expect(o.target).toBe('The mood falls, then lifts.');
    expect(o.prompt).toContain('USER: {}\nASSISTANT: 请根据'); // the original left {} literal
  });

  it("reads SALMONN's { annotation: [...] } files with path, expand_wav, Q and text", async () => {
    const f = write('ann.json', {
      annotation: [
        { path: 'wav/a.wav', text: 'hello world', task: 'asr' },
        { path: path.join(dir, 'wav', 'b.wav'), expand_wav: ['wav/a.wav'], text: 'yes', task: 'QA', Q: 'Is it loud?' },
      ],
    });
    const ds = await et.data.SalmonnDataset.fromFile(f, { prompts: { asr: '<Speech><SpeechHere></Speech> Recognize the speech.' } });
    const a = await ds.get(0);
    expect(a.instruction).toBe('Recognize the speech.');
    expect(a.prompt).toBe('USER: <Speech><SpeechHere></Speech> Recognize the speech.\nASSISTANT:');
    expect(a.target).toBe('hello world');
    const b = await ds.get(1);
    expect(b.instruction).toBe('Is it loud?');
    expect(b.audio.length).toBe(4000 + 1600 + 8000);
  });

  it('names the item and the path of a missing audio file; skipBad skips it', async () => {
    const f = write('missing.json', [
      trajectory,
      { ...trajectory, dialogue_id: 'x', audio_files: ['wav/a.wav', 'wav/nope.wav', 'wav/b.wav'] },
      { path: 'wav/a.wav' },
    ]);
    await rejectsWith(et.data.SalmonnDataset.fromFile(f), 'ERR_DATA', /missing\.json' item 1: audio file '.*nope\.wav' does not exist/);
    const ds = await et.data.SalmonnDataset.fromFile(f, { skipBad: true });
    expect(ds.length).toBe(1);
    expect(ds.skipped).toBe(2);
    expect(ds.skippedItems[1].reason).toMatch(/item 2: target \(target, answer, text or output\) is missing/);
    // a file that disappears after loading (or fails to decode) fails on get, still named
    const lazy = await et.data.SalmonnDataset.fromFile(f, { skipBad: true, checkFiles: false });
    expect(lazy.length).toBe(2);
    await rejectsWith(lazy.get(1), 'ERR_DATA', /item 1: audio file '.*nope\.wav' does not exist/);
    fs.writeFileSync(path.join(dir, 'wav', 'junk.wav'), 'not a wav');
    const junk = await et.data.SalmonnDataset.fromFile(write('junk.json', [{ path: 'wav/junk.wav', text: 'x' }]));
    await rejectsWith(junk.get(0), 'ERR_DATA', /junk\.json' item 0: cannot read audio '.*junk\.wav'.*RIFF/);
  });

  it('rejects malformed files and options', async () => {
    await rejectsWith(et.data.SalmonnDataset.fromFile(write('obj.json', { foo: 1 })), 'ERR_FORMAT', /obj\.json' holds an object, not a JSON list/);
    fs.writeFileSync(path.join(dir, 'broken.json'), '[{');
    await rejectsWith(et.data.SalmonnDataset.fromFile(path.join(dir, 'broken.json')), 'ERR_FORMAT', /broken\.json' is not JSON/);
    await rejectsWith(et.data.SalmonnDataset.fromFile(path.join(dir, 'absent.json')), 'ERR_IO', /absent\.json/);
    await rejectsWith(et.data.SalmonnDataset.fromFile(write('t.json', []), { silence: -1 }), 'ERR_INVALID_ARG', /for silence but received -1/);
    await rejectsWith(
      et.data.SalmonnDataset.fromFile(write('t.json', [{ ...trajectory, emotion_sequence: ['happy'] }])),
      'ERR_DATA',
      /emotion_sequence has 1 emotions but audio_files has 3 turns/,
    );
    await rejectsWith(
      et.data.SalmonnDataset.fromFile(write('t.json', [{ ...trajectory, target_text: '', input_text: undefined }])),
      'ERR_DATA',
      /target_text and input_text are both missing or empty/,
    );
    await rejectsWith(
      et.data.SalmonnDataset.fromFile(write('t.json', []), { emotionSuffix: 1 as never }),
      'ERR_INVALID_ARG',
      /Expected a boolean for emotionSuffix but received 1/,
    );
  });
});
