#!/usr/bin/env node
/**
 * Writes a small, learnable dataset in every format emotorch reads, into the folder given:
 *
 *   node scripts/make-sample-data.mjs <outDir> [--per-class N] [--seed S]
 *
 * Audio is synthetic "speech" whose emotion is audible: a harmonic tone (5 partials) with a
 * class-specific pitch (f0), pitch contour (rising / falling / flat), tremolo rate, loudness and
 * length, plus a little noise, written as 16 kHz 16-bit PCM WAV.
 *
 *   wav/<emotion>_<k>.wav          the clips (7 ECF emotions × per-class)
 *   salmonn.json                   SALMONN items (path, instruction, target, task) and
 *                                  emotional-trajectory items (3 turns, emotion_sequence, ...)
 *   wav/dlg_<d>_<k>.wav            the trajectory turns: 1 s utterances of the turn's emotion
 *   ecf.json                       ECF 2.0 conversations with emotion-cause pairs
 *   ecf_text.safetensors,          per-utterance embeddings (16-dim each, class-dependent means),
 *   ecf_audio.safetensors          tensor names "<conversation_ID>_<utterance_ID>"
 *   swift.json                     ms-swift {query, response, audios} records (sentiment, emotion)
 *   spectra_iemocap.pkl            SPECTRA plain-list layout (audio, text_ids, label 0..5, turn_ids, prev_audio)
 *   spectra_mosi.pkl               SPECTRA [audio_list, items] layout, float labels in [-3, 3]
 *   usdm.txt                       USDM ids|labels lines (character-level ids; units from pitch)
 *
 * WAV, safetensors, the PRNG and the USDM template come from emotorch itself (run `npm install`
 * first); the pickles are written by a small pickle writer here (protocol 3, numpy arrays in
 * numpy's own `_reconstruct` + BUILD form: emotorch only reads pickles), so Python (pickle + numpy
 * 1.x or 2.x) can load them too. Nothing here needs Python. Deterministic for a given seed.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as et from 'emotorch';

// ---- arguments ---------------------------------------------------------------------------
const args = process.argv.slice(2);
const out = args.find((a) => !a.startsWith('--'));
const flag = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
if (!out) {
  console.error('usage: node scripts/make-sample-data.mjs <outDir> [--per-class N] [--seed S]');
  process.exit(2);
}
const PER_CLASS = flag('per-class', 8);
const SEED = flag('seed', 1);
if (!Number.isInteger(PER_CLASS) || PER_CLASS < 2 || !Number.isInteger(SEED)) {
  console.error('--per-class must be an integer ≥ 2 and --seed an integer');
  process.exit(2);
}

// ---- randomness ----------------------------------------------------------------------------
const rand = et.data.mulberry32(SEED);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const pick = (xs) => xs[Math.floor(rand() * xs.length)];

// ---- classes ---------------------------------------------------------------------------------
const EMOTIONS = ['neutral', 'anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise'];
// f0 (Hz), contour (relative f0 change over the clip), tremolo (Hz), loudness, seconds
const VOICE = {
  neutral: { f0: 140, contour: 0, tremolo: 0, amp: 0.4, dur: 0.4 },
  anger: { f0: 220, contour: -0.3, tremolo: 9, amp: 0.8, dur: 0.3 },
  disgust: { f0: 110, contour: -0.15, tremolo: 3, amp: 0.45, dur: 0.5 },
  fear: { f0: 270, contour: 0.15, tremolo: 13, amp: 0.35, dur: 0.35 },
  joy: { f0: 300, contour: 0.4, tremolo: 5, amp: 0.6, dur: 0.4 },
  sadness: { f0: 95, contour: -0.2, tremolo: 0, amp: 0.25, dur: 0.6 },
  surprise: { f0: 230, contour: 0.9, tremolo: 0, amp: 0.6, dur: 0.3 },
};
const TRAJECTORY_NAME = { neutral: 'neutral', anger: 'anger', disgust: 'disgust', fear: 'fear', joy: 'happy', sadness: 'sad', surprise: 'surprise' };
const SENTIMENT = { neutral: 'neutral', anger: 'negative', disgust: 'negative', fear: 'negative', joy: 'positive', sadness: 'negative', surprise: 'positive' };
const MOSI_SCORE = { neutral: 0, anger: -2.5, disgust: -2, fear: -1.5, joy: 2.5, sadness: -2.5, surprise: 1.5 };
const WORDS = {
  neutral: ['okay', 'fine', 'sure', 'alright'],
  anger: ['furious', 'unfair', 'enough', 'stop'],
  disgust: ['gross', 'awful', 'yuck', 'nasty'],
  fear: ['scared', 'afraid', 'danger', 'help'],
  joy: ['great', 'wonderful', 'love', 'yay'],
  sadness: ['sorry', 'miss', 'lonely', 'cry'],
  surprise: ['wow', 'really', 'what', 'unbelievable'],
};
const SR = 16000;

/**
 * One utterance of `emotion`. `r` is the random source (the main one by default), `seconds` a
 * fixed length (±5 %) instead of the class's own.
 */
function synth(emotion, { r = rand, seconds } = {}) {
  const v = VOICE[emotion];
  const u = (a, b) => a + (b - a) * r();
  const dur = seconds === undefined ? v.dur * u(0.85, 1.15) : seconds * u(0.95, 1.05);
  const n = Math.round(dur * SR);
  const f0 = v.f0 * u(0.93, 1.07);
  const x = new Float32Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    const t = i / SR;
    const f = f0 * (1 + v.contour * (t / dur));
    phase += (2 * Math.PI * f) / SR;
    let s = 0;
    for (let k = 1; k <= 5; k++) s += Math.sin(k * phase) / k;
    const env = Math.min(1, t / 0.02, (dur - t) / 0.02) * (1 + (v.tremolo ? 0.5 * Math.sin(2 * Math.PI * v.tremolo * t) : 0));
    const g = Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    x[i] = Math.max(-1, Math.min(1, (v.amp * env * s) / 2 + 0.005 * g));
  }
  return x;
}

// ---- writers -------------------------------------------------------------------------------
/** Pickle protocol 3. Arrays → list, { tuple } → tuple, { ndarray } → numpy array, null → None. */
function pickle(value) {
  const parts = [Buffer.from([0x80, 3])];
  const op = (...bytes) => parts.push(Buffer.from(bytes));
  const i32 = (v) => {
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(v, 1);
    parts.push(b);
  };
  const str = (s) => {
    const u = Buffer.from(s, 'utf8');
    const b = Buffer.alloc(5);
    b[0] = 0x58;
    b.writeUInt32LE(u.length, 1);
    parts.push(b, u);
  };
  const bytes = (u) => {
    const b = Buffer.alloc(5);
    b[0] = 0x42;
    b.writeUInt32LE(u.length, 1);
    parts.push(b, u);
  };
  const global = (m, n) => parts.push(Buffer.from(`c${m}\n${n}\n`, 'latin1'));
  const dtype = (d) => {
    global('numpy', 'dtype');
    str(d);
    op(0x89, 0x88, 0x87, 0x52); // dtype('f4', False, True)
    op(0x28);
    i32(3);
    str('<');
    op(0x4e, 0x4e, 0x4e);
    i32(-1);
    i32(-1);
    i32(0);
    op(0x74, 0x62); // BUILD (3, '<', None, None, None, -1, -1, 0)
  };
  const enc = (v) => {
    if (v === null || v === undefined) op(0x4e);
    else if (v === true) op(0x88);
    else if (v === false) op(0x89);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && Math.abs(v) < 2 ** 31) i32(v);
      else {
        const b = Buffer.alloc(9);
        b[0] = 0x47;
        b.writeDoubleBE(v, 1);
        parts.push(b);
      }
    } else if (typeof v === 'string') str(v);
    else if (Array.isArray(v)) {
      op(0x5d);
      if (v.length) {
        op(0x28);
        v.forEach(enc);
        op(0x65);
      }
    } else if (v.tuple) {
      op(0x28);
      v.tuple.forEach(enc);
      op(0x74);
    } else if (v.ndarray) {
      const a = v.ndarray;
      const d = a instanceof Float32Array ? 'f4' : a instanceof BigInt64Array ? 'i8' : 'f8';
      global('numpy.core.multiarray', '_reconstruct');
      global('numpy', 'ndarray');
      op(0x28);
      i32(0);
      op(0x74); // (0,)
      parts.push(Buffer.from([0x43, 1, 0x62])); // b'b'
      op(0x87, 0x52); // REDUCE
      op(0x28);
      i32(1);
      op(0x28);
      i32(a.length);
      op(0x74);
      dtype(d);
      op(0x89);
      bytes(Buffer.from(a.buffer, a.byteOffset, a.byteLength));
      op(0x74, 0x62); // BUILD (1, (n,), dtype, False, raw)
    } else throw new Error(`cannot pickle ${typeof v}`);
  };
  enc(value);
  op(0x2e);
  return Buffer.concat(parts);
}

// ---- the data ------------------------------------------------------------------------------
const root = path.resolve(out);
fs.mkdirSync(path.join(root, 'wav'), { recursive: true });
const clips = []; // { emotion, file, samples }
for (const e of EMOTIONS) {
  for (let k = 0; k < PER_CLASS; k++) {
    const samples = synth(e);
    const file = `wav/${e}_${k}.wav`;
    fs.writeFileSync(path.join(root, file), et.audio.encodeWav(samples, SR));
    clips.push({ emotion: e, file, samples });
  }
}
const sentence = (e) => `${pick(['i', 'you', 'we'])} ${pick(['feel', 'am', 'think'])} ${pick(WORDS[e])} ${pick(WORDS[e])}`;

// SALMONN: single-clip emotion items and 3-turn trajectories. Each turn is its own 1 s utterance
// (wav/dlg_<d>_<k>.wav, ~3 Q-Former windows of audio per turn), drawn from a second random source
// so that everything else in this folder stays as it was.
const salmonn = clips.map((c) => ({
  path: c.file,
  instruction: 'What emotion does the speaker express? Answer with one word.',
  target: c.emotion,
  task: 'emotion_recognition',
}));
const turnRand = et.data.mulberry32(SEED + 7919);
for (let d = 0; d < 2 * PER_CLASS; d++) {
  const turns = [pick(clips), pick(clips), pick(clips)];
  const seq = turns.map((c) => TRAJECTORY_NAME[c.emotion]);
  const files = turns.map((c, k) => {
    const file = `wav/dlg_${d}_${k + 1}.wav`;
    fs.writeFileSync(path.join(root, file), et.audio.encodeWav(synth(c.emotion, { r: turnRand, seconds: 1 }), SR));
    return file;
  });
  salmonn.push({
    dialogue_id: `dlg_${d}`,
    task: 'task1_emotional_trajectory',
    input_text: turns.map((c, k) => `${k % 2 ? 'B' : 'A'}: ${sentence(c.emotion)}`).join('\n'),
    target_text: `The conversation starts ${seq[0]}, turns ${seq[1]} and ends ${seq[2]}.`,
    emotion_sequence: seq,
    audio_files: files,
  });
}
fs.writeFileSync(path.join(root, 'salmonn.json'), JSON.stringify(salmonn, null, 1));

// ECF 2.0 conversations + embeddings
const ecf = [];
const text = {};
const audio = {};
const centre = Object.fromEntries(EMOTIONS.map((e) => [e, Float32Array.from({ length: 16 }, () => gauss())]));
for (let c = 1; c <= 3 * PER_CLASS; c++) {
  const n = 3 + Math.floor(rand() * 4);
  const utts = [];
  const pairs = [];
  for (let u = 1; u <= n; u++) {
    const e = pick(EMOTIONS);
    utts.push({ utterance_ID: u, text: sentence(e), speaker: u % 2 ? 'Ross' : 'Rachel', emotion: e, video_name: `dia${c}utt${u}.mp4` });
    if (e !== 'neutral') pairs.push([`${u}_${e}`, String(u > 1 && rand() < 0.5 ? u - 1 : u)]);
    text[`${c}_${u}`] = Float32Array.from(centre[e], (m) => m + 0.3 * gauss());
    audio[`${c}_${u}`] = Float32Array.from(centre[e], (m) => -m + 0.5 * gauss());
  }
  ecf.push({ conversation_ID: c, conversation: utts, 'emotion-cause_pairs': pairs });
}
fs.writeFileSync(path.join(root, 'ecf.json'), JSON.stringify(ecf, null, 1));
const asTensors = (vecs) => new Map(Object.entries(vecs).map(([k, v]) => [k, et.tensor(v)]));
await et.io.saveSafetensors(path.join(root, 'ecf_text.safetensors'), asTensors(text));
await et.io.saveSafetensors(path.join(root, 'ecf_audio.safetensors'), asTensors(audio));

// ms-swift records
const swift = clips.flatMap((c) => [
  { query: '<audio>What is the sentiment of the speaker? Answer positive, negative or neutral.', response: SENTIMENT[c.emotion], audios: [c.file] },
  { query: '<audio>Which emotion does the speaker show?', response: c.emotion, audios: [c.file] },
]);
fs.writeFileSync(path.join(root, 'swift.json'), JSON.stringify(swift, null, 1));

// SPECTRA pickles
const textIds = (e) => [0, ...Array.from({ length: 3 + Math.floor(rand() * 4) }, () => 100 + EMOTIONS.indexOf(e) * 10 + Math.floor(rand() * 10)), 2];
const IEMOCAP6 = ['neutral', 'anger', 'joy', 'sadness', 'fear', 'surprise'];
const iem = clips
  .filter((c) => IEMOCAP6.includes(c.emotion))
  .map((c, k, all) => {
    const cur = textIds(c.emotion);
    const prev = k > 0 ? all[k - 1] : null;
    const hist = prev ? textIds(prev.emotion) : [];
    const ids = [...hist, ...cur];
    return {
      tuple: [{ ndarray: c.samples }, ids, IEMOCAP6.indexOf(c.emotion), [...hist.map(() => 0), ...cur.map(() => 1)], prev ? { ndarray: prev.samples } : null],
    };
  });
fs.writeFileSync(path.join(root, 'spectra_iemocap.pkl'), pickle(iem));
const mosiAudio = clips.map((c) => ({ ndarray: c.samples }));
const mosiItems = clips.map((c, k) => {
  const score = Math.max(-3, Math.min(3, MOSI_SCORE[c.emotion] + 0.3 * gauss()));
  return [k, textIds(c.emotion), Math.round(score * 100) / 100, k > 0 ? k - 1 : -1, k > 0 ? textIds(clips[k - 1].emotion) : []];
});
fs.writeFileSync(path.join(root, 'spectra_mosi.pkl'), pickle([mosiAudio, mosiItems]));

// USDM lines: the library's template and loss spans over character-level ids (special tokens as
// in USDM's vocabulary), units from pitch
const encode = (s) => {
  const ids = [];
  for (let i = 0; i < s.length;) {
    const m = /^<\|unit(\d+)\|>/.exec(s.slice(i));
    if (m) {
      ids.push(32002 + Number(m[1]));
      i += m[0].length;
      continue;
    }
    if (s.startsWith('<|correspond|>', i)) {
      ids.push(32001);
      i += 14;
      continue;
    }
    if (s.startsWith('</s>', i)) {
      ids.push(2);
      i += 4;
      continue;
    }
    ids.push(3 + (s.charCodeAt(i) % 31000));
    i += 1;
  }
  return ids;
};
const units = (samples) => {
  const out = [];
  for (let s = 0; s + 320 <= samples.length; s += 320) {
    // 20 ms frames → zero-crossing-rate bins
    let z = 0;
    for (let i = s + 1; i < s + 320; i++) if (samples[i - 1] < 0 !== samples[i] < 0) z++;
    out.push(Math.min(9999, z * 50 + Math.floor(rand() * 3)));
  }
  return out;
};
const usdm = [];
for (let k = 0; k < 4 * PER_CLASS; k++) {
  const a = pick(clips);
  const b = pick(clips);
  const turn = { userUnits: units(a.samples), userText: sentence(a.emotion), agentText: sentence(b.emotion), agentUnits: units(b.samples) };
  usdm.push(et.data.usdm.formatUsdmLine(et.data.usdm.buildUsdmExample(turn, { encode }, { bos: 1 })));
}
fs.writeFileSync(path.join(root, 'usdm.txt'), usdm.join('\n') + '\n');

console.log(
  `wrote ${clips.length} clips, ${salmonn.length} SALMONN items, ${ecf.length} ECF conversations, ${swift.length} ms-swift records, ${iem.length} + ${mosiItems.length} SPECTRA samples, ${usdm.length} USDM lines to ${root}`,
);
