/** SALMONN's batches: items gathered into the batch {@link Salmonn.forward} takes. */
import type { Tensor } from '../../tensor';
import { invalid } from '../../errors';
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
 * fs.writeFileSync('trajectory.svg', et.systems.salmonnTrajectorySvg(answer));
 */
export function salmonnTrajectorySvg(trajectory: string | readonly string[], opts: { title?: string } = {}): string {
  const emotions = typeof trajectory === 'string' ? parseEmotionSequence(trajectory) ?? [] : trajectory;
  if (!Array.isArray(emotions) || emotions.length === 0 || emotions.some((e) => typeof e !== 'string' || !e.trim())) {
    invalid('an answer with a 情绪序列: a -> b line, or a non-empty list of emotion names', 'trajectory', trajectory);
  }
  return emotionTimelineSvg(emotions.map((e) => e.trim()), opts.title ?? 'emotional trajectory');
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
