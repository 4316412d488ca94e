// et.functional.scaledDotProductAttention against torch's F.scaled_dot_product_attention and the
// definition in float64 (test/fixtures/attention_rows, scripts/fixtures/attention_rows.py): the
// decoding kernel (a few queries over a cache, grouped key/value heads read in place; the LLaMA
// family's decoding steps take it; and with isCausal each query of a prompt over the keys up to
// itself, as a bfloat16 prompt pass takes it) and ATen's SDPA for what the kernel does not take.
// Bounds: float32 sums of D and S terms in float32, each rounded once — 1e-5 on N(0, 1) values;
// bfloat16: one rounding of the output (2⁻⁸ relative) over that.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, throwsWith } from '../helpers';

const io = async () => (await et.io.loadSafetensors(path.join(FIXTURES, 'attention_rows', 'io.safetensors'))).tensors;
const CASES = ['gqa', 'gqa_bf16', 'queries', 'queries_bf16', 'nomask', 'prompt', 'long_bf16', 'd80', 'causal', 'causal_bf16', 'causal_d80_bf16'];

type Case = {
  q: et.Tensor;
  k: et.Tensor;
  v: et.Tensor;
  mask?: et.Tensor;
  scale?: number;
  causal: boolean;
  ref: et.Tensor;
  torch: et.Tensor;
  bf16: boolean;
};

function caseOf(t: Map<string, et.Tensor>, name: string): Case {
  const bf16 = name.endsWith('_bf16');
  const as = (x: et.Tensor) => (bf16 ? x.to({ dtype: 'bfloat16' }) : x);
  const scale = t.get(`${name}.scale`);
  const mask = t.get(`${name}.mask`);
  return {
    q: as(t.get(`${name}.q`)!),
    k: as(t.get(`${name}.k`)!),
    v: as(t.get(`${name}.v`)!),
    mask: mask && as(mask),
    scale: scale === undefined ? undefined : (scale.item() as number),
    causal: t.has(`${name}.causal`),
    ref: t.get(`${name}.float64`)!.to({ dtype: 'float64' }),
    torch: t.get(`${name}.torch`)!.to({ dtype: 'float64' }),
    bf16,
  };
}

/** max over elements of |ours − ref| − bound (≤ 0 when every element is within its bound). */
function excess(ours: et.Tensor, ref: et.Tensor, bf16: boolean): number {
  const o = ours.to({ dtype: 'float64' });
  const bound = ref
    .abs()
    .mul(bf16 ? 2 ** -8 : 0)
    .add(1e-5);
  return o.sub(ref).abs().sub(bound).max().item() as number;
}

describe('scaledDotProductAttention = torch F.scaled_dot_product_attention', () => {
  for (const name of CASES)
    it(`${name}: within the bound of the float64 definition`, async () => {
      const c = caseOf(await io(), name);
      const out = et.noGrad(() =>
        et.functional.scaledDotProductAttention(c.q, c.k, c.v, { attnMask: c.mask, scale: c.scale, enableGqa: true, isCausal: c.causal }),
      );
      expect(out.shape).toEqual(c.ref.shape);
      expect(out.dtype).toBe(c.q.dtype);
      expect(excess(out, c.ref, c.bf16), 'ours vs float64').toBeLessThanOrEqual(0);
      // torch's own result meets the bound in float32; in bfloat16 (its CPU SDPA rounds the
      // probabilities to bfloat16 before the product with v, which ours keeps in float32) it meets
      // 2⁻⁸ · max |ref| only, the elementwise bound above being ours alone
      if (!c.bf16) expect(excess(c.torch, c.ref, false), 'torch vs float64').toBeLessThanOrEqual(0);
      else expect(c.torch.sub(c.ref).abs().max().item()).toBeLessThanOrEqual(2 ** -8 * (c.ref.abs().max().item() as number));
    });

  it('each query of a batch gets what it gets alone (the decoding kernel), bit for bit', async () => {
    for (const name of ['gqa', 'gqa_bf16', 'queries', 'long_bf16', 'd80']) {
      const c = caseOf(await io(), name);
      const opts = (b: number | null) => ({
        attnMask: c.mask && b !== null && c.mask.shape[0] > 1 ? c.mask.slice(0, b, b + 1) : c.mask,
        scale: c.scale,
        enableGqa: true,
      });
      const all = et.noGrad(() => et.functional.scaledDotProductAttention(c.q, c.k, c.v, opts(null)));
      for (let b = 0; b < c.q.shape[0]; ++b)
        for (let t = 0; t < c.q.shape[2]; ++t) {
          const mask = opts(b).attnMask;
          const m = mask && mask.shape[2] > 1 ? mask.slice(2, t, t + 1) : mask;
          const alone = et.noGrad(() =>
            et.functional.scaledDotProductAttention(c.q.slice(0, b, b + 1).slice(2, t, t + 1), c.k.slice(0, b, b + 1), c.v.slice(0, b, b + 1), {
              ...opts(b),
              attnMask: m,
            }),
          );
          const mine = all.slice(0, b, b + 1).slice(2, t, t + 1);
          expect(alone.sub(mine).abs().max().item(), `${name} row ${b} query ${t}`).toBe(0);
        }
    }
  });

  it('isCausal: each query of a prompt gets what it gets alone over the keys up to itself, bit for bit', async () => {
    for (const name of ['causal', 'causal_bf16', 'causal_d80_bf16']) {
      const c = caseOf(await io(), name);
      const all = et.noGrad(() => et.functional.scaledDotProductAttention(c.q, c.k, c.v, { scale: c.scale, enableGqa: true, isCausal: true }));
      for (const t of [0, 1, 16, 17, c.q.shape[2] - 1]) {
        const upTo = (x: et.Tensor) => x.slice(2, 0, t + 1);
        const alone = et.noGrad(() =>
          et.functional.scaledDotProductAttention(c.q.slice(2, t, t + 1), upTo(c.k), upTo(c.v), { scale: c.scale, enableGqa: true }),
        );
        expect(
          alone
            .sub(all.slice(2, t, t + 1))
            .abs()
            .max()
            .item(),
          `${name} query ${t}`,
        ).toBe(0);
      }
    }
  });

  it('with an autograd graph (ATen SDPA) the same numbers within the bound, and gradients flow', async () => {
    const c = caseOf(await io(), 'gqa');
    const q = c.q.clone().requiresGrad_(true);
    const out = et.functional.scaledDotProductAttention(q, c.k, c.v, { attnMask: c.mask, enableGqa: true });
    expect(excess(out, c.ref, false)).toBeLessThanOrEqual(0);
    await out.sum().backward();
    expect(q.grad!.shape).toEqual(q.shape);
    expect(q.grad!.abs().sum().item()).toBeGreaterThan(0);
  });

  it('refuses shapes, dtypes and options that do not fit, naming them', () => {
    const q = et.zeros([1, 4, 1, 8]),
      k = et.zeros([1, 2, 5, 8]);
    const sdpa = et.functional.scaledDotProductAttention;
    throwsWith(() => sdpa(q, k, k), 'ERR_INVALID_ARG', /k.*enableGqa/);
    throwsWith(() => sdpa(q, et.zeros([1, 3, 5, 8]), et.zeros([1, 3, 5, 8]), { enableGqa: true }), 'ERR_INVALID_ARG', /multiple/);
    throwsWith(() => sdpa(q, k, et.zeros([1, 2, 4, 8]), { enableGqa: true }), 'ERR_INVALID_ARG', /scaledDotProductAttention v/);
    throwsWith(() => sdpa(q, et.zeros([1, 2, 5, 7]), k, { enableGqa: true }), 'ERR_INVALID_ARG', /scaledDotProductAttention k/);
    throwsWith(() => sdpa(et.zeros([4, 1, 8]), k, k), 'ERR_INVALID_ARG', /\(B, H, T, D\)/);
    throwsWith(() => sdpa(q, k.to({ dtype: 'bfloat16' }), k, { enableGqa: true }), 'ERR_INVALID_ARG', /dtype/);
    throwsWith(() => sdpa(q, k, k, { enableGqa: true, attnMask: et.zeros([1, 1, 2, 5]) }), 'ERR_INVALID_ARG', /attnMask/);
    throwsWith(() => sdpa(q, k, k, { enableGqa: true, attnMask: et.zeros([1, 1, 1, 5], { dtype: 'int64' }) }), 'ERR_INVALID_ARG', /attnMask/);
    throwsWith(() => sdpa(q, k, k, { enableGqa: true, scale: NaN }), 'ERR_INVALID_ARG', /scale/);
    throwsWith(() => sdpa(q, k, k, { enableGqa: 1 as unknown as boolean }), 'ERR_INVALID_ARG', /enableGqa/);
    throwsWith(() => sdpa(q, k, k, { dropout: 0.1 } as never), 'ERR_INVALID_ARG', /dropout/);
    throwsWith(() => sdpa(q, k, k, { enableGqa: true, isCausal: 'yes' as unknown as boolean }), 'ERR_INVALID_ARG', /isCausal/);
    throwsWith(() => sdpa(q, k, k, { enableGqa: true, isCausal: true, attnMask: et.zeros([1, 1, 1, 5]) }), 'ERR_INVALID_ARG', /isCausal/);
  });
});
