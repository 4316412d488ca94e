// The InternVL2 family's LLMs on the LLaMA core against the original code (fixtures made by
// scripts/fixtures/internvl2.py llm from InternVL's remote InternLM2 and Phi-3 code and HF Qwen2):
// logits with left padding past the RoPE switch length, the loss and LoRA gradients with
// InternVL's own LLM LoRA targets, and greedy tokens.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, throwsWith } from '../helpers';

const fx = (family: string) => path.join(FIXTURES, 'internvl_llm', family);
const io = async (family: string) => (await et.io.loadSafetensors(path.join(fx(family), 'io.safetensors'))).tensors;
const masked = (a: et.Tensor, b: et.Tensor, mask: et.Tensor) => et.where(mask.unsqueeze(-1).eq(1), a.sub(b).abs(), 0).max().item();

const FAMILIES = {
  internlm2: { targets: ['attention.wqkv', 'attention.wo', 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3'], rope: 'dynamic' },
  phi3: { targets: ['mlp.down_proj', 'mlp.gate_up_proj', 'self_attn.o_proj', 'self_attn.qkv_proj'], rope: 'longrope' },
  qwen2: {
    targets: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.down_proj', 'mlp.up_proj'],
    rope: 'default',
  },
} as const;

describe('InternVL2 LLMs on the LLaMA core = the original code', () => {
  for (const [family, spec] of Object.entries(FAMILIES)) {
    it(`${family}: logits, loss and LoRA gradients, greedy tokens`, async () => {
      const t = await io(family);
      const m = await et.nn.LlamaForCausalLM.fromPretrained(fx(family));
      expect(m.config.model_type).toBe(family);
      expect(m.config.rope_type).toBe(spec.rope);
      const ids = t.get('input_ids')!,
        mask = t.get('attention_mask')!,
        pos = t.get('position_ids')!;
      const { logits } = await m.forward({ inputIds: ids, attentionMask: mask, positionIds: pos });
      expect(masked(logits, t.get('logits')!, mask)).toBeLessThan(1e-4);

      // greedy from the first 8 positions (the fixture recomputes without a cache; we use one)
      const prompt = { inputIds: ids.slice(1, 0, 8), attentionMask: mask.slice(1, 0, 8) };
      const { newTokens } = await m.generate(prompt, { maxNewTokens: 6, eosTokenId: [], padTokenId: 0 });
      expect(newTokens.toArray()).toEqual(t.get('greedy_new')!.toArray());

      // LoRA on InternVL's wrap_llm_lora targets, with the fixture's adapter weights
      const names = et.nn.applyLora(m, { r: 4, alpha: 8, dropout: 0, targetModules: [...spec.targets] });
      expect(names.length).toBeGreaterThan(0);
      const adapter = new Map([...t].filter(([k]) => k.startsWith('lora.')).map(([k, v]) => [k.slice(5), v] as [string, et.Tensor]));
      const report = await m.loadStateDict(adapter, { strict: false });
      expect(report.unexpected).toEqual([]);
      m.train();
      const { loss } = await m.forward({ inputIds: ids, attentionMask: mask, positionIds: pos, labels: t.get('labels')! });
      expect(Math.abs(loss!.item() - t.get('loss')!.item())).toBeLessThan(1e-5);
      await loss!.backward();
      let n = 0;
      for (const [name, p] of m.namedParameters()) {
        if (!name.includes('.lora_')) continue;
        expect(maxAbsDiff(p.grad!, t.get(`grad.${name}`)!), name).toBeLessThan(1e-5);
        n++;
      }
      expect(n).toBe(adapter.size);
    });
  }

  it('refuses configs it cannot build, naming the field', () => {
    const base = { vocab_size: 16, hidden_size: 16, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 };
    throwsWith(() => et.nn.LlamaForCausalLM.create({ ...base, model_type: 'gemma' }), 'ERR_INVALID_ARG', /config\.model_type/);
    throwsWith(() => et.nn.LlamaForCausalLM.create({ ...base, rope_type: 'yarn' }), 'ERR_INVALID_ARG', /config\.rope_type/);
    throwsWith(
      () => et.nn.LlamaForCausalLM.create({ ...base, model_type: 'phi3', rope_type: 'longrope', short_factor: [1], long_factor: [1, 2, 3, 4] }),
      'ERR_INVALID_ARG',
      /config\.short_factor/,
    );
    throwsWith(
      () => et.nn.LlamaForCausalLM.create({ ...base, model_type: 'phi3', rope_type: 'longrope', short_factor: [1, 1, 1, 1], long_factor: [1, -2, 3, 4] }),
      'ERR_INVALID_ARG',
      /config\.long_factor/,
    );
    throwsWith(() => et.nn.LlamaForCausalLM.create({ ...base, model_type: 'internlm2', tie_word_embeddings: true }), 'ERR_INVALID_ARG', /tie_word_embeddings/);
    // Phi-3's su attention factor is derived as the remote code does: √(1 + ln s / ln original)
    const phi = et.nn.LlamaForCausalLM.create({
      ...base,
      model_type: 'phi3',
      rope_type: 'longrope',
      short_factor: [1, 1, 1, 1],
      long_factor: [2, 2, 2, 2],
      max_position_embeddings: 131072,
      original_max_position_embeddings: 4096,
    });
    expect(phi.config.attention_factor).toBeCloseTo(Math.sqrt(1 + Math.log(32) / Math.log(4096)), 12);
    expect(
      et.nn.LlamaForCausalLM.create({ ...base, model_type: 'qwen2' })
        .namedParameters()
        .some(([n]) => n.endsWith('q_proj.bias')),
    ).toBe(true);
  });
});
