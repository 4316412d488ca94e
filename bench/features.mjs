// emotorch side of `npm run bench -- features`: Whisper log-mel and BEATs' Kaldi fbank of a batch
// of clips, against transformers' numpy extractors (WhisperFeatureExtractor; the Kaldi-compatible
// spectrogram that ASTFeatureExtractor / SeamlessM4TFeatureExtractor use) in bench/torch_worker.py;
// and resampling 22.05 kHz clips (DailyTalk's rate) to 16 kHz as USDM's librosa.load does (soxr HQ)
// and as LanguageBind's torchaudio does, against librosa.resample and torchaudio's steps in torch.
import * as et from 'emotorch';

function waves(cfg) {
  // Same distribution as the Python side (white noise, std 0.1); exact values do not matter here.
  return et.randn([cfg.batch, Math.round(cfg.seconds * 16000)]).mul(0.1);
}

export const cases = {
  logmel: {
    config: { batch: 8, seconds: 30, warmup: 2, steps: 3, trials: 5 },
    describe: (c) => `Whisper log-mel (80 bins, padded to 30 s) of ${c.batch} clips × ${c.seconds} s`,
    audioSecondsPerStep: (c) => c.batch * c.seconds,
    async setup(cfg) {
      const w = waves(cfg);
      return () => et.audio.whisperLogMel(w);
    },
  },
  logmel_dialogue: {
    config: { lengths: [3, 4, 5, 6, 7, 8, 9, 10], warmup: 2, steps: 3, trials: 5 },
    describe: (c) =>
      `Whisper log-mel of ${c.lengths.length} utterances of ${c.lengths[0]}–${c.lengths[c.lengths.length - 1]} s, each padded to 30 s (typical emotion-dialogue turns)`,
    audioSecondsPerStep: (c) => c.lengths.reduce((a, b) => a + b, 0),
    async setup(cfg) {
      const clips = cfg.lengths.map((s) => et.cat([et.randn([s * 16000]).mul(0.1), et.zeros([480000 - s * 16000])]));
      const batch = et.stack(clips);
      return () => et.audio.whisperLogMel(batch);
    },
  },
  resample_soxr: {
    config: { batch: 8, seconds: 10, warmup: 2, steps: 3, trials: 5 },
    describe: (c) => `${c.batch} clips × ${c.seconds} s from 22.05 kHz to 16 kHz, soxr HQ (librosa.resample's default)`,
    audioSecondsPerStep: (c) => c.batch * c.seconds,
    async setup(cfg) {
      const clips = Array.from({ length: cfg.batch }, () =>
        et
          .randn([Math.round(cfg.seconds * 22050)])
          .mul(0.1)
          .dataSync(),
      );
      return async () => clips.map((x) => et.audio.resample(x, 22050, 16000, { method: 'soxr_hq' }));
    },
  },
  resample_torchaudio: {
    config: { batch: 8, seconds: 10, warmup: 2, steps: 3, trials: 5 },
    describe: (c) => `${c.batch} clips × ${c.seconds} s from 44.1 kHz to 16 kHz, torchaudio.functional.resample's defaults`,
    audioSecondsPerStep: (c) => c.batch * c.seconds,
    async setup(cfg) {
      const clips = Array.from({ length: cfg.batch }, () =>
        et
          .randn([Math.round(cfg.seconds * 44100)])
          .mul(0.1)
          .dataSync(),
      );
      return async () => clips.map((x) => et.audio.resample(x, 44100, 16000, { method: 'torchaudio' }));
    },
  },
  fbank: {
    config: { batch: 8, seconds: 10, warmup: 2, steps: 3, trials: 5 },
    describe: (c) => `Kaldi fbank (128 bins, BEATs settings) of ${c.batch} clips × ${c.seconds} s`,
    audioSecondsPerStep: (c) => c.batch * c.seconds,
    async setup(cfg) {
      const w = waves(cfg);
      return () => et.audio.kaldiFbank(w, { numMelBins: 128, scale: 32768 });
    },
  },
};
