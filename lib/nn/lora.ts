/**
 * LoRA adapters in peft's layout: `applyLora` wraps matching Linear layers in place (parameters
 * `…q_proj.lora_A.default.weight` / `lora_B`), freezing everything else; peft adapter folders
 * (`adapter_config.json` + `adapter_model.safetensors`) load as they are and save in the same form.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Module, NativeModule } from './module';
import { Tensor } from '../tensor';
import { EmotorchError, checkNumber, invalid, checkOptionNames } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { readJsonObjectSync } from '../io/file';

/** The largest LoRA rank taken (peft's ranks are tens to hundreds; the adapters' shapes follow it). */
const MAX_LORA_RANK = 65536;
/** The largest |alpha| taken: an update scaled by more is no adapter (a config's `1e309` parses as Infinity). */
const MAX_LORA_ALPHA = 1e6;

/** Options of `applyLora` (peft's LoraConfig fields, camelCase). */
export interface LoraOptions {
  /** Rank, 1 to 65536. */
  r: number;
  /** Scaling numerator, finite, |alpha| ≤ 1e6: the update is scaled by alpha / r (alpha / √r with `useRslora`). */
  alpha: number;
  /** Dropout on the adapter's input while training (default 0). */
  dropout?: number;
  /**
   * Layers to wrap, matched on their full names as peft matches: a list of names, each the full
   * name or its tail after a dot (`q_proj`, `attention.wqkv`, `mlp1.1`); or a string, a regular
   * expression the whole name must match (peft's `re.fullmatch`, as ms-swift passes its
   * multimodal defaults). Only Linear layers are wrapped.
   */
  targetModules: string[] | string;
}

/** Options of `applyLora` beyond {@link LoraOptions}: the LoraConfig fields of peft that change a layer's rank, scale or selection. */
export interface PeftLoraOptions extends LoraOptions {
  /**
   * Layers left out even where `targetModules` names them (peft's `exclude_modules`): a list of
   * names, each the full name or its tail after a dot, or a regular expression the whole name
   * must match.
   */
  excludeModules?: string[] | string;
  /** Rank-stabilized LoRA (peft's `use_rslora`): the update scaled by alpha / √r instead of alpha / r. Default false. */
  useRslora?: boolean;
  /**
   * Per-layer ranks (peft's `rank_pattern`): the first key, in order, that matches the end of a
   * layer's full name after a dot (peft's `re.match(rf"(.*\.)?({key})$", name)`: a regular
   * expression) gives that layer's rank; other layers take `r`.
   */
  rankPattern?: Record<string, number>;
  /** Per-layer alphas (peft's `alpha_pattern`), matched as `rankPattern`; other layers take `alpha`. */
  alphaPattern?: Record<string, number>;
}

/** The options a module's adapters were made with (what saveLoraAdapter writes back). */
type AppliedLora = Required<Omit<PeftLoraOptions, 'excludeModules'>> & { excludeModules: string[] | string | null };
const applied = new WeakMap<Module, AppliedLora>();

/** peft's `get_pattern_key` for one pattern object: the value of the first key matching the name's end, else `fallback`. */
function patternMatcher(pattern: Record<string, number>, name: string): (full: string, fallback: number) => number {
  const rules = Object.entries(pattern).map(([k, v]) => {
    try {
      return [new RegExp(`^(?:.*\\.)?(?:${k})$`), v] as const;
    } catch (e) {
      throw new EmotorchError(`${name}: key '${k}' is not a regular expression (${(e as Error).message})`, 'ERR_INVALID_ARG');
    }
  });
  return (full, fallback) => rules.find(([re]) => re.test(full))?.[1] ?? fallback;
}

function checkPattern(p: unknown, name: string, check: (v: unknown, key: string) => number): Record<string, number> {
  if (p === undefined) return {};
  if (p === null || typeof p !== 'object' || Array.isArray(p)) invalid('an object of layer patterns to numbers', name, p);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(p as Record<string, unknown>)) {
    if (k === '') invalid('a non-empty layer pattern', name, k);
    out[k] = check(v, `${name}['${k}']`);
  }
  return out;
}

const checkRank = (v: unknown, name: string): number => {
  if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > MAX_LORA_RANK) invalid(`an integer from 1 to ${MAX_LORA_RANK}`, name, v);
  return v as number;
};
const checkAlpha = (v: unknown, name: string): number => {
  if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > MAX_LORA_ALPHA) invalid(`a finite number with |alpha| ≤ ${MAX_LORA_ALPHA}`, name, v);
  return v;
};

function checkModuleNames(t: unknown, name: string, optional: boolean): string[] | string | undefined {
  if (optional && t === undefined) return undefined;
  if (!(typeof t === 'string' && t.length > 0) && (!Array.isArray(t) || t.length === 0 || t.some((x) => typeof x !== 'string' || x === ''))) {
    invalid('a non-empty array of layer names or a regular expression string', name, t);
  }
  return t as string[] | string;
}

/** peft's `_check_target_module_exists`: a regex string fully matches the name; a list entry is the name or its tail after a dot. */
function targetMatcher(targets: string[] | string, name = 'targetModules'): (name: string) => boolean {
  if (typeof targets === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${targets})$`);
    } catch (e) {
      throw new EmotorchError(`${name}: '${targets}' is not a regular expression (${(e as Error).message})`, 'ERR_INVALID_ARG');
    }
    return (n) => re.test(n);
  }
  return (n) => targets.some((t) => n === t || n.endsWith(`.${t}`));
}

function* nativeModules(m: Module, prefix = ''): Generator<[string, NativeModule]> {
  if (m instanceof NativeModule) yield [prefix, m];
  for (const [n, c] of m.children()) yield* nativeModules(c, prefix ? `${prefix}.${n}` : n);
}

/**
 * Wraps every Linear layer named in `targetModules` (less `excludeModules`) with a LoRA adapter
 * (A: kaiming-uniform, B: zeros, as peft) and makes only the adapters trainable. Each layer's rank
 * and alpha come from `rankPattern` / `alphaPattern` where a key matches it, else `r` / `alpha`;
 * its update is scaled by alpha / r, or alpha / √r with `useRslora`, as peft scales it.
 * @param module the model
 * @param opts rank, alpha, dropout, the layers, and peft's per-layer and rsLoRA settings
 * @returns the wrapped layers' full names
 * @throws EmotorchError ERR_INVALID_ARG when no layer matches, or an option is bad (a rank past
 *   65536, a non-finite alpha or one past 1e6, a pattern key that is no regular expression).
 * @example
 * et.nn.applyLora(llm, { r: 8, alpha: 32, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] });
 * et.nn.applyLora(llm, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'], useRslora: true, rankPattern: { v_proj: 4 } });
 */
export function applyLora(module: Module, opts: PeftLoraOptions): string[] {
  if (!(module instanceof Module)) invalid('a Module', 'module', module);
  if (!opts || typeof opts !== 'object') invalid('LoRA options', 'opts', opts);
  checkOptionNames(opts, ['r', 'alpha', 'dropout', 'targetModules', 'excludeModules', 'useRslora', 'rankPattern', 'alphaPattern'], 'applyLora');
  if (opts.useRslora !== undefined && typeof opts.useRslora !== 'boolean') invalid('a boolean', 'useRslora', opts.useRslora);
  const o: AppliedLora = {
    r: checkRank(opts.r, 'r'),
    alpha: checkAlpha(opts.alpha, 'alpha'),
    dropout: checkNumber(opts.dropout ?? 0, 'dropout', 0, 1),
    targetModules: checkModuleNames(opts.targetModules, 'targetModules', false)!,
    excludeModules: checkModuleNames(opts.excludeModules, 'excludeModules', true) ?? null,
    useRslora: opts.useRslora ?? false,
    rankPattern: checkPattern(opts.rankPattern, 'rankPattern', checkRank),
    alphaPattern: checkPattern(opts.alphaPattern, 'alphaPattern', checkAlpha),
  };
  const t = o.targetModules;
  const excluded = o.excludeModules === null ? () => false : targetMatcher(o.excludeModules, 'excludeModules');
  const targeted = targetMatcher(t);
  const matches = (n: string): boolean => targeted(n) && !excluded(n);
  const rankOf = patternMatcher(o.rankPattern, 'rankPattern');
  const alphaOf = patternMatcher(o.alphaPattern, 'alphaPattern');
  if (applied.has(module)) throw new EmotorchError('LoRA was already applied to this module', 'ERR_INVALID_ARG');
  const names: string[] = [];
  for (const [prefix, m] of nativeModules(module)) {
    // the layers of this native module whose full names match (parameter owners, and quantized
    // layers, whose weight is a buffer; only Linear ones get wrapped)
    const owners = [...(m.native.namedParameters()[0] as string[]), ...(m.native.namedBuffers()[0] as string[]).filter((n) => n.endsWith('.weight'))];
    const local = [...new Set(owners.map((n) => n.slice(0, Math.max(n.lastIndexOf('.'), 0))))].filter((n) => n && matches(prefix ? `${prefix}.${n}` : n));
    if (local.length === 0) continue;
    // the layers by their (rank, alpha), as peft's rank_pattern / alpha_pattern give them; the
    // native layer scales by alpha / r, so rsLoRA's alpha / √r is passed as alpha · √r
    const groups = new Map<string, { r: number; alpha: number; layers: string[] }>();
    for (const n of local) {
      const full = prefix ? `${prefix}.${n}` : n;
      const r = rankOf(full, o.r),
        alpha = alphaOf(full, o.alpha);
      const key = `${r} ${alpha}`;
      if (!groups.has(key)) groups.set(key, { r, alpha: o.useRslora ? alpha * Math.sqrt(r) : alpha, layers: [] });
      groups.get(key)!.layers.push(n);
    }
    for (const g of groups.values()) {
      let wrapped: string[] = [];
      try {
        wrapped = m.native.applyLora(g.layers, g.r, g.alpha, o.dropout);
      } catch (e) {
        if (!/no Linear layer matches/.test((e as Error).message)) throw e;
      }
      names.push(...wrapped.map((n) => (prefix ? `${prefix}.${n}` : n)));
    }
  }
  if (names.length === 0)
    throw new EmotorchError(`LoRA: no Linear layer is named ${typeof t === 'string' ? `to match /${t}/` : `any of ${t.join(', ')}`}`, 'ERR_INVALID_ARG');
  for (const [n, p] of module.namedParameters()) p.requiresGrad = /\.lora_[AB]\.default\.weight$/.test(n);
  applied.set(module, o);
  return names;
}

function mergeAll(module: Module, merge: boolean): number {
  let n = 0;
  for (const [, m] of nativeModules(module)) n += m.native.mergeLora(merge);
  return n;
}

/** Folds every adapter into its base weight (inference without the extra matmuls); returns the layer count. */
export function mergeLora(module: Module): number {
  return mergeAll(module, true);
}
/** Takes merged adapters out of the base weights again. */
export function unmergeLora(module: Module): number {
  return mergeAll(module, false);
}

/** The largest adapter_config.json read, as the command line's config files: configs are small (16 MiB). */
const MAX_ADAPTER_CONFIG_BYTES = 16 * 1024 * 1024;

const isNull = (v: unknown): boolean => v === null || v === undefined;
const isEmpty = (v: unknown): boolean =>
  isNull(v) || (Array.isArray(v) && v.length === 0) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0) || v === '';
const isString = (v: unknown): boolean => isNull(v) || typeof v === 'string';
const isBool = (v: unknown): boolean => isNull(v) || typeof v === 'boolean';
const isObject = (v: unknown): boolean => isNull(v) || (typeof v === 'object' && !Array.isArray(v));

/**
 * The fields of peft's LoraConfig (0.21) that loadLoraAdapter takes without using them, each with
 * the values it takes: they leave peft's numbers for a loaded adapter unchanged (metadata, or a
 * setting only initialization reads, which the file's weights replace). Any other value is
 * refused, naming the field, rather than loaded with other numbers than peft's.
 */
const NO_EFFECT: Record<string, [(v: unknown) => boolean, string]> = {
  task_type: [isString, 'a string'],
  base_model_name_or_path: [isString, 'a string'],
  revision: [isString, 'a string'],
  inference_mode: [isBool, 'a boolean'],
  auto_mapping: [isObject, 'an object'],
  peft_version: [isString, 'a string'],
  runtime_config: [isObject, 'an object'],
  // peft sets fan_in_fan_out to false on Linear layers, the only ones emotorch wraps
  fan_in_fan_out: [isBool, 'a boolean'],
  // initialization only (the adapter's weights replace it); PiSSA, OLoRA, LoftQ, CorDA, EVA, … change the base weights or need data
  init_lora_weights: [
    (v) => isNull(v) || typeof v === 'boolean' || v === 'gaussian',
    "true, false or 'gaussian' (initializations that change the base weights are not implemented)",
  ],
  loftq_config: [isEmpty, 'empty (LoftQ is not implemented)'],
  megatron_core: [isString, 'a string'],
  qalora_group_size: [(v) => isNull(v) || typeof v === 'number', 'a number'],
  ensure_weight_tying: [isBool, 'a boolean'],
  // variants that change what the adapter computes: refused unless off
  bias: [(v) => isNull(v) || v === 'none', "'none' (adapters with bias terms are not implemented)"],
  use_dora: [(v) => isNull(v) || v === false, 'false (DoRA is not implemented)'],
  use_qalora: [(v) => isNull(v) || v === false, 'false (QA-LoRA is not implemented)'],
  lora_bias: [(v) => isNull(v) || v === false, 'false (LoRA bias is not implemented)'],
  modules_to_save: [isEmpty, 'null or empty (fully trained modules saved beside the adapter are not implemented)'],
  layers_to_transform: [isEmpty, 'null (layer selection by index is not implemented)'],
  layers_pattern: [isEmpty, 'null (layer selection by index is not implemented)'],
  layer_replication: [isEmpty, 'null (layer replication is not implemented)'],
  megatron_config: [isEmpty, 'null (Megatron layers are not implemented)'],
  trainable_token_indices: [isEmpty, 'null (trainable tokens are not implemented)'],
  target_parameters: [isEmpty, 'null (adapters on parameters are not implemented)'],
  alora_invocation_tokens: [isEmpty, 'null (aLoRA is not implemented)'],
  eva_config: [isNull, 'null (EVA is not implemented)'],
  corda_config: [isNull, 'null (CorDA is not implemented)'],
  lora_ga_config: [isNull, 'null (LoRA-GA is not implemented)'],
  velora_config: [isNull, 'null (VeLoRA is not implemented)'],
  monteclora_config: [isNull, 'null (MonteCLoRA is not implemented)'],
  use_bdlora: [isNull, 'null (BD-LoRA is not implemented)'],
  arrow_config: [isNull, 'null (Arrow routing is not implemented)'],
  kasa_config: [isNull, 'null (KaSA is not implemented)'],
};
/** The fields loadLoraAdapter uses. */
const USED = ['peft_type', 'r', 'lora_alpha', 'lora_dropout', 'target_modules', 'exclude_modules', 'use_rslora', 'rank_pattern', 'alpha_pattern'];

/**
 * An adapter_config.json as applyLora options, every field checked: the ones that change the
 * numbers are used as peft uses them, the others taken only at values that leave peft's numbers
 * unchanged ({@link NO_EFFECT}); a field peft 0.21 does not have is taken only as null, false or
 * empty (a newer peft's setting left off), else refused.
 * @throws EmotorchError ERR_FORMAT naming the file and the field
 */
function adapterOptions(cfg: Record<string, unknown>, cfgPath: string): PeftLoraOptions {
  const bad = (field: string, what: string, v: unknown): never => {
    let shown: string;
    try {
      shown = typeof v === 'number' ? String(v) : (JSON.stringify(v) ?? String(v)); // 1e309 parsed: Infinity, not JSON's null
    } catch {
      shown = String(v);
    }
    throw new EmotorchError(`'${cfgPath}': expected ${what} for ${field} but received ${shown.length > 80 ? `${shown.slice(0, 80)}…` : shown}`, 'ERR_FORMAT');
  };
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA')
    throw new EmotorchError(`'${cfgPath}': peft_type ${String(cfg.peft_type)} is not LORA`, 'ERR_FORMAT');
  for (const [k, v] of Object.entries(cfg)) {
    if (USED.includes(k)) continue;
    const rule = NO_EFFECT[k];
    if (rule) {
      if (!rule[0](v)) bad(k, rule[1], v);
    } else if (!(isEmpty(v) || v === false)) {
      bad(k, `a field of peft's LoraConfig (or null: a setting emotorch does not know cannot be loaded with peft's numbers)`, v);
    }
  }
  // the used fields, with the config's names in the messages
  const field = <T>(k: string, check: (v: unknown, name: string) => T): T => {
    try {
      return check(cfg[k], k);
    } catch (e) {
      if (e instanceof EmotorchError) return bad(k, e.message.replace(/^Expected (.*) for .* but received .*$/s, '$1'), cfg[k]);
      throw e;
    }
  };
  const rslora = cfg.use_rslora ?? false;
  if (typeof rslora !== 'boolean') bad('use_rslora', 'a boolean', rslora);
  // a string is a regular expression over the full names, as peft reads it
  if (cfg.target_modules === null || cfg.target_modules === undefined)
    bad('target_modules', "the layers' names (peft's defaults per model type are not applied)", cfg.target_modules);
  return {
    r: field('r', checkRank),
    alpha: field('lora_alpha', checkAlpha),
    dropout: field('lora_dropout', (v, n) => checkNumber(v ?? 0, n, 0, 1)),
    targetModules: field('target_modules', (v, n) => checkModuleNames(v, n, false)!),
    ...(isEmpty(cfg.exclude_modules) ? {} : { excludeModules: field('exclude_modules', (v, n) => checkModuleNames(v, n, false)!) }),
    useRslora: rslora as boolean,
    rankPattern: field('rank_pattern', (v, n) => checkPattern(v ?? undefined, n, checkRank)),
    alphaPattern: field('alpha_pattern', (v, n) => checkPattern(v ?? undefined, n, checkAlpha)),
  };
}

/**
 * Applies and loads a peft adapter folder (`adapter_config.json`, `adapter_model.safetensors`
 * with keys `base_model.model.<layer>.lora_A.weight`), with peft's numbers: `use_rslora`,
 * `rank_pattern`, `alpha_pattern` and `exclude_modules` are applied as peft applies them, and every
 * other field is either one that leaves peft's numbers unchanged or refused (DoRA, bias terms,
 * `modules_to_save`, layer selection, …). The config is at most 16 MiB.
 * @throws EmotorchError ERR_IO for an unreadable or larger config; ERR_FORMAT naming a field that
 *   is malformed, out of bounds (a non-finite `lora_alpha`: `1e309` parses as Infinity) or not
 *   implemented; ERR_STATE_DICT naming a missing or unexpected adapter key.
 */
export async function loadLoraAdapter(module: Module, dir: string): Promise<string[]> {
  if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
  const cfgPath = path.join(dir, 'adapter_config.json');
  const cfg = readJsonObjectSync(cfgPath, 'an adapter config', MAX_ADAPTER_CONFIG_BYTES);
  const opts = adapterOptions(cfg, cfgPath);
  let names: string[];
  try {
    names = applyLora(module, opts);
  } catch (e) {
    // a pattern key that is no regular expression here names the config's field
    if (e instanceof EmotorchError && /^(rankPattern|alphaPattern|targetModules|excludeModules)/.test(e.message)) {
      const f = { rankPattern: 'rank_pattern', alphaPattern: 'alpha_pattern', targetModules: 'target_modules', excludeModules: 'exclude_modules' }[
        e.message.split(':')[0] as 'rankPattern'
      ];
      throw new EmotorchError(`'${cfgPath}': ${f}${e.message.slice(e.message.indexOf(':'))}`, 'ERR_FORMAT');
    }
    throw e;
  }
  const { tensors } = await loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
  const sd = new Map<string, Tensor>();
  for (const [k, t] of tensors) sd.set(k.replace(/^base_model\.model\./, '').replace(/\.lora_([AB])\.weight$/, '.lora_$1.default.weight'), t);
  const own = new Set(
    module
      .namedParameters()
      .map(([n]) => n)
      .filter((n) => n.includes('.lora_')),
  );
  const missing = [...own].filter((n) => !sd.has(n));
  const unexpected = [...sd.keys()].filter((n) => !own.has(n));
  if (missing.length || unexpected.length) {
    throw new EmotorchError(
      `adapter '${dir}' does not fit: missing ${missing.join(', ') || 'none'}; unexpected ${unexpected.join(', ') || 'none'}`,
      'ERR_STATE_DICT',
    );
  }
  await module.loadStateDict(sd, { strict: false });
  return names;
}

/** Saves the adapters as a peft folder that peft's `PeftModel.from_pretrained` loads. */
export async function saveLoraAdapter(module: Module, dir: string, opts: { baseModel?: string } = {}): Promise<void> {
  checkOptionNames(opts, ['baseModel'], 'saveLoraAdapter');
  const o = applied.get(module);
  if (!o) throw new EmotorchError('saveLoraAdapter: no LoRA was applied to this module', 'ERR_INVALID_ARG');
  if (typeof dir !== 'string' || !dir) invalid('a folder path', 'dir', dir);
  const tensors = new Map<string, Tensor>();
  for (const [n, p] of module.namedParameters()) {
    if (n.includes('.lora_')) tensors.set(`base_model.model.${n.replace(/\.default\.weight$/, '.weight')}`, p);
  }
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: opts.baseModel ?? null,
    r: o.r,
    lora_alpha: o.alpha,
    lora_dropout: o.dropout,
    target_modules: o.targetModules,
    exclude_modules: o.excludeModules,
    use_rslora: o.useRslora,
    rank_pattern: o.rankPattern,
    alpha_pattern: o.alphaPattern,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
  };
  let created: string | undefined;
  try {
    created = fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new EmotorchError(`saveLoraAdapter: cannot create the folder '${dir}': ${(e as Error).message}`, 'ERR_IO');
  }
  try {
    await saveSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
    const cfgPath = path.join(dir, 'adapter_config.json');
    const tmp = `${cfgPath}.tmp-${process.pid}-${Date.now()}`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(config, null, 2));
      fs.renameSync(tmp, cfgPath);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw new EmotorchError(`saveLoraAdapter: cannot write '${cfgPath}': ${(e as Error).message}`, 'ERR_IO');
    }
  } catch (e) {
    // Leave nothing behind that this call created (a folder without an adapter would look like one).
    if (created) fs.rmSync(created, { recursive: true, force: true });
    throw e;
  }
}
