// Wav2Vec2Model against HF Wav2Vec2Model (scripts/fixtures/wav2vec2.py): the XLS-R layout
// (layer-norm conv encoder with bias, stable-layer-norm encoder) and the base layout.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith } from '../helpers';

const fx = (name: string) => path.join(FIXTURES, 'wav2vec2', name);
const TOL = 1e-4;

describe('Wav2Vec2Model = HF Wav2Vec2Model', () => {
  for (const name of ['xlsr', 'base']) {
    it(`matches ${name}: last_hidden_state and every hidden state, padded batch`, async () => {
      const m = await et.nn.Wav2Vec2Model.fromPretrained(fx(name));
      const t = (await et.io.loadSafetensors(path.join(fx(name), 'io.safetensors'))).tensors;
      const out = await m.forward({ inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask'), outputHiddenStates: true });
      expect(out.attentionMask!.long().sum(1).toArray()).toEqual([79, 54]);
      expect(out.frameMask).toBe(out.attentionMask); // the deprecated name, not enumerated
      expect(Object.keys(out)).toEqual(['lastHiddenState', 'attentionMask', 'hiddenStates']);
      expect(maxAbsDiff(out.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
      expect(out.hiddenStates).toHaveLength(4);
      out.hiddenStates!.forEach((h, i) => expect(maxAbsDiff(h, t.get(`hidden_states.${i}`)!)).toBeLessThan(TOL));
      // the same without a graph (inference: in-place activations)
      const inf = await et.noGrad(() => m.forward({ inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask'), outputHiddenStates: true }));
      expect(maxAbsDiff(inf.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
      inf.hiddenStates!.forEach((h, i) => expect(maxAbsDiff(h, t.get(`hidden_states.${i}`)!)).toBeLessThan(TOL));
      expect(maxAbsDiff(inf.lastHiddenState, out.lastHiddenState)).toBeLessThan(1e-4);
      // one layer only, the rest not run
      const at = await m.hiddenStateAt({ inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask') }, 2);
      expect(maxAbsDiff(at.hiddenState, t.get('hidden_states.2')!)).toBeLessThan(TOL);
      expect(at.attentionMask!.long().sum(1).toArray()).toEqual([79, 54]);
      expect(at.frameMask).toBe(at.attentionMask);
      const plain = await m.forward(t.get('input_values')!);
      expect(plain.hiddenStates).toBeUndefined();
      expect(plain.attentionMask).toBeNull();
      expect(m.framesFor(1600)).toBe(79);
    });
  }
  it("gives HF's gradients through the (channels-last) layer-norm conv stack and the projection", async () => {
    const m = await et.nn.Wav2Vec2Model.fromPretrained(fx('xlsr'));
    m.eval(); // no dropout, as the reference
    const t = (await et.io.loadSafetensors(path.join(fx('xlsr'), 'io.safetensors'))).tensors;
    const ref = (await et.io.loadSafetensors(path.join(fx('xlsr'), 'grad.safetensors'))).tensors;
    const { lastHiddenState } = await m.forward({ inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask') });
    await lastHiddenState.square().sum().backward();
    const params = new Map(m.namedParameters());
    expect(ref.size).toBeGreaterThan(10);
    for (const [name, g] of ref) {
      const scale = Math.max(1, g.abs().max().item() as number);
      expect(maxAbsDiff(params.get(name)!.grad!, g) / scale, name).toBeLessThan(1e-4);
    }
  });
  it('stable-layer-norm output differs from the last recorded hidden state by the final layer norm', async () => {
    const m = await et.nn.Wav2Vec2Model.fromPretrained(fx('xlsr'));
    const t = (await et.io.loadSafetensors(path.join(fx('xlsr'), 'io.safetensors'))).tensors;
    const out = await m.forward({ inputValues: t.get('input_values')!, outputHiddenStates: true });
    expect(maxAbsDiff(out.lastHiddenState, out.hiddenStates![3])).toBeGreaterThan(1e-2);
  });
  it('rejects bad configs and inputs by name', async () => {
    throwsWith(() => et.nn.Wav2Vec2Model.create({ conv_dim: [] }), 'ERR_INVALID_ARG', /config\.conv_dim/);
    throwsWith(() => et.nn.Wav2Vec2Model.create({ conv_dim: [8, 8], conv_kernel: [3] }), 'ERR_INVALID_ARG', /config\.conv_kernel/);
    throwsWith(() => et.nn.Wav2Vec2Model.create({ feat_extract_norm: 'batch' }), 'ERR_INVALID_ARG', /feat_extract_norm/);
    throwsWith(() => et.nn.Wav2Vec2Model.create({ hidden_size: 30, num_attention_heads: 4 }), 'ERR_INVALID_ARG', /config\.hidden_size/);
    throwsWith(() => et.nn.Wav2Vec2Model.create({ add_adapter: true }), 'ERR_INVALID_ARG', /add_adapter/);
    throwsWith(() => et.nn.Wav2Vec2Model.create({ layerdrop: 2 }), 'ERR_INVALID_ARG', /config\.layerdrop/);
    const m = await et.nn.Wav2Vec2Model.fromPretrained(fx('xlsr'));
    await rejectsWith(() => m.forward({ inputValues: et.zeros([1, 5]) }), 'ERR_INVALID_ARG', /at least 10 samples/);
    await rejectsWith(() => m.forward({ inputValues: et.zeros([3200]) }), 'ERR_INVALID_ARG', /inputValues/);
    await rejectsWith(() => m.forward({ inputValues: et.zeros([1, 400]), attentionMask: et.ones([1, 300]) }), 'ERR_INVALID_ARG', /attentionMask/);
    await rejectsWith(() => m.hiddenStateAt({ inputValues: et.zeros([1, 400]) }, 4), 'ERR_INVALID_ARG', /layer/);
    const empty = await m.forward({ inputValues: et.zeros([0, 400]), outputHiddenStates: true });
    expect(empty.lastHiddenState.shape).toEqual([0, 19, 32]);
    expect(empty.hiddenStates).toHaveLength(4);
  });
});
