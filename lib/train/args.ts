/**
 * TrainingArguments: HF transformers' field names and defaults, checked in full before anything
 * runs or is written. Both the 4.x names the seed experiments use (`evaluation_strategy`,
 * `warmup_ratio`, `group_by_length`) and the 5.x ones (`eval_strategy`, a fractional
 * `warmup_steps`, `train_sampling_strategy`) are accepted.
 */
import { EmotorchError, checkInt, checkNumber, invalid, show } from '../errors';
import { HF_SCHEDULES, HfScheduleType } from './schedules';

/** When to evaluate or log: never, every N steps, or every epoch (HF's IntervalStrategy). */
export type IntervalStrategy = 'no' | 'steps' | 'epoch';
/** When to save a checkpoint: as IntervalStrategy, or 'best' (HF's SaveStrategy). */
export type SaveStrategy = IntervalStrategy | 'best';

/** What a user passes: HF names, every field optional. */
export interface TrainingArgumentsInit {
  /** Where checkpoints, log.jsonl, plots and TensorBoard files go. Default 'trainer_output' (HF 5). */
  output_dir?: string;
  num_train_epochs?: number;
  /** > 0 overrides num_train_epochs. Default -1. */
  max_steps?: number;
  per_device_train_batch_size?: number;
  per_device_eval_batch_size?: number;
  gradient_accumulation_steps?: number;
  learning_rate?: number;
  /** Decoupled AdamW decay, not applied to biases and norm parameters. */
  weight_decay?: number;
  adam_beta1?: number;
  adam_beta2?: number;
  adam_epsilon?: number;
  /**
   * The Trainer's default optimizer: 'adamw_torch' / 'adamw_torch_fused' (the same libtorch AdamW
   * here; HF 5's default), 'adamw_hf' (transformers 4.x's AdamW class, `et.optim.AdamWHF`: HF ≤
   * 4.3x's default) or 'adamw_apex_fused' (apex's FusedAdam with its bias correction, `et.optim.FusedAdam`, as HF 4.x builds it).
   */
  optim?: string;
  /** 0 turns clipping off. */
  max_grad_norm?: number;
  lr_scheduler_type?: HfScheduleType;
  /** `{ num_cycles }` for cosine, `{ min_lr }` or `{ min_lr_rate }` for cosine_with_min_lr. */
  lr_scheduler_kwargs?: { num_cycles?: number; min_lr?: number; min_lr_rate?: number } | null;
  /** An integer number of steps, or (HF 5) a fraction in (0, 1) of the total steps. */
  warmup_steps?: number;
  /** HF 4: warmup as a fraction of the total steps (use instead of warmup_steps). */
  warmup_ratio?: number;
  eval_strategy?: IntervalStrategy;
  /** HF 4 name of eval_strategy. */
  evaluation_strategy?: IntervalStrategy;
  save_strategy?: SaveStrategy;
  logging_strategy?: IntervalStrategy;
  /** Integer steps or a fraction of the total steps; default logging_steps. */
  eval_steps?: number | null;
  save_steps?: number;
  logging_steps?: number;
  logging_first_step?: boolean;
  eval_on_start?: boolean;
  save_total_limit?: number | null;
  /** Only the model, no optimizer/scheduler/scaler/RNG state (such checkpoints cannot resume). */
  save_only_model?: boolean;
  /** emotorch: save only parameters that require grad (adapters, heads). */
  save_only_trainable?: boolean;
  load_best_model_at_end?: boolean;
  metric_for_best_model?: string | null;
  greater_is_better?: boolean | null;
  bf16?: boolean;
  fp16?: boolean;
  seed?: number;
  /** Seed of the data order; default seed. */
  data_seed?: number | null;
  /** HF 4: batches of similar length (by `length_column_name`, else the length of `input_ids`). */
  group_by_length?: boolean;
  /** HF 5: 'random', 'sequential' or 'group_by_length'. */
  train_sampling_strategy?: 'random' | 'sequential' | 'group_by_length';
  length_column_name?: string;
  dataloader_drop_last?: boolean;
  /** Recompute the model's layers in backward instead of keeping their activations (LLaMA-family LLMs, InternViT): less memory, about one more forward of time. */
  gradient_checkpointing?: boolean;
  /** Batch keys that hold labels. Default ['labels']. */
  label_names?: string[] | null;
  prediction_loss_only?: boolean;
  /** A checkpoint folder, or true for the newest complete one in output_dir. */
  resume_from_checkpoint?: string | boolean | null;
  /** 'none', 'all', 'tensorboard' or a list; only TensorBoard is built in. */
  report_to?: string | string[];
  /** TensorBoard folder; default `<output_dir>/runs`. */
  logging_dir?: string | null;
  /** No progress bar or progress lines. */
  disable_tqdm?: boolean;
  use_cpu?: boolean;
  /** DDP (under et.distributed.init()): allow parameters without a gradient in some steps. Default false. */
  ddp_find_unused_parameters?: boolean | null;
  /** DDP gradient bucket size in MB. Default 25. */
  ddp_bucket_cap_mb?: number | null;
  /** DDP: re-send rank 0's buffers before each training forward. Default true. */
  ddp_broadcast_buffers?: boolean | null;
  /**
   * A DeepSpeed config (a JSON file's path or the object), read as transformers reads it: ZeRO
   * stage 1–3 and CPU offload run on et.distributed.ShardedDataParallel, `"auto"` values come
   * from these arguments, its `optimizer` and `gradient_clipping` replace the Trainer's (see
   * docs/distributed.md). Under et.distributed.init(); a single process trains as it would without.
   */
  deepspeed?: string | Record<string, unknown> | null;
  /** Accepted for porting; collate decides what a batch holds. */
  remove_unused_columns?: boolean;
  /** Accepted for porting; no effect (they steer HF example scripts). */
  do_train?: boolean;
  do_eval?: boolean;
  do_predict?: boolean;
  overwrite_output_dir?: boolean;
  run_name?: string | null;
  /** Seq2SeqTrainingArguments: evaluate on `model.generate(batch)` output. */
  predict_with_generate?: boolean;
  generation_max_length?: number | null;
}

/** Every field resolved (HF defaults filled, strategies and step counts normalized). */
export interface ResolvedTrainingArguments {
  output_dir: string;
  num_train_epochs: number;
  max_steps: number;
  per_device_train_batch_size: number;
  per_device_eval_batch_size: number;
  gradient_accumulation_steps: number;
  learning_rate: number;
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  optim: string;
  max_grad_norm: number;
  lr_scheduler_type: HfScheduleType;
  lr_scheduler_kwargs: { num_cycles?: number; min_lr?: number; min_lr_rate?: number };
  warmup_steps: number;
  warmup_ratio: number;
  eval_strategy: IntervalStrategy;
  save_strategy: SaveStrategy;
  logging_strategy: IntervalStrategy;
  eval_steps: number | null;
  save_steps: number;
  logging_steps: number;
  logging_first_step: boolean;
  eval_on_start: boolean;
  save_total_limit: number | null;
  save_only_model: boolean;
  save_only_trainable: boolean;
  load_best_model_at_end: boolean;
  metric_for_best_model: string | null;
  greater_is_better: boolean | null;
  bf16: boolean;
  fp16: boolean;
  seed: number;
  data_seed: number | null;
  train_sampling_strategy: 'random' | 'sequential' | 'group_by_length';
  length_column_name: string;
  dataloader_drop_last: boolean;
  gradient_checkpointing: boolean;
  label_names: string[];
  prediction_loss_only: boolean;
  resume_from_checkpoint: string | boolean | null;
  report_to: string[];
  logging_dir: string;
  disable_tqdm: boolean;
  use_cpu: boolean;
  ddp_find_unused_parameters: boolean | null;
  ddp_bucket_cap_mb: number | null;
  ddp_broadcast_buffers: boolean | null;
  deepspeed: string | Record<string, unknown> | null;
  predict_with_generate: boolean;
  generation_max_length: number | null;
}

const DEFAULTS: Omit<ResolvedTrainingArguments, 'logging_dir'> = {
  output_dir: 'trainer_output',
  num_train_epochs: 3,
  max_steps: -1,
  per_device_train_batch_size: 8,
  per_device_eval_batch_size: 8,
  gradient_accumulation_steps: 1,
  learning_rate: 5e-5,
  weight_decay: 0,
  adam_beta1: 0.9,
  adam_beta2: 0.999,
  adam_epsilon: 1e-8,
  optim: 'adamw_torch_fused',
  max_grad_norm: 1,
  lr_scheduler_type: 'linear',
  lr_scheduler_kwargs: {},
  warmup_steps: 0,
  warmup_ratio: 0,
  eval_strategy: 'no',
  save_strategy: 'steps',
  logging_strategy: 'steps',
  eval_steps: null,
  save_steps: 500,
  logging_steps: 500,
  logging_first_step: false,
  eval_on_start: false,
  save_total_limit: null,
  save_only_model: false,
  save_only_trainable: false,
  load_best_model_at_end: false,
  metric_for_best_model: null,
  greater_is_better: null,
  bf16: false,
  fp16: false,
  seed: 42,
  data_seed: null,
  train_sampling_strategy: 'random',
  length_column_name: 'length',
  dataloader_drop_last: false,
  gradient_checkpointing: false,
  label_names: ['labels'],
  prediction_loss_only: false,
  resume_from_checkpoint: null,
  report_to: [],
  disable_tqdm: false,
  use_cpu: false,
  ddp_find_unused_parameters: null,
  ddp_bucket_cap_mb: null,
  ddp_broadcast_buffers: null,
  deepspeed: null,
  predict_with_generate: false,
  generation_max_length: null,
};

/** Fields accepted for porting HF scripts that have no effect here. */
const NO_EFFECT = ['remove_unused_columns', 'do_train', 'do_eval', 'do_predict', 'overwrite_output_dir', 'run_name'];
/** HF 4 names and what they became. */
const ALIASES: Record<string, string> = { evaluation_strategy: 'eval_strategy' };
const OPTIMS = ['adamw_torch', 'adamw_torch_fused', 'adamw_hf', 'adamw_apex_fused'];
const REPORTERS = ['tensorboard'];
const KNOWN = new Set([...Object.keys(DEFAULTS), 'logging_dir', 'warmup_ratio', 'group_by_length', ...NO_EFFECT, ...Object.keys(ALIASES)]);

function bool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') invalid('a boolean', `args.${name}`, v);
  return v;
}
function strategy<S extends string>(v: unknown, name: string, allowed: readonly S[]): S {
  if (typeof v !== 'string' || !allowed.includes(v as S)) invalid(allowed.map((s) => `'${s}'`).join(', '), `args.${name}`, v);
  return v as S;
}
/** An integer ≥ 1, or a fraction in (0, 1) of the total steps (HF's float steps). */
function stepsOrRatio(v: unknown, name: string): number {
  if (typeof v === 'number' && v > 0 && v < 1) return v;
  return checkInt(v, `args.${name}`, 1);
}

/**
 * Checks HF-named training arguments and fills in HF's defaults. Unknown fields, wrong types and
 * contradictions (fp16 with bf16, load_best_model_at_end with mismatched eval and save
 * strategies, warmup_steps with warmup_ratio, ...) are errors that name the field.
 * @param init fields with HF's names (a plain object, or the JSON of a Python TrainingArguments)
 * @throws EmotorchError ERR_INVALID_ARG naming the offending field.
 * @example
 * const args = new et.train.TrainingArguments({ output_dir: 'runs/x', eval_strategy: 'epoch', save_strategy: 'epoch', bf16: true });
 */
export class TrainingArguments implements ResolvedTrainingArguments {
  output_dir!: string;
  num_train_epochs!: number;
  max_steps!: number;
  per_device_train_batch_size!: number;
  per_device_eval_batch_size!: number;
  gradient_accumulation_steps!: number;
  learning_rate!: number;
  weight_decay!: number;
  adam_beta1!: number;
  adam_beta2!: number;
  adam_epsilon!: number;
  optim!: string;
  max_grad_norm!: number;
  lr_scheduler_type!: HfScheduleType;
  lr_scheduler_kwargs!: { num_cycles?: number; min_lr?: number; min_lr_rate?: number };
  warmup_steps!: number;
  warmup_ratio!: number;
  eval_strategy!: IntervalStrategy;
  save_strategy!: SaveStrategy;
  logging_strategy!: IntervalStrategy;
  eval_steps!: number | null;
  save_steps!: number;
  logging_steps!: number;
  logging_first_step!: boolean;
  eval_on_start!: boolean;
  save_total_limit!: number | null;
  save_only_model!: boolean;
  save_only_trainable!: boolean;
  load_best_model_at_end!: boolean;
  metric_for_best_model!: string | null;
  greater_is_better!: boolean | null;
  bf16!: boolean;
  fp16!: boolean;
  seed!: number;
  data_seed!: number | null;
  train_sampling_strategy!: 'random' | 'sequential' | 'group_by_length';
  length_column_name!: string;
  dataloader_drop_last!: boolean;
  gradient_checkpointing!: boolean;
  label_names!: string[];
  prediction_loss_only!: boolean;
  resume_from_checkpoint!: string | boolean | null;
  report_to!: string[];
  logging_dir!: string;
  disable_tqdm!: boolean;
  use_cpu!: boolean;
  ddp_find_unused_parameters!: boolean | null;
  ddp_bucket_cap_mb!: number | null;
  ddp_broadcast_buffers!: boolean | null;
  deepspeed!: string | Record<string, unknown> | null;
  predict_with_generate!: boolean;
  generation_max_length!: number | null;

  constructor(init: TrainingArgumentsInit | TrainingArguments = {}) {
    if (init instanceof TrainingArguments) {
      Object.assign(this, init);
      return;
    }
    if (init === null || typeof init !== 'object' || Array.isArray(init)) invalid('an object of TrainingArguments fields', 'args', init);
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(init)) {
      if (!KNOWN.has(k)) invalid('a TrainingArguments field emotorch supports (see docs/training.md)', 'args field', k);
      if (v === undefined) continue;
      const name = ALIASES[k] ?? k;
      if (name !== k && (init as Record<string, unknown>)[name] !== undefined) {
        throw new EmotorchError(`args.${k} and args.${name} are the same setting (HF 4 and HF 5 names): give one`, 'ERR_INVALID_ARG');
      }
      raw[name] = v;
    }
    const a = { ...DEFAULTS, ...raw } as Record<string, unknown>;
    const r = this as unknown as Record<string, unknown>;

    if (typeof a.output_dir !== 'string' || a.output_dir === '') invalid('a non-empty folder path', 'args.output_dir', a.output_dir);
    r.output_dir = a.output_dir;
    r.num_train_epochs = checkNumber(a.num_train_epochs, 'args.num_train_epochs', 0);
    if (!Number.isInteger(a.max_steps) || ((a.max_steps as number) < 1 && a.max_steps !== -1))
      invalid('a positive integer or -1', 'args.max_steps', a.max_steps);
    r.max_steps = a.max_steps;
    if (r.max_steps === -1 && !((r.num_train_epochs as number) > 0)) invalid('a number > 0 (or max_steps > 0)', 'args.num_train_epochs', a.num_train_epochs);
    for (const k of ['per_device_train_batch_size', 'per_device_eval_batch_size', 'gradient_accumulation_steps']) r[k] = checkInt(a[k], `args.${k}`, 1);
    r.learning_rate = checkNumber(a.learning_rate, 'args.learning_rate', 0);
    r.weight_decay = checkNumber(a.weight_decay, 'args.weight_decay', 0);
    r.adam_beta1 = checkNumber(a.adam_beta1, 'args.adam_beta1', 0, 1);
    r.adam_beta2 = checkNumber(a.adam_beta2, 'args.adam_beta2', 0, 1);
    r.adam_epsilon = checkNumber(a.adam_epsilon, 'args.adam_epsilon', 0);
    r.optim = strategy(a.optim, 'optim', OPTIMS);
    r.max_grad_norm = checkNumber(a.max_grad_norm, 'args.max_grad_norm', 0);

    r.lr_scheduler_type = strategy(a.lr_scheduler_type, 'lr_scheduler_type', HF_SCHEDULES);
    const kw = a.lr_scheduler_kwargs ?? {};
    if (typeof kw !== 'object' || Array.isArray(kw)) invalid('an object', 'args.lr_scheduler_kwargs', kw);
    for (const k of Object.keys(kw))
      if (!['num_cycles', 'min_lr', 'min_lr_rate'].includes(k)) invalid('one of num_cycles, min_lr, min_lr_rate', 'args.lr_scheduler_kwargs field', k);
    const kws = kw as ResolvedTrainingArguments['lr_scheduler_kwargs'];
    if (kws.num_cycles !== undefined) checkNumber(kws.num_cycles, 'args.lr_scheduler_kwargs.num_cycles', 0);
    if (kws.min_lr !== undefined) checkNumber(kws.min_lr, 'args.lr_scheduler_kwargs.min_lr', 0);
    if (kws.min_lr_rate !== undefined) checkNumber(kws.min_lr_rate, 'args.lr_scheduler_kwargs.min_lr_rate', 0, 1);
    if (r.lr_scheduler_type === 'cosine_with_min_lr' && (kws.min_lr === undefined) === (kws.min_lr_rate === undefined)) {
      invalid('exactly one of min_lr and min_lr_rate with cosine_with_min_lr', 'args.lr_scheduler_kwargs', kw);
    }
    r.lr_scheduler_kwargs = { ...kws };
    const ws = a.warmup_steps;
    if (!(typeof ws === 'number' && ((ws > 0 && ws < 1) || (Number.isInteger(ws) && ws >= 0))))
      invalid('a non-negative integer or a fraction in (0, 1)', 'args.warmup_steps', ws);
    r.warmup_steps = ws;
    r.warmup_ratio = checkNumber(a.warmup_ratio, 'args.warmup_ratio', 0, 1);
    if ((r.warmup_ratio as number) > 0 && ws !== 0) {
      throw new EmotorchError(`args.warmup_steps (${ws}) and args.warmup_ratio (${a.warmup_ratio}) both set warmup: give one`, 'ERR_INVALID_ARG');
    }

    r.eval_strategy = strategy(a.eval_strategy, 'eval_strategy', ['no', 'steps', 'epoch'] as const);
    r.save_strategy = strategy(a.save_strategy, 'save_strategy', ['no', 'steps', 'epoch', 'best'] as const);
    r.logging_strategy = strategy(a.logging_strategy, 'logging_strategy', ['no', 'steps', 'epoch'] as const);
    r.logging_steps = stepsOrRatio(a.logging_steps, 'logging_steps');
    r.save_steps = stepsOrRatio(a.save_steps, 'save_steps');
    r.eval_steps = a.eval_steps === null ? (r.eval_strategy === 'steps' ? r.logging_steps : null) : stepsOrRatio(a.eval_steps, 'eval_steps');
    for (const k of [
      'logging_first_step',
      'eval_on_start',
      'save_only_model',
      'save_only_trainable',
      'load_best_model_at_end',
      'bf16',
      'fp16',
      'dataloader_drop_last',
      'gradient_checkpointing',
      'prediction_loss_only',
      'disable_tqdm',
      'use_cpu',
      'predict_with_generate',
    ])
      r[k] = bool(a[k], k);
    for (const k of NO_EFFECT)
      if (a[k] !== undefined && a[k] !== null && typeof a[k] !== (k === 'run_name' ? 'string' : 'boolean'))
        invalid(k === 'run_name' ? 'a string' : 'a boolean', `args.${k}`, a[k]);
    if (r.fp16 && r.bf16) throw new EmotorchError('args.fp16 and args.bf16 are both true: choose one mixed-precision mode', 'ERR_INVALID_ARG');
    if (r.eval_on_start && r.eval_strategy === 'no')
      throw new EmotorchError("args.eval_on_start needs an args.eval_strategy other than 'no'", 'ERR_INVALID_ARG');

    r.save_total_limit = a.save_total_limit === null ? null : checkInt(a.save_total_limit, 'args.save_total_limit', 1);
    r.metric_for_best_model =
      a.metric_for_best_model === null
        ? null
        : typeof a.metric_for_best_model === 'string' && a.metric_for_best_model
          ? a.metric_for_best_model
          : invalid('a metric name', 'args.metric_for_best_model', a.metric_for_best_model);
    if (r.metric_for_best_model === null && (r.load_best_model_at_end || r.save_strategy === 'best')) r.metric_for_best_model = 'loss';
    r.greater_is_better =
      a.greater_is_better === null
        ? r.metric_for_best_model === null
          ? null
          : !(r.metric_for_best_model as string).endsWith('loss')
        : bool(a.greater_is_better, 'greater_is_better');
    if (r.save_strategy === 'best' && r.eval_strategy === 'no')
      throw new EmotorchError("args.save_strategy 'best' needs an args.eval_strategy other than 'no'", 'ERR_INVALID_ARG');
    if (r.load_best_model_at_end) {
      if (r.eval_strategy === 'no') throw new EmotorchError("args.load_best_model_at_end needs an args.eval_strategy other than 'no'", 'ERR_INVALID_ARG');
      if (r.save_strategy !== 'best') {
        if (r.eval_strategy !== r.save_strategy) {
          throw new EmotorchError(
            `args.load_best_model_at_end needs args.save_strategy to equal args.eval_strategy, but they are '${r.save_strategy}' and '${r.eval_strategy}'`,
            'ERR_INVALID_ARG',
          );
        }
        if (r.eval_strategy === 'steps') {
          const ev = r.eval_steps as number;
          const sv = r.save_steps as number;
          const ok = ev >= 1 && sv >= 1 ? sv % ev === 0 : ev < 1 && sv < 1 ? Math.abs(sv / ev - Math.round(sv / ev)) < 1e-9 : false;
          if (!ok)
            throw new EmotorchError(`args.load_best_model_at_end needs args.save_steps (${sv}) to be a multiple of args.eval_steps (${ev})`, 'ERR_INVALID_ARG');
        }
      }
    }
    r.seed = checkInt(a.seed, 'args.seed', 0);
    r.data_seed = a.data_seed === null ? null : checkInt(a.data_seed, 'args.data_seed', 0);
    r.train_sampling_strategy = strategy(a.train_sampling_strategy, 'train_sampling_strategy', ['random', 'sequential', 'group_by_length'] as const);
    if (a.group_by_length !== undefined) {
      if (bool(a.group_by_length, 'group_by_length')) {
        if (raw.train_sampling_strategy !== undefined && raw.train_sampling_strategy !== 'group_by_length') {
          throw new EmotorchError(`args.group_by_length is true but args.train_sampling_strategy is '${raw.train_sampling_strategy}'`, 'ERR_INVALID_ARG');
        }
        r.train_sampling_strategy = 'group_by_length';
      }
    }
    if (typeof a.length_column_name !== 'string' || !a.length_column_name) invalid('a field name', 'args.length_column_name', a.length_column_name);
    r.length_column_name = a.length_column_name;
    const ln = a.label_names ?? ['labels'];
    if (!Array.isArray(ln) || ln.length === 0 || ln.some((x) => typeof x !== 'string' || !x))
      invalid('a non-empty array of batch keys', 'args.label_names', ln);
    r.label_names = [...(ln as string[])];
    const rc = a.resume_from_checkpoint;
    if (!(rc === null || typeof rc === 'boolean' || (typeof rc === 'string' && rc !== '')))
      invalid('a checkpoint folder, true, false or null', 'args.resume_from_checkpoint', rc);
    r.resume_from_checkpoint = rc;
    const rt = a.report_to;
    const list = typeof rt === 'string' ? [rt] : rt;
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string')) invalid("'none', 'all', 'tensorboard' or a list of them", 'args.report_to', rt);
    const reporters = new Set<string>();
    for (const x of list as string[]) {
      if (x === 'none') continue;
      if (x === 'all') {
        REPORTERS.forEach((y) => reporters.add(y));
        continue;
      }
      if (!REPORTERS.includes(x)) invalid(`'none', 'all' or 'tensorboard' (the only built-in integration; use callbacks for others)`, 'args.report_to', x);
      reporters.add(x);
    }
    r.report_to = [...reporters];
    const ld = a.logging_dir ?? null;
    if (ld !== null && (typeof ld !== 'string' || !ld)) invalid('a folder path', 'args.logging_dir', ld);
    r.logging_dir = ld ?? `${r.output_dir}/runs`;
    r.generation_max_length = a.generation_max_length === null ? null : checkInt(a.generation_max_length, 'args.generation_max_length', 1);
    for (const k of ['ddp_find_unused_parameters', 'ddp_broadcast_buffers']) r[k] = a[k] === null ? null : bool(a[k], k);
    const ds = a.deepspeed;
    if (ds !== null && !(typeof ds === 'string' && ds) && !(typeof ds === 'object' && !Array.isArray(ds)))
      invalid('a DeepSpeed config file path or object', 'args.deepspeed', ds);
    r.deepspeed = ds;
    r.ddp_bucket_cap_mb = a.ddp_bucket_cap_mb === null ? null : checkNumber(a.ddp_bucket_cap_mb, 'args.ddp_bucket_cap_mb', 1e-6, 1 << 20);
    if (r.predict_with_generate && r.prediction_loss_only)
      throw new EmotorchError('args.predict_with_generate and args.prediction_loss_only contradict each other', 'ERR_INVALID_ARG');
    Object.freeze(this.label_names);
  }

  /** Warmup steps for a run of `totalSteps` (warmup_ratio, or a fractional warmup_steps, rounds up as HF). */
  warmupFor(totalSteps: number): number {
    if (this.warmup_ratio > 0) return Math.ceil(totalSteps * this.warmup_ratio);
    return this.warmup_steps >= 1 || this.warmup_steps === 0 ? this.warmup_steps : Math.ceil(totalSteps * this.warmup_steps);
  }

  /** An interval in steps: integers as they are, fractions of the total steps rounded up (HF). */
  static steps(v: number, totalSteps: number): number {
    return v >= 1 ? v : Math.max(1, Math.ceil(v * totalSteps));
  }

  /** The fields as plain JSON (what checkpoints store as training_args.json). */
  toJSON(): Record<string, unknown> {
    return { ...(this as object) } as Record<string, unknown>;
  }

  /** For error messages. */
  toString(): string {
    return `TrainingArguments(${show(this.output_dir)})`;
  }
}
