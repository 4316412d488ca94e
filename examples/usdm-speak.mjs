// USDM speaks (naver-ai/usdm's src/decoder): speech units → the token Voicebox (flow matching, Heun
// steps, classifier-free guidance, the reference's voice in front) → BigVGAN → a 22.05 kHz wav, as
// the original's reconstruct_speech. Toy run on the CPU with tiny random models (no downloads,
// seconds):   npm run example:usdm-speak   (STEPS=… for the flow steps)
//   - a 2 s "voice" (a gliding tone with vibrato and a little noise) is generated at 16 kHz;
//   - its 50 Hz units come from a tiny random XLS-R-shaped encoder and 64 centroids drawn from its
//     own frames (et.audio.UnitExtractor; USDM: XLS-R 1B layer 35, 10 000 centroids);
//   - the "answer" is the first second's units; the whole clip, resampled to 22.05 kHz, is the
//     reference voice;
//   - et.systems.usdm.UsdmSpeaker over a tiny et.nn.Voicebox (64 units, width 64, 4 layers) and a
//     tiny et.nn.BigVGAN (64 channels, the released upsampling: 256 samples a frame) speaks it; the
//     wav is written, read back, and its rate and length checked (units · 441 samples, cut to whole
//     hops of 256). Random weights speak noise: this shows the path, not a voice.
// With the released models: et.systems.usdm.UsdmSpeaker.fromPretrained('xlsr-token-Voicebox/',
// 'bigvgan_22khz_80band/') (346M + 112M parameters; about 1.5 GB in float32).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as et from 'emotorch';

const STEPS = Number(process.env.STEPS ?? 15); // the Streamlit demo's default; inference.py uses 50
et.manualSeed(0);

// ---- a 2 s voice at 16 kHz
const SR = 16000;
const clip = new Float32Array(2 * SR);
for (let i = 0, ph = 0; i < clip.length; i++) {
  const t = i / SR;
  ph += (2 * Math.PI * (180 + 60 * t + 8 * Math.sin(2 * Math.PI * 5 * t))) / SR;
  clip[i] = 0.4 * Math.sin(ph) + 0.15 * Math.sin(2 * ph) + 0.01 * (Math.random() - 0.5);
}

// ---- units: a tiny XLS-R-shaped encoder (50 frames a second) and 64 centroids from its frames
const encoder = et.nn.Wav2Vec2Model.create({
  conv_dim: [32, 32, 32, 32, 32, 32, 32],
  conv_kernel: [10, 3, 3, 3, 3, 2, 2],
  conv_stride: [5, 2, 2, 2, 2, 2, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: 64,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  intermediate_size: 128,
  num_conv_pos_embeddings: 16,
  num_conv_pos_embedding_groups: 4,
}).eval();
const wave = et.tensor(clip).reshape([1, clip.length]);
const { hiddenStates } = await et.noGrad(() => encoder.forward({ inputValues: wave, outputHiddenStates: true }));
const frames = hiddenStates[2].select(0, 0);
const K = 64;
const centroids = et.stack(Array.from({ length: K }, (_, k) => frames.select(0, Math.floor((k * frames.shape[0]) / K))));
const extractor = new et.audio.UnitExtractor({ encoder, layer: 2, centroids });
const [units] = await et.noGrad(() => extractor.predict({ inputValues: wave }));
console.log(`the clip: ${clip.length / SR} s → ${units.length} units (${units.slice(0, 12).join(' ')} …)`);

// ---- the decoder: tiny Voicebox + BigVGAN (random weights), the clip as the reference voice
const voicebox = et.nn.Voicebox.create({
  n_tokens: K,
  embedding_dim: 32,
  hidden_size: 64,
  intermediate_size: 128,
  num_attention_heads: 4,
  num_hidden_layers: 4,
  convpos_groups: 4,
}).eval();
const vocoder = et.nn.BigVGAN.create({ upsample_initial_channel: 64 }).eval();
const speaker = new et.systems.usdm.UsdmSpeaker(voicebox, vocoder);
const answerUnits = units.slice(0, 50); // one second
const reference = { units, samples: et.audio.resample(clip, SR, 22050, { method: 'torchaudio' }), sampleRate: 22050 };
const t0 = Date.now();
const spoken = await et.noGrad(() => speaker.speak(answerUnits, { reference, steps: STEPS, seed: 0 }));
const took = (Date.now() - t0) / 1000;
console.log(`spoke ${answerUnits.length} units in ${took.toFixed(2)} s (${STEPS} flow steps: ${(STEPS + 1) >> 1} Heun steps)`);

// ---- written as the original writes it (scipy: float32 at the vocoder's rate), read back, checked
const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'usdm-speak-')), 'answer.wav');
fs.writeFileSync(file, et.audio.encodeWav(spoken.samples, spoken.sampleRate, { format: 'float32' }));
const back = await et.audio.readWav(file, { sampleRate: null });
const expected = Math.floor((answerUnits.length * 441) / 256) * 256;
console.log(
  `${file}: ${back.sampleRate} Hz, ${back.samples.length} samples (${back.duration.toFixed(3)} s), peak ${Math.max(...back.samples.map(Math.abs)).toFixed(3)}`,
);
if (back.sampleRate !== 22050 || back.samples.length !== expected || !back.samples.every(Number.isFinite))
  throw new Error(`expected ${expected} finite samples at 22050 Hz, got ${back.samples.length} at ${back.sampleRate}`);
console.log('ok: the wav has the rate and length the original writes');
