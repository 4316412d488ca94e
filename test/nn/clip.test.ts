// CLIP and the LanguageBind towers against HF transformers' CLIPModel and a re-implementation of
// LanguageBind's vision tower on HF's CLIP modules (fixtures: scripts/fixtures/clip.py).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

const fx = (name: string) => path.join(FIXTURES, 'clip', name);
const io = async (name: string, file = 'io.safetensors') => (await et.io.loadSafetensors(path.join(fx(name), file))).tensors;
const TOL = 1e-4;

/** The LanguageBind wrapper's embedding of a vision tower: projection, L2 norm, × logit_scale.exp(). */
const bind = (embeds: et.Tensor, logitScale: number) => embeds.div(embeds.norm(2, -1, true)).mul(Math.exp(logitScale));

describe('ClipModel = HF CLIPModel', () => {
  it('matches both towers, the normalised embeddings, the logits and every gradient', async () => {
    const m = await et.nn.ClipModel.fromPretrained(fx('hf'));
    const t = await io('hf');
    const out = await m.forward({ inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')!, pixelValues: t.get('pixel_values')! });
    const pairs: Array<[keyof et.nn.ClipOutputs, string]> = [
      ['textLastHiddenState', 'text_last_hidden_state'],
      ['textPoolerOutput', 'text_pooler_output'],
      ['visionLastHiddenState', 'vision_last_hidden_state'],
      ['visionPoolerOutput', 'vision_pooler_output'],
      ['textEmbeds', 'text_embeds'],
      ['imageEmbeds', 'image_embeds'],
      ['logitsPerImage', 'logits_per_image'],
      ['logitsPerText', 'logits_per_text'],
    ];
    for (const [ours, theirs] of pairs) expect(maxAbsDiff(out[ours]!, t.get(theirs)!), ours).toBeLessThan(TOL);
    const loss = out
      .imageEmbeds!.mul(t.get('r1')!)
      .sum()
      .add(out.textEmbeds!.mul(t.get('r2')!).sum())
      .add(out.logitsPerImage!.mul(t.get('r3')!).sum());
    expect(Math.abs(loss.item() - t.get('loss')!.item())).toBeLessThan(TOL);
    await loss.backward();
    const grads = await io('hf', 'grad.safetensors');
    const params = new Map(m.namedParameters());
    let n = 0;
    for (const [k, g] of grads) {
      expect(params.has(k), k).toBe(true);
      expect(maxAbsDiff(params.get(k)!.grad!, g), k).toBeLessThan(TOL);
      n++;
    }
    expect(n).toBe(params.size);
  });

  it('loads either half alone, with or without its projection head', async () => {
    const t = await io('hf');
    const vision = await et.nn.ClipVisionModel.fromPretrained(fx('hf'));
    expect(vision.withProjection).toBe(true);
    const v = await vision.forward(t.get('pixel_values')!);
    expect(maxAbsDiff(v.poolerOutput, t.get('vision_pooler_output')!)).toBeLessThan(TOL);
    const ie = t.get('image_embeds')!;
    expect(maxAbsDiff(v.imageEmbeds!.div(v.imageEmbeds!.norm(2, -1, true)), ie)).toBeLessThan(TOL);
    const bare = await et.nn.ClipVisionModel.fromPretrained(fx('hf'), { withProjection: false });
    expect((await bare.forward(t.get('pixel_values')!)).imageEmbeds).toBeNull();
    const text = await et.nn.ClipTextModel.fromPretrained(fx('hf'));
    const o = await text.forward({ inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')! });
    expect(maxAbsDiff(o.lastHiddenState, t.get('text_last_hidden_state')!)).toBeLessThan(TOL);
    expect(maxAbsDiff(o.textEmbeds!.div(o.textEmbeds!.norm(2, -1, true)), t.get('text_embeds')!)).toBeLessThan(TOL);
  });

  it('pools at the first EOS for a non-legacy eos_token_id (gelu, EOS also the padding id)', async () => {
    const m = await et.nn.ClipTextModel.fromPretrained(fx('text_eos'));
    expect(m.config.hidden_act).toBe('gelu');
    const t = await io('text_eos');
    const o = await m.forward({ inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')! });
    expect(maxAbsDiff(o.textEmbeds!, t.get('text_embeds')!)).toBeLessThan(TOL);
    expect(maxAbsDiff(o.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
  });
});

describe('LanguageBind towers (released folder layouts)', () => {
  for (const [dir, key, frames] of [
    ['lb_video', 'video', 4],
    ['lb_video3d', 'video', 4],
    ['lb_audio', 'audio', 1],
  ] as const) {
    it(`${dir}: the ${key} embedding and the language one equal the original's`, async () => {
      const t = await io(dir);
      const tower = await et.nn.ClipVisionModel.fromPretrained(fx(dir));
      if (dir === 'lb_audio') expect(tower.config.image_size).toEqual([8, 20]);
      if (dir === 'lb_video3d') expect(tower.config.tube_size).toBe(1);
      if (dir !== 'lb_audio') expect(tower.config.add_time_attn).toBe(true);
      const out = await tower.forward(t.get('pixel_values')!);
      expect(out.lastHiddenState.shape[0]).toBe(2 * frames);
      expect(maxAbsDiff(out.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
      expect(maxAbsDiff(out.poolerOutput, t.get('pooler_output')!)).toBeLessThan(TOL);
      expect(maxAbsDiff(bind(out.imageEmbeds!, 1.3), t.get(key)!)).toBeLessThan(TOL * 4);
      const text = await et.nn.ClipTextModel.fromPretrained(fx(dir));
      const l = (await text.forward({ inputIds: t.get('input_ids')!, attentionMask: t.get('attention_mask')! })).textEmbeds!;
      expect(maxAbsDiff(l.div(l.norm(2, -1, true)), t.get('language')!)).toBeLessThan(TOL);
      const full = await et.nn.ClipModel.fromPretrained(fx(dir));
      const f = await full.forward({ pixelValues: t.get('pixel_values')! });
      expect(maxAbsDiff(f.imageEmbeds!.mul(Math.exp(1.3)), t.get(key)!)).toBeLessThan(TOL * 4);
    });
  }

  for (const [dir, keep, frames] of [
    ['lb_video', 4, 4],
    ['lb_video3d', 6, 4],
    ['lb_audio', 5, 1],
  ] as const) {
    it(`${dir}: force_patch_dropout in training keeps the original's patches (same seed, same draws)`, async () => {
      const t = await io(dir);
      const ref = await io(dir, 'patch_dropout.safetensors');
      const prob = ref.get('prob')!.item(),
        seed = ref.get('seed')!.item();
      const raw = JSON.parse(fs.readFileSync(path.join(fx(dir), 'config.json'), 'utf8'));
      const tmp = tmpdir();
      fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify({ ...raw, vision_config: { ...raw.vision_config, force_patch_dropout: prob } }));
      fs.copyFileSync(path.join(fx(dir), 'pytorch_model.bin'), path.join(tmp, 'pytorch_model.bin'));
      const tower = await et.nn.ClipVisionModel.fromPretrained(tmp);
      expect(tower.config.force_patch_dropout).toBeCloseTo(prob, 6);
      tower.train();
      et.manualSeed(seed);
      const out = await tower.forward(t.get('pixel_values')!);
      expect(out.lastHiddenState.shape).toEqual([2 * frames, keep + 1, 32]);
      expect(maxAbsDiff(out.lastHiddenState, ref.get('last_hidden_state')!)).toBeLessThan(TOL);
      expect(maxAbsDiff(out.poolerOutput, ref.get('pooler_output')!)).toBeLessThan(TOL);
      // gradients flow through the kept patches
      await out.poolerOutput.square().sum().backward();
      const tower_ = tower.namedParameters().filter(([n]) => n.startsWith('vision_model.'));
      expect(tower_.filter(([, p]) => p.grad === null).map(([n]) => n)).toEqual([]);
      // evaluation drops nothing: the reference without dropout
      tower.eval();
      const full = await tower.forward(t.get('pixel_values')!);
      expect(maxAbsDiff(full.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
    });
  }

  for (const [dir, key, per] of [
    ['lb_video_lora', 'video', 4],
    ['lb_audio_lora', 'audio', 4],
  ] as const) {
    it(`${dir}: a peft-wrapped encoder merges (W += alpha/r·B·A) or stays LoRA, both equal to peft's output`, async () => {
      const t = await io(dir);
      const merged = await et.nn.ClipVisionModel.fromPretrained(fx(dir));
      expect(merged.namedParameters().some(([n]) => n.includes('lora_'))).toBe(false);
      expect(maxAbsDiff(bind((await merged.forward(t.get('pixel_values')!)).imageEmbeds!, 1.3), t.get(key)!)).toBeLessThan(TOL * 4);
      const kept = await et.nn.ClipVisionModel.fromPretrained(fx(dir), { lora: 'keep' });
      const lora = kept.namedParameters().filter(([n]) => n.includes('.lora_A.default.weight'));
      expect(lora.length).toBe(2 * per);
      if (key === 'video') expect(lora.every(([n]) => n.includes('.temporal_attn.'))).toBe(true);
      expect(kept.trainableParameters().length).toBe(4 * per);
      expect(maxAbsDiff(bind((await kept.forward(t.get('pixel_values')!)).imageEmbeds!, 1.3), t.get(key)!)).toBeLessThan(TOL * 4);
      // the adapters take gradients; the base weights do not
      const e = (await kept.forward(t.get('pixel_values')!)).imageEmbeds!;
      await e.square().sum().backward();
      expect(kept.trainableParameters().every((p) => p.grad !== null)).toBe(true);
      // without the adapters the output differs: the merge mattered
      const base = await et.nn.ClipVisionModel.fromPretrained(fx(dir.replace('_lora', '')));
      expect(
        maxAbsDiff((await base.forward(t.get('pixel_values')!)).imageEmbeds!, (await merged.forward(t.get('pixel_values')!)).imageEmbeds!),
      ).toBeGreaterThan(1e-3);
    });
  }
});

describe('CLIP bad input', () => {
  it('names the bad config field, input shape, frame count and patch grid', async () => {
    throwsWith(() => et.nn.ClipVisionModel.create({ image_size: [30, 0] as never, patch_size: 8 }), 'ERR_INVALID_ARG', /image_size/);
    throwsWith(() => et.nn.ClipVisionModel.create({ hidden_size: 30, num_attention_heads: 4 }), 'ERR_INVALID_ARG', /hidden_size/);
    throwsWith(() => et.nn.ClipTextModel.create({ hidden_act: 'swishy' }), 'ERR_INVALID_ARG', /hidden_act/);
    throwsWith(() => et.nn.ClipVisionModel.create({ force_patch_dropout: 1 }), 'ERR_INVALID_ARG', /force_patch_dropout/);
    throwsWith(() => et.nn.ClipVisionModel.create({ force_patch_dropout: -0.1 }), 'ERR_INVALID_ARG', /force_patch_dropout/);
    const v = et.nn.ClipVisionModel.create({
      hidden_size: 16,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      image_size: [16, 24],
      patch_size: 8,
      add_time_attn: true,
      num_frames: 2,
    });
    const ok = await v.forward(et.randn([1, 3, 2, 16, 24]));
    expect(ok.lastHiddenState.shape).toEqual([2, 7, 16]);
    await rejectsWith(() => v.forward(et.randn([1, 3, 16, 16])), 'ERR_INVALID_ARG', /16 × 24/);
    await rejectsWith(() => v.forward(et.randn([1, 1, 16, 24])), 'ERR_INVALID_ARG', /pixelValues/);
    await rejectsWith(() => v.forward(et.randn([1, 3, 3, 16, 24])), 'ERR_INVALID_ARG', /num_frames/);
    await rejectsWith(() => v.forward(et.zeros([1, 3, 16, 24], { dtype: 'int64' })), 'ERR_INVALID_ARG', /float/);
    const tx = et.nn.ClipTextModel.create({
      vocab_size: 20,
      hidden_size: 16,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      max_position_embeddings: 6,
      eos_token_id: 19,
    });
    await rejectsWith(() => tx.forward(et.tensor([[1, 2, 25]], { dtype: 'int64' })), 'ERR_INVALID_ARG', /token ids/);
    await rejectsWith(() => tx.forward(et.zeros([1, 7], { dtype: 'int64' })), 'ERR_INVALID_ARG', /max_position_embeddings/);
    const clip = et.nn.ClipModel.create({
      projection_dim: 8,
      text_config: { vocab_size: 20, hidden_size: 16, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 },
      vision_config: { hidden_size: 16, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, image_size: 16, patch_size: 8 },
    });
    await rejectsWith(() => clip.forward({}), 'ERR_INVALID_ARG', /neither/);
    const only = await clip.forward({ pixelValues: et.randn([2, 3, 16, 16]) });
    expect(only.imageEmbeds!.shape).toEqual([2, 8]);
    expect(only.logitsPerImage).toBeNull();
  });

  it('a LoRA release whose adapter lacks lora_B, or a missing tower key, is a coded error naming it', async () => {
    const dir = tmpdir();
    for (const f of ['config.json']) fs.copyFileSync(path.join(fx('lb_video_lora'), f), path.join(dir, f));
    const sd = await et.nn.loadCheckpoint(fx('lb_video_lora'));
    const cut = new Map([...sd].filter(([k]) => !k.endsWith('layers.1.temporal_attn.v_proj.lora_B.default.weight')));
    await et.io.saveSafetensors(path.join(dir, 'model.safetensors'), cut);
    await rejectsWith(() => et.nn.ClipVisionModel.fromPretrained(dir), 'ERR_STATE_DICT', /temporal_attn\.v_proj.*lora_B/);
    const dir2 = tmpdir();
    fs.copyFileSync(path.join(fx('lb_video'), 'config.json'), path.join(dir2, 'config.json'));
    const sd2 = await et.nn.loadCheckpoint(fx('lb_video'));
    sd2.delete('vision_model.encoder.layers.0.temporal_embedding');
    await et.io.saveSafetensors(path.join(dir2, 'model.safetensors'), sd2);
    await rejectsWith(() => et.nn.ClipVisionModel.fromPretrained(dir2), 'ERR_STATE_DICT', /temporal_embedding/);
  });
});
