/**
 * A chat request as a system's chat adapter answers it (`emotorch serve` speaks HTTP and hands each
 * request to one adapter): the turns with their decoded media, the generation settings, and the
 * adapter interface; what every adapter shares (an answer's text from its ids, a request's
 * sampling settings, the prompt bound).
 */
import { EmotorchError } from '../errors';
import type { Tensor } from '../tensor';
import type { Tokenizer } from './tokenizer';
import type { ResampleOptions } from '../audio/resample';
import type { PrefixCacheStats } from '../types/prefix-cache';

/** One message of a request, its parts decoded. */
export interface ChatTurn {
  /** Who speaks ('developer' messages are 'system'). */
  role: 'system' | 'user' | 'assistant';
  /** Its text parts, joined by newlines. */
  text: string;
  /** 16 kHz mono waveforms of its `input_audio` parts. */
  audio: Float32Array[];
  /** uint8 RGB [3, H, W] images of its `image_url` parts. */
  images: Tensor[];
}

/** What an adapter's generation gets from a request. */
export interface ChatGeneration {
  /** The request's max_tokens; undefined: the model's own default, at most `limit`. */
  maxTokens?: number;
  /** The server's largest max_tokens. */
  limit: number;
  /** The server's largest prompt, in tokens. */
  maxPromptTokens: number;
  /** 0: greedy; above: sampling at this temperature; undefined: the model's own setting. */
  temperature?: number;
  /** Nucleus sampling's probability mass; undefined: the model's own setting. */
  topP?: number;
  /** The request's seed: sampling from a generator of its own. */
  seed?: number;
  /** Decode in the server's running batch (with other requests' rows) rather than alone. */
  batched: boolean;
  /** The request asked for a spoken answer (`modalities` with 'audio'; only of an adapter whose `speaks` is true). */
  audio?: { voice: string; format: 'wav' };
  /** Called with each new token id as it is generated (for streaming and stop sequences). */
  onTokens: (ids: number[]) => void;
  /** Called with the prompt's length in tokens once it is known (the usage of an answer ended by a stop sequence). */
  onPrompt?: (promptTokens: number) => void;
  /** Aborted when the request is to stop (its time is up, its client went away, a stop sequence came): generation ends at the next token. */
  signal: AbortSignal;
}

/** An adapter's answer to one request. */
export interface ChatAnswer {
  /** The answer's token ids (cut before the first stop id). */
  tokens: number[];
  /** The prompt's length in tokens. */
  promptTokens: number;
  /** 'length' when generation ended at max_tokens. */
  finish: 'stop' | 'length';
  /** The answer's text, where it is not `tokens` decoded. */
  text?: string;
  /** Tokens generated in all, where more than `tokens` (usage's completion_tokens). */
  completionTokens?: number;
  /** The spoken answer: mono samples and their rate. */
  speech?: { samples: Float32Array; sampleRate: number };
}

/**
 * A loaded model as a chat server drives it: what each system brings (`et.systems.salmonn.salmonnChat`,
 * `et.systems.m2se.internvlChat`, `et.systems.m2se.llmChat`, `et.systems.usdm.usdmChat`) and
 * `emotorch serve` answers requests with.
 */
export interface ChatAdapter {
  /** The name `/v1/models` lists and requests give as `model`. */
  id: string;
  /** What the model is, for /health and the page ('salmonn', 'internvl', 'llm', 'usdm'). */
  kind: string;
  /** Content parts it takes (`text: false`: a model that hears speech only, as USDM). */
  accepts: { audio: boolean; image: boolean; text?: boolean };
  /** Whether it answers with speech when asked (`modalities: ['text', 'audio']`). Default false. */
  speaks?: boolean;
  /** How the server reads a request's audio for it (16 kHz always): its channel choice and resampler (default: channel 0, the default resampler). */
  audioRead?: { channel?: 'mix' | number; resample?: ResampleOptions };
  /**
   * Answers a conversation: the new token ids (cut before the first stop id) and the prompt length;
   * `text` where the answer's text is not those ids decoded, `completionTokens` where more tokens
   * were generated than `tokens` holds, `speech` when `g.audio` asked for it.
   * A request it cannot answer throws {@link ChatRequestError}.
   */
  answer(turns: ChatTurn[], g: ChatGeneration): Promise<ChatAnswer>;
  /**
   * Text of answer ids (special tokens left out). `partial`: ids of an answer still growing, so a
   * trailing run of byte-fallback tokens (`<0xE2>`, …) is left out: the bytes decode as one group,
   * and a group that later turns out invalid becomes U+FFFD as a whole, which would change text
   * already streamed.
   */
  decode(ids: number[], partial?: boolean): Promise<string>;
  /** What its LLM's prompt prefix cache holds and has done (`LlamaForCausalLM.prefixCacheStats`), where it has one. */
  prefixCacheStats?(): Promise<PrefixCacheStats>;
}

/**
 * A request an adapter refuses as the request's own fault (a server answers it 400 with the
 * OpenAI error's `param` and `code`).
 */
export class ChatRequestError extends EmotorchError {
  /**
   * @param message what is wrong with the request
   * @param param the request's field at fault (OpenAI's `param`)
   * @param reason OpenAI's error `code` (e.g. 'context_length_exceeded'), or null
   */
  /** The request's field at fault (OpenAI's `param`). */
  readonly param: string;
  /** OpenAI's error `code`, or null. */
  readonly reason: string | null;
  constructor(message: string, param: string, reason: string | null = null) {
    super(message, 'ERR_INVALID_ARG');
    this.param = param;
    this.reason = reason;
  }
}

/** `ids` up to (not including) the first of `stops`. */
export const cutAtStop = (ids: number[], stops: number[]): number[] => {
  const i = ids.findIndex((t) => stops.includes(t));
  return i < 0 ? ids : ids.slice(0, i);
};

/** `decode` for an adapter: ids cut at the first stop id, a growing answer's trailing byte tokens left out. */
export function chatDecoder(tok: Tokenizer, stops: number[]): ChatAdapter['decode'] {
  const isByte = (id: number) => /^<0x[0-9A-Fa-f]{2}>$/.test(tok.idToToken(id) ?? '');
  return (ids, partial) => {
    let r = cutAtStop(ids, stops);
    if (partial) {
      let n = r.length;
      while (n > 0 && isByte(r[n - 1])) n--;
      r = r.slice(0, n);
    }
    return tok.decode(r, { skipSpecialTokens: true });
  };
}

/** Refuses a prompt of more tokens than the server takes (--max-prompt-tokens). */
export function checkChatPrompt(n: number, g: ChatGeneration): void {
  if (n > g.maxPromptTokens)
    throw new ChatRequestError(`the prompt has ${n} tokens, more than ${g.maxPromptTokens} (--max-prompt-tokens)`, 'messages', 'context_length_exceeded');
}

/** Sampling options of a request in the library's names. */
export function chatSampling(g: ChatGeneration): { doSample?: boolean; temperature?: number; topP?: number; seed?: number } {
  const seed = g.seed === undefined ? {} : { seed: g.seed };
  if (g.temperature === undefined) return g.topP === undefined ? seed : { topP: g.topP, ...seed };
  return g.temperature === 0 ? { doSample: false } : { doSample: true, temperature: g.temperature, ...(g.topP === undefined ? {} : { topP: g.topP }), ...seed };
}
