// InternVL2 against the original remote code (fixtures made by scripts/fixtures/internvl2.py chat
// from InternVLChatModel + InternVisionModel + the remote InternLM2 / Phi-3): the vision tower
// (and its position embeddings resized for another picture size), extract_feature, the chat
// model's logits, one LoRA SFT step's loss and gradients, and greedy tokens.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith } from '../helpers';

const fx = (family: string) => path.join(FIXTURES, 'internvl_chat', family);
const io = async (family: string) => (await et.io.loadSafetensors(path.join(fx(family), 'io.safetensors'))).tensors;
const masked = (a: et.Tensor, b: et.Tensor, mask: et.Tensor) => et.where(mask.unsqueeze(-1).eq(1), a.sub(b).abs(), 0).max().item();
const TARGETS: Record<string, string[]> = {
  internlm2: ['attention.wqkv', 'attention.wo', 'feed_forward.w1', 'feed_forward.w2', 'feed_forward.w3'],
  phi3: ['mlp.down_proj', 'mlp.gate_up_proj', 'self_attn.o_proj', 'self_attn.qkv_proj'],
};

describe('InternVL2 = InternVLChatModel (remote code)', () => {
  for (const family of ['internlm2', 'phi3']) {
    it(`${family}: vision tower, extract_feature, logits, greedy tokens`, async () => {
      const t = await io(family);
      const m = await et.nn.InternVL.fromPretrained(fx(family), { imgContextTokenId: 127 });
      expect(m.numImageToken).toBe(4);
      expect(m.language_model.config.model_type).toBe(family);
      const pixels = t.get('pixel_values')!;
      const vit = await m.vision_model.forward({ pixelValues: pixels, hiddenStateIndex: 1 });
      expect(maxAbsDiff(vit.lastHiddenState, t.get('vit.last_hidden_state')!)).toBeLessThan(1e-4);
      expect(maxAbsDiff(vit.hiddenState!, t.get('vit.hidden_states.1')!)).toBeLessThan(1e-4);
      const odd = await m.vision_model.forward(t.get('odd_pixel_values')!);
      expect(odd.lastHiddenState.shape).toEqual([1, 1 + 3 * 5, 32]);
      expect(maxAbsDiff(odd.lastHiddenState, t.get('vit.odd_last_hidden_state')!)).toBeLessThan(1e-4);
      expect(maxAbsDiff(await m.extractFeature(pixels), t.get('features')!)).toBeLessThan(1e-4);

      const mask = t.get('attention_mask')!;
      const { logits } = await m.forward({
        inputIds: t.get('input_ids')!,
        attentionMask: mask,
        pixelValues: pixels,
        imageFlags: et.ones([3, 1], { dtype: 'int64' }),
      });
      expect(masked(logits, t.get('logits')!, mask)).toBeLessThan(1e-4);

      const newTokens = await m.generate(
        { inputIds: t.get('greedy_prompt')!, pixelValues: pixels.slice(0, 2, 3) },
        { maxNewTokens: 5, eosTokenId: [], padTokenId: 0 },
      );
      expect(newTokens.toArray()).toEqual(t.get('greedy_new')!.toArray());
    });

    it(`${family}: one LoRA SFT step gives the original's loss and gradients (adapters, mlp1, vision tower)`, async () => {
      const t = await io(family);
      const m = await et.nn.InternVL.fromPretrained(fx(family), { imgContextTokenId: 127 });
      et.nn.applyLora(m.language_model, { r: 4, alpha: 8, dropout: 0, targetModules: TARGETS[family] });
      const adapter = new Map([...t].filter(([k]) => k.startsWith('lora.')).map(([k, v]) => [k.slice(5), v] as [string, et.Tensor]));
      expect((await m.loadStateDict(adapter, { strict: false })).unexpected).toEqual([]);
      for (const [n, p] of m.namedParameters()) p.requiresGrad = !n.startsWith('language_model.') || n.includes('.lora_');
      m.train();
      const { loss } = await m.forward({
        inputIds: t.get('input_ids')!,
        attentionMask: t.get('attention_mask')!,
        pixelValues: t.get('pixel_values')!,
        labels: t.get('labels')!,
      });
      expect(Math.abs(loss!.item() - t.get('loss')!.item())).toBeLessThan(1e-5);
      await loss!.backward();
      let n = 0;
      let worst = 0;
      for (const [name, p] of m.namedParameters()) {
        const ref = t.get(`grad.${name}`);
        if (!p.requiresGrad) continue;
        expect(ref, name).toBeDefined();
        worst = Math.max(worst, maxAbsDiff(p.grad!, ref!));
        n++;
      }
      expect(n).toBe([...t.keys()].filter((k) => k.startsWith('grad.')).length);
      expect(worst).toBeLessThan(1e-4);
    });
  }

  it('refuses prompts whose <IMG_CONTEXT> count does not match the tiles, and bad configs', async () => {
    const t = await io('internlm2');
    const m = await et.nn.InternVL.fromPretrained(fx('internlm2'), { imgContextTokenId: 127 });
    const ids = t.get('input_ids')!;
    await rejectsWith(
      () => m.forward({ inputIds: ids, pixelValues: t.get('pixel_values')!.slice(0, 0, 2) }),
      'ERR_INVALID_ARG',
      /12 <IMG_CONTEXT> tokens but the 2 tiles give 8/,
    );
    await rejectsWith(() => m.forward({ inputIds: ids }), 'ERR_INVALID_ARG', /pixelValues/);
    await rejectsWith(() => m.vision_model.forward(et.zeros([1, 3, 50, 56])), 'ERR_INVALID_ARG', /multiples of patch_size \(14\)/);
    await rejectsWith(() => m.vision_model.forward({ pixelValues: et.zeros([1, 3, 56, 56]), hiddenStateIndex: 3 }), 'ERR_INVALID_ARG', /hiddenStateIndex/);
    await rejectsWith(() => m.mlp1.forward(et.zeros([1, 1 + 15, 32])), 'ERR_INVALID_ARG', /side a multiple of 2/);
    const vision_config = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4, image_size: 56, norm_type: 'layer_norm' };
    throwsWith(
      () => et.nn.InternVL.create({ vision_config: { ...vision_config, norm_type: 'batch_norm' }, llm_config: { architectures: ['InternLM2ForCausalLM'] } }),
      'ERR_INVALID_ARG',
      /norm_type/,
    );
    throwsWith(
      () => et.nn.InternVL.create({ vision_config, llm_config: { architectures: ['GPT2LMHeadModel'] } }),
      'ERR_INVALID_ARG',
      /llm_config\.architectures\[0\]/,
    );
  });

  it("quantize: the LLM's decoder layers quantized as the safetensors are read, the same bytes as quantizing after a float load", async () => {
    const t = await io('internlm2');
    const q = await et.nn.InternVL.fromPretrained(fx('internlm2'), { imgContextTokenId: 127, quantize: 'int8' });
    const layers = et.nn.linearLayers(q);
    const quantized = layers.filter((l) => l.format === 'int8').map((l) => l.name);
    // InternLM2's wqkv, wo, w1, w2, w3 in each decoder layer; not the head, InternViT or mlp1
    expect(quantized.length).toBe(5 * q.language_model.config.num_hidden_layers);
    expect(quantized.every((n) => n.startsWith('language_model.model.layers.'))).toBe(true);
    expect(layers.filter((l) => /^(vision_model|mlp1)\./.test(l.name)).every((l) => l.format === null)).toBe(true);
    expect(layers.find((l) => l.name === 'language_model.output')!.format).toBeNull();
    const after = await et.nn.InternVL.fromPretrained(fx('internlm2'), { imgContextTokenId: 127 });
    await et.nn.quantize(after, 'int8', { layers: quantized });
    const a = q.stateDict(),
      b = after.stateDict();
    expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
    for (const [k, v] of a) expect(maxAbsDiff(v.to({ dtype: 'float32' }), b.get(k)!.to({ dtype: 'float32' })), k).toBe(0);
    const inputs = { inputIds: t.get('input_ids')!, pixelValues: t.get('pixel_values')!, attentionMask: t.get('attention_mask')! };
    const [la, lb] = [(await et.noGrad(() => q.forward(inputs))).logits, (await et.noGrad(() => after.forward(inputs))).logits];
    expect(maxAbsDiff(la, lb)).toBe(0);
  });
});
