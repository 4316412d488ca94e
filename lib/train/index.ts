/**
 * Optimizers (AdamW, SGD), gradient clipping and learning-rate schedules.
 * @module
 */
export { Optimizer, AdamW, SGD, decayGroups, clipGradNorm } from './optim';
export type { AdamWOptions, SGDOptions, ParamGroup } from './optim';
export * as schedules from './schedules';
export { LRScheduler } from './schedules';
export type { Schedule } from './schedules';
