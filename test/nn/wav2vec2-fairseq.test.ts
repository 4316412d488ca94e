// Wav2Vec2Model from fairseq and fairseq2 (seamless) checkpoint names: the HF fixtures re-saved by
// scripts/fixtures/wav2vec2_fairseq.py under each code base's names (its own renaming, and the
// positional conv's weight norm re-derived as weight_g / weight_v), loaded through the converter
// tables, against HF Wav2Vec2Model's hidden states in <model>/io.safetensors.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith, tmpdir } from '../helpers';

const fx = (...p: string[]) => path.join(FIXTURES, 'wav2vec2', ...p);
const TOL = 1e-4;
const hfConfig = (name: string) => JSON.parse(fs.readFileSync(fx(name, 'config.json'), 'utf8')) as Partial<et.nn.Wav2Vec2Config>;

async function expectHfOutputs(m: et.nn.Wav2Vec2Model, name: string): Promise<number> {
  const t = (await et.io.loadSafetensors(fx(name, 'io.safetensors'))).tensors;
  const out = await m.forward({ inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask'), outputHiddenStates: true });
  let worst = maxAbsDiff(out.lastHiddenState, t.get('last_hidden_state')!);
  out.hiddenStates!.forEach((h, i) => {
    worst = Math.max(worst, maxAbsDiff(h, t.get(`hidden_states.${i}`)!));
  });
  expect(worst).toBeLessThan(TOL);
  return worst;
}

describe('Wav2Vec2Model from fairseq / fairseq2 names = HF Wav2Vec2Model', () => {
  for (const name of ['xlsr', 'base']) {
    for (const dialect of ['fairseq', 'fairseq2'] as const) {
      it(`${name} from ${dialect} names: every hidden state within ${TOL}`, async () => {
        const file = fx(name, `${dialect}.pt`);
        const raw = (await et.io.loadTorchFile(file)) as Map<string, unknown>;
        expect(et.nn.wav2vec2Dialect((raw.get('model') as Map<string, et.Tensor>).keys())).toBe(dialect);
        // the config comes from the config.json beside the file, or is given
        const m = await et.nn.Wav2Vec2Model.fromPretrained(file);
        await expectHfOutputs(m, name);
        const given = await et.nn.Wav2Vec2Model.fromPretrained(file, { config: hfConfig(name) });
        await expectHfOutputs(given, name);
      });
    }
  }

  it('drops the pretraining and CTC heads, and the mask embedding when the config has none', async () => {
    const sd = ((await et.io.loadTorchFile(fx('base', 'fairseq.pt'))) as Map<string, Map<string, et.Tensor>>).get('model')!;
    const { sd: ours, origin } = et.nn.convertWav2Vec2StateDict(new Map(sd), 'fairseq');
    expect([...ours.keys()].some((k) => /quantizer|project_q|final_proj/.test(k))).toBe(false);
    expect(origin.get('encoder.layers.1.feed_forward.intermediate_dense.weight')).toBe('encoder.layers.1.fc1.weight');
    expect(origin.get('encoder.pos_conv_embed.conv.parametrizations.weight.original0')).toBe('encoder.pos_conv.0.weight_g');
    const noMask = await et.nn.Wav2Vec2Model.fromPretrained(fx('base', 'fairseq2.pt'), { config: { ...hfConfig('base'), mask_time_prob: 0 } });
    expect(noMask.stateDict().has('masked_spec_embed')).toBe(false);
    await expectHfOutputs(noMask, 'base');
    // a checkpoint without the mask embedding loads into a model without one
    const d = tmpdir();
    const f2 = ((await et.io.loadTorchFile(fx('base', 'fairseq2.pt'))) as Map<string, Map<string, et.Tensor>>).get('model')!;
    f2.delete('masker.temporal_mask_embed');
    fs.copyFileSync(fx('base', 'config.json'), path.join(d, 'config.json'));
    await et.io.saveSafetensors(path.join(d, 'model.safetensors'), f2);
    const unmasked = await et.nn.Wav2Vec2Model.fromPretrained(d);
    expect(unmasked.stateDict().has('masked_spec_embed')).toBe(false);
    await expectHfOutputs(unmasked, 'base');
    const xlsr = ((await et.io.loadTorchFile(fx('xlsr', 'fairseq.pt'))) as Map<string, Map<string, et.Tensor>>).get('model')!;
    expect([...xlsr.keys()].every((k) => k.startsWith('w2v_encoder.'))).toBe(true);
    const conv = et.nn.convertWav2Vec2StateDict(new Map(xlsr), 'fairseq');
    expect(conv.sd.has('feature_extractor.conv_layers.2.layer_norm.weight')).toBe(true);
    expect(conv.sd.has('lm_head.weight')).toBe(false);
  });

  it('names unknown, missing and wrong-shape keys, and asks for a config', async () => {
    const d = tmpdir();
    const sd = ((await et.io.loadTorchFile(fx('xlsr', 'fairseq2.pt'))) as Map<string, Map<string, et.Tensor>>).get('model')!;
    fs.copyFileSync(fx('xlsr', 'config.json'), path.join(d, 'config.json'));
    const save = async (name: string, m: Map<string, et.Tensor>) => {
      const f = path.join(d, name);
      await et.io.saveSafetensors(f, m);
      return f;
    };

    const unknown = new Map(sd);
    unknown.set('encoder.layers.0.self_attn.rel_pos_bias.weight', et.zeros([4]));
    await rejectsWith(
      et.nn.Wav2Vec2Model.fromPretrained(await save('unknown.safetensors', unknown)),
      'ERR_STATE_DICT',
      /unknown keys 'encoder\.layers\.0\.self_attn\.rel_pos_bias\.weight'/,
    );
    // not strict: the unknown key is ignored
    const lenient = await et.nn.Wav2Vec2Model.fromPretrained(await save('unknown2.safetensors', unknown), { strict: false });
    await expectHfOutputs(lenient, 'xlsr');

    const missing = new Map(sd);
    missing.delete('encoder.layers.2.ffn.inner_proj.weight');
    await rejectsWith(
      et.nn.Wav2Vec2Model.fromPretrained(await save('missing.safetensors', missing)),
      'ERR_STATE_DICT',
      /missing keys: 'encoder\.layers\.2\.feed_forward\.intermediate_dense\.weight'/,
    );

    const wrong = new Map(sd);
    wrong.set('encoder_frontend.model_dim_proj.weight', et.zeros([32, 8]));
    await rejectsWith(
      et.nn.Wav2Vec2Model.fromPretrained(await save('wrong.safetensors', wrong)),
      'ERR_STATE_DICT',
      /wrong shape for fairseq2 'encoder_frontend\.model_dim_proj\.weight' \(our 'feature_projection\.projection\.weight'\): checkpoint \[32,8\] vs model \[32,16\]/,
    );

    const twice = new Map(sd);
    twice.set('encoder_frontend.layer_norm.weight', et.ones([32]));
    await rejectsWith(
      et.nn.Wav2Vec2Model.fromPretrained(await save('twice.safetensors', twice)),
      'ERR_STATE_DICT',
      /'encoder\.layer_norm\.weight' and 'encoder_frontend\.layer_norm\.weight' both convert to 'encoder\.layer_norm\.weight'/,
    );

    const alone = tmpdir();
    fs.copyFileSync(fx('xlsr', 'fairseq2.pt'), path.join(alone, 'xlsr2.pt'));
    await rejectsWith(() => et.nn.Wav2Vec2Model.fromPretrained(path.join(alone, 'xlsr2.pt')), 'ERR_INVALID_ARG', /WAV2VEC2_XLSR2_1B_V2/);
    await rejectsWith(() => et.nn.Wav2Vec2Model.fromPretrained(path.join(alone, 'xlsr2.pt'), { config: 7 as never }), 'ERR_INVALID_ARG', /config/);
    throwsWith(() => et.nn.convertWav2Vec2StateDict(new Map(), 'hf' as never), 'ERR_INVALID_ARG', /dialect/);
  });

  it("WAV2VEC2_XLSR2_1B_V2 is seamless's xlsr2_1b_v2: 48 × 1280, 50 frames per second", () => {
    const c = { ...et.nn.WAV2VEC2_DEFAULTS, ...et.nn.WAV2VEC2_XLSR2_1B_V2 };
    expect([c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size]).toEqual([1280, 48, 16, 5120]);
    expect(c.conv_stride.reduce((a, b) => a * b, 1)).toBe(320);
    expect([c.feat_extract_norm, c.do_stable_layer_norm, c.conv_bias]).toEqual(['layer', true, true]);
  });
});
