// The SemEval-2024 seed classifier against torch.nn.Linear(bias=False) + cross-entropy
// (scripts/fixtures/concat.py), from embeddings given per modality, from ECF embedding files, and
// from an encoder through the on-disk embedding cache.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

let io: Map<string, et.Tensor>;
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(FIXTURES, 'concat', 'io.safetensors'))).tensors;
});

async function seeded(): Promise<et.systems.semeval.ConcatFusionClassifier> {
  const m = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 12, audio: 8 } });
  await m.loadStateDict({ 'classifier.weight': io.get('weight')! });
  return m;
}

describe('ConcatFusionClassifier = torch Linear(Σd, 7, bias=False)', () => {
  it('matches logits, loss and the weight gradient', async () => {
    const m = await seeded();
    expect(m.namedParameters().map(([n]) => n)).toEqual(['classifier.weight']);
    const { loss, logits } = await m.forward({ embeddings: { text: io.get('text')!, audio: io.get('audio')! }, labels: io.get('labels') });
    expect(maxAbsDiff(logits, io.get('logits')!)).toBeLessThan(1e-5);
    expect(Math.abs(loss!.item() - io.get('loss')!.item())).toBeLessThan(1e-5);
    await loss!.backward();
    expect(maxAbsDiff(m.classifier.parameters()[0].grad!, io.get('grad')!)).toBeLessThan(1e-5);
  });

  it('reads features from ECF embedding files through the dataset and collate', async () => {
    const dir = tmpdir();
    const text = io.get('text')!.toArray() as number[][],
      audio = io.get('audio')!.toArray() as number[][];
    const labels = io.get('labels')!.toArray() as number[];
    const emo = ['neutral', 'anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise'];
    const conv = {
      conversation_ID: 1,
      conversation: labels.map((l, i) => ({ utterance_ID: i + 1, text: `u${i}`, speaker: 'A', emotion: emo[l] })),
      'emotion-cause_pairs': [],
    };
    fs.writeFileSync(path.join(dir, 'ecf.json'), JSON.stringify([conv]));
    const named = (rows: number[][]) => new Map(rows.map((r, i) => [`1_${i + 1}`, et.tensor(r)] as [string, et.Tensor]));
    await et.io.saveSafetensors(path.join(dir, 'text.safetensors'), named(text));
    await et.io.saveSafetensors(path.join(dir, 'audio.safetensors'), named(audio));
    const ds = await et.data.EcfDataset.fromFile(path.join(dir, 'ecf.json'), { features: { files: { text: 'text.safetensors', audio: 'audio.safetensors' } } });
    const items = await Promise.all(labels.map((_, i) => ds.get(i)));
    const batch = et.systems.semeval.ConcatFusionClassifier.collate(items);
    const { loss, logits } = await (await seeded()).forward(batch);
    expect(maxAbsDiff(logits, io.get('logits')!)).toBeLessThan(1e-5);
    expect(Math.abs(loss!.item() - io.get('loss')!.item())).toBeLessThan(1e-5);
  });

  it('caches encoder embeddings (mean over the mask) and does not re-encode', async () => {
    const file = path.join(tmpdir(), 'cache.safetensors');
    const states = et.tensor([
      [
        [1, 2],
        [3, 4],
        [100, 100],
      ],
      [
        [5, 6],
        [0, 0],
        [0, 0],
      ],
    ]);
    const mask = et.tensor(
      [
        [1, 1, 0],
        [1, 0, 0],
      ],
      { dtype: 'int64' },
    );
    let calls = 0;
    const encode = async (idx: number[]) => {
      calls++;
      return { lastHiddenState: states.index(et.tensor(idx, { dtype: 'int64' })), attentionMask: mask.index(et.tensor(idx, { dtype: 'int64' })) };
    };
    const a = await et.systems.semeval.embedUtterances(['1_1', '1_2'], encode, { cacheFile: file, batchSize: 1 });
    expect(calls).toBe(2);
    expect([...a.get('1_1')!]).toEqual([2, 3]);
    expect([...a.get('1_2')!]).toEqual([5, 6]);
    const b = await et.systems.semeval.embedUtterances(['1_1', '1_2'], encode, { cacheFile: file });
    expect(calls).toBe(2);
    expect([...b.get('1_2')!]).toEqual([5, 6]);
    await rejectsWith(et.systems.semeval.embedUtterances(['1_3'], encode, { cacheFile: file }), 'ERR_FORMAT', /no '1_3'/);
  });

  it('rejects bad configs and inputs clearly', async () => {
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: {} })).toThrow(/at least one modality/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 0 } })).toThrow(/modalities.text/);
    const m = await seeded();
    await rejectsWith(m.forward({ embeddings: { text: io.get('text')! } }), 'ERR_INVALID_ARG', /audio/);
    await rejectsWith(m.forward({ features: et.zeros([2, 19]) }), 'ERR_INVALID_ARG', /\(batch, 20\)/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.collate([{ label: 1 } as never])).toThrow(/features/);
  });

  it('dialogue context: conversations in, one row per utterance out; padding changes nothing, order does', async () => {
    et.manualSeed(0);
    const m = et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 12, audio: 8 },
      context: { hidden_size: 16, num_attention_heads: 2, dropout: 0 },
    }).eval();
    expect(m.namedParameters().map(([n]) => n)).toContain('context.0.attention.self.query.weight');
    const feats = io.get('text')!.toArray() as number[][],
      aud = io.get('audio')!.toArray() as number[][];
    const labels = io.get('labels')!.toArray() as number[];
    const item = (i: number, conv: number, utt: number, speaker: string) => ({
      conversationId: conv,
      utteranceId: utt,
      text: '',
      speaker,
      emotion: null,
      label: labels[i],
      causes: [],
      features: Float32Array.from([...feats[i], ...aud[i]]),
    });
    const items = [item(0, 1, 1, 'A'), item(1, 1, 2, 'B'), item(2, 1, 3, 'A'), item(3, 2, 1, 'C'), item(4, 2, 2, 'A')];
    const convs = et.systems.semeval.ConcatFusionClassifier.groupConversations([...items].reverse());
    expect(convs.map((c) => c.map((x) => x.utteranceId))).toEqual([
      [1, 2],
      [1, 2, 3],
    ]);
    const both = et.systems.semeval.ConcatFusionClassifier.collateConversations([convs[1], convs[0]]);
    expect(both.features!.shape).toEqual([2, 3, 20]);
    expect(both.speakerIds!.toArray()).toEqual([
      [0, 1, 0],
      [0, 1, 0],
    ]);
    expect(both.labels!.toArray()).toEqual([labels[0], labels[1], labels[2], labels[3], labels[4], -100]);
    const { logits, loss } = await m.forward(both);
    expect(logits.shape).toEqual([6, 7]);
    const ref = et.functional.crossEntropy(logits.slice(0, 0, 5), both.labels!.slice(0, 0, 5));
    expect(Math.abs(loss!.item() - ref.item())).toBeLessThan(1e-6);
    const alone = await m.forward(et.systems.semeval.ConcatFusionClassifier.collateConversations([convs[0]]));
    expect(maxAbsDiff(alone.logits, logits.slice(0, 3, 5))).toBeLessThan(1e-5);
    const swapped = await m.forward(et.systems.semeval.ConcatFusionClassifier.collateConversations([[convs[0][1], convs[0][0]]]));
    expect(maxAbsDiff(swapped.logits.slice(0, 0, 1), alone.logits.slice(0, 1, 2))).toBeGreaterThan(1e-4);
    await rejectsWith(
      m.forward({ features: et.zeros([1, 65, 20]), utteranceAttentionMask: et.ones([1, 65], { dtype: 'int64' }) }),
      'ERR_INVALID_ARG',
      /max_utterances/,
    );
  });

  it('writes the official Subtask 2 submission that et.metrics.ecacPairs scores', async () => {
    const dir = tmpdir();
    const gold = [
      {
        conversation_ID: 1,
        conversation: [
          { utterance_ID: 1, text: 'a', speaker: 'A', emotion: 'joy', video_name: 'dia1utt1.mp4' },
          { utterance_ID: 2, text: 'b', speaker: 'B', emotion: 'surprise' },
        ],
        'emotion-cause_pairs': [
          ['1_joy', '1'],
          ['2_surprise', '1'],
        ],
      },
      { conversation_ID: 2, conversation: [{ utterance_ID: 1, text: 'c', speaker: 'A', emotion: 'neutral' }], 'emotion-cause_pairs': [] },
    ];
    fs.writeFileSync(path.join(dir, 'gold.json'), JSON.stringify(gold));
    const ds = await et.data.EcfDataset.fromFile(path.join(dir, 'gold.json'));
    const items = await Promise.all([0, 1, 2].map((i) => ds.get(i)));
    const perfect = ds.conversations.flatMap((c) =>
      c.pairs.map((p) => ({
        conversationId: c.id,
        emotionUtterance: p.emotion.utterance,
        emotion: p.emotion.emotion as never,
        causeUtterance: p.cause.utterance,
      })),
    );
    const file = path.join(dir, 'Subtask_2_pred.json');
    et.systems.writeEcfSubmission(file, items, perfect);
    const written = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(written[0]).toEqual({
      conversation_ID: 1,
      conversation: [
        { utterance_ID: 1, text: 'a', speaker: 'A', video_name: 'dia1utt1.mp4' },
        { utterance_ID: 2, text: 'b', speaker: 'B' },
      ],
      'emotion-cause_pairs': [
        ['1_joy', '1'],
        ['2_surprise', '1'],
      ],
    });
    expect(et.metrics.ecacPairs(written, gold as never).weighted.f1).toBeCloseTo(1, 6);
    // the self-cause baseline from predicted emotions: 1_joy→1 is right, 2_surprise→2 is wrong
    const self = et.systems.semeval.selfCausePairs(items, [4, 6, 0]);
    expect(self.map((p) => [p.emotionUtterance, p.emotion, p.causeUtterance])).toEqual([
      [1, 'joy', 1],
      [2, 'surprise', 2],
    ]);
    const scores = et.metrics.ecacPairs(et.systems.ecfSubmission(items, self), gold as never);
    expect(scores.micro.precision).toBeCloseTo(0.5, 6);
    expect(() => et.systems.ecfSubmission(items, [{ conversationId: 9, emotionUtterance: 1, emotion: 'joy', causeUtterance: 1 }])).toThrow(/conversationId/);
    expect(() => et.systems.ecfSubmission(items, [{ conversationId: 1, emotionUtterance: 1, emotion: 'neutral' as never, causeUtterance: 1 }])).toThrow(
      /non-neutral/,
    );
  });
});

// DESIGN rule 11: the renamed names, each old spelling accepted for one release; both spellings refused.
describe('ConcatFusionClassifier deprecated spellings', () => {
  it('config num_labels → numLabels', async () => {
    const m = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 }, numLabels: 3 });
    expect(m.config.numLabels).toBe(3);
    expect(m.classifier.config.out_features).toBe(3);
    expect(et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 } }).config.numLabels).toBe(7);
    const old = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 }, num_labels: 5 });
    expect(old.config.numLabels).toBe(5);
    expect('num_labels' in old.config).toBe(false);
    expect((await old.forward({ features: et.zeros([2, 4]) })).logits.shape).toEqual([2, 5]);
    throwsWith(
      () => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 }, numLabels: 3, num_labels: 3 }),
      'ERR_INVALID_ARG',
      /numLabels or its deprecated spelling num_labels, not both/,
    );
    throwsWith(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 }, numLabels: 1 }), 'ERR_INVALID_ARG', /numLabels/);
  });

  it('input utteranceMask → utteranceAttentionMask; collateConversations keeps the old name readable', async () => {
    et.manualSeed(0);
    const m = et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 4 },
      context: { hidden_size: 8, num_attention_heads: 2, dropout: 0 },
    }).eval();
    const item = (conv: number, utt: number, label: number) => ({
      conversationId: conv,
      utteranceId: utt,
      text: '',
      speaker: 'A',
      emotion: null,
      label,
      causes: [],
      features: Float32Array.from([utt, -utt, conv, 1]),
    });
    const batch = et.systems.semeval.ConcatFusionClassifier.collateConversations([[item(1, 1, 0), item(1, 2, 3)], [item(2, 1, 4)]]);
    expect(batch.utteranceAttentionMask!.toArray()).toEqual([
      [1, 1],
      [1, 0],
    ]);
    // the old key: the same tensor, non-enumerable (not seen by keys or spreads, not taken as given twice)
    expect(batch.utteranceMask).toBe(batch.utteranceAttentionMask);
    expect(Object.keys(batch)).not.toContain('utteranceMask');
    const ref = (await m.forward(batch)).logits;
    expect(ref.shape).toEqual([4, 7]);
    const { utteranceAttentionMask, ...rest } = batch;
    const old = await m.forward({ ...rest, utteranceMask: utteranceAttentionMask });
    expect(maxAbsDiff(old.logits, ref)).toBe(0);
    expect(maxAbsDiff((await m.forward({ ...batch })).logits, ref)).toBe(0);
    await rejectsWith(
      m.forward({ ...batch, utteranceMask: utteranceAttentionMask }),
      'ERR_INVALID_ARG',
      /utteranceAttentionMask or its deprecated spelling utteranceMask, not both/,
    );
    await rejectsWith(m.forward({ features: batch.features, speakerIds: batch.speakerIds }), 'ERR_INVALID_ARG', /utteranceAttentionMask/);
  });

  it('embedUtterances encode result { states, mask } → { lastHiddenState, attentionMask }', async () => {
    const dir = tmpdir();
    const h = et.tensor([
      [
        [1, 2],
        [3, 4],
      ],
      [
        [5, 6],
        [7, 8],
      ],
    ]);
    const mask = et.tensor(
      [
        [1, 1],
        [1, 0],
      ],
      { dtype: 'int64' },
    );
    const a = await et.systems.semeval.embedUtterances(['a', 'b'], async () => ({ lastHiddenState: h, attentionMask: mask }), {
      cacheFile: path.join(dir, 'new.safetensors'),
    });
    const b = await et.systems.semeval.embedUtterances(['a', 'b'], async () => ({ states: h, mask }), { cacheFile: path.join(dir, 'old.safetensors') });
    expect([...a.get('a')!]).toEqual([2, 3]);
    expect([...a.get('b')!]).toEqual([5, 6]);
    expect([...b.get('a')!]).toEqual([...a.get('a')!]);
    expect([...b.get('b')!]).toEqual([...a.get('b')!]);
    await rejectsWith(
      et.systems.semeval.embedUtterances(['a', 'b'], async () => ({ lastHiddenState: h, attentionMask: mask, states: h }) as never, {
        cacheFile: path.join(dir, 'both.safetensors'),
      }),
      'ERR_INVALID_ARG',
      /lastHiddenState or its deprecated spelling states, not both/,
    );
    await rejectsWith(
      et.systems.semeval.embedUtterances(['a', 'b'], async () => ({ lastHiddenState: h, attentionMask: mask, mask }) as never, {
        cacheFile: path.join(dir, 'both2.safetensors'),
      }),
      'ERR_INVALID_ARG',
      /attentionMask or its deprecated spelling mask, not both/,
    );
    expect(fs.existsSync(path.join(dir, 'both.safetensors'))).toBe(false);
  });
});

// Issue 18 point 10: inputs the forward used to truncate or ignore are coded errors.
describe('ConcatFusionClassifier refuses what it would ignore or truncate', () => {
  const emb = () => ({ text: et.randn([3, 12]), audio: et.randn([3, 8]) });
  it('float labels (1.7 would train as class 1)', async () => {
    const m = await seeded();
    await rejectsWith(
      () => m.forward({ features: et.randn([3, 20]), labels: et.tensor([1.7, 0, 2]) }),
      'ERR_INVALID_ARG',
      /integer tensor of class ids .*for labels but received "a float32 tensor"/,
    );
    await rejectsWith(() => m.forward({ features: et.randn([3, 20]), labels: et.tensor([true, false, true]) }), 'ERR_INVALID_ARG', /labels/);
    expect((await m.forward({ features: et.randn([3, 20]), labels: et.tensor([1, 0, 2], { dtype: 'int32' }) })).loss).toBeDefined();
  });
  it('an embeddings modality the config does not have', async () => {
    const m = await seeded();
    await rejectsWith(
      () => m.forward({ embeddings: { ...emb(), video: et.randn([3, 4]) } }),
      'ERR_INVALID_ARG',
      /modality of the config.*\(text, audio\) for embeddings key but received "video"/,
    );
  });
  it('embeddings given together with features (one of them was silently ignored)', async () => {
    const m = await seeded();
    await rejectsWith(
      () => m.forward({ features: et.randn([3, 20]), embeddings: emb() }),
      'ERR_INVALID_ARG',
      /either features or embeddings .* but received both/,
    );
    const ctx = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 }, context: { hidden_size: 8, num_attention_heads: 2 } });
    await rejectsWith(() => ctx.forward({ embeddings: { text: et.randn([2, 4]) } }), 'ERR_INVALID_ARG', /embeddings/);
  });
});
