/** SPECTRA's batches: the original's DataCollatorForDownstream over SpectraDataset items. */
import { Tensor, tensor } from '../../../tensor';
import { checkInt, invalid, checkOptionNames } from '../../../errors';
import type { SpectraItem } from '../../../data/datasets/spectra';
import type { Device } from '../../../device';

/** Options of `Spectra.collate`. */
export interface SpectraCollateOptions {
  /** Samples every clip is cut or zero-padded to (all clips, as the original). Default 160000 (10 s). */
  audioLength?: number;
  /** Longest token sequence; longer ones keep `<s>` and the last tokens. Default 512. */
  textLength?: number;
  /**
   * Two clips per sample, history first (the original's `--multi_audio`; a sample without history
   * gets an empty clip), token sequence = history + current without its `<s>`, turn ids 0/1.
   * Default: true when any item has a previous turn.
   */
  multiAudio?: boolean;
  /** Float labels (MOSI/MOSEI regression); default: int64 when every label is an integer. */
  regression?: boolean;
  /** Padding token id. Default 1 (RoBERTa's `<pad>`; the original pads with 0, which changes no valid output). */
  padTokenId?: number;
  device?: Device;
}

/** {@link Spectra.collate}'s work (see there). */
export function spectraCollate(items: SpectraItem[], opts: SpectraCollateOptions = {}): SpectraInputs {
  if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of SPECTRA items', 'items', items);
  if (!opts || typeof opts !== 'object') invalid('an options object', 'collate options', opts);
  checkOptionNames(opts, ['audioLength', 'textLength', 'multiAudio', 'regression', 'padTokenId', 'device'], 'Spectra.collate');
  const S = checkInt(opts.audioLength ?? 160000, 'audioLength', 1);
  const maxText = checkInt(opts.textLength ?? 512, 'textLength', 2);
  const pad = checkInt(opts.padTokenId ?? 1, 'padTokenId', 0);
  const device = opts.device ?? 'cpu';
  items.forEach((it, i) => {
    if (!it || typeof it !== 'object' || !(it.audio instanceof Float32Array) || !Array.isArray(it.textIds) || typeof it.label !== 'number')
      invalid('a SPECTRA item ({ audio, textIds, label, … })', `items[${i}]`, it);
    if (it.audio.length === 0) invalid('a non-empty clip', `items[${i}].audio`, 'no samples');
  });
  const multi = opts.multiAudio ?? items.some((it) => it.prevAudio !== undefined || it.prevTextIds !== undefined);
  const words: number[][] = [],
    turns: (number[] | null)[] = [],
    clips: Float32Array[] = [];
  for (const it of items) {
    if (multi) {
      const hist = it.prevTextIds;
      if (hist && hist.length) {
        words.push([...hist, ...it.textIds.slice(1)]);
        turns.push([...hist.map(() => 0), ...it.textIds.slice(1).map(() => 1)]);
      } else {
        words.push([...it.textIds]);
        turns.push(it.turnIds ? [...it.turnIds] : it.textIds.map(() => 1));
      }
      clips.push(it.prevAudio ?? new Float32Array(0), it.audio);
    } else {
      words.push([...it.textIds]);
      turns.push(it.turnIds ? [...it.turnIds] : null);
      clips.push(it.audio);
    }
  }
  const T = Math.min(Math.max(...words.map((w) => w.length)), maxText);
  const cut = (s: number[]) => (s.length > T ? [s[0], ...s.slice(s.length - (T - 1))] : s);
  const B = items.length;
  const ids = new Float64Array(B * T).fill(pad),
    tam = new Float64Array(B * T),
    tt = new Float64Array(B * T);
  const withTurns = multi || turns.some((t) => t !== null);
  words.forEach((w, b) => {
    const c = cut(w);
    ids.set(c, b * T);
    tam.fill(1, b * T, b * T + c.length);
    if (withTurns) tt.set(cut(turns[b] ?? w.map(() => 1)), b * T);
  });
  const wave = new Float32Array(clips.length * S),
    keep = new Float64Array(clips.length * S);
  clips.forEach((a, i) => {
    const n = Math.min(a.length, S);
    wave.set(a.subarray(0, n), i * S);
    keep.fill(1, i * S, i * S + n);
  });
  const labels = items.map((it) => it.label);
  const regression = opts.regression ?? !labels.every(Number.isInteger);
  return {
    inputValues: tensor(wave, { shape: [clips.length, S], device }),
    audioAttentionMask: tensor(keep, { shape: [clips.length, S], dtype: 'int64', device }),
    inputIds: tensor(ids, { shape: [B, T], dtype: 'int64', device }),
    attentionMask: tensor(tam, { shape: [B, T], dtype: 'int64', device }),
    tokenTypeIds: withTurns ? tensor(tt, { shape: [B, T], dtype: 'int64', device }) : null,
    labels: tensor(Float64Array.from(labels), { dtype: regression ? 'float32' : 'int64', device }),
  };
}

/** The collated batch {@link Spectra.collate} makes and {@link Spectra.forward} takes. */
export interface SpectraInputs {
  /** (clips, samples) float waveforms at 16 kHz: one clip per sample, or two (history, then current). */
  inputValues: Tensor;
  /** (clips, samples): 1 = real sample, 0 = padding. */
  audioAttentionMask: Tensor;
  /** (batch, length) RoBERTa token ids: history tokens, then the current turn without its `<s>`. */
  inputIds: Tensor;
  /** (batch, length): 1 = token, 0 = padding. */
  attentionMask: Tensor;
  /** (batch, length) turn ids: 0 history, 1 current (RoBERTa token types); optional. */
  tokenTypeIds?: Tensor | null;
  /** (batch) float targets (1 output) or int64 classes. */
  labels?: Tensor | null;
}
