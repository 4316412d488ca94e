/**
 * ms-swift query/response data (M2SE / EmoVerse, seed 004): a JSON list (or .jsonl lines) of
 * `{query, response, videos?|images?|audios?, system?}`. Media paths are resolved against the
 * file's folder (or `mediaRoot`); their existence is checked only under `checkFiles: true`.
 */
import * as path from 'path';
import { invalid } from '../../errors';
import { BaseDataset, DatasetOptions, checkDatasetOptions, resolveFrom, str, describeValue } from './base';
import { notAFile } from '../../io/file';
import { readJsonList } from './json';

/** The M2SE tasks a record can be inferred to belong to. */
export type SwiftTask = 'sentiment' | 'emotion' | 'action_units' | 'emotion_cause' | 'emotion_reason';

/** Options of `SwiftDataset.fromFile`. */
export interface SwiftOptions extends DatasetOptions {
  /** Folder relative media paths are resolved against. Default: the JSON file's folder. */
  mediaRoot?: string;
  /** Check that every media file exists. Default false. */
  checkFiles?: boolean;
  /** Guess each record's task from its query and response (see {@link inferSwiftTask}). Default false. */
  inferTask?: boolean;
}

/** One ms-swift record: query, response, system prompt and media files. */
export interface SwiftItem {
  query: string;
  response: string;
  system?: string;
  /** Resolved media paths (empty lists when absent). */
  videos: string[];
  images: string[];
  audios: string[];
  /** Present under `inferTask: true`. */
  task?: SwiftTask;
}

const SENTIMENTS = new Set(['positive', 'negative', 'neutral']);
const EMOTIONS = new Set(['neutral', 'anger', 'angry', 'disgust', 'fear', 'joy', 'happy', 'happiness', 'sad', 'sadness', 'surprise', 'contempt']);

/**
 * Guesses an M2SE record's task: a response that is one sentiment word → 'sentiment', one
 * emotion word → 'emotion'; emotion-cause pair lists (`(3_joy, 2)` / `3_joy`) → 'emotion_cause';
 * a query or response about action units (AU12, "action unit") → 'action_units'; otherwise
 * 'emotion_reason' (free text).
 * @param query the record's query
 * @param response the record's response
 * @example
 * et.data.inferSwiftTask('What is the sentiment?', 'positive');  // 'sentiment'
 */
export function inferSwiftTask(query: string, response: string): SwiftTask {
  const r = response.trim().toLowerCase().replace(/[.!]$/, '');
  if (SENTIMENTS.has(r)) return 'sentiment';
  if (EMOTIONS.has(r)) return 'emotion';
  if (/\b\d+_[a-z]+\b/.test(r) || /emotion-cause|cause pair/i.test(query)) return 'emotion_cause';
  if (/\bAU\s?\d+\b|action unit/i.test(`${query} ${response}`)) return 'action_units';
  return 'emotion_reason';
}

/**
 * An ms-swift JSON(L) file as a dataset.
 * @example
 * const ds = await et.data.SwiftDataset.fromFile('m2se_train.json', { inferTask: true });
 */
export class SwiftDataset extends BaseDataset<SwiftItem, SwiftItem> {
  private constructor(file: string) {
    super(file);
  }

  /**
   * Reads and validates the file.
   * @param file a .json list or .jsonl lines
   * @param opts `mediaRoot`, `checkFiles`, `inferTask`, `skipBad`
   * @throws EmotorchError ERR_INVALID_ARG for bad options; ERR_IO / ERR_FORMAT for an unreadable
   *   or malformed file; ERR_DATA naming the file and item index for a record with a missing or
   *   mistyped field, or (with checkFiles) a missing media file (unless skipBad).
   */
  static async fromFile(file: string, opts: SwiftOptions = {}): Promise<SwiftDataset> {
    if (typeof file !== 'string') invalid('a file path', 'path', file);
    checkDatasetOptions(opts, ['mediaRoot', 'checkFiles', 'inferTask']);
    const root =
      opts.mediaRoot === undefined
        ? path.dirname(path.resolve(file))
        : typeof opts.mediaRoot === 'string'
          ? opts.mediaRoot
          : invalid('a folder path', 'mediaRoot', opts.mediaRoot);
    for (const k of ['checkFiles', 'inferTask'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'boolean') invalid('a boolean', k, opts[k]);
    const ds = new SwiftDataset(file);
    readJsonList(file).forEach((raw, i) =>
      ds.add(i, !!opts.skipBad, () => {
        if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`is ${describeValue(raw)}, not an object`);
        const it = raw as Record<string, unknown>;
        const media = (k: 'videos' | 'images' | 'audios'): string[] => {
          const v = it[k];
          if (v === undefined || v === null) return [];
          const list = typeof v === 'string' ? [v] : v;
          if (!Array.isArray(list) || !list.every((p) => typeof p === 'string' && p.length > 0))
            throw new Error(`${k} is ${describeValue(v)}, not a list of paths`);
          const out = (list as string[]).map((p) => resolveFrom(root, p));
          if (opts.checkFiles)
            for (const p of out) {
              const why = notAFile(p);
              if (why) throw new Error(`${k} file '${p}' ${why}`);
            }
          return out;
        };
        const item: SwiftItem = {
          query: str(it.query, 'query')!,
          response: str(it.response, 'response')!,
          videos: media('videos'),
          images: media('images'),
          audios: media('audios'),
        };
        const system = str(it.system, 'system', true);
        if (system !== undefined) item.system = system;
        if (opts.inferTask) item.task = inferSwiftTask(item.query, item.response);
        return item;
      }),
    );
    return ds;
  }

  protected load(r: SwiftItem): SwiftItem {
    return { ...r, videos: [...r.videos], images: [...r.images], audios: [...r.audios] };
  }
}
