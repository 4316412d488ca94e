// SPECTRA against a reference assembled from HF WavLM / RoBERTa pieces following the original
// ATForSequenceClassification + WavLMForMultiTurn forward (scripts/fixtures/spectra.py):
// logits, loss and every parameter gradient, single-clip and history batches with padding.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'spectra');
const TOL = 1e-4;
let io: Map<string, et.Tensor>;

beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
});

function batch(name: string): et.systems.spectra.SpectraInputs {
  const g = (k: string) => io.get(`${name}.${k}`) ?? null;
  return {
    inputValues: g('input_values')!,
    audioAttentionMask: g('audio_attention_mask')!,
    inputIds: g('input_ids')!,
    attentionMask: g('attention_mask')!,
    tokenTypeIds: g('token_type_ids'),
    labels: g('labels'),
  };
}

/** Logits, loss and every gradient against the reference's (names renamed as a checkpoint's). */
async function checkCase(model: et.systems.spectra.Spectra, name: string, inputs = name): Promise<number> {
  const out = await model.forward(batch(inputs));
  expect(maxAbsDiff(out.logits, io.get(`${name}.logits`)!)).toBeLessThan(TOL);
  expect(Math.abs(out.loss!.item() - io.get(`${name}.loss`)!.item())).toBeLessThan(TOL);
  await out.loss!.backward();
  const prefix = `${name}.grad.`;
  const ref = et.nn.renameKeys(
    new Map([...io].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t] as [string, et.Tensor])),
    et.systems.spectra.SPECTRA_RENAMES,
  );
  const ours = new Map(
    model
      .namedParameters()
      .filter(([, p]) => p.grad !== null)
      .map(([n, p]) => [n, p.grad!] as [string, et.Tensor]),
  );
  expect([...ours.keys()].sort()).toEqual([...ref.keys()].sort());
  let worst = 0;
  for (const [k, g] of ref) worst = Math.max(worst, maxAbsDiff(ours.get(k)!, g));
  expect(worst).toBeLessThan(TOL);
  if (process.env.ET_PRINT_DIFFS) console.log(name, 'logits', maxAbsDiff(out.logits, io.get(`${name}.logits`)!), 'grads', worst);
  return worst;
}

async function withSingleHead(opts: et.systems.spectra.SpectraPretrainedOptions = {}): Promise<et.systems.spectra.Spectra> {
  const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'pretrained'), { numClass: 1, ...opts });
  const head = new Map([...io].filter(([k]) => k.startsWith('single.head.')).map(([k, t]) => [k.slice('single.'.length), t] as [string, et.Tensor]));
  await m.head.loadStateDict(new Map([...head].map(([k, t]) => [k.slice('head.'.length), t] as [string, et.Tensor])));
  return m;
}

describe('SPECTRA = original ATForSequenceClassification (reference)', () => {
  it('loads SPECTRA-base as published: pre-training heads skipped and reported, new head reported', async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'pretrained'), { task: 'iemocap' });
    expect(m.config.num_class).toBe(6);
    expect(m.loadInfo.skipped.length).toBe(20);
    expect(m.loadInfo.skipped.every((k) => /^(mlm_head|mam_head|selection_head|start_prediction_head|end_prediction_head)\./.test(k))).toBe(true);
    expect(m.loadInfo.initialized.sort()).toEqual(['head.0.bias', 'head.0.weight', 'head.2.bias', 'head.2.weight']);
    expect(m.namedParameters().some(([n]) => n === 'model.fused_encoder.0.attention.self.query.weight')).toBe(true);
    expect(m.namedParameters().some(([n]) => n === 'model.audio_encoder.audio_cls')).toBe(true);
  });

  it('single clip, regression (L1), audio_cls attended: logits, loss, all gradients', async () => {
    const m = await withSingleHead();
    await checkCase(m, 'single');
  });

  it("single clip with the original's masked audio_cls (maskAudioCls)", async () => {
    const m = await withSingleHead({ maskAudioCls: true });
    await checkCase(m, 'single_masked', 'single');
    // audio_cls is masked out and zeroed: it takes no gradient.
    const g = m.namedParameters().find(([n]) => n === 'model.audio_encoder.audio_cls')![1].grad!;
    expect(g.abs().max().item()).toBe(0);
  });

  it('history + current clips, turn ids, one sample without history, 4 classes (CE), fused_encoder.layer.N layout', async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'finetuned'));
    expect(m.config.num_class).toBe(4);
    expect(m.loadInfo).toEqual({ skipped: [], initialized: [] });
    await checkCase(m, 'history');
  });

  it('collate rebuilds the reference history batch from dataset items', async () => {
    const b = batch('history');
    const wave = b.inputValues.toArray() as number[][];
    const keep = b.audioAttentionMask.toArray() as number[][];
    const clip = (i: number) =>
      Float32Array.from(
        wave[i].slice(
          0,
          keep[i].reduce((a, x) => a + x, 0),
        ),
      );
    const hist = [[0, 11, 13, 2], null, [0, 4, 5, 6, 7, 2]];
    const cur = [
      [0, 20, 22, 2],
      [0, 30, 31, 32, 2],
      [0, 44, 2],
    ];
    const labels = b.labels!.toArray() as number[];
    const items = cur.map((textIds, i) => ({
      audio: clip(2 * i + 1),
      textIds,
      label: labels[i],
      ...(hist[i] ? { prevAudio: clip(2 * i), prevTextIds: hist[i]! } : {}),
    }));
    const c = et.systems.spectra.Spectra.collate(items, { audioLength: 1200, multiAudio: true });
    for (const k of ['inputValues', 'audioAttentionMask', 'inputIds', 'attentionMask', 'tokenTypeIds', 'labels'] as const) {
      expect(c[k]!.shape).toEqual(b[k]!.shape);
      expect(maxAbsDiff(c[k]!, b[k]!)).toBe(0);
    }
    // longer than textLength: <s> and the last tokens are kept (history cut from the left)
    const cut = et.systems.spectra.Spectra.collate([{ audio: new Float32Array(10), textIds: [0, 1, 2, 3, 4, 5, 6], label: 0.5 }], {
      audioLength: 20,
      textLength: 4,
    });
    expect(cut.inputIds.toArray()).toEqual([[0, 4, 5, 6]]);
    expect(cut.labels!.dtype).toBe('float32');
    expect(cut.tokenTypeIds).toBeNull();
    expect(cut.audioAttentionMask.sum().item()).toBe(10);
  });

  it('savePretrained writes a folder fromPretrained reads back to the same outputs', async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'finetuned'));
    const dir = tmpdir();
    await m.savePretrained(dir);
    const back = await et.systems.spectra.Spectra.fromPretrained(dir);
    const a = await m.forward(batch('history')),
      b = await back.forward(batch('history'));
    expect(maxAbsDiff(a.logits, b.logits)).toBe(0);
  });

  it('is strict about keys and sizes, naming them', async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'finetuned'));
    const dir = tmpdir();
    for (const f of ['audio_config.json', 'text_config.json']) fs.copyFileSync(path.join(DIR, 'finetuned', f), path.join(dir, f));
    const sd = m.stateDict();
    sd.set('model.extra.weight', et.zeros([2]));
    sd.delete('model.fused_encoder.0.output.dense.bias');
    await et.io.saveSafetensors(path.join(dir, 'model.safetensors'), sd);
    const e = await rejectsWith(
      et.systems.spectra.Spectra.fromPretrained(dir),
      'ERR_STATE_DICT',
      /missing keys: 'model\.fused_encoder\.0\.output\.dense\.bias'/,
    );
    expect(e.message).toMatch(/unexpected keys: 'model\.extra\.weight'/);
    await rejectsWith(et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'finetuned'), { numClass: 3 }), 'ERR_INVALID_ARG', /numClass/);
    await rejectsWith(et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'pretrained')), 'ERR_INVALID_ARG', /num_class/);
    await rejectsWith(et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'missing')), 'ERR_IO');
  });

  it('rejects malformed batches and configs clearly', async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'finetuned'));
    const b = batch('history');
    await rejectsWith(
      m.forward({ ...b, inputValues: b.inputValues.slice(0, 0, 5), audioAttentionMask: b.audioAttentionMask.slice(0, 0, 5) }),
      'ERR_INVALID_ARG',
      /inputValues/,
    );
    await rejectsWith(m.forward({ ...b, attentionMask: b.attentionMask.slice(1, 0, 2) }), 'ERR_INVALID_ARG', /attentionMask/);
    await rejectsWith(m.forward(null as never), 'ERR_INVALID_ARG');
    expect(() => et.systems.spectra.Spectra.create({ task: 'mosi', audio: { hidden_size: 32 }, text: { hidden_size: 16 } })).toThrow(/hidden_size/);
    expect(() => et.systems.spectra.Spectra.create({ task: 'nope' as never })).toThrow(/task/);
    expect(() => et.systems.spectra.Spectra.create({ task: 'mosi', audio: { conv_dim: [] } })).toThrow(/conv_dim/);
    expect(() => et.systems.spectra.Spectra.create({ task: 'mosi', text: { pad_token_id: -1 } })).toThrow(/pad_token_id/);
    expect(() => et.systems.spectra.Spectra.create({ task: 'mosi', text: { type_vocab_size: 1 } })).toThrow(/type_vocab_size/);
    expect(() => et.systems.spectra.Spectra.collate([])).toThrow(/non-empty/);
  });

  it("recipe: the original's decay rule, the paper's metrics, and a Trainer run that learns", async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(DIR, 'finetuned'));
    const [decay, noDecay] = et.systems.spectra.spectraParamGroups(m, 0.01);
    const named = new Map(m.namedParameters().map(([n, p]) => [p.handle.key(), n]));
    const names = (g: { params: et.Tensor[] }) => g.params.map((p) => named.get(p.handle.key())!);
    expect(names(noDecay).every((n) => n.includes('bias') || n.includes('LayerNorm.'))).toBe(true);
    expect(names(decay)).toContain('model.audio_encoder.encoder.layer_norm.weight'); // lower-case: decayed, as the original
    expect(names(decay)).toContain('model.audio_encoder.audio_cls');
    expect(decay.weightDecay).toBe(0.01);
    expect(noDecay.weightDecay).toBe(0);

    const logits = et.tensor([
      [0.1, 2, 0],
      [3, 0, 1],
      [0, 0, 5],
      [1, 0, 0],
    ]);
    const labels = et.tensor([1, 0, 1, 2], { dtype: 'int64' });
    const iem = et.systems.spectra.spectraMetrics('iemocap')({ predictions: logits, labelIds: labels });
    expect(iem).toEqual({
      accuracy: et.metrics.accuracy([1, 0, 2, 0], [1, 0, 1, 2]),
      f1_weighted: et.metrics.f1([1, 0, 2, 0], [1, 0, 1, 2], { average: 'weighted' }),
      ua: et.metrics.balancedAccuracy([1, 0, 2, 0], [1, 0, 1, 2]),
    });
    const mintrec = et.systems.spectra.spectraMetrics('mintrec')({
      predictions: et.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0]]),
      labelIds: et.tensor([15], { dtype: 'int64' }),
    });
    expect(mintrec).toEqual({ acc_20: 0, f1_20: 0, acc_2: 1, f1_2: 1 });
    const mosi = et.systems.spectra.spectraMetrics('mosi')({ predictions: et.tensor([0.5, -1, 2.2]), labelIds: et.tensor([1, -2, 2]) });
    expect(mosi.Non0_acc_2).toBe(1);

    // 4 items, regression: the recipe runs on the Trainer and lowers the training loss.
    et.manualSeed(0);
    const tiny = et.systems.spectra.Spectra.create({
      task: 'mosi',
      audio: {
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        conv_dim: [4, 4],
        conv_kernel: [10, 3],
        conv_stride: [5, 2],
        num_conv_pos_embeddings: 4,
        num_conv_pos_embedding_groups: 2,
        num_buckets: 8,
        max_bucket_distance: 16,
        max_length: 400,
      },
      text: { vocab_size: 20, hidden_size: 8, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 16, max_position_embeddings: 20 },
    });
    const items = [0, 1, 2, 3].map((k) => ({
      audio: Float32Array.from({ length: 300 }, (_, i) => Math.sin((i * (k + 1)) / 10)),
      textIds: [0, 5 + k, 2],
      label: k - 1.5,
    }));
    const ds = { length: items.length, get: (i: number) => items[i] };
    const before = (await et.noGrad(() => tiny.eval().forward(et.systems.spectra.Spectra.collate(items, { audioLength: 400 })))).loss!.item();
    const { output } = await et.systems.spectra.Spectra.finetune({
      task: 'mosi',
      model: tiny,
      train: ds,
      args: {
        output_dir: tmpdir(),
        per_device_train_batch_size: 4,
        num_train_epochs: 30,
        learning_rate: 1e-2,
        logging_steps: 1,
        disable_tqdm: true,
        report_to: 'none',
        save_strategy: 'no',
      },
    });
    expect(output.globalStep).toBe(30);
    const { loss } = await tiny.eval().forward(et.systems.spectra.Spectra.collate(items, { audioLength: 400 }));
    expect(loss!.item()).toBeLessThan(0.75 * before);
    await rejectsWith(et.systems.spectra.Spectra.finetune({ task: 'iemocap', model: tiny, train: ds }), 'ERR_INVALID_ARG', /6 outputs/);
  });
});

// Issue 18 point 10: an empty clip is refused (as SALMONN refuses it), in collate and in forward.
describe('SPECTRA refuses an empty audio clip', () => {
  const tiny = () =>
    et.systems.spectra.Spectra.create({
      audio: {
        vocab_size: 1,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        conv_dim: [16, 16],
        conv_stride: [5, 2],
        conv_kernel: [10, 3],
        num_conv_pos_embeddings: 16,
        num_conv_pos_embedding_groups: 2,
        mask_time_prob: 0,
      },
      text: {
        vocab_size: 50,
        hidden_size: 16,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 40,
        type_vocab_size: 2,
        num_fused_layers: 1,
      },
      num_class: 3,
    });
  const item = (n: number, label = 1) => ({ audio: new Float32Array(n).fill(0.1), textIds: [0, 5, 6, 2], label });
  it('collate: an item whose clip has no samples', () => {
    expect(() => et.systems.spectra.Spectra.collate([item(0), item(800)] as never, { audioLength: 800 })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/non-empty clip for items\[0\]\.audio/) }),
    );
  });
  it('forward: a sample whose (current) clip is all padding; an empty history clip is fine', async () => {
    const m = tiny().eval();
    const b = et.systems.spectra.Spectra.collate([item(800), item(800)] as never, { audioLength: 800 });
    b.audioAttentionMask = et.cat([et.ones([1, 800], { dtype: 'int64' }), et.zeros([1, 800], { dtype: 'int64' })], 0);
    await rejectsWith(() => m.forward(b), 'ERR_INVALID_ARG', /non-empty clip .*for the audio of sample 1/);
    const hist = et.systems.spectra.Spectra.collate([item(800), { ...item(800), prevAudio: new Float32Array(0), prevTextIds: [] }] as never, {
      audioLength: 800,
      multiAudio: true,
    });
    expect((await m.forward(hist)).logits.shape).toEqual([2, 3]);
  });
});
