/**
 * USDM's data: the token ids of the unit vocabulary, SFT examples from speech and text by the
 * original single-turn preprocessing and masking, and their batches.
 */
import { Tensor, tensor } from '../../tensor';
import { IGNORE_INDEX, usdmText } from '../../data/usdm';
import type { UsdmExample } from '../../data/usdm';
import { UnitExtractor } from '../../audio/units';
import { readWav } from '../../audio/wav';
import type { WavOptions } from '../../audio/wav';
import type { ResampleOptions } from '../../audio/resample';
import { invalid, checkInt, checkOptionNames } from '../../errors';

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

/** USDM's token ids in its extended Mistral vocabulary (newline, space, `<|correspond|>`, units, pad, BOS). */
export const USDM_TOKEN_IDS: UsdmTokenIds = {
  newline: 13,
  space: 28705,
  continue: 32000,
  correspond: 32001,
  unit0: 32002,
  numUnits: 10000,
  pad: 42002,
  bos: 1,
};

/** What Usdm needs from a tokenizer: text → ids (no BOS added), ids → text with special tokens kept. */
export interface UsdmTextCodec {
  /** Text → ids, without BOS. */
  encode(text: string): number[] | Promise<number[]>;
  /** Ids → text, special tokens kept. */
  decode(ids: number[]): string | Promise<string>;
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
 * const labels = et.systems.usdm.usdmSftLabels(ids, { newline: 13, correspond: 32001 });
 */
export function usdmSftLabels(ids: readonly number[], tokenIds: { newline: number; correspond: number } = USDM_TOKEN_IDS): number[] {
  if (!Array.isArray(ids) || !ids.every((x) => Number.isSafeInteger(x))) invalid('an array of token ids', 'ids', ids);
  const nl = ids.flatMap((t, i) => (t === tokenIds.newline ? [i] : []));
  const corr = ids.flatMap((t, i) => (t === tokenIds.correspond ? [i] : []));
  if (nl.length < 6 || corr.length < 1)
    invalid('the ids of a USDM single-turn example (≥ 6 newlines, a <|correspond|>)', 'ids', `${nl.length} newlines, ${corr.length} <|correspond|>`);
  const trained = (i: number) => (i > nl[4] && i < nl[5]) || (i > corr[0] && i <= nl[3]);
  return ids.map((t, i) => (trained(i) ? t : IGNORE_INDEX));
}

/**
 * How USDM's original reads speech: `librosa.load(path, sr=16000)` (dailytalk_single_turn.py,
 * inference.py), i.e. mono by averaging the channels and libsoxr's HQ resampler (librosa ≥ 0.10's
 * default `res_type`), cut or zero-padded to ceil(n · 16000 / rate) samples. Units made from audio
 * read any other way differ from the ones USDM was trained on.
 */
export const USDM_AUDIO: Readonly<{ sampleRate: 16000; resample: Readonly<ResampleOptions> }> = Object.freeze({
  sampleRate: 16000,
  resample: Object.freeze({ method: 'soxr_hq' as const }),
});

/** One dialogue pair as the original's preprocessing starts from it: both sides' speech and text. */
export interface UsdmAudioPair {
  /** The user's speech: 16 kHz mono samples, or a WAV file path (read as {@link USDM_AUDIO}: librosa's way, soxr HQ to 16 kHz). */
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
  /** How WAV paths are resampled to 16 kHz (default {@link USDM_AUDIO}'s `{ method: 'soxr_hq' }`, the original's librosa.load). */
  resample?: ResampleOptions;
}

/**
 * SFT examples from (user audio, transcript, response, response audio), as
 * `preprocess/fine-tuning/dailytalk_single_turn.py` builds them: each side's speech is read as
 * `librosa.load(path, sr=16000)` reads it ({@link USDM_AUDIO}) and becomes units through the unit
 * extractor (seamless's `predict(wav, 35 - 1)`, its odd-length padding, no run-length dedup), the texts are
 * lower-cased, the single-turn template is tokenized whole with BOS first, and the labels are the
 * original masking ({@link usdmSftLabels}). `formatUsdmLine` of each gives the `ids|labels` line.
 * @param pairs `{ userAudio, userText, agentText, agentAudio }` per example
 * @param opts `unitExtractor`, `codec` (encode without BOS), `tokenIds`, `batchSize`
 * @returns per pair `{ ids, labels, text, userUnits, agentUnits }`, in order
 * @throws EmotorchError ERR_INVALID_ARG naming a bad pair field or option; ERR_IO / ERR_FORMAT for a WAV file
 * @example
 * const ux = new et.audio.UnitExtractor({ encoder: xlsr, layer: 35, centroids: 'kmeans_10k.npy' });
 * const examples = await et.systems.usdm.usdmSftExamples(pairs, { unitExtractor: ux, codec });
 * fs.writeFileSync('train.txt', examples.map(et.data.usdm.formatUsdmLine).join('\n'));
 */
export async function usdmSftExamples(
  pairs: readonly UsdmAudioPair[],
  opts: UsdmSftExamplesOptions,
): Promise<Array<UsdmExample & { text: string; userUnits: number[]; agentUnits: number[] }>> {
  if (!Array.isArray(pairs) || pairs.length === 0) invalid('a non-empty array of { userAudio, userText, agentText, agentAudio }', 'pairs', pairs);
  if (!opts || typeof opts !== 'object') invalid('an options object ({ unitExtractor, codec })', 'options', opts);
  checkOptionNames(opts, ['unitExtractor', 'codec', 'tokenIds', 'batchSize', 'resample'], 'usdmSftExamples');
  if (!(opts.unitExtractor instanceof UnitExtractor)) invalid('an et.audio.UnitExtractor', 'unitExtractor', opts.unitExtractor);
  if (!opts.codec || typeof opts.codec.encode !== 'function') invalid('an object with encode(text)', 'codec', opts.codec);
  const ids = { ...USDM_TOKEN_IDS, ...(opts.tokenIds ?? {}) } as UsdmTokenIds;
  for (const k of ['bos', 'newline', 'correspond', 'numUnits'] as const) checkInt(ids[k], `tokenIds.${k}`, k === 'numUnits' ? 1 : 0);
  if (opts.unitExtractor.numUnits > ids.numUnits)
    invalid(`at most tokenIds.numUnits (${ids.numUnits}) centroids`, 'unitExtractor units', opts.unitExtractor.numUnits);
  const batchSize = checkInt(opts.batchSize ?? 8, 'batchSize', 1);
  pairs.forEach((p, i) => {
    if (!p || typeof p !== 'object') invalid('{ userAudio, userText, agentText, agentAudio }', `pairs[${i}]`, p);
    for (const k of ['userText', 'agentText'] as const) if (typeof p[k] !== 'string') invalid('a string', `pairs[${i}].${k}`, p[k]);
    for (const k of ['userAudio', 'agentAudio'] as const) {
      if (!(p[k] instanceof Float32Array) && typeof p[k] !== 'string') invalid('16 kHz samples (Float32Array) or a WAV path', `pairs[${i}].${k}`, p[k]);
      if (p[k] instanceof Float32Array && (p[k] as Float32Array).length === 0) invalid('a non-empty clip', `pairs[${i}].${k}`, 'no samples');
    }
  });
  const audio: WavOptions = { sampleRate: USDM_AUDIO.sampleRate, resample: opts.resample ?? USDM_AUDIO.resample };
  const clips = pairs.flatMap((p) => [p.userAudio, p.agentAudio]);
  const units: number[][] = [];
  for (let s = 0; s < clips.length; s += batchSize) {
    const part = await Promise.all(clips.slice(s, s + batchSize).map(async (c) => (typeof c === 'string' ? (await readWav(c, audio)).samples : c)));
    const T = Math.max(...part.map((c) => c.length));
    const wave = new Float32Array(part.length * T),
      mask = new Float32Array(part.length * T);
    part.forEach((c, b) => {
      wave.set(c, b * T);
      mask.fill(1, b * T, b * T + c.length);
    });
    const inputValues = tensor(wave, { shape: [part.length, T] });
    const attentionMask = tensor(mask, { shape: [part.length, T] });
    try {
      units.push(...(await opts.unitExtractor.predict({ inputValues, attentionMask, dedup: false })));
    } finally {
      inputValues.dispose();
      attentionMask.dispose();
    }
  }
  const out = [];
  for (let i = 0; i < pairs.length; i++) {
    const turn = {
      userUnits: units[2 * i],
      userText: pairs[i].userText.toLowerCase(),
      agentText: pairs[i].agentText.toLowerCase(),
      agentUnits: units[2 * i + 1],
    };
    const text = usdmText(turn, { numUnits: ids.numUnits });
    const enc = await opts.codec.encode(text);
    if (!Array.isArray(enc) || !enc.every((x) => Number.isSafeInteger(x))) invalid('an array of integer ids from codec.encode', 'codec.encode result', enc);
    const exIds = [ids.bos, ...enc];
    out.push({ ids: exIds, labels: usdmSftLabels(exIds, ids), text, userUnits: turn.userUnits, agentUnits: turn.agentUnits });
  }
  return out;
}

/** {@link Usdm.collate}'s work: ids padded with `pad`, labels with −100, attentionMask = ids ≠ pad. */
export function usdmCollate(examples: Array<{ ids: number[]; labels: number[] }>, pad: number): { inputIds: Tensor; attentionMask: Tensor; labels: Tensor } {
  if (!Array.isArray(examples) || examples.length === 0) invalid('a non-empty array of { ids, labels }', 'examples', examples);
  const T = Math.max(...examples.map((e) => e.ids.length));
  const ids = examples.map((e) => [...e.ids, ...Array(T - e.ids.length).fill(pad)]);
  const labels = examples.map((e) => [...e.labels, ...Array(T - e.labels.length).fill(IGNORE_INDEX)]);
  return {
    inputIds: tensor(ids, { dtype: 'int64' }),
    labels: tensor(labels, { dtype: 'int64' }),
    attentionMask: tensor(
      ids.map((r) => r.map((t) => (t === pad ? 0 : 1))),
      { dtype: 'int64' },
    ),
  };
}
