/**
 * M2SE / EmoVerse (seed 004) as a recipe: multistage, multitask LoRA SFT of a text-only
 * LLaMA-family model, or of the SALMONN speech LLM when the records carry audio, over ms-swift
 * records, and `swift infer`-style evaluation whose JSONL the M2SE metrics
 * (`et.metrics.m2seComputeResult`) score.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError, invalid, checkInt, checkNumber, checkOptionNames } from '../errors';
import { tensor, Tensor } from '../tensor';
import { LlamaForCausalLM } from '../nn/llama';
import { applyLora } from '../nn/lora';
import { Tokenizer } from '../data/tokenizer';
import { readJsonList } from '../data/datasets/json';
import { Trainer } from '../train/trainer';
import type { Batch } from '../train/trainer';
import { Salmonn } from './salmonn';
import { readAudio, findFfmpeg, ffmpegMissing } from '../audio/ffmpeg';
import { resolveFrom } from '../data/datasets/base';
import { notAFile } from '../io/file';
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
 * @throws EmotorchError ERR_INVALID_ARG for a record without a string query and a history of string pairs
 */
export function m2sePrompt(rec: Pick<M2seRecord, 'query' | 'history' | 'system'>, system: string = M2SE_SYSTEM): string {
  if (!rec || typeof rec !== 'object' || Array.isArray(rec)) invalid('a record { query, history, system? } (see m2seRecords)', 'record', rec);
  if (typeof rec.query !== 'string') invalid('a string', 'record.query', rec.query);
  if (!Array.isArray(rec.history)) invalid('an array of [query, response] pairs', 'record.history', rec.history);
  rec.history.forEach((h, i) => {
    if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== 'string' || typeof h[1] !== 'string') invalid('a [query, response] pair of strings', `record.history[${i}]`, h);
  });
  if (rec.system !== undefined && typeof rec.system !== 'string') invalid('a string', 'record.system', rec.system);
  if (typeof system !== 'string') invalid('a string', 'system', system);
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
  checkOptionNames(opts, ['system', 'maxLength'], 'm2seExamples');
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
 * @throws EmotorchError ERR_INVALID_ARG for examples whose ids and labels differ in length or are
 *   not token ids, or a pad id that is not a non-negative integer
 */
export function m2seCollate(examples: readonly M2seExample[], padId = 0): { inputIds: Tensor; attentionMask: Tensor; labels: Tensor } {
  if (!Array.isArray(examples) || examples.length === 0) invalid('a non-empty array of { ids, labels }', 'examples', examples);
  checkInt(padId, 'padId', 0);
  examples.forEach((e, i) => {
    if (!e || typeof e !== 'object') invalid('{ ids, labels }', `examples[${i}]`, e);
    if (!Array.isArray(e.ids) || e.ids.length === 0 || !e.ids.every((t: number) => Number.isSafeInteger(t) && t >= 0)) invalid('a non-empty array of token ids (integers ≥ 0)', `examples[${i}].ids`, e.ids);
    if (!Array.isArray(e.labels) || !e.labels.every((t: number) => Number.isSafeInteger(t) && (t >= 0 || t === IGNORE))) invalid(`an array of token ids or ${IGNORE}`, `examples[${i}].labels`, e.labels);
    if (e.labels.length !== e.ids.length) invalid(`${e.ids.length} labels (one per id)`, `examples[${i}].labels`, `${e.labels.length} labels`);
  });
  const T = Math.max(...examples.map((e) => e.ids.length));
  const pad = <V>(a: readonly V[], v: V): V[] => [...a, ...Array<V>(T - a.length).fill(v)];
  return {
    inputIds: tensor(examples.map((e) => pad(e.ids, padId)), { dtype: 'int64' }),
    attentionMask: tensor(examples.map((e) => pad(e.ids.map(() => 1), 0)), { dtype: 'int64' }),
    labels: tensor(examples.map((e) => pad(e.labels, IGNORE)), { dtype: 'int64' }),
  };
}

// ---- SALMONN: records with audio go through the speech LLM ----

/** Silence between the clips of one record: 1600 samples at 16 kHz, as SALMONN's dataset.py puts between `expand_wav` clips. */
const CLIP_GAP = 1600;
const SR = 16000;
/** ms-swift's media tags and SALMONN's own placeholder: removed from a query, since SALMONN's prompt places the audio itself. */
const AUDIO_TAGS = /<(?:audio|video)>|<Speech><SpeechHere><\/Speech>|<SpeechHere>/g;

/** Audio a SALMONN run took from the records. */
export interface M2seAudioReport {
  /** Records with audio (they go through SALMONN's audio path). */
  records: number;
  /** Files of `audios` read. */
  audios: number;
  /** Files of `videos` whose audio track was read (through ffmpeg). */
  videos: number;
}

/** One record as SALMONN trains on it. */
export interface M2seSalmonnItem {
  /** Files (resolved) whose audio is concatenated, 0.1 s apart; empty for a record without audio. */
  audio: string[];
  /** SALMONN's prompt: `prompt_template` around `<Speech><SpeechHere></Speech> ` + the query (around the query alone without audio). */
  prompt: string;
  /** The response (SALMONN appends `end_sym`). */
  target: string;
  /** Without audio: [BOS, prompt, target + end_sym] (with audio SALMONN builds the sequence). */
  ids: number[] | null;
  /** Without audio: −100 over BOS and the prompt, then the target ids; with audio: [−100, target ids], to count the label tokens. */
  labels: number[];
}

/** The files that give a record's audio under SALMONN: its `audios`, else the audio tracks of its `videos`. */
function audioFiles(r: M2seRecord): { files: string[]; fromVideos: boolean } {
  return r.audios.length ? { files: r.audios, fromVideos: false } : { files: r.videos, fromVideos: r.videos.length > 0 };
}

/**
 * Media a model could not use, and for SALMONN the audio it took: a text-only LLaMA uses none; SALMONN
 * uses `audios` (or, without them, the audio tracks of `videos`), never images or video frames.
 */
function mediaReport(records: readonly M2seRecord[], speech: boolean): { unusedMedia: M2seMediaReport; audio?: M2seAudioReport } {
  if (!speech) return { unusedMedia: m2seMedia(records) };
  const unusedMedia: M2seMediaReport = { records: 0, images: 0, videos: 0, audios: 0 };
  const audio: M2seAudioReport = { records: 0, audios: 0, videos: 0 };
  for (const r of records) {
    if (r.images.length + r.videos.length) unusedMedia.records++;
    unusedMedia.images += r.images.length;
    unusedMedia.videos += r.videos.length;
    const { files, fromVideos } = audioFiles(r);
    if (files.length) audio.records++;
    audio[fromVideos ? 'videos' : 'audios'] += files.length;
  }
  return { unusedMedia, audio };
}

/**
 * The audio of a record's files as SALMONN takes it: each read at 16 kHz (channel 0, as the
 * original; WAV natively, anything else through ffmpeg), concatenated with 0.1 s of silence between.
 * @param files audio or video files
 * @throws EmotorchError ERR_IO / ERR_FORMAT naming the file (missing ffmpeg included)
 * @example
 * const wave = await et.systems.m2seAudio(['dia1_utt1.wav', 'dia1_utt2.mp4']);
 */
export async function m2seAudio(files: readonly string[]): Promise<Float32Array> {
  if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f !== 'string')) invalid('a non-empty list of file paths', 'files', files);
  const parts: Float32Array[] = [];
  for (const f of files) parts.push((await readAudio(f, { sampleRate: SR, channel: 0 })).samples);
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0) + CLIP_GAP * (parts.length - 1));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length + CLIP_GAP; }
  return out;
}

/**
 * Builds SALMONN's training items from records: the query (ms-swift's `<audio>`/`<video>` tags
 * removed) becomes SALMONN's instruction, wrapped as `prompt_template.format('<Speech><SpeechHere></Speech> ' + query)`;
 * the target is the response (+ `end_sym`, truncated to `max_txt_len` tokens, as the original).
 * Records without audio are wrapped without the speech part and run through the LLaMA alone.
 * Media paths are resolved against `mediaRoot`; every file is checked, and ffmpeg's presence when
 * a file is not WAV, before anything trains. SALMONN has no system prompt and one turn.
 * @param records from {@link m2seRecords}
 * @param model the SALMONN model (its tokenizer and config are used)
 * @param opts mediaRoot: folder for relative media paths (default: the working directory); maxLength for records without audio
 * @returns the items, and how many records without audio were longer than maxLength (dropped)
 * @throws EmotorchError ERR_FORMAT for a record with earlier turns, ERR_IO naming a missing media
 *   file or missing ffmpeg
 * @example
 * const { items } = await et.systems.m2seSalmonnItems(et.systems.m2seRecords('train.json'), salmonn, { mediaRoot: 'data/' });
 */
export async function m2seSalmonnItems(records: readonly M2seRecord[], model: Salmonn, opts: { mediaRoot?: string; maxLength?: number; where?: string } = {}): Promise<{ items: M2seSalmonnItem[]; tooLong: number }> {
  if (!(model instanceof Salmonn)) invalid('an et.systems.Salmonn', 'model', model);
  if (!Array.isArray(records)) invalid('an array of records', 'records', records);
  checkOptionNames(opts, ['mediaRoot', 'maxLength', 'where'], 'm2seSalmonnItems');
  const root = opts.mediaRoot ?? process.cwd();
  if (typeof root !== 'string') invalid('a folder path', 'mediaRoot', opts.mediaRoot);
  const maxLength = checkInt(opts.maxLength ?? M2SE_MAX_LENGTH, 'maxLength', 2);
  const where = opts.where ?? 'records';
  const { tokenizer: tok, config: c, ids: special } = model;
  let ffmpeg: boolean | undefined;
  const items: M2seSalmonnItem[] = [];
  let tooLong = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (r.history.length) throw new EmotorchError(`${where} item ${i}: SALMONN takes one turn (the original has no multi-turn prompt), but this record has ${r.history.length} earlier turn(s)`, 'ERR_FORMAT');
    const files = audioFiles(r).files.map((f) => resolveFrom(root, f));
    for (const f of files) {
      const why = notAFile(f);
      if (why) throw new EmotorchError(`${where} item ${i}: media file '${f}' ${why}`, 'ERR_IO');
      if (path.extname(f).toLowerCase() !== '.wav' && !(ffmpeg ??= findFfmpeg() !== null)) throw ffmpegMissing(f);
    }
    const query = r.query.replace(AUDIO_TAGS, '').trim();
    const prompt = c.prompt_template.replace('{}', files.length ? `<Speech><SpeechHere></Speech> ${query}` : query);
    const target = (await tok.encode(r.response + c.end_sym, { addSpecialTokens: false })).slice(0, c.max_txt_len);
    if (files.length) {
      items.push({ audio: files, prompt, target: r.response, ids: null, labels: [IGNORE, ...target] });
      continue;
    }
    const p = [special.bos, ...(await tok.encode(prompt, { addSpecialTokens: false }))];
    if (p.length + target.length > maxLength) { tooLong++; continue; }
    items.push({ audio: [], prompt, target: r.response, ids: [...p, ...target], labels: [...p.map(() => IGNORE), ...target] });
  }
  return { items, tooLong };
}

/** A SALMONN batch: `speech` for SALMONN's forward, `text` for the LLaMA alone, `labels` to count label tokens. */
async function salmonnCollate(items: readonly M2seSalmonnItem[]): Promise<Batch> {
  const T = Math.max(...items.map((x) => x.labels.length));
  const batch: Batch = { labels: tensor(items.map((x) => [...x.labels, ...Array<number>(T - x.labels.length).fill(IGNORE)]), { dtype: 'int64' }) };
  const speech = items.filter((x) => x.audio.length);
  const text = items.filter((x) => !x.audio.length);
  if (speech.length) {
    const audio: Float32Array[] = [];
    for (const x of speech) audio.push(await m2seAudio(x.audio));
    batch.speech = { audio, prompt: speech.map((x) => x.prompt), target: speech.map((x) => x.target) };
  }
  if (text.length) batch.text = m2seCollate(text.map((x) => ({ ids: x.ids!, labels: x.labels })));
  return batch;
}

/** Sum of the batch's token losses divided by numItemsInBatch (default: its own label tokens). */
async function salmonnLoss(model: Salmonn, batch: Batch, numItemsInBatch?: number): Promise<Tensor> {
  const n = numItemsInBatch ?? Math.max((batch.labels as Tensor).slice(1, 1).ne(IGNORE).sum().item(), 1);
  let loss: Tensor | null = null;
  if (batch.speech) {
    const out = await model.forward({ ...(batch.speech as { audio: Float32Array[]; prompt: string[]; target: string[] }), numItemsInBatch: n });
    for (const t of [out.logits, out.labels, out.attentionMask]) t?.dispose();
    loss = out.loss!;
  }
  if (batch.text) {
    const out = await model.llama_model.forward({ ...(batch.text as ReturnType<typeof m2seCollate>), numItemsInBatch: n });
    out.logits.dispose();
    loss = loss ? loss.add(out.loss!) : out.loss!;
  }
  return loss!;
}

// ---- the recipe ----

/** One stage of the recipe. */
export interface M2seStage {
  /** ms-swift JSON / JSONL files (or records), concatenated in order. */
  datasets: Array<string | readonly unknown[]>;
  /** Trainer arguments over {@link M2SE_TRAIN_ARGS}; `output_dir` default `<outputDir>/stage-<n>`. */
  args?: TrainingArgumentsInit;
}

export interface M2seStagesOptions extends M2seFormatOptions {
  /** A text-only LLaMA, or SALMONN (records with audio then go through its audio path). */
  model: LlamaForCausalLM | Salmonn;
  /** The LLaMA's tokenizer (SALMONN uses its own; this is ignored for it). */
  tokenizer?: Tokenizer;
  stages: M2seStage[];
  /** Where stages write when their args name no output_dir. */
  outputDir?: string;
  /** LoRA over {@link M2SE_LORA}, or false for a full fine-tune. Skipped when the model (SALMONN: its LLaMA) already has adapters. */
  lora?: Partial<typeof M2SE_LORA> | false;
  /** Folder for relative media paths (SALMONN): default the dataset file's folder, or the working directory for records given in memory. */
  mediaRoot?: string;
}

export interface M2seStageResult {
  outputDir: string;
  examples: number;
  tooLong: number;
  /** Media the model could not use: everything for a text-only LLaMA; images and video frames for SALMONN. */
  unusedMedia: M2seMediaReport;
  /** SALMONN only: the audio it took. */
  audio?: M2seAudioReport;
  globalStep: number;
  trainingLoss: number;
}

/** A dataset's records and the folder its relative media paths resolve against. */
function readDatasets(datasets: Array<string | readonly unknown[]>, mediaRoot?: string): Array<{ records: M2seRecord[]; root: string; name: string }> {
  return datasets.map((d, k) => ({
    records: m2seRecords(d),
    root: mediaRoot ?? (typeof d === 'string' ? path.dirname(path.resolve(d)) : process.cwd()),
    name: typeof d === 'string' ? `'${d}'` : `datasets[${k}]`,
  }));
}

function checkModel(model: unknown, tokenizer: unknown): { salmonn: Salmonn | null; tokenizer: Tokenizer } {
  if (model instanceof Salmonn) return { salmonn: model, tokenizer: model.tokenizer };
  if (!(model instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM or an et.systems.Salmonn', 'model', model);
  return { salmonn: null, tokenizer: checkTokenizer(tokenizer) };
}

/**
 * Runs the M2SE recipe: LoRA on the model (once), then one Trainer run per stage, each over its
 * own datasets and arguments, every stage continuing from the previous one's weights (stage 2
 * starts from stage 1's adapter). With a text-only LLaMA, media in the records are counted per
 * stage, warned about and returned, not used: the model trains on the text. With SALMONN, records
 * with `audios` (or, without them, `videos`, whose audio track ffmpeg decodes) train through its
 * audio path with its prompt and target; images and video frames are counted, warned about and
 * returned.
 * @param opts model, tokenizer, stages, outputDir, lora, system, maxLength, mediaRoot
 * @returns one result per stage
 * @throws EmotorchError ERR_INVALID_ARG for bad options, ERR_IO / ERR_FORMAT on a dataset or a media
 *   file (missing files and a missing ffmpeg are found before any training), ERR_DATA when a stage
 *   has no example that fits maxLength
 * @example
 * await et.systems.m2seStages({ model, tokenizer, outputDir: 'runs/m2se', stages: [
 *   { datasets: ['emt_data_first.json'] }, { datasets: ['emt_data_second.json'] }] });
 */
export async function m2seStages(opts: M2seStagesOptions): Promise<M2seStageResult[]> {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  checkOptionNames(opts, ['model', 'tokenizer', 'stages', 'outputDir', 'lora', 'mediaRoot', 'system', 'maxLength'], 'm2seStages');
  const { model, stages } = opts;
  const { salmonn, tokenizer } = checkModel(model, opts.tokenizer);
  if (!Array.isArray(stages) || stages.length === 0) invalid('a non-empty array of stages', 'stages', stages);
  stages.forEach((s, i) => {
    if (!s || !Array.isArray(s.datasets) || s.datasets.length === 0) invalid('a stage with a non-empty datasets list', `stages[${i}]`, s);
    if (!s.args?.output_dir && typeof opts.outputDir !== 'string') invalid('a string (or output_dir in every stage)', 'outputDir', opts.outputDir);
  });
  if (opts.mediaRoot !== undefined && typeof opts.mediaRoot !== 'string') invalid('a folder path', 'mediaRoot', opts.mediaRoot);
  const stageArgs = stages.map((s, i) => new TrainingArguments({ ...M2SE_TRAIN_ARGS, ...s.args, output_dir: s.args?.output_dir ?? path.join(opts.outputDir!, `stage-${i + 1}`) } as TrainingArgumentsInit));
  if (opts.lora !== false && opts.lora !== undefined && typeof opts.lora !== 'object') invalid('LoRA options or false', 'lora', opts.lora);
  // every stage's records (and for SALMONN its media files and ffmpeg) are checked before any training
  const data: Array<{ recs: M2seRecord[]; examples: M2seExample[] | M2seSalmonnItem[]; tooLong: number }> = [];
  for (const s of stages) {
    const sets = readDatasets(s.datasets, opts.mediaRoot);
    const recs = sets.flatMap((d) => d.records);
    if (salmonn) {
      const items: M2seSalmonnItem[] = [];
      let tooLong = 0;
      for (const d of sets) {
        const r = await m2seSalmonnItems(d.records, salmonn, { mediaRoot: d.root, maxLength: opts.maxLength, where: d.name });
        items.push(...r.items);
        tooLong += r.tooLong;
      }
      data.push({ recs, examples: items, tooLong });
    } else {
      const { examples, tooLong } = await m2seExamples(recs, tokenizer, { system: opts.system, maxLength: opts.maxLength });
      data.push({ recs, examples, tooLong });
    }
  }
  const loraTarget = salmonn ? salmonn.llama_model : model;
  if (opts.lora !== false && !loraTarget.namedParameters().some(([n]) => n.includes('.lora_'))) {
    const l = { ...M2SE_LORA, ...(opts.lora || {}) };
    checkNumber(l.dropout, 'lora.dropout', 0, 1);
    applyLora(loraTarget, l);
  }
  const padId = tokenizer.padTokenId ?? 0;
  const results: M2seStageResult[] = [];
  for (let i = 0; i < stages.length; i++) {
    const { recs, examples, tooLong } = data[i];
    const media = mediaReport(recs, !!salmonn);
    if (media.unusedMedia.records) {
      const u = media.unusedMedia;
      process.emitWarning(salmonn
        ? `M2SE stage ${i + 1}: ${u.records} records carry media SALMONN cannot encode (${u.images} images, the frames of ${u.videos} videos); trained on their audio and text`
        : `M2SE stage ${i + 1}: ${u.records} records carry media a text-only model cannot use (${u.images} images, ${u.videos} videos, ${u.audios} audios); trained on their text`);
    }
    if (examples.length === 0) throw new EmotorchError(`M2SE stage ${i + 1}: no example fits maxLength (${tooLong} too long)`, 'ERR_DATA');
    const outputDir = stageArgs[i].output_dir;
    const trainDataset = { length: examples.length, get: (k: number) => examples[k] } as never;
    const trainer = salmonn
      ? new Trainer<M2seSalmonnItem>({
        model: salmonn, args: stageArgs[i], trainDataset, dataCollator: salmonnCollate,
        computeLoss: (_m, batch, ctx) => salmonnLoss(salmonn, batch, ctx.numItemsInBatch),
      })
      : new Trainer<M2seExample>({ model, args: stageArgs[i], trainDataset, dataCollator: (b) => m2seCollate(b, padId) });
    const out = await trainer.train();
    results.push({ outputDir, examples: examples.length, tooLong, ...media, globalStep: out.globalStep, trainingLoss: out.trainingLoss });
  }
  return results;
}

export interface M2seInferOptions {
  /** A text-only LLaMA, or SALMONN (records with audio are answered from their audio). */
  model: LlamaForCausalLM | Salmonn;
  /** The LLaMA's tokenizer (SALMONN uses its own). */
  tokenizer?: Tokenizer;
  /** The test JSON / JSONL (or records). */
  dataset: string | readonly unknown[];
  /** The JSONL to write. */
  outFile: string;
  system?: string;
  /** Default 64. */
  maxNewTokens?: number;
  /** Folder for relative media paths (SALMONN): default the dataset file's folder, or the working directory. */
  mediaRoot?: string;
}

/**
 * `swift infer` over a test set: greedy generation per record (stopping at the end token), written
 * as JSONL lines `{ system, query, response, label, history, images?, videos?, audios? }` that
 * `et.metrics.readSwiftResults` / `m2seComputeResult` score. With SALMONN, records with audio are
 * answered from it (greedy, SALMONN's prompt); its system field is then SALMONN's (none: '').
 * @returns the file, the record count, the media the model could not use (and SALMONN's audio)
 * @throws EmotorchError ERR_INVALID_ARG for bad options, ERR_IO / ERR_FORMAT on the files (a
 *   missing media file or ffmpeg before anything is generated)
 * @example
 * await et.systems.m2seInfer({ model, tokenizer, dataset: 'meld_test_data.json', outFile: 'meld.jsonl' });
 * et.metrics.m2seComputeResult('meld.jsonl', 'emotion');
 */
export async function m2seInfer(opts: M2seInferOptions): Promise<{ file: string; count: number; unusedMedia: M2seMediaReport; audio?: M2seAudioReport }> {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  checkOptionNames(opts, ['model', 'tokenizer', 'dataset', 'outFile', 'system', 'maxNewTokens', 'mediaRoot'], 'm2seInfer');
  const { salmonn, tokenizer } = checkModel(opts.model, opts.tokenizer);
  if (typeof opts.outFile !== 'string' || !opts.outFile) invalid('a file path', 'outFile', opts.outFile);
  const maxNew = checkInt(opts.maxNewTokens ?? 64, 'maxNewTokens', 1);
  const system = opts.system ?? M2SE_SYSTEM;
  if (typeof system !== 'string') invalid('a string', 'system', system);
  if (opts.mediaRoot !== undefined && typeof opts.mediaRoot !== 'string') invalid('a folder path', 'mediaRoot', opts.mediaRoot);
  const [set] = readDatasets([opts.dataset], opts.mediaRoot);
  const recs = set.records;
  const items = salmonn ? (await m2seSalmonnItems(recs, salmonn, { mediaRoot: set.root, maxLength: Number.MAX_SAFE_INTEGER, where: set.name })).items : null;
  const end = salmonn ? salmonn.ids.eos : endId(tokenizer);
  const llm = salmonn ? salmonn.llama_model : opts.model as LlamaForCausalLM;
  const wasTraining = opts.model.training;
  opts.model.eval();
  const lines: string[] = [];
  try {
    for (let i = 0; i < recs.length; i++) {
      const r = recs[i];
      let toks: number[];
      if (items && items[i].audio.length) {
        [toks] = await salmonn!.generateTokens([await m2seAudio(items[i].audio)], [items[i].prompt], { numBeams: 1, maxNewTokens: maxNew });
      } else {
        const ids = items ? [salmonn!.ids.bos, ...(await tokenizer.encode(items[i].prompt, { addSpecialTokens: false }))] : await tokenizer.encode(m2sePrompt(r, system));
        const { newTokens } = await llm.generate({ inputIds: tensor([ids], { dtype: 'int64' }) }, { maxNewTokens: maxNew, eosTokenId: end, padTokenId: end });
        toks = Array.from(newTokens.dataSync() as ArrayLike<number | bigint>, Number);
      }
      const cut = toks.indexOf(end);
      const response = (await tokenizer.decode(cut < 0 ? toks : toks.slice(0, cut), { skipSpecialTokens: true })).trim();
      const media = Object.fromEntries((['images', 'videos', 'audios'] as const).filter((k) => r[k].length).map((k) => [k, r[k]]));
      lines.push(JSON.stringify({ system: salmonn ? '' : r.system ?? system, query: r.query, response, label: r.response, history: r.history, ...media }));
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
  return { file: opts.outFile, count: recs.length, ...mediaReport(recs, !!salmonn) };
}
