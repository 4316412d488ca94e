/**
 * ECF 2.0 / SemEval-2024 Task 3 conversations: a JSON list of
 * `{conversation_ID, conversation: [{utterance_ID, text, speaker, emotion, video_name}],
 *   "emotion-cause_pairs": [["5_surprise", "2"], ...]}`.
 * One item per utterance, with its emotion's label index and the utterances that cause it;
 * optionally per-utterance embeddings (one safetensors file per modality, tensor names
 * `<conversation_ID>_<utterance_ID>`) concatenated in a given modality order.
 */
import * as path from 'path';
import { EmotorchError, invalid } from '../../errors';
import { Tensor } from '../../tensor';
import { loadSafetensors, readSafetensorsHeader } from '../../io/safetensors';
import { BaseDataset, DatasetOptions, checkDatasetOptions, dataError, str, describeValue } from './base';
import { readJsonList } from './json';

/** The 7 ECF emotions, in label-index order. */
export const ECF_EMOTIONS = ['neutral', 'anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise'] as const;
/** One of the seven ECF 2.0 emotions. */
export type EcfEmotion = (typeof ECF_EMOTIONS)[number];

/** Per-utterance embedding files to attach to ECF items, one per modality. */
export interface EcfFeatureOptions {
  /** Modality name → safetensors file (relative paths resolve against the JSON file's folder). */
  files: Record<string, string>;
  /** Order in which modalities are concatenated. Default: the order of `files`' keys. */
  order?: string[];
  /** Tensor name for an utterance. Default `${conversationId}_${utteranceId}`. */
  key?: (conversationId: number, utteranceId: number, modality: string) => string;
}

/** Options of `EcfDataset.fromFile`. */
export interface EcfOptions extends DatasetOptions {
  /** Per-utterance embeddings to attach as `features`. */
  features?: EcfFeatureOptions;
}

/** One emotion-cause pair of a conversation (the cause with its span where the file gives one). */
export interface EcfPair {
  /** The utterance that shows the emotion, and the emotion. */
  emotion: { utterance: number; emotion: EcfEmotion };
  /** The utterance that causes it (and the cause span, in subtask 1 files). */
  cause: { utterance: number; span?: string };
}

/** One ECF 2.0 conversation: its id, utterance ids and emotion-cause pairs. */
export interface EcfConversation {
  id: number;
  /** The utterance IDs in order. */
  utterances: number[];
  pairs: EcfPair[];
}

/** One utterance of an ECF 2.0 conversation, with its emotion, causes and (optionally) embeddings. */
export interface EcfItem {
  conversationId: number;
  utteranceId: number;
  text: string;
  speaker: string;
  /** The emotion, or null where the file has none (test files). */
  emotion: EcfEmotion | null;
  /** Index of `emotion` in {@link ECF_EMOTIONS}, or −1 when there is none. */
  label: number;
  videoName?: string;
  /** IDs of the utterances that cause this utterance's emotion. */
  causes: number[];
  /** The concatenated embeddings, when `features` was given. */
  features?: Float32Array;
}

interface EcfRecord extends Omit<EcfItem, 'features'> {
  keys?: string[];
}

function parseId(v: unknown, what: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new Error(`${what} is ${describeValue(v)}, not a non-negative integer`);
  return n;
}

function parsePair(p: unknown, ids: Set<number>, k: number): EcfPair {
  if (!Array.isArray(p) || p.length !== 2) throw new Error(`emotion-cause_pairs[${k}] is ${describeValue(p)}, not an [emotion, cause] pair`);
  const m = typeof p[0] === 'string' ? /^(\d+)_([a-z]+)$/.exec(p[0]) : null;
  if (!m) throw new Error(`emotion-cause_pairs[${k}][0] is ${describeValue(p[0])}, not "<utterance>_<emotion>"`);
  const emotion = m[2] as EcfEmotion;
  if (!ECF_EMOTIONS.includes(emotion)) throw new Error(`emotion-cause_pairs[${k}] names the emotion "${m[2]}", not one of ${ECF_EMOTIONS.join(', ')}`);
  const eu = Number(m[1]);
  let cu: number;
  let span: string | undefined;
  if (typeof p[1] === 'number') cu = parseId(p[1], `emotion-cause_pairs[${k}][1]`);
  else {
    const c = typeof p[1] === 'string' ? /^(\d+)(?:_([\s\S]*))?$/.exec(p[1]) : null;
    if (!c) throw new Error(`emotion-cause_pairs[${k}][1] is ${describeValue(p[1])}, not "<utterance>" or "<utterance>_<span>"`);
    cu = Number(c[1]);
    span = c[2];
  }
  for (const u of [eu, cu]) if (!ids.has(u)) throw new Error(`emotion-cause_pairs[${k}] refers to utterance ${u}, which the conversation does not have`);
  return { emotion: { utterance: eu, emotion }, cause: span === undefined ? { utterance: cu } : { utterance: cu, span } };
}

/**
 * An ECF 2.0 conversations file as a dataset of utterances.
 * @example
 * const ds = await et.data.EcfDataset.fromFile('Subtask_2_train.json', {
 *   features: { files: { text: 'text.safetensors', video: 'video.safetensors' } },
 * });
 * const { features, label } = await ds.get(0);  // features: Float32Array(1536)
 */
export class EcfDataset extends BaseDataset<EcfItem, EcfRecord> {
  /** Conversations that passed validation, with their emotion-cause pairs. */
  readonly conversations: EcfConversation[] = [];
  /** Length of `features` (0 without features). */
  featureSize = 0;
  private tensors: Map<string, Tensor>[] = [];

  private constructor(file: string) {
    super(file);
    this.multi = true;
  }

  /**
   * Reads and validates the conversations (and loads the embedding files: the tensors used, read into memory).
   * @param file the JSON file
   * @param opts `features`, `skipBad` (skips a broken conversation whole, or one utterance
   *   whose embedding is missing)
   * @throws EmotorchError ERR_INVALID_ARG for bad options; ERR_IO / ERR_FORMAT for unreadable or
   *   malformed files (JSON or safetensors); ERR_DATA naming the file and conversation index for a
   *   bad conversation, utterance, pair or missing embedding (unless skipBad).
   */
  static async fromFile(file: string, opts: EcfOptions = {}): Promise<EcfDataset> {
    if (typeof file !== 'string') invalid('a file path', 'path', file);
    checkDatasetOptions(opts, ['features']);
    const skip = !!opts.skipBad;
    const ds = new EcfDataset(file);
    const list = readJsonList(file);

    // embedding files
    const f = opts.features;
    let order: string[] = [];
    let keyOf: EcfFeatureOptions['key'] = (c, u) => `${c}_${u}`;
    const headers: ReturnType<typeof readSafetensorsHeader>[] = [];
    const paths: string[] = [];
    if (f !== undefined) {
      if (
        f === null ||
        typeof f !== 'object' ||
        f.files === null ||
        typeof f.files !== 'object' ||
        !Object.values(f.files).every((p) => typeof p === 'string')
      ) {
        invalid('{ files: { modality: path }, order?, key? }', 'features', f);
      }
      order = f.order ?? Object.keys(f.files);
      if (!Array.isArray(order) || order.length === 0 || !order.every((m) => typeof m === 'string' && m in f.files))
        invalid(`a non-empty list of modalities among ${Object.keys(f.files).join(', ')}`, 'features.order', f.order);
      if (f.key !== undefined) {
        if (typeof f.key !== 'function') invalid('a function', 'features.key', f.key);
        keyOf = f.key;
      }
      for (const m of order) {
        const p = path.resolve(path.dirname(path.resolve(file)), f.files[m]);
        paths.push(p);
        headers.push(readSafetensorsHeader(p));
      }
    }

    list.forEach((raw, ci) => {
      let conv: { id: number; utts: Record<string, unknown>[]; ids: number[]; pairs: EcfPair[] } | null = null;
      ds.add(ci, skip, () => {
        if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`is ${describeValue(raw)}, not a conversation object`);
        const c = raw as Record<string, unknown>;
        const id = parseId(c.conversation_ID, 'conversation_ID');
        if (!Array.isArray(c.conversation) || c.conversation.length === 0) throw new Error(`(conversation_ID ${id}) has no conversation list`);
        const utts = c.conversation as Record<string, unknown>[];
        const ids = utts.map((u, k) => {
          if (u === null || typeof u !== 'object') throw new Error(`(conversation_ID ${id}) conversation[${k}] is not an object`);
          return parseId(u.utterance_ID, `(conversation_ID ${id}) conversation[${k}].utterance_ID`);
        });
        const idSet = new Set(ids);
        if (idSet.size !== ids.length) throw new Error(`(conversation_ID ${id}) repeats an utterance_ID`);
        const rawPairs = c['emotion-cause_pairs'] ?? [];
        if (!Array.isArray(rawPairs)) throw new Error(`(conversation_ID ${id}) emotion-cause_pairs is not a list`);
        let pairs: EcfPair[];
        try {
          pairs = rawPairs.map((p, k) => parsePair(p, idSet, k));
        } catch (e) {
          throw new Error(`(conversation_ID ${id}) ${(e as Error).message}`, { cause: e });
        }
        conv = { id, utts, ids, pairs };
        return [];
      });
      if (!conv) return;
      const { id, utts, ids, pairs } = conv as { id: number; utts: Record<string, unknown>[]; ids: number[]; pairs: EcfPair[] };
      const before = ds.records.length;
      utts.forEach((u, k) =>
        ds.add(ci, skip, () => {
          const where = `(conversation_ID ${id}, utterance_ID ${ids[k]})`;
          try {
            const emotionRaw = u.emotion;
            let emotion: EcfEmotion | null = null;
            if (emotionRaw !== undefined && emotionRaw !== null) {
              const e = str(emotionRaw, 'emotion')!.toLowerCase();
              if (!ECF_EMOTIONS.includes(e as EcfEmotion)) throw new Error(`emotion "${emotionRaw}" is not one of ${ECF_EMOTIONS.join(', ')}`);
              emotion = e as EcfEmotion;
            }
            const rec: EcfRecord = {
              conversationId: id,
              utteranceId: ids[k],
              text: str(u.text, 'text')!,
              speaker: str(u.speaker, 'speaker')!,
              emotion,
              label: emotion === null ? -1 : ECF_EMOTIONS.indexOf(emotion),
              causes: pairs.filter((p) => p.emotion.utterance === ids[k]).map((p) => p.cause.utterance),
            };
            const video = str(u.video_name, 'video_name', true);
            if (video !== undefined) rec.videoName = video;
            if (order.length) {
              rec.keys = order.map((m, j) => {
                const key = keyOf!(id, ids[k], m);
                if (!headers[j].entries.has(key)) throw new Error(`the ${m} embeddings '${paths[j]}' have no tensor '${key}'`);
                return key;
              });
            }
            return [rec];
          } catch (e) {
            throw new Error(`${where} ${(e as Error).message}`, { cause: e });
          }
        }),
      );
      if (ds.records.length > before) ds.conversations.push({ id, utterances: ids, pairs });
    });

    // embedding sizes must agree within a modality; load the tensors that are used (read into memory of their own)
    for (let j = 0; j < order.length; j++) {
      const used = new Set(ds.records.map((r) => r.keys![j]));
      let size = -1;
      for (const k of used) {
        const e = headers[j].entries.get(k)!;
        const n = e.shape.reduce((a, b) => a * b, 1);
        if (size === -1) size = n;
        else if (n !== size) throw new EmotorchError(`'${paths[j]}': tensor '${k}' has ${n} elements but the others have ${size}`, 'ERR_FORMAT');
      }
      ds.featureSize += Math.max(size, 0);
      ds.tensors.push(used.size ? (await loadSafetensors(paths[j], { only: used })).tensors : new Map());
    }
    return ds;
  }

  protected load(r: EcfRecord, index: number): EcfItem {
    const { keys, ...item } = r;
    const out: EcfItem = { ...item, causes: [...item.causes] };
    if (keys) {
      const feats = new Float32Array(this.featureSize);
      let off = 0;
      keys.forEach((k, j) => {
        const t = this.tensors[j].get(k);
        if (!t) throw dataError(this.file, index, `embedding '${k}' is not loaded`);
        const d = (t.dtype === 'float32' ? t : t.to({ dtype: 'float32' })).dataSync() as Float32Array;
        feats.set(d, off);
        off += d.length;
      });
      out.features = feats;
    }
    return out;
  }
}

/** Groups utterance items into conversations (by conversationId, in first-seen order, utterances in order). */
export function groupEcfConversations(items: EcfItem[]): EcfItem[][] {
  if (!Array.isArray(items)) invalid('an array of ECF items', 'items', items);
  const by = new Map<number, EcfItem[]>();
  for (const it of items) {
    if (!by.has(it.conversationId)) by.set(it.conversationId, []);
    by.get(it.conversationId)!.push(it);
  }
  return [...by.values()].map((c) => c.sort((a, b) => a.utteranceId - b.utteranceId));
}
