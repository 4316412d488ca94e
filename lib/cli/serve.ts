/**
 * `emotorch serve`: an OpenAI-compatible chat server for one loaded model (SALMONN from its
 * decode_config.yaml, an InternVL2 folder, a USDM folder, or any LLaMA-family LLM folder with a
 * chat template). A USDM model answers speech with text, and with speech (`modalities: ['text',
 * 'audio']`: OpenAI's `message.audio`, a WAV in base64) when --voicebox and --vocoder are given.
 *
 * `POST /v1/chat/completions` (messages of `text`, `input_audio` and `image_url` data-URL parts;
 * `stream: true` answers as server-sent events, as the OpenAI API streams), `GET /v1/models`,
 * `GET /health`, and a page at `/` to record or upload audio, type a prompt and watch the answer.
 * Up to `--max-batch` requests decode together (continuous batching: a request's prompt runs, then
 * it joins the running batch between steps and leaves when its answer ends), the rest wait in a
 * bounded queue (429 when it is full); body
 * size, audio length, images and `max_tokens` are bounded; a request past its time, or one whose
 * client goes away, stops generating at the next token. Errors are OpenAI error objects.
 *
 * This file is the HTTP side only (routes, admission, streaming, the command); each system brings
 * its chat adapter (`et.data.ChatAdapter`): `et.systems.salmonn.salmonnChat`,
 * `et.systems.m2se.internvlChat`, `et.systems.m2se.llmChat`, `et.systems.usdm.usdmChat`.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { randomUUID } from 'crypto';
import Fastify, { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import * as et from '../index';
import { Command, UsageError, Values, loadChatModel, modelAndAdapter, num, quantizeFlag, str } from './common';
import { noteLowResource, readSalmonnYaml, runDevice, withLowResource } from './salmonn';
import { decoderSettings, readReference, tokenIds, unitExtractor } from './usdm';
import { SERVE_PAGE } from './page';

// The request's JSON as the OpenAI API spells it (snake_case: the wire format), and tokenizer_config.json's key.
interface OpenAiContentPart {
  type?: unknown;
  text?: unknown;
  input_audio?: { data?: unknown; format?: unknown };
  image_url?: { url?: unknown };
}
/** A spoken answer as OpenAI's message.audio. */
interface OpenAiAudioOut {
  id: string;
  data: string;
  expires_at: number;
  transcript: string;
}
interface OpenAiStreamOptions {
  include_usage?: unknown;
}
interface TokenizerConfigJson {
  chat_template?: unknown;
}

type ChatAdapter = et.data.ChatAdapter;
type ChatTurn = et.data.ChatTurn;

/** A request the server refuses: an HTTP status and an OpenAI error object. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

/** A chat template (Jinja, as `tokenizer.apply_chat_template` renders it) from a model folder. */
export function readChatTemplate(dir: string, file?: string): string | null {
  if (file) return fs.readFileSync(file, 'utf8');
  const jinja = path.join(dir, 'chat_template.jinja');
  if (fs.existsSync(jinja)) return fs.readFileSync(jinja, 'utf8');
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  if (!fs.existsSync(cfgFile)) return null;
  const t = (JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as TokenizerConfigJson).chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const d = t.find((x) => x && typeof x === 'object' && (x as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (d && typeof d.template === 'string') return d.template;
  }
  return null;
}

/** The server's bounds. */
export interface ServeLimits {
  /**
   * Requests decoded together (continuous batching: each joins the running batch between steps and
   * leaves when its answer ends; greedy answers equal the ones decoded alone). 1: one request at a
   * time. Default 16.
   */
  maxBatch: number;
  /** Requests waiting beyond the `maxBatch` running ones; more get 429. Default 16. */
  maxQueue: number;
  /** Request body bytes (base64 media included); more get 413. Default 32 MiB. */
  maxBodyBytes: number;
  /** Seconds of audio per request. Default 120. */
  maxAudioSeconds: number;
  /** Images per request. Default 8. */
  maxImages: number;
  /** Pixels (width · height) of one image, checked from its header before it is decoded. Default 4096 · 4096. */
  maxImagePixels: number;
  /** Prompt tokens per request (and 32 characters of text a token, checked before tokenizing). Default 8192. */
  maxPromptTokens: number;
  /** The largest `max_tokens` (and the default where the model has none: SALMONN's is its YAML's max_new_tokens). Default 512. */
  maxTokens: number;
  /** A request's time from arrival to its last token, in ms; then 504 (or an error event). Default 300 000. */
  timeoutMs: number;
}

export const SERVE_DEFAULTS: ServeLimits = {
  maxBatch: 16,
  maxQueue: 16,
  maxBodyBytes: 32 << 20,
  maxAudioSeconds: 120,
  maxImages: 8,
  maxImagePixels: 4096 * 4096,
  maxPromptTokens: 8192,
  maxTokens: 512,
  timeoutMs: 300_000,
};

/** Characters of text a prompt token may stand for at most, for the check before tokenizing. */
const CHARS_PER_TOKEN = 32;

/** Up to `slots` jobs at a time on the model, the rest waiting in order, at most `max` of them. */
class Gate {
  running = 0;
  private waiting: Array<{ go: () => void; fail: (e: Error) => void }> = [];
  constructor(
    private slots: number,
    private max: number,
  ) {}
  get queued(): number {
    return this.waiting.length;
  }
  async run<T>(job: () => Promise<T>, signal: AbortSignal): Promise<T> {
    if (this.running >= this.slots) {
      if (this.waiting.length >= this.max)
        throw new ApiError(
          429,
          `the server is busy: ${this.waiting.length} requests are waiting (--max-queue ${this.max}); retry later`,
          'rate_limit_error',
          null,
          'queue_full',
        );
      await new Promise<void>((go, fail) => {
        const w = { go, fail };
        this.waiting.push(w);
        signal.addEventListener(
          'abort',
          () => {
            const i = this.waiting.indexOf(w);
            if (i >= 0) {
              this.waiting.splice(i, 1);
              fail(signal.reason as Error);
            }
          },
          { once: true },
        );
      });
    } else this.running++; // a waiter let go takes over the slot of the job that let it go
    try {
      if (signal.aborted) throw signal.reason as Error;
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next.go();
      else this.running--;
    }
  }
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;
function base64(data: unknown, param: string): Buffer {
  if (typeof data !== 'string' || !data.length) throw new ApiError(400, `${param} must be a non-empty base64 string`, 'invalid_request_error', param);
  const s = data.replace(/\s+/g, '');
  if (s.length % 4 !== 0 || !B64.test(s)) throw new ApiError(400, `${param} is not valid base64`, 'invalid_request_error', param);
  return Buffer.from(s, 'base64');
}

/** Writes bytes to a private temporary file for ffmpeg, runs `f` on it, removes it. */
async function withTempFile<T>(bytes: Buffer, ext: string, f: (file: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-serve-'));
  const file = path.join(dir, `input.${ext}`);
  try {
    fs.writeFileSync(file, bytes);
    return await f(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const AUDIO_FORMATS = ['wav', 'mp3', 'flac'];
const IMAGE_TYPES: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/jpg': 'jpg',
  'image/webp': 'webp',
  'image/bmp': 'bmp',
  'image/gif': 'gif',
};

/**
 * The request's messages, media decoded and checked against the backend and the limits, pushed
 * onto `turns` as they are read (so that the caller disposes the images of a request refused midway).
 */
async function readMessages(body: Record<string, unknown>, backend: ChatAdapter, limits: ServeLimits, turns: ChatTurn[]): Promise<ChatTurn[]> {
  const messages = body.messages;
  if (!Array.isArray(messages) || !messages.length) throw new ApiError(400, 'messages must be a non-empty array', 'invalid_request_error', 'messages');
  // images counted before any is decoded
  const parts = messages.flatMap((m) =>
    m && typeof m === 'object' && Array.isArray((m as { content?: unknown }).content) ? (m as { content: unknown[] }).content : [],
  );
  const images = parts.filter((p) => p && typeof p === 'object' && (p as { type?: unknown }).type === 'image_url').length;
  if (images > limits.maxImages)
    throw new ApiError(400, `the request has ${images} images, more than ${limits.maxImages} (--max-images)`, 'invalid_request_error', 'messages');
  let seconds = 0;
  let chars = 0;
  const maxChars = limits.maxPromptTokens * CHARS_PER_TOKEN;
  for (const [i, m] of messages.entries()) {
    const p = `messages[${i}]`;
    if (!m || typeof m !== 'object') throw new ApiError(400, `${p} must be an object`, 'invalid_request_error', p);
    const { role, content } = m as { role?: unknown; content?: unknown };
    const r = role === 'developer' ? 'system' : role;
    if (r !== 'system' && r !== 'user' && r !== 'assistant')
      throw new ApiError(
        400,
        `${p}.role must be 'system', 'developer', 'user' or 'assistant', not ${JSON.stringify(role)}`,
        'invalid_request_error',
        `${p}.role`,
      );
    const turn: ChatTurn = { role: r, text: '', audio: [], images: [] };
    turns.push(turn);
    const texts: string[] = [];
    const addText = (t: string, param: string) => {
      chars += t.length;
      if (chars > maxChars)
        throw new ApiError(
          400,
          `the request's text has more than ${maxChars} characters, more than ${limits.maxPromptTokens} prompt tokens can hold (--max-prompt-tokens)`,
          'invalid_request_error',
          param,
          'context_length_exceeded',
        );
      texts.push(t);
    };
    if (typeof content === 'string') addText(content, `${p}.content`);
    else if (Array.isArray(content)) {
      for (const [j, part] of content.entries()) {
        const q = `${p}.content[${j}]`;
        const type = part && typeof part === 'object' ? (part as { type?: unknown }).type : undefined;
        if (type === 'text') {
          const t = (part as { text?: unknown }).text;
          if (typeof t !== 'string') throw new ApiError(400, `${q}.text must be a string`, 'invalid_request_error', `${q}.text`);
          addText(t, `${q}.text`);
        } else if (type === 'input_audio') {
          if (!backend.accepts.audio) throw new ApiError(400, `model '${backend.id}' does not take audio (${q})`, 'invalid_request_error', q);
          const a = (part as OpenAiContentPart).input_audio;
          const format = a?.format;
          if (typeof format !== 'string' || !AUDIO_FORMATS.includes(format))
            throw new ApiError(400, `${q}.input_audio.format must be one of ${AUDIO_FORMATS.join(', ')}`, 'invalid_request_error', `${q}.input_audio.format`);
          const bytes = base64(a?.data, `${q}.input_audio.data`);
          let wav: et.audio.Wav;
          // the request's audio seconds still free: ffmpeg decodes no more than these (and a WAV declaring more is refused from its header)
          const opts = {
            sampleRate: 16000,
            channel: 0 as 'mix' | number,
            ...backend.audioRead,
            maxSeconds: Math.max(limits.maxAudioSeconds - seconds, 1e-6),
            timeoutMs: limits.timeoutMs,
          };
          try {
            wav =
              format === 'wav'
                ? et.audio.decodeWav(bytes, { ...opts, timeoutMs: undefined }, q)
                : await withTempFile(bytes, format, (f) => et.audio.readAudio(f, opts));
          } catch (e) {
            if (e instanceof et.EmotorchError && /maxSeconds/.test(e.message))
              throw new ApiError(
                400,
                `the request's audio is longer than ${limits.maxAudioSeconds} s (--max-audio-seconds)`,
                'invalid_request_error',
                `${q}.input_audio`,
              );
            if (e instanceof et.EmotorchError)
              throw new ApiError(
                400,
                `${q}: the audio cannot be decoded as ${format} (${e.message.replace(/'[^']*emotorch-serve-[^']*'/g, 'it')})`,
                'invalid_request_error',
                `${q}.input_audio.data`,
              );
            throw e;
          }
          seconds += wav.samples.length / 16000;
          if (seconds > limits.maxAudioSeconds)
            throw new ApiError(
              400,
              `the request's audio is longer than ${limits.maxAudioSeconds} s (--max-audio-seconds)`,
              'invalid_request_error',
              `${q}.input_audio`,
            );
          turn.audio.push(wav.samples);
        } else if (type === 'image_url') {
          if (!backend.accepts.image) throw new ApiError(400, `model '${backend.id}' does not take images (${q})`, 'invalid_request_error', q);
          const url = (part as OpenAiContentPart).image_url?.url;
          const m2 = typeof url === 'string' ? /^data:([\w/+.-]+);base64,(.*)$/s.exec(url) : null;
          if (!m2)
            throw new ApiError(
              400,
              `${q}.image_url.url must be a data: URL (data:image/png;base64,…); the server fetches nothing`,
              'invalid_request_error',
              `${q}.image_url.url`,
            );
          const ext = IMAGE_TYPES[m2[1].toLowerCase()];
          if (!ext)
            throw new ApiError(
              400,
              `${q}: image type ${m2[1]} is not one of ${Object.keys(IMAGE_TYPES).join(', ')}`,
              'invalid_request_error',
              `${q}.image_url.url`,
            );
          const bytes = base64(m2[2], `${q}.image_url.url`);
          try {
            turn.images.push(await withTempFile(bytes, ext, (f) => et.vision.readImage(f, { maxPixels: limits.maxImagePixels, timeoutMs: limits.timeoutMs })));
          } catch (e) {
            if (e instanceof et.EmotorchError && /maxPixels/.test(e.message))
              throw new ApiError(
                400,
                `${q}: the image has more than ${limits.maxImagePixels} pixels (--max-image-pixels)`,
                'invalid_request_error',
                `${q}.image_url.url`,
              );
            if (e instanceof et.EmotorchError)
              throw new ApiError(400, `${q}: the image cannot be decoded as ${m2[1]}`, 'invalid_request_error', `${q}.image_url.url`);
            throw e;
          }
        } else
          throw new ApiError(400, `${q}.type must be 'text', 'input_audio' or 'image_url', not ${JSON.stringify(type)}`, 'invalid_request_error', `${q}.type`);
      }
    } else throw new ApiError(400, `${p}.content must be a string or an array of parts`, 'invalid_request_error', `${p}.content`);
    turn.text = texts.join('\n');
  }
  return turns;
}

/**
 * OpenAI's request fields this server does not implement, each with the values that ask nothing
 * of it (the API's defaults): taken with those, a 400 naming the field otherwise.
 */
const NEUTRAL: Record<string, [ok: (v: unknown) => boolean, what: string]> = {
  logprobs: [(v) => v === false, 'false (log probabilities are not returned)'],
  top_logprobs: [() => false, 'absent (log probabilities are not returned)'],
  frequency_penalty: [(v) => v === 0, '0 (penalties are not implemented)'],
  presence_penalty: [(v) => v === 0, '0 (penalties are not implemented)'],
  logit_bias: [(v) => !!v && typeof v === 'object' && !Array.isArray(v) && !Object.keys(v).length, '{} (logit biases are not implemented)'],
  tools: [(v) => Array.isArray(v) && !v.length, '[] (tool calls are not implemented)'],
  functions: [(v) => Array.isArray(v) && !v.length, '[] (function calls are not implemented)'],
  tool_choice: [(v) => v === 'none' || v === 'auto', "'none' or 'auto' (tool calls are not implemented)"],
  function_call: [(v) => v === 'none' || v === 'auto', "'none' or 'auto' (function calls are not implemented)"],
  parallel_tool_calls: [(v) => typeof v === 'boolean', 'a boolean'],
  response_format: [
    (v) => !!v && typeof v === 'object' && (v as { type?: unknown }).type === 'text' && Object.keys(v).length === 1,
    "{ type: 'text' } (structured outputs are not implemented)",
  ],
  prediction: [() => false, 'absent (predicted outputs are not implemented)'],
  reasoning_effort: [() => false, 'absent (not a reasoning model)'],
  verbosity: [() => false, 'absent (not implemented)'],
  web_search_options: [() => false, 'absent (the server searches nothing)'],
  store: [(v) => v === false, 'false (the server stores no answer)'],
  // about the caller, with no effect on the answer
  user: [(v) => typeof v === 'string', 'a string'],
  safety_identifier: [(v) => typeof v === 'string', 'a string'],
  prompt_cache_key: [(v) => typeof v === 'string', 'a string'],
  service_tier: [(v) => typeof v === 'string', 'a string'],
  metadata: [(v) => !!v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string'), 'an object of strings'],
};
/** The fields the server reads. */
const TAKEN = [
  'messages',
  'model',
  'max_tokens',
  'max_completion_tokens',
  'temperature',
  'top_p',
  'n',
  'seed',
  'stop',
  'stream',
  'stream_options',
  'modalities',
  'audio',
];

/** Stop sequences a request may give (OpenAI's bound). */
const MAX_STOPS = 4;

/** The generation settings of a request, checked: every field is read or refused, none ignored. */
function readSettings(
  body: Record<string, unknown>,
  limits: ServeLimits,
  speaks: boolean,
): { maxTokens?: number; temperature?: number; topP?: number; seed?: number; stop: string[]; audio?: { voice: string; format: 'wav' } } {
  const bad = (param: string, what: string) =>
    new ApiError(400, `${param} must be ${what}, not ${JSON.stringify(body[param])}`, 'invalid_request_error', param);
  const unknown = Object.keys(body).filter((k) => !TAKEN.includes(k) && !(k in NEUTRAL));
  if (unknown.length) {
    throw new ApiError(
      400,
      `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')}: this server takes ${TAKEN.join(', ')} (and ${Object.keys(NEUTRAL).join(', ')} where they ask nothing of it)`,
      'invalid_request_error',
      unknown[0],
    );
  }
  for (const [k, [ok, what]] of Object.entries(NEUTRAL)) if (body[k] !== undefined && body[k] !== null && !ok(body[k])) throw bad(k, what);
  const mt = body.max_completion_tokens ?? body.max_tokens;
  const param = body.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens';
  if (mt !== undefined && mt !== null && !(Number.isInteger(mt) && (mt as number) >= 1 && (mt as number) <= limits.maxTokens))
    throw bad(param, `an integer from 1 to ${limits.maxTokens} (--max-tokens)`);
  const t = body.temperature;
  if (t !== undefined && t !== null && !(typeof t === 'number' && t >= 0 && t <= 2)) throw bad('temperature', 'a number from 0 to 2');
  const p = body.top_p;
  if (p !== undefined && p !== null && !(typeof p === 'number' && p > 0 && p <= 1)) throw bad('top_p', 'a number in (0, 1]');
  if (body.n !== undefined && body.n !== null && body.n !== 1) throw bad('n', '1 (one answer per request)');
  const seed = body.seed;
  if (seed !== undefined && seed !== null && !Number.isSafeInteger(seed)) throw bad('seed', 'an integer');
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') throw bad('stream', 'a boolean');
  const so = body.stream_options;
  if (so !== undefined && so !== null) {
    const o = so && typeof so === 'object' && !Array.isArray(so) ? (so as Record<string, unknown>) : null;
    const flag = (v: unknown) => v === undefined || v === null || typeof v === 'boolean';
    if (!o || Object.keys(o).some((k) => k !== 'include_usage' && k !== 'include_obfuscation') || !flag(o.include_usage) || !flag(o.include_obfuscation)) {
      throw bad('stream_options', '{ include_usage?: boolean } (and include_obfuscation, which changes no answer here)');
    }
    if (body.stream !== true) throw bad('stream_options', 'absent unless stream is true');
  }
  const st = body.stop;
  let stop: string[] = [];
  if (st !== undefined && st !== null) {
    stop = typeof st === 'string' ? [st] : Array.isArray(st) ? st : [];
    if ((typeof st !== 'string' && !Array.isArray(st)) || stop.length > MAX_STOPS || !stop.every((x) => typeof x === 'string' && x.length > 0)) {
      throw bad('stop', `a non-empty string or an array of up to ${MAX_STOPS} non-empty strings`);
    }
  }
  // a spoken answer: OpenAI's modalities ['text', 'audio'] with audio { voice, format }
  const mo = body.modalities;
  let audio: { voice: string; format: 'wav' } | undefined;
  if (mo !== undefined && mo !== null) {
    if (!Array.isArray(mo) || !mo.length || !mo.every((x) => x === 'text' || x === 'audio') || new Set(mo).size !== mo.length || !mo.includes('text'))
      throw bad('modalities', "['text'] or ['text', 'audio']");
    if (mo.includes('audio')) {
      if (!speaks)
        throw new ApiError(400, "this model answers in text only: modalities must be ['text']", 'invalid_request_error', 'modalities', 'unsupported_value');
      const a = body.audio as Record<string, unknown> | null | undefined;
      if (!a || typeof a !== 'object' || Array.isArray(a)) throw bad('audio', "{ voice, format: 'wav' } when modalities has 'audio'");
      const extra = Object.keys(a).filter((k) => k !== 'voice' && k !== 'format');
      if (extra.length) throw new ApiError(400, `audio.${extra[0]} is not taken (audio has voice and format)`, 'invalid_request_error', `audio.${extra[0]}`);
      const voice =
        typeof a.voice === 'string' ? a.voice : typeof (a.voice as { id?: unknown } | null)?.id === 'string' ? String((a.voice as { id: string }).id) : null;
      if (voice === null) throw new ApiError(400, 'audio.voice must be a string (a voice name)', 'invalid_request_error', 'audio.voice');
      if (a.format !== 'wav')
        throw new ApiError(
          400,
          `audio.format must be 'wav' (the one this server writes), not ${JSON.stringify(a.format)}`,
          'invalid_request_error',
          'audio.format',
        );
      audio = { voice, format: 'wav' };
    }
  }
  if (!audio && body.audio !== undefined && body.audio !== null) throw bad('audio', "absent unless modalities has 'audio'");
  return {
    ...(audio ? { audio } : {}),
    ...(typeof mt === 'number' ? { maxTokens: mt } : {}),
    ...(typeof t === 'number' ? { temperature: t } : {}),
    ...(typeof p === 'number' ? { topP: p } : {}),
    ...(typeof seed === 'number' ? { seed } : {}),
    stop: [...new Set(stop)],
  };
}

/**
 * Where a text is to be cut for its stop sequences: `end` before the first one (with `hit`), or,
 * with none in it, before the longest tail that begins one (held back while the answer grows, so
 * a stream never sends part of a stop sequence).
 * @param text the answer decoded so far
 * @param stops the request's stop sequences (non-empty strings)
 * @example
 * stopCut('Hello wo', ['world']);   // { end: 6, hit: false }: 'wo' is held back
 */
export function stopCut(text: string, stops: string[]): { end: number; hit: boolean } {
  let first = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (first < 0 || i < first)) first = i;
  }
  if (first >= 0) return { end: first, hit: true };
  let held = 0;
  for (const s of stops) held = Math.max(held, prefixAtEnd(text, s));
  return { end: text.length - held, hit: false };
}

/** The longest proper prefix of `s` that `text` ends with: KMP over the text's last |s| − 1 characters (linear, whatever a request's stop sequences are). */
function prefixAtEnd(text: string, s: string): number {
  const fail = new Int32Array(s.length); // fail[i]: the longest proper border of s[0..i]
  for (let i = 1, k = 0; i < s.length; i++) {
    while (k > 0 && s[i] !== s[k]) k = fail[k - 1];
    if (s[i] === s[k]) k++;
    fail[i] = k;
  }
  let m = 0;
  for (let i = Math.max(0, text.length - (s.length - 1)); i < text.length; i++) {
    while (m > 0 && text[i] !== s[m]) m = fail[m - 1];
    if (text[i] === s[m]) m++;
    if (m === s.length) m = fail[m - 1]; // a whole match (not possible here: the caller found none) continues as its border
  }
  return m;
}

const errorBody = (e: ApiError) => ({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });

/** What a failure is to a client. */
function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof et.data.ChatRequestError) return new ApiError(400, e.message, 'invalid_request_error', e.param, e.reason); // an adapter's refusal
  if (e instanceof et.EmotorchError && e.code === 'ERR_ABORTED')
    return new ApiError(504, 'the request took longer than the server allows (--timeout-s)', 'timeout_error', null, 'timeout');
  if (e instanceof et.EmotorchError && e.code === 'ERR_INVALID_ARG') return new ApiError(400, e.message, 'invalid_request_error');
  const f = e as { statusCode?: number; code?: string; message?: string };
  if (typeof f?.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    // the web framework's own failures in OpenAI's terms: its codes (FST_ERR_…) are not the API's
    // vocabulary, which gives these no code
    const msg =
      f.statusCode === 413
        ? 'the request body is larger than the server takes (--max-body-mb)'
        : /_(INVALID|EMPTY)_JSON_BODY$/.test(f.code ?? '')
          ? `We could not parse the JSON body of your request: ${f.message ?? 'not JSON'}`
          : f.statusCode === 415
            ? "the request's Content-Type must be application/json"
            : (f.message ?? 'bad request');
    return new ApiError(f.statusCode, msg, 'invalid_request_error', null, null);
  }
  return new ApiError(
    500,
    `the server failed on this request: ${e instanceof et.EmotorchError ? `${e.code}: ${e.message}` : String((e as Error)?.message ?? e)}`,
    'server_error',
  );
}

/**
 * Counters the server keeps (for /health and tests): requests `served` (answered), `failed` (the
 * server could not answer: an error of its own, or its time limit), `cancelled` (the client went
 * away first, before or while streaming: no failure) and `rejected` (refused as the request's own
 * fault or the queue's: every 4xx).
 */
export interface ServeStats {
  served: number;
  failed: number;
  cancelled: number;
  rejected: number;
}

/**
 * Hands memory back once the server is idle, so that a request with large inputs (an image
 * decoded and tiled, a long prompt) does not keep the server's RSS up: 100 ms after the last
 * request ends, with none running or waiting, a full garbage collection (tensors a request left to
 * the GC are freed by it) and then the CPU cache emptied, the C library's free pages with it.
 */
class IdleRelease {
  private timer: NodeJS.Timeout | null = null;
  private static gc: (() => void) | null | undefined;
  constructor(private isIdle: () => boolean) {}
  soon(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (!this.isIdle()) return;
      IdleRelease.collect();
      setImmediate(() => {
        if (this.isIdle()) et.cpu.emptyCache();
      });
    }, 100);
    this.timer.unref();
  }
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
  /** V8's full collection (exposed for this process on first use), or nothing where it cannot be had. */
  private static collect(): void {
    if (IdleRelease.gc === undefined) {
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        require('v8').setFlagsFromString('--expose-gc');
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        IdleRelease.gc = require('vm').runInNewContext('gc') as () => void;
      } catch {
        IdleRelease.gc = null;
      }
    }
    IdleRelease.gc?.();
  }
}

/**
 * A Fastify server for a backend (not yet listening: call `listen`).
 * @param backend a system's chat adapter: `et.systems.salmonn.salmonnChat`, `et.systems.m2se.internvlChat` or `et.systems.m2se.llmChat`
 */
export function createServer(backend: ChatAdapter, limits: Partial<ServeLimits> = {}): FastifyInstance & { stats: ServeStats } {
  const L: ServeLimits = { ...SERVE_DEFAULTS, ...limits };
  const app = Fastify({ bodyLimit: L.maxBodyBytes, logger: false }) as unknown as FastifyInstance & { stats: ServeStats };
  const gate = new Gate(L.maxBatch, L.maxQueue);
  const idle = new IdleRelease(() => !gate.running && !gate.queued);
  app.addHook('onClose', async () => idle.cancel());
  const stats: ServeStats = { served: 0, failed: 0, cancelled: 0, rejected: 0 };
  app.stats = stats;

  app.setErrorHandler((err, _req, reply) => {
    const e = asApiError(err);
    stats.rejected++;
    void reply.code(e.status).send(errorBody(e));
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send(errorBody(new ApiError(404, `no route ${req.method} ${req.url}`, 'invalid_request_error', null, 'not_found')));
  });

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(SERVE_PAGE));
  app.get('/health', async () => ({
    status: 'ok',
    model: backend.id,
    kind: backend.kind,
    accepts: { text: true, ...backend.accepts },
    speaks: backend.speaks === true,
    running: gate.running,
    max_batch: L.maxBatch,
    queued: gate.queued,
    ...stats,
    ...(backend.prefixCacheStats ? { prefix_cache: await backend.prefixCacheStats() } : {}),
  }));
  const card = { id: backend.id, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'emotorch' };
  app.get('/v1/models', async () => ({ object: 'list', data: [card] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req, reply) => {
    if (req.params.id !== backend.id)
      return reply
        .code(404)
        .send(
          errorBody(
            new ApiError(404, `model '${req.params.id}' does not exist; this server has '${backend.id}'`, 'invalid_request_error', 'model', 'model_not_found'),
          ),
        );
    return card;
  });

  app.post('/v1/chat/completions', async (req: FastifyRequest, reply: FastifyReply) => {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new et.EmotorchError('timeout', 'ERR_ABORTED')), L.timeoutMs);
    let gone = false;
    // the client went away before the answer ended: stop at the next token
    const leave = () => {
      if (!reply.raw.writableFinished) {
        gone = true;
        ac.abort(new et.EmotorchError('client disconnected', 'ERR_ABORTED'));
      }
    };
    reply.raw.on('close', leave);
    if (reply.raw.destroyed || req.raw.socket?.destroyed) leave(); // it closed before this handler began
    const body = req.body as Record<string, unknown> | null;
    const stream = !!body && typeof body === 'object' && body.stream === true;
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    let sent = ''; // text streamed so far
    let headers = false; // SSE headers written
    const sse = (o: unknown) => {
      if (!reply.raw.destroyed) reply.raw.write(`data: ${JSON.stringify(o)}\n\n`);
    };
    const chunk = (delta: Record<string, unknown>, finish: string | null) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: backend.id,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
    const turns: ChatTurn[] = [];
    try {
      if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'the body must be a JSON object', 'invalid_request_error');
      if (body.model !== undefined && body.model !== backend.id)
        throw new ApiError(
          404,
          `model '${String(body.model)}' does not exist; this server has '${backend.id}'`,
          'invalid_request_error',
          'model',
          'model_not_found',
        );
      const settings = readSettings(body, L, backend.speaks === true);
      await readMessages(body, backend, L, turns);
      const includeUsage = stream && !!(body.stream_options as OpenAiStreamOptions | undefined)?.include_usage;
      // streamed text: every new token re-decodes the answer so far and sends what was not sent
      // (held back while it ends in an incomplete UTF-8 sequence or in the beginning of a stop
      // sequence); decodes run one after another. With stop sequences the answer is decoded so
      // while it grows, streamed or not, and generation ends once one appears (the text is cut
      // before it, whichever tokens it spans).
      const ids: number[] = [];
      let decoding = Promise.resolve();
      let done = false;
      let promptTokens = 0;
      const stopped = new et.EmotorchError('a stop sequence was generated', 'ERR_ABORTED');
      const push = (text: string) => {
        const cut = stopCut(text, settings.stop);
        if (cut.hit && !ac.signal.aborted) ac.abort(stopped); // the answer is complete: generate no further
        if (!stream) return;
        const shown = text.slice(0, cut.end);
        if (!shown.startsWith(sent) || shown.length === sent.length || shown.endsWith('\uFFFD')) return;
        if (!headers) startStream();
        sse(chunk(piece(shown.slice(sent.length)), null));
        sent = shown;
      };
      // a spoken answer's text is its transcript (OpenAI's audio.transcript; content stays null)
      const audioId = `audio_${randomUUID()}`;
      const piece = (text: string) => (settings.audio ? { audio: { id: audioId, transcript: text } } : { content: text });
      const startStream = () => {
        headers = true;
        reply.hijack();
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
        sse(chunk({ role: 'assistant', content: '' }, null));
      };
      const onTokens = (t: number[]) => {
        if ((!stream && !settings.stop.length) || done) return;
        ids.push(t[0]);
        const snapshot = ids.slice();
        decoding = decoding
          .then(async () => {
            if (!done) push(await backend.decode(snapshot, true));
          })
          .catch(() => {});
      };
      let result: Awaited<ReturnType<ChatAdapter['answer']>>;
      try {
        result = await gate.run(
          () =>
            backend.answer(turns, {
              maxTokens: settings.maxTokens,
              limit: L.maxTokens,
              maxPromptTokens: L.maxPromptTokens,
              temperature: settings.temperature,
              topP: settings.topP,
              seed: settings.seed,
              ...(settings.audio ? { audio: settings.audio } : {}),
              batched: L.maxBatch > 1,
              onTokens,
              onPrompt: (n) => {
                promptTokens = n;
              },
              signal: ac.signal,
            }),
          ac.signal,
        );
      } catch (e) {
        if (gone || ac.signal.reason !== stopped) throw e;
        await decoding;
        result = { tokens: ids.slice(), promptTokens, finish: 'stop' }; // ended by its stop sequence: the tokens generated
      }
      await decoding;
      done = true;
      const whole = result.text ?? (await backend.decode(result.tokens));
      const cut = stopCut(whole, settings.stop);
      const text = cut.hit ? whole.slice(0, cut.end) : whole;
      const finish = cut.hit ? 'stop' : result.finish;
      const completion = result.completionTokens ?? result.tokens.length;
      const usage = { prompt_tokens: result.promptTokens, completion_tokens: completion, total_tokens: result.promptTokens + completion };
      let audio: OpenAiAudioOut | null = null;
      if (settings.audio) {
        const sp = result.speech;
        if (!sp) throw new ApiError(500, `model '${backend.id}' gave no speech for a request that asked for audio`, 'server_error');
        // 16-bit PCM WAV at the vocoder's rate (what every browser and player takes)
        const data = et.audio.encodeWav(sp.samples, sp.sampleRate).toString('base64');
        audio = { id: audioId, data, expires_at: created + 3600, transcript: text };
      }
      stats.served++;
      if (!stream) {
        const message = audio ? { role: 'assistant', content: null, audio, refusal: null } : { role: 'assistant', content: text, refusal: null };
        return reply.send({
          id,
          object: 'chat.completion',
          created,
          model: backend.id,
          choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
          usage,
        });
      }
      if (!headers) startStream();
      if (text.length > sent.length && text.startsWith(sent)) sse(chunk(piece(text.slice(sent.length)), null));
      if (audio) sse(chunk({ audio: { id: audio.id, data: audio.data, expires_at: audio.expires_at } }, null));
      sse(chunk({}, finish));
      if (includeUsage) sse({ id, object: 'chat.completion.chunk', created, model: backend.id, choices: [], usage });
      reply.raw.end('data: [DONE]\n\n');
      return reply;
    } catch (err) {
      // a client that went away is no failure, whatever its going broke off (the listener above,
      // or a connection already closed when the handler began)
      if (gone || reply.raw.destroyed || req.raw.socket?.destroyed) {
        stats.cancelled++;
        return reply;
      }
      const e = asApiError(err);
      if (e.status < 500) stats.rejected++;
      else stats.failed++;
      if (headers) {
        // mid-stream: an error event, as the OpenAI API sends one
        sse(errorBody(e));
        reply.raw.end('data: [DONE]\n\n');
        return reply;
      }
      return reply.code(e.status).send(errorBody(e));
    } finally {
      clearTimeout(timer);
      for (const t of turns) for (const img of t.images) img.dispose();
      if (!gate.running && !gate.queued) idle.soon();
    }
  });
  return app;
}

/** serve's flags that only a USDM model takes. */
const USDM_FLAGS = ['xlsr', 'kmeans', 'layer', 'voicebox', 'vocoder', 'reference_path', 'flow_steps', 'guidance'];

/** USDM's adapter for serve: the unit extractor, and the speaker when --voicebox and --vocoder are given. */
async function usdmBackend(v: Values, llm: et.nn.LlamaForCausalLM, tokenizer: et.data.Tokenizer, id: string, dtype: 'auto' | et.DType): Promise<ChatAdapter> {
  const decoder = decoderSettings(v);
  const model = new et.systems.usdm.Usdm(llm, { tokenIds: await tokenIds(tokenizer) });
  const units = await unitExtractor({ layer: '35', ...v }, undefined, 'to serve USDM', 'the Streamlit demo');
  const vb = str(v, 'voicebox'),
    voc = str(v, 'vocoder');
  if (!vb !== !voc) throw new UsageError('a spoken answer needs both --voicebox and --vocoder');
  if (!vb && ['reference_path', 'flow_steps', 'guidance'].some((k) => v[k] !== undefined))
    throw new UsageError('--reference-path, --flow-steps and --guidance set the spoken answer: give --voicebox and --vocoder');
  let speaker: et.systems.usdm.UsdmSpeaker | undefined;
  let reference: et.systems.usdm.UsdmReference | undefined;
  if (vb && voc) {
    speaker = await et.systems.usdm.UsdmSpeaker.fromPretrained(vb, voc, dtype === 'auto' ? {} : { dtype });
    const refPath = str(v, 'reference_path');
    if (refPath !== undefined) reference = await readReference(refPath, units);
  }
  return et.systems.usdm.usdmChat(
    model.eval() as et.systems.usdm.Usdm,
    {
      tokenizer,
      units,
      ...(speaker ? { speaker } : {}),
      ...(reference ? { reference } : {}),
      ...decoder,
    },
    id,
  );
}

export const SERVE: Command = {
  summary:
    'an OpenAI-compatible chat server (POST /v1/chat/completions, streaming; a page at /) for SALMONN, InternVL2, USDM (spoken answers) or a LLaMA-family LLM',
  flags: {
    'cfg-path': { kind: 'string', help: "SALMONN: the original decode_config.yaml (as 'salmonn infer' and web_demo.py)" },
    device: {
      kind: 'string',
      help: "where SALMONN runs: cpu, cuda or cuda:N (web_demo.py's --device; default CUDA when present, else the CPU); --model folders run on the CPU",
    },
    options: { kind: 'list', help: "SALMONN: key=value settings merged over the YAML, as web_demo.py's --options" },
    low_resource: {
      kind: 'bool',
      help: "SALMONN: the v1 web_demo.py's flag: the LLaMA with 8-bit weights, as the YAML's model.low_resource: True",
    },
    quantize: {
      kind: 'string',
      help: "emotorch's own: int8, nf4, q8_0 or q4_0: the LLM's decoder Linear layers (SALMONN's LLaMA, InternVL2's LLM, a --model LLM) quantized as they load; bytes a weight: int8 1, q8_0 1.06, q4_0 0.56, nf4 0.52 (bfloat16 2)",
    },
    model: {
      kind: 'string',
      help: 'an InternVL2 folder, a USDM folder (a tokenizer with <|correspond|> and the units; with --xlsr and --kmeans), or a LLaMA-family LLM folder with a chat template',
    },
    dtype: {
      kind: 'string',
      help: "the weights' dtype: auto (the checkpoint's own), float32, bfloat16 or float16; default auto for --model (as vLLM and transformers), float32 for SALMONN (its towers' own with auto)",
    },
    ckpt_dir: {
      kind: 'string',
      help: "a LoRA checkpoint that 'm2se sft' wrote: served on its base model (sft_args.json's, or --model), as swift deploy --ckpt_dir",
    },
    adapter: { kind: 'string', help: 'a peft adapter folder (adapter_config.json, adapter_model.safetensors) served on --model' },
    merge_lora: { kind: 'bool', help: "fold --ckpt_dir's or --adapter's LoRA into the weights (faster answers; the same ones)", default: 'false' },
    tokenizer: { kind: 'string', help: 'a tokenizer file or folder (default: the model folder)' },
    chat_template: { kind: 'string', help: "an LLM's Jinja chat template file (default: the folder's chat_template.jinja or tokenizer_config.json's)" },
    served_model_name: { kind: 'string', help: "the model's name in the API (default: the folder's or YAML's base name)" },
    xlsr: { kind: 'string', help: "USDM: the unit extractor's encoder (xlsr2_1b_v2.pt or an HF Wav2Vec2 folder), as 'usdm infer'" },
    kmeans: { kind: 'string', help: "USDM: the unit extractor's k-means centroids (kmeans_10k.npy)" },
    layer: { kind: 'number', help: 'USDM: the XLS-R hidden state the units are read at (seamless: 35)' },
    voicebox: { kind: 'string', help: 'USDM: the unit-to-mel decoder folder (naver-ai/xlsr-token-Voicebox): with --vocoder, answers speak when asked' },
    vocoder: { kind: 'string', help: 'USDM: the vocoder folder (nvidia/bigvgan_22khz_80band)' },
    reference_path: { kind: 'string', help: "USDM: the voice of the spoken answers (a wav, any rate): its units and log-mel in front, as inference.py's flag" },
    flow_steps: { kind: 'number', help: "USDM: the decoder's n_timesteps (inference.py 50; the Streamlit demo 15)" },
    guidance: { kind: 'number', help: "USDM: the decoder's classifier-free guidance (gradient_scale; default 1)" },
    host: { kind: 'string', help: 'address to listen on', default: '127.0.0.1' },
    port: { kind: 'number', help: 'port (0: any free one)', default: '8000' },
    max_batch: {
      kind: 'number',
      help: 'requests decoded together (continuous batching: greedy answers equal the ones decoded alone); 1: one at a time',
      default: String(SERVE_DEFAULTS.maxBatch),
    },
    max_queue: { kind: 'number', help: 'requests waiting beyond the --max-batch running ones; more get 429', default: String(SERVE_DEFAULTS.maxQueue) },
    max_body_mb: { kind: 'number', help: 'request body limit in MiB (413 above)', default: '32' },
    max_audio_seconds: { kind: 'number', help: 'audio per request', default: String(SERVE_DEFAULTS.maxAudioSeconds) },
    max_images: { kind: 'number', help: 'images per request', default: String(SERVE_DEFAULTS.maxImages) },
    max_image_pixels: { kind: 'number', help: 'pixels (width × height) of one image, checked before decoding', default: String(SERVE_DEFAULTS.maxImagePixels) },
    max_prompt_tokens: {
      kind: 'number',
      help: 'prompt tokens per request (text past 32 characters a token is refused before tokenizing)',
      default: String(SERVE_DEFAULTS.maxPromptTokens),
    },
    max_tokens: {
      kind: 'number',
      help: "the largest max_tokens, and the default (SALMONN's: its YAML's, at most this)",
      default: String(SERVE_DEFAULTS.maxTokens),
    },
    timeout_s: { kind: 'number', help: "a request's time limit from arrival to its last token", default: String(SERVE_DEFAULTS.timeoutMs / 1000) },
    prefix_cache_mb: {
      kind: 'number',
      help: "a --model LLM's or USDM's prompt prefix cache, MiB: a prompt that begins as a recent one did (a system prompt, the chat template) runs only the rest, the same tokens; 0: off",
      default: '256',
    },
  },
  async run(v, _pos, out) {
    const cfg = str(v, 'cfg-path'),
      given = str(v, 'model'),
      ckptDir = str(v, 'ckpt_dir'),
      adapterDir = str(v, 'adapter');
    if (!!cfg === !!(given || ckptDir))
      throw new UsageError('give exactly one of --cfg-path (SALMONN) and --model / --ckpt_dir (an InternVL2 or LLM folder, or a LoRA checkpoint on one)');
    if (cfg && adapterDir) throw new UsageError("--adapter goes with --model (SALMONN's checkpoint is its YAML's model.ckpt)");
    if (!cfg && v.options !== undefined) throw new UsageError('--options sets keys of a SALMONN YAML: use it with --cfg-path');
    if (!cfg && v.low_resource !== undefined) throw new UsageError("--low_resource is SALMONN's (its YAML's model.low_resource): use it with --cfg-path");
    const quantize = quantizeFlag(v);
    if (adapterDir && ckptDir) throw new UsageError('give one of --adapter and --ckpt_dir');
    if (adapterDir && !given) throw new UsageError('--adapter needs --model, the base it was trained on');
    const chosen = cfg ? null : modelAndAdapter(given, ckptDir ?? adapterDir, adapterDir ? '--adapter' : '--ckpt_dir');
    const givenDtype = str(v, 'dtype') as 'auto' | et.DType | undefined;
    if (givenDtype !== undefined && !['auto', 'float32', 'bfloat16', 'float16'].includes(givenDtype))
      throw new UsageError(`--dtype must be auto, float32, bfloat16 or float16, not '${givenDtype}'`);
    const modelDtype = givenDtype ?? 'auto';
    const dir = chosen?.dir;
    const positive = (k: string, int: boolean) => {
      const x = num(v, k)!;
      if (!(x > 0) || (int && !Number.isInteger(x))) throw new UsageError(`--${k.replace(/_/g, '-')} must be a positive ${int ? 'integer' : 'number'}`);
      return x;
    };
    const port = num(v, 'port')!;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError('--port must be an integer from 0 to 65535');
    const limits: ServeLimits = {
      maxBatch: positive('max_batch', true),
      maxQueue:
        num(v, 'max_queue')! >= 0 && Number.isInteger(num(v, 'max_queue'))
          ? num(v, 'max_queue')!
          : (() => {
              throw new UsageError('--max-queue must be an integer ≥ 0');
            })(),
      maxBodyBytes: Math.floor(positive('max_body_mb', false) * 1024 * 1024),
      maxAudioSeconds: positive('max_audio_seconds', false),
      maxImages: positive('max_images', true),
      maxImagePixels: positive('max_image_pixels', true),
      maxPromptTokens: positive('max_prompt_tokens', true),
      maxTokens: positive('max_tokens', true),
      timeoutMs: positive('timeout_s', false) * 1000,
    };
    const cacheMb = num(v, 'prefix_cache_mb')!;
    const memMb = Math.floor(os.totalmem() / 2 ** 20);
    if (!(cacheMb >= 0 && cacheMb <= memMb)) throw new UsageError(`--prefix-cache-mb must be a number from 0 to this machine's memory (${memMb} MiB)`);
    const name = (p: string) => str(v, 'served_model_name') ?? path.basename(path.resolve(ckptDir ?? p)).replace(/\.ya?ml$/, '');
    let backend: ChatAdapter;
    if (cfg) {
      const device = runDevice(str(v, 'device'));
      const { options, ignored } = readSalmonnYaml(cfg, withLowResource(v.options as string[] | undefined, v.low_resource));
      if (ignored.length) process.stderr.write(`emotorch: ${cfg}: not used here: ${ignored.join(', ')}\n`);
      noteLowResource(options, device, cfg);
      const model = await et.systems.salmonn.Salmonn.fromPretrained({
        ...options,
        ...(givenDtype ? { dtype: givenDtype } : {}),
        ...(quantize ? { quantize } : {}),
      });
      if (device !== 'cpu') await model.to({ device });
      backend = et.systems.salmonn.salmonnChat(model.eval(), name(cfg));
    } else {
      const {
        model,
        tokenizer,
        dir: local,
      } = await loadChatModel(dir!, str(v, 'tokenizer'), {
        adapter: chosen!.adapter,
        merge: v.merge_lora === true,
        dtype: modelDtype,
        ...(quantize ? { quantize } : {}),
      }); // local: a repo id's hub cache folder
      const usdm =
        !(model instanceof et.systems.m2se.InternVL) && tokenizer.tokenToId('<|correspond|>') !== undefined && tokenizer.tokenToId('<|unit0|>') !== undefined;
      if (!usdm && USDM_FLAGS.some((k) => v[k] !== undefined))
        throw new UsageError(
          `--${USDM_FLAGS.find((k) => v[k] !== undefined)!.replace(/_/g, '-')} is for a USDM model (a tokenizer with <|correspond|> and <|unit0|>)`,
        );
      if (model instanceof et.nn.LlamaForCausalLM) await model.setPrefixCache({ maxBytes: Math.floor(cacheMb * 2 ** 20) });
      if (usdm) backend = await usdmBackend(v, model as et.nn.LlamaForCausalLM, tokenizer, name(dir!), modelDtype);
      else if (model instanceof et.systems.m2se.InternVL)
        backend = et.systems.m2se.internvlChat(model.eval() as et.systems.m2se.InternVL, tokenizer, name(dir!));
      else {
        const template = readChatTemplate(local, str(v, 'chat_template'));
        if (!template)
          throw new et.EmotorchError(
            `'${dir}' has no chat template (chat_template.jinja or tokenizer_config.json's chat_template): pass --chat-template <file>`,
            'ERR_IO',
          );
        backend = et.systems.m2se.llmChat(model.eval() as et.nn.LlamaForCausalLM, tokenizer, template, name(dir!));
      }
    }
    const app = createServer(backend, limits);
    const address = await app.listen({ host: str(v, 'host')!, port });
    out(`emotorch serve: '${backend.id}' (${backend.kind}) listening on ${address}`);
    await new Promise<void>((resolve) => {
      const stop = () => {
        void app.close().then(() => resolve());
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
