export { readPickle, parsePickle } from './pickle';
export type { PickleOptions } from './pickle';
export { NdArray } from './ndarray';
export type { NdData, NdDtype } from './ndarray';
