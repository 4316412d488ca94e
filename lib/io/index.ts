/** File formats: safetensors, torch.save checkpoints, and Python pickles (numpy arrays included).
 * @module
 */
export { loadSafetensors, saveSafetensors, readSafetensorsHeader } from './safetensors';
export type { LoadedSafetensors, LoadSafetensorsOptions, SafetensorsHeader, SafetensorsEntry } from './safetensors';
export { loadTorchFile } from './torchfile';
export { readPickle, parsePickle, pickleAttributes, pickleValue } from './pickle';
export type { PickleOptions, PicklableValue } from './pickle';
export { NdArray } from './ndarray';
export type { NdData, NdDtype } from './ndarray';
export { readNpy, writeNpy } from './npy';
export { readRegularTextSync, readJsonSync, notAFile } from './file';
export type { NpyArray } from './npy';
