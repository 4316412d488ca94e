/**
 * SALMONN-style instruction data: a JSON list (or `{ "annotation": [...] }`, SALMONN's own file
 * shape) of items with audio, an instruction and a target; and the emotional-trajectory items of
 * the SALMONN fine-tune (seed 002): `{dialogue_id, task, input_text, target_text,
 * emotion_sequence, audio_files}`.
 *
 * Fields read, first found wins:
 * - audio: `audio_files` (turns, each followed by the silence, as the fork's `dataset.py`) |
 *   `path` (+ SALMONN's `expand_wav` list, silence between clips) | `audio`
 * - target: trajectory items (`target_text` / `emotion_sequence` present): `target_text` (or
 *   `input_text` when it is empty), and for `task1*` items with emotions
 *   `+ "\n情绪序列: " + emotions.map(trim, lowercase).join(" -> ")` (option `emotionSuffix`,
 *   the fork's `SALMONN_TASK1_ADD_SUFFIX`); otherwise `target` | `answer` | `text` (SALMONN's
 *   `text` is the answer) | `output`
 * - instruction: `instruction` | `prompt` | `Q` | `question`, else `prompts[task]` (option; the
 *   challenge prompts are {@link SALMONN_CHALLENGE_PROMPTS}). For trajectory items `input_text` is
 *   fed by default (`includeInputText: true`): it fills a `{}` in the instruction, or is appended
 *   on a new line; the original code never fed it to the model (its `{}` stayed literal), a bug.
 */
import * as path from 'path';
import { invalid, checkInt, checkNumber } from '../../errors';
import { readWav } from '../../audio/wav';
import { BaseDataset, DatasetOptions, checkDatasetOptions, dataError, resolveFrom, str, describeValue } from './base';
import { notAFile } from '../../io/file';
import { readJsonList } from './json';

/** Options of `SalmonnDataset.fromFile`. */
export interface SalmonnOptions extends DatasetOptions {
  /** Folder that relative audio paths are resolved against. Default: the JSON file's folder. */
  audioRoot?: string;
  /** Instructions per task key (a string or a list; item i uses entry i mod length). */
  prompts?: Record<string, string | string[]>;
  /** Feed a trajectory item's `input_text` (fills `{}` in the instruction, else appended). Default true. */
  includeInputText?: boolean;
  /** Append `\n情绪序列: a -> b -> c` to task1 targets (the fork's SALMONN_TASK1_ADD_SUFFIX). Default true. */
  emotionSuffix?: boolean;
  /**
   * Silence in seconds after each `audio_files` turn (between `expand_wav` clips). Default 0.1
   * (1600 samples at 16 kHz, the fork's `dataset.py`); its `dataset_v1.py` layout used 0.5.
   */
  silence?: number;
  /** Sample rate audio is read at. Default 16000. */
  sampleRate?: number;
  /** Cut audio longer than this many seconds (SALMONN used 30). Default: no limit. */
  maxSeconds?: number;
  /** Pad audio shorter than this with zeros (SALMONN used 1). Default 0. */
  minSeconds?: number;
  /** Check at load time that every audio file exists. Default true. */
  checkFiles?: boolean;
  /** The prompt template; `{instruction}` is replaced. Default SALMONN's. */
  template?: string;
}

/** One SALMONN training item: the audio, the instruction and full prompt, and the target text. */
export interface SalmonnItem {
  /** Mono audio at `sampleRate`, turns joined with silence. */
  audio: Float32Array;
  /** The instruction text (may be empty). */
  instruction: string;
  /** The full prompt: the template with the instruction filled in. */
  prompt: string;
  /** The answer the model is trained to produce. */
  target: string;
  task?: string;
  id: string;
  /** The audio files, resolved. */
  audioPaths: string[];
  /** Trajectory items: the per-turn emotions (trimmed, lowercased, as in the target suffix). */
  emotionSequence?: string[];
  /** Trajectory items: the transcript text. */
  inputText?: string;
}

type Record_ = Omit<SalmonnItem, 'audio'> & { trailingSilence: boolean };

/** SALMONN's prompt template: the speech goes where `<SpeechHere>` is, the instruction at `{instruction}`. */
export const SALMONN_TEMPLATE = 'USER: <Speech><SpeechHere></Speech> {instruction}\nASSISTANT:';

/**
 * The Human-like Spoken Dialogue Challenge prompts for tasks 1–3, as the fine-tune's
 * `train_prompt.json` (whh07141/Fineutuned-SALMONN) holds them; pass as `prompts`. `{}` takes the
 * item's `input_text`.
 */
export const SALMONN_CHALLENGE_PROMPTS: Readonly<Record<string, string>> = Object.freeze({
  task1_emotional_trajectory:
    '<Speech><SpeechHere></Speech> 任务类型: task1_emotional_trajectory\nUSER: {}\nASSISTANT: 请根据以上对话，描述用户情绪的变化轨迹：',
  task2_emotional_reasoning: '<Speech><SpeechHere></Speech> 任务类型: task2_emotional_reasoning\nUSER: {}\nASSISTANT: 请根据以上对话，分析用户情绪背后的原因：',
  task3_empathy: '<Speech><SpeechHere></Speech> 任务类型: task3_empathy\nUSER: {}\nASSISTANT: 请生成一个充满共情的文字与语音回复：',
});

/**
 * A SALMONN / emotional-trajectory JSON file as a dataset; audio is read on `get`.
 * @example
 * const ds = await et.data.SalmonnDataset.fromFile('trajectory_train.json', { maxSeconds: 30 });
 * const { audio, prompt, target } = await ds.get(0);
 */
export class SalmonnDataset extends BaseDataset<SalmonnItem, Record_> {
  private readonly sampleRate: number;
  private readonly silenceSamples: number;
  private readonly maxSamples: number;
  private readonly minSamples: number;

  private constructor(file: string, o: { sampleRate: number; silence: number; maxSeconds: number; minSeconds: number }) {
    super(file);
    this.sampleRate = o.sampleRate;
    this.silenceSamples = Math.round(o.silence * o.sampleRate);
    this.maxSamples = Number.isFinite(o.maxSeconds) ? Math.round(o.maxSeconds * o.sampleRate) : Infinity;
    this.minSamples = Math.round(o.minSeconds * o.sampleRate);
  }

  /**
   * Reads and validates the JSON file (and, by default, that the audio files exist).
   * @param file the JSON file
   * @param opts see {@link SalmonnOptions}
   * @throws EmotorchError ERR_INVALID_ARG for bad options; ERR_IO / ERR_FORMAT when the file cannot
   *   be read or is not a JSON list; ERR_DATA naming the file and item index for a bad item or a
   *   missing audio file (unless skipBad).
   */
  static async fromFile(file: string, opts: SalmonnOptions = {}): Promise<SalmonnDataset> {
    if (typeof file !== 'string') invalid('a file path', 'path', file);
    checkDatasetOptions(opts, [
      'audioRoot',
      'prompts',
      'includeInputText',
      'silence',
      'sampleRate',
      'maxSeconds',
      'minSeconds',
      'checkFiles',
      'template',
      'emotionSuffix',
    ]);
    const root =
      opts.audioRoot === undefined
        ? path.dirname(path.resolve(file))
        : typeof opts.audioRoot === 'string'
          ? opts.audioRoot
          : invalid('a folder path', 'audioRoot', opts.audioRoot);
    const prompts = opts.prompts ?? {};
    if (
      prompts === null ||
      typeof prompts !== 'object' ||
      Object.values(prompts).some((p) => typeof p !== 'string' && !(Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === 'string')))
    ) {
      invalid('an object of task → instruction string or non-empty string list', 'prompts', opts.prompts);
    }
    for (const k of ['includeInputText', 'checkFiles', 'emotionSuffix'] as const)
      if (opts[k] !== undefined && typeof opts[k] !== 'boolean') invalid('a boolean', k, opts[k]);
    const includeInput = opts.includeInputText ?? true;
    const checkFiles = opts.checkFiles ?? true;
    const emotionSuffix = opts.emotionSuffix ?? true;
    const sampleRate = opts.sampleRate === undefined ? 16000 : checkInt(opts.sampleRate, 'sampleRate', 1);
    const silence = opts.silence === undefined ? 0.1 : checkNumber(opts.silence, 'silence', 0, 60);
    const maxSeconds = opts.maxSeconds === undefined ? Infinity : checkNumber(opts.maxSeconds, 'maxSeconds', 1e-3);
    const minSeconds = opts.minSeconds === undefined ? 0 : checkNumber(opts.minSeconds, 'minSeconds', 0, 3600);
    const template = opts.template ?? SALMONN_TEMPLATE;
    if (typeof template !== 'string' || !template.includes('{instruction}')) invalid("a string containing '{instruction}'", 'template', opts.template);

    const list = readJsonList(file, 'annotation');
    const ds = new SalmonnDataset(file, { sampleRate, silence, maxSeconds, minSeconds });
    list.forEach((raw, i) =>
      ds.add(i, !!opts.skipBad, () => {
        if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`is ${describeValue(raw)}, not an object`);
        const it = raw as Record<string, unknown>;
        // audio
        let files: string[];
        if (it.audio_files !== undefined) {
          if (!Array.isArray(it.audio_files) || it.audio_files.length === 0 || !it.audio_files.every((p) => typeof p === 'string'))
            throw new Error(`audio_files is ${describeValue(it.audio_files)}, not a non-empty list of paths`);
          files = it.audio_files as string[];
        } else if (it.path !== undefined) {
          files = [str(it.path, 'path')!];
          if (it.expand_wav !== undefined) {
            if (!Array.isArray(it.expand_wav) || !it.expand_wav.every((p) => typeof p === 'string')) throw new Error('expand_wav is not a list of paths');
            files.push(...(it.expand_wav as string[]));
          }
        } else if (it.audio !== undefined) files = [str(it.audio, 'audio')!];
        else throw new Error('has no audio (audio_files, path or audio)');
        const audioPaths = files.map((p) => resolveFrom(root, p));
        if (checkFiles)
          for (const p of audioPaths) {
            const why = notAFile(p);
            if (why) throw new Error(`audio file '${p}' ${why}`);
          }
        const task = str(it.task, 'task', true);
        // target
        let target: string;
        let emotionSequence: string[] | undefined;
        let inputText: string | undefined;
        if (it.target_text !== undefined || it.emotion_sequence !== undefined) {
          // the fork's EmoMultiTaskDataset: target_text, or input_text when it is empty
          inputText = str(it.input_text, 'input_text', true);
          target = str(it.target_text, 'target_text', true) || inputText || '';
          if (!target) throw new Error('target_text and input_text are both missing or empty');
          const seq = it.emotion_sequence;
          if (seq !== undefined && seq !== null) {
            if (!Array.isArray(seq) || !seq.every((e) => typeof e === 'string' && e.trim().length > 0))
              throw new Error(`emotion_sequence is ${describeValue(seq)}, not a list of emotion names`);
            if (it.audio_files !== undefined && seq.length > 0 && seq.length !== files.length)
              throw new Error(`emotion_sequence has ${seq.length} emotions but audio_files has ${files.length} turns`);
            emotionSequence = (seq as string[]).map((e) => e.trim().toLowerCase());
            if (emotionSuffix && task?.startsWith('task1') && emotionSequence.length > 0) target = `${target}\n情绪序列: ${emotionSequence.join(' -> ')}`;
          }
        } else {
          const t = it.target ?? it.answer ?? it.text ?? it.output;
          target = str(t, 'target (target, answer, text or output)')!;
        }
        // instruction
        let instruction = str(it.instruction ?? it.prompt ?? it.Q ?? it.question, 'instruction', true);
        if (instruction === undefined && task !== undefined && prompts[task] !== undefined) {
          const p = prompts[task];
          instruction = typeof p === 'string' ? p : p[i % p.length];
        }
        // SALMONN's prompt files carry the audio placeholder themselves; the template adds it once.
        instruction = (instruction ?? '').replace(/<Speech><SpeechHere><\/Speech>|<SpeechHere>/g, '').trim();
        if (includeInput && inputText) {
          if (instruction.includes('{}')) instruction = instruction.replace('{}', () => inputText!);
          else instruction = instruction ? `${instruction}\n${inputText}` : inputText;
        }
        const prompt = instruction ? template.replace('{instruction}', instruction) : template.replace(/ ?\{instruction\}/, '');
        const rawId = it.dialogue_id ?? it.id ?? files[0];
        if (typeof rawId !== 'string' && typeof rawId !== 'number') throw new Error(`dialogue_id / id is ${describeValue(rawId)}, not a string or number`);
        const id = String(rawId);
        return { instruction, prompt, target, task, id, audioPaths, emotionSequence, inputText, trailingSilence: it.audio_files !== undefined };
      }),
    );
    return ds;
  }

  protected async load(r: Record_, index: number): Promise<SalmonnItem> {
    const parts: Float32Array[] = [];
    for (const p of r.audioPaths) {
      const why = notAFile(p);
      if (why) throw dataError(this.file, index, `audio file '${p}' ${why}`);
      try {
        parts.push((await readWav(p, { sampleRate: this.sampleRate })).samples);
      } catch (e) {
        throw dataError(this.file, index, `cannot read audio '${p}': ${(e as Error).message}`);
      }
    }
    // audio_files turns are each followed by the silence (the fork's dataset.py); expand_wav clips
    // have it between them (SALMONN's dataset.py)
    const gaps = r.trailingSilence ? parts.length : parts.length - 1;
    const total = parts.reduce((n, a) => n + a.length, 0) + this.silenceSamples * gaps;
    const len = Math.min(Math.max(total, this.minSamples), this.maxSamples);
    const audio = new Float32Array(len);
    let off = 0;
    for (let k = 0; k < parts.length && off < len; k++) {
      if (k > 0) off += this.silenceSamples;
      if (off >= len) break;
      audio.set(parts[k].subarray(0, len - off), off);
      off += parts[k].length;
    }
    const { trailingSilence: _t, ...item } = r;
    return { ...item, audioPaths: [...r.audioPaths], emotionSequence: r.emotionSequence && [...r.emotionSequence], audio };
  }
}
