/**
 * A DeepSpeed config (TrainingArguments.deepspeed, `--deepspeed_config`) read as transformers'
 * Trainer reads it (transformers/integrations/deepspeed.py): `"auto"` values filled from the
 * training arguments, explicit values that contradict them refused, and what emotorch's engine
 * does with each key said: ZeRO stages and offload run on et.distributed.ShardedDataParallel; keys
 * that only tune DeepSpeed's own buffers are named as not used; keys that would change the
 * arithmetic and are not implemented are refused by name.
 */
import { readJsonSync } from '../io/file';
import { EmotorchError, show } from '../errors';
import type { TrainingArguments } from './args';

/** What the Trainer runs for a DeepSpeed config. */
export interface DeepSpeedPlan {
  /** ZeRO stage 0 (plain DDP), 1, 2 or 3. */
  stage: 0 | 1 | 2 | 3;
  /** `offload_optimizer` / `offload_param` with device "cpu": the float32 master shards on the CPU. */
  offload: boolean;
  /** `bf16.enabled`: the model in bfloat16, float32 master shards (DeepSpeed's bf16 mode, no autocast). */
  bf16: boolean;
  /**
   * The config's `optimizer` (DeepSpeed's Adam / AdamW: decoupled weight decay, bias correction),
   * over every trainable parameter alike, as transformers hands DeepSpeed `model_parameters`
   * (no decay groups); null: the Trainer's own optimizer.
   */
  optimizer: { lr: number; betas: [number, number]; eps: number; weightDecay: number } | null;
  /** `gradient_clipping` (the global norm), or 0: none (DeepSpeed's default; the Trainer's max_grad_norm is DeepSpeed's to apply). */
  gradientClipping: number;
  /**
   * Whether a checkpoint holds the whole weights (model.safetensors): always below stage 3; at
   * stage 3 `stage3_gather_16bit_weights_on_model_save` (DeepSpeed's default false: the shards only).
   */
  gatherOnSave: boolean;
  /** Keys read and not used by emotorch's engine (DeepSpeed's bucket sizes, prefetch, pinning …): named, not dropped. */
  notUsed: string[];
}

/** Tuning knobs of DeepSpeed's own buffers and overlap: no effect on the numbers, no counterpart here. */
const TUNING = new Set([
  'zero_optimization.contiguous_gradients',
  'zero_optimization.overlap_comm',
  'zero_optimization.reduce_scatter',
  'zero_optimization.reduce_bucket_size',
  'zero_optimization.allgather_partitions',
  'zero_optimization.allgather_bucket_size',
  'zero_optimization.round_robin_gradients',
  'zero_optimization.sub_group_size',
  'zero_optimization.stage3_prefetch_bucket_size',
  'zero_optimization.stage3_param_persistence_threshold',
  'zero_optimization.stage3_max_live_parameters',
  'zero_optimization.stage3_max_reuse_distance',
  'zero_optimization.memory_efficient_linear',
  'zero_optimization.offload_param.pin_memory',
  'zero_optimization.offload_optimizer.pin_memory',
  'zero_optimization.offload_param.buffer_count',
  'zero_optimization.offload_param.buffer_size',
  'zero_optimization.offload_optimizer.buffer_count',
  'zero_optimization.offload_optimizer.fast_init',
  'zero_allow_untested_optimizer',
  'steps_per_print',
  'wall_clock_breakdown',
  'communication_data_type',
  'prescale_gradients',
  'gradient_predivide_factor',
  'zero_force_ds_cpu_optimizer',
  'optimizer.params.torch_adam',
]);

const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function refuse(key: string, why: string): never {
  throw new EmotorchError(`DeepSpeed config: '${key}' ${why}`, 'ERR_INVALID_ARG');
}

/** Every leaf key of a config as a dotted path. */
function leaves(o: Record<string, unknown>, prefix = ''): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (isObj(v) && Object.keys(v).length) out.push(...leaves(v, key));
    else out.push([key, v]);
  }
  return out;
}

/**
 * Reads a DeepSpeed config (a path to its JSON file or the object) against the training arguments
 * and the number of ranks.
 * @throws EmotorchError ERR_INVALID_ARG naming a key whose value contradicts the arguments, is
 *   malformed, or asks for what is not implemented (fp16 loss scaling, an NVMe offload, another
 *   optimizer type, a DeepSpeed scheduler); ERR_IO / ERR_FORMAT for an unreadable file.
 */
export function readDeepSpeedConfig(spec: string | Record<string, unknown>, a: TrainingArguments, world: number): DeepSpeedPlan {
  let cfg: Record<string, unknown>;
  if (typeof spec === 'string') {
    const v = readJsonSync(spec, 16 << 20); // a regular file of at most 16 MiB (ERR_IO / ERR_FORMAT naming it)
    if (!isObj(v)) throw new EmotorchError(`DeepSpeed config ${show(spec)} is not a JSON object`, 'ERR_FORMAT');
    cfg = v;
  } else if (isObj(spec)) cfg = spec;
  else throw new EmotorchError(`Expected a DeepSpeed config file path or object for args.deepspeed but received ${show(spec)}`, 'ERR_INVALID_ARG');

  const used = new Set<string>();
  const get = (key: string, mark = true): unknown => {
    if (mark) used.add(key);
    let v: unknown = cfg;
    for (const part of key.split('.')) v = isObj(v) ? v[part] : undefined;
    return v;
  };
  // A value that is "auto", absent (then `fallback`) or equal to the argument's.
  const match = (key: string, arg: number | boolean, argName: string, absent: number | boolean | null = arg): number | boolean | null => {
    const v = get(key);
    if (v === undefined) return absent;
    if (v === 'auto') return arg;
    if (typeof v !== typeof arg) refuse(key, `is ${show(v)}: expected "auto" or a ${typeof arg}`);
    if (typeof v === 'number' && typeof arg === 'number' && Math.abs(v - arg) > 1e-12 * Math.max(1, Math.abs(arg)))
      refuse(key, `is ${v} but ${argName} is ${arg}: make them agree (or write "auto")`);
    if (typeof v === 'boolean' && v !== arg) refuse(key, `is ${v} but ${argName} is ${arg}: make them agree (or write "auto")`);
    return v as number | boolean;
  };

  const micro = a.per_device_train_batch_size;
  const accum = a.gradient_accumulation_steps;
  match('train_micro_batch_size_per_gpu', micro, 'args.per_device_train_batch_size');
  match('gradient_accumulation_steps', accum, 'args.gradient_accumulation_steps');
  match('train_batch_size', micro * accum * world, `world (${world}) × args.per_device_train_batch_size × args.gradient_accumulation_steps`);
  const bf16 = match('bf16.enabled', a.bf16, 'args.bf16', false) as boolean;
  const fp16 = match('fp16.enabled', a.fp16, 'args.fp16', false) as boolean;
  if (fp16) refuse('fp16.enabled', 'is true: fp16 with loss scaling under ZeRO is not implemented (use bf16)');
  const clip = match('gradient_clipping', a.max_grad_norm, 'args.max_grad_norm', 0) as number;
  if (!(clip >= 0)) refuse('gradient_clipping', `must be ≥ 0, not ${clip}`);

  const z = get('zero_optimization', false);
  if (z !== undefined && !isObj(z)) refuse('zero_optimization', 'must be an object');
  const stage = get('zero_optimization.stage') ?? 0;
  if (stage !== 0 && stage !== 1 && stage !== 2 && stage !== 3) refuse('zero_optimization.stage', `must be 0, 1, 2 or 3, not ${show(stage)}`);
  let offload = false;
  for (const part of ['offload_optimizer', 'offload_param']) {
    const dev = get(`zero_optimization.${part}.device`);
    if (dev === undefined || dev === 'none') continue;
    if (dev !== 'cpu') refuse(`zero_optimization.${part}.device`, `is ${show(dev)}: only "cpu" (or "none") is implemented`);
    if (part === 'offload_param' && stage !== 3) refuse('zero_optimization.offload_param', 'needs stage 3 (as DeepSpeed)');
    offload = true;
  }
  const gatherOnSave = get('zero_optimization.stage3_gather_16bit_weights_on_model_save');
  const gather16 = get('zero_optimization.gather_16bit_weights_on_model_save');
  if (gatherOnSave !== undefined && typeof gatherOnSave !== 'boolean')
    refuse('zero_optimization.stage3_gather_16bit_weights_on_model_save', 'must be a boolean');

  let optimizer: DeepSpeedPlan['optimizer'] = null;
  const o = get('optimizer', false);
  if (o !== undefined) {
    if (!isObj(o)) refuse('optimizer', 'must be an object');
    const type = get('optimizer.type');
    if (typeof type !== 'string' || !['adam', 'adamw'].includes(type.toLowerCase()))
      refuse('optimizer.type', `is ${show(type)}: only Adam and AdamW (DeepSpeed's, decoupled weight decay) are implemented`);
    const mode = get('optimizer.params.adam_w_mode');
    if (mode === false) refuse('optimizer.params.adam_w_mode', 'is false (Adam with L2 in the gradient): not implemented');
    const bc = get('optimizer.params.bias_correction');
    if (bc === false) refuse('optimizer.params.bias_correction', 'is false: not implemented for the DeepSpeed optimizer');
    const lr = match('optimizer.params.lr', a.learning_rate, 'args.learning_rate') as number;
    const eps = match('optimizer.params.eps', a.adam_epsilon, 'args.adam_epsilon') as number;
    const wd = match('optimizer.params.weight_decay', a.weight_decay, 'args.weight_decay') as number;
    const b = get('optimizer.params.betas');
    let betas: [number, number] = [a.adam_beta1, a.adam_beta2];
    if (b !== undefined && b !== 'auto') {
      if (!Array.isArray(b) || b.length !== 2 || b.some((x) => typeof x !== 'number'))
        refuse('optimizer.params.betas', `must be "auto" or two numbers, not ${show(b)}`);
      if (b[0] !== a.adam_beta1 || b[1] !== a.adam_beta2)
        refuse(
          'optimizer.params.betas',
          `is [${b}] but args.adam_beta1 / adam_beta2 are [${a.adam_beta1}, ${a.adam_beta2}]: make them agree (or write "auto")`,
        );
      betas = b as [number, number];
    }
    optimizer = { lr, betas, eps, weightDecay: wd };
  }
  if (get('scheduler', false) !== undefined)
    refuse('scheduler', "is not implemented (DeepSpeed's WarmupLR / WarmupDecayLR): leave it out and set args.lr_scheduler_type, as transformers then does");

  const notUsed: string[] = [];
  for (const [key] of leaves(cfg)) {
    if (used.has(key)) continue;
    if (TUNING.has(key) || (!fp16 && key.startsWith('fp16.'))) notUsed.push(key);
    else refuse(key, 'is not a key emotorch reads (or implements); remove it or ask for it');
  }
  return {
    stage: stage as 0 | 1 | 2 | 3,
    offload,
    bf16,
    optimizer,
    gradientClipping: clip,
    gatherOnSave: stage < 3 || (gatherOnSave ?? gather16 ?? false) === true,
    notUsed,
  };
}
