/**
 * M2SE / EmoVerse (seed 004) as a recipe: multistage, multitask LoRA SFT of a text-only
 * LLaMA-family model over ms-swift records, and `swift infer`-style evaluation whose JSONL the
 * M2SE metrics (`et.metrics.m2seComputeResult`) score.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError, invalid, checkInt, checkNumber } from '../errors';
import { tensor, Tensor } from '../tensor';
import { LlamaForCausalLM } from '../nn/llama';
import { applyLora } from '../nn/lora';
import { Tokenizer } from '../data/tokenizer';
import { readJsonList } from '../data/datasets/json';
import { Trainer } from '../train/trainer';
import { TrainingArguments } from '../train/args';
import type { TrainingArgumentsInit } from '../train/args';

const IGNORE = -100;

/** The original's system prompt (first_stage.sh, second_stage.sh, test.sh). */
export const M2SE_SYSTEM = 'You are an sentiment and emotion analysis expert.';

/**
 * The recipe's Trainer defaults: the original scripts' flags (batch 1 × accumulation 8, 2 epochs
 * per stage) and ms-swift 2.x's defaults for what they leave unset (LoRA learning rate 1e-4,
 * warmup ratio 0.05, cosine schedule); one save per epoch of the adapters only.
 */
export const M2SE_TRAIN_ARGS = {
  per_device_train_batch_size: 1, gradient_accumulation_steps: 8, num_train_epochs: 2, learning_rate: 1e-4,
  lr_scheduler_type: 'cosine', warmup_ratio: 0.05, weight_decay: 0.1, max_grad_norm: 0.5,
  save_strategy: 'epoch', save_only_trainable: true, logging_steps: 5, disable_tqdm: true,
} as const;

/** ms-swift 2.x's LoRA defaults (the original passes none): rank 8, alpha 32, dropout 0.05, q_proj/v_proj. */
export const M2SE_LORA = { r: 8, alpha: 32, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] };

/** `max_length` of the original scripts. */
export const M2SE_MAX_LENGTH = 2048;

/** One ms-swift record reduced to what a text-only model sees, with its media listed. */
export interface M2seRecord {
  query: string;
  response: string;
  system?: string;
  /** Earlier turns of a `messages` record, [user, assistant] pairs. */
  history: Array<[string, string]>;
  images: string[];
  videos: string[];
  audios: string[];
}

/** Media the model could not use, counted over the records (records and files). */
export interface M2seMediaReport { records: number; images: number; videos: number; audios: number }

/** One SFT example: ids and labels (−100 over the prompt). */
export interface M2seExample { ids: number[]; labels: number[] }

export interface M2seFormatOptions {
  /** System prompt when a record has none. Default {@link M2SE_SYSTEM}. */
  system?: string;
  /** Longer examples are dropped and counted, as ms-swift's `truncation_strategy: delete`. Default 2048. */
  maxLength?: number;
}

function mediaList(v: unknown, k: string, where: string): string[] {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((p) => typeof p === 'string')) throw new EmotorchError(`${where}: "${k}" is not a list of paths`, 'ERR_FORMAT');
  return list as string[];
}

/**
 * Reads ms-swift records: `{query, response, history?, system?}` or `{messages: [{role, content}]}`
 * (system / user / assistant; the last assistant turn is the response), with `images`, `videos`,
 * `audios` kept as lists.
 * @param source a .json list or .jsonl file, or the records themselves
 * @throws EmotorchError ERR_IO / ERR_FORMAT on an unreadable file or a malformed record (named by index)
 * @example
 * const recs = et.systems.m2seRecords('meld_test_data.json');
 */
export function m2seRecords(source: string | readonly unknown[]): M2seRecord[] {
  const raw = typeof source === 'string' ? readJsonList(source) : Array.isArray(source) ? source : invalid('a file path or an array of records', 'source', source);
  const name = typeof source === 'string' ? `'${source}'` : 'records';
  return raw.map((r, i) => {
    const where = `${name} item ${i}`;
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw new EmotorchError(`${where} is not an object`, 'ERR_FORMAT');
    const o = r as Record<string, unknown>;
    const media = { images: mediaList(o.images, 'images', where), videos: mediaList(o.videos, 'videos', where), audios: mediaList(o.audios, 'audios', where) };
    if (Array.isArray(o.messages)) {
      const msgs = o.messages as Array<{ role?: unknown; content?: unknown }>;
      if (!msgs.every((m) => m && typeof m.role === 'string' && typeof m.content === 'string')) throw new EmotorchError(`${where}: messages need string role and content`, 'ERR_FORMAT');
      let system: string | undefined;
      const turns = msgs.filter((m) => (m.role === 'system' ? ((system = m.content as string), false) : true));
      if (turns.length < 2 || turns.length % 2 || turns.some((m, j) => m.role !== (j % 2 ? 'assistant' : 'user'))) {
        throw new EmotorchError(`${where}: messages must alternate user / assistant and end with assistant`, 'ERR_FORMAT');
      }
      const pairs: Array<[string, string]> = [];
      for (let j = 0; j < turns.length; j += 2) pairs.push([turns[j].content as string, turns[j + 1].content as string]);
      const [query, response] = pairs.pop()!;
      return { query, response, history: pairs, ...(system !== undefined ? { system } : {}), ...media };
    }
    if (typeof o.query !== 'string' || typeof o.response !== 'string') throw new EmotorchError(`${where} lacks a string "query" and "response" (or "messages")`, 'ERR_FORMAT');
    const history = o.history === undefined || o.history === null ? [] : o.history;
    if (!Array.isArray(history) || !history.every((h) => Array.isArray(h) && h.length === 2 && h.every((s) => typeof s === 'string'))) {
      throw new EmotorchError(`${where}: "history" is not a list of [query, response] pairs`, 'ERR_FORMAT');
    }
    if (o.system !== undefined && typeof o.system !== 'string') throw new EmotorchError(`${where}: "system" is not a string`, 'ERR_FORMAT');
    return { query: o.query, response: o.response, history: history as Array<[string, string]>, ...(typeof o.system === 'string' ? { system: o.system } : {}), ...media };
  });
}

/** Counts the media of records (a text-only model uses none of them). */
export function m2seMedia(records: readonly M2seRecord[]): M2seMediaReport {
  const rep: M2seMediaReport = { records: 0, images: 0, videos: 0, audios: 0 };
  for (const r of records) {
    if (r.images.length + r.videos.length + r.audios.length) rep.records++;
    rep.images += r.images.length; rep.videos += r.videos.length; rep.audios += r.audios.length;
  }
  return rep;
}

/**
 * The chat prompt (InternVL2's ChatML template): system, earlier turns, the query and the
 * assistant header; the response follows, ended by `<|im_end|>` (or the tokenizer's EOS).
 * @param rec the record
 * @param system default system prompt
 */
export function m2sePrompt(rec: Pick<M2seRecord, 'query' | 'history' | 'system'>, system: string = M2SE_SYSTEM): string {
  const turn = (role: string, text: string): string => `<|im_start|>${role}\n${text}<|im_end|>\n`;
  let s = turn('system', rec.system ?? system);
  for (const [q, a] of rec.history) s += turn('user', q) + turn('assistant', a);
  return `${s}${turn('user', rec.query)}<|im_start|>assistant\n`;
}

function endId(tok: Tokenizer): number {
  const id = tok.tokenToId('<|im_end|>') ?? tok.eosTokenId;
  if (id === undefined) invalid('a tokenizer with an EOS token (or <|im_end|>)', 'tokenizer', 'none');
  return id;
}

function checkTokenizer(tok: unknown): Tokenizer {
  if (!(tok instanceof Tokenizer)) invalid('an et.data.Tokenizer', 'tokenizer', tok);
  return tok;
}

/**
 * Tokenizes records into SFT examples with the loss on the response only: ids = prompt (with
 * BOS) + response + end token; labels = −100 over the prompt, the ids over response + end.
 * Examples longer than maxLength are dropped and counted.
 * @param records from {@link m2seRecords}
 * @param tokenizer the model's tokenizer (must have an EOS token or `<|im_end|>`)
 * @param opts system, maxLength
 * @returns the examples and how many were dropped for length
 * @throws EmotorchError ERR_INVALID_ARG for a bad tokenizer or option
 * @example
 * const { examples } = await et.systems.m2seExamples(et.systems.m2seRecords('train.json'), tok);
 */
export async function m2seExamples(records: readonly M2seRecord[], tokenizer: Tokenizer, opts: M2seFormatOptions = {}): Promise<{ examples: M2seExample[]; tooLong: number }> {
  checkTokenizer(tokenizer);
  if (!Array.isArray(records)) invalid('an array of records', 'records', records);
  const maxLength = checkInt(opts.maxLength ?? M2SE_MAX_LENGTH, 'maxLength', 2);
  const system = opts.system ?? M2SE_SYSTEM;
  if (typeof system !== 'string') invalid('a string', 'system', system);
  const end = endId(tokenizer);
  const examples: M2seExample[] = [];
  let tooLong = 0;
  for (const r of records) {
    const prompt = await tokenizer.encode(m2sePrompt(r, system));
    const resp = [...(await tokenizer.encode(r.response, { addSpecialTokens: false })), end];
    if (prompt.length + resp.length > maxLength) { tooLong++; continue; }
    examples.push({ ids: [...prompt, ...resp], labels: [...prompt.map(() => IGNORE), ...resp] });
  }
  return { examples, tooLong };
}

/**
 * Pads examples on the right into `{ inputIds, attentionMask, labels }` (labels −100 on padding).
 * @param examples SFT examples
 * @param padId the pad id (default 0)
 */
export function m2seCollate(examples: readonly M2seExample[], padId = 0): { inputIds: Tensor; attentionMask: Tensor; labels: Tensor } {
  if (!Array.isArray(examples) || examples.length === 0) invalid('a non-empty array of { ids, labels }', 'examples', examples);
  const T = Math.max(...examples.map((e) => e.ids.length));
  const pad = <V>(a: readonly V[], v: V): V[] => [...a, ...Array<V>(T - a.length).fill(v)];
  return {
    inputIds: tensor(examples.map((e) => pad(e.ids, padId)), { dtype: 'int64' }),
    attentionMask: tensor(examples.map((e) => pad(e.ids.map(() => 1), 0)), { dtype: 'int64' }),
    labels: tensor(examples.map((e) => pad(e.labels, IGNORE)), { dtype: 'int64' }),
  };
}

/** One stage of the recipe. */
export interface M2seStage {
  /** ms-swift JSON / JSONL files (or records), concatenated in order. */
  datasets: Array<string | readonly unknown[]>;
  /** Trainer arguments over {@link M2SE_TRAIN_ARGS}; `output_dir` default `<outputDir>/stage-<n>`. */
  args?: TrainingArgumentsInit;
}

export interface M2seStagesOptions extends M2seFormatOptions {
  model: LlamaForCausalLM;
  tokenizer: Tokenizer;
  stages: M2seStage[];
  /** Where stages write when their args name no output_dir. */
  outputDir?: string;
  /** LoRA over {@link M2SE_LORA}, or false for a full fine-tune. Skipped when the model already has adapters. */
  lora?: Partial<typeof M2SE_LORA> | false;
}

export interface M2seStageResult {
  outputDir: string;
  examples: number;
  tooLong: number;
  /** Media the text-only model could not use (the records are trained on their text). */
  unusedMedia: M2seMediaReport;
  globalStep: number;
  trainingLoss: number;
}

/**
 * Runs the M2SE recipe: LoRA on the model (once), then one Trainer run per stage, each over its
 * own datasets and arguments, every stage continuing from the previous one's weights (stage 2
 * starts from stage 1's adapter). Media in the records are counted per stage, warned about and
 * returned, not used: a text-only model trains on the text.
 * @param opts model, tokenizer, stages, outputDir, lora, system, maxLength
 * @returns one result per stage
 * @throws EmotorchError ERR_INVALID_ARG for bad options (before training), ERR_IO / ERR_FORMAT on
 *   a dataset, ERR_DATA when a stage has no example that fits maxLength
 * @example
 * await et.systems.m2seStages({ model, tokenizer, outputDir: 'runs/m2se', stages: [
 *   { datasets: ['emt_data_first.json'] }, { datasets: ['emt_data_second.json'] }] });
 */
export async function m2seStages(opts: M2seStagesOptions): Promise<M2seStageResult[]> {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  const { model, stages } = opts;
  if (!(model instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM', 'model', model);
  const tokenizer = checkTokenizer(opts.tokenizer);
  if (!Array.isArray(stages) || stages.length === 0) invalid('a non-empty array of stages', 'stages', stages);
  stages.forEach((s, i) => {
    if (!s || !Array.isArray(s.datasets) || s.datasets.length === 0) invalid('a stage with a non-empty datasets list', `stages[${i}]`, s);
    if (!s.args?.output_dir && typeof opts.outputDir !== 'string') invalid('a string (or output_dir in every stage)', 'outputDir', opts.outputDir);
  });
  const stageArgs = stages.map((s, i) => new TrainingArguments({ ...M2SE_TRAIN_ARGS, ...s.args, output_dir: s.args?.output_dir ?? path.join(opts.outputDir!, `stage-${i + 1}`) } as TrainingArgumentsInit));
  if (opts.lora !== false && opts.lora !== undefined && typeof opts.lora !== 'object') invalid('LoRA options or false', 'lora', opts.lora);
  if (opts.lora !== false && !model.namedParameters().some(([n]) => n.includes('.lora_'))) {
    const l = { ...M2SE_LORA, ...(opts.lora || {}) };
    checkNumber(l.dropout, 'lora.dropout', 0, 1);
    applyLora(model, l);
  }
  const padId = tokenizer.padTokenId ?? 0;
  const results: M2seStageResult[] = [];
  for (let i = 0; i < stages.length; i++) {
    const recs = stages[i].datasets.flatMap((d) => m2seRecords(d));
    const unusedMedia = m2seMedia(recs);
    if (unusedMedia.records) {
      process.emitWarning(`M2SE stage ${i + 1}: ${unusedMedia.records} records carry media a text-only model cannot use (${unusedMedia.images} images, ${unusedMedia.videos} videos, ${unusedMedia.audios} audios); trained on their text`);
    }
    const { examples, tooLong } = await m2seExamples(recs, tokenizer, opts);
    if (examples.length === 0) throw new EmotorchError(`M2SE stage ${i + 1}: no example fits maxLength (${tooLong} too long)`, 'ERR_DATA');
    const outputDir = stageArgs[i].output_dir;
    const trainer = new Trainer<M2seExample>({
      model, args: stageArgs[i],
      trainDataset: { length: examples.length, get: (k: number) => examples[k] } as never,
      dataCollator: (b) => m2seCollate(b, padId),
    });
    const out = await trainer.train();
    results.push({ outputDir, examples: examples.length, tooLong, unusedMedia, globalStep: out.globalStep, trainingLoss: out.trainingLoss });
  }
  return results;
}

export interface M2seInferOptions {
  model: LlamaForCausalLM;
  tokenizer: Tokenizer;
  /** The test JSON / JSONL (or records). */
  dataset: string | readonly unknown[];
  /** The JSONL to write. */
  outFile: string;
  system?: string;
  /** Default 64. */
  maxNewTokens?: number;
}

/**
 * `swift infer` over a test set: greedy generation per record (stopping at the end token), written
 * as JSONL lines `{ system, query, response, label, history, images?, videos?, audios? }` that
 * `et.metrics.readSwiftResults` / `m2seComputeResult` score.
 * @returns the file, the record count and the media the model could not use
 * @throws EmotorchError ERR_INVALID_ARG for bad options, ERR_IO / ERR_FORMAT on the files
 * @example
 * await et.systems.m2seInfer({ model, tokenizer, dataset: 'meld_test_data.json', outFile: 'meld.jsonl' });
 * et.metrics.m2seComputeResult('meld.jsonl', 'emotion');
 */
export async function m2seInfer(opts: M2seInferOptions): Promise<{ file: string; count: number; unusedMedia: M2seMediaReport }> {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  if (!(opts.model instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM', 'model', opts.model);
  const tokenizer = checkTokenizer(opts.tokenizer);
  if (typeof opts.outFile !== 'string' || !opts.outFile) invalid('a file path', 'outFile', opts.outFile);
  const maxNew = checkInt(opts.maxNewTokens ?? 64, 'maxNewTokens', 1);
  const system = opts.system ?? M2SE_SYSTEM;
  if (typeof system !== 'string') invalid('a string', 'system', system);
  const recs = m2seRecords(opts.dataset);
  const end = endId(tokenizer);
  const wasTraining = opts.model.training;
  opts.model.eval();
  const lines: string[] = [];
  try {
    for (const r of recs) {
      const ids = await tokenizer.encode(m2sePrompt(r, system));
      const { newTokens } = await opts.model.generate({ inputIds: tensor([ids], { dtype: 'int64' }) }, { max_new_tokens: maxNew, eos_token_id: end, pad_token_id: end });
      const toks = Array.from(newTokens.dataSync() as ArrayLike<number | bigint>, Number);
      const cut = toks.indexOf(end);
      const response = (await tokenizer.decode(cut < 0 ? toks : toks.slice(0, cut), { skipSpecialTokens: true })).trim();
      const media = Object.fromEntries((['images', 'videos', 'audios'] as const).filter((k) => r[k].length).map((k) => [k, r[k]]));
      lines.push(JSON.stringify({ system: r.system ?? system, query: r.query, response, label: r.response, history: r.history, ...media }));
    }
  } finally {
    if (wasTraining) opts.model.train();
  }
  try {
    await fs.promises.mkdir(path.dirname(path.resolve(opts.outFile)), { recursive: true });
    await fs.promises.writeFile(opts.outFile, lines.map((l) => `${l}\n`).join(''));
  } catch (e) {
    throw new EmotorchError(`cannot write '${opts.outFile}': ${(e as Error).message}`, 'ERR_IO');
  }
  return { file: opts.outFile, count: recs.length, unusedMedia: m2seMedia(recs) };
}
