import { describe, it, expect } from 'vitest';
import * as et from '../../lib/index';
import { binding } from '../../lib/native';
import { WHISPER_DEFAULTS } from '../../lib/nn/whisper';

// Tensors cross the bridge by name (native/models/model.h's Inputs / Outputs): the native model
// reads each input by name and must read every name sent, so a misspelt input is an error naming
// it, never an input silently left out.
describe('named tensors across the bridge', () => {
  const cfg = {
    ...WHISPER_DEFAULTS,
    num_mel_bins: 8,
    d_model: 16,
    encoder_layers: 1,
    encoder_attention_heads: 2,
    encoder_ffn_dim: 32,
    max_source_positions: 8,
  };
  const code = async (p: Promise<unknown>) =>
    p.then(
      () => 'resolved',
      (e: et.EmotorchError) => `${e.code}: ${e.message}`,
    );

  it('inputs and outputs are named; an unread or missing name is an error naming it', async () => {
    const m = binding.createModule('whisper_encoder', cfg, null, null);
    const x = et.randn([1, 8, 10]);
    const out = await m.forward({ input_features: x.handle });
    expect(Object.keys(out)).toEqual(['last_hidden_state']);
    expect(new et.Tensor(out.last_hidden_state).shape).toEqual([1, 5, 16]);
    expect(await code(m.forward({ input_features: x.handle, input_feature: x.handle }))).toMatch(/^ERR_INVALID_ARG: .*takes no input 'input_feature'/);
    expect(await code(m.forward({ inputFeatures: x.handle }))).toMatch(/^ERR_INVALID_ARG: .*needs input 'input_features'/);
    expect(await code(m.forward({ input_features: null }))).toMatch(/needs input 'input_features'/);
    expect(() => m.forward([x.handle] as never)).toThrow(/object of named tensors/);
    m.dispose();
  });

  it('an optional input given as null is not given; outputs not computed are left out', async () => {
    const lin = binding.createModule(
      'roberta',
      {
        ...(await import('../../lib/nn/roberta')).ROBERTA_DEFAULTS,
        vocab_size: 20,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        max_position_embeddings: 16,
        add_pooling_layer: false,
      },
      null,
      null,
    );
    const ids = et.tensor([[3, 4, 5]], { dtype: 'int64' });
    const out = await lin.forward({ input_ids: ids.handle, attention_mask: null, token_type_ids: null, inputs_embeds: null });
    expect(Object.keys(out).sort()).toEqual(['last_hidden_state']);
    lin.dispose();
  });
});
