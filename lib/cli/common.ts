/**
 * The command-line framework of `emotorch`: flags as the originals spell them, usage errors, and
 * the files a command line names read as the library reads files (regular files only, bounded).
 */
import * as fs from 'fs';
import * as path from 'path';
import { constants as bufferConstants } from 'buffer';
import * as et from '../index';

/** A mistake on the command line: exit status 2. */
export class UsageError extends Error {}

export type Values = Record<string, string | string[] | boolean | undefined>;

interface Flag {
  /** 'list': one or more values after the flag (`--dataset a.json b.json`), or the flag repeated. */
  kind: 'string' | 'number' | 'bool' | 'list';
  help: string;
  default?: string;
  /**
   * A flag of the original's command lines that this command accepts and does not use: given, it
   * is named on stderr with its help (why), so a script runs as written and says what differs.
   */
  unused?: true;
}

export interface Command {
  summary: string;
  /** Positional arguments, for the usage line. */
  args?: string;
  flags: Record<string, Flag>;
  run(v: Values, positionals: string[], out: (line: string) => void): Promise<void>;
}

/**
 * Parses `--name value`, `--name=value` and, for list flags, `--name v1 v2 …` (swift's
 * space-separated lists). Booleans take `true` / `false` (swift's `--gradient_checkpointing true`)
 * or stand alone (last, or before another flag).
 * @throws UsageError naming an unknown flag, a missing value or a malformed number / boolean
 */
export function parseFlags(argv: string[], flags: Record<string, Flag>): { values: Values; positionals: string[] } {
  const values: Values = {};
  const positionals: string[] = [];
  const byKey = new Map(Object.keys(flags).map((k) => [k.replace(/-/g, '_'), k]));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    // '-' and '_' are one (argparse's --cfg-path is cfg_path); messages name the flag as typed
    const typed = a.slice(2, eq < 0 ? undefined : eq);
    const key = byKey.get(typed.replace(/-/g, '_'));
    if (key === undefined) throw new UsageError(`unknown flag --${typed}`);
    const f = flags[key];
    const name = typed;
    const inline = eq < 0 ? undefined : a.slice(eq + 1);
    const take = (): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      i++;
      return next;
    };
    if (f.kind === 'bool') {
      const next = inline ?? (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : 'true');
      if (next !== 'true' && next !== 'false') throw new UsageError(`--${name} takes true or false, not '${next}'`);
      values[key] = next === 'true';
    } else if (f.kind === 'list') {
      const list = (values[key] as string[] | undefined) ?? [];
      list.push(take());
      while (inline === undefined && argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) list.push(argv[++i]);
      values[key] = list;
    } else {
      const v = take();
      if (f.kind === 'number' && !(v.trim() !== '' && Number.isFinite(Number(v)))) throw new UsageError(`--${name} takes a number, not '${v}'`);
      values[key] = v;
    }
  }
  for (const [n, f] of Object.entries(flags))
    if (values[n] === undefined && f.default !== undefined) values[n] = f.kind === 'bool' ? f.default === 'true' : f.default;
  return { values, positionals };
}

// ---- files the command line names ----

/**
 * The largest config file the command line reads (a YAML, a config.json, sft_args.json, a prompt
 * file): configs are small, so anything larger is not one (16 MiB).
 */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** The largest data file read whole (a dataset JSON): V8's longest string (512 MiB on 64-bit Node). */
export const MAX_DATA_BYTES = bufferConstants.MAX_STRING_LENGTH;

/** Runs a read, its coded errors prefixed with what the file is (`the SALMONN config (--cfg-path): …`). */
function naming<T>(what: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof et.EmotorchError) throw new et.EmotorchError(`${what}: ${e.message}`, e.code);
    throw e;
  }
}

/**
 * Reads a file the command line names as UTF-8 text, as the library reads files
 * (`et.io.readRegularTextSync`: regular files only, a FIFO's open never blocks), of at most `maxBytes`.
 * @param what what the file is, for the message (`the SALMONN config (--cfg-path)`)
 * @throws EmotorchError ERR_IO naming `what` and the file
 */
export function readTextFile(file: string, what: string, maxBytes = MAX_CONFIG_BYTES): string {
  return naming(what, () => et.io.readRegularTextSync(file, maxBytes));
}

/**
 * Reads and parses a JSON file the command line names (`et.io.readJsonSync`: a syntax error names
 * the file and the position, never the text).
 * @throws EmotorchError ERR_IO / ERR_FORMAT naming `what` and the file
 */
export function readJsonFile(file: string, what: string, maxBytes = MAX_CONFIG_BYTES): unknown {
  return naming(what, () => et.io.readJsonSync(file, maxBytes));
}

/**
 * A folder the command line writes into (`--output_dir`, `run.output_dir`), created when missing
 * (with `create` false, only checked: a command checks before its slow work and creates after).
 * @param option the flag or config key that named it, for the message
 * @throws EmotorchError ERR_INVALID_ARG naming `option` when it, or a path above it, exists and is
 *   not a folder; ERR_IO when it cannot be created
 */
export function outputFolder(dir: string, option: string, create = true): string {
  const want = path.resolve(dir);
  for (let p = want; ;) {
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const up = path.dirname(p);
      if ((code === 'ENOENT' || code === 'ENOTDIR') && up !== p) {
        p = up;
        continue;
      }
      throw new et.EmotorchError(`${option} '${dir}' cannot be used: ${code ?? 'error'} on '${p}'`, code === 'ENOTDIR' ? 'ERR_INVALID_ARG' : 'ERR_IO');
    }
    if (!st.isDirectory()) {
      const what = st.isFile() ? 'a regular file' : 'a special file';
      throw new et.EmotorchError(
        p === want
          ? `${option} '${dir}' is ${what}, not a folder: name a folder to write into`
          : `${option} '${dir}' cannot be a folder: '${p}' above it is ${what}`,
        'ERR_INVALID_ARG',
      );
    }
    break;
  }
  if (!create) return dir;
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new et.EmotorchError(`${option} '${dir}' cannot be created (${(e as NodeJS.ErrnoException).code ?? 'error'}: ${(e as Error).message})`, 'ERR_IO');
  }
  return dir;
}

/**
 * A file the command line will write (`--output_path`): checked (and its folder created with
 * `create`) before the work, so a folder in its place fails at once.
 * @throws EmotorchError ERR_INVALID_ARG when the path is a folder or special file, or its folder cannot be one
 */
export function checkOutputFile(file: string, option: string, create = false): string {
  outputFolder(path.dirname(path.resolve(file)), `the folder of ${option}`, create);
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    /* a new file */
  }
  if (st && !st.isFile())
    throw new et.EmotorchError(`${option} '${file}' is not a regular file (it is ${st.isDirectory() ? 'a folder' : 'a special file'})`, 'ERR_INVALID_ARG');
  return file;
}

/**
 * Writes a whole text (or binary) file the command line names (its folder created when missing).
 * @throws EmotorchError ERR_INVALID_ARG when the path is a folder or its folder is a file; ERR_IO when it cannot be written
 */
export function writeTextFile(file: string, text: string | Buffer, option: string): void {
  checkOutputFile(file, option, true);
  try {
    fs.writeFileSync(file, text);
  } catch (e) {
    throw new et.EmotorchError(`${option} '${file}' cannot be written (${(e as NodeJS.ErrnoException).code ?? 'error'}: ${(e as Error).message})`, 'ERR_IO');
  }
}

/**
 * The context length of a loaded chat LLM (`max_position_embeddings` of its config): the most
 * tokens a generation may ask for.
 */
export function contextLength(model: et.nn.LlamaForCausalLM | et.systems.m2se.InternVL | et.systems.salmonn.Salmonn | et.systems.usdm.Usdm): number {
  const llm =
    model instanceof et.nn.LlamaForCausalLM
      ? model
      : model instanceof et.systems.m2se.InternVL
        ? model.language_model
        : model instanceof et.systems.salmonn.Salmonn
          ? model.llama_model
          : model.llm;
  return llm.config.max_position_embeddings;
}

/**
 * A generation cap (`--max_new_tokens`, a YAML's `max_new_tokens`): a positive integer of at most
 * the model's context length; `undefined` (not given) becomes `dflt`, lowered to the context.
 * @param name the flag or key that gave it, for the message
 * @throws EmotorchError ERR_INVALID_ARG naming it
 */
export function maxNewTokens(value: unknown, context: number, name: string, dflt: number): number {
  if (value === undefined) return Math.min(dflt, context);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > context) {
    throw new et.EmotorchError(
      `Expected a positive integer of at most ${context} (the model's context length, max_position_embeddings) for ${name} but received ${typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? String(value))}`,
      'ERR_INVALID_ARG',
    );
  }
  return value;
}

export const num = (v: Values, k: string): number | undefined => (v[k] === undefined ? undefined : Number(v[k]));
export const str = (v: Values, k: string): string | undefined => v[k] as string | undefined;
export function need(v: Values, k: string): string {
  const s = v[k];
  if (s === undefined || (Array.isArray(s) && !s.length)) throw new UsageError(`--${k} is required`);
  return s as string;
}

/**
 * The base model a checkpoint that sft wrote was trained from: its sft_args.json's `model`, else its
 * adapter_config.json's `base_model_name_or_path`; undefined when it names none.
 * @throws EmotorchError ERR_IO / ERR_FORMAT for an unreadable or malformed one of those files
 */
function checkpointBase(dir: string, flag: string): string | undefined {
  for (const [file, key] of [
    ['sft_args.json', 'model'],
    ['adapter_config.json', 'base_model_name_or_path'],
  ] as const) {
    if (!fs.existsSync(path.join(dir, file))) continue;
    const a = readJsonFile(path.join(dir, file), `the checkpoint's ${file} (${flag})`) as Record<string, unknown> | null;
    if (a && typeof a === 'object' && typeof a[key] === 'string' && a[key]) return a[key] as string;
  }
  return undefined;
}

/**
 * swift's `--model_id_or_path` may name a LoRA checkpoint that sft wrote (second_stage.sh's
 * `first_model_ckpt`, test.sh's `emoverse-4b`): its base model ({@link checkpointBase}) and the
 * adapter. Null for a model folder.
 * @throws EmotorchError ERR_IO for a LoRA checkpoint that names no base model
 */
export function loraCheckpoint(dir: string): { base: string; adapter: string } | null {
  if (!fs.existsSync(path.join(dir, 'adapter_config.json')) || fs.existsSync(path.join(dir, 'config.json'))) return null;
  const base = checkpointBase(dir, '--model_id_or_path');
  if (base) return { base, adapter: dir };
  throw new et.EmotorchError(
    `'${dir}' is a LoRA checkpoint without its base model (sft_args.json's model or adapter_config.json's base_model_name_or_path): pass --model`,
    'ERR_IO',
  );
}

/**
 * The base model folder and the adapter a command line names: `--model` / `--model_id_or_path`
 * (a LoRA checkpoint there means its base and itself, as swift reads test.sh's `emoverse-4b`),
 * `--ckpt_dir` (a checkpoint sft wrote; its base from sft_args.json or adapter_config.json unless
 * `--model` names it).
 * @throws UsageError with no model to be found, or two adapters named; EmotorchError ERR_IO for a
 *   --ckpt_dir that is missing or not a folder
 */
export function modelAndAdapter(model: string | undefined, ckptDir: string | undefined, flag = '--ckpt_dir'): { dir: string; adapter?: string } {
  let dir = model,
    adapter = ckptDir;
  const trained = dir && fs.existsSync(dir) ? loraCheckpoint(dir) : null;
  if (trained) {
    if (adapter) throw new UsageError(`--model_id_or_path '${dir}' is a LoRA checkpoint and ${flag} names another: give one`);
    dir = trained.base;
    adapter = trained.adapter;
  }
  if (adapter) {
    const why = fs.existsSync(adapter) ? (fs.statSync(adapter).isDirectory() ? null : 'is not a folder') : 'does not exist';
    if (why)
      throw new et.EmotorchError(
        `${flag} '${adapter}' ${why} (a LoRA checkpoint folder: adapter_config.json, adapter_model.safetensors${flag === '--ckpt_dir' ? ', sft_args.json' : ''})`,
        'ERR_IO',
      );
    if (!dir) dir = checkpointBase(adapter, flag);
  }
  if (!dir) throw new UsageError('--model is required (or --ckpt_dir of a checkpoint sft wrote)');
  return adapter ? { dir, adapter } : { dir };
}

/**
 * Loads a chat model folder (InternVL2 when its config has vision_config and llm_config, else a
 * LLaMA-family LLM) with its tokenizer; `adapter`, a peft folder, is applied on top, and merged
 * into the weights with `merge`; `dtype: 'auto'` keeps the checkpoint's own dtype (default float32).
 * `quantize`: the LLM's decoder Linear layers quantized as they load (InternVL2: its LLM's), LoRA
 * adapters in float32 over them; a merge then goes into the quantized weights as peft merges into
 * bitsandbytes layers (dequantized, updated, quantized again).
 */
export async function loadChatModel(
  dir: string,
  tokenizerPath?: string,
  opts: { adapter?: string; merge?: boolean; dtype?: 'auto' | et.DType; quantize?: et.nn.QuantFormat } = {},
): Promise<{ model: et.systems.m2se.InternVL | et.nn.LlamaForCausalLM; tokenizer: et.data.Tokenizer; dir: string }> {
  dir = await et.hub.resolvePretrainedPath(dir); // a repo id: its hub cache folder
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new et.EmotorchError(`'${dir}' is not a model folder: it has no config.json`, 'ERR_IO');
  const parsed = readJsonFile(cfgFile, 'the model config');
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new et.EmotorchError(`cannot read the model config '${cfgFile}': it is not a JSON object`, 'ERR_FORMAT');
  const cfg = parsed as Record<string, unknown>;
  const tokenizer = await et.data.Tokenizer.fromFile(tokenizerPath ?? dir);
  const ctx = tokenizer.tokenToId('<IMG_CONTEXT>');
  const dtype = { ...(opts.dtype ? { dtype: opts.dtype } : {}), ...(opts.quantize ? { quantize: opts.quantize } : {}) };
  const model =
    cfg.vision_config && cfg.llm_config
      ? await et.systems.m2se.InternVL.fromPretrained(dir, { ...dtype, ...(ctx === undefined ? {} : { imgContextTokenId: ctx }) })
      : await et.nn.LlamaForCausalLM.fromPretrained(dir, dtype);
  if (opts.adapter) {
    await et.nn.loadLoraAdapter(model, opts.adapter);
    if (opts.merge) et.nn.mergeLora(model);
  }
  return { model, tokenizer, dir };
}

/**
 * emotorch's `--quantize` (no flag of the original's): a {@link et.nn.QuantFormat} or undefined.
 * @throws UsageError naming the formats for another value
 */
export function quantizeFlag(v: Values): et.nn.QuantFormat | undefined {
  const q = str(v, 'quantize');
  if (q === undefined) return undefined;
  if (!(et.nn.QUANT_FORMATS as readonly string[]).includes(q)) throw new UsageError(`--quantize takes ${et.nn.QUANT_FORMATS.join(', ')}, not '${q}'`);
  return q as et.nn.QuantFormat;
}
