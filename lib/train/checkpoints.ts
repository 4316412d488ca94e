/**
 * The Trainer's checkpoint folders on disk: `output_dir/checkpoint-<step>/` with the model, the
 * optimizer, scheduler and scaler states, the RNG states, training_args.json and
 * trainer_state.json; written through a temporary folder renamed into place, listed, rotated
 * (save_total_limit) and read back, field by field checked, to resume.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor } from '../tensor';
import { cuda } from '../device';
import { EmotorchError, show } from '../errors';
import { getRngState, setRngState } from '../runtime';
import type { Module, StateDict } from '../nn/module';
import type { ShardedDataParallel } from '../distributed/zero';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { readJson } from '../io/file';
import type { Optimizer } from './optim';
import type { LRScheduler } from './schedules';
import type { GradScaler } from './amp';
import type { TrainingArguments } from './args';
import type { TrainerState } from './callbacks';

/** Where training stands in the data: `batches` of this rank's loader in `epoch`; `world` ranks of `perDevice` items per batch (to resume on another number of ranks). */
export type Position = { epoch: number; batches: number; world?: number; perDevice?: number };
export interface Extra {
  data: Position;
  logSum: number;
  logCount: number;
  gradNorm: number | null;
  trainLossSum: number;
  /** trainMetrics' sums since the last log (each micro-batch's value divided as its loss was). */
  custom?: Record<string, number>;
}

const CKPT = /^checkpoint-(\d+)$/;
export async function exists(p: string): Promise<boolean> {
  return fs.promises.access(p).then(
    () => true,
    () => false,
  );
}

/**
 * Creates args.output_dir (and its parents): a path that is a file, or lies under one, is an
 * ERR_INVALID_ARG naming it rather than a raw EEXIST / ENOTDIR; another failure is ERR_IO.
 */
export async function makeOutputDir(dir: string): Promise<void> {
  try {
    await fs.promises.mkdir(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR')
      throw new EmotorchError(`Expected a folder for args.output_dir but received ${show(dir)}, which is a file or lies under one`, 'ERR_INVALID_ARG');
    throw new EmotorchError(`cannot create args.output_dir ${show(dir)}: ${(e as Error).message}`, 'ERR_IO');
  }
}

/** Complete checkpoints (with trainer_state.json) in a folder, oldest first. */
export async function listCheckpoints(outputDir: string): Promise<Array<{ step: number; path: string }>> {
  let names: string[];
  try {
    names = await fs.promises.readdir(outputDir);
  } catch {
    return [];
  }
  const out: Array<{ step: number; path: string }> = [];
  for (const n of names) {
    const m = CKPT.exec(n);
    if (m && (await exists(path.join(outputDir, n, 'trainer_state.json')))) out.push({ step: Number(m[1]), path: path.join(outputDir, n) });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The checkpoint to resume from per args.resume_from_checkpoint (true: the latest complete one), or null. */
export async function resolveResume(args: TrainingArguments): Promise<string | null> {
  const rc = args.resume_from_checkpoint;
  if (rc === null || rc === false) return null;
  if (rc === true) {
    const list = await listCheckpoints(args.output_dir);
    if (!list.length) throw new EmotorchError(`args.resume_from_checkpoint is true but '${args.output_dir}' holds no complete checkpoint`, 'ERR_INVALID_ARG');
    return list[list.length - 1].path;
  }
  if (!(await exists(path.join(rc, 'trainer_state.json'))))
    throw new EmotorchError(`args.resume_from_checkpoint: '${rc}' is not a complete checkpoint (no trainer_state.json)`, 'ERR_INVALID_ARG');
  return rc;
}

/** Removes the `tmp-checkpoint-*` folders a crash left in output_dir. */
export async function removeStaleTemporaries(outputDir: string): Promise<void> {
  for (const n of await fs.promises.readdir(outputDir)) {
    if (n.startsWith('tmp-checkpoint-')) await fs.promises.rm(path.join(outputDir, n), { recursive: true, force: true });
  }
}

/** What a checkpoint holds besides the files' names: the Trainer's parts at the step saved. */
export interface CheckpointParts {
  model: Module;
  /** The whole weights gathered from a sharded model (written in place of model.save; null: none written). */
  modelState?: StateDict | null;
  /** The optimizer state is in the folder's zero/ shards already (ShardedDataParallel.saveShards). */
  shardedOptimizer?: boolean;
  /** Resuming: the sharded wrapper whose zero/ shards hold the weights and the optimizer state. */
  sharded?: ShardedDataParallel | null;
  args: TrainingArguments;
  optimizer: Optimizer | null;
  lrScheduler: LRScheduler | null;
  scaler: GradScaler | null;
  state: TrainerState;
  extra: Extra;
}

/**
 * Writes the checkpoint folder `final` through a temporary folder `tmp` renamed into place, so a
 * crash leaves either the complete folder or none.
 */
export async function writeCheckpoint(tmp: string, final: string, p: CheckpointParts): Promise<void> {
  const a = p.args;
  if (p.modelState === undefined) await prepareTemporary(a.output_dir, tmp); // a sharded save prepared it (and wrote zero/ into it)
  if (p.modelState === undefined) await p.model.save(path.join(tmp, 'model.safetensors'), { trainableOnly: a.save_only_trainable });
  else if (p.modelState) {
    const trainable = new Set(
      p.model
        .namedParameters()
        .filter(([, t]) => t.requiresGrad)
        .map(([n]) => n),
    );
    const sd = a.save_only_trainable ? new Map([...p.modelState].filter(([n]) => trainable.has(n))) : p.modelState;
    await saveSafetensors(path.join(tmp, 'model.safetensors'), sd);
  }
  if (!a.save_only_model && p.optimizer) {
    if (!p.shardedOptimizer) await p.optimizer.save(path.join(tmp, 'optimizer.safetensors'));
    await fs.promises.writeFile(path.join(tmp, 'scheduler.json'), JSON.stringify(p.lrScheduler!.stateDict()));
    if (p.scaler) await fs.promises.writeFile(path.join(tmp, 'scaler.json'), JSON.stringify(p.scaler.stateDict()));
    await saveRngState(path.join(tmp, 'rng_state.safetensors'));
  }
  await fs.promises.writeFile(path.join(tmp, 'training_args.json'), JSON.stringify(a.toJSON(), null, 2));
  const st = { ...p.state, emotorch: { ...p.extra, save_only_model: a.save_only_model } };
  await fs.promises.writeFile(path.join(tmp, 'trainer_state.json'), JSON.stringify(st, null, 2));
  if (await exists(final)) await fs.promises.rm(final, { recursive: true, force: true });
  await fs.promises.rename(tmp, final);
}

/** Makes `tmp` an empty folder under output_dir (removing what a crash left there). */
export async function prepareTemporary(outputDir: string, tmp: string): Promise<void> {
  await makeOutputDir(outputDir);
  await fs.promises.rm(tmp, { recursive: true, force: true });
  await fs.promises.mkdir(tmp, { recursive: true });
}

/** Applies save_total_limit: removes the oldest checkpoints, keeping the best one (HF's rule). */
export async function rotateCheckpoints(outputDir: string, limit: number | null, bestModelCheckpoint: string | null): Promise<void> {
  if (!limit) return;
  const all = await listCheckpoints(outputDir);
  const best = bestModelCheckpoint ? path.resolve(bestModelCheckpoint) : null;
  const others = all.filter((c) => path.resolve(c.path) !== best);
  const hasBest = others.length < all.length;
  const latestIsBest = hasBest && path.resolve(all[all.length - 1].path) === best;
  const keepOthers = !hasBest ? limit : latestIsBest ? limit - 1 : Math.max(limit - 1, 1);
  for (const c of others.slice(0, Math.max(0, others.length - keepOthers))) await fs.promises.rm(c.path, { recursive: true, force: true });
}

/**
 * Reads a checkpoint to resume from: loads the model, optimizer, scheduler and scaler states into
 * `p`'s parts and returns the checked trainer state, and the RNG restore to run once data is
 * positioned.
 */
export async function readCheckpoint(dir: string, p: Omit<CheckpointParts, 'state' | 'extra'>): Promise<{ state: SavedState; restoreRng: () => void }> {
  const a = p.args;
  const stateFile = path.join(dir, 'trainer_state.json');
  const raw = await readStateJson(stateFile);
  if (!isRecord(raw) || !isRecord(raw.emotorch) || raw.emotorch.save_only_model)
    throw new EmotorchError(`'${dir}' holds only a model (save_only_model, or not an emotorch checkpoint): it cannot resume training`, 'ERR_FORMAT');
  const st = checkTrainerState(raw, stateFile);
  if (p.sharded) {
    if (!(await exists(path.join(dir, 'zero'))))
      throw new EmotorchError(`'${dir}' was not saved by a sharded (ZeRO) run: it has no zero/ shards to resume a sharded run from`, 'ERR_FORMAT');
    await p.sharded.loadShards(path.join(dir, 'zero'), { optimizer: p.optimizer! });
  } else {
    if (await exists(path.join(dir, 'zero')))
      throw new EmotorchError(`'${dir}' was saved by a sharded (ZeRO) run: resume it with the same args.deepspeed under et.distributed`, 'ERR_FORMAT');
    await p.model.load(path.join(dir, 'model.safetensors'), { strict: !a.save_only_trainable });
    await p.optimizer!.load(path.join(dir, 'optimizer.safetensors'));
  }
  p.lrScheduler!.loadStateDict((await readStateJson(path.join(dir, 'scheduler.json'))) as { step: number });
  if (p.scaler) {
    const f = path.join(dir, 'scaler.json');
    if (await exists(f)) p.scaler.loadStateDict((await readStateJson(f)) as never);
  }
  const restoreRng = await loadRngState(path.join(dir, 'rng_state.safetensors'));
  return { state: st, restoreRng };
}

/** Saves the RNG state of the CPU and of every CUDA device (keys 'cpu', 'cuda:N'). */
async function saveRngState(file: string): Promise<void> {
  const rng = new Map<string, Tensor>([['cpu', getRngState('cpu')]]);
  if (cuda.isAvailable()) for (let d = 0; d < cuda.deviceCount(); d++) rng.set(`cuda:${d}`, getRngState(`cuda:${d}`));
  await saveSafetensors(file, rng, { format: 'emotorch-rng' });
}

/** Reads RNG states saved by {@link saveRngState}; returns the restore (devices this machine lacks are skipped). */
async function loadRngState(file: string): Promise<() => void> {
  const { tensors: rng } = await loadSafetensors(file);
  return () => {
    for (const [dev, t] of rng) {
      if (dev === 'cpu') setRngState(t, 'cpu');
      else if (cuda.isAvailable() && Number(dev.split(':')[1]) < cuda.deviceCount()) setRngState(t, dev as `cuda:${number}`);
    }
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/**
 * A checkpoint's JSON file, through the one JSON reader (ERR_IO when it cannot be read or is not
 * a regular file); a syntax error keeps the Trainer's wording, '<file>' is not valid JSON (ERR_FORMAT,
 * without quoting it).
 */
async function readStateJson(file: string): Promise<unknown> {
  try {
    return await readJson(file);
  } catch (e) {
    if (e instanceof EmotorchError && e.code === 'ERR_FORMAT') throw new EmotorchError(`'${file}' is not valid JSON`, 'ERR_FORMAT');
    throw e;
  }
}

export type SavedState = TrainerState & { emotorch: Extra };

/**
 * Checks a trainer_state.json read for resuming, field by field, as any input: a wrong field is an
 * ERR_FORMAT naming the file and the field (never the content). JSON writes a NaN loss sum as
 * null; it comes back as NaN.
 */
export function checkTrainerState(st: Record<string, unknown>, file: string): SavedState {
  const bad = (field: string, what: string): never => {
    throw new EmotorchError(`'${file}' is not a valid trainer state: ${field} must be ${what}`, 'ERR_FORMAT');
  };
  const int = (v: unknown, min: number) => typeof v === 'number' && Number.isSafeInteger(v) && v >= min;
  const num = (v: unknown) => typeof v === 'number' && Number.isFinite(v);
  if (!int(st.global_step, 0)) bad('global_step', 'a non-negative integer');
  if (!num(st.epoch) || (st.epoch as number) < 0) bad('epoch', 'a non-negative number');
  if (!Array.isArray(st.log_history)) bad('log_history', 'an array of log records');
  (st.log_history as unknown[]).forEach((r, i) => {
    if (!isRecord(r) || Object.values(r).some((v) => v !== null && typeof v !== 'number')) bad(`log_history[${i}]`, 'an object of numbers');
  });
  if (st.best_metric !== null && st.best_metric !== undefined && typeof st.best_metric !== 'number') bad('best_metric', 'a number or null');
  if (st.best_global_step !== null && st.best_global_step !== undefined && !int(st.best_global_step, 0))
    bad('best_global_step', 'a non-negative integer or null');
  if (st.best_model_checkpoint !== null && st.best_model_checkpoint !== undefined && typeof st.best_model_checkpoint !== 'string')
    bad('best_model_checkpoint', 'a path or null');
  if (st.stateful_callbacks !== undefined && !isRecord(st.stateful_callbacks)) bad('stateful_callbacks', 'an object');
  if (st.total_flos !== undefined && !num(st.total_flos)) bad('total_flos', 'a number');
  for (const k of ['logging_steps', 'eval_steps', 'save_steps', 'train_batch_size'])
    if (st[k] !== undefined && st[k] !== null && !num(st[k])) bad(k, 'a number or null');
  const e = st.emotorch as Record<string, unknown>;
  const d = e.data;
  if (!isRecord(d)) bad('emotorch.data', 'a data position { epoch, batches }');
  const pos = d as Record<string, unknown>;
  if (!int(pos.epoch, 0)) bad('emotorch.data.epoch', 'a non-negative integer');
  if (!int(pos.batches, 0)) bad('emotorch.data.batches', 'a non-negative integer');
  for (const k of ['world', 'perDevice']) if (pos[k] !== undefined && !int(pos[k], 1)) bad(`emotorch.data.${k}`, 'a positive integer');
  for (const k of ['logSum', 'trainLossSum']) if (e[k] !== null && typeof e[k] !== 'number') bad(`emotorch.${k}`, 'a number');
  if (!int(e.logCount, 0)) bad('emotorch.logCount', 'a non-negative integer');
  if (e.gradNorm !== null && typeof e.gradNorm !== 'number') bad('emotorch.gradNorm', 'a number or null');
  const nan = (v: unknown) => (v === null ? NaN : (v as number));
  return {
    ...(st as unknown as SavedState),
    best_metric: (st.best_metric ?? null) as number | null,
    best_global_step: (st.best_global_step ?? null) as number | null,
    best_model_checkpoint: (st.best_model_checkpoint ?? null) as string | null,
    stateful_callbacks: (st.stateful_callbacks ?? {}) as Record<string, unknown>,
    emotorch: {
      data: {
        epoch: pos.epoch as number,
        batches: pos.batches as number,
        ...(pos.world !== undefined ? { world: pos.world as number } : {}),
        ...(pos.perDevice !== undefined ? { perDevice: pos.perDevice as number } : {}),
      },
      logSum: nan(e.logSum),
      logCount: e.logCount as number,
      gradNorm: e.gradNorm as number | null,
      trainLossSum: nan(e.trainLossSum),
    },
  };
}
