export { whisperLogMel, kaldiFbank } from './features';
export type { Waveform, WhisperLogMelOptions, KaldiFbankOptions } from './features';
