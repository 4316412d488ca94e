/**
 * Audio: WAV and ffmpeg decoding, resampling, Whisper log-mel and Kaldi fbank features, k-means speech units.
 * @module
 */
export { readWav, decodeWav, encodeWav, MAX_AUDIO_SECONDS } from './wav';
export { readAudio, findFfmpeg, findFfprobe } from './ffmpeg';
export type { Wav, WavOptions, WavFormat } from './wav';
export { resample } from './resample';
export type { ResampleOptions, ResampleMethod } from './resample';
export { whisperLogMel, kaldiFbank, vocoderLogMel, soxrStatus } from './features';
export type { KaldiWindow } from './fbank';
export { languageBindAudio } from './languagebind';
export type { LanguageBindAudioOptions } from './languagebind';
export type { Waveform, WhisperLogMelOptions, KaldiFbankOptions, VocoderLogMelOptions } from './features';
export { UnitExtractor } from './units';
export type { UnitExtractorOptions } from './units';
