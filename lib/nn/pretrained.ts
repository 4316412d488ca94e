/**
 * Loading models from checkpoint folders (local, or a Hugging Face repo id's hub cache snapshot:
 * {@link pretrainedPath}): `config.json` plus
 * `model.safetensors`, a sharded `model.safetensors.index.json`, or a torch.save `.bin`/`.pt`;
 * configs resolved against each model's defaults; key renames between checkpoint dialects as
 * declarative tables.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tensor, tensor } from '../tensor';
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../io/safetensors';
import type { SafetensorsEntry } from '../io/safetensors';
import {
  QUANT_BYTES_PER_WEIGHT,
  QuantFormat,
  checkQuantFormat,
  checkQuantState,
  linearLayers,
  quantStateKey,
  quantize as quantizeModel,
  quantizeLayer,
  setQuantizedLayer,
} from './quant';
import type { LinearLayerInfo } from './quant';
import { NativeModule } from './module';
import {
  BnbFormat,
  BnbQuantization,
  bnbLayerKeys,
  bnbQuantizationConfig,
  bnbSkips,
  checkBnbLayer,
  nf4StateJson,
  pythonFloat,
  readBnbQuantization,
  readNf4State,
} from './bnb';
import { loadTorchFile } from '../io/torchfile';
import { MAX_JSON, readJsonObjectSync, readJsonSync } from '../io/file';
import { MODULE_OPTIONS, createUninitialized } from './module';
import { DType, DTYPE_BYTES, checkDtype, isFloating } from '../dtype';
import { checkDevice } from '../device';
import type { Module, ModuleOptions, StateDict } from './module';
import { cpu } from '../runtime';
import { HubOptions, resolvePretrainedPath } from '../io/hub';
import { checkValue, specOf } from './config';
import type { ConfigDecl, ConfigSpec } from './config';

/** Reads `<dir>/config.json`. @throws EmotorchError ERR_IO / ERR_FORMAT. */
export function readConfig(dir: string): Record<string, unknown> {
  if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
  const file = path.join(dir, 'config.json');
  return readJsonObjectSync(file, 'a valid config');
}

/** Whether `dirOrFile` is a folder with a `config.json`. */
export function hasConfigJson(dirOrFile: string): boolean {
  return fs.existsSync(path.join(dirOrFile, 'config.json'));
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
  if (fs.existsSync(single)) {
    checkReadMemory([single]);
    return (await loadSafetensors(single)).tensors;
  }
  const index = path.join(dirOrFile, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const parsed = readJsonSync(index, MAX_JSON) as { weight_map?: unknown } | null;
    const map = parsed && typeof parsed === 'object' ? parsed.weight_map : undefined;
    if (
      !map ||
      typeof map !== 'object' ||
      Array.isArray(map) ||
      !Object.values(map).every((v) => typeof v === 'string' && !v.includes('/') && !v.includes('\\'))
    ) {
      throw new EmotorchError(`'${index}' is not a valid shard index: weight_map must map names to shard file names in the same folder`, 'ERR_FORMAT');
    }
    const out: StateDict = new Map();
    const shards = [...new Set(Object.values(map) as string[])];
    checkReadMemory(shards.map((f) => path.join(dirOrFile, f)).filter((f) => fs.existsSync(f)));
    for (const shard of shards) {
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
  if (file.endsWith('.safetensors')) {
    checkReadMemory([file]);
    return (await loadSafetensors(file)).tensors;
  }
  const obj: unknown = await loadTorchFile(file);
  const sd = findStateDict(obj);
  if (!sd) throw new EmotorchError(`'${file}' holds no state dict (a mapping of names to tensors)`, 'ERR_FORMAT');
  return sd;
}

/** A mapping of names to tensors inside a torch.save object (itself, or under 'model' / 'state_dict'). */
function findStateDict(obj: unknown): StateDict | null {
  const asMap = (o: unknown): Map<string, unknown> | null =>
    o instanceof Map ? (o as Map<string, unknown>) : o && typeof o === 'object' && !Array.isArray(o) ? new Map(Object.entries(o)) : null;
  const m = asMap(obj);
  if (!m) return null;
  const tensors = [...m];
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
export function renameKeys<T = Tensor>(sd: Map<string, T>, rules: readonly Rename[]): Map<string, T> {
  const out = new Map<string, T>();
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
export function stripPrefix<T = Tensor>(sd: Map<string, T>, prefixes: readonly string[]): Map<string, T> {
  for (const p of prefixes) {
    if ([...sd.keys()].some((k) => k.startsWith(p))) {
      return new Map([...sd].filter(([k]) => k.startsWith(p)).map(([k, t]) => [k.slice(p.length), t] as [string, T]));
    }
  }
  return sd;
}

export type { ConfigSpec } from './config';

/**
 * A fully defaulted config: each field from `given` (HF config.json names) or the default,
 * checked against its kind; fields the model does not use are ignored. Activation aliases are
 * normalized (`swish` → `silu`, `gelu_new` → `gelu_tanh`).
 * @throws EmotorchError ERR_INVALID_ARG naming the field.
 */
export function resolveConfig<C extends object>(model: string, defaults: C, spec: ConfigSpec<C>, given: Partial<C> | Record<string, unknown>): C {
  if (!given || typeof given !== 'object' || Array.isArray(given)) invalid('a config object', `${model} config`, given);
  const out = { ...defaults } as Record<string, unknown>;
  for (const [k, kind] of Object.entries(spec) as [string, string][]) {
    const v = (given as Record<string, unknown>)[k];
    if (v !== undefined && v !== null) out[k] = checkValue(kind, v, `${model} config.${k}`);
  }
  return out as C;
}

/** Options of the models' `fromPretrained`: strictness, config overrides, device and dtype. */
export interface PretrainedOptions<C = Record<string, unknown>> extends Omit<ModuleOptions, 'dtype'> {
  /**
   * The parameters' dtype: float32 by default (every op has its fastest CPU kernels there, and the
   * systems join towers whose released checkpoints differ: Vicuna in float16, Whisper in float32),
   * a floating dtype, or 'auto': the checkpoint's own (the dtype most of its floating tensors
   * have), as transformers 5's default `dtype="auto"`, which loads a half-precision checkpoint in
   * its own size, without a conversion.
   */
  dtype?: DType | 'auto';
  /** Default true: missing or unexpected keys are an error (after the model's own renames). */
  strict?: boolean;
  /**
   * Config fields that replace the checkpoint's (HF `from_pretrained(dir, **kwargs)`), validated
   * as `create` validates them; a name the model's config does not have is an error.
   */
  config?: Partial<C>;
  /** For a Hugging Face repo id: the branch, tag or commit. Default 'main'. A local path ignores it. */
  revision?: string;
  /** For a Hugging Face repo id: the cache folder, token, offline mode, … ({@link HubOptions}). */
  hub?: Omit<HubOptions, 'revision'>;
}

/**
 * The names {@link PretrainedOptions} has: the options every `fromPretrained` takes (a model adds
 * its own to them). Kept beside the interface, in one place, so no model repeats the list.
 */
export const PRETRAINED_OPTIONS: readonly string[] = [...MODULE_OPTIONS, 'strict', 'config', 'revision', 'hub'];

/**
 * Checks a `fromPretrained`'s options before anything is read: each name must be one of
 * {@link PRETRAINED_OPTIONS} or the model's `extra` ones; a misspelt or foreign name (`dtpye`,
 * `lowCpuMemUsage`, which emotorch does not take) is refused, naming it and the options taken,
 * where it was taken and ignored (a 7B loaded in float32 for a misspelt `dtype`).
 * @internal
 * @returns the options (`{}` for undefined)
 * @throws EmotorchError ERR_INVALID_ARG
 */
export function checkPretrainedOptions<T extends object>(opts: T | undefined, name: string, extra: readonly string[] = []): T {
  return checkOptionNames(opts, [...PRETRAINED_OPTIONS, ...extra], name);
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Refuses, before a byte of data is read, safetensors files whose tensors need more memory than
 * the machine has available: a checkpoint is read into memory of its own (no tensor views the
 * file, which another program may rewrite or truncate), so its size is what the load takes, and
 * running out of it midway would bring the kernel's OOM killer, not an error.
 * @throws EmotorchError ERR_OUT_OF_MEMORY saying how much the files need and how much is available
 */
function checkReadMemory(files: string[]): void {
  let need = 0;
  for (const f of files) {
    const h = readSafetensorsHeader(f);
    need += h.fileSize - h.dataStart;
  }
  const have = cpu.availableMemory();
  if (need > 0.9 * have) {
    throw new EmotorchError(
      `loading ${files.length === 1 ? `'${files[0]}'` : `the ${files.length} shards of this checkpoint`} reads ${gib(need)} of tensors into memory and the machine has ${gib(have)} available: free memory, or use a machine with more`,
      'ERR_OUT_OF_MEMORY',
    );
  }
}

/**
 * Refuses a load whose dtype conversions need more memory than the machine has available, before
 * any is made: a checkpoint in its own dtype becomes the parameters as it was read (no memory
 * beyond its own), but each tensor converted (a bfloat16 7B loaded in the default float32: 27 GB)
 * is new memory, and running out of it midway would bring the kernel's OOM killer, not an error.
 * @throws EmotorchError ERR_OUT_OF_MEMORY saying how much the conversions need and how much is available
 */
function checkConversionMemory(model: Module, sd: StateDict, dtype: DType | undefined): void {
  let need = 0;
  const convert = new Set<string>();
  for (const [name, p] of model.stateDict()) {
    const t = sd.get(name);
    if (!t || !isFloating(t.dtype) || !isFloating(p.dtype)) continue;
    const to = dtype ?? p.dtype;
    if (t.dtype === to) continue;
    need += t.numel * DTYPE_BYTES[to];
    convert.add(`${t.dtype} → ${to}`);
  }
  const have = cpu.availableMemory();
  // a margin for what runs beside the load
  if (need > 0.9 * have) {
    throw new EmotorchError(
      `loading this checkpoint converts ${gib(need)} of tensors (${[...convert].join(', ')}) and the machine has ${gib(have)} available: ` +
        "load it in its own dtype (dtype: 'auto') or a half-precision one, or free memory",
      'ERR_OUT_OF_MEMORY',
    );
  }
}

/** The floating dtype most of a checkpoint's floating elements have (undefined when it has none). */
export function checkpointDtype(sd: StateDict): DType | undefined {
  const count = new Map<DType, number>();
  for (const t of sd.values()) if (isFloating(t.dtype)) count.set(t.dtype, (count.get(t.dtype) ?? 0) + t.numel);
  let best: DType | undefined;
  for (const [d, n] of count) if (best === undefined || n > count.get(best)!) best = d;
  return best;
}

/** A `fromPretrained` dtype: absent, 'auto' or a floating dtype. @throws EmotorchError ERR_INVALID_ARG */
export function checkPretrainedDtype(dtype: unknown): void {
  if (dtype !== undefined && dtype !== 'auto' && !isFloating(checkDtype(dtype)))
    invalid("a floating dtype (float32, float64, float16, bfloat16) or 'auto'", 'fromPretrained dtype', dtype);
}

/**
 * Builds a model for a checkpoint: unless the load is not strict (a checkpoint that may leave
 * parameters out, which keep their initialization), its parameters are left uninitialized for
 * the checkpoint to replace ({@link createUninitialized}): nothing random is drawn or written.
 */
export function createForCheckpoint<M>(opts: { strict?: boolean; dtype?: unknown; device?: unknown }, build: () => M): M {
  // the dtype and device are checked before anything is read or built
  checkPretrainedDtype(opts.dtype);
  if (opts.device !== undefined) checkDevice(opts.device);
  return opts.strict === false ? build() : createUninitialized(build);
}

/**
 * The local path behind a `fromPretrained` argument: an existing path as it is, a Hugging Face
 * repo id (`org/name`) as its hub cache snapshot (downloading what is missing), with the options'
 * `revision` and `hub`.
 * @throws EmotorchError ERR_IO for neither; for a repo id, the codes of `hubSnapshot` (ERR_HUB_NOT_FOUND, ERR_HUB_AUTH, ERR_HUB_NETWORK, ERR_HUB_INTEGRITY)
 */
export function pretrainedPath(dirOrId: string, opts: unknown = {}): Promise<string> {
  const o = (opts && typeof opts === 'object' ? opts : {}) as { revision?: string; hub?: Omit<HubOptions, 'revision'> };
  if (o.hub !== undefined && (o.hub === null || typeof o.hub !== 'object')) invalid('an object of hub options', 'opts.hub', o.hub);
  // the top-level revision wins; a system's shared hub options may carry one of their own
  return resolvePretrainedPath(dirOrId, o.revision === undefined ? { ...o.hub } : { ...o.hub, revision: o.revision });
}

/**
 * The checkpoint's config with the caller's overrides (`fromPretrained(dir, { config })`) laid
 * over it. The overrides must name fields of the model's config (`spec`, plus `extra` names the
 * model also reads); the values are checked by `create`. A config.json's own extra fields stay
 * accepted, as HF accepts them.
 * @throws EmotorchError ERR_INVALID_ARG for a non-object or an unknown field name.
 */
export function withOverrides(
  model: string,
  spec: object,
  fromFile: Record<string, unknown>,
  overrides: unknown,
  extra: readonly string[] = [],
): Record<string, unknown> {
  if (overrides === undefined) return fromFile;
  if (overrides === null || typeof overrides !== 'object' || Array.isArray(overrides)) invalid(`an object of ${model} config fields`, 'opts.config', overrides);
  for (const k of Object.keys(overrides)) {
    if (!Object.prototype.hasOwnProperty.call(spec, k) && !extra.includes(k))
      invalid(`a field of the ${model} config`, `opts.config.${k}`, 'a name it does not have');
  }
  return { ...fromFile, ...(overrides as Record<string, unknown>) };
}

/** Whether a tensor of `sd` changes dtype on its way into `model` (a floating one, to `dtype` or its parameter's). */
function needsConversion(model: Module, sd: StateDict, dtype: DType | undefined): boolean {
  for (const [name, p] of model.stateDict()) {
    const t = sd.get(name);
    if (t && isFloating(t.dtype) && isFloating(p.dtype) && t.dtype !== (dtype ?? p.dtype)) return true;
  }
  return false;
}

/** Whether `loadStateDict(sd, { strict })` would take `sd`: every shape equal and, when strict, the same names. */
function fitsModel(model: Module, sd: StateDict, strict: boolean): boolean {
  const own = model.stateDict();
  if (strict && (own.size !== sd.size || [...sd.keys()].some((k) => !own.has(k)))) return false;
  for (const [k, t] of sd) {
    const p = own.get(k);
    if (p && p.shape.join() !== t.shape.join()) return false;
  }
  return true;
}

/**
 * Assigns a checkpoint that needs converting a piece at a time (256 MiB of converted tensors),
 * each piece's read tensors freed once converted: the load peaks at the converted model plus one
 * piece, not at the checkpoint and its converted copy together. `sd` must fit the model ({@link fitsModel}).
 */
async function assignInPieces(model: Module, sd: StateDict, dtype: DType | undefined): Promise<void> {
  const own = model.stateDict();
  const entries = [...sd];
  let piece: [string, Tensor][] = [];
  let bytes = 0;
  const flush = async (): Promise<void> => {
    if (!piece.length) return;
    await model.loadStateDict(new Map(piece), { strict: false, assign: true, ...(dtype ? { dtype } : {}) });
    for (const [k, t] of piece) {
      t.dispose();
      sd.delete(k);
    }
    cpu.emptyCache();
    piece = [];
    bytes = 0;
  };
  for (const [k, t] of entries) {
    const p = own.get(k);
    piece.push([k, t]);
    bytes += t.numel * DTYPE_BYTES[p && isFloating(t.dtype) && isFloating(p.dtype) ? (dtype ?? p.dtype) : t.dtype];
    if (bytes >= 256 * 2 ** 20) await flush();
  }
  await flush();
}

/**
 * Loads converted weights into a freshly created model and moves it: the common tail of every
 * `fromPretrained`. The state dict's tensors become the parameters (`assign`); with `owned` (the
 * state dict was read here, not handed in by the caller) its handles are released afterwards.
 */
export async function finishPretrained<M extends Module>(model: M, sd: StateDict, opts: PretrainedOptions, owned = true): Promise<M> {
  const own = checkpointDtype(sd);
  const dtype = opts.dtype === 'auto' ? own : opts.dtype;
  // bound for another device: a checkpoint of one floating dtype goes over in it and is converted
  // there, so the host never holds a converted (e.g. float32) copy
  const elsewhere =
    opts.device !== undefined &&
    String(opts.device) !== 'cpu' &&
    own !== undefined &&
    dtype !== undefined &&
    dtype !== own &&
    [...sd.values()].every((t) => !isFloating(t.dtype) || t.dtype === own);
  if (!elsewhere) checkConversionMemory(model, sd, dtype);
  // the checkpoint's tensors become the parameters (converted to the dtype asked for, else kept in
  // the model's), then the state dict lets go of them: nothing is copied twice
  const strict = opts.strict ?? true;
  if (owned && !elsewhere && needsConversion(model, sd, dtype) && fitsModel(model, sd, strict)) await assignInPieces(model, sd, dtype);
  else await model.loadStateDict(sd, { strict, assign: true, ...(elsewhere ? { dtype: own } : dtype ? { dtype } : {}) });
  // (tensors a caller handed in, `owned` false, stay the caller's)
  if (owned) {
    for (const t of sd.values()) t.dispose();
    sd.clear();
  }
  cpu.emptyCache();
  if (elsewhere) await model.to({ device: opts.device });
  if (opts.device || dtype) await model.to({ device: opts.device, dtype });
  model.eval();
  return model;
}

/** A checkpoint as a model's `fromPretrained` read it: its tensors, and its config where they carry it. */
export interface Loaded {
  sd: StateDict;
  /** The config that came with the tensors (an OpenAI Whisper's dims, a BEATs `.pt`'s cfg); default: config.json. */
  config?: Record<string, unknown>;
}

/**
 * What differs between models' `fromPretrained`, declared: the one generic path
 * ({@link loadPretrained}) does the rest.
 */
export interface Loading<M extends Module, O extends PretrainedOptions<object>, L extends Loaded = Loaded> {
  /** The options the model takes beyond {@link PRETRAINED_OPTIONS}. */
  options?: readonly string[];
  /** Reads the tensors (and a config that comes with them); default: {@link loadCheckpoint} after the config. */
  read?(dir: string, opts: O): Promise<L>;
  /** The checkpoint's config where it is not config.json through the declaration's `normalize`. */
  config?(dir: string, opts: O, loaded: L | undefined): Record<string, unknown>;
  /** A checkpoint without a config.json takes `opts.config` as its whole config (a config.json's object, extra fields accepted). */
  configless?: boolean;
  /** Key prefixes, the first that any key has removed ({@link stripPrefix}). */
  prefixes?: readonly string[];
  /** Renames after the prefix ({@link renameKeys}). */
  renames?: readonly Rename[];
  /** The keys the model has (after renames); others (task heads, buffers) are left out. */
  keep?: RegExp;
  /** Builds the model for the config; default: the class's `create(config)`. */
  create?(config: Record<string, unknown>, loaded: L, opts: O): M;
  /**
   * After building, before the tensors are loaded (a tied head's key deleted, adapters applied).
   * With `opts.quantize` and a safetensors checkpoint, `loaded.sd` holds the keys only (the
   * tensors are read afterwards, a piece at a time): a hook may delete keys, not read them.
   */
  prepare?(model: M, loaded: L, opts: O): void;
  /**
   * The model takes `opts.quantize` ({@link QuantFormat}): its Linear layers are quantized as the
   * checkpoint is read, but for the layers this returns (left in the checkpoint's float dtype).
   */
  quantizable?(model: M): { skip: string[] };
}

/**
 * The generic `fromPretrained`: options checked (`<Class>.fromPretrained` in messages), the path
 * resolved, the config read (config.json through `decl.normalize`, or as `how` says) with
 * `opts.config` laid over it ({@link withOverrides}), the tensors read and renamed as `how`
 * declares, the model built without initialisation ({@link createForCheckpoint}) and the tensors
 * loaded into it ({@link finishPretrained}).
 * @throws EmotorchError as {@link loadCheckpoint}, {@link readConfig}, the model's `create` and `loadStateDict`
 */
export async function loadPretrained<M extends Module, O extends PretrainedOptions<object>, L extends Loaded = Loaded>(
  decl: ConfigDecl,
  cls: { name: string; create(config: object, opts?: object): M },
  dirOrFile: string,
  opts: O | undefined,
  how: Loading<M, O, L> = {},
): Promise<M> {
  const o = checkPretrainedOptions(opts, `${cls.name}.fromPretrained`, how.options);
  checkPretrainedDtype(o.dtype);
  if (o.device !== undefined) checkDevice(o.device);
  const dir = await pretrainedPath(dirOrFile, o);
  const read = how.read ? await how.read(dir, o) : undefined;
  let cfg = o.config;
  const whole = how.configless && o.config !== undefined && !hasConfigJson(dir);
  if (whole && (o.config === null || typeof o.config !== 'object' || Array.isArray(o.config)))
    invalid(`an object of ${decl.title} config fields`, 'opts.config', o.config);
  // the model's own config.json as it is written (kept for savePretrained, its quantization_config read)
  let json: Record<string, unknown> | undefined;
  if (!whole) {
    const raw = read?.config ?? (how.config ? how.config(dir, o, read) : decl.normalize((json = readConfig(dir))));
    cfg = withOverrides(decl.title, specOf(decl), raw, o.config);
  }
  const quantize = (o as { quantize?: unknown }).quantize;
  let format = quantize === undefined ? undefined : checkQuantFormat(quantize, `${cls.name}.fromPretrained opts.quantize`);
  // a checkpoint transformers + bitsandbytes saved: its quantized tensors are taken as they are
  const bnb = json ? readBnbQuantization(json) : null;
  if (bnb) {
    if (!how.quantizable)
      throw new EmotorchError(
        `${cls.name}.fromPretrained: '${dir}' is quantized (bitsandbytes ${bnb.format}) and this model has no quantized layers`,
        'ERR_FORMAT',
      );
    if (format !== undefined && format !== bnb.format)
      invalid(`'${bnb.format}' or nothing: the checkpoint is quantized with bitsandbytes (${bnb.format})`, `${cls.name}.fromPretrained opts.quantize`, format);
    if (read || !safetensorsFiles(dir))
      throw new EmotorchError(`'${dir}': a bitsandbytes checkpoint is read from safetensors (model.safetensors or its shards)`, 'ERR_FORMAT');
    format = bnb.format;
  }
  const files = format && !read ? safetensorsFiles(dir) : null;
  const rename = <T>(m: Map<string, T>): Map<string, T> => {
    if (how.prefixes) m = stripPrefix(m, how.prefixes);
    if (how.renames) m = renameKeys(m, how.renames);
    return how.keep ? new Map([...m].filter(([k]) => how.keep!.test(k))) : m;
  };
  const build = (loaded: L): M => {
    const model = createForCheckpoint(o, () => (how.create ? how.create(cfg as Record<string, unknown>, loaded, o) : cls.create(cfg as object)));
    how.prepare?.(model, loaded, o);
    return model;
  };
  const remember = (model: M): M => {
    if (json) READ_CONFIGS.set(model, { ...json, ...(o.config as Record<string, unknown> | undefined) });
    return model;
  };
  if (format && files) return remember(await loadQuantized(files, rename, build, how.quantizable!, format, o, bnb));
  const sd = rename(read?.sd ?? (await loadCheckpoint(dir)));
  const loaded = { ...read, sd } as L;
  const model = build(loaded);
  await finishPretrained(model, loaded.sd, o, !(o as { stateDict?: unknown }).stateDict);
  if (format) await quantizeModel(model as unknown as NativeModule, format, { skip: how.quantizable!(model).skip });
  return remember(model);
}

/** The config.json each model was read from (with `opts.config` laid over it), for {@link savePretrained}. */
const READ_CONFIGS = new WeakMap<object, Record<string, unknown>>();

/**
 * The config.json a model was read from by `fromPretrained` (its fields as written, `opts.config`
 * laid over them); undefined for a model made otherwise (`create`, a copy).
 */
export function pretrainedConfig(model: Module): Record<string, unknown> | undefined {
  const c = READ_CONFIGS.get(model);
  return c && structuredClone(c);
}

/** The safetensors files of a checkpoint folder or file (one, or an index's shards); null for another format. */
function safetensorsFiles(dirOrFile: string): string[] | null {
  if (dirOrFile.endsWith('.safetensors') && fs.existsSync(dirOrFile)) return [dirOrFile];
  const single = path.join(dirOrFile, 'model.safetensors');
  if (fs.existsSync(single)) return [single];
  const index = path.join(dirOrFile, 'model.safetensors.index.json');
  if (!fs.existsSync(index)) return null;
  const map = (readJsonSync(index, MAX_JSON) as Record<string, unknown> | null)?.['weight_map'] as Record<string, string> | undefined;
  if (!map || typeof map !== 'object' || !Object.values(map).every((v) => typeof v === 'string' && !v.includes('/') && !v.includes('\\')))
    throw new EmotorchError(`'${index}' is not a valid shard index: weight_map must map names to shard file names in the same folder`, 'ERR_FORMAT');
  return [...new Set(Object.values(map))].map((f) => path.join(dirOrFile, f));
}

/**
 * A model with its own `fromPretrained` loaded quantized as {@link loadPretrained} loads one: from a
 * safetensors checkpoint, a piece at a time, each Linear layer but those `quantizable` skips
 * quantized as its weight arrives (never the whole float model); null where the checkpoint is not
 * safetensors (the caller then loads in float and quantizes after).
 * @param keep the checkpoint keys to load (others are dropped before the model is checked against them)
 */
export async function loadSafetensorsQuantized<M extends Module>(
  dir: string,
  build: () => M,
  quantizable: (model: M) => { skip: string[] },
  format: QuantFormat,
  opts: PretrainedOptions,
  keep: (key: string) => boolean = () => true,
): Promise<M | null> {
  const files = safetensorsFiles(dir);
  if (!files) return null;
  return loadQuantized(files, (m) => new Map([...m].filter(([k]) => keep(k))), build, quantizable, format, opts);
}

/** The bytes of checkpoint a quantized load reads at a time (a larger tensor is read alone). */
const QUANT_PIECE = 64 * 2 ** 20;

/** Where a checkpoint tensor lies: its file, its name there, its header entry. */
interface Stored {
  file: string;
  key: string;
  entry: SafetensorsEntry;
}

/**
 * A quantized load that never holds the float model: the headers are read and checked against the
 * model first (names and shapes, as a strict `loadStateDict`), then the tensors are read a piece at
 * a time (64 MiB of file, or one larger tensor alone), each Linear weight quantized from the
 * checkpoint's own values as it arrives and its float copy released, the rest assigned in the dtype
 * asked for. Peak memory: the quantized model, the float tensors kept, and one piece.
 *
 * With `bnb` (a checkpoint transformers + bitsandbytes saved, {@link readBnbQuantization}), a
 * layer whose `weight` the checkpoint holds in int8 / uint8 is read as it is, its tensors in
 * bitsandbytes' layout ({@link checkBnbLayer}, checked from the headers first) going into the
 * layer once all have arrived; a float weight of a layer transformers would quantize (every Linear
 * but `llm_int8_skip_modules`, by default the LM head) is quantized as it arrives. The float
 * tensors take `dtype`, by default (as transformers 5's `dtype="auto"`) the config's `dtype` /
 * `torch_dtype`, else the checkpoint's own.
 */
async function loadQuantized<M extends Module, O extends PretrainedOptions<object>, L extends Loaded>(
  files: string[],
  rename: (m: Map<string, Stored>) => Map<string, Stored>,
  build: (loaded: L) => M,
  quantizable: (model: M) => { skip: string[] },
  format: QuantFormat,
  o: O,
  bnb: BnbQuantization | null = null,
): Promise<M> {
  const found = new Map<string, Stored>();
  for (const file of files) for (const [key, entry] of readSafetensorsHeader(file).entries) found.set(key, { file, key, entry });
  const stored = rename(found);
  const keys = new Map([...stored.keys()].map((k) => [k, undefined as unknown as Tensor]));
  const model = build({ sd: keys } as unknown as L);
  for (const k of [...stored.keys()]) if (!keys.has(k)) stored.delete(k);
  const native = model as unknown as NativeModule;
  const layers = linearLayers(native);
  const skip = new Set(bnb?.skipModules ? layers.filter((l) => bnbSkips(l.name, bnb.skipModules!)).map((l) => l.name) : quantizable(model).skip);
  // bitsandbytes' quantized layers: their tensors by key, each key's layer
  const pre = new Map<string, LinearLayerInfo>();
  const quantKeys = new Map<string, string>();
  if (bnb) {
    for (const l of layers) {
      const w = stored.get(`${l.name}.weight`);
      if (!w || (w.entry.dtype !== 'int8' && w.entry.dtype !== 'uint8')) continue;
      checkBnbLayer(l.name, bnb.format, l.out, l.in, (k) => stored.get(k)?.entry);
      pre.set(l.name, l);
      const { required, optional } = bnbLayerKeys(bnb.format);
      for (const suffix of [...required, ...optional]) if (stored.has(l.name + suffix)) quantKeys.set(l.name + suffix, l.name);
    }
  }
  const targets = new Map(layers.filter((l) => !skip.has(l.name) && !pre.has(l.name)).map((l) => [`${l.name}.weight`, l]));
  // names and shapes first, before a byte of data is read
  const own = model.stateDict();
  const strict = o.strict ?? true;
  const problems: string[] = [];
  const plain = [...stored].filter(([k]) => !quantKeys.has(k));
  const mismatched = plain.filter(([k, s]) => own.has(k) && own.get(k)!.shape.join() !== s.entry.shape.join());
  if (mismatched.length)
    problems.push(`wrong shape for ${mismatched.map(([k, s]) => `'${k}' (checkpoint [${s.entry.shape}], model [${own.get(k)!.shape}])`).join(', ')}`);
  const missing = [...own.keys()].filter((k) => !stored.has(k));
  const unexpected = plain.map(([k]) => k).filter((k) => !own.has(k));
  if (strict && missing.length) problems.push(`missing keys: ${missing.map((k) => `'${k}'`).join(', ')}`);
  if (strict && unexpected.length) problems.push(`unexpected keys: ${unexpected.map((k) => `'${k}'`).join(', ')}`);
  if (problems.length) throw new EmotorchError(`fromPretrained: ${problems.join('; ')}`, 'ERR_STATE_DICT');
  for (const k of unexpected) stored.delete(k);
  // the dtype of what stays in float: as asked, or the checkpoint's own for 'auto' (a bitsandbytes
  // checkpoint: its config's dtype first, and 'auto' without a dtype given, as transformers 5)
  const count = new Map<DType, number>();
  for (const s of stored.values()) if (isFloating(s.entry.dtype)) count.set(s.entry.dtype, (count.get(s.entry.dtype) ?? 0) + (s.entry.end - s.entry.begin));
  const own0 = [...count].sort((a, b) => b[1] - a[1])[0]?.[0];
  const dtype = bnb && (o.dtype === undefined || o.dtype === 'auto') ? (bnb.dtype ?? own0) : o.dtype === 'auto' ? own0 : o.dtype;
  let need = QUANT_PIECE;
  for (const [k, s] of stored) {
    const n = s.entry.shape.reduce((a, b) => a * b, 1);
    need += quantKeys.has(k)
      ? s.entry.end - s.entry.begin
      : targets.has(k)
        ? n * QUANT_BYTES_PER_WEIGHT[format]
        : n * DTYPE_BYTES[isFloating(s.entry.dtype) ? (dtype ?? 'float32') : s.entry.dtype];
  }
  const have = cpu.availableMemory();
  if (need > 0.9 * have)
    throw new EmotorchError(
      `loading this checkpoint quantized (${format}) needs about ${gib(need)} and the machine has ${gib(have)} available`,
      'ERR_OUT_OF_MEMORY',
    );
  // a bitsandbytes layer's tensors as they arrive; the layer is set once all have
  const pending = new Map<string, Map<string, Tensor>>();
  const expected = new Map<string, number>();
  for (const l of quantKeys.values()) expected.set(l, (expected.get(l) ?? 0) + 1);
  const arrive = async (layer: string, key: string, t: Tensor): Promise<void> => {
    const parts = pending.get(layer) ?? new Map<string, Tensor>();
    pending.set(layer, parts);
    parts.set(key.slice(layer.length), t);
    if (parts.size < expected.get(layer)!) return;
    pending.delete(layer);
    try {
      await setBnbLayer(native, pre.get(layer)!, bnb!.format, parts);
    } finally {
      for (const p of parts.values()) p.dispose();
    }
  };
  // a piece at a time, in file order
  const order = [...stored].sort(([, a], [, b]) => (a.file === b.file ? a.entry.begin - b.entry.begin : files.indexOf(a.file) - files.indexOf(b.file)));
  let i = 0;
  while (i < order.length) {
    const file = order[i][1].file;
    const piece: [string, Stored][] = [];
    let bytes = 0;
    while (i < order.length && order[i][1].file === file && (piece.length === 0 || bytes + order[i][1].entry.end - order[i][1].entry.begin <= QUANT_PIECE)) {
      piece.push(order[i]);
      bytes += order[i][1].entry.end - order[i][1].entry.begin;
      i++;
    }
    const { tensors } = await loadSafetensors(file, { only: piece.map(([, s]) => s.key) });
    const rest: StateDict = new Map();
    for (const [k, s] of piece) {
      const t = tensors.get(s.key)!;
      const owner = quantKeys.get(k);
      if (owner !== undefined) {
        await arrive(owner, k, t);
        continue;
      }
      const layer = targets.get(k);
      if (!layer) {
        rest.set(k, t);
        continue;
      }
      await quantizeLayer(native, layer, format, t, k);
      t.dispose();
    }
    if (rest.size) await model.loadStateDict(rest, { strict: false, assign: true, ...(dtype ? { dtype } : {}) });
    for (const t of rest.values()) t.dispose();
    cpu.emptyCache();
  }
  if (o.device || dtype) await model.to({ device: o.device, dtype });
  model.eval();
  return model;
}

/**
 * One quantized layer of a bitsandbytes checkpoint into the model: int8's `weight_format` must be
 * 0 ('row'); NF4's quant state JSON gives the double-quantization offset ({@link readNf4State}).
 * `parts` holds the layer's tensors by key suffix ('.weight', '.SCB', '.weight.absmax', …).
 */
async function setBnbLayer(native: NativeModule, l: LinearLayerInfo, format: BnbFormat, parts: Map<string, Tensor>): Promise<void> {
  const sent: Record<string, Tensor> = { weight: parts.get('.weight')! };
  const made: Tensor[] = [];
  if (format === 'int8') {
    const wf = parts.get('.weight_format');
    if (wf) {
      const v = (await wf.data())[0];
      if (v !== 0)
        throw new EmotorchError(
          `bitsandbytes checkpoint: '${l.name}.weight_format' is ${v} (${['row', 'col32', 'col_turing', 'col_ampere'][Number(v)] ?? 'unknown'}): only 0 ('row') is implemented`,
          'ERR_FORMAT',
        );
    }
    sent.SCB = parts.get('.SCB')!;
  } else {
    const key = `${l.name}.weight.quant_state.bitsandbytes__nf4`;
    const state = readNf4State(key, (await parts.get('.weight.quant_state.bitsandbytes__nf4')!.contiguous().data()) as Uint8Array, l.out, l.in);
    const offset = tensor(new Float32Array([state.offset]), { shape: [] });
    made.push(offset);
    for (const k of ['absmax', 'quant_map', 'nested_absmax', 'nested_quant_map']) sent[k] = parts.get(`.weight.${k}`)!;
    sent.offset = offset;
  }
  try {
    // the quant state's floats (SCB; NF4's tables and nested absmax), as nested_offset is checked
    checkQuantState(format, sent, (k) => quantStateKey(l.name, k), 'bitsandbytes checkpoint: ');
    await setQuantizedLayer(native, l, format, sent);
  } finally {
    for (const t of made) t.dispose();
  }
}

/** Config fields transformers reads as Python floats: written with a decimal point even when integral. */
const FLOAT_FIELDS = new Set([
  'llm_int8_threshold',
  'rope_theta',
  'rms_norm_eps',
  'layer_norm_eps',
  'initializer_range',
  'attention_dropout',
  'hidden_dropout',
  'factor',
  'low_freq_factor',
  'high_freq_factor',
  'attention_factor',
  'partial_rotary_factor',
  'resid_pdrop',
  'embd_pdrop',
]);

/**
 * A config as transformers writes config.json (`json.dumps(indent=2, sort_keys=True)`): keys
 * sorted, floats as Python writes them (`1e-06`; `6.0` for a float field that is integral, which
 * transformers type-checks, e.g. `llm_int8_threshold`).
 */
export function configJson(config: Record<string, unknown>): string {
  const write = (v: unknown, key: string, indent: string): string => {
    if (typeof v === 'number') return Number.isInteger(v) && !FLOAT_FIELDS.has(key) ? String(v) : pythonFloat(v);
    if (v === null || v === undefined || typeof v !== 'object') return JSON.stringify(v ?? null);
    const inner = `${indent}  `;
    if (Array.isArray(v)) return v.length ? `[\n${v.map((x) => inner + write(x, key, inner)).join(',\n')}\n${indent}]` : '[]';
    const ks = Object.keys(v)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort();
    return ks.length
      ? `{\n${ks.map((k) => `${inner}${JSON.stringify(k)}: ${write((v as Record<string, unknown>)[k], k, inner)}`).join(',\n')}\n${indent}}`
      : '{}';
  };
  return `${write(config, '', '')}\n`;
}

/** Every Linear layer of a model, native or composed of native ones, under its full name. */
function allLinearLayers(m: Module, prefix = ''): LinearLayerInfo[] {
  const out = m instanceof NativeModule ? linearLayers(m).map((l) => ({ ...l, name: prefix + l.name })) : [];
  for (const [n, c] of m.children()) out.push(...allLinearLayers(c, `${prefix}${n}.`));
  return out;
}

/** Options of {@link savePretrained}. */
export interface SavePretrainedOptions {
  /**
   * The Linear layers transformers leaves in float by default for this model (the LM head): when
   * the float layers are exactly these, `llm_int8_skip_modules` is written null, as transformers does.
   */
  defaultSkip?: readonly string[];
}

/**
 * Writes a model folder as transformers' `save_pretrained` does: `config.json` (`config`, a
 * config.json's object, its fields sorted) and `model.safetensors` (the state dict, metadata
 * `format: pt`). A model with quantized Linear layers is written as transformers + bitsandbytes
 * save one (see lib/nn/bnb.ts for the tensors), which `fromPretrained` and transformers with
 * bitsandbytes both read: int8 layers gain `weight_format` (0, 'row'); NF4 layers' emotorch-only
 * `weight.offset` becomes the `nested_offset` of their `weight.quant_state.bitsandbytes__nf4`
 * JSON; config.json gets the `quantization_config` of `BitsAndBytesConfig` (`load_in_8bit` or
 * `load_in_4bit` with nf4 and double quantization; `llm_int8_skip_modules` listing the float Linear
 * layers unless they are `defaultSkip`; `bnb_4bit_compute_dtype` as `config` had it, else the
 * model's dtype) and `dtype`: the dtype of the model's floating tensors.
 * @param model the model (its state dict is saved)
 * @param dir the folder (made if missing; files of these names are replaced)
 * @param config the config.json fields to write (a model's own `savePretrained` passes them)
 * @throws EmotorchError ERR_INVALID_ARG for q8_0 / q4_0 layers (llama.cpp's blocks have no
 *   bitsandbytes layout: save them with `model.save`, emotorch's names, or quantize with int8 /
 *   nf4), int8 and nf4 layers in one model (one `quantization_config`), LoRA adapters (merge them
 *   with `mergeLora` into a float model first, or save them alone with `saveLora`); ERR_IO when
 *   the folder cannot be written
 * @example
 * await et.nn.savePretrained(llm, 'vicuna-7b-nf4/', llmConfigJson);
 */
export async function savePretrained(model: Module, dir: string, config: Record<string, unknown>, opts: SavePretrainedOptions = {}): Promise<void> {
  opts = checkOptionNames(opts, ['defaultSkip'], 'savePretrained options');
  if (typeof dir !== 'string' || !dir) invalid('a folder path', 'dir', dir);
  if (!config || typeof config !== 'object' || Array.isArray(config)) invalid('a config.json object', 'config', config);
  if (opts.defaultSkip !== undefined && (!Array.isArray(opts.defaultSkip) || !opts.defaultSkip.every((n) => typeof n === 'string')))
    invalid('an array of layer names', 'savePretrained options.defaultSkip', opts.defaultSkip);
  const sd = model.stateDict();
  const lora = [...sd.keys()].find((k) => k.includes('.lora_A.') || k.includes('.lora_B.'));
  if (lora)
    throw new EmotorchError(
      `savePretrained: the model has LoRA adapters ('${lora}'): save them with saveLora (peft's layout), or merge them into a float model before saving it`,
      'ERR_INVALID_ARG',
    );
  const layers = allLinearLayers(model);
  const quantized = layers.filter((l) => l.format !== null);
  const formats = [...new Set(quantized.map((l) => l.format!))];
  const odd = quantized.find((l) => l.format !== 'int8' && l.format !== 'nf4');
  if (odd)
    throw new EmotorchError(
      `savePretrained: layer '${odd.name}' is quantized ${odd.format}, which has no bitsandbytes layout (a Hugging Face folder holds int8 or nf4): ` +
        "save it with model.save(file) (emotorch's names), or quantize with 'int8' or 'nf4'",
      'ERR_INVALID_ARG',
    );
  if (formats.length > 1)
    throw new EmotorchError(`savePretrained: the model mixes ${formats.join(' and ')} layers; a bitsandbytes folder has one quantization`, 'ERR_INVALID_ARG');
  const out: StateDict = new Map();
  const made: Tensor[] = [];
  const qkeys = new Set<string>();
  for (const l of quantized)
    for (const k of [...sd.keys()].filter((k) => k === `${l.name}.weight` || k.startsWith(`${l.name}.weight.`) || k === `${l.name}.SCB`)) qkeys.add(k);
  const floats = new Map([...sd].filter(([k]) => !qkeys.has(k)));
  const dtype = checkpointDtype(floats) ?? 'float32';
  const json: Record<string, unknown> = { ...config };
  delete json.quantization_config;
  delete json.torch_dtype;
  json.dtype = dtype;
  try {
    const byLayer = new Map(quantized.map((l) => [l.name, l]));
    for (const [k, t] of sd) {
      if (!qkeys.has(k)) {
        out.set(k, t);
        continue;
      }
      const layer = [...byLayer.keys()].find((n) => k === `${n}.SCB` || k === `${n}.weight` || k.startsWith(`${n}.weight.`))!;
      const l = byLayer.get(layer)!;
      if (k === `${layer}.weight.offset`) {
        const offset = (await t.to({ dtype: 'float32' }).data())[0] as number;
        const bytes = new TextEncoder().encode(nf4StateJson(l.out, l.in, dtype, offset));
        const st = tensor(bytes, { shape: [bytes.length], dtype: 'uint8' });
        made.push(st);
        out.set(`${layer}.weight.quant_state.bitsandbytes__nf4`, st);
        continue;
      }
      out.set(k, t);
      if (k === `${layer}.SCB`) {
        const wf = tensor(new Uint8Array([0]), { shape: [], dtype: 'uint8' });
        made.push(wf);
        out.set(`${layer}.weight_format`, wf);
      }
    }
    if (formats.length) {
      const format = formats[0] as BnbFormat;
      const floatLayers = layers.filter((l) => l.format === null).map((l) => l.name);
      const dflt = new Set(opts.defaultSkip ?? []);
      const skip = floatLayers.length === dflt.size && floatLayers.every((n) => dflt.has(n)) ? null : floatLayers;
      const prior = config.quantization_config as Record<string, unknown> | undefined;
      const priorBnb = prior && typeof prior === 'object' ? readBnbQuantizationSafe(config) : null;
      const compute = priorBnb?.computeDtype ?? (format === 'nf4' ? dtype : 'float32');
      json.quantization_config = bnbQuantizationConfig(format, skip, compute);
    }
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new EmotorchError(`savePretrained: cannot make the folder '${dir}': ${(e as Error).message}`, 'ERR_IO');
    }
    await saveSafetensors(path.join(dir, 'model.safetensors'), out, { format: 'pt' });
    const file = path.join(dir, 'config.json');
    try {
      fs.writeFileSync(`${file}.tmp-${process.pid}`, configJson(json));
      fs.renameSync(`${file}.tmp-${process.pid}`, file);
    } catch (e) {
      throw new EmotorchError(`savePretrained: cannot write '${file}': ${(e as Error).message}`, 'ERR_IO');
    }
  } finally {
    for (const t of made) t.dispose();
  }
}

/** A config's bitsandbytes quantization, or null where it has none or one emotorch does not read. */
function readBnbQuantizationSafe(config: Record<string, unknown>): BnbQuantization | null {
  try {
    return readBnbQuantization(config);
  } catch {
    return null;
  }
}
