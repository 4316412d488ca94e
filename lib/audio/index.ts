export { readWav, decodeWav, encodeWav } from './wav';
export { readAudio, findFfmpeg, findFfprobe } from './ffmpeg';
export type { Wav, WavOptions, WavFormat } from './wav';
export { resample } from './resample';
export type { ResampleOptions } from './resample';
export { whisperLogMel, kaldiFbank } from './features';
export type { Waveform, WhisperLogMelOptions, KaldiFbankOptions } from './features';
export { UnitExtractor } from './units';
export type { UnitExtractorOptions } from './units';
