/** `emotorch salmonn infer`: SALMONN's cli_inference.py on its own decode_config.yaml. */
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import * as YAML from 'yaml';
import * as et from '../index';
import { Command, UsageError, contextLength, maxNewTokens, outputFolder, readJsonFile, readTextFile, str } from './common';

/** The YAML's paths: read here, not config fields. */
const PATHS = ['llama_path', 'whisper_path', 'beats_path', 'ckpt'];

/**
 * The original YAML (`model:` and `generate:` blocks, configs/decode_config.yaml's layout) as
 * fromPretrained options: paths, and the fields SALMONN's config has; the rest named back; and the
 * parsed YAML itself (`doc`, for `salmonn train`'s other blocks).
 * @throws EmotorchError ERR_IO / ERR_FORMAT for an unreadable file or one that is not such a YAML
 */
export function readSalmonnYaml(
  file: string,
  overrides: readonly string[] = [],
): { options: Parameters<typeof et.systems.salmonn.Salmonn.fromPretrained>[0]; ignored: string[]; doc: Record<string, unknown> } {
  // a regular file of at most 16 MiB (a FIFO or /dev/zero is refused before a byte is read)
  const text = readTextFile(file, 'the SALMONN config (--cfg-path)');
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new et.EmotorchError(`cannot read the SALMONN config '${file}': ${(e as Error).message.split('\n')[0]}`, 'ERR_FORMAT');
  }
  const y = doc as { model?: Record<string, unknown>; generate?: Record<string, unknown> } | null;
  if (!y || typeof y !== 'object' || !y.model || typeof y.model !== 'object')
    throw new et.EmotorchError(`'${file}' has no model: block (SALMONN's decode_config.yaml layout)`, 'ERR_FORMAT');
  applyOptions(y as Record<string, unknown>, overrides);
  // the config's fields, and the original's keys the model checks itself (a projection checkpoint, 8-bit loading: refused
  // unless off, never dropped); the paths and the prompt files are read here
  const known = new Set([...Object.keys(et.systems.salmonn.SALMONN_DEFAULTS), 'speech_llama_proj_model', 'low_resource', 'device_8bit']);
  const config: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [k, v] of [...Object.entries(y.model), ...Object.entries(y.generate ?? {})]) {
    if (known.has(k)) config[k] = v;
    else if (!PATHS.includes(k)) ignored.push(k);
  }
  const p = (k: string): string | null => {
    const v = y.model![k];
    if (v === undefined || v === null || v === '') return null;
    if (typeof v !== 'string') throw new et.EmotorchError(`'${file}': model.${k} is not a path`, 'ERR_FORMAT');
    return v;
  };
  const llm = p('llama_path'),
    whisper = p('whisper_path');
  if (!llm || !whisper) throw new et.EmotorchError(`'${file}': model.llama_path and model.whisper_path are required`, 'ERR_FORMAT');
  if (config.qformer === undefined) {
    const bert = bertBaseUncased();
    if (bert) config.qformer = bert;
  }
  return { options: { whisper, beats: p('beats_path'), llm, checkpoint: p('ckpt'), config: config as never }, ignored, doc: y as Record<string, unknown> };
}

/**
 * The original's `--options`: `key=value` items (or `key value` pairs) merged over the YAML as
 * OmegaConf.from_dotlist does (`model.ckpt=x.pth generate.num_beams=1`), each value read as YAML.
 * @throws UsageError for an item without a value or a key through a setting that is not a block
 */
function applyOptions(y: Record<string, unknown>, items: readonly string[]): void {
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < items.length; i++) {
    const eq = items[i].indexOf('=');
    if (eq > 0) pairs.push([items[i].slice(0, eq), items[i].slice(eq + 1)]);
    else if (i + 1 < items.length) pairs.push([items[i], items[++i]]);
    else throw new UsageError(`--options ${items[i]}: a key=value item (e.g. model.ckpt=salmonn_v1.pth)`);
  }
  for (const [key, text] of pairs) {
    const parts = key.split('.');
    if (parts.some((k) => k === '' || k === '__proto__' || k === 'constructor' || k === 'prototype'))
      throw new UsageError(`--options: '${key}' is not a dotted key`);
    let at = y;
    for (const k of parts.slice(0, -1)) {
      if (at[k] === undefined || at[k] === null) at[k] = {};
      if (typeof at[k] !== 'object' || Array.isArray(at[k])) throw new UsageError(`--options ${key}: ${k} is a setting, not a block`);
      at = at[k] as Record<string, unknown>;
    }
    let value: unknown;
    try {
      value = YAML.parse(text);
    } catch {
      value = text;
    }
    at[parts[parts.length - 1]] = value ?? '';
  }
}

/**
 * The Q-Former's sizes as the original takes them: `BertConfig.from_pretrained("bert-base-uncased")`
 * reads a `bert-base-uncased` folder in the working folder, else the hub cache; its BERT sizes
 * (the layer count stays SALMONN's 2). Null when neither has it: the built-in bert-base sizes,
 * which are bert-base-uncased's.
 */
function bertBaseUncased(): Record<string, unknown> | null {
  const local = path.join('bert-base-uncased', 'config.json');
  const cached = et.hub.cachedSnapshot('bert-base-uncased');
  const file = fs.existsSync(local) ? local : cached && fs.existsSync(path.join(cached, 'config.json')) ? path.join(cached, 'config.json') : null;
  if (!file) return null;
  const c = readJsonFile(file, "the Q-Former's BERT config (bert-base-uncased/config.json, as the original's BertConfig.from_pretrained reads it)") as Record<
    string,
    unknown
  >;
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw new et.EmotorchError(`'${file}' is not a BERT config`, 'ERR_FORMAT');
  const keys = [
    'hidden_size',
    'num_attention_heads',
    'intermediate_size',
    'hidden_act',
    'layer_norm_eps',
    'initializer_range',
    'hidden_dropout_prob',
    'attention_probs_dropout_prob',
  ];
  return Object.fromEntries(keys.filter((k) => c[k] !== undefined).map((k) => [k, c[k]]));
}

/**
 * The original's `--options` with the v1 release's `--low_resource` flag (cli_inference.py,
 * web_demo.py: `action='store_true'`) added as `model.low_resource=<value>`, when given.
 */
export function withLowResource(options: readonly string[] | undefined, lowResource: unknown): string[] {
  return [...(options ?? []), ...(typeof lowResource === 'boolean' ? [`model.low_resource=${lowResource}`] : [])];
}

/**
 * Says on stderr how the YAML's `low_resource` / `device_8bit` are taken: the LLaMA's decoder
 * layers with int8 weights; `device_8bit`, the original's GPU for the 8-bit LLaMA, is not used on
 * the CPU, and on CUDA the LLaMA runs where the rest of SALMONN runs.
 */
export function noteLowResource(options: { config?: et.systems.salmonn.SalmonnConfigInput }, device: 'cpu' | 'cuda', file: string): void {
  const c: et.systems.salmonn.SalmonnConfigInput = options.config ?? {};
  if (c.low_resource !== true) return;
  let note = `emotorch: ${file}: low_resource: the LLaMA's decoder Linear layers load with int8 weights (LLM.int8's per-row absmax; LM head, embeddings and norms in float)`;
  if (c.device_8bit !== undefined && c.device_8bit !== null)
    note +=
      device === 'cpu'
        ? `; device_8bit ${String(c.device_8bit)} is a GPU index: not used on the CPU`
        : `; device_8bit ${String(c.device_8bit)}: the 8-bit LLaMA runs on the one device SALMONN runs on`;
  process.stderr.write(`${note}\n`);
}

/**
 * The YAML's `generate.max_new_tokens` against the loaded LLM's context length (SALMONN's checks
 * only that it is a positive integer; 1e12 would generate until memory runs out).
 * @throws EmotorchError ERR_INVALID_ARG naming the key and the file
 */
function checkGenerationCap(model: et.systems.salmonn.Salmonn, options: { config?: unknown }, file: string): void {
  const given = (options.config as Record<string, unknown> | undefined)?.max_new_tokens;
  if (given !== undefined) maxNewTokens(given, contextLength(model), `'${file}': generate.max_new_tokens`, 0);
}

export const SALMONN_INFER: Command = {
  summary: "SALMONN's cli_inference.py: load the model of a decode_config.yaml, then answer a wav and a prompt (or many, typed in turn)",
  flags: {
    'cfg-path': { kind: 'string', help: 'the original YAML (--cfg-path): model paths, model and generate blocks' },
    device: { kind: 'string', help: "where the model runs: cpu, cuda or cuda:N (default, as cli_inference.py's cuda:0, CUDA when present, else the CPU)" },
    options: { kind: 'list', help: 'key=value settings merged over the YAML (model.ckpt=… generate.num_beams=1), as the original' },
    wav: {
      kind: 'string',
      help: "answer this file and stop (with --prompt); several turns as one input: a,b.wav, @list.txt (one path a line) or a JSON array, joined as the trajectory fork's prepare_multi_sample",
    },
    prompt: { kind: 'string', help: 'the instruction for --wav' },
    low_resource: {
      kind: 'bool',
      help: "the v1 release's flag: the LLaMA with 8-bit weights, as the YAML's model.low_resource: True (about a quarter of float32's memory for its layers)",
    },
  },
  async run(v, _pos, out) {
    const cfg = str(v, 'cfg-path');
    if (!cfg) throw new UsageError('--cfg-path is required');
    if ((v.wav === undefined) !== (v.prompt === undefined)) throw new UsageError('--wav and --prompt go together');
    const device = runDevice(str(v, 'device'));
    const { options, ignored } = readSalmonnYaml(cfg, withLowResource(v.options as string[] | undefined, v.low_resource));
    if (ignored.length) process.stderr.write(`emotorch: ${cfg}: not used here: ${ignored.join(', ')}\n`);
    noteLowResource(options, device, cfg);
    const model = await et.systems.salmonn.Salmonn.fromPretrained(options);
    checkGenerationCap(model, options, cfg);
    if (device !== 'cpu') await model.to({ device });
    model.eval();
    const answer = async (wav: string, prompt: string): Promise<string> => (await model.generate([await salmonnInput(wav)], prompt.trim()))[0];
    if (v.wav !== undefined) {
      out(await answer(str(v, 'wav')!, str(v, 'prompt')!));
      return;
    }
    // the original's loop: a wav path, a prompt, the output; until the input ends
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    const lines = rl[Symbol.asyncIterator]();
    const ask = async (q: string): Promise<string | null> => {
      out(q);
      const r = await lines.next();
      return r.done ? null : r.value;
    };
    for (;;) {
      out('=====================================');
      const wav = await ask('Your Wav Path (single path, or comma-separated for multi-turn, or @list.txt):');
      if (wav === null) break;
      const prompt = await ask('Your Prompt:');
      if (prompt === null) break;
      try {
        out('Output:');
        out(await answer(wav.trim(), prompt));
      } catch (e) {
        if (!(e instanceof et.EmotorchError)) throw e;
        out(`error: ${e.code}: ${e.message}`); // a bad path or file: the loop goes on
      }
    }
    rl.close();
  },
};

/**
 * The wav paths of one `--wav` value (or one typed line), read as the trajectory fork's
 * cli_inference.py reads them: `@list.txt` (one path a line; each trimmed, blank lines skipped), a
 * JSON array of paths, comma-separated paths, or one path. (The fork looks for a comma before a
 * JSON array, so its array of two paths is split at the comma into quoted pieces and fails to
 * open; here an array is read as an array.)
 * @throws EmotorchError ERR_INVALID_ARG for an empty list, ERR_IO / ERR_FORMAT for an unreadable list file or bad JSON
 */
export function salmonnWavPaths(raw: string): string[] {
  const r = raw.trim();
  let paths: string[];
  if (r.startsWith('@')) {
    paths = readTextFile(r.slice(1), `the wav list '${r}'`)
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l);
  } else if (r.startsWith('[') && r.endsWith(']')) {
    let v: unknown;
    try {
      v = JSON.parse(r);
    } catch (e) {
      throw new et.EmotorchError(`the wav list ${r} is not a JSON array: ${(e as Error).message}`, 'ERR_FORMAT');
    }
    if (!Array.isArray(v) || !v.every((p) => typeof p === 'string')) throw new et.EmotorchError(`the wav list ${r} is not a JSON array of paths`, 'ERR_FORMAT');
    paths = v.map((p: string) => p.trim());
  } else if (r.includes(',')) {
    paths = r
      .split(',')
      .map((p) => p.trim())
      .filter((p) => p);
  } else {
    paths = [r];
  }
  if (!paths.length || paths.some((p) => !p)) throw new et.EmotorchError(`no wav path in '${raw}'`, 'ERR_INVALID_ARG');
  return paths;
}

/**
 * SALMONN's audio for one `--wav` value: one file as it is (16 kHz, first channel), or several
 * joined as the fork's `prepare_multi_sample` joins them ({@link et.systems.salmonn.salmonnJoinTurns}: each
 * turn, 1600 zeros, at least 1 s, at most 30 s). The fork reads 16 kHz files only (its feature
 * extractor refuses other rates); a file at another rate is taken as SALMONN v1's `model.py` takes
 * it: cut to 30 s at its own rate, then librosa's `res_type='fft'` to 16 kHz.
 */
export async function salmonnInput(raw: string): Promise<Float32Array> {
  const paths = salmonnWavPaths(raw);
  const turns: Float32Array[] = [];
  for (const p of paths) {
    const w = await et.audio.readAudio(p, { sampleRate: null, channel: 0 });
    turns.push(w.sampleRate === 16000 ? w.samples : et.audio.resample(w.samples.subarray(0, 30 * w.sampleRate), w.sampleRate, 16000, { method: 'fft' }));
  }
  return turns.length === 1 ? turns[0] : et.systems.salmonn.salmonnJoinTurns(turns);
}

/**
 * The original's `--device` (`cuda:0`, `cuda`, `cpu`): CUDA when asked and present, else the CPU
 * (said on stderr when CUDA was asked for).
 * @throws UsageError for another device name
 */
export function runDevice(given: string | undefined): 'cpu' | 'cuda' {
  if (given === undefined) return et.cuda.isAvailable() ? 'cuda' : 'cpu'; // the original's cuda:0, where there is one
  if (given === 'cpu') return 'cpu';
  if (!/^cuda(:\d+)?$/.test(given)) throw new UsageError(`--device takes cpu, cuda or cuda:N, not '${given}'`);
  if (et.cuda.isAvailable()) return 'cuda';
  process.stderr.write(`emotorch: --device ${given}: no CUDA device is available: running on the CPU\n`);
  return 'cpu';
}

/** A YAML block as an object (absent: empty). */
function block(y: Record<string, unknown>, name: string, file: string): Record<string, unknown> {
  const b = y[name];
  if (b === undefined || b === null) return {};
  if (typeof b !== 'object' || Array.isArray(b)) throw new et.EmotorchError(`'${file}': ${name}: is not a block of settings`, 'ERR_FORMAT');
  return b as Record<string, unknown>;
}

/** A setting of the YAML: its value, or the default when absent; a wrong type names the key. */
function setting<T extends 'number' | 'string' | 'boolean'>(
  b: Record<string, unknown>,
  key: string,
  type: T,
  dflt: unknown,
  file: string,
): T extends 'number' ? number : T extends 'string' ? string : boolean {
  let v = b[key] ?? dflt;
  // YAML 1.2 reads 1e-6 as a string (no dot): the original's float(...) accepts it
  if (type === 'number' && typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) v = Number(v);
  if (typeof v !== type) throw new et.EmotorchError(`'${file}': ${key} must be a ${type}, not ${JSON.stringify(v)}`, 'ERR_FORMAT');
  return v as never;
}

/** `{task: [prompts]}` from model.prompt_path, keeping those with `<SpeechHere>` as the original. */
function readPrompts(file: string): Record<string, string[]> {
  const doc = readJsonFile(file, 'model.prompt_path');
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new et.EmotorchError(`model.prompt_path '${file}' is not a JSON object of task → prompts`, 'ERR_FORMAT');
  const out: Record<string, string[]> = {};
  for (const [task, v] of Object.entries(doc as Record<string, unknown>)) {
    const list = (Array.isArray(v) ? v : [v]).filter((p): p is string => typeof p === 'string' && p.includes('<SpeechHere>'));
    if (list.length) out[task] = list;
  }
  return out;
}

/** The mean of numbers as the original's stats show them: "{:.3f}". */
const fmt3 = (xs: number[]): string => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0).toFixed(3);

export const SALMONN_TRAIN: Command = {
  summary:
    "SALMONN's train.py on its config.yaml (model, datasets and run blocks): runner.py's schedule, optimizer groups, per-epoch validation and checkpoints, on the Trainer",
  flags: {
    'cfg-path': { kind: 'string', help: 'the original training YAML (--cfg-path): model paths and settings, datasets, run and run.optims' },
    options: { kind: 'list', help: 'key=value settings merged over the YAML (run.optims.max_epoch=1 …), as the original' },
    resume: { kind: 'bool', help: 'continue from the newest checkpoint-N in run.output_dir (optimizer, schedule, data order, best metric)', default: 'false' },
  },
  async run(v, _pos, out) {
    const cfg = str(v, 'cfg-path');
    if (!cfg) throw new UsageError('--cfg-path is required');
    const { options, ignored, doc: y } = readSalmonnYaml(cfg, (v.options as string[] | undefined) ?? []);
    const model_ = block(y, 'model', cfg),
      data = block(y, 'datasets', cfg),
      run = block(y, 'run', cfg),
      optims = block(run, 'optims', cfg);
    if (setting(run, 'evaluate', 'boolean', false, cfg))
      throw new et.EmotorchError(
        `'${cfg}': run.evaluate is true (test-set decoding): use \`emotorch salmonn infer\` for answers; train reads run.evaluate: False`,
        'ERR_FORMAT',
      );
    const trainFile = setting(data, 'train_ann_path', 'string', undefined, cfg);
    const validFile = data.valid_ann_path ? setting(data, 'valid_ann_path', 'string', '', cfg) : '';
    const outputDir = setting(run, 'output_dir', 'string', undefined, cfg);
    outputFolder(outputDir, `'${cfg}': run.output_dir`, false); // checked before the model loads
    const seed = setting(run, 'seed', 'number', 42, cfg);
    const batch = setting(run, 'batch_size_train', 'number', 8, cfg);
    const evalBatch = setting(run, 'batch_size_eval', 'number', batch, cfg);
    const accum = setting(run, 'accum_grad_iters', 'number', 1, cfg);
    const logFreq = setting(run, 'log_freq', 'number', 5, cfg);
    const amp = setting(run, 'amp', 'boolean', false, cfg);
    const wantDevice = setting(run, 'device', 'string', 'cuda', cfg);
    const notUsed = ignored.filter((k) => !['prompt_path', 'test_prompt_path', 'prompt_template'].includes(k));
    const RUN = [
      'seed',
      'output_dir',
      'evaluate',
      'log_freq',
      'epoch_based',
      'iters_per_epoch',
      'accum_grad_iters',
      'batch_size_train',
      'batch_size_eval',
      'device',
      'use_distributed',
      'amp',
      'optims',
    ];
    const OPTIMS = ['max_epoch', 'warmup_steps', 'warmup_start_lr', 'init_lr', 'min_lr', 'weight_decay', 'beta2'];
    for (const [b, known, name] of [
      [data, ['train_ann_path', 'valid_ann_path'], 'datasets'],
      [run, RUN, 'run'],
      [optims, OPTIMS, 'run.optims'],
    ] as const) {
      for (const k of Object.keys(b)) if (!(known as readonly string[]).includes(k)) notUsed.push(`${name}.${k}`);
    }
    if (setting(run, 'use_distributed', 'boolean', false, cfg)) notUsed.push('run.use_distributed (salmonn train runs in one process)');
    if (notUsed.length) process.stderr.write(`emotorch: ${cfg}: not used here: ${notUsed.join(', ')}\n`);

    // data: the annotation JSON(s), prompts from prompt_path wrapped in prompt_template
    const template = setting(model_, 'prompt_template', 'string', 'USER: {}\nASSISTANT:', cfg);
    if (!template.includes('{}')) throw new et.EmotorchError(`'${cfg}': model.prompt_template must contain {} (where the prompt goes)`, 'ERR_FORMAT');
    const promptPath = model_.prompt_path ? setting(model_, 'prompt_path', 'string', '', cfg) : '';
    const dsOpts = { prompts: promptPath ? readPrompts(promptPath) : undefined, template: template.replace('{}', '{instruction}'), minSeconds: 1 };
    const train = await et.data.SalmonnDataset.fromFile(trainFile, dsOpts);
    const valid = validFile ? await et.data.SalmonnDataset.fromFile(validFile, dsOpts) : null;
    // a question (`Q`) is the instruction: the original puts it after the speech, "<Speech><SpeechHere></Speech> {}"
    const speechFirst = (it: et.data.SalmonnItem): et.data.SalmonnItem =>
      it.prompt.includes('<SpeechHere>') ? it : { ...it, prompt: dsOpts.template.replace('{instruction}', `<Speech><SpeechHere></Speech> ${it.instruction}`) };
    const asDataset = (ds: et.data.SalmonnDataset) => ({ length: ds.length, get: async (i: number) => speechFirst(await ds.get(i)) });

    // the run's counts and schedule
    const epochBased = setting(run, 'epoch_based', 'boolean', false, cfg);
    const itersPerEpoch = epochBased ? Math.ceil(train.length / batch) : setting(run, 'iters_per_epoch', 'number', undefined, cfg);
    const sched = {
      max_epoch: setting(optims, 'max_epoch', 'number', undefined, cfg),
      iters_per_epoch: itersPerEpoch,
      accum_grad_iters: accum,
      init_lr: setting(optims, 'init_lr', 'number', undefined, cfg),
      min_lr: setting(optims, 'min_lr', 'number', undefined, cfg),
      warmup_steps: setting(optims, 'warmup_steps', 'number', 0, cfg),
      warmup_start_lr: setting(optims, 'warmup_start_lr', 'number', -1, cfg),
    };
    const schedule = et.systems.salmonn.salmonnSchedule(sched);
    const maxSteps = et.systems.salmonn.salmonnTotalSteps(sched);
    const stepsPerEpoch = itersPerEpoch / accum;

    // the model (seeded first, as train.py's setup_seeds), its optimizer groups
    et.manualSeed(seed);
    const cuda = wantDevice.startsWith('cuda') && et.cuda.isAvailable();
    noteLowResource(options, cuda ? 'cuda' : 'cpu', cfg); // low_resource: LoRA trains over the 8-bit LLaMA, as the original
    const model = await et.systems.salmonn.Salmonn.fromPretrained(options);
    checkGenerationCap(model, options, cfg);
    if (wantDevice.startsWith('cuda') && !cuda) process.stderr.write('emotorch: run.device is cuda but no CUDA device is available: training on the CPU\n');
    const weightDecay = setting(optims, 'weight_decay', 'number', 0.05, cfg);
    const beta2 = setting(optims, 'beta2', 'number', 0.999, cfg);
    if (cuda) await model.to({ device: 'cuda' });
    const optimizer = new et.optim.AdamW(et.systems.salmonn.salmonnParamGroups(model, weightDecay), { lr: sched.init_lr, betas: [0.9, beta2], weightDecay });
    const fp16 = amp && cuda; // torch.cuda.amp: float16 autocast and a GradScaler, on CUDA only
    out(
      `SALMONN: ${train.length} training${valid ? ` and ${valid.length} validation` : ''} items; ${sched.max_epoch} epochs × ${itersPerEpoch} iterations` +
        `${accum > 1 ? ` (${accum} per optimizer step)` : ''} of batch ${batch} = ${maxSteps} optimizer steps; ${model.numParameters(true)} trainable parameters; ${cuda ? 'CUDA' : 'CPU'}${fp16 ? ', fp16 autocast' : ''}`,
    );

    // runner.py's files: log.txt (the config, then the stats of each epoch), checkpoint_{epoch} and checkpoint_best
    outputFolder(outputDir, `'${cfg}': run.output_dir`);
    const logTxt = path.join(outputDir, 'log.txt');
    const resume = v.resume === true;
    if (!resume) fs.appendFileSync(logTxt, JSON.stringify(y, null, 4) + '\n');
    const logStats = (stats: Record<string, unknown>) => fs.appendFileSync(logTxt, JSON.stringify(stats) + '\n');
    const losses: number[] = [];
    const best = { aggMetrics: 0, epoch: 0 };
    const validate = async (): Promise<{ loss: number; aggMetrics: number }> => {
      model.eval();
      const acc = new et.metrics.TokenAccuracy();
      let lossSum = 0;
      for (let i = 0; i < valid!.length; i += evalBatch) {
        const items: et.data.SalmonnItem[] = [];
        for (let j = i; j < Math.min(i + evalBatch, valid!.length); j++) items.push(speechFirst(await valid!.get(j)));
        const fwd = () => model.forward(et.systems.salmonn.Salmonn.collate(items));
        const o = await et.noGrad(() => (fp16 ? et.autocast({ device: 'cuda', dtype: 'float16' }, fwd) : fwd()));
        lossSum += o.loss!.item() * items.length;
        acc.update(o.logits, o.labels);
      }
      model.train();
      return { loss: lossSum / valid!.length, aggMetrics: acc.compute().accuracy };
    };
    const epochEnd: et.train.TrainerCallback = {
      name: 'salmonn_runner',
      async onStepEnd(ctx) {
        const step = ctx.state.global_step;
        if (step % stepsPerEpoch !== 0) return;
        const epoch = step / stepsPerEpoch - 1;
        const lrs = Array.from({ length: itersPerEpoch }, (_, i) => et.systems.salmonn.salmonnIterationLr(sched, epoch, i));
        logStats({ train_lr: fmt3(lrs), train_loss: fmt3(losses.splice(0)) });
        if (valid) {
          const r = await validate();
          if (r.aggMetrics > best.aggMetrics) {
            Object.assign(best, { aggMetrics: r.aggMetrics, epoch });
            await model.saveCheckpoint(path.join(outputDir, 'checkpoint_best.safetensors'));
          }
          logStats({ valid_loss: r.loss, valid_agg_metrics: r.aggMetrics, valid_best_epoch: best.epoch });
          out(`epoch ${epoch}: valid loss ${r.loss.toFixed(4)}, token accuracy ${r.aggMetrics.toFixed(4)} (best: epoch ${best.epoch})`);
        }
        await model.saveCheckpoint(path.join(outputDir, `checkpoint_${epoch}.safetensors`));
      },
      stateDict: () => ({ ...best }),
      loadStateDict(s) {
        Object.assign(best, s as typeof best);
      },
    };
    const trainer = new et.train.Trainer({
      model,
      trainDataset: asDataset(train),
      dataCollator: (items: et.data.SalmonnItem[]) => et.systems.salmonn.Salmonn.collate(items) as unknown as et.train.Batch,
      optimizer,
      schedule,
      callbacks: [epochEnd],
      computeLoss: async (m, b) => {
        const { loss } = await (m as et.systems.salmonn.Salmonn).forward(b as unknown as et.systems.salmonn.SalmonnBatch);
        losses.push(loss!.item()); // runner.py's metric_logger: each iteration's loss
        return loss!;
      },
      args: {
        output_dir: outputDir,
        max_steps: maxSteps,
        per_device_train_batch_size: batch,
        gradient_accumulation_steps: accum,
        logging_steps: logFreq,
        save_strategy: 'steps',
        save_steps: stepsPerEpoch,
        save_total_limit: 2,
        eval_strategy: 'no',
        max_grad_norm: 0,
        seed,
        fp16,
        use_cpu: !cuda,
        report_to: ['tensorboard'],
        disable_tqdm: false,
        resume_from_checkpoint: resume || null,
      },
    });
    const res = await trainer.train();
    out(
      `done: ${res.globalStep} steps, training loss ${res.trainingLoss.toFixed(4)}; ${outputDir}: log.txt, checkpoint_<epoch>.safetensors${valid ? ', checkpoint_best.safetensors' : ''}, checkpoint-N/ (resume with --resume)`,
    );
  },
};
