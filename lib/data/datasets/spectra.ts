/**
 * SPECTRA pickles (AlibabaResearch/DAMO-ConvAI spectra/): two layouts, told apart by shape.
 * - indexed: `[audio_list, items]`, item = `[audio_idx, text_ids, label, prev_idx (−1 = none), prev_text_ids]`
 * - samples: a list of `(audio, text_ids, label[, turn_ids[, prev_audio]])`
 * Audio is a raw 16 kHz waveform (a numpy float array; int16 PCM is scaled by 1/32768).
 */
import { invalid, EmotorchError } from '../../errors';
import { readPickle } from '../../io/pickle';
import { NdArray } from '../../io/ndarray';
import { BaseDataset, DatasetOptions, checkDatasetOptions, toWaveform, toIds, toScalar, describeValue } from './base';

/** The SPECTRA fine-tuning tasks. */
export type SpectraTask = 'mosi' | 'mosei' | 'iemocap' | 'mintrec';

/** Options of `SpectraDataset.fromFile`: the task, whose label range is checked. */
export interface SpectraOptions extends DatasetOptions {
  /**
   * Fixes the label's type and range: 'mosi'/'mosei' a float sentiment in [−3, 3]; 'iemocap' an
   * integer class 0..5; 'mintrec' an integer intent 0..19. Without it any finite number passes.
   */
  task?: SpectraTask;
}

/** One SPECTRA fine-tuning sample: audio, token ids, label and the previous turn when present. */
export interface SpectraItem {
  /** The current turn's waveform (16 kHz). Shared with the dataset (and other items): do not modify. */
  audio: Float32Array;
  textIds: number[];
  label: number;
  /** The previous turn's waveform, when the item has one. */
  prevAudio?: Float32Array;
  /** The previous turn's token ids (indexed layout). */
  prevTextIds?: number[];
  /** Per-token turn ids (samples layout): 0 history, 1 current. */
  turnIds?: number[];
}

const TASKS: Record<SpectraTask, { integer: boolean; min: number; max: number }> = {
  mosi: { integer: false, min: -3, max: 3 },
  mosei: { integer: false, min: -3, max: 3 },
  iemocap: { integer: true, min: 0, max: 5 },
  mintrec: { integer: true, min: 0, max: 19 },
};

/**
 * A SPECTRA fine-tuning pickle as a dataset.
 * @example
 * const ds = await et.data.SpectraDataset.fromFile('iemocap_train.pkl', { task: 'iemocap' });
 * const { audio, textIds, label } = await ds.get(0);
 */
export class SpectraDataset extends BaseDataset<SpectraItem, SpectraItem> {
  /** 'indexed' for `[audio_list, items]`, 'samples' for a plain list of samples. */
  readonly layout: 'indexed' | 'samples';
  readonly task?: SpectraTask;

  private constructor(file: string, layout: 'indexed' | 'samples', task?: SpectraTask) {
    super(file);
    this.layout = layout;
    this.task = task;
  }

  /**
   * Reads and validates a SPECTRA pickle.
   * @param path the .pkl file
   * @param opts `task` (label rules), `skipBad`
   * @throws EmotorchError ERR_INVALID_ARG for bad options; ERR_IO / ERR_FORMAT when the pickle
   *   cannot be read or has neither layout; ERR_DATA naming the file and item for a bad item
   *   (unless skipBad).
   */
  static async fromFile(path: string, opts: SpectraOptions = {}): Promise<SpectraDataset> {
    if (typeof path !== 'string') invalid('a file path', 'path', path);
    checkDatasetOptions(opts, ['task']);
    if (opts.task !== undefined && !(opts.task in TASKS)) invalid("'mosi', 'mosei', 'iemocap' or 'mintrec'", 'task', opts.task);
    const obj = await readPickle(path);
    const skip = !!opts.skipBad;
    const top = Array.isArray(obj) ? obj : null;
    if (!top) throw new EmotorchError(`'${path}' is not a SPECTRA pickle: the top level is ${describeValue(obj)}, not a list`, 'ERR_FORMAT');
    const indexed =
      top.length === 2 && isAudioList(top[0]) && Array.isArray(top[1]) && (top[1] as unknown[]).every((it) => Array.isArray(it) && typeof it[0] === 'number');
    const ds = new SpectraDataset(path, indexed ? 'indexed' : 'samples', opts.task);
    const label = (v: unknown, what: string): number => ds.checkLabel(toScalar(v, what), what);

    if (indexed) {
      const audios = audioEntries(top[0]);
      const cache = new Map<number, Float32Array>();
      const audioAt = (k: unknown, what: string): Float32Array => {
        if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k >= audios.length)
          throw new Error(`${what} is ${describeValue(k)}, not an index into the ${audios.length} audio clips`);
        let a = cache.get(k);
        if (!a) {
          a = toWaveform(audios[k], `audio_list[${k}]`);
          cache.set(k, a);
        }
        return a;
      };
      (top[1] as unknown[][]).forEach((it, i) =>
        ds.add(i, skip, () => {
          if (it.length !== 5 && it.length !== 3) throw new Error(`has ${it.length} fields; expected [audio_idx, text_ids, label, prev_idx, prev_text_ids]`);
          const item: SpectraItem = { audio: audioAt(it[0], 'audio_idx'), textIds: toIds(it[1], 'text_ids'), label: label(it[2], 'label') };
          if (it.length === 5 && toScalar(it[3], 'prev_idx') !== -1) {
            item.prevAudio = audioAt(it[3], 'prev_idx');
            item.prevTextIds = it[4] === null ? [] : toIds(it[4], 'prev_text_ids');
          }
          return item;
        }),
      );
    } else {
      top.forEach((s, i) =>
        ds.add(i, skip, () => {
          if (!Array.isArray(s) || s.length < 3 || s.length > 5)
            throw new Error(`is ${describeValue(s)}; expected (audio, text_ids, label[, turn_ids[, prev_audio]])`);
          const item: SpectraItem = { audio: toWaveform(s[0], 'audio'), textIds: toIds(s[1], 'text_ids'), label: label(s[2], 'label') };
          if (s.length >= 4 && s[3] !== null) {
            item.turnIds = toIds(s[3], 'turn_ids');
            if (item.turnIds.length !== item.textIds.length)
              throw new Error(`turn_ids has ${item.turnIds.length} entries but text_ids has ${item.textIds.length}`);
            if (item.turnIds.some((t) => t > 1)) throw new Error('turn_ids holds values other than 0 (history) and 1 (current)');
          }
          if (s.length === 5 && s[4] !== null) item.prevAudio = toWaveform(s[4], 'prev_audio');
          return item;
        }),
      );
    }
    return ds;
  }

  private checkLabel(x: number, what: string): number {
    if (!this.task) return x;
    const t = TASKS[this.task];
    if ((t.integer && !Number.isInteger(x)) || x < t.min || x > t.max) {
      throw new Error(`${what} ${x} is not ${t.integer ? `an integer class in ${t.min}..${t.max}` : `a number in [${t.min}, ${t.max}]`} for task ${this.task}`);
    }
    return x;
  }

  protected load(r: SpectraItem): SpectraItem {
    const item: SpectraItem = { ...r, textIds: [...r.textIds] };
    if (r.prevTextIds) item.prevTextIds = [...r.prevTextIds];
    if (r.turnIds) item.turnIds = [...r.turnIds];
    return item;
  }
}

function isAudioList(v: unknown): boolean {
  if (v instanceof NdArray) return v.dtype === 'object' || v.ndim === 2;
  return Array.isArray(v) && v.every((a) => a instanceof NdArray || a instanceof Float32Array || Array.isArray(a));
}

/** The clips of an audio list: a list, an object array, or the rows of a 2-D array. */
function audioEntries(v: unknown): unknown[] {
  if (!(v instanceof NdArray)) return v as unknown[];
  if (v.dtype === 'object') return v.data as unknown[];
  const [rows, cols] = v.shape;
  const d = v.data as Float32Array;
  return Array.from({ length: rows }, (_, r) => new NdArray(d.subarray(r * cols, (r + 1) * cols), [cols], v.dtype));
}
