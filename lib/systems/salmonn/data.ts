/** SALMONN's batches: items gathered into the batch {@link Salmonn.forward} takes. */
import type { Tensor } from '../../tensor';
import { invalid, checkOptionNames } from '../../errors';
import { emotionTimelineSvg } from '../../train/plots';
import { parseEmotionSequence } from '../../metrics/text';

/** What `salmonnCollate` (Salmonn.collate) gathers: an et.data.SalmonnItem, or any item with its audio, prompt and target. */
export interface SalmonnCollateItem {
  /** Mono 16 kHz waveform. */
  audio: Float32Array | Tensor;
  /** The full prompt, with `<SpeechHere>`. */
  prompt: string;
  /** The answer (none: forward gives logits only). */
  target?: string;
}

/** {@link Salmonn.collate}'s work: `{ audio, prompt, target }` lists (target when the items have one). */
export function salmonnCollate(items: readonly SalmonnCollateItem[]): SalmonnBatch {
  if (!Array.isArray(items) || items.length === 0) invalid('a non-empty array of SALMONN items ({ audio, prompt, target })', 'items', items);
  const batch: SalmonnBatch = { audio: items.map((x) => x.audio), prompt: items.map((x) => x.prompt) };
  if (items.some((x) => x.target !== undefined)) batch.target = items.map((x) => x.target as string);
  return batch;
}

/**
 * An emotional trajectory drawn as a per-turn timeline SVG (turns along x, one row per emotion).
 * @param trajectory the answer text (its last `情绪序列:` line, read by `et.metrics.parseEmotionSequence`) or the emotions, one per turn
 * @param opts title (default 'emotional trajectory')
 * @throws EmotorchError ERR_INVALID_ARG when there is no emotion to draw
 * @example
 * fs.writeFileSync('trajectory.svg', et.systems.salmonn.salmonnTrajectorySvg(answer));
 */
export function salmonnTrajectorySvg(trajectory: string | readonly string[], opts: { title?: string } = {}): string {
  checkOptionNames(opts, ['title'], 'salmonnTrajectorySvg');
  const emotions = typeof trajectory === 'string' ? (parseEmotionSequence(trajectory) ?? []) : trajectory;
  if (!Array.isArray(emotions) || emotions.length === 0 || emotions.some((e) => typeof e !== 'string' || !e.trim())) {
    invalid('an answer with a 情绪序列: a -> b line, or a non-empty list of emotion names', 'trajectory', trajectory);
  }
  return emotionTimelineSvg(
    emotions.map((e) => e.trim()),
    opts.title ?? 'emotional trajectory',
  );
}

/** Zero samples after each turn of a multi-turn input: 0.1 s at 16 kHz (the trajectory fork's `prepare_multi_sample` and dataset.py). */
export const SALMONN_TURN_GAP = 1600;

/**
 * The trajectory fork's multi-turn input (whh07141/Fineutuned-SALMONN, cli_inference.py's
 * `prepare_multi_sample`, as its dataset.py joined turns at training): each turn's 16 kHz samples
 * followed by {@link SALMONN_TURN_GAP} zeros, then zeros up to 1 s, and a cut at 30 s.
 * @param turns one mono 16 kHz waveform per turn, in order
 * @returns the joined waveform, 16 000 to 480 000 samples
 * @throws EmotorchError ERR_INVALID_ARG for an empty list or a turn that is not a Float32Array
 * @example
 * const turns = await Promise.all(files.map(async (f) => (await et.audio.readAudio(f, { sampleRate: 16000, channel: 0 })).samples));
 * const [answer] = await salmonn.generate([et.systems.salmonn.salmonnJoinTurns(turns)], prompt);
 */
export function salmonnJoinTurns(turns: readonly Float32Array[]): Float32Array {
  if (!Array.isArray(turns) || turns.length === 0 || turns.some((t) => !(t instanceof Float32Array)))
    invalid('a non-empty array of Float32Array waveforms', 'turns', turns);
  const total = turns.reduce((n, t) => n + t.length + SALMONN_TURN_GAP, 0);
  const out = new Float32Array(Math.min(Math.max(total, 16000), 30 * 16000));
  let off = 0;
  for (const t of turns) {
    if (off >= out.length) break;
    out.set(t.subarray(0, out.length - off), off);
    off += t.length + SALMONN_TURN_GAP;
  }
  return out;
}

/** A batch as `forward` takes it (what the SALMONN dataset's items give, gathered). */
export interface SalmonnBatch {
  /** Mono 16 kHz waveforms, one per item. */
  audio: Array<Float32Array | Tensor>;
  /** Full prompts containing `<SpeechHere>` (the dataset's `prompt`); or give `instruction`. */
  prompt?: string[];
  /** Instructions: each becomes `prompt_template.format('<Speech><SpeechHere></Speech> ' + instruction)`. */
  instruction?: string[];
  /** Answers (`end_sym` is appended). Without targets, forward gives logits only. */
  target?: string[];
  /** Label tokens of the whole accumulated step: the loss is then their sum divided by it (HF's num_items_in_batch). */
  numItemsInBatch?: number;
}
