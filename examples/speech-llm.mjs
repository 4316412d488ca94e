// A miniature SALMONN pipeline with random weights, to show the model zoo working together:
// audio → Whisper log-mel + BEATs fbank → both encoders → window-level Q-Former (1 query per
// window) → projection → LLaMA with LoRA, prompted with the audio tokens → generate.
// Real use loads checkpoints with fromPretrained(dir) instead of create(...).
//   npm run example:speech-llm
import * as et from 'emotorch';

et.manualSeed(0);
const sr = 16000;
const n = 3 * sr; // 3 s of a gliding tone
const wave = new Float32Array(n);
for (let i = 0; i < n; i++) wave[i] = 0.3 * Math.sin(2 * Math.PI * (200 + 100 * (i / n)) * (i / sr));

// Front ends (no 30 s padding: the encoder takes the real length)
const mel = await et.audio.whisperLogMel(wave, { padTo30s: false }); // (1, 80, 300)
const fbank = await et.audio.kaldiFbank(wave, { beats: true }); // (1, 298, 128)
console.log('log-mel', mel.shape, 'fbank', fbank.shape);

// Encoders (tiny sizes)
const whisper = et.nn.WhisperEncoder.create({ d_model: 64, encoder_layers: 2, encoder_attention_heads: 4, encoder_ffn_dim: 128 }).eval();
const beats = et.nn.BeatsEncoder.create({
  embed_dim: 32,
  encoder_embed_dim: 48,
  encoder_layers: 2,
  encoder_attention_heads: 4,
  encoder_ffn_embed_dim: 96,
  conv_pos: 16,
  conv_pos_groups: 4,
  deep_norm: true,
  relative_position_embedding: true,
  gru_rel_pos: true,
}).eval();
const { lastHiddenState: speech } = await et.noGrad(() => whisper.forward({ inputFeatures: mel })); // (1, 150, 64)
const { lastHiddenState: audio } = await et.noGrad(() => beats.forward({ inputFeatures: fbank })); // (1, 144, 48)
// SALMONN: BEATs tokens zero-padded on time to Whisper's length, then concatenated on features.
const T = speech.shape[1];
const aligned = audio.shape[1] >= T ? audio.slice(1, 0, T) : et.cat([audio, et.zeros([1, T - audio.shape[1], 48])], 1);
const frames = et.cat([speech, aligned], 2); // (1, 150, 112)

// Window-level Q-Former: windows of 17 frames, stride 17, each its own batch item, 1 query each.
const win = 17;
const windows = [];
for (let s = 0; s + win <= T; s += win) windows.push(frames.slice(1, s, s + win));
const qformer = et.nn.QFormer.create({
  hidden_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 96,
  encoder_hidden_size: 112,
  cross_attention_frequency: 1,
  num_query_tokens: 1,
});
const { lastHiddenState: q } = await qformer.forward({ encoderHiddenStates: et.cat(windows, 0) }); // (windows, 1, 48)
const llm = et.nn.LlamaForCausalLM.create({
  vocab_size: 100,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
});
const proj = et.nn.Linear.create({ in_features: 48, out_features: 64 });
const audioTokens = (await proj.forward(q)).reshape([1, -1, 64]); // (1, windows, 64)
console.log(`${windows.length} windows → ${audioTokens.shape[1]} audio tokens`);

// LoRA on the LLM; only adapters (and the Q-Former / projection, if trained) learn.
const wrapped = et.nn.applyLora(llm, { r: 8, alpha: 32, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] });
console.log(`LoRA on ${wrapped.length} layers; trainable LLM parameters: ${llm.numParameters(true)} of ${llm.numParameters()}`);

// Prompt = BOS + audio tokens + instruction tokens (ids here are arbitrary: no tokenizer in this demo).
const bos = await llm.embed(et.tensor([[1]], { dtype: 'int64' }));
const instr = await llm.embed(et.tensor([[5, 6, 7]], { dtype: 'int64' }));
const prompt = et.cat([bos, audioTokens, instr], 1);
llm.eval();
const { newTokens } = await et.noGrad(() => llm.generate({ inputsEmbeds: prompt }, { maxNewTokens: 8, numBeams: 4, eosTokenId: 2 }));
console.log('generated ids', newTokens.toArray());
