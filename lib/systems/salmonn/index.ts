/**
 * SALMONN (bytedance/SALMONN): Whisper and BEATs encoders, a window-level Q-Former and a LoRA
 * LLaMA; its batches, and its training recipe. `et.systems.salmonn`.
 * @module
 */
export { Salmonn, SALMONN_DEFAULTS, SALMONN_IGNORABLE, SALMONN_YAML_KEYS } from './model';
export type { SalmonnConfig, SalmonnConfigInput, SalmonnBatch, SalmonnOutputs, SalmonnGenerateOptions, SalmonnPretrainedOptions } from './model';
export type { SalmonnCollateItem } from './data';
export { salmonnTrajectorySvg, salmonnJoinTurns, SALMONN_TURN_GAP } from './data';
export { salmonnSchedule, salmonnIterationLr, salmonnTotalSteps, salmonnParamGroups } from './recipe';
export type { SalmonnOptimsOptions } from './recipe';
export { salmonnChat } from './chat';
