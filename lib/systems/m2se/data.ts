/**
 * M2SE's data: ms-swift records, the chat prompt, tokenized SFT examples and their batches, and
 * for SALMONN the records' audio and SALMONN items.
 */
import * as path from 'path';
import { EmotorchError, invalid, checkInt, checkOptionNames } from '../../errors';
import { tensor, Tensor } from '../../tensor';
import { Tokenizer } from '../../data/tokenizer';
import { readJsonList } from '../../data/datasets/json';
import type { Batch } from '../../train/trainer';
import { Salmonn } from '../salmonn/model';
import { salmonnCollate } from '../salmonn/data';
import { readAudio, findFfmpeg, ffmpegMissing } from '../../audio/ffmpeg';
import { resolveFrom } from '../../data/datasets/base';
import { notAFile } from '../../io/file';

export const IGNORE = -100;

/** The original's system prompt (first_stage.sh, second_stage.sh, test.sh). */
export const M2SE_SYSTEM = 'You are an sentiment and emotion analysis expert.';

/** `max_length` of the original scripts. */
export const M2SE_MAX_LENGTH = 2048;

/**
 * The most characters of text one record may have (query, response, history and system
 * together): 2 Mi, hundreds of thousands of tokens, beyond any model's context. A longer record is
 * refused naming its file and item (and line) before it reaches the tokenizer, which would
 * otherwise run out of memory on it (a 100 MB record needs about 8 GB there).
 */
export const M2SE_MAX_RECORD_CHARS = 2 * 1024 * 1024;

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
export interface M2seMediaReport {
  records: number;
  images: number;
  videos: number;
  audios: number;
}

/** One SFT example: ids and labels (−100 over the prompt). */
export interface M2seExample {
  ids: number[];
  labels: number[];
}

/** How M2SE records become examples: the system prompt and the length limit. */
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
 * @throws EmotorchError ERR_IO / ERR_FORMAT on an unreadable file or a malformed record (named by
 *   index, and line in a .jsonl file); ERR_DATA for a record with more than
 *   {@link M2SE_MAX_RECORD_CHARS} characters of text
 * @example
 * const recs = et.systems.m2se.m2seRecords('meld_test_data.json');
 */
export function m2seRecords(source: string | readonly unknown[]): M2seRecord[] {
  const lines: number[] = [];
  const raw =
    typeof source === 'string'
      ? readJsonList(source, undefined, lines)
      : Array.isArray(source)
        ? source
        : invalid('a file path or an array of records', 'source', source);
  const name = typeof source === 'string' ? `'${source}'` : 'records';
  return raw.map((r, i) => {
    const where = `${name} item ${i}${lines.length ? ` (line ${lines[i]})` : ''}`;
    const rec = m2seRecord(r, where);
    const chars = rec.query.length + rec.response.length + (rec.system?.length ?? 0) + rec.history.reduce((n, [q, a]) => n + q.length + a.length, 0);
    if (chars > M2SE_MAX_RECORD_CHARS) {
      throw new EmotorchError(
        `${where}: its text (query, response, history and system) has ${chars} characters, more than the ${M2SE_MAX_RECORD_CHARS} a record may have (M2SE_MAX_RECORD_CHARS: far beyond any model's context)`,
        'ERR_DATA',
      );
    }
    return rec;
  });
}

/** One ms-swift record, checked; `where` names it in errors. */
function m2seRecord(r: unknown, where: string): M2seRecord {
  if (!r || typeof r !== 'object' || Array.isArray(r)) throw new EmotorchError(`${where} is not an object`, 'ERR_FORMAT');
  const o = r as Record<string, unknown>;
  const media = { images: mediaList(o.images, 'images', where), videos: mediaList(o.videos, 'videos', where), audios: mediaList(o.audios, 'audios', where) };
  if (Array.isArray(o.messages)) {
    const msgs = o.messages as Array<{ role?: unknown; content?: unknown }>;
    if (!msgs.every((m) => m && typeof m.role === 'string' && typeof m.content === 'string'))
      throw new EmotorchError(`${where}: messages need string role and content`, 'ERR_FORMAT');
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
  if (typeof o.query !== 'string' || typeof o.response !== 'string')
    throw new EmotorchError(`${where} lacks a string "query" and "response" (or "messages")`, 'ERR_FORMAT');
  const history = o.history === undefined || o.history === null ? [] : o.history;
  if (!Array.isArray(history) || !history.every((h) => Array.isArray(h) && h.length === 2 && h.every((s) => typeof s === 'string'))) {
    throw new EmotorchError(`${where}: "history" is not a list of [query, response] pairs`, 'ERR_FORMAT');
  }
  if (o.system !== undefined && typeof o.system !== 'string') throw new EmotorchError(`${where}: "system" is not a string`, 'ERR_FORMAT');
  return {
    query: o.query,
    response: o.response,
    history: history as Array<[string, string]>,
    ...(typeof o.system === 'string' ? { system: o.system } : {}),
    ...media,
  };
}

/** Counts the media of records (a text-only model uses none of them). */
export function m2seMedia(records: readonly M2seRecord[]): M2seMediaReport {
  const rep: M2seMediaReport = { records: 0, images: 0, videos: 0, audios: 0 };
  for (const r of records) {
    if (r.images.length + r.videos.length + r.audios.length) rep.records++;
    rep.images += r.images.length;
    rep.videos += r.videos.length;
    rep.audios += r.audios.length;
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
    if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== 'string' || typeof h[1] !== 'string')
      invalid('a [query, response] pair of strings', `record.history[${i}]`, h);
  });
  if (rec.system !== undefined && typeof rec.system !== 'string') invalid('a string', 'record.system', rec.system);
  if (typeof system !== 'string') invalid('a string', 'system', system);
  const turn = (role: string, text: string): string => `<|im_start|>${role}\n${text}<|im_end|>\n`;
  let s = turn('system', rec.system ?? system);
  for (const [q, a] of rec.history) s += turn('user', q) + turn('assistant', a);
  return `${s}${turn('user', rec.query)}<|im_start|>assistant\n`;
}

export function endId(tok: Tokenizer): number {
  const id = tok.tokenToId('<|im_end|>') ?? tok.eosTokenId;
  if (id === undefined) invalid('a tokenizer with an EOS token (or <|im_end|>)', 'tokenizer', 'none');
  return id;
}

export function checkTokenizer(tok: unknown): Tokenizer {
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
 * const { examples } = await et.systems.m2se.m2seExamples(et.systems.m2se.m2seRecords('train.json'), tok);
 */
export async function m2seExamples(
  records: readonly M2seRecord[],
  tokenizer: Tokenizer,
  opts: M2seFormatOptions = {},
): Promise<{ examples: M2seExample[]; tooLong: number }> {
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
    if (prompt.length + resp.length > maxLength) {
      tooLong++;
      continue;
    }
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
    if (!Array.isArray(e.ids) || e.ids.length === 0 || !e.ids.every((t: number) => Number.isSafeInteger(t) && t >= 0))
      invalid('a non-empty array of token ids (integers ≥ 0)', `examples[${i}].ids`, e.ids);
    if (!Array.isArray(e.labels) || !e.labels.every((t: number) => Number.isSafeInteger(t) && (t >= 0 || t === IGNORE)))
      invalid(`an array of token ids or ${IGNORE}`, `examples[${i}].labels`, e.labels);
    if (e.labels.length !== e.ids.length) invalid(`${e.ids.length} labels (one per id)`, `examples[${i}].labels`, `${e.labels.length} labels`);
  });
  const T = Math.max(...examples.map((e) => e.ids.length));
  const pad = <V>(a: readonly V[], v: V): V[] => [...a, ...Array<V>(T - a.length).fill(v)];
  return {
    inputIds: tensor(
      examples.map((e) => pad(e.ids, padId)),
      { dtype: 'int64' },
    ),
    attentionMask: tensor(
      examples.map((e) =>
        pad(
          e.ids.map(() => 1),
          0,
        ),
      ),
      { dtype: 'int64' },
    ),
    labels: tensor(
      examples.map((e) => pad(e.labels, IGNORE)),
      { dtype: 'int64' },
    ),
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
export function mediaReport(records: readonly M2seRecord[], speech: boolean): { unusedMedia: M2seMediaReport; audio?: M2seAudioReport } {
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
 * const wave = await et.systems.m2se.m2seAudio(['dia1_utt1.wav', 'dia1_utt2.mp4']);
 */
export async function m2seAudio(files: readonly string[]): Promise<Float32Array> {
  if (!Array.isArray(files) || files.length === 0 || files.some((f) => typeof f !== 'string')) invalid('a non-empty list of file paths', 'files', files);
  const parts: Float32Array[] = [];
  for (const f of files) parts.push((await readAudio(f, { sampleRate: SR, channel: 0 })).samples);
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0) + CLIP_GAP * (parts.length - 1));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length + CLIP_GAP;
  }
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
 * const { items } = await et.systems.m2se.m2seSalmonnItems(et.systems.m2se.m2seRecords('train.json'), salmonn, { mediaRoot: 'data/' });
 */
export async function m2seSalmonnItems(
  records: readonly M2seRecord[],
  model: Salmonn,
  opts: { mediaRoot?: string; maxLength?: number; where?: string } = {},
): Promise<{ items: M2seSalmonnItem[]; tooLong: number }> {
  checkOptionNames(opts, ['mediaRoot', 'maxLength', 'where'], 'm2seSalmonnItems');
  if (!(model instanceof Salmonn)) invalid('an et.systems.salmonn.Salmonn', 'model', model);
  if (!Array.isArray(records)) invalid('an array of records', 'records', records);
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
    if (r.history.length)
      throw new EmotorchError(
        `${where} item ${i}: SALMONN takes one turn (the original has no multi-turn prompt), but this record has ${r.history.length} earlier turn(s)`,
        'ERR_FORMAT',
      );
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
    if (p.length + target.length > maxLength) {
      tooLong++;
      continue;
    }
    items.push({ audio: [], prompt, target: r.response, ids: [...p, ...target], labels: [...p.map(() => IGNORE), ...target] });
  }
  return { items, tooLong };
}

/** A SALMONN batch: `speech` for SALMONN's forward, `text` for the LLaMA alone, `labels` to count label tokens. */
export async function m2seSalmonnCollate(items: readonly M2seSalmonnItem[]): Promise<Batch> {
  const T = Math.max(...items.map((x) => x.labels.length));
  const batch: Batch = {
    labels: tensor(
      items.map((x) => [...x.labels, ...Array<number>(T - x.labels.length).fill(IGNORE)]),
      { dtype: 'int64' },
    ),
  };
  const speech = items.filter((x) => x.audio.length);
  const text = items.filter((x) => !x.audio.length);
  if (speech.length) {
    const audio: Float32Array[] = [];
    for (const x of speech) audio.push(await m2seAudio(x.audio));
    batch.speech = salmonnCollate(speech.map((x, i) => ({ audio: audio[i], prompt: x.prompt, target: x.target })));
  }
  if (text.length) batch.text = m2seCollate(text.map((x) => ({ ids: x.ids!, labels: x.labels })));
  return batch;
}
