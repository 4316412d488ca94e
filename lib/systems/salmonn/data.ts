/** SALMONN's batches: items gathered into the batch {@link Salmonn.forward} takes. */
import type { Tensor } from '../../tensor';
import { invalid } from '../../errors';
import type { SalmonnBatch } from './model';

/** What {@link salmonnCollate} gathers: an et.data.SalmonnItem, or any item with its audio, prompt and target. */
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
