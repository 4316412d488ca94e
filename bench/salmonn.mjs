// emotorch side of `npm run bench -- salmonn`: one LoRA training step of a SALMONN-shaped model at
// a CPU-feasible size (Whisper-base encoder, BEATs-base, the original's Q-Former: bert-base sizes,
// 2 layers, one query per 17-frame window; a 4-layer 1024-wide LLaMA with the 32000-token
// vocabulary, LoRA r 8 / alpha 32 / dropout 0.1 on q_proj, v_proj), batch 2 × 10 s of audio: Whisper
// features, forward, loss, backward, AdamW on the trainable tensors (norms, Q-Former, query token,
// projection, LoRA). The Python side is scripts/fixtures/salmonn.py's reference (the original
// salmonn.py forward on HF modules and that file's BEATs) with the same sizes and step, in
// bench/torch_worker.py. Random weights on both sides, train mode, float32.
import * as et from 'emotorch';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
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
const beatsBase = {
  input_patch_size: 16,
  embed_dim: 512,
  conv_bias: false,
  encoder_layers: 12,
  encoder_embed_dim: 768,
  encoder_ffn_embed_dim: 3072,
  encoder_attention_heads: 12,
  deep_norm: true,
  conv_pos: 128,
  conv_pos_groups: 16,
  relative_position_embedding: true,
  num_buckets: 320,
  max_distance: 800,
  gru_rel_pos: true,
  dropout: 0,
  attention_dropout: 0,
  activation_dropout: 0,
  dropout_input: 0,
};
const llama4x1024 = {
  vocab_size: 32000,
  hidden_size: 1024,
  intermediate_size: 2816,
  num_hidden_layers: 4,
  num_attention_heads: 16,
  num_key_value_heads: 16,
  max_position_embeddings: 2048,
};
const qformer = {
  hidden_size: 768,
  num_hidden_layers: 2,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
};

export const cases = {
  salmonn: {
    config: {
      whisper: whisperBase,
      beats: beatsBase,
      llm: llama4x1024,
      qformer,
      lora_rank: 8,
      lora_alpha: 32,
      lora_dropout: 0.1,
      batch: 2,
      seconds: 10,
      instruction: 'Describe the emotion of the speaker in one word.',
      target: 'The speaker starts calm, grows angry in the second turn and ends sad and tired.',
      warmup: 1,
      steps: 1,
      trials: 5,
    },
    describe: (c) =>
      `SALMONN LoRA training step: Whisper-base + BEATs-base + Q-Former (768, 2 layers, 88 windows) + LLaMA 4 × 1024 (LoRA r ${c.lora_rank}), batch ${c.batch} × ${c.seconds} s; features, forward, backward, AdamW`,
    async setup(cfg) {
      et.manualSeed(0);
      const tokenizer = await et.data.Tokenizer.fromFile(path.join(here, '..', 'test', 'fixtures', 'tokenizers', 'llama', 'tokenizer.json'));
      const model = new et.systems.salmonn.Salmonn(
        {
          whisper: et.nn.WhisperEncoder.create(cfg.whisper),
          beats: et.nn.BeatsEncoder.create(cfg.beats),
          llm: et.nn.LlamaForCausalLM.create(cfg.llm),
          tokenizer,
        },
        { qformer: cfg.qformer, lora_rank: cfg.lora_rank, lora_alpha: cfg.lora_alpha, lora_dropout: cfg.lora_dropout },
      ).train();
      await model.to({ device: cfg.device });
      const opt = new et.optim.AdamW(model.trainableParameters(), { lr: 1e-4 });
      const n = cfg.seconds * 16000;
      const audio = Array.from({ length: cfg.batch }, () => et.randn([n]).mul(0.1).dataSync());
      const batch = { audio, instruction: audio.map(() => cfg.instruction), target: audio.map(() => cfg.target) };
      return async function step() {
        // with --bf16 the forward under bfloat16 autocast (the backward and the optimizer outside it)
        const { loss } = await (cfg.bf16 ? et.autocast({ device: 'cpu', dtype: 'bfloat16' }, () => model.forward(batch)) : model.forward(batch));
        await loss.backward();
        await opt.step();
        opt.zeroGrad();
        return loss;
      };
    },
  },
};
