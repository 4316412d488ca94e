/**
 * USDM (naver-ai/usdm): a Mistral/LLaMA-family decoder over speech units and text. The unit
 * vocabulary (`<|continue|>`, `<|correspond|>`, `<|unit0..9999|>`, `<pad>` = ids 32000–42002 on
 * Mistral), SFT labels by the original single-turn masking, and the original three greedy stages:
 * user units → user transcript → agent text → agent units. Unit-to-speech synthesis (Token-Voicebox
 * + BigVGAN) is not part of emotorch. Facts: SYSTEMS.md §6.
 */
import { Module } from '../nn/module';
import { LlamaForCausalLM } from '../nn/llama';
import type { LlamaOutputs } from '../nn/llama';
import type { PretrainedOptions } from '../nn/pretrained';
import { applyLora } from '../nn/lora';
import { Tensor, randn, tensor } from '../tensor';
import { IGNORE_INDEX, USDM_SYSTEM, unitString, usdmText } from '../data/usdm';
import type { UsdmExample } from '../data/usdm';
import { UnitExtractor } from '../audio/units';
import { readWav } from '../audio/wav';
import { invalid, checkInt, checkOptionNames } from '../errors';

/** The token ids USDM relies on (defaults: Mistral-7B-v0.1 extended as `src/train_pt.py`). */
export interface UsdmTokenIds {
  /** "\n" (13): ends stage 1. */
  newline: number;
  /** "▁" (28705): ends stage 3 and stays allowed in it. */
  space: number;
  /** `<|continue|>` (32000). */
  continue: number;
  /** `<|correspond|>` (32001): ends stage 2. */
  correspond: number;
  /** `<|unit0|>` (32002). */
  unit0: number;
  /** Number of unit tokens (10000). */
  numUnits: number;
  /** `<pad>` (42002). */
  pad: number;
  /** BOS (1), put first by the tokenizer call of the original. */
  bos: number;
}

export const USDM_TOKEN_IDS: UsdmTokenIds = { newline: 13, space: 28705, continue: 32000, correspond: 32001, unit0: 32002, numUnits: 10000, pad: 42002, bos: 1 };

/** What Usdm needs from a tokenizer: text → ids (no BOS added), ids → text with special tokens kept. */
export interface UsdmTextCodec {
  encode(text: string): number[] | Promise<number[]>;
  decode(ids: number[]): string | Promise<string>;
}

function checkIds(ids: unknown, V: number): UsdmTokenIds {
  const o = { ...USDM_TOKEN_IDS, ...(ids as object ?? {}) } as UsdmTokenIds;
  for (const k of Object.keys(USDM_TOKEN_IDS) as (keyof UsdmTokenIds)[]) checkInt(o[k], `tokenIds.${k}`, 0);
  if (o.unit0 + o.numUnits > V) invalid(`unit ids inside the vocabulary (${V})`, 'tokenIds.unit0 + numUnits', o.unit0 + o.numUnits);
  for (const k of ['newline', 'space', 'continue', 'correspond', 'pad', 'bos'] as const) if (o[k] >= V) invalid(`an id below ${V}`, `tokenIds.${k}`, o[k]);
  return o;
}

/**
 * The original single-turn SFT labels (`dailytalk_single_turn.py` L58-96) over a whole-text
 * tokenization: trained are the user transcript after the first `<|correspond|>` up to and
 * including the newline after it (nl[3]), and everything after nl[4] up to (not including) nl[5]
 * (agent text, `<|correspond|>`, agent units and, with Mistral, the "▁" before the final "\n").
 * @param ids the example's ids (BOS first)
 * @returns labels: the id where trained, −100 elsewhere
 * @throws EmotorchError ERR_INVALID_ARG when the ids have fewer than 6 newlines or no `<|correspond|>`
 * @example
 * const labels = et.systems.usdmSftLabels(ids, { newline: 13, correspond: 32001 });
 */
export function usdmSftLabels(ids: readonly number[], tokenIds: { newline: number; correspond: number } = USDM_TOKEN_IDS): number[] {
  if (!Array.isArray(ids) || !ids.every((x) => Number.isSafeInteger(x))) invalid('an array of token ids', 'ids', ids);
  const nl = ids.flatMap((t, i) => (t === tokenIds.newline ? [i] : []));
  const corr = ids.flatMap((t, i) => (t === tokenIds.correspond ? [i] : []));
  if (nl.length < 6 || corr.length < 1) invalid('the ids of a USDM single-turn example (≥ 6 newlines, a <|correspond|>)', 'ids', `${nl.length} newlines, ${corr.length} <|correspond|>`);
  const trained = (i: number) => (i > nl[4] && i < nl[5]) || (i > corr[0] && i <= nl[3]);
  return ids.map((t, i) => (trained(i) ? t : IGNORE_INDEX));
}

/** One dialogue pair as the original's preprocessing starts from it: both sides' speech and text. */
export interface UsdmAudioPair {
  /** The user's speech: 16 kHz mono samples, or a WAV file path (read and resampled to 16 kHz). */
  userAudio: Float32Array | string;
  /** The user's transcript. */
  userText: string;
  /** The agent's response text. */
  agentText: string;
  /** The agent's speech, as `userAudio`. */
  agentAudio: Float32Array | string;
}

/** Options of {@link usdmSftExamples}. */
export interface UsdmSftExamplesOptions {
  /** Speech → units (USDM: XLS-R 1B layer 35, `kmeans_10k.npy`); its units must fit `tokenIds.numUnits`. */
  unitExtractor: UnitExtractor;
  /** The decoder's tokenizer: `encode(text)` without BOS, special tokens and `<|unitN|>` mapped to their ids. */
  codec: Pick<UsdmTextCodec, 'encode'>;
  /** Token ids (defaults: Mistral's, {@link USDM_TOKEN_IDS}): `bos`, `newline`, `correspond`, `numUnits` are used. */
  tokenIds?: Partial<UsdmTokenIds>;
  /** Clips per unit-extraction batch (padded, with a mask). Default 8. */
  batchSize?: number;
}

/**
 * SFT examples from (user audio, transcript, response, response audio), as
 * `preprocess/fine-tuning/dailytalk_single_turn.py` builds them: each side's speech becomes units
 * through the unit extractor (seamless's `predict(wav, 35 - 1)`, no run-length dedup), the texts are
 * lower-cased, the single-turn template is tokenized whole with BOS first, and the labels are the
 * original masking ({@link usdmSftLabels}). `formatUsdmLine` of each gives the `ids|labels` line.
 * @param pairs `{ userAudio, userText, agentText, agentAudio }` per example
 * @param opts `unitExtractor`, `codec` (encode without BOS), `tokenIds`, `batchSize`
 * @returns per pair `{ ids, labels, text, userUnits, agentUnits }`, in order
 * @throws EmotorchError ERR_INVALID_ARG naming a bad pair field or option; ERR_IO / ERR_FORMAT for a WAV file
 * @example
 * const ux = new et.audio.UnitExtractor({ encoder: xlsr, layer: 35, centroids: 'kmeans_10k.npy' });
 * const examples = await et.systems.usdmSftExamples(pairs, { unitExtractor: ux, codec });
 * fs.writeFileSync('train.txt', examples.map(et.data.usdm.formatUsdmLine).join('\n'));
 */
export async function usdmSftExamples(pairs: readonly UsdmAudioPair[], opts: UsdmSftExamplesOptions): Promise<Array<UsdmExample & { text: string; userUnits: number[]; agentUnits: number[] }>> {
  if (!Array.isArray(pairs) || pairs.length === 0) invalid('a non-empty array of { userAudio, userText, agentText, agentAudio }', 'pairs', pairs);
  if (!opts || typeof opts !== 'object') invalid('an options object ({ unitExtractor, codec })', 'options', opts);
  checkOptionNames(opts, ['unitExtractor', 'codec', 'tokenIds', 'batchSize'], 'usdmSftExamples');
  if (!(opts.unitExtractor instanceof UnitExtractor)) invalid('an et.audio.UnitExtractor', 'unitExtractor', opts.unitExtractor);
  if (!opts.codec || typeof opts.codec.encode !== 'function') invalid('an object with encode(text)', 'codec', opts.codec);
  const ids = { ...USDM_TOKEN_IDS, ...(opts.tokenIds ?? {}) } as UsdmTokenIds;
  for (const k of ['bos', 'newline', 'correspond', 'numUnits'] as const) checkInt(ids[k], `tokenIds.${k}`, k === 'numUnits' ? 1 : 0);
  if (opts.unitExtractor.numUnits > ids.numUnits) invalid(`at most tokenIds.numUnits (${ids.numUnits}) centroids`, 'unitExtractor units', opts.unitExtractor.numUnits);
  const batchSize = checkInt(opts.batchSize ?? 8, 'batchSize', 1);
  pairs.forEach((p, i) => {
    if (!p || typeof p !== 'object') invalid('{ userAudio, userText, agentText, agentAudio }', `pairs[${i}]`, p);
    for (const k of ['userText', 'agentText'] as const) if (typeof p[k] !== 'string') invalid('a string', `pairs[${i}].${k}`, p[k]);
    for (const k of ['userAudio', 'agentAudio'] as const) {
      if (!(p[k] instanceof Float32Array) && typeof p[k] !== 'string') invalid('16 kHz samples (Float32Array) or a WAV path', `pairs[${i}].${k}`, p[k]);
      if (p[k] instanceof Float32Array && (p[k] as Float32Array).length === 0) invalid('a non-empty clip', `pairs[${i}].${k}`, 'no samples');
    }
  });
  const clips = pairs.flatMap((p) => [p.userAudio, p.agentAudio]);
  const units: number[][] = [];
  for (let s = 0; s < clips.length; s += batchSize) {
    const part = await Promise.all(clips.slice(s, s + batchSize).map(async (c) => (typeof c === 'string' ? (await readWav(c, { sampleRate: 16000 })).samples : c)));
    const T = Math.max(...part.map((c) => c.length));
    const wave = new Float32Array(part.length * T), mask = new Float32Array(part.length * T);
    part.forEach((c, b) => { wave.set(c, b * T); mask.fill(1, b * T, b * T + c.length); });
    const inputValues = tensor(wave, { shape: [part.length, T] });
    const attentionMask = tensor(mask, { shape: [part.length, T] });
    try {
      units.push(...(await opts.unitExtractor.predict({ inputValues, attentionMask, dedup: false })));
    } finally {
      inputValues.dispose(); attentionMask.dispose();
    }
  }
  const out = [];
  for (let i = 0; i < pairs.length; i++) {
    const turn = { userUnits: units[2 * i], userText: pairs[i].userText.toLowerCase(), agentText: pairs[i].agentText.toLowerCase(), agentUnits: units[2 * i + 1] };
    const text = usdmText(turn, { numUnits: ids.numUnits });
    const enc = await opts.codec.encode(text);
    if (!Array.isArray(enc) || !enc.every((x) => Number.isSafeInteger(x))) invalid('an array of integer ids from codec.encode', 'codec.encode result', enc);
    const exIds = [ids.bos, ...enc];
    out.push({ ids: exIds, labels: usdmSftLabels(exIds, ids), text, userUnits: turn.userUnits, agentUnits: turn.agentUnits });
  }
  return out;
}

/** Options of {@link Usdm.fromPretrained}. */
export interface UsdmOptions extends PretrainedOptions {
  /** Add the unit vocabulary when the checkpoint lacks it (a base Mistral): 2 + numUnits + 1 rows, N(0, initializer_range). */
  addUnitVocabulary?: boolean;
  /** LoRA as the original's option (r 8, α 16, dropout 0.1 on q/k/v/o) or false for a full fine-tune (default). */
  lora?: boolean | { r: number; alpha: number; dropout?: number; targetModules?: string[] };
  /** Token ids (defaults: Mistral's, {@link USDM_TOKEN_IDS}). */
  tokenIds?: Partial<UsdmTokenIds>;
}

/** The original's SFT hyperparameters (`train_sft.py`), as Trainer arguments. */
export const USDM_SFT_ARGS = {
  learning_rate: 2e-5, lr_scheduler_type: 'cosine', warmup_ratio: 0.03, adam_beta1: 0.9, adam_beta2: 0.95, weight_decay: 0.01,
  per_device_train_batch_size: 2, gradient_accumulation_steps: 4, bf16: true, max_input_length: 1024,
} as const;

/**
 * USDM: the decoder with the unit vocabulary, SFT forward (`{ inputIds, attentionMask, labels }` →
 * `{ loss, logits }`), and the three-stage inference.
 * @example
 * const usdm = await et.systems.Usdm.fromPretrained('USDM-DailyTalk/');
 * const { userText, agentText, agentUnits } = await usdm.infer(units, tokenizerCodec);
 */
export class Usdm extends Module {
  readonly llm: LlamaForCausalLM;
  readonly tokenIds: UsdmTokenIds;
  readonly loraLayers: string[];

  constructor(llm: LlamaForCausalLM, opts: { tokenIds?: Partial<UsdmTokenIds>; lora?: UsdmOptions['lora'] } = {}) {
    super();
    if (!(llm instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM', 'llm', llm);
    checkOptionNames(opts, ['tokenIds', 'lora'], 'Usdm');
    this.tokenIds = checkIds(opts.tokenIds, llm.config.vocab_size);
    this.llm = this.registerModule('model', llm);
    const l = opts.lora === true ? { r: 8, alpha: 16, dropout: 0.1 } : opts.lora || null;
    if (l !== null && typeof l !== 'object') invalid('a boolean or { r, alpha, dropout?, targetModules? }', 'lora', opts.lora);
    this.loraLayers = l ? applyLora(llm, { r: l.r, alpha: l.alpha, dropout: l.dropout ?? 0.1, targetModules: (l as { targetModules?: string[] }).targetModules ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj'] }) : [];
  }

  /**
   * Loads a local Mistral/LLaMA folder (USDM checkpoints already carry the 42003-token vocabulary).
   * @throws EmotorchError as LlamaForCausalLM.fromPretrained; ERR_INVALID_ARG when the vocabulary lacks the unit ids
   */
  static async fromPretrained(dir: string, opts: UsdmOptions = {}): Promise<Usdm> {
    checkOptionNames(opts, ['addUnitVocabulary', 'lora', 'tokenIds', 'config', 'device', 'dtype', 'strict'], 'Usdm.fromPretrained');
    let llm = await LlamaForCausalLM.fromPretrained(dir, { strict: opts.strict, config: opts.config });
    if (opts.addUnitVocabulary) llm = await addUnitVocabulary(llm, opts.tokenIds?.numUnits ?? USDM_TOKEN_IDS.numUnits);
    if (opts.device || opts.dtype) await llm.to({ device: opts.device, dtype: opts.dtype });
    return new Usdm(llm, { tokenIds: opts.tokenIds, lora: opts.lora });
  }

  /** SFT forward: `{ inputIds, attentionMask?, labels? }` → `{ logits, loss? }` (HF's shifted causal-LM loss). */
  async forward(inputs: { inputIds: Tensor; attentionMask?: Tensor; labels?: Tensor; numItemsInBatch?: number }): Promise<LlamaOutputs> {
    return this.llm.forward(inputs);
  }

  /**
   * Pads `ids|labels` examples into a batch as `train_sft.py`: ids with `<pad>`, labels with −100,
   * attentionMask = ids ≠ pad.
   */
  collate(examples: Array<{ ids: number[]; labels: number[] }>): { inputIds: Tensor; attentionMask: Tensor; labels: Tensor } {
    if (!Array.isArray(examples) || examples.length === 0) invalid('a non-empty array of { ids, labels }', 'examples', examples);
    const T = Math.max(...examples.map((e) => e.ids.length));
    const pad = this.tokenIds.pad;
    const ids = examples.map((e) => [...e.ids, ...Array(T - e.ids.length).fill(pad)]);
    const labels = examples.map((e) => [...e.labels, ...Array(T - e.labels.length).fill(IGNORE_INDEX)]);
    return {
      inputIds: tensor(ids, { dtype: 'int64' }), labels: tensor(labels, { dtype: 'int64' }),
      attentionMask: tensor(ids.map((r) => r.map((t) => (t === pad ? 0 : 1))), { dtype: 'int64' }),
    };
  }

  /**
   * The three greedy stages of `src/inference.py`: units → user transcript (stops at "\n"; unit and
   * special ids banned) → agent text (stops at `<|correspond|>`; unit ids banned) → agent units
   * (stops at "▁"; every id below the units banned except "▁").
   * @param userUnits the user's speech units (0 ≤ u < numUnits)
   * @param codec encode (no BOS) / decode (special tokens kept) of the model's tokenizer
   * @param opts maxNewTokens per stage (default 512)
   * @throws EmotorchError ERR_INVALID_ARG for bad units, codec or option value, or an unknown option name
   */
  async infer(userUnits: number[], codec: UsdmTextCodec, opts: { maxNewTokens?: number } = {}): Promise<{ userText: string; agentText: string; agentUnits: number[] }> {
    const I = this.tokenIds;
    if (!Array.isArray(userUnits) || userUnits.length === 0 || !userUnits.every((u) => Number.isSafeInteger(u) && u >= 0 && u < I.numUnits)) invalid(`a non-empty array of units in [0, ${I.numUnits})`, 'userUnits', userUnits);
    if (!codec || typeof codec.encode !== 'function' || typeof codec.decode !== 'function') invalid('an object with encode(text) and decode(ids)', 'codec', codec);
    checkOptionNames(opts, ['maxNewTokens'], 'Usdm.infer');
    const maxNew = checkInt(opts.maxNewTokens ?? 512, 'maxNewTokens', 1);
    const V = this.llm.config.vocab_size;
    const stage = async (prompt: string, banned: Array<[number, number]>, eos: number): Promise<string> => {
      const ids = [I.bos, ...(await codec.encode(prompt))];
      const inputIds = tensor([ids], { dtype: 'int64' });
      const { newTokens } = await this.llm.generate({ inputIds }, { maxNewTokens: maxNew, eosTokenId: eos, padTokenId: 0, bannedTokenRanges: banned.filter(([a, b]) => b > a) });
      const out = [...ids, ...(newTokens.toArray() as number[][])[0]];
      inputIds.dispose(); newTokens.dispose();
      return codec.decode(out);
    };
    const template = `${USDM_SYSTEM}\n### User\n${unitString(userUnits)}<|correspond|>`;
    const first = Math.min(I.continue, I.correspond, I.unit0, I.pad);
    const s1 = await stage(template, [[first, V]], I.newline);
    const userText = stripAll(s1.split('<|correspond|>').pop()!, ['\n', ' ']);
    const p2 = `${template}${userText}\n### Agent\n`;
    const s2 = await stage(p2, [[I.unit0, V]], I.correspond);
    const agentText = stripAll(s2.split('\n').pop()!, ['\n', ' ', '<|correspond|>']);
    const s3 = await stage(`${p2}${agentText}<|correspond|>`, [[0, I.space], [I.space + 1, I.unit0]], I.space);
    const agentUnits = [...s3.split('<|correspond|>').pop()!.matchAll(/<\|unit(\d+)\|>/g)].map((m) => Number(m[1]));
    return { userText, agentText, agentUnits };
  }
}

/** The original's strip: removes any of `pieces` from both ends until none is there. */
function stripAll(s: string, pieces: string[]): string {
  for (let changed = true; changed;) {
    changed = false;
    for (const p of pieces) {
      if (s.startsWith(p)) { s = s.slice(p.length); changed = true; }
      if (s.endsWith(p)) { s = s.slice(0, -p.length); changed = true; }
    }
  }
  return s;
}

/**
 * A copy of `llm` with 2 + numUnits + 1 new token rows (`<|continue|>`, `<|correspond|>`, units,
 * `<pad>`), the new embedding and head rows drawn from N(0, initializer_range) as
 * `resize_token_embeddings` + `_init_weights` do. The given model is disposed.
 */
export async function addUnitVocabulary(llm: LlamaForCausalLM, numUnits = 10000): Promise<LlamaForCausalLM> {
  checkInt(numUnits, 'numUnits', 1);
  const { vocab_size: v, hidden_size: h, initializer_range: std, tie_word_embeddings: tied } = llm.config;
  const V = v + numUnits + 3;
  const embed = randn([V - v, h]).mul(std);                      // drawn in this order: embed, then head
  const lmHead = tied ? undefined : randn([V - v, h]).mul(std);
  const bigger = await llm.resizeTokenEmbeddings(V, { rows: { embed, lmHead } });
  llm.dispose();
  bigger.eval();
  return bigger;
}

