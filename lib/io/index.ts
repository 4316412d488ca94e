export { loadSafetensors, saveSafetensors, readSafetensorsHeader } from './safetensors';
export type { LoadedSafetensors, SafetensorsHeader, SafetensorsEntry } from './safetensors';
export { loadTorchFile } from './torchfile';
