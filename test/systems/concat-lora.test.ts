// ConcatFusionClassifier with a text encoder fine-tuned end to end (LoRA on RoBERTa's query /
// value by default): only the adapters and the classifier train; at initialization (lora_B = 0)
// the model equals the seed classifier on the frozen encoder's mean-pooled embeddings.
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { maxAbsDiff, rejectsWith } from '../helpers';

const tinyRoberta = () =>
  et.nn.RobertaModel.create(
    {
      vocab_size: 40,
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 32,
      max_position_embeddings: 24,
    },
    { addPoolingLayer: false },
  );

function batch() {
  // 4 utterances of 3–6 tokens (padded with 1), audio embeddings of size 4.
  const seqs = [
    [0, 5, 9, 2],
    [0, 7, 8, 11, 12, 2],
    [0, 30, 2],
    [0, 21, 22, 23, 2],
  ];
  const items = seqs.map((q, i) => ({
    conversationId: 1,
    utteranceId: i + 1,
    text: '',
    speaker: 'A',
    emotion: null,
    label: [1, 4, 0, 5][i],
    causes: [],
    features: Float32Array.from({ length: 4 }, (_, k) => Math.sin(3 * i + k)),
  }));
  const ids = new Map(items.map((it, i) => [it, seqs[i]]));
  return { items, batch: et.systems.semeval.ConcatFusionClassifier.collate(items as never, { tokenIds: (it) => ids.get(it as never)! }) };
}

describe('ConcatFusionClassifier with a LoRA text encoder', () => {
  it('trains only the adapters and the classifier; starts equal to the frozen-encoder seed classifier', async () => {
    et.manualSeed(0);
    const encoder = tinyRoberta().train();
    const m = et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 16, audio: 4 },
      textEncoder: { model: encoder, lora: { r: 4, alpha: 8, targetModules: ['query', 'value'] } },
    });
    expect(m.loraLayers).toEqual([
      'encoder.layer.0.attention.self.query',
      'encoder.layer.0.attention.self.value',
      'encoder.layer.1.attention.self.query',
      'encoder.layer.1.attention.self.value',
    ]);
    const trainable = m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n);
    expect(trainable.sort()).toEqual(
      ['classifier.weight', ...m.loraLayers.flatMap((l) => [`text_encoder.${l}.lora_A.default.weight`, `text_encoder.${l}.lora_B.default.weight`])].sort(),
    );
    const { batch: b } = batch();
    expect(b.inputIds!.shape).toEqual([4, 6]);
    expect(b.features!.shape).toEqual([4, 4]);

    // At initialization lora_B = 0: the same logits as the seed classifier on mean-pooled states.
    m.eval();
    const { lastHiddenState } = await encoder.forward({ inputIds: b.inputIds!, attentionMask: b.attentionMask! });
    const w = b.attentionMask!.to({ dtype: 'float32' }).unsqueeze(2);
    const pooled = lastHiddenState.mul(w).sum(1).div(w.sum(1));
    const seed = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16, audio: 4 } });
    await seed.loadStateDict({ 'classifier.weight': m.classifier.parameters()[0] });
    const ref = await seed.forward({ embeddings: { text: pooled, audio: b.features! } });
    const got = await m.forward(b);
    expect(maxAbsDiff(got.logits, ref.logits)).toBeLessThan(1e-5);
    // Per-modality embeddings give the same as features.
    expect(
      maxAbsDiff((await m.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, embeddings: { audio: b.features! } })).logits, ref.logits),
    ).toBeLessThan(1e-6);

    // Training steps: adapters and classifier move, every base weight stays as it was, loss falls.
    m.train();
    const before = new Map(m.namedParameters().map(([n, p]) => [n, p.clone()]));
    const opt = new et.optim.AdamW(
      m.parameters().filter((p) => p.requiresGrad),
      { lr: 1e-2, weightDecay: 0 },
    );
    const losses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const { loss } = await m.forward(b);
      losses.push(loss!.item());
      await loss!.backward();
      if (i === 0) {
        for (const [n, p] of m.namedParameters()) expect(p.grad !== null && p.grad !== undefined, n).toBe(trainable.includes(n));
      }
      await opt.step();
      opt.zeroGrad();
    }
    expect(losses[29]).toBeLessThan(0.5 * losses[0]);
    for (const [n, p] of m.namedParameters()) {
      const moved = maxAbsDiff(p, before.get(n)!) > 0;
      expect(moved, n).toBe(trainable.includes(n));
    }
  });

  it('lora: null fine-tunes the whole encoder; the encoder may be the only modality', async () => {
    et.manualSeed(1);
    const m = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16 }, textEncoder: { model: tinyRoberta(), lora: null } });
    expect(m.loraLayers).toEqual([]);
    expect(m.namedParameters().every(([, p]) => p.requiresGrad)).toBe(true);
    const { items } = batch();
    const b = et.systems.semeval.ConcatFusionClassifier.collate(items.map((it) => ({ ...it, features: undefined })) as never, { tokenIds: () => [0, 3, 2] });
    expect(b.features).toBeUndefined();
    const { logits } = await m.forward(b);
    expect(logits.shape).toEqual([4, 7]);
  });

  it('rejects bad encoder configs and inputs clearly', async () => {
    const enc = tinyRoberta();
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 8 }, textEncoder: { model: enc } })).toThrow(
      /hidden_size \(16\).*modalities\.text/,
    );
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16 }, textEncoder: { model: {} as never } })).toThrow(/RobertaModel/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16 }, textEncoder: { model: enc, modality: 'audio' } })).toThrow(
      /textEncoder\.modality/,
    );
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16 }, context: {}, textEncoder: { model: enc } })).toThrow(/context/);
    expect(() =>
      et.systems.semeval.ConcatFusionClassifier.create({
        modalities: { text: 16 },
        textEncoder: { model: enc, lora: { r: 2, alpha: 4, targetModules: ['q_proj'] } },
      }),
    ).toThrow(/no Linear layer/);
    const m = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16, audio: 4 }, textEncoder: { model: tinyRoberta() } });
    const { batch: b } = batch();
    await rejectsWith(m.forward({ features: b.features }), 'ERR_INVALID_ARG', /inputIds/);
    await rejectsWith(m.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask }), 'ERR_INVALID_ARG', /other modalities \(audio\)/);
    await rejectsWith(m.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask!.slice(1, 0, 3) }), 'ERR_INVALID_ARG', /attentionMask/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.collate(batch().items as never, { tokenIds: () => [] })).toThrow(/token ids/);
  });
});
