// emotorch side of `npm run bench -- models`: one forward of each encoder at a realistic small
// size, and LLaMA decoding, against HF transformers eager from Python (bench/torch_worker.py).
// Both sides use random weights of the same configuration, batch 1, no grad.
import * as et from 'emotorch';

const whisperBase = {
  num_mel_bins: 80,
  d_model: 512,
  encoder_layers: 6,
  encoder_attention_heads: 8,
  encoder_ffn_dim: 2048,
  decoder_layers: 1,
  decoder_attention_heads: 8,
  decoder_ffn_dim: 2048,
};
const robertaBase = {
  vocab_size: 50265,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  max_position_embeddings: 514,
  type_vocab_size: 1,
  pad_token_id: 1,
};
const wavlmBase = { hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072 };
const llamaSmall = {
  vocab_size: 32000,
  hidden_size: 512,
  intermediate_size: 1376,
  num_hidden_layers: 4,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  max_position_embeddings: 512,
};

/** No grad, under bfloat16 autocast with --bf16. */
const amp = (cfg, f) => (cfg.bf16 ? () => et.autocast({ device: 'cpu', dtype: 'bfloat16' }, f) : f);
const noGrad = (f, cfg = {}) => amp(cfg, () => et.noGrad(f));
/** The model and inputs on the bench's device (--device). */
const on = (cfg, m) => m.to({ device: cfg.device });
const at = (cfg, t) => t.to({ device: cfg.device });

export const cases = {
  whisper: {
    config: { config: whisperBase, warmup: 1, steps: 2, trials: 3 },
    describe: () => 'Whisper encoder, base dims (512 × 6 layers), 30 s (3000 frames)',
    async setup(cfg) {
      et.manualSeed(0);
      const m = await on(cfg, et.nn.WhisperEncoder.create(cfg.config).eval());
      const x = at(cfg, et.randn([1, 80, 3000]));
      return noGrad(() => m.forward(x), cfg);
    },
  },
  roberta: {
    config: { config: robertaBase, tokens: 128, warmup: 2, steps: 5, trials: 3 },
    describe: (c) => `RoBERTa, base dims (768 × 12 layers), ${c.tokens} tokens`,
    async setup(cfg) {
      const m = await on(cfg, et.nn.RobertaModel.create(cfg.config, { addPoolingLayer: false }).eval());
      const ids = at(cfg, et.randint(3, cfg.config.vocab_size, [1, cfg.tokens]));
      return noGrad(() => m.forward({ inputIds: ids }), cfg);
    },
  },
  wavlm: {
    config: { config: wavlmBase, samples: 160000, warmup: 1, steps: 2, trials: 3 },
    describe: () => 'WavLM, base dims (768 × 12 layers), 10 s of audio',
    async setup(cfg) {
      const m = await on(cfg, et.nn.WavLMModel.create(cfg.config).eval());
      const x = at(cfg, et.randn([1, cfg.samples]));
      return noGrad(() => m.forward({ inputValues: x }), cfg);
    },
  },
  beats: {
    config: {
      config: {
        embed_dim: 512,
        encoder_embed_dim: 768,
        encoder_layers: 12,
        encoder_attention_heads: 12,
        encoder_ffn_embed_dim: 3072,
        conv_pos: 128,
        conv_pos_groups: 16,
      },
      frames: 998,
      warmup: 1,
      steps: 2,
      trials: 3,
    },
    describe: (c) =>
      `BEATs, base dims (768 × 12 layers, deep norm, gated relative bias), 10 s (${c.frames} fbank frames → 496 tokens); Python side: an eager PyTorch port of the original code`,
    async setup(cfg) {
      const m = await on(
        cfg,
        et.nn.BeatsEncoder.create({ ...cfg.config, deep_norm: true, relative_position_embedding: true, gru_rel_pos: true, max_distance: 800 }).eval(),
      );
      const x = at(cfg, et.randn([1, cfg.frames, 128]));
      return noGrad(() => m.forward(x), cfg);
    },
  },
  llama: {
    config: { config: llamaSmall, prompt: 16, new_tokens: 64, warmup: 1, steps: 2, trials: 3 },
    describe: (c) => `LLaMA 4 layers × 512 hidden: greedy decoding of ${c.new_tokens} tokens after a ${c.prompt}-token prompt (KV cache)`,
    async setup(cfg) {
      const m = await on(cfg, et.nn.LlamaForCausalLM.create(cfg.config).eval());
      const ids = at(cfg, et.randint(3, cfg.config.vocab_size, [1, cfg.prompt]));
      return amp(cfg, () => m.generate({ inputIds: ids }, { maxNewTokens: cfg.new_tokens, minNewTokens: cfg.new_tokens, eosTokenId: 2, padTokenId: 0 }));
    },
  },
};
