/** The command-line framework of `emotorch`: flags as the originals spell them, usage errors. */
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../index';

/** A mistake on the command line: exit status 2. */
export class UsageError extends Error {}

export type Values = Record<string, string | string[] | boolean | undefined>;

interface Flag {
  /** 'list': one or more values after the flag (`--dataset a.json b.json`), or the flag repeated. */
  kind: 'string' | 'number' | 'bool' | 'list';
  help: string;
  default?: string;
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
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { positionals.push(a); continue; }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq).replace(/-/g, '_');
    const f = flags[name];
    if (!f) throw new UsageError(`unknown flag --${name}`);
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
      values[name] = next === 'true';
    } else if (f.kind === 'list') {
      const list = (values[name] as string[] | undefined) ?? [];
      list.push(take());
      while (inline === undefined && argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) list.push(argv[++i]);
      values[name] = list;
    } else {
      const v = take();
      if (f.kind === 'number' && !(v.trim() !== '' && Number.isFinite(Number(v)))) throw new UsageError(`--${name} takes a number, not '${v}'`);
      values[name] = v;
    }
  }
  for (const [n, f] of Object.entries(flags)) if (values[n] === undefined && f.default !== undefined) values[n] = f.kind === 'bool' ? f.default === 'true' : f.default;
  return { values, positionals };
}

export const num = (v: Values, k: string): number | undefined => (v[k] === undefined ? undefined : Number(v[k]));
export const str = (v: Values, k: string): string | undefined => v[k] as string | undefined;
export function need(v: Values, k: string): string {
  const s = v[k];
  if (s === undefined || (Array.isArray(s) && !s.length)) throw new UsageError(`--${k} is required`);
  return s as string;
}


/** A model folder (or a Hugging Face repo id) as a chat model: InternVL2 (config.json with vision_config and llm_config) or a LLaMA-family LLM, with its tokenizer and the local folder it was read from. */
export async function loadChatModel(dir: string, tokenizerPath?: string): Promise<{ model: et.systems.InternVL | et.nn.LlamaForCausalLM; tokenizer: et.data.Tokenizer; dir: string }> {
  dir = await et.hub.resolvePretrainedPath(dir);   // a repo id: its hub cache folder
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new et.EmotorchError(`'${dir}' is not a model folder: it has no config.json`, 'ERR_IO');
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new et.EmotorchError(`cannot read '${cfgFile}': ${(e as Error).message}`, 'ERR_FORMAT');
  }
  const tokenizer = await et.data.Tokenizer.fromFile(tokenizerPath ?? dir);
  const ctx = tokenizer.tokenToId('<IMG_CONTEXT>');
  const model = cfg.vision_config && cfg.llm_config
    ? await et.systems.InternVL.fromPretrained(dir, ctx === undefined ? {} : { imgContextTokenId: ctx })
    : await et.nn.LlamaForCausalLM.fromPretrained(dir);
  return { model, tokenizer, dir };
}

