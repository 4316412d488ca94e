/**
 * Optimizers (AdamW, transformers 4.x's AdamW as AdamWHF, apex's FusedAdam, SGD), gradient
 * clipping and learning-rate schedules.
 * @module
 */
export { Optimizer, AdamW, AdamWHF, FusedAdam, SGD, decayGroups, clipGradNorm } from './optim';
export type { AdamWOptions, AdamWHFOptions, FusedAdamOptions, SGDOptions, ParamGroup, OptimizerKind } from './optim';
export * as schedules from './schedules';
export { LRScheduler } from './schedules';
export type { Schedule } from './schedules';
