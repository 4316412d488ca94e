// ConcatFusionClassifier with an audio encoder fine-tuned end to end (LoRA on q_proj / v_proj by
// default): only the adapters and the classifier train; at initialization (lora_B = 0) the model
// equals the seed classifier on the frozen encoder's states mean-pooled over each clip's frames.
import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { maxAbsDiff, rejectsWith } from '../helpers';

// Layer-norm feature extractor (wavlm-large's variant): a clip's frames do not depend on the padding.
const tinyWavLM = () =>
  et.nn.WavLMModel.create({
    conv_dim: [8, 8],
    conv_kernel: [10, 3],
    conv_stride: [5, 2],
    feat_extract_norm: 'layer',
    do_stable_layer_norm: true,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 32,
    num_conv_pos_embeddings: 8,
    num_conv_pos_embedding_groups: 2,
    num_buckets: 16,
    max_bucket_distance: 40,
    mask_time_prob: 0,
  });
const tinyRoberta = () =>
  et.nn.RobertaModel.create(
    {
      vocab_size: 40,
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 32,
      max_position_embeddings: 24,
    },
    { addPoolingLayer: false },
  );

const LENGTHS = [400, 250, 330, 180];
const clip = (i: number) => Float32Array.from({ length: LENGTHS[i] }, (_, t) => 0.5 * Math.sin((0.05 + 0.03 * i) * t) + 0.1 * Math.cos(0.7 * t * (i + 1)));

function data() {
  const seqs = [
    [0, 5, 9, 2],
    [0, 7, 8, 11, 12, 2],
    [0, 30, 2],
    [0, 21, 22, 23, 2],
  ];
  const items = LENGTHS.map((_, i) => ({
    conversationId: 1,
    utteranceId: i + 1,
    text: '',
    speaker: 'A',
    emotion: null,
    label: [1, 4, 0, 5][i],
    causes: [],
    features: Float32Array.from({ length: 4 }, (_, k) => Math.sin(3 * i + k)),
  }));
  const idx = (it: unknown) => (it as { utteranceId: number }).utteranceId - 1;
  return { items, tokenIds: (it: unknown) => seqs[idx(it)], waveform: (it: unknown) => clip(idx(it)) };
}

describe('ConcatFusionClassifier with a LoRA audio encoder', () => {
  it('trains only the adapters and the classifier; starts equal to the frozen-encoder seed classifier', async () => {
    et.manualSeed(0);
    const encoder = tinyWavLM().train();
    const m = et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { audio: 16, video: 4 },
      audioEncoder: { model: encoder, lora: { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] } },
    });
    expect([...m.audioLoraLayers].sort()).toEqual([
      'encoder.layers.0.attention.q_proj',
      'encoder.layers.0.attention.v_proj',
      'encoder.layers.1.attention.q_proj',
      'encoder.layers.1.attention.v_proj',
    ]);
    expect(m.loraLayers).toEqual([]);
    const trainable = m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n);
    expect(trainable.sort()).toEqual(
      [
        'classifier.weight',
        ...m.audioLoraLayers.flatMap((l) => [`audio_encoder.${l}.lora_A.default.weight`, `audio_encoder.${l}.lora_B.default.weight`]),
      ].sort(),
    );
    const { items, waveform } = data();
    const b = et.systems.semeval.ConcatFusionClassifier.collate(items as never, { waveform });
    expect(b.inputValues!.shape).toEqual([4, 400]);
    expect(b.audioAttentionMask!.sum(1).dataSync()).toEqual(BigInt64Array.from(LENGTHS.map(BigInt)));
    expect(b.features!.shape).toEqual([4, 4]);
    expect(b.inputIds).toBeUndefined();

    // Reference: each clip encoded alone (no padding, no mask), its frames averaged.
    m.eval();
    const pooled = et.cat(
      await Promise.all(LENGTHS.map(async (_, i) => (await encoder.forward({ inputValues: et.tensor(clip(i)).unsqueeze(0) })).lastHiddenState.mean(1))),
      0,
    );
    const seed = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16, video: 4 } });
    await seed.loadStateDict({ 'classifier.weight': m.classifier.parameters()[0] });
    const ref = await seed.forward({ embeddings: { audio: pooled, video: b.features! } });
    const got = await m.forward(b);
    expect(maxAbsDiff(got.logits, ref.logits)).toBeLessThan(1e-5);
    expect(
      maxAbsDiff(
        (await m.forward({ inputValues: b.inputValues, audioAttentionMask: b.audioAttentionMask, embeddings: { video: b.features! } })).logits,
        ref.logits,
      ),
    ).toBeLessThan(1e-5);
    // Without the mask the padding is pooled too: different logits.
    expect(maxAbsDiff((await m.forward({ inputValues: b.inputValues, features: b.features })).logits, ref.logits)).toBeGreaterThan(1e-4);

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

  it('text and audio encoders together, each with its adapters; the rest from features', async () => {
    et.manualSeed(1);
    const text = tinyRoberta(),
      audio = tinyWavLM();
    const m = et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 16, audio: 16, video: 4 },
      textEncoder: { model: text, lora: { r: 2, alpha: 4, targetModules: ['query', 'value'] } },
      audioEncoder: { model: audio, lora: { r: 2, alpha: 4, targetModules: ['q_proj'] } },
    });
    expect(m.config.textEncoder).toEqual({ modality: 'text', lora: { r: 2, alpha: 4, dropout: 0, targetModules: ['query', 'value'] } });
    expect(m.config.audioEncoder).toEqual({ modality: 'audio', lora: { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj'] } });
    const trainable = m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n);
    expect(trainable.sort()).toEqual(
      [
        'classifier.weight',
        ...m.loraLayers.flatMap((l) => [`text_encoder.${l}.lora_A.default.weight`, `text_encoder.${l}.lora_B.default.weight`]),
        ...m.audioLoraLayers.flatMap((l) => [`audio_encoder.${l}.lora_A.default.weight`, `audio_encoder.${l}.lora_B.default.weight`]),
      ].sort(),
    );
    expect(m.audioLoraLayers).toEqual(['encoder.layers.0.attention.q_proj', 'encoder.layers.1.attention.q_proj']);
    const { items, tokenIds, waveform } = data();
    const b = et.systems.semeval.ConcatFusionClassifier.collate(items as never, { tokenIds, waveform });
    m.eval();
    // Reference: both frozen encoders' pooled states into the seed classifier.
    const { lastHiddenState } = await text.forward({ inputIds: b.inputIds!, attentionMask: b.attentionMask! });
    const w = b.attentionMask!.to({ dtype: 'float32' }).unsqueeze(2);
    const textPooled = lastHiddenState.mul(w).sum(1).div(w.sum(1));
    const audioPooled = et.cat(
      await Promise.all(LENGTHS.map(async (_, i) => (await audio.forward(et.tensor(clip(i)).unsqueeze(0))).lastHiddenState.mean(1))),
      0,
    );
    const seed = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16, audio: 16, video: 4 } });
    await seed.loadStateDict({ 'classifier.weight': m.classifier.parameters()[0] });
    const ref = await seed.forward({ embeddings: { text: textPooled, audio: audioPooled, video: b.features! } });
    expect(maxAbsDiff((await m.forward(b)).logits, ref.logits)).toBeLessThan(1e-5);
    // One step moves both encoders' adapters.
    m.train();
    const { loss } = await m.forward(b);
    await loss!.backward();
    for (const [n, p] of m.namedParameters()) expect(p.grad !== null && p.grad !== undefined, n).toBe(trainable.includes(n));
  });

  it('lora: null fine-tunes the whole encoder; wav2vec 2.0 and Whisper encoders; audio as the only modality', async () => {
    et.manualSeed(2);
    const { items, waveform } = data();
    const noFeatures = items.map((it) => ({ ...it, features: undefined }));
    const b = et.systems.semeval.ConcatFusionClassifier.collate(noFeatures as never, { waveform });
    expect(b.features).toBeUndefined();
    const full = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16 }, audioEncoder: { model: tinyWavLM(), lora: null } });
    expect(full.audioLoraLayers).toEqual([]);
    expect(full.namedParameters().every(([, p]) => p.requiresGrad)).toBe(true);
    expect((await full.forward(b)).logits.shape).toEqual([4, 7]);

    const w2v = et.nn.Wav2Vec2Model.create({
      conv_dim: [8, 8],
      conv_kernel: [10, 3],
      conv_stride: [5, 2],
      feat_extract_norm: 'layer',
      do_stable_layer_norm: true,
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 32,
      num_conv_pos_embeddings: 8,
      num_conv_pos_embedding_groups: 2,
      mask_time_prob: 0,
    });
    const mw = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16 }, audioEncoder: { model: w2v } }).eval();
    expect([...mw.audioLoraLayers].sort()).toEqual(['encoder.layers.0.attention.q_proj', 'encoder.layers.0.attention.v_proj']);
    expect(mw.config.audioEncoder!.lora).toEqual({ r: 8, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] });
    const w2vPooled = et.cat(await Promise.all(LENGTHS.map(async (_, i) => (await w2v.forward(et.tensor(clip(i)).unsqueeze(0))).lastHiddenState.mean(1))), 0);
    expect(maxAbsDiff((await mw.forward(b)).logits, await mw.classifier.forward(w2vPooled))).toBeLessThan(1e-5);

    // Whisper: log-mel of the padded batch (hop 160), encoder frame j kept when 320·j < the clip's length.
    const whisper = et.nn.WhisperEncoder.create({ d_model: 16, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 32, max_source_positions: 10 });
    const mh = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16 }, audioEncoder: { model: whisper } }).eval();
    expect([...mh.audioLoraLayers].sort()).toEqual(['layers.0.self_attn.q_proj', 'layers.0.self_attn.v_proj']);
    const long = (it: unknown) => {
      const w = waveform(it);
      return Float32Array.from({ length: 8 * w.length }, (_, t) => w[t % w.length] * (1 + t / 4000));
    };
    const bl = et.systems.semeval.ConcatFusionClassifier.collate(noFeatures as never, { waveform: long });
    const feats = await et.audio.whisperLogMel(bl.inputValues!, { padTo30s: false });
    const { lastHiddenState: h } = await whisper.forward({ inputFeatures: feats });
    expect(h.shape).toEqual([4, 10, 16]);
    const frames = LENGTHS.map((n) => Math.ceil((8 * n) / 320));
    expect(frames).toEqual([10, 7, 9, 5]);
    const hPooled = et.cat(
      frames.map((f, i) => h.select(0, i).slice(0, 0, f).mean(0, true)),
      0,
    );
    expect(maxAbsDiff((await mh.forward(bl)).logits, await mh.classifier.forward(hPooled))).toBeLessThan(1e-5);
    const { loss } = await mh.train().forward(bl);
    await loss!.backward();
    expect(
      whisper
        .namedParameters()
        .filter(([, p]) => p.grad)
        .map(([n]) => n)
        .sort(),
    ).toEqual(mh.audioLoraLayers.flatMap((l) => [`${l}.lora_A.default.weight`, `${l}.lora_B.default.weight`]).sort());
  });

  it('rejects bad encoder configs and inputs clearly', async () => {
    const enc = tinyWavLM();
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 8 }, audioEncoder: { model: enc } })).toThrow(
      /hidden_size \(16\).*modalities\.audio/,
    );
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16 }, audioEncoder: { model: tinyRoberta() as never } })).toThrow(
      /WavLMModel, Wav2Vec2Model or WhisperEncoder/,
    );
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16 }, audioEncoder: { model: enc, modality: 'video' } })).toThrow(
      /audioEncoder\.modality/,
    );
    expect(() => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16 }, context: {}, audioEncoder: { model: enc } })).toThrow(
      /no audioEncoder with context/,
    );
    expect(() =>
      et.systems.semeval.ConcatFusionClassifier.create({
        modalities: { audio: 16 },
        audioEncoder: { model: enc, lora: { r: 2, alpha: 4, targetModules: ['query'] } },
      }),
    ).toThrow(/no Linear layer/);
    expect(() =>
      et.systems.semeval.ConcatFusionClassifier.create({
        modalities: { text: 16 },
        textEncoder: { model: tinyRoberta() },
        audioEncoder: { model: tinyWavLM(), modality: 'text' },
      }),
    ).toThrow(/modality other than textEncoder's/);
    const m = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { audio: 16, video: 4 }, audioEncoder: { model: tinyWavLM() } });
    const { items, waveform } = data();
    const b = et.systems.semeval.ConcatFusionClassifier.collate(items as never, { waveform });
    await rejectsWith(m.forward({ features: b.features }), 'ERR_INVALID_ARG', /inputValues/);
    await rejectsWith(m.forward({ inputValues: b.inputValues, audioAttentionMask: b.audioAttentionMask }), 'ERR_INVALID_ARG', /other modalities \(video\)/);
    await rejectsWith(
      m.forward({ inputValues: b.inputValues, audioAttentionMask: b.audioAttentionMask!.slice(1, 0, 100), features: b.features }),
      'ERR_INVALID_ARG',
      /audioAttentionMask/,
    );
    await rejectsWith(m.forward({ inputValues: b.inputValues!.long(), features: b.features }), 'ERR_INVALID_ARG', /float tensor \(batch, samples\)/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.collate(items as never, { waveform: () => new Float32Array(0) })).toThrow(/non-empty Float32Array/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.collate(items as never, { waveform: () => Float32Array.of(0, NaN) })).toThrow(/finite samples/);
    expect(() => et.systems.semeval.ConcatFusionClassifier.collate(items as never, { waveform: 'x' as never })).toThrow(/waveform/);
    const both = et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 16, audio: 16 },
      textEncoder: { model: tinyRoberta() },
      audioEncoder: { model: tinyWavLM() },
    });
    const tb = et.systems.semeval.ConcatFusionClassifier.collate(items.map((it) => ({ ...it, features: undefined })) as never, {
      tokenIds: () => [0, 3, 2],
      waveform,
    });
    await rejectsWith(
      both.forward({ ...tb, inputValues: tb.inputValues!.slice(0, 0, 2), audioAttentionMask: tb.audioAttentionMask!.slice(0, 0, 2) }),
      'ERR_INVALID_ARG',
      /4 waveforms/,
    );
  });
});
