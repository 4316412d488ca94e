import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { binding } from '../../lib/native';
import { ROBERTA_DEFAULTS } from '../../lib/nn/roberta';
import { LLAMA_DEFAULTS } from '../../lib/nn/llama';
import { WHISPER_DEFAULTS } from '../../lib/nn/whisper';

// Each native model reads its config in its own file and sets no defaults (native/config.h):
// a field the TypeScript declaration stops sending fails loudly, naming it.
describe('one config source per model', () => {
  const cases: Array<[string, Record<string, unknown>, boolean]> = [
    ['roberta', { ...ROBERTA_DEFAULTS, num_hidden_layers: 1 }, true],
    [
      'llama',
      { ...LLAMA_DEFAULTS, vocab_size: 64, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2 },
      false,
    ],
    ['whisper_encoder', { ...WHISPER_DEFAULTS, d_model: 16, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 32 }, false],
  ];
  for (const [kind, full, everyField] of cases) {
    it(`${kind}: the complete config builds; each field the native side reads is required by name`, () => {
      expect(() => binding.createModule(kind, full, null, null).dispose()).not.toThrow();
      const required: string[] = [];
      for (const k of Object.keys(full)) {
        const { [k]: _, ...rest } = full;
        try {
          binding.createModule(kind, rest, null, null).dispose();
        } catch (e) {
          expect((e as et.EmotorchError).code).toBe('ERR_INVALID_ARG');
          expect((e as Error).message).toContain(`the ${kind} config lacks '${k}'`);
          required.push(k);
        }
      }
      expect(required.length).toBeGreaterThan(5);
      if (everyField) expect(required.sort()).toEqual(Object.keys(full).sort());
    });
  }

  it('optimizer groups: each field of the kind is required; Optimizer.clipGradNorm equals clipGradNorm over its parameters', async () => {
    const p = et.randn([3, 4], { requiresGrad: true });
    expect(() => binding.createOptimizer('adamw', [{ params: [p.handle], lr: 1e-3, weightDecay: 0, beta1: 0.9, eps: 1e-8 } as never])).toThrow(/lacks 'beta2'/);
    expect(() => binding.createOptimizer('sgd', [{ params: [p.handle], lr: 1e-3, weightDecay: 0, momentum: 0, dampening: 0 } as never])).toThrow(
      /lacks 'nesterov'/,
    );
    const a = et.randn([5, 6], { requiresGrad: true }),
      b = et.randn([7], { requiresGrad: true });
    const grads = [et.randn([5, 6]).mul(3), et.randn([7])];
    const setGrads = async () => {
      a.grad = null as never;
      b.grad = null as never;
      await a.mul(grads[0]).sum().add(b.mul(grads[1]).sum()).backward();
    };
    await setGrads();
    const viaList = await et.optim.clipGradNorm([a, b], 0.5);
    const clipped = [await a.grad!.data(), await b.grad!.data()];
    await setGrads();
    const opt = new et.optim.AdamW([a, b]);
    const viaOpt = await opt.clipGradNorm(0.5);
    expect(viaOpt).toBeCloseTo(viaList, 10);
    expect(Array.from(await a.grad!.data())).toEqual(Array.from(clipped[0]));
    expect(Array.from(await b.grad!.data())).toEqual(Array.from(clipped[1]));
  });
});
