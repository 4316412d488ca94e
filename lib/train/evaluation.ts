/**
 * The Trainer's evaluation loop: the mean loss per sample over a set and, when asked, the
 * predictions (logits, or generated tokens) and labels concatenated over it; data-parallel, each
 * rank evaluates its share and the sums and rows are gathered. And, for a classification
 * evaluation, its confusion matrix and report.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, cat, full, noGrad, tensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import type { Module } from '../nn/module';
import { DataLoader } from '../data/loader';
import type { Dataset } from '../data/datasets/base';
import * as dist from '../distributed/group';
import { DTYPES, DType, isFloating } from '../dtype';
import { classificationReport, confusionMatrix } from '../metrics/classification';
import { confusionMatrixSvg } from './plots';
import type { TrainingArguments } from './args';
import { Forward, toDevice } from './forward';
import type { Batch, TrainerOptions } from './trainer-options';

/** What the loop uses of its Trainer. */
export interface EvalParts<T> {
  model: Module;
  args: TrainingArguments;
  /** The Trainer's options (dataCollator, computeLoss and generateOptions are read from them). */
  opts: Pick<TrainerOptions<T>, 'dataCollator' | 'computeLoss' | 'generateOptions'>;
  fwd: Forward;
  world: number;
  rank: number;
  /**
   * Every rank runs as many forwards as the rank with the most batches (repeating its last batch,
   * results discarded), as accelerate's even_batches: a model sharded at ZeRO stage 3 gathers its
   * parameters in each forward, a collective every rank must join.
   */
  evenBatches?: boolean;
}

/** What the loop gives: the mean loss (null without labels or computeLoss), predictions and labels, items and batches. */
export interface EvalResult {
  loss: number | null;
  predictions: Tensor | null;
  labelIds: Tensor | null;
  n: number;
  batches: number;
}

/** Sums over the batches of a rank, and its rows of predictions and labels. */
interface Sums {
  lossSum: number;
  lossN: number;
  n: number;
  batches: number;
  preds: Tensor[];
  labels: Tensor[];
}

/** Evaluates `ds` (without gradients, the model in eval mode); see the file's comment. */
export async function evaluationLoop<T>(p: EvalParts<T>, ds: Dataset<T>, wantPredictions: boolean): Promise<EvalResult> {
  const { world } = p;
  const loader = evalLoader(p, ds);
  const wasTraining = p.model.training;
  p.model.eval();
  const s: Sums = { lossSum: 0, lossN: 0, n: 0, batches: 0, preds: [], labels: [] };
  const device = p.fwd.device;
  try {
    await noGrad(async () => {
      let last: Batch | null = null;
      for await (const raw of loader) {
        last = toDevice(raw, device) as Batch;
        await evalBatch(p, last, wantPredictions, s);
      }
      if (p.evenBatches && world > 1) {
        const bs = p.args.per_device_eval_batch_size;
        const most = Math.ceil(Math.ceil(ds.length / world) / bs); // rank 0 has the most items
        if (last === null && most > 0) for await (const raw of firstItem(p, ds)) last = toDevice(raw, device) as Batch;
        for (let i = loader.length; i < most && last; i++) await p.fwd.amp(() => p.model.forward(last));
      }
    });
  } finally {
    p.model.train(wasTraining);
  }
  let predictions = s.preds.length ? concatPadded(s.preds) : null;
  let labelIds = s.labels.length ? concatPadded(s.labels) : null;
  if (world > 1) {
    const sums = (await dist.allReduce(tensor([s.lossSum, s.lossN, s.n, s.batches], { dtype: 'float64' }), 'sum')).dataSync() as Float64Array;
    [s.lossSum, s.lossN, s.n, s.batches] = Array.from(sums);
    if (wantPredictions) {
      predictions = await gatherRows(predictions, world, ds.length);
      labelIds = await gatherRows(labelIds, world, ds.length);
    }
  }
  return { loss: s.lossN ? s.lossSum / s.lossN : null, predictions, labelIds, n: s.n, batches: s.batches };
}

/**
 * The set's batches. Distributed: rank r evaluates items r, r+W, … (no padding); sums and
 * predictions are then gathered, so every rank gets the metrics of the whole set.
 */
function evalLoader<T>(p: EvalParts<T>, ds: Dataset<T>): DataLoader<T, Batch> {
  const { world, rank } = p;
  const shard = world > 1 ? Array.from({ length: Math.max(0, Math.ceil((ds.length - rank) / world)) }, (_, i) => rank + i * world) : null;
  return new DataLoader<T, Batch>(ds, {
    batchSize: p.args.per_device_eval_batch_size,
    collate: p.opts.dataCollator as never,
    sampler: shard ? { length: shard.length, indices: () => shard } : undefined,
  });
}

/** The set's first item as a batch (a rank with no items of its own pads with it). */
function firstItem<T>(p: EvalParts<T>, ds: Dataset<T>): DataLoader<T, Batch> {
  return new DataLoader<T, Batch>(ds, { batchSize: 1, collate: p.opts.dataCollator as never, sampler: { length: 1, indices: () => [0] } });
}

/** One batch: its loss into the sums and, when wanted, its predictions and labels (on the CPU). */
async function evalBatch<T>(p: EvalParts<T>, batch: Batch, wantPredictions: boolean, s: Sums): Promise<void> {
  const lab = p.fwd.labelsOf(batch);
  const size = lab ? (lab.shape[0] ?? 1) : 1;
  s.batches += 1;
  s.n += size;
  let outputs: Record<string, unknown> = {};
  if (lab || p.opts.computeLoss) {
    const r = await p.fwd.lossOf(batch);
    outputs = r.outputs;
    s.lossSum += r.loss.detach().float().item() * size;
    s.lossN += size;
  } else if (wantPredictions) {
    outputs = (await p.fwd.amp(() => p.model.forward(batch))) as Record<string, unknown>;
  }
  if (!wantPredictions) return;
  const pred = await predictionOf(p, batch, outputs);
  if (pred instanceof Tensor) s.preds.push(pred.detach().to({ device: 'cpu' }));
  if (lab) s.labels.push(lab.to({ device: 'cpu' }));
}

/** A batch's predictions: the generated tokens with predict_with_generate, else its logits (or first non-loss tensor). */
async function predictionOf<T>(p: EvalParts<T>, batch: Batch, outputs: Record<string, unknown>): Promise<unknown> {
  const a = p.args;
  if (a.predict_with_generate) {
    const inputs = Object.fromEntries(Object.entries(batch).filter(([k]) => !a.label_names.includes(k)));
    const gen = { ...(a.generation_max_length ? { maxNewTokens: a.generation_max_length } : {}), ...p.opts.generateOptions };
    const out = await (p.model as unknown as { generate(i: unknown, o: unknown): Promise<unknown> }).generate(inputs, gen);
    return out instanceof Tensor ? out : (out as { newTokens?: unknown })?.newTokens;
  }
  return outputs.logits ?? Object.entries(outputs).find(([k, v]) => k !== 'loss' && v instanceof Tensor)?.[1];
}

/** Concatenates along dim 0, padding dim 1 with -100 when lengths differ (HF's nested concat). */
function concatPadded(ts: Tensor[]): Tensor {
  if (ts.length === 1) return ts[0];
  const ndim = ts[0].ndim;
  if (ndim < 2 || ts.every((t) => t.shape[1] === ts[0].shape[1])) return cat(ts, 0);
  const len = Math.max(...ts.map((t) => t.shape[1]));
  return cat(
    ts.map((t) => {
      if (t.shape[1] === len) return t;
      const pad = full([t.shape[0], len - t.shape[1], ...t.shape.slice(2)], -100, { dtype: t.dtype });
      return cat([t, pad], 1);
    }),
    0,
  );
}

/**
 * Every rank's `local` rows (rank r holding items r, r+W, … of a set of `total` items), back in
 * the set's order on every rank; dims after the first padded with -100 to the largest (as
 * concatPadded). null when no rank has any.
 */
async function gatherRows(local: Tensor | null, world: number, total: number): Promise<Tensor | null> {
  const MAXD = 6;
  if (local && local.ndim > MAXD)
    throw new EmotorchError(`evaluation outputs of ${local.ndim} dimensions cannot be gathered across ranks (at most ${MAXD})`, 'ERR_INVALID_ARG');
  const meta = new Array(MAXD + 3).fill(0);
  if (local) {
    meta[0] = 1;
    meta[1] = local.ndim;
    meta[2] = DTYPES.indexOf(local.dtype);
    local.shape.forEach((d, i) => {
      meta[3 + i] = d;
    });
  }
  const metas = (await dist.allGather(tensorOf(meta))).map((t) => Array.from(t.dataSync() as unknown as ArrayLike<number | bigint>, Number));
  const have = metas.filter((m) => m[0] === 1);
  if (!have.length) return null;
  const ndim = have[0][1];
  const dtype = DTYPES[have[0][2]] as DType;
  if (have.some((m) => m[1] !== ndim || m[2] !== have[0][2]))
    throw new EmotorchError('evaluation outputs differ in rank or dtype across ranks', 'ERR_INVALID_ARG');
  const maxShape = Array.from({ length: ndim }, (_, d) => Math.max(...have.map((m) => m[3 + d])));
  let t = local ?? full([0, ...maxShape.slice(1)], -100, { dtype });
  for (let d = ndim - 1; d >= 0; d--) {
    if (t.shape[d] < maxShape[d])
      t = cat(
        [
          t,
          full(
            t.shape.map((x, i) => (i === d ? maxShape[d] - x : x)),
            -100,
            { dtype },
          ),
        ],
        d,
      );
  }
  const parts = await dist.allGather(t);
  const rows = metas.map((m) => (m[0] === 1 ? m[3] : 0));
  const pieces = parts.map((p, r) => p.slice(0, 0, rows[r]));
  const offsets = rows.map((_, r) => rows.slice(0, r).reduce((x, y) => x + y, 0));
  const order = Array.from({ length: total }, (_, i) => offsets[i % world] + Math.floor(i / world));
  return cat(pieces, 0).indexSelect(0, tensorOf(order));
}

function tensorOf(v: number[]): Tensor {
  return tensor(v, { dtype: 'int64' });
}

/**
 * For a classification evaluation (logits (N, C), integer labels (N)): `confusion_matrix_<prefix>.svg`
 * and `classification_report_<prefix>.txt` (sklearn's layout) in `dir`, next to the curves;
 * nothing for other predictions.
 * @throws EmotorchError ERR_INVALID_ARG when `classNames` is not one name per logit.
 */
export async function writeConfusionFiles(
  dir: string,
  predictions: Tensor,
  labelIds: Tensor | null,
  prefix: string,
  classNames: string[] | undefined,
  step: number,
): Promise<void> {
  if (!labelIds || predictions.ndim !== 2 || labelIds.ndim !== 1 || labelIds.shape[0] !== predictions.shape[0]) return;
  if (!['int64', 'int32'].includes(labelIds.dtype) || !isFloating(predictions.dtype) || predictions.shape[0] === 0) return;
  const C = predictions.shape[1];
  const names = classNames ?? Array.from({ length: C }, (_, i) => String(i));
  if (names.length !== C) invalid(`${C} class names (one per logit)`, 'classNames', `${names.length} names`);
  const gold = (labelIds.toArray() as Array<number | bigint>).map(Number);
  if (gold.some((g) => !(g >= 0 && g < C))) return; // ignored (-100) or out-of-range labels: no class table
  const pred = (predictions.argmax(1).toArray() as Array<number | bigint>).map(Number);
  const labels = Array.from({ length: C }, (_, i) => i);
  const { matrix } = confusionMatrix(pred, gold, { labels });
  const report = classificationReport(pred, gold, { labels, targetNames: names, digits: 4, zeroDivision: 0 });
  await fs.promises.mkdir(dir, { recursive: true });
  await fs.promises.writeFile(
    path.join(dir, `confusion_matrix_${prefix}.svg`),
    confusionMatrixSvg(matrix, names, `confusion matrix (${prefix}, step ${step})`),
  );
  await fs.promises.writeFile(path.join(dir, `classification_report_${prefix}.txt`), `${report}\n`);
}
