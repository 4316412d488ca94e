/**
 * Loading models from local checkpoint folders (no downloads): `config.json` plus
 * `model.safetensors`, a sharded `model.safetensors.index.json`, or a torch.save `.bin`/`.pt`;
 * configs resolved against each model's defaults; key renames between checkpoint dialects as
 * declarative tables.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { loadSafetensors } from '../io/safetensors';
import { loadTorchFile } from '../io/torchfile';
import type { Module, ModuleOptions, StateDict } from './module';

/** Reads `<dir>/config.json`. @throws EmotorchError ERR_IO / ERR_FORMAT. */
export function readConfig(dir: string): Record<string, unknown> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new EmotorchError(`cannot read '${file}': ${(e as Error).message}`, 'ERR_IO');
  }
  try {
    const c = JSON.parse(text);
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new Error('not an object');
    return c;
  } catch (e) {
    throw new EmotorchError(`'${file}' is not a valid config: ${(e as Error).message}`, 'ERR_FORMAT');
  }
}

/**
 * Every tensor of a checkpoint folder or file: `model.safetensors`, the shards of
 * `model.safetensors.index.json`, `pytorch_model.bin`, or the given file itself.
 * @throws EmotorchError ERR_IO when nothing loadable is there.
 */
export async function loadCheckpoint(dirOrFile: string): Promise<StateDict> {
  if (typeof dirOrFile !== 'string') invalid('a folder or file path', 'checkpoint', dirOrFile);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dirOrFile);
  } catch {
    throw new EmotorchError(`checkpoint '${dirOrFile}' does not exist`, 'ERR_IO');
  }
  if (stat.isFile()) return loadFile(dirOrFile);
  const single = path.join(dirOrFile, 'model.safetensors');
  if (fs.existsSync(single)) return (await loadSafetensors(single)).tensors;
  const index = path.join(dirOrFile, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    let map: Record<string, string>;
    try {
      map = JSON.parse(fs.readFileSync(index, 'utf8')).weight_map;
      if (!map || typeof map !== 'object') throw new Error('no weight_map');
    } catch (e) {
      throw new EmotorchError(`'${index}' is not a valid shard index: ${(e as Error).message}`, 'ERR_FORMAT');
    }
    const out: StateDict = new Map();
    for (const shard of [...new Set(Object.values(map))]) {
      const { tensors } = await loadSafetensors(path.join(dirOrFile, shard));
      for (const [k, t] of tensors) out.set(k, t);
    }
    const absent = Object.keys(map).filter((k) => !out.has(k));
    if (absent.length) throw new EmotorchError(`'${index}' lists tensors its shards lack: ${absent.slice(0, 5).join(', ')}`, 'ERR_FORMAT');
    return out;
  }
  const bin = path.join(dirOrFile, 'pytorch_model.bin');
  if (fs.existsSync(bin)) return loadFile(bin);
  throw new EmotorchError(`'${dirOrFile}' has no model.safetensors, model.safetensors.index.json or pytorch_model.bin`, 'ERR_IO');
}

async function loadFile(file: string): Promise<StateDict> {
  if (file.endsWith('.safetensors')) return (await loadSafetensors(file)).tensors;
  const obj: unknown = await loadTorchFile(file);
  const sd = findStateDict(obj);
  if (!sd) throw new EmotorchError(`'${file}' holds no state dict (a mapping of names to tensors)`, 'ERR_FORMAT');
  return sd;
}

// Reading torch.save files arrives with the pickle reader (lib/data/pickle.ts).
async function loadTorchCheckpoint(file: string): Promise<unknown> {
  throw new EmotorchError(`'${file}': reading torch.save checkpoints is not available in this build yet; convert it to safetensors`, 'ERR_FORMAT');
}

/** A mapping of names to tensors inside a torch.save object (itself, or under 'model' / 'state_dict'). */
function findStateDict(obj: unknown): StateDict | null {
  const asMap = (o: unknown): Map<string, unknown> | null =>
    o instanceof Map ? (o as Map<string, unknown>) : o && typeof o === 'object' && !Array.isArray(o) ? new Map(Object.entries(o)) : null;
  const m = asMap(obj);
  if (!m) return null;
  // torch's state_dict OrderedDict pickles its `_metadata` attribute alongside the tensors.
  const tensors = [...m].filter(([k, v]) => v instanceof Tensor || k !== '_metadata');
  if (tensors.length > 0 && tensors.every(([, v]) => v instanceof Tensor)) return new Map(tensors) as StateDict;
  for (const key of ['model', 'state_dict', 'module']) {
    const inner = findStateDict(m.get(key));
    if (inner) return inner;
  }
  return null;
}

/** One rename rule: keys matching `from` become `to` (a String.replace pattern), or are dropped (`to: null`). */
export type Rename = { from: RegExp; to: string | null };

/** Applies rename rules in order to every key (first match wins; unmatched keys stay). */
export function renameKeys(sd: StateDict, rules: readonly Rename[]): StateDict {
  const out: StateDict = new Map();
  for (const [k, t] of sd) {
    const rule = rules.find((r) => r.from.test(k));
    if (!rule) out.set(k, t);
    else if (rule.to !== null) out.set(k.replace(rule.from, rule.to), t);
  }
  return out;
}

/**
 * The keys of `sd` under the first of `prefixes` that any key starts with, with it removed
 * (e.g. 'model.encoder.' or 'encoder.'); `sd` itself when none matches.
 */
export function stripPrefix(sd: StateDict, prefixes: readonly string[]): StateDict {
  for (const p of prefixes) {
    if ([...sd.keys()].some((k) => k.startsWith(p))) {
      return new Map([...sd].filter(([k]) => k.startsWith(p)).map(([k, t]) => [k.slice(p.length), t] as [string, Tensor]));
    }
  }
  return sd;
}

export type ConfigSpec<C> = {
  [K in keyof C]: C[K] extends number ? 'int' | 'posint' | 'number' | 'prob' : C[K] extends boolean ? 'bool' : C[K] extends string ? 'string' : 'any';
};

/**
 * A fully defaulted config: each field from `given` (HF config.json names) or the default,
 * checked against its kind; fields the model does not use are ignored.
 * @throws EmotorchError ERR_INVALID_ARG naming the field.
 */
export function resolveConfig<C extends object>(model: string, defaults: C, spec: ConfigSpec<C>, given: Partial<C> | Record<string, unknown>): C {
  if (!given || typeof given !== 'object') invalid('a config object', `${model} config`, given);
  const out = { ...defaults } as Record<string, unknown>;
  for (const [k, kind] of Object.entries(spec) as [string, string][]) {
    const v = (given as Record<string, unknown>)[k];
    if (v === undefined || v === null) continue;
    const name = `${model} config.${k}`;
    const ok =
      kind === 'int' ? Number.isInteger(v) :
      kind === 'posint' ? Number.isInteger(v) && (v as number) > 0 :
      kind === 'number' ? typeof v === 'number' && Number.isFinite(v) :
      kind === 'prob' ? typeof v === 'number' && v >= 0 && v <= 1 :
      kind === 'bool' ? typeof v === 'boolean' :
      kind === 'string' ? typeof v === 'string' : true;
    if (!ok) {
      const what = { int: 'an integer', posint: 'a positive integer', number: 'a finite number', prob: 'a number in [0, 1]', bool: 'a boolean', string: 'a string' }[kind] ?? 'a value';
      invalid(what, name, v);
    }
    out[k] = v;
  }
  return out as C;
}

export interface PretrainedOptions extends ModuleOptions {
  /** Default true: missing or unexpected keys are an error (after the model's own renames). */
  strict?: boolean;
}

/**
 * Loads converted weights into a freshly created model and moves it: the common tail of every
 * `fromPretrained`.
 */
export async function finishPretrained<M extends Module>(model: M, sd: StateDict, opts: PretrainedOptions): Promise<M> {
  await model.loadStateDict(sd, { strict: opts.strict ?? true });
  if (opts.device || opts.dtype) await model.to({ device: opts.device, dtype: opts.dtype });
  model.eval();
  return model;
}
