/** SPECTRA's fine-tuning recipe: the paper's metrics per task, optimizer groups and Trainer settings. */
import type { Tensor } from '../../../tensor';
import { EmotorchError, invalid, checkOptionNames } from '../../../errors';
import type { Module } from '../../../nn/module';
import type { SpectraItem, SpectraTask } from '../../../data/datasets/spectra';
import type { Dataset } from '../../../data/datasets/base';
import { AdamWHF, FusedAdam, Optimizer, ParamGroup } from '../../../train/optim';
import { Trainer, TrainOutput, EvalPrediction } from '../../../train/trainer';
import type { TrainingArgumentsInit } from '../../../train/args';
import type { TrainerOptions } from '../../../train/trainer';
import { accuracy, balancedAccuracy, f1 } from '../../../metrics/classification';
import { mmsa } from '../../../metrics/mmsa';
import { SPECTRA_LABEL_NUM, Spectra, SpectraPretrainedOptions } from './model';
import type { SpectraCollateOptions } from './data';

/**
 * The paper's metrics per task, from logits and labels (the original's downstream_metrics.py,
 * computed by et.metrics): MOSI/MOSEI the MMSA suite (Has0/Non0 acc-2 and weighted F1, acc-5,
 * acc-7, MAE, Corr); IEMOCAP accuracy (WA), weighted F1 and UA (balanced accuracy); MIntRec
 * 20-class accuracy and macro F1 plus the binary split (label > 10) accuracy and macro F1.
 * @throws EmotorchError ERR_INVALID_ARG for an unknown task.
 * @example
 * const m = et.systems.spectra.spectraMetrics('iemocap')({ predictions: logits, labelIds: labels });
 */
export function spectraMetrics(task: SpectraTask): (p: EvalPrediction) => Record<string, number> {
  if (!(task in SPECTRA_LABEL_NUM)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', task);
  return ({ predictions, labelIds }) => {
    if (!labelIds) throw new EmotorchError('SPECTRA metrics need labels', 'ERR_INVALID_ARG');
    const truth = Array.from(labelIds.to({ dtype: 'float64' }).dataSync() as Float64Array);
    if (task === 'mosi' || task === 'mosei') {
      const pred = Array.from(predictions.reshape([-1]).to({ dtype: 'float64' }).dataSync() as Float64Array);
      return { ...mmsa(pred, truth) } as unknown as Record<string, number>;
    }
    const pred = Array.from(predictions.argmax(-1).to({ dtype: 'float64' }).dataSync() as Float64Array);
    if (task === 'iemocap') {
      return { accuracy: accuracy(pred, truth), f1_weighted: f1(pred, truth, { average: 'weighted' }), ua: balancedAccuracy(pred, truth) };
    }
    const bin = (xs: number[]) => xs.map((x) => (x > 10 ? 1 : 0));
    return {
      acc_20: accuracy(pred, truth),
      f1_20: f1(pred, truth, { average: 'macro' }),
      acc_2: accuracy(bin(pred), bin(truth)),
      f1_2: f1(bin(pred), bin(truth), { average: 'macro' }),
    };
  };
}

/** The metric that picks the best checkpoint per task. */
export const SPECTRA_BEST_METRIC: Record<SpectraTask, string> = { mosi: 'Non0_acc_2', mosei: 'Non0_acc_2', iemocap: 'accuracy', mintrec: 'acc_20' };

/**
 * The original's optimizer groups (main.py): weight decay on every parameter whose name contains
 * none of 'bias', 'LayerNorm.weight', 'LayerNorm.bias' (so WavLM's lower-case `layer_norm`
 * weights, audio_cls/audio_sep and the embeddings are decayed, as in the original).
 */
export function spectraParamGroups(model: Module, weightDecay = 0.01): ParamGroup[] {
  const noDecay = ['bias', 'LayerNorm.weight', 'LayerNorm.bias'];
  const groups: [Tensor[], Tensor[]] = [[], []];
  for (const [n, p] of model.namedParameters()) if (p.requiresGrad) groups[noDecay.some((k) => n.includes(k)) ? 1 : 0].push(p);
  return [
    { params: groups[0], weightDecay },
    { params: groups[1], weightDecay: 0 },
  ].filter((g) => g.params.length > 0);
}

/** The optimizer main.py builds: apex's FusedAdam without bias correction (`--apex_level` > 0) or transformers 4.x's AdamW (0). */
export type SpectraOptim = 'fused_adam' | 'adamw_hf';

/**
 * main.py's optimizer over {@link spectraParamGroups}: `FusedAdam(groups, lr, bias_correction=False)`
 * when `--apex_level` > 0 (train-960.sh and finetune.sh pass 1), else transformers' `AdamW(groups,
 * lr, eps=1e-8)`. Betas and epsilon are the args' (main.py leaves both classes' defaults, 0.9 / 0.999
 * and 1e-8, which are TrainingArguments' too).
 * @throws EmotorchError ERR_INVALID_ARG for an unknown `optim`.
 */
export function spectraOptimizer(model: Module, optim: SpectraOptim, args: TrainingArgumentsInit, lr: number): Optimizer {
  const groups = spectraParamGroups(model, args.weight_decay ?? 0.01);
  const common = {
    lr: args.learning_rate ?? lr,
    betas: [args.adam_beta1 ?? 0.9, args.adam_beta2 ?? 0.999] as [number, number],
    eps: args.adam_epsilon ?? 1e-8,
  };
  if (optim === 'fused_adam') return new FusedAdam(groups, { ...common, biasCorrection: false });
  if (optim === 'adamw_hf') return new AdamWHF(groups, common);
  return invalid("'fused_adam' (main.py with --apex_level > 0) or 'adamw_hf' (--apex_level 0)", 'optim', optim);
}

/**
 * main.py's `step()` under gradient accumulation: every micro-batch's loss divided by `--grad_acc`
 * (the short last window of an epoch too), and `clip_grad_norm_` after every backward.
 */
export const SPECTRA_ACCUMULATION: TrainerOptions['accumulation'] = { clip: 'micro-batch', divisor: 'gradient_accumulation_steps' };

/** Options of `Spectra.finetune`. */
export interface SpectraFinetuneOptions {
  task: SpectraTask;
  /** A SPECTRA model (e.g. from fromPretrained) or a checkpoint folder to load with this task. */
  model: Spectra | string;
  train: Dataset<SpectraItem>;
  eval?: Dataset<SpectraItem>;
  /** TrainingArguments overriding the paper's (output_dir at least). */
  args?: TrainingArgumentsInit;
  /** Collate options (audioLength in samples, textLength, multiAudio; IEMOCAP's default is multiAudio). */
  collate?: SpectraCollateOptions;
  /** Load options when `model` is a folder (device, maskAudioCls, …). */
  load?: SpectraPretrainedOptions;
  /**
   * The optimizer: 'fused_adam' (apex's FusedAdam without bias correction, main.py with
   * `--apex_level` > 0 as finetune.sh runs it; the default) or 'adamw_hf' (transformers 4.x's AdamW,
   * `--apex_level 0`).
   */
  optim?: SpectraOptim;
}

/**
 * The paper's fine-tuning recipe on {@link Trainer} (finetune.sh through main.py): batch 24, 5
 * epochs, lr 2e-5, apex's FusedAdam without bias correction (`optim`, eps 1e-8), weight decay 0.01
 * by the original's name rule ({@link spectraParamGroups}), clipping 1.0 after every micro-batch
 * and each loss divided by the accumulation steps in every window (main.py's `step()`), warmup
 * int(1 % of the steps) then linear decay (cosine when that is 0 steps, as the original), audio
 * cut to 10 s, text to 512 tokens with the history cut from the left, evaluation and saving every
 * epoch, the best checkpoint by the task's metric ({@link SPECTRA_BEST_METRIC}) loaded at the end.
 * @returns the trainer (for evaluate / predict) and its TrainOutput
 * @throws EmotorchError ERR_INVALID_ARG for bad options (and what the Trainer and loaders throw).
 * @example
 * const { trainer } = await et.systems.spectra.Spectra.finetune({
 *   task: 'iemocap', model: 'SPECTRA-base/', train, eval: valid, args: { output_dir: 'runs/iemocap' },
 *   load: { device: 'cuda' },
 * });
 * console.log(await trainer.evaluate(test, 'test'));
 */
export async function finetuneSpectra(opts: SpectraFinetuneOptions): Promise<{ model: Spectra; trainer: Trainer<SpectraItem>; output: TrainOutput }> {
  if (!opts || typeof opts !== 'object') invalid('{ task, model, train, … }', 'finetune options', opts);
  checkOptionNames(opts, ['task', 'model', 'train', 'eval', 'args', 'collate', 'load', 'optim'], 'Spectra.finetune');
  const { task } = opts;
  if (!(task in SPECTRA_LABEL_NUM)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', task);
  if (!opts.train || typeof opts.train.length !== 'number') invalid('a dataset', 'train', opts.train);
  const model = typeof opts.model === 'string' ? await Spectra.fromPretrained(opts.model, { ...opts.load, task }) : opts.model;
  if (!(model instanceof Spectra)) invalid('a Spectra model or a folder', 'model', opts.model);
  if (model.config.num_class !== SPECTRA_LABEL_NUM[task])
    invalid(`a model with ${SPECTRA_LABEL_NUM[task]} outputs for ${task}`, 'model', `${model.config.num_class} outputs`);
  const given = opts.args ?? {};
  const batch = given.per_device_train_batch_size ?? 24;
  const accum = given.gradient_accumulation_steps ?? 1;
  const epochs = given.num_train_epochs ?? 5;
  const steps = epochs * Math.ceil(opts.train.length / batch / accum);
  const warmup = Math.floor(0.01 * steps);
  const args: TrainingArgumentsInit = {
    per_device_train_batch_size: 24,
    per_device_eval_batch_size: 24,
    num_train_epochs: 5,
    learning_rate: 2e-5,
    adam_epsilon: 1e-8,
    weight_decay: 0.01,
    max_grad_norm: 1.0,
    warmup_steps: warmup,
    lr_scheduler_type: warmup === 0 ? 'cosine' : 'linear',
    eval_strategy: opts.eval ? 'epoch' : 'no',
    save_strategy: 'epoch',
    save_total_limit: 1,
    load_best_model_at_end: !!opts.eval,
    metric_for_best_model: opts.eval ? SPECTRA_BEST_METRIC[task] : null,
    greater_is_better: true,
    seed: 42,
    ...given,
  };
  const collate: SpectraCollateOptions = {
    audioLength: model.config.audio.max_length,
    textLength: model.config.text.max_length,
    regression: SPECTRA_LABEL_NUM[task] === 1,
    ...(task === 'iemocap' ? { multiAudio: true } : {}),
    ...opts.collate,
  };
  const trainer = new Trainer<SpectraItem>({
    model,
    args,
    trainDataset: opts.train,
    evalDataset: opts.eval,
    dataCollator: (items) => Spectra.collate(items, collate) as unknown as Record<string, unknown>,
    computeMetrics: spectraMetrics(task),
    optimizer: spectraOptimizer(model, opts.optim ?? 'fused_adam', args, 2e-5),
    accumulation: SPECTRA_ACCUMULATION,
  });
  const output = await trainer.train();
  return { model, trainer, output };
}

// `Spectra.finetune`: the recipe as a static of the model class. It is declared here, beside what it
// runs, so that the folder reads data → model → recipe without a circle (model.ts never imports this).
declare module './model' {
  /** The statics of {@link Spectra} that its recipe adds: {@link Spectra.finetune}. */
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Spectra {
    /** The paper's fine-tuning recipe: see {@link finetuneSpectra}. */
    let finetune: typeof finetuneSpectra;
  }
}
Spectra.finetune = finetuneSpectra;
