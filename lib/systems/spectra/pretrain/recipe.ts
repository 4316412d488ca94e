/**
 * SPECTRA's pre-training recipe: main.py's `--mode pretrain` on the Trainer, with the fine-tuning
 * recipe's optimizer and accumulation.
 */
import * as path from 'path';
import type { Tensor } from '../../../tensor';
import { invalid, checkOptionNames } from '../../../errors';
import { Trainer, TrainOutput } from '../../../train/trainer';
import type { TrainingArgumentsInit } from '../../../train/args';
import type { TrainerCallback } from '../../../train/callbacks';
import { SPECTRA_ACCUMULATION, SpectraOptim, spectraOptimizer } from '../finetune/recipe';
import { SpectraPretrainCollateOptions, SpectraPretrainDataset, SpectraPretrainItem, generator, spectraPretrainCollate } from './data';
import { SpectraForPreTraining } from './model';

/** Options of {@link pretrainSpectra}. */
export interface SpectraPretrainRecipeOptions {
  model: SpectraForPreTraining;
  train: SpectraPretrainDataset;
  /**
   * TrainingArguments overriding scripts/train-960.sh's (per device: batch 24, gradient
   * accumulation 4, 5 epochs, lr 1e-4, eps 1e-8, weight decay 0.01 by the original's name rule,
   * clipping 1.0, warmup int(1 % of the steps) then linear decay, cosine at 0 warmup steps).
   */
  args?: TrainingArgumentsInit;
  /**
   * The optimizer: 'fused_adam' (apex's FusedAdam without bias correction, main.py with
   * `--apex_level` > 0 as train-960.sh runs it; the default) or 'adamw_hf' (transformers 4.x's
   * AdamW, `--apex_level 0`).
   */
  optim?: SpectraOptim;
  /**
   * Collate options (default: the model's audio / text lengths, RoBERTa's special ids and
   * `<mask>`); give `tokenizer` for a tokenizer of your own.
   */
  collate?: Omit<SpectraPretrainCollateOptions, 'seed' | 'random' | 'mlm'>;
  /** Where `{modelName}-{epoch}` folders are saved (main.py's `--model_save_path`); none: nothing is saved. */
  saveDir?: string;
  /** Default 'v1.1', main.py's (train-960.sh passes 'spectra'). */
  modelName?: string;
  /** Save every this many epochs (main.py's `--save_interval`, default 100); the last epoch is saved too. */
  saveInterval?: number;
  /** Seeds the MLM draws (the dataset's negatives and the masked frames have their own seeds). Default 42. */
  seed?: number;
}

/**
 * SPECTRA pre-training as main.py runs it (`--mode pretrain`) on {@link Trainer}: the four losses
 * summed, the original's optimizer groups and optimizer (apex's FusedAdam without bias correction
 * by default, as train-960.sh; `optim`), schedule, the DataCollatorForPreTraining batches, main.py's
 * `step()` (each micro-batch's loss divided by the accumulation steps in every window, the partly
 * accumulated gradient clipped after every micro-batch), and `{saveDir}/{modelName}-{epoch}`
 * folders every `saveInterval` epochs in the layout ATForPreTraining saves
 * ({@link SpectraForPreTraining.savePretrained}: they load into `Spectra.fromPretrained` for
 * fine-tuning). The four losses are logged beside the loss (`mlm`, `mam`, `rs`, `span`; they add
 * up to it). Under `npx emotorch-run` it trains data-parallel, as the original under
 * torch.distributed.launch (every micro-batch's backward synchronized, as its DDP model).
 * Where this departs from main.py: the last epoch is saved even when `saveInterval` does not divide
 * it (train-960.sh's 25 with 5 epochs saves nothing in the original).
 * @returns the trainer, its TrainOutput, and the folders saved
 * @throws EmotorchError ERR_INVALID_ARG for bad options (and what the Trainer and loaders throw).
 * @example
 * const model = await et.systems.spectra.SpectraForPreTraining.fromEncoders('wavlm-base-plus/', 'roberta-base/');
 * const train = await et.systems.spectra.SpectraPretrainDataset.fromFile('transcripts.pkl', { dataPath: 'data/' });
 * const { saved } = await et.systems.spectra.pretrainSpectra({ model, train, saveDir: 'runs/spectra', modelName: 'spectra', saveInterval: 1 });
 */
export async function pretrainSpectra(
  opts: SpectraPretrainRecipeOptions,
): Promise<{ trainer: Trainer<SpectraPretrainItem>; output: TrainOutput; saved: string[] }> {
  if (!opts || typeof opts !== 'object') invalid('{ model, train, … }', 'pretrain options', opts);
  checkOptionNames(opts, ['model', 'train', 'args', 'collate', 'saveDir', 'modelName', 'saveInterval', 'seed', 'optim'], 'pretrainSpectra');
  const { model } = opts;
  if (!(model instanceof SpectraForPreTraining)) invalid('a SpectraForPreTraining', 'model', model);
  if (!(opts.train instanceof SpectraPretrainDataset)) invalid('a SpectraPretrainDataset', 'train', opts.train);
  const interval = opts.saveInterval ?? 100;
  if (!Number.isInteger(interval) || interval < 1) invalid('a whole number of epochs ≥ 1', 'saveInterval', interval);
  const name = opts.modelName ?? 'v1.1';
  if (typeof name !== 'string' || !name || /[/\\]/.test(name)) invalid('a folder name', 'modelName', name);
  if (opts.saveDir !== undefined && (typeof opts.saveDir !== 'string' || !opts.saveDir)) invalid('a folder path', 'saveDir', opts.saveDir);
  const given = opts.args ?? {};
  const batch = given.per_device_train_batch_size ?? 24;
  const accum = given.gradient_accumulation_steps ?? 4;
  const epochs = given.num_train_epochs ?? 5;
  const steps = epochs * Math.ceil(opts.train.length / batch / accum);
  const warmup = Math.floor(0.01 * steps);
  const args: TrainingArgumentsInit = {
    per_device_train_batch_size: 24,
    gradient_accumulation_steps: 4,
    num_train_epochs: 5,
    learning_rate: 1e-4,
    adam_epsilon: 1e-8,
    weight_decay: 0.01,
    max_grad_norm: 1.0,
    warmup_steps: warmup,
    lr_scheduler_type: warmup === 0 ? 'cosine' : 'linear',
    save_strategy: 'no',
    eval_strategy: 'no',
    seed: 42,
    output_dir: opts.saveDir ?? 'output/spectra-pretrain',
    report_to: 'none',
    ...given,
  };
  const text = model.config.text;
  const collate: SpectraPretrainCollateOptions = {
    audioLength: model.config.audio.max_length,
    textLength: text.max_length,
    ...(opts.collate?.tokenizer ? {} : { vocabSize: text.vocab_size }),
    ...opts.collate,
    random: generator(opts.seed ?? 42),
  };
  const saved: string[] = [];
  const save = async (epoch: number) => {
    if (!opts.saveDir) return;
    const dir = path.join(opts.saveDir, `${name}-${epoch}`);
    await model.savePretrained(dir);
    saved.push(dir);
  };
  const saver: TrainerCallback = {
    name: 'spectra-pretrain-save',
    async onEpochEnd(ctx) {
      const epoch = Math.round(ctx.state.epoch);
      if (ctx.state.is_world_process_zero && epoch % interval === 0) await save(epoch);
    },
    async onTrainEnd(ctx) {
      const epoch = Math.round(ctx.state.epoch);
      if (ctx.state.is_world_process_zero && epoch % interval !== 0 && epoch > 0) await save(epoch);
    },
  };
  const trainer = new Trainer<SpectraPretrainItem>({
    model,
    args,
    trainDataset: opts.train,
    dataCollator: (items) => spectraPretrainCollate(items, collate) as unknown as Record<string, unknown>,
    trainMetrics: (out) => {
      const o = out as unknown as { mlmLoss: Tensor; mamLoss: Tensor; rsLoss: Tensor; spanLoss: Tensor };
      return { mlm: o.mlmLoss.item(), mam: o.mamLoss.item(), rs: o.rsLoss.item(), span: o.spanLoss.item() };
    },
    callbacks: [saver],
    optimizer: spectraOptimizer(model, opts.optim ?? 'fused_adam', args, 1e-4),
    accumulation: SPECTRA_ACCUMULATION,
  });
  const output = await trainer.train();
  return { trainer, output, saved };
}
