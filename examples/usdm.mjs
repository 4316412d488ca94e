// USDM (naver-ai/usdm, seed 001): speech units from audio, unit–text SFT of a Mistral/LLaMA-family
// decoder with the unit vocabulary, and the original's three-stage inference.
//
// Toy run on the CPU (no downloads, under a minute):   npm run example:usdm   (STEPS=… TRAIN=… LAYER=…)
//   - "speech": each word of a small vocabulary is a sound of its own (two tones and a buzz, 0.16 s,
//     20–60 ms pauses). The user's clips vary (three voices, loudness, noise, pauses); the agent
//     speaks with one fixed voice, as a TTS would.
//   - units: a tiny random XLS-R-shaped encoder (et.nn.Wav2Vec2Model: XLS-R's seven layer-normed
//     convs at 32 channels, 50 frames/s, 3 stable-layer-norm layers of 64) and 64 k-means centroids
//     drawn at random from frames of the generated speech, read at layer 2 (USDM: layer 35 of
//     XLS-R 1B, 10 000 centroids) by et.audio.UnitExtractor;
//   - dialogue pairs: the user says "<adjective> <noun>" and the agent answers "the <noun> is
//     <adjective>". Two held-out sets: new recordings (new user voices) of trained word pairs, and
//     10 of the 64 word pairs never trained on;
//   - SFT examples from (user audio, transcript, response, response audio) with
//     et.systems.usdm.usdmSftExamples (the original template and label masking), a tiny random LLaMA
//     with the unit vocabulary as et.systems.usdm.Usdm, full fine-tune with et.train.Trainer;
//   - before and after, on each held-out set: token accuracy on the supervised tokens (transcript,
//     response text, response units) and the three greedy stages (usdm.infer): user units →
//     transcript → response → response units, counted when the texts are exactly right.
//   A model this small learns the unit → transcript mapping of new recordings, the response rule
//   and the response units; transcribing word pairs it never heard together is harder for it (the
//   transcript of an unseen pair is often a trained pair that shares a word).
// The tokenizer is a small stand-in laid out like USDM's Mistral vocabulary (see below).
// With the real model: et.nn.Wav2Vec2Model.fromPretrained('xlsr2_1b_v2.pt', { config: et.nn.WAV2VEC2_XLSR2_1B_V2 }),
// new et.audio.UnitExtractor({ encoder, layer: 35, centroids: 'kmeans_10k.npy' }), and
// et.systems.usdm.Usdm.fromPretrained('USDM-DailyTalk/') with its tokenizer (et.data.Tokenizer).
import * as os from 'os';
import * as et from 'emotorch';

const env = process.env;
const STEPS = Number(env.STEPS ?? 300);
const TRAIN = Number(env.TRAIN ?? 216); // training pairs (renditions of the 54 trained word pairs)
et.manualSeed(0);
et.setNumThreads(Math.max(1, Math.min(4, os.cpus().length)));
let seed = 20240613;
const rand = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const t0 = Date.now();
const secs = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;

// ---- words, their sounds, dialogue pairs
const ADJ = ['red', 'blue', 'green', 'big', 'small', 'old', 'warm', 'quiet'];
const NOUN = ['cat', 'dog', 'bird', 'fish', 'car', 'tree', 'house', 'boat'];
const WORDS = [...ADJ, ...NOUN, 'the', 'is'];
const SR = 16000,
  FRAME = 320; // 20 ms: the encoder's 50 frames per second
// A word: two tones and a buzz for 0.16 s. A random encoder is not invariant to phase as a trained
// XLS-R is, so every frequency is a multiple of 50 Hz and words start on the 20 ms frame grid:
// each frame of a word then looks alike to it. Three user "voices" shift the first tone.
const soundOf = (w, voice) => {
  const k = WORDS.indexOf(w);
  return { f1: 50 * (4 + k + voice), f2: 50 * (20 + ((5 * k) % 17)), buzz: 50 * (1 + (k % 3)) };
};
function speak(words, { voice = 0, gain = 0.4, noise = 0, gap = 2 } = {}) {
  const word = 8 * FRAME,
    silence = gap * FRAME;
  const out = new Float32Array(2 * FRAME + words.length * (word + silence));
  let p = 2 * FRAME;
  for (const w of words) {
    const { f1, f2, buzz } = soundOf(w, voice);
    for (let i = 0; i < word; i++, p++) {
      const t = i / SR,
        ramp = Math.min(1, i / 80, (word - i) / 80);
      out[p] =
        gain * ramp * (0.6 * Math.sin(2 * Math.PI * f1 * t) + 0.3 * Math.sin(2 * Math.PI * f2 * t) + 0.2 * Math.sign(Math.sin(2 * Math.PI * buzz * t + 0.1)));
    }
    p += silence;
  }
  for (let i = 0; i < out.length; i++) out[i] += noise * (rand() * 2 - 1);
  return out;
}
// user clips vary in voice, loudness, noise and pauses; the agent speaks with one voice, as a TTS would
const userVoice = () => ({ voice: Math.floor(rand() * 3), gain: 0.2 + 0.4 * rand(), noise: 0.005 * rand(), gap: 1 + Math.floor(rand() * 3) });
const AGENT_VOICE = { voice: 0, gain: 0.4, noise: 0, gap: 2 };

const combos = ADJ.flatMap((a) => NOUN.map((n) => [a, n]));
// hold out 10 pairs, each word still trained on in other pairs
const heldOut = combos.filter((_, i) => i % 6 === 1).slice(0, 10);
const trained = combos.filter((c) => !heldOut.includes(c));
const pair = ([a, n], voice) => ({
  userText: `${a} ${n}`,
  agentText: `the ${n} is ${a}`,
  userAudio: speak([a, n], voice),
  agentAudio: speak(['the', n, 'is', a], AGENT_VOICE),
});
const trainPairs = Array.from({ length: TRAIN }, (_, i) => pair(trained[i % trained.length], userVoice()));
const tests = {
  'new recordings': Array.from({ length: 10 }, (_, i) => pair(trained[(7 * i + 3) % trained.length], userVoice())),
  'unseen pairs': heldOut.map((c) => pair(c, userVoice())),
};
console.log(
  `${trainPairs.length} training pairs (${trained.length} word pairs); held out: ${tests['new recordings'].length} new recordings of trained pairs, ${tests['unseen pairs'].length} word pairs never trained on`,
);
console.log(`e.g. user "${tests['unseen pairs'][0].userText}" → agent "${tests['unseen pairs'][0].agentText}"`);

// ---- speech units: tiny XLS-R-shaped encoder + random centroids from frames of the speech
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
  mask_time_prob: 0,
});
encoder.eval();
const LAYER = Number(env.LAYER ?? 2),
  K = 64;
const sample = trainPairs.slice(0, 16).flatMap((p) => [p.userAudio, p.agentAudio]);
const frames = [];
for (const clip of sample) {
  const x = et.tensor(clip, { shape: [1, clip.length] });
  const norm = x.sub(x.mean()).div(x.sub(x.mean()).square().mean().add(1e-5).sqrt()); // as UnitExtractor standardizes
  const { hiddenState } = await et.noGrad(() => encoder.hiddenStateAt(norm, LAYER));
  frames.push(...hiddenState.toArray()[0]);
}
const centroids = Array.from({ length: K }, () => frames[Math.floor(rand() * frames.length)]);
const unitExtractor = new et.audio.UnitExtractor({ encoder, layer: LAYER, centroids: et.tensor(centroids) });

// ---- the tokenizer stand-in, laid out like USDM's Mistral vocabulary (text, then <|continue|>,
// <|correspond|>, the units, <pad>): "▁", printable characters, "\n", and one token per word of the
// dialogues ("▁red", as SentencePiece has for common words). Each text piece between special tokens
// gets the "▁" dummy prefix, which is how Mistral's tokenizer puts the "▁" before the final "\n"
// that the third stage stops at.
const SPACE = 3,
  NEWLINE = 98,
  WORD0 = 99,
  CONTINUE = WORD0 + WORDS.length,
  CORRESPOND = CONTINUE + 1,
  UNIT0 = CONTINUE + 2,
  PAD = UNIT0 + K,
  V = PAD + 1;
const tokenIds = { newline: NEWLINE, space: SPACE, continue: CONTINUE, correspond: CORRESPOND, unit0: UNIT0, numUnits: K, pad: PAD, bos: 1 };
const SPECIALS = { '<s>': 1, '</s>': 2, '<|continue|>': CONTINUE, '<|correspond|>': CORRESPOND, '<pad>': PAD };
const charId = (c) => (c === '\n' ? NEWLINE : c === '▁' ? SPACE : c.charCodeAt(0) > 32 && c.charCodeAt(0) < 127 ? 4 + c.charCodeAt(0) - 33 : 0);
function encodePiece(piece) {
  const s = `▁${piece.replaceAll(' ', '▁')}`,
    ids = [];
  for (let i = 0; i < s.length;) {
    const w = s[i] === '▁' ? WORDS.findIndex((x) => s.startsWith(x, i + 1) && !/[a-z]/.test(s[i + 1 + x.length] ?? '')) : -1;
    if (w >= 0) {
      ids.push(WORD0 + w);
      i += 1 + WORDS[w].length;
    } else {
      ids.push(charId(s[i]));
      i += 1;
    }
  }
  return ids;
}
const codec = {
  encode(text) {
    const ids = [];
    for (const piece of text.split(/(<\|unit\d+\|>|<\|continue\|>|<\|correspond\|>|<\/s>|<s>|<pad>)/)) {
      if (!piece) continue;
      const u = /^<\|unit(\d+)\|>$/.exec(piece);
      ids.push(...(u ? [UNIT0 + Number(u[1])] : piece in SPECIALS ? [SPECIALS[piece]] : encodePiece(piece)));
    }
    return ids;
  },
  decode(ids) {
    const inv = Object.fromEntries(Object.entries(SPECIALS).map(([k, v]) => [v, k]));
    return ids
      .map((i) =>
        i >= UNIT0 && i < UNIT0 + K
          ? `<|unit${i - UNIT0}|>`
          : i >= WORD0 && i < CONTINUE
            ? ` ${WORDS[i - WORD0]}`
            : (inv[i] ?? (i === NEWLINE ? '\n' : i === SPACE ? ' ' : i > 3 && i < NEWLINE ? String.fromCharCode(i - 4 + 33) : '?')),
      )
      .join('');
  },
};

// ---- SFT examples from audio (the original template and masking)
const trainEx = await et.systems.usdm.usdmSftExamples(trainPairs, { unitExtractor, codec, tokenIds });
const testEx = {};
for (const [k, v] of Object.entries(tests)) testEx[k] = await et.systems.usdm.usdmSftExamples(v, { unitExtractor, codec, tokenIds });
const distinct = new Set(trainEx.flatMap((e) => [...e.userUnits, ...e.agentUnits])).size;
console.log(`user units of "${tests['unseen pairs'][0].userText}": ${testEx['unseen pairs'][0].userUnits.join(' ')}`);
console.log(
  `${distinct} of ${K} units used; ${trainEx[0].ids.length} tokens per example, ${trainEx[0].labels.filter((l) => l !== -100).length} supervised; units ready at ${secs()}`,
);

// ---- the decoder: a tiny random LLaMA with the unit vocabulary, full fine-tune
const llm = et.nn.LlamaForCausalLM.create({
  vocab_size: V,
  hidden_size: 96,
  intermediate_size: 256,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 512,
  initializer_range: 0.05,
});
const usdm = new et.systems.usdm.Usdm(llm, { tokenIds });

// held-out token accuracy per supervised span: transcript (through its "\n"), response text
// (through <|correspond|>), response units (and the final "▁")
function spanLabels(ex) {
  const nl = ex.ids.flatMap((t, i) => (t === NEWLINE ? [i] : []));
  const pick = (keep) => ex.labels.map((l, i) => (l !== -100 && keep(i) ? l : -100));
  const corr2 = ex.ids.lastIndexOf(CORRESPOND);
  return { transcript: pick((i) => i <= nl[3]), response: pick((i) => i > nl[3] && i <= corr2), units: pick((i) => i > corr2) };
}
async function evaluateSet(tag, pairs, examples) {
  const batch = usdm.collate(examples);
  const { logits } = await et.noGrad(() => usdm.forward({ inputIds: batch.inputIds, attentionMask: batch.attentionMask }));
  const spans = examples.map(spanLabels);
  const T = batch.inputIds.shape[1];
  const padRow = (r) => [...r, ...Array(T - r.length).fill(-100)];
  const acc = Object.fromEntries(
    ['transcript', 'response', 'units'].map((k) => [
      k,
      et.metrics.tokenAccuracy(
        logits,
        spans.map((s) => padRow(s[k])),
      ).accuracy,
    ]),
  );
  let transcripts = 0,
    responses = 0,
    shown;
  for (let i = 0; i < pairs.length; i++) {
    const out = await usdm.infer(examples[i].userUnits, codec, { maxNewTokens: 48 });
    if (out.userText === pairs[i].userText) transcripts++;
    if (out.agentText === pairs[i].agentText) responses++;
    if (i === 0) shown = out;
  }
  const f = (x) => x.toFixed(3);
  const cut = (t) => JSON.stringify(t.length > 40 ? `${t.slice(0, 40)}…` : t);
  console.log(
    `${tag.padEnd(6)} ${pairs === tests['unseen pairs'] ? 'unseen pairs  ' : 'new recordings'}: token accuracy transcript ${f(acc.transcript)}, response ${f(acc.response)}, response units ${f(acc.units)}; three stages exact: transcripts ${transcripts}/${pairs.length}, responses ${responses}/${pairs.length}`,
  );
  console.log(
    `       user "${pairs[0].userText}" → transcript ${cut(shown.userText)} → response ${cut(shown.agentText)} → units [${shown.agentUnits.slice(0, 20).join(' ')}${shown.agentUnits.length > 20 ? ' …' : ''}] (${shown.agentUnits.length}; recorded ${examples[0].agentUnits.length})`,
  );
  return { acc, transcripts, responses };
}
async function evaluate(tag) {
  usdm.eval();
  const out = {};
  for (const k of Object.keys(tests)) out[k] = await evaluateSet(tag, tests[k], testEx[k]);
  usdm.train();
  return out;
}
console.log(`chance per token ≈ 1/${V} = ${(1 / V).toFixed(3)}`);
const before = await evaluate('before');

// ---- SFT with the Trainer (the original's recipe is et.systems.usdm.USDM_SFT_ARGS: lr 2e-5 for a
// pretrained 7B; a random toy model needs a larger rate)
const trainer = new et.train.Trainer({
  model: usdm,
  trainDataset: { length: trainEx.length, get: (i) => trainEx[i] },
  dataCollator: (items) => usdm.collate(items),
  args: {
    output_dir: os.tmpdir(),
    max_steps: STEPS,
    per_device_train_batch_size: 8,
    learning_rate: 4e-3,
    lr_scheduler_type: 'cosine',
    warmup_ratio: 0.05,
    adam_beta1: 0.9,
    adam_beta2: 0.95,
    weight_decay: 0.01,
    logging_steps: 50,
    save_strategy: 'no',
    report_to: [],
    seed: 0,
  },
});
trainer.on('log', (r) => {
  if (r.loss !== undefined) console.log(`step ${r.step} loss ${r.loss.toFixed(4)}`);
});
const tTrain = Date.now();
await trainer.train();
console.log(`trained ${STEPS} steps in ${((Date.now() - tTrain) / 1000).toFixed(0)} s`);
const after = await evaluate('after');

const rec = (r) => r['new recordings'];
const learned =
  rec(after).acc.transcript > rec(before).acc.transcript + 0.3 &&
  rec(after).acc.response > rec(before).acc.response + 0.3 &&
  rec(after).acc.units > rec(before).acc.units + 0.1 &&
  rec(after).transcripts > rec(before).transcripts;
console.log(
  learned
    ? `learned: held-out accuracy up on all three spans, new recordings transcribed (${secs()} in all)`
    : 'WARNING: the model did not learn the held-out recordings',
);
if (!learned) process.exitCode = 1;
