import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

const FX = path.join(FIXTURES, 'foundation');

describe('built-in layers', () => {
  it('Linear has torch names and shapes and computes x Wᵀ + b', async () => {
    const lin = et.nn.Linear.create({ in_features: 3, out_features: 2 });
    expect(lin.namedParameters().map(([n, p]) => [n, p.shape])).toEqual([
      ['weight', [2, 3]],
      ['bias', [2]],
    ]);
    const x = et.randn([4, 3]);
    const y = await lin.forward(x);
    const sd = lin.stateDict();
    const ref = x.matmul(sd.get('weight')!.transpose(0, 1)).add(sd.get('bias')!);
    expect(maxAbsDiff(y, ref)).toBeLessThan(1e-6);
    expect(et.nn.Linear.create({ in_features: 3, out_features: 2, bias: false }).namedParameters().length).toBe(1);
  });

  it('Mlp matches a PyTorch MLP loaded from safetensors', async () => {
    const mlp = et.nn.Mlp.create({ sizes: [5, 7, 6, 3], activation: 'gelu' });
    const report = await mlp.load(path.join(FX, 'mlp_gelu.safetensors'));
    expect(report).toEqual({ missing: [], unexpected: [] });
    const { tensors } = await et.io.loadSafetensors(path.join(FX, 'mlp_gelu_io.safetensors'));
    const y = await mlp.forward(tensors.get('x')!);
    expect(maxAbsDiff(y, tensors.get('y')!)).toBeLessThan(1e-6);
  });

  it('LayerNorm and Embedding work', async () => {
    const ln = et.nn.LayerNorm.create({ normalized_shape: 4 });
    const y = await ln.forward(et.tensor([[1, 2, 3, 4]]));
    expect(y.mean().item()).toBeCloseTo(0, 6);
    const emb = et.nn.Embedding.create({ num_embeddings: 10, embedding_dim: 3, padding_idx: 0 });
    const e = await emb.forward(et.tensor([[0, 5]], { dtype: 'int64' }));
    expect(e.shape).toEqual([1, 2, 3]);
    expect(e.select(1, 0).abs().sum().item()).toBe(0);
    await rejectsWith(() => emb.forward(et.tensor([[11]], { dtype: 'int64' })), 'ERR_INDEX', /index out of range/);
    await rejectsWith(() => emb.forward(et.tensor([1.5])), 'ERR_INVALID_ARG', /int64 or int32/);
  });

  it('validates configs and inputs in TypeScript', async () => {
    throwsWith(() => et.nn.Linear.create({ in_features: 0, out_features: 2 }), 'ERR_INVALID_ARG', /positive integer for in_features but received 0/);
    throwsWith(() => et.nn.Mlp.create({ sizes: [3] }), 'ERR_INVALID_ARG', /at least two layer sizes/);
    throwsWith(() => et.nn.Mlp.create({ sizes: [3, 2], activation: 'swish' as et.nn.Activation }), 'ERR_INVALID_ARG', /activation/);
    throwsWith(() => et.nn.Linear.create({ in_features: 2, out_features: 2 }, { device: 'tpu' as et.Device }), 'ERR_INVALID_ARG', /device/);
    const lin = et.nn.Linear.create({ in_features: 3, out_features: 2 });
    await rejectsWith(() => lin.forward(et.ones([4, 5])), 'ERR_INVALID_ARG', /expected input of shape \[\.\.\., 3\] but received \[4,5\]/);
  });
});

class Classifier extends et.nn.Module {
  encoder = this.registerModule('encoder', et.nn.Mlp.create({ sizes: [6, 32, 16], activation: 'gelu' }));
  head = this.registerModule('head', et.nn.Linear.create({ in_features: 16, out_features: 3 }));
  scale = this.registerParameter('scale', et.ones([3]));
  async forward(x: et.Tensor): Promise<et.Tensor> {
    const h = await this.encoder.forward(x);
    return (await this.head.forward(h.gelu())).mul(this.scale);
  }
}

describe('Module', () => {
  it('names parameters through children and composes in TypeScript', () => {
    const m = new Classifier();
    expect(m.namedParameters().map(([n]) => n)).toEqual([
      'scale',
      'encoder.layers.0.weight',
      'encoder.layers.0.bias',
      'encoder.layers.1.weight',
      'encoder.layers.1.bias',
      'head.weight',
      'head.bias',
    ]);
    expect(m.numParameters()).toBe(3 + 6 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3);
    expect(m.children().map(([n]) => n)).toEqual(['encoder', 'head']);
  });

  it('freezes, unfreezes and switches train/eval', () => {
    const m = new Classifier();
    m.encoder.freeze();
    expect(m.trainableParameters().length).toBe(3);
    expect(m.numParameters(true)).toBe(3 + 16 * 3 + 3);
    m.unfreeze();
    expect(m.trainableParameters().length).toBe(7);
    expect(m.training).toBe(true);
    m.eval();
    expect(m.training && m.encoder.training).toBe(false);
    m.train();
    expect(m.head.training).toBe(true);
  });

  it('applies dropout only in training mode', async () => {
    const mlp = et.nn.Mlp.create({ sizes: [64, 64, 64], dropout: 0.5 });
    const x = et.ones([8, 64]);
    const a = await mlp.forward(x);
    const b = await mlp.forward(x);
    expect(maxAbsDiff(a, b)).toBeGreaterThan(0);
    mlp.eval();
    expect(maxAbsDiff(await mlp.forward(x), await mlp.forward(x))).toBe(0);
  });

  it('trains until the loss falls', async () => {
    et.manualSeed(0);
    const m = new Classifier();
    const x = et.randn([96, 6]);
    const y = x.select(1, 0).gt(0).long().add(x.select(1, 1).gt(0.5).long()); // 3 classes
    const opt = new et.optim.AdamW(m.trainableParameters(), { lr: 1e-2 });
    const losses: number[] = [];
    for (let i = 0; i < 60; i++) {
      const loss = et.functional.crossEntropy(await m.forward(x), y);
      losses.push(loss.item());
      await loss.backward();
      await opt.step();
      opt.zeroGrad();
    }
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.5);
    const acc = (await et.noGrad(() => m.forward(x))).argmax(1).eq(y).float().mean().item();
    expect(acc).toBeGreaterThan(0.85);
  });

  it('round-trips through save/load and stateDict', async () => {
    const dir = tmpdir();
    const a = new Classifier();
    const b = new Classifier();
    const x = et.randn([4, 6]);
    expect(maxAbsDiff(await a.forward(x), await b.forward(x))).toBeGreaterThan(0);
    await a.save(path.join(dir, 'm.safetensors'), { metadata: { task: 'test' } });
    await b.load(path.join(dir, 'm.safetensors'));
    expect(maxAbsDiff(await a.forward(x), await b.forward(x))).toBe(0);
    const c = new Classifier();
    await c.loadStateDict(a.stateDict());
    expect(maxAbsDiff(await a.forward(x), await c.forward(x))).toBe(0);
    const { metadata } = await et.io.loadSafetensors(path.join(dir, 'm.safetensors'));
    expect(metadata.task).toBe('test');
  });

  it('saves only trainable parameters when asked, and loads them non-strictly', async () => {
    const dir = tmpdir();
    const a = new Classifier();
    a.encoder.freeze();
    await a.save(path.join(dir, 'adapter.safetensors'), { trainableOnly: true });
    const { tensors } = await et.io.loadSafetensors(path.join(dir, 'adapter.safetensors'));
    expect([...tensors.keys()].sort()).toEqual(['head.bias', 'head.weight', 'scale']);
    const b = new Classifier();
    await rejectsWith(() => b.load(path.join(dir, 'adapter.safetensors')), 'ERR_STATE_DICT', /missing keys: 'encoder.layers.0.weight'/);
    const report = await b.load(path.join(dir, 'adapter.safetensors'), { strict: false });
    expect(report.missing.length).toBe(4);
    expect(maxAbsDiff(b.head.stateDict().get('weight')!, a.head.stateDict().get('weight')!)).toBe(0);
  });

  it('reports missing, unexpected and wrong-shape keys by name and changes nothing', async () => {
    const m = et.nn.Linear.create({ in_features: 3, out_features: 2 });
    const before = m.stateDict().get('weight')!.clone();
    await rejectsWith(() => m.loadStateDict({ weight: et.zeros([2, 3]) }), 'ERR_STATE_DICT', /missing keys: 'bias'/);
    await rejectsWith(
      () => m.loadStateDict({ weight: et.zeros([2, 3]), bias: et.zeros([2]), extra: et.zeros([1]) }),
      'ERR_STATE_DICT',
      /unexpected keys: 'extra'/,
    );
    const e = await rejectsWith(() => m.loadStateDict({ weight: et.zeros([3, 3]), bias: et.zeros([2]) }, { strict: false }), 'ERR_STATE_DICT');
    expect(e.message).toContain("'weight': checkpoint [3,3] vs model [2,3]");
    expect(maxAbsDiff(m.stateDict().get('weight')!, before)).toBe(0);
    const r = await m.loadStateDict({ weight: et.zeros([2, 3]), extra: et.zeros([1]) }, { strict: false });
    expect(r).toEqual({ missing: ['bias'], unexpected: ['extra'] });
    expect(m.stateDict().get('weight')!.abs().sum().item()).toBe(0);
  });

  it('names the key when a file lacks one or holds a wrong shape', async () => {
    const dir = tmpdir();
    const m = et.nn.Mlp.create({ sizes: [4, 8, 2] });
    const sd = m.stateDict();
    sd.delete('layers.1.bias');
    await et.io.saveSafetensors(path.join(dir, 'missing.safetensors'), sd);
    await rejectsWith(() => m.load(path.join(dir, 'missing.safetensors')), 'ERR_STATE_DICT', /missing keys: 'layers.1.bias'/);
    const bad = m.stateDict();
    bad.set('layers.0.weight', et.zeros([8, 5]));
    await et.io.saveSafetensors(path.join(dir, 'shape.safetensors'), bad);
    await rejectsWith(() => m.load(path.join(dir, 'shape.safetensors')), 'ERR_STATE_DICT', /'layers.0.weight': checkpoint \[8,5\] vs model \[8,4\]/);
  });

  it('converts dtypes when loading and when moving', async () => {
    const m = et.nn.Linear.create({ in_features: 2, out_features: 2 });
    await m.loadStateDict({
      weight: et.tensor(
        [
          [1, 2],
          [3, 4],
        ],
        { dtype: 'float64' },
      ),
      bias: et.tensor([0, 1], { dtype: 'bfloat16' }),
    });
    expect(m.stateDict().get('weight')!.dtype).toBe('float32');
    const w = m.parameters()[0];
    await m.to({ dtype: 'float64' });
    expect(w.dtype).toBe('float64'); // moved in place: old handles stay valid
    const y = await m.forward(et.tensor([[1, 1]], { dtype: 'float64' }));
    expect(y.toArray()).toEqual([[3, 8]]);
    const lin16 = et.nn.Linear.create({ in_features: 2, out_features: 2 }, { dtype: 'bfloat16' });
    expect(lin16.parameters()[0].dtype).toBe('bfloat16');
  });

  it('rejects a CUDA device clearly when there is none', async () => {
    if (et.cuda.isAvailable()) return;
    throwsWith(() => et.nn.Linear.create({ in_features: 2, out_features: 2 }, { device: 'cuda' }), 'ERR_NO_CUDA', /CUDA is not available/);
    const m = et.nn.Linear.create({ in_features: 2, out_features: 2 });
    await rejectsWith(() => m.to({ device: 'cuda:0' }), 'ERR_NO_CUDA');
  });
});
