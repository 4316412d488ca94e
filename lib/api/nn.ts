/**
 * Neural-network modules: the encoders and decoders of the seed systems, layers, LoRA and DDP.
 * @module
 */
/**
 * The `et.nn` namespace: the modules of lib/nn, and DistributedDataParallel, which wraps a Module
 * but lives in lib/distributed (a room above nn), so it joins the namespace here, above both.
 */
export * from '../nn';
export { DistributedDataParallel } from '../distributed/ddp';
export type { DdpOptions } from '../distributed/ddp';
