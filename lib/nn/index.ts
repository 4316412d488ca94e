export { Module, NativeModule } from './module';
export type { ModuleOptions, LoadReport, StateDict } from './module';
export { Linear, Mlp, LayerNorm, Embedding } from './layers';
export type { LinearConfig, MlpConfig, Activation, LayerNormConfig, EmbeddingConfig } from './layers';
