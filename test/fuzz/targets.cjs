'use strict';
// The fuzz targets, one per file format emotorch reads. Each takes the raw bytes of one input
// and drives the public API the way a user would (through `et`, the library's public names).
//
// The contract (what the fuzzer and the corpus replay check): an input either parses or is
// refused with an `EmotorchError` that carries an `ERR_*` code. Anything else is a finding:
// another exception type, a crash (signal, abort), or a hang.
//
// Used by the Jazzer.js entry (jazzer-entry.cjs, over the built dist/) and by the corpus replay
// (replay.cjs, over lib/*.ts). To add a format: add a target here, a seed folder
// test/fuzz/corpus/<format>/, and (optionally) a libFuzzer dictionary test/fuzz/dict/<format>.dict.
const fs = require('fs');
const os = require('os');
const path = require('path');

/** The formats, in the order `npm run fuzz` lists them. */
const FORMATS = [
  'pickle',
  'safetensors',
  'torchfile',
  'wav',
  'wav16k',
  'salmonn',
  'trajectory',
  'ecf',
  'swift',
  'tokenizer',
  'tokens',
  'sentencepiece',
  'npy',
  'w2v_checkpoint',
  'speech_decoder',
  'image',
  'video',
  'audio',
];
/** Formats that share another's seed corpus (test/fuzz/corpus/<that>/). */
const SEEDS_OF = { wav16k: 'wav' };

/** The w2v_checkpoint seeds' config (test/fuzz/make_seeds.py). */
const W2V_TINY = {
  conv_dim: [8, 8],
  conv_kernel: [10, 3],
  conv_stride: [5, 2],
  conv_bias: true,
  feat_extract_norm: 'layer',
  do_stable_layer_norm: true,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 16,
  num_conv_pos_embeddings: 4,
  num_conv_pos_embedding_groups: 2,
};

/** True for an error the contract allows: an EmotorchError with an ERR_* code. */
function isCoded(et, e) {
  return e instanceof et.EmotorchError && typeof e.code === 'string' && /^ERR_[A-Z_]+$/.test(e.code);
}

/** Disposes every Tensor in a value (Maps, arrays, plain objects), after reading small ones. */
function touchAndDispose(et, v, seen = new Set()) {
  if (v === null || typeof v !== 'object' || seen.has(v)) return;
  seen.add(v);
  if (v instanceof et.Tensor) {
    if (!v.isDisposed) {
      if (v.numel <= 1 << 16) v.dataSync();
      v.dispose();
    }
    return;
  }
  const kids = v instanceof Map ? v.values() : Array.isArray(v) ? v : ArrayBuffer.isView(v) ? [] : Object.values(v);
  for (const k of kids) touchAndDispose(et, k, seen);
}

/**
 * Runs two calls on the same input, one after the other, whatever the first did. Rejects with the
 * first error that is not coded; else with the first coded error when both failed; else resolves
 * with both results (undefined for the one that failed with a coded error).
 */
async function settleBoth(et, a, b) {
  const run = async (fn) => {
    try {
      return { value: await fn() };
    } catch (error) {
      return { error };
    }
  };
  const rs = [await run(a), await run(b)];
  const bad = rs.find((r) => 'error' in r && !isCoded(et, r.error));
  if (bad) throw bad.error;
  if (rs.every((r) => 'error' in r)) throw rs[0].error;
  return rs.map((r) => r.value);
}

/**
 * Makes the targets over an emotorch module.
 * @param et the library (dist/index.js or lib/index.ts)
 * @returns `{ [format]: (data: Buffer) => unknown | Promise<unknown> }`, and `cleanup()`
 */
function makeTargets(et) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-fuzz-'));
  const file = (name) => path.join(dir, name);
  let assets = null;
  // Files the dataset targets' JSON may point at: two short clips and ECF embeddings.
  const ensureAssets = async () => {
    if (assets) return assets;
    fs.mkdirSync(file('wav'), { recursive: true });
    const tone = (f) => Float32Array.from({ length: 800 }, (_, i) => 0.3 * Math.sin((2 * Math.PI * f * i) / 16000));
    fs.writeFileSync(file('wav/a.wav'), et.audio.encodeWav(tone(220), 16000));
    fs.writeFileSync(file('wav/b.wav'), et.audio.encodeWav(tone(330), 8000, { format: 'float32' }));
    const emb = (seed) => {
      const m = new Map();
      for (let c = 1; c <= 3; c++)
        for (let u = 1; u <= 6; u++) m.set(`${c}_${u}`, et.tensor(Float32Array.from({ length: 4 }, (_, i) => seed + c + u / 10 + i / 100)));
      return m;
    };
    for (const [name, seed] of [
      ['text', 0],
      ['audio', 1],
    ]) {
      const m = emb(seed);
      await et.io.saveSafetensors(file(`${name}.safetensors`), m);
      for (const t of m.values()) t.dispose();
    }
    assets = { features: { files: { text: file('text.safetensors'), audio: file('audio.safetensors') } } };
    return assets;
  };
  const getAll = async (ds, max = 8) => {
    for (let i = 0; i < Math.min(ds.length, max); i++) await ds.get(i);
  };
  const parsePickle = et.io.parsePickle ?? et.data.parsePickle;

  const targets = {
    pickle(data) {
      return parsePickle(data);
    },
    async safetensors(data) {
      fs.writeFileSync(file('input.safetensors'), data);
      const { tensors } = await et.io.loadSafetensors(file('input.safetensors'));
      touchAndDispose(et, tensors);
    },
    async torchfile(data) {
      fs.writeFileSync(file('pytorch_model.bin'), data);
      touchAndDispose(et, await et.io.loadTorchFile(file('pytorch_model.bin')));
    },
    wav(data) {
      et.audio.decodeWav(data, { sampleRate: null }); // the file's own rate: decoding only
    },
    npy(data) {
      fs.writeFileSync(file('input.npy'), data);
      et.io.readNpy(file('input.npy'));
    },
    async image(data) {
      // Any picture (PNG, JPEG, GIF, WebP, BMP, TIFF, sniffed from its bytes), then InternVL's tiles
      // and LanguageBind's processor (CLIPImageProcessor) on the decoded picture; the file name says
      // nothing, as in datasets whose extensions lie. Two tool runs (ffprobe, ffmpeg) of at most 2 s.
      fs.writeFileSync(file('input.img'), data);
      const img = await et.vision.readImage(file('input.img'), { maxPixels: 4096 * 4096, timeoutMs: 2000 });
      try {
        const [c, h, w] = img.shape;
        if (img.dtype !== 'uint8' || img.shape.length !== 3 || c !== 3 || h * w > 4096 * 4096)
          throw new Error(`readImage gave ${img.dtype} [${img.shape}] (maxPixels ${4096 * 4096})`);
        touchAndDispose(et, et.vision.internvlTiles(img, { imageSize: 28, maxNum: 6 }));
        touchAndDispose(et, await et.vision.processImage(img, { size: 32, cropSize: 32 }));
      } finally {
        img.dispose();
      }
    },
    async video(data) {
      // A video (MP4/MOV, Matroska/WebM, AVI, YUV4MPEG, sniffed from its bytes): probeVideo, then
      // readVideoFrames of 2 frames (seek or scan, as 'auto' picks). Both are always called; each
      // must succeed or give a coded error, and where both succeed they must agree. At most
      // 2 × 0.8 s + 2 × 1.2 s of tool runs.
      const f = file('input.vid');
      fs.writeFileSync(f, data);
      const [info, read] = await settleBoth(
        et,
        () => et.vision.probeVideo(f, { timeoutMs: 800 }),
        () => et.vision.readVideoFrames(f, { numFrames: 2, maxPixels: 2048 * 2048, timeoutMs: 1200 }),
      );
      if (read) {
        const { frames, width, height, frameCount, indices } = read;
        try {
          const s = frames.shape;
          if (
            frames.dtype !== 'uint8' ||
            s.length !== 4 ||
            s[0] !== 3 ||
            s[1] !== 2 ||
            s[2] !== height ||
            s[3] !== width ||
            width * height > 2048 * 2048 ||
            indices.length !== 2 ||
            !indices.every((i) => Number.isInteger(i) && i >= 0 && i < frameCount)
          ) {
            throw new Error(`readVideoFrames gave ${frames.dtype} [${s}] for ${width}×${height}, indices [${indices}] of ${frameCount} frames`);
          }
          if (info && (info.width !== width || info.height !== height || info.frameCount !== frameCount)) {
            throw new Error(
              `probeVideo says ${info.width}×${info.height}, ${info.frameCount} frames; readVideoFrames ${width}×${height}, ${frameCount} frames`,
            );
          }
          frames.dataSync();
        } finally {
          frames.dispose();
        }
      }
    },
    async audio(data) {
      // Any audio (WAV, MP3, FLAC, Ogg, ADTS AAC, or the audio track of MP4/M4A, Matroska, AVI,
      // sniffed from its bytes) through readAudio at the file's own rate (resampling is wav16k's),
      // at most 30 s of it, one ffmpeg run of at most 3 s.
      fs.writeFileSync(file('input.aud'), data);
      const { samples, sampleRate } = await et.audio.readAudio(file('input.aud'), { sampleRate: null, maxSeconds: 30, timeoutMs: 3000 });
      if (!(samples instanceof Float32Array) || !(sampleRate > 0) || samples.length > 30 * sampleRate) {
        throw new Error(`readAudio gave ${samples && samples.length} samples at ${sampleRate} Hz (maxSeconds 30)`);
      }
    },
    async w2v_checkpoint(data) {
      // A Wav2Vec2 / XLS-R checkpoint in HF, fairseq or fairseq2 names (safetensors when the 8-byte
      // header length is followed by '{', torch.save otherwise), converted and loaded into a tiny
      // model of the seeds' config, then run once.
      const name = data.length > 8 && data[8] === 0x7b ? 'w2v.safetensors' : 'w2v.pt';
      fs.writeFileSync(file(name), data);
      const m = await et.nn.Wav2Vec2Model.fromPretrained(file(name), { config: W2V_TINY });
      const x = et.zeros([1, 400]);
      touchAndDispose(et, await m.forward(x));
      x.dispose();
      m.dispose();
    },
    async speech_decoder(data) {
      // USDM's speech decoder files as released: a Voicebox model.safetensors (safetensors when the
      // 8-byte header length is followed by '{') or a BigVGAN bigvgan_generator.pt, beside the tiny
      // fixture's config.json (test/fixtures/usdm_voicebox), loaded (weight norm folded) and run once.
      const fixture = path.join(__dirname, '..', 'fixtures', 'usdm_voicebox');
      const voicebox = data.length > 8 && data[8] === 0x7b;
      const d = file(voicebox ? 'voicebox' : 'bigvgan');
      fs.mkdirSync(d, { recursive: true });
      fs.copyFileSync(path.join(fixture, voicebox ? 'voicebox' : 'bigvgan', 'config.json'), path.join(d, 'config.json'));
      fs.writeFileSync(path.join(d, voicebox ? 'model.safetensors' : 'bigvgan_generator.pt'), data);
      if (voicebox) {
        const m = await et.nn.Voicebox.fromPretrained(d);
        const units = et.tensor([[1, 2, 3, 4]], { dtype: 'int64' });
        const out = await m.generate(units, { steps: 1, seed: 0 });
        touchAndDispose(et, out);
        units.dispose();
        m.dispose();
      } else {
        const m = await et.nn.BigVGAN.fromPretrained(d);
        const mel = et.zeros([1, m.config.num_mels, 2]);
        touchAndDispose(et, await m.forward({ mel }));
        mel.dispose();
        m.dispose();
      }
    },
    wav16k(data) {
      // WAV read at 16 kHz: resampled from whatever rate the header names.
      et.audio.decodeWav(data, { sampleRate: 16000 });
    },
    async salmonn(data) {
      await ensureAssets();
      fs.writeFileSync(file('salmonn.json'), data);
      await getAll(await et.data.SalmonnDataset.fromFile(file('salmonn.json'), { maxSeconds: 30 }));
    },
    async trajectory(data) {
      await ensureAssets();
      fs.writeFileSync(file('trajectory.json'), data);
      await getAll(
        await et.data.SalmonnDataset.fromFile(file('trajectory.json'), { prompts: { task1_emotional_trajectory: 'Describe the emotional trajectory.' } }),
      );
    },
    async ecf(data) {
      const a = await ensureAssets();
      fs.writeFileSync(file('ecf.json'), data);
      await getAll(await et.data.EcfDataset.fromFile(file('ecf.json'), { features: a.features }));
    },
    async swift(data) {
      await ensureAssets();
      // ms-swift data is often JSON lines: a file that starts with an object is read as .jsonl.
      const name = /^\s*\{/.test(data.toString('latin1', 0, 64)) ? 'swift.jsonl' : 'swift.json';
      fs.writeFileSync(file(name), data);
      await getAll(await et.data.SwiftDataset.fromFile(file(name), { checkFiles: true, inferTask: true }));
    },
    async tokenizer(data) {
      let json;
      try {
        json = JSON.parse(data.toString('utf8'));
      } catch {
        return; // not JSON: the user's JSON.parse refuses it, not emotorch
      }
      const tok = await et.data.Tokenizer.fromJSON(json);
      for (const text of ['Hello wörld, 123 <s> ok', '', '  \n\t']) {
        const ids = await tok.encode(text);
        await tok.tokenize(text);
        await tok.decode(ids);
        await tok.decode(ids, { skipSpecialTokens: true });
      }
      await tok.encodeBatch(['a b', 'Hello'], { padding: 'longest', padTokenId: 0 });
      tok.getVocabSize();
    },
  };
  // A SentencePiece .model (tokenizer.model) read by Tokenizer.fromFile, then used.
  targets.sentencepiece = async (data) => {
    fs.writeFileSync(file('tokenizer.model'), data);
    const tok = await et.data.Tokenizer.fromFile(file('tokenizer.model'));
    for (const text of ['Hello wörld, 123 <s> ok <sep>', '', '  \n\t', 'Ａ\u00a0e\u0301 情绪']) {
      const ids = await tok.encode(text);
      await tok.tokenize(text);
      await tok.decode(ids);
      await tok.decode(ids, { skipSpecialTokens: true });
    }
    await tok.decode([0, 1, 2, 3, 5, 100, 1000]);
    await tok.encodeBatch(['a b', 'Hello'], { padding: 'longest', padTokenId: 0 });
  };
  // Structure-aware: added tokens and text on the small seed tokenizers (JSON mutations rarely get
  // that far). Bytes: [tokenizer, count, (flags, length, utf-8 content) × count, text…]; flags bit 0
  // special, 1 normalized, 2 lstrip, 3 rstrip, 4 singleWord, 5 addSpecialTokens instead.
  const seedTokenizers = ['bytelevel_bpe', 'metaspace_bpe', 'wordpiece', 'unigram'].map((n) =>
    fs.readFileSync(path.join(__dirname, 'corpus', 'tokenizer', `${n}.json`), 'utf8'),
  );
  targets.tokens = async (data) => {
    let p = 0;
    const byte = () => (p < data.length ? data[p++] : 0);
    const tok = await et.data.Tokenizer.fromJSON(JSON.parse(seedTokenizers[byte() % seedTokenizers.length]));
    for (let n = byte() % 5; n > 0; n--) {
      const flags = byte();
      const len = byte() % 16;
      const content = data.subarray(p, p + len).toString('utf8');
      p += len;
      if (flags & 32) tok.addSpecialTokens([content]);
      else
        tok.addTokens([content], {
          special: !!(flags & 1),
          normalized: !!(flags & 2),
          lstrip: !!(flags & 4),
          rstrip: !!(flags & 8),
          singleWord: !!(flags & 16),
        });
    }
    const text = data.subarray(p).toString('utf8');
    const ids = await tok.encode(text);
    await tok.tokenize(text);
    await tok.decode(ids);
    await tok.decode(ids, { skipSpecialTokens: true });
    await tok.encodeBatch([text, 'x'], { padding: 'longest', padTokenId: 0 });
  };
  targets.cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  return targets;
}

module.exports = { FORMATS, SEEDS_OF, isCoded, makeTargets };
