/**
 * LoRA adapters in peft's layout: `applyLora` wraps matching Linear layers in place (parameters
 * `…q_proj.lora_A.default.weight` / `lora_B`), freezing everything else; peft adapter folders
 * (`adapter_config.json` + `adapter_model.safetensors`) load as they are and save in the same form.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Module, NativeModule } from './module';
import { Tensor } from '../tensor';
import { EmotorchError, checkInt, checkNumber, invalid, checkOptionNames } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { readJsonObjectSync } from '../io/file';

/** Options of `applyLora` (peft's LoraConfig fields, camelCase). */
export interface LoraOptions {
  /** Rank. */
  r: number;
  /** Scaling numerator: the update is scaled by alpha / r. */
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

const applied = new WeakMap<Module, Required<LoraOptions>>();

/** peft's `_check_target_module_exists`: a regex string fully matches the name; a list entry is the name or its tail after a dot. */
function targetMatcher(targets: string[] | string): (name: string) => boolean {
  if (typeof targets === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${targets})$`);
    } catch (e) {
      throw new EmotorchError(`targetModules: '${targets}' is not a regular expression (${(e as Error).message})`, 'ERR_INVALID_ARG');
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
 * Wraps every Linear layer named in `targetModules` with a LoRA adapter (A: kaiming-uniform,
 * B: zeros, as peft) and makes only the adapters trainable.
 * @returns the wrapped layers' full names
 * @throws EmotorchError when no layer matches, or options are bad.
 * @example
 * et.nn.applyLora(llm, { r: 8, alpha: 32, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] });
 */
export function applyLora(module: Module, opts: LoraOptions): string[] {
  if (!(module instanceof Module)) invalid('a Module', 'module', module);
  if (!opts || typeof opts !== 'object') invalid('LoRA options', 'opts', opts);
  checkOptionNames(opts, ['r', 'alpha', 'dropout', 'targetModules'], 'applyLora');
  const o: Required<LoraOptions> = {
    r: checkInt(opts.r, 'r', 1),
    alpha: checkNumber(opts.alpha, 'alpha'),
    dropout: checkNumber(opts.dropout ?? 0, 'dropout', 0, 1),
    targetModules: opts.targetModules,
  };
  const t = o.targetModules;
  if (!(typeof t === 'string' && t.length > 0) && (!Array.isArray(t) || t.length === 0 || t.some((x) => typeof x !== 'string' || x === ''))) {
    invalid('a non-empty array of layer names or a regular expression string', 'targetModules', t);
  }
  const matches = targetMatcher(t);
  if (applied.has(module)) throw new EmotorchError('LoRA was already applied to this module', 'ERR_INVALID_ARG');
  const names: string[] = [];
  for (const [prefix, m] of nativeModules(module)) {
    // the layers of this native module whose full names match (parameter owners; only Linear ones get wrapped)
    const local = [...new Set((m.native.namedParameters()[0] as string[]).map((n) => n.slice(0, Math.max(n.lastIndexOf('.'), 0))))]
      .filter((n) => n && matches(prefix ? `${prefix}.${n}` : n));
    if (local.length === 0) continue;
    let wrapped: string[] = [];
    try {
      wrapped = m.native.applyLora(local, o.r, o.alpha, o.dropout);
    } catch (e) {
      if (!/no Linear layer matches/.test((e as Error).message)) throw e;
    }
    names.push(...wrapped.map((n) => (prefix ? `${prefix}.${n}` : n)));
  }
  if (names.length === 0) throw new EmotorchError(`LoRA: no Linear layer is named ${typeof t === 'string' ? `to match /${t}/` : `any of ${t.join(', ')}`}`, 'ERR_INVALID_ARG');
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
export function mergeLora(module: Module): number { return mergeAll(module, true); }
/** Takes merged adapters out of the base weights again. */
export function unmergeLora(module: Module): number { return mergeAll(module, false); }

/**
 * Applies and loads a peft adapter folder (`adapter_config.json`, `adapter_model.safetensors`
 * with keys `base_model.model.<layer>.lora_A.weight`).
 * @throws EmotorchError naming a missing or unexpected adapter key, or a bad config.
 */
export async function loadLoraAdapter(module: Module, dir: string): Promise<string[]> {
  if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
  const cfgPath = path.join(dir, 'adapter_config.json');
  const cfg = readJsonObjectSync(cfgPath, 'an adapter config');
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') throw new EmotorchError(`'${cfgPath}': peft_type ${String(cfg.peft_type)} is not LORA`, 'ERR_FORMAT');
  // a string is a regular expression over the full names, as peft reads it
  const targets = cfg.target_modules as string[] | string;
  const names = applyLora(module, { r: cfg.r as number, alpha: cfg.lora_alpha as number, dropout: (cfg.lora_dropout as number) ?? 0, targetModules: targets });
  const { tensors } = await loadSafetensors(path.join(dir, 'adapter_model.safetensors'));
  const sd = new Map<string, Tensor>();
  for (const [k, t] of tensors) sd.set(k.replace(/^base_model\.model\./, '').replace(/\.lora_([AB])\.weight$/, '.lora_$1.default.weight'), t);
  const own = new Set(module.namedParameters().map(([n]) => n).filter((n) => n.includes('.lora_')));
  const missing = [...own].filter((n) => !sd.has(n));
  const unexpected = [...sd.keys()].filter((n) => !own.has(n));
  if (missing.length || unexpected.length) {
    throw new EmotorchError(`adapter '${dir}' does not fit: missing ${missing.join(', ') || 'none'}; unexpected ${unexpected.join(', ') || 'none'}`, 'ERR_STATE_DICT');
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
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: opts.baseModel ?? null, r: o.r, lora_alpha: o.alpha,
    lora_dropout: o.dropout, target_modules: o.targetModules, bias: 'none', fan_in_fan_out: false, inference_mode: true,
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
