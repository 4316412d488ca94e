#!/usr/bin/env node
/**
 * `emotorch <system> <command> [flags]`: the originals' command lines over the public API.
 *
 *   npx emotorch m2se sft --model InternVL2-4B/ --dataset emt_data_first.json --num_train_epochs 2 …
 *   npx emotorch m2se infer --ckpt_dir output/internvl2-4b/v0-…/checkpoint-84 --val_dataset meld_test_data.json
 *   npx emotorch m2se score output/…/infer_result/20261123-101500.jsonl --task emotion
 *
 * Flags keep the original tool's names (ms-swift 2.x's for M2SE). Exit status: 0 done, 1 a
 * runtime error (its code and message on stderr, no stack trace), 2 a usage error.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../index';

/** A mistake on the command line: exit status 2. */
export class UsageError extends Error {}

type Values = Record<string, string | string[] | boolean | undefined>;

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

const num = (v: Values, k: string): number | undefined => (v[k] === undefined ? undefined : Number(v[k]));
const str = (v: Values, k: string): string | undefined => v[k] as string | undefined;
function need(v: Values, k: string): string {
  const s = v[k];
  if (s === undefined || (Array.isArray(s) && !s.length)) throw new UsageError(`--${k} is required`);
  return s as string;
}

/** A model folder: InternVL2 when its config.json has vision_config and llm_config, else a LLaMA-family LLM; its tokenizer from the folder. */
async function loadModel(dir: string, tokenizerPath?: string): Promise<{ model: et.systems.InternVL | et.nn.LlamaForCausalLM; tokenizer: et.data.Tokenizer }> {
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new et.EmotorchError(`'${dir}' is not a model folder: it has no config.json`, 'ERR_IO');
  const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  const tokenizer = await et.data.Tokenizer.fromFile(tokenizerPath ?? dir);
  const ctx = tokenizer.tokenToId('<IMG_CONTEXT>');
  const model = cfg.vision_config && cfg.llm_config
    ? await et.systems.InternVL.fromPretrained(dir, ctx === undefined ? {} : { imgContextTokenId: ctx })
    : await et.nn.LlamaForCausalLM.fromPretrained(dir);
  return { model, tokenizer };
}

const stamp = (): string => new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);

/** swift 2.x's output folder: `<output_dir>/<model_type>/v<N>-<timestamp>`. */
function versionDir(outputDir: string, modelType: string): string {
  const base = path.join(outputDir, modelType);
  const taken = fs.existsSync(base) ? fs.readdirSync(base).map((d) => /^v(\d+)-/.exec(d)?.[1]).filter((x): x is string => !!x).map(Number) : [];
  return path.join(base, `v${taken.length ? Math.max(...taken) + 1 : 0}-${stamp()}`);
}

const M2SE_SFT: Command = {
  summary: "LoRA SFT over ms-swift records, as M2SE's first_stage.sh / second_stage.sh run `swift sft`",
  flags: {
    model: { kind: 'string', help: 'the model folder (InternVL2 / EmoVerse, or a LLaMA-family LLM)' },
    model_id_or_path: { kind: 'string', help: 'swift\'s name for --model' },
    model_type: { kind: 'string', help: 'names the output subfolder (swift: internvl2-4b); default the model folder\'s name' },
    tokenizer: { kind: 'string', help: 'a tokenizer file or folder (default: the model folder)' },
    dataset: { kind: 'list', help: 'ms-swift JSON / JSONL files' },
    sft_type: { kind: 'string', help: 'lora or full', default: 'lora' },
    system: { kind: 'string', help: 'the system prompt', default: et.systems.M2SE_SYSTEM },
    num_train_epochs: { kind: 'number', help: 'epochs', default: '1' },
    max_steps: { kind: 'number', help: 'stop after this many optimizer steps (-1: the epochs decide)', default: '-1' },
    max_length: { kind: 'number', help: 'longer records are dropped (swift\'s delete)', default: '2048' },
    batch_size: { kind: 'number', help: 'per device', default: '1' },
    gradient_accumulation_steps: { kind: 'number', help: 'micro-batches per step', default: '1' },
    gradient_checkpointing: { kind: 'bool', help: 'recompute layers in backward', default: 'true' },
    learning_rate: { kind: 'number', help: 'default 1e-4 for lora, 1e-5 for full (swift)' },
    lora_rank: { kind: 'number', help: 'LoRA rank', default: '8' },
    lora_alpha: { kind: 'number', help: 'LoRA alpha', default: '32' },
    lora_dropout: { kind: 'number', help: 'LoRA dropout', default: '0.05' },
    lora_dropout_p: { kind: 'number', help: 'swift 2.x\'s older name for --lora_dropout' },
    acc_strategy: { kind: 'string', help: 'token or sentence (logged acc)', default: 'token' },
    logging_steps: { kind: 'number', help: 'log every N steps', default: '5' },
    seed: { kind: 'number', help: 'random seed', default: '42' },
    output_dir: { kind: 'string', help: 'where runs go', default: 'output' },
    resume_from_checkpoint: { kind: 'string', help: 'a checkpoint folder (peft adapter) to start from: stage 2 from stage 1' },
  },
  async run(v, _pos, out) {
    const dir = str(v, 'model') ?? str(v, 'model_id_or_path');
    if (!dir) throw new UsageError('--model is required (a local folder; names on the hub come with the Hugging Face cache support)');
    const datasets = need(v, 'dataset') as unknown as string[];
    const sftType = str(v, 'sft_type')!;
    if (sftType !== 'lora' && sftType !== 'full') throw new UsageError(`--sft_type takes lora or full, not '${sftType}'`);
    const acc = str(v, 'acc_strategy')!;
    if (acc !== 'token' && acc !== 'sentence') throw new UsageError(`--acc_strategy takes token or sentence, not '${acc}'`);
    const { model, tokenizer } = await loadModel(dir, str(v, 'tokenizer'));
    const resume = str(v, 'resume_from_checkpoint');
    if (resume) {
      if (sftType !== 'lora') throw new UsageError('--resume_from_checkpoint starts from a LoRA adapter: use it with --sft_type lora');
      await et.nn.loadLoraAdapter(model, resume);
    }
    const runDir = versionDir(str(v, 'output_dir')!, str(v, 'model_type') ?? path.basename(path.resolve(dir)));
    fs.mkdirSync(runDir, { recursive: true });
    fs.writeFileSync(path.join(runDir, 'sft_args.json'), JSON.stringify({ ...v, model: path.resolve(dir) }, null, 2));
    out(`output: ${runDir}`);
    et.manualSeed(num(v, 'seed')!);
    const [r] = await et.systems.m2seStages({
      model, tokenizer, system: str(v, 'system'), maxLength: num(v, 'max_length'), accStrategy: acc,
      lora: sftType === 'full' ? false : { r: num(v, 'lora_rank')!, alpha: num(v, 'lora_alpha')!, dropout: num(v, 'lora_dropout_p') ?? num(v, 'lora_dropout')! },
      stages: [{
        datasets: datasets.map((d) => path.resolve(d)),
        args: {
          output_dir: runDir, num_train_epochs: num(v, 'num_train_epochs'), max_steps: num(v, 'max_steps'), per_device_train_batch_size: num(v, 'batch_size'),
          gradient_accumulation_steps: num(v, 'gradient_accumulation_steps'), gradient_checkpointing: v.gradient_checkpointing as boolean,
          learning_rate: num(v, 'learning_rate') ?? (sftType === 'lora' ? 1e-4 : 1e-5), logging_steps: num(v, 'logging_steps'), seed: num(v, 'seed'),
          save_strategy: 'no', disable_tqdm: false,
        },
      }],
    });
    const ckpt = path.join(runDir, `checkpoint-${r.globalStep}`);
    if (sftType === 'lora') await et.nn.saveLoraAdapter(model, ckpt, { baseModel: path.resolve(dir) });
    else await model.save(path.join(ckpt, 'model.safetensors'));
    fs.writeFileSync(path.join(ckpt, 'sft_args.json'), JSON.stringify({ ...v, model: path.resolve(dir) }, null, 2));
    out(`${r.examples} examples (${r.tooLong} longer than max_length dropped), ${r.globalStep} steps, train_loss ${r.trainingLoss.toFixed(6)}`);
    out(`last_model_checkpoint: ${ckpt}`);
  },
};

const M2SE_INFER: Command = {
  summary: "greedy answers to ms-swift records as `swift infer` writes them (M2SE's test.sh)",
  flags: {
    model: { kind: 'string', help: 'the model folder (default: the one --ckpt_dir was trained from)' },
    model_id_or_path: { kind: 'string', help: 'swift\'s name for --model' },
    model_type: { kind: 'string', help: 'accepted for swift\'s command lines; the model folder decides' },
    tokenizer: { kind: 'string', help: 'a tokenizer file or folder (default: the model folder)' },
    ckpt_dir: { kind: 'string', help: 'a LoRA checkpoint folder (peft adapter) written by sft' },
    val_dataset: { kind: 'list', help: 'ms-swift JSON / JSONL test files' },
    system: { kind: 'string', help: 'the system prompt', default: et.systems.M2SE_SYSTEM },
    max_length: { kind: 'number', help: 'accepted for swift\'s command lines (prompts are not cut)' },
    max_new_tokens: { kind: 'number', help: 'most tokens per answer', default: '2048' },
    result_dir: { kind: 'string', help: 'where the JSONL goes (default <ckpt_dir or model>/infer_result)' },
  },
  async run(v, _pos, out) {
    const ckpt = str(v, 'ckpt_dir');
    let dir = str(v, 'model') ?? str(v, 'model_id_or_path');
    if (!dir && ckpt) {
      const args = path.join(ckpt, 'sft_args.json');
      if (fs.existsSync(args)) dir = (JSON.parse(fs.readFileSync(args, 'utf8')) as { model?: string }).model;
    }
    if (!dir) throw new UsageError('--model is required (or --ckpt_dir of a checkpoint sft wrote)');
    const sets = need(v, 'val_dataset') as unknown as string[];
    const { model, tokenizer } = await loadModel(dir, str(v, 'tokenizer'));
    if (ckpt) await et.nn.loadLoraAdapter(model, ckpt);
    const resultDir = str(v, 'result_dir') ?? path.join(ckpt ?? dir, 'infer_result');
    for (const set of sets) {
      const file = path.join(resultDir, `${stamp()}${sets.length > 1 ? `-${path.basename(set).replace(/\.[^.]*$/, '')}` : ''}.jsonl`);
      const r = await et.systems.m2seInfer({ model, tokenizer, dataset: path.resolve(set), outFile: file, system: str(v, 'system'), maxNewTokens: num(v, 'max_new_tokens') });
      out(`${r.count} records of ${set} -> ${r.file}`);
    }
  },
};

const M2SE_SCORE: Command = {
  summary: "compute_result's numbers for a `swift infer` JSONL (sentiment, emotion or emotion-cause pairs)",
  args: '<infer.jsonl>',
  flags: {
    task: { kind: 'string', help: 'sentiment, emotion or pairs' },
    json: { kind: 'bool', help: 'print the whole result as JSON' },
  },
  async run(v, pos, out) {
    if (pos.length !== 1) throw new UsageError('give one infer JSONL file');
    const task = need(v, 'task');
    if (!['sentiment', 'emotion', 'pairs'].includes(task)) throw new UsageError(`--task takes sentiment, emotion or pairs, not '${task}'`);
    const r = task === 'pairs' ? et.metrics.m2seComputeResult(pos[0], 'pairs') : et.metrics.m2seComputeResult(pos[0], task as 'sentiment' | 'emotion');
    if (v.json) { out(JSON.stringify(r, null, 2)); return; }
    if ('micro' in r) {
      out(`F1 ${r.micro.f1.toFixed(4)}  P ${r.micro.precision.toFixed(4)}  R ${r.micro.recall.toFixed(4)}`);
      out(`WF1 ${r.weightedF1.toFixed(4)}`);
    } else {
      out(`accuracy ${r.accuracy.toFixed(4)} (${r.correct} of ${r.total}; ${r.unparsable} answers none of the labels)`);
      out(`weighted F1 ${r.weightedF1.toFixed(4)}`);
      out(`recall ${Object.entries(r.recall).map(([k, x]) => `${k} ${x.toFixed(4)}`).join('  ')}`);
    }
  },
};

export const SYSTEMS: Record<string, { summary: string; commands: Record<string, Command> }> = {
  m2se: { summary: 'M2SE / EmoVerse: ms-swift SFT and inference, compute_result', commands: { sft: M2SE_SFT, infer: M2SE_INFER, score: M2SE_SCORE } },
};

function usage(system?: string, command?: string): string {
  if (system && command) {
    const c = SYSTEMS[system].commands[command];
    const rows = Object.entries(c.flags).map(([n, f]) => `  --${n}${f.kind === 'list' ? ' <v…>' : f.kind === 'bool' ? ' [true|false]' : ' <v>'}`.padEnd(36) + f.help + (f.default !== undefined ? ` (default ${f.default})` : ''));
    return `Usage: emotorch ${system} ${command}${c.args ? ` ${c.args}` : ''} [flags]\n\n${c.summary}\n\n${rows.join('\n')}\n`;
  }
  if (system) {
    return `Usage: emotorch ${system} <command> [flags]\n\n${SYSTEMS[system].summary}\n\n${Object.entries(SYSTEMS[system].commands).map(([n, c]) => `  ${n.padEnd(8)}${c.summary}`).join('\n')}\n\nemotorch ${system} <command> --help for its flags.\n`;
  }
  return `Usage: emotorch <system> <command> [flags]\n\n${Object.entries(SYSTEMS).map(([n, s]) => `  ${n.padEnd(8)}${s.summary}`).join('\n')}\n\nemotorch <system> --help for its commands. Exit status: 0 done, 1 error, 2 usage.\n`;
}

/**
 * Runs one command line; returns the exit status (0 done, 1 runtime error, 2 usage).
 * @param argv the arguments after the program name
 */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(`${s}\n`), err: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<number> {
  const [system, command, ...rest] = argv;
  const help = (a: string | undefined) => a === '--help' || a === '-h';
  if (!system || help(system)) { (system ? out : err)(usage()); return system ? 0 : 2; }
  if (!SYSTEMS[system]) { err(`emotorch: unknown system '${system}'\n\n${usage()}`); return 2; }
  if (!command || help(command)) { (command ? out : err)(usage(system)); return command ? 0 : 2; }
  const c = SYSTEMS[system].commands[command];
  if (!c) { err(`emotorch: unknown command '${system} ${command}'\n\n${usage(system)}`); return 2; }
  if (rest.some(help)) { out(usage(system, command)); return 0; }
  try {
    const { values, positionals } = parseFlags(rest, c.flags);
    if (positionals.length && !c.args) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    await c.run(values, positionals, out);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) { err(`emotorch ${system} ${command}: ${e.message}\n(emotorch ${system} ${command} --help lists the flags)`); return 2; }
    if (e instanceof et.EmotorchError) { err(`emotorch ${system} ${command}: ${e.code}: ${e.message}`); return 1; }
    err(`emotorch ${system} ${command}: ${(e as Error)?.stack ?? String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
