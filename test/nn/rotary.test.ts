// et.functional.applyRotaryPosEmb against transformers' apply_rotary_pos_emb (test/fixtures/rotary,
// scripts/fixtures/rotary.py): bfloat16 and float16 bit for bit (each product and the sum rounded to
// the dtype, as torch's ops round them; the kernel a LLaMA's prompt pass and decoding steps take,
// its vector lanes and scalar tail; AVX2's 8 lanes too, in a child process capped at AVX2), float32
// within two roundings.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, throwsWith } from '../helpers';

const io = async () => (await et.io.loadSafetensors(path.join(FIXTURES, 'rotary', 'io.safetensors'))).tensors;
const CASES: [string, et.DType][] = [
  ['bf16', 'bfloat16'],
  ['bf16_d80', 'bfloat16'],
  ['bf16_d128', 'bfloat16'],
  ['f16', 'float16'],
  ['f32', 'float32'],
];

describe('applyRotaryPosEmb = transformers apply_rotary_pos_emb', () => {
  for (const [name, dtype] of CASES)
    it(`${name}: ${dtype === 'float32' ? 'within two float32 roundings' : 'bit for bit'}`, async () => {
      const t = await io();
      const [x, cos, sin] = ['x', 'cos', 'sin'].map((k) => t.get(`${name}.${k}`)!.to({ dtype }));
      const ref = t.get(`${name}.out`)!;
      const out = et.noGrad(() => et.functional.applyRotaryPosEmb(x, cos, sin));
      expect(out.shape).toEqual(x.shape);
      expect(out.dtype).toBe(dtype);
      const err = out.to({ dtype: 'float32' }).sub(ref).abs().max().item() as number;
      if (dtype === 'float32') expect(err).toBeLessThanOrEqual(2 * 2 ** -23 * (ref.abs().max().item() as number));
      else expect(err).toBe(0);
    });

  it('bfloat16 bit for bit on the AVX2 build of the kernel too (a child process capped at AVX2)', () => {
    const root = path.join(__dirname, '..', '..');
    const child = `
      const et = require(${JSON.stringify(path.join(root, 'dist', 'index.js'))});
      (async () => {
        const t = (await et.io.loadSafetensors(${JSON.stringify(path.join(FIXTURES, 'rotary', 'io.safetensors'))})).tensors;
        const errs = {};
        for (const name of ['bf16', 'bf16_d80', 'bf16_d128']) {
          const [x, cos, sin] = ['x', 'cos', 'sin'].map((k) => t.get(name + '.' + k).to({ dtype: 'bfloat16' }));
          const out = et.noGrad(() => et.functional.applyRotaryPosEmb(x, cos, sin));
          errs[name] = out.to({ dtype: 'float32' }).sub(t.get(name + '.out')).abs().max().item();
        }
        console.log(JSON.stringify(errs));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const env = { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };
    const r = spawnSync(process.execPath, ['-e', child], { env, encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ bf16: 0, bf16_d80: 0, bf16_d128: 0 });
  });

  it('with an autograd graph (torch ops) the same numbers, and the gradient flows to x', async () => {
    const t = await io();
    const [x, cos, sin] = ['x', 'cos', 'sin'].map((k) => t.get(`bf16_d80.${k}`)!.to({ dtype: 'bfloat16' }));
    const xg = x.clone().requiresGrad_(true);
    const out = et.functional.applyRotaryPosEmb(xg, cos, sin);
    expect(out.to({ dtype: 'float32' }).sub(t.get('bf16_d80.out')!).abs().max().item()).toBe(0);
    await out.to({ dtype: 'float32' }).sum().backward();
    expect(xg.grad!.shape).toEqual(x.shape);
  });

  it('refuses shapes, dtypes and devices that do not fit, naming the tensor', () => {
    const x = et.zeros([2, 4, 3, 8]),
      c = et.zeros([1, 3, 8]);
    const rope = et.functional.applyRotaryPosEmb;
    throwsWith(() => rope(et.zeros([2, 4, 3, 7]), c, c), 'ERR_INVALID_ARG', /D even.*applyRotaryPosEmb x/);
    throwsWith(() => rope(et.zeros([4, 3, 8]), c, c), 'ERR_INVALID_ARG', /applyRotaryPosEmb x/);
    throwsWith(() => rope(x, et.zeros([3, 3, 8]), c), 'ERR_INVALID_ARG', /applyRotaryPosEmb cos/);
    throwsWith(() => rope(x, c, et.zeros([1, 4, 8])), 'ERR_INVALID_ARG', /applyRotaryPosEmb sin/);
    throwsWith(() => rope(x, c.to({ dtype: 'bfloat16' }), c), 'ERR_INVALID_ARG', /float32.*applyRotaryPosEmb cos/);
  });
});
