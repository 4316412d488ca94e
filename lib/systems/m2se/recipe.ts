/**
 * M2SE / EmoVerse (seed 004) as a recipe: multistage, multitask LoRA SFT of InternVL2 (the
 * original's model: images and video frames through its vision tower), of a text-only
 * LLaMA-family model, or of the SALMONN speech LLM when the records carry audio, over ms-swift
 * records, and `swift infer`-style evaluation whose JSONL the M2SE metrics
 * (`et.metrics.m2seComputeResult`) score.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError, invalid, checkInt, checkNumber, checkOptionNames } from '../../errors';
import { tensor, Tensor } from '../../tensor';
import { LlamaForCausalLM } from '../../nn/llama';
import { applyLora } from '../../nn/lora';
import type { Tokenizer } from '../../data/tokenizer';
import { Trainer } from '../../train/trainer';
import type { Batch } from '../../train/trainer';
import { TrainingArguments } from '../../train/args';
import type { TrainingArgumentsInit } from '../../train/args';
import { Salmonn } from '../salmonn/model';
import { InternVL } from '../../nn/internvl';
import { INTERNVL_TEMPLATES } from '../../data/internvl';
import { lmAccuracy } from '../../metrics/m2se';
import { INTERNVL_LORA_TARGETS, M2seInternVLItem, internvlTemplateOf, internvlUnused, m2seInternVLCollate, m2seInternVLItems } from './internvl';
import {
  IGNORE,
  M2SE_SYSTEM,
  M2seAudioReport,
  M2seExample,
  M2seFormatOptions,
  M2seMediaReport,
  M2seRecord,
  M2seSalmonnItem,
  checkTokenizer,
  endId,
  m2seAudio,
  m2seCollate,
  m2seExamples,
  m2sePrompt,
  m2seRecords,
  m2seSalmonnCollate,
  m2seSalmonnItems,
  mediaReport,
} from './data';

/**
 * The recipe's Trainer defaults: the original scripts' flags (batch 1 × accumulation 8, 2 epochs
 * per stage) and ms-swift 2.x's defaults for what they leave unset (LoRA learning rate 1e-4,
 * warmup ratio 0.05, cosine schedule, gradient checkpointing on: swift turns it on for every model
 * that supports it, the vision tower included); one save per epoch of the adapters only.
 */
export const M2SE_TRAIN_ARGS = {
  per_device_train_batch_size: 1,
  gradient_accumulation_steps: 8,
  num_train_epochs: 2,
  learning_rate: 1e-4,
  lr_scheduler_type: 'cosine',
  warmup_ratio: 0.05,
  weight_decay: 0.1,
  max_grad_norm: 0.5,
  gradient_checkpointing: true,
  save_strategy: 'epoch',
  save_only_trainable: true,
  logging_steps: 5,
  disable_tqdm: true,
} as const;

/**
 * ms-swift 2.x's LoRA defaults (the original passes none): rank 8, alpha 32, dropout 0.05;
 * targets q_proj/v_proj for a LLaMA, and for InternVL2 every Linear of the LLM and mlp1
 * ({@link INTERNVL_LORA_TARGETS}, swift's multimodal DEFAULT).
 */
export const M2SE_LORA: { r: number; alpha: number; dropout: number; targetModules: string[] | string } = {
  r: 8,
  alpha: 32,
  dropout: 0.05,
  targetModules: ['q_proj', 'v_proj'],
};

/** Sum of the batch's token losses divided by numItemsInBatch (default: its own label tokens). */
async function salmonnLoss(model: Salmonn, batch: Batch, numItemsInBatch?: number): Promise<Tensor> {
  const n = numItemsInBatch ?? Math.max((batch.labels as Tensor).slice(1, 1).ne(IGNORE).sum().item(), 1);
  let loss: Tensor | null = null;
  if (batch.speech) {
    const out = await model.forward({ ...(batch.speech as { audio: Float32Array[]; prompt: string[]; target: string[] }), numItemsInBatch: n });
    for (const t of [out.logits, out.labels, out.attentionMask]) t?.dispose();
    loss = out.loss!;
  }
  if (batch.text) {
    const out = await model.llama_model.forward({ ...(batch.text as ReturnType<typeof m2seCollate>), numItemsInBatch: n });
    out.logits.dispose();
    loss = loss ? loss.add(out.loss!) : out.loss!;
  }
  return loss!;
}

// ---- the recipe ----

/** One stage of the recipe. */
export interface M2seStage {
  /** ms-swift JSON / JSONL files (or records), concatenated in order. */
  datasets: Array<string | readonly unknown[]>;
  /** Trainer arguments over {@link M2SE_TRAIN_ARGS}; `output_dir` default `<outputDir>/stage-<n>`. */
  args?: TrainingArgumentsInit;
}

/** Options of `m2seStages`. */
export interface M2seStagesOptions extends M2seFormatOptions {
  /** InternVL2 (images and videos through its vision tower), a text-only LLaMA, or SALMONN (records with audio then go through its audio path). */
  model: InternVL | LlamaForCausalLM | Salmonn;
  /** The tokenizer of InternVL2 or the LLaMA (SALMONN uses its own; this is ignored for it). */
  tokenizer?: Tokenizer;
  /** Logged training accuracy (`acc`), as swift's `--acc_strategy`: 'sentence' (the original scripts' choice, default) or 'token'. Not for SALMONN. */
  accStrategy?: 'token' | 'sentence';
  /** InternVL2: most tiles of an image (swift's MAX_NUM, default 12; 1 in a record with a video). */
  maxNum?: number;
  /** InternVL2: frames of a video (swift's VIDEO_SEGMENTS, default 8). */
  videoSegments?: number;
  /** InternVL2: ms-swift's template, default from the LLM ('internvl2-phi3' for Phi-3, else 'internvl2'). */
  template?: keyof typeof INTERNVL_TEMPLATES;
  stages: M2seStage[];
  /** Where stages write when their args name no output_dir. */
  outputDir?: string;
  /** LoRA over {@link M2SE_LORA}, or false for a full fine-tune. Skipped when the model (SALMONN: its LLaMA) already has adapters. */
  lora?: Partial<typeof M2SE_LORA> | false;
  /** Folder for relative media paths (SALMONN): default the dataset file's folder, or the working directory for records given in memory. */
  mediaRoot?: string;
}

/** What one M2SE stage did: its output folder, the examples used and dropped, media the model could not use, the steps run. */
export interface M2seStageResult {
  outputDir: string;
  examples: number;
  tooLong: number;
  /** Media the model could not use: everything for a text-only LLaMA; images and video frames for SALMONN; audio for InternVL2. */
  unusedMedia: M2seMediaReport;
  /** SALMONN only: the audio it took. */
  audio?: M2seAudioReport;
  globalStep: number;
  trainingLoss: number;
}

/** A dataset's records and the folder its relative media paths resolve against. */
function readDatasets(datasets: Array<string | readonly unknown[]>, mediaRoot?: string): Array<{ records: M2seRecord[]; root: string; name: string }> {
  return datasets.map((d, k) => ({
    records: m2seRecords(d),
    root: mediaRoot ?? (typeof d === 'string' ? path.dirname(path.resolve(d)) : process.cwd()),
    name: typeof d === 'string' ? `'${d}'` : `datasets[${k}]`,
  }));
}

function checkModel(model: unknown, tokenizer: unknown): { salmonn: Salmonn | null; internvl: InternVL | null; tokenizer: Tokenizer } {
  if (model instanceof Salmonn) return { salmonn: model, internvl: null, tokenizer: model.tokenizer };
  if (model instanceof InternVL) {
    const tok = checkTokenizer(tokenizer);
    const ctx = tok.tokenToId('<IMG_CONTEXT>');
    if (ctx === undefined) throw new EmotorchError("M2SE: the tokenizer has no '<IMG_CONTEXT>' token (InternVL2's tokenizer has it)", 'ERR_INVALID_ARG');
    if (model.imgContextTokenId !== null && model.imgContextTokenId !== ctx) {
      throw new EmotorchError(
        `M2SE: the model's imgContextTokenId is ${model.imgContextTokenId} but the tokenizer's <IMG_CONTEXT> is ${ctx}`,
        'ERR_INVALID_ARG',
      );
    }
    model.imgContextTokenId = ctx;
    return { salmonn: null, internvl: model, tokenizer: tok };
  }
  if (!(model instanceof LlamaForCausalLM)) invalid('an et.systems.m2se.InternVL, a LlamaForCausalLM or an et.systems.salmonn.Salmonn', 'model', model);
  return { salmonn: null, internvl: null, tokenizer: checkTokenizer(tokenizer) };
}

/** The options InternVL2's items take, checked. */
function internvlOptions(
  opts: { maxNum?: number; videoSegments?: number; template?: string; system?: string; maxLength?: number },
  internvl: InternVL | null,
): Record<string, unknown> {
  if (!internvl) {
    for (const k of ['maxNum', 'videoSegments', 'template'] as const) if (opts[k] !== undefined) invalid('unset (it is for an InternVL2 model)', k, opts[k]);
    return {};
  }
  return {
    maxNum: opts.maxNum,
    videoSegments: opts.videoSegments,
    template: opts.template ?? internvlTemplateOf(internvl),
    system: opts.system,
    maxLength: opts.maxLength,
  };
}

/**
 * Where swift 2.6.1's generation stops for an InternVL2 template: its EOS (`ends`: the template's
 * separator, `<|im_end|>` / `<|end|>`, which `get_model_tokenizer_internvl` or the model's
 * registration makes the EOS, so not the tokenizer's own `</s>` / `<|endoftext|>`) and its stop word
 * (`suffix`: the template's `suffix[-1]`, the same token's text).
 * @param tok the tokenizer
 * @param template the InternVL2 template
 * @returns the stop ids and the stop word
 * @throws EmotorchError ERR_INVALID_ARG when the tokenizer lacks the separator
 * @example
 * internvlStop(tok, 'internvl2-phi3');   // { ends: [32007], suffix: '<|end|>' }
 */
export function internvlStop(tok: Tokenizer, template: keyof typeof INTERNVL_TEMPLATES): { ends: number[]; suffix: string } {
  const suffix = INTERNVL_TEMPLATES[template].sep;
  const id = tok.tokenToId(suffix);
  if (id === undefined) throw new EmotorchError(`M2SE: the tokenizer has no '${suffix}' token (the ${template} template's end)`, 'ERR_INVALID_ARG');
  return { ends: [id], suffix };
}

/** The ids that end an answer: swift's (see internvlStop) for InternVL2, else the tokenizer's end. */
function endIds(tok: Tokenizer, internvl: InternVL | null, template?: keyof typeof INTERNVL_TEMPLATES): number[] {
  if (!internvl) return [endId(tok)];
  return internvlStop(tok, template ?? internvlTemplateOf(internvl)).ends;
}

function accMetric(strategy: unknown): (outputs: Record<string, unknown>, batch: Batch) => Record<string, number> {
  if (strategy !== 'token' && strategy !== 'sentence') invalid("'token' or 'sentence'", 'accStrategy', strategy);
  return (outputs, batch): Record<string, number> =>
    outputs.logits instanceof Tensor && batch.labels instanceof Tensor ? { acc: lmAccuracy(outputs.logits, batch.labels, strategy) } : {};
}

/**
 * Runs the M2SE recipe: LoRA on the model (once), then one Trainer run per stage, each over its
 * own datasets and arguments, every stage continuing from the previous one's weights (stage 2
 * starts from stage 1's adapter), logging swift's `acc` next to the loss. With InternVL2 (the
 * original's model), records go through ms-swift 2.6.1's template with their images as tiles and
 * their videos as 8 frames, through the vision tower; LoRA on every Linear of the LLM and mlp1,
 * the vision tower frozen; audio is counted, warned about and returned. With a text-only LLaMA, media in the records are counted per
 * stage, warned about and returned, not used: the model trains on the text. With SALMONN, records
 * with `audios` (or, without them, `videos`, whose audio track ffmpeg decodes) train through its
 * audio path with its prompt and target; images and video frames are counted, warned about and
 * returned.
 * Guide: [M2SE and InternVL2](../../../docs/m2se.md).
 * @param opts model, tokenizer, stages, outputDir, lora, system, maxLength, mediaRoot
 * @returns one result per stage
 * @throws EmotorchError ERR_INVALID_ARG for bad options, ERR_IO / ERR_FORMAT on a dataset or a media
 *   file (missing files and a missing ffmpeg are found before any training), ERR_DATA when a stage
 *   has no example that fits maxLength
 * @example
 * await et.systems.m2se.m2seStages({ model, tokenizer, outputDir: 'runs/m2se', stages: [
 *   { datasets: ['emt_data_first.json'] }, { datasets: ['emt_data_second.json'] }] });
 */
export async function m2seStages(opts: M2seStagesOptions): Promise<M2seStageResult[]> {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  checkOptionNames(
    opts,
    ['model', 'tokenizer', 'stages', 'outputDir', 'lora', 'mediaRoot', 'system', 'maxLength', 'accStrategy', 'maxNum', 'videoSegments', 'template'],
    'm2seStages',
  );
  const { model, stages } = opts;
  const { salmonn, internvl, tokenizer } = checkModel(model, opts.tokenizer);
  const ivlOpts = internvlOptions(opts, internvl);
  const trainMetrics = salmonn ? undefined : accMetric(opts.accStrategy ?? 'sentence');
  if (salmonn && opts.accStrategy !== undefined) invalid('unset (SALMONN logs no accuracy)', 'accStrategy', opts.accStrategy);
  if (!Array.isArray(stages) || stages.length === 0) invalid('a non-empty array of stages', 'stages', stages);
  stages.forEach((s, i) => {
    if (!s || !Array.isArray(s.datasets) || s.datasets.length === 0) invalid('a stage with a non-empty datasets list', `stages[${i}]`, s);
    if (!s.args?.output_dir && typeof opts.outputDir !== 'string') invalid('a string (or output_dir in every stage)', 'outputDir', opts.outputDir);
  });
  if (opts.mediaRoot !== undefined && typeof opts.mediaRoot !== 'string') invalid('a folder path', 'mediaRoot', opts.mediaRoot);
  const stageArgs = stages.map(
    (s, i) =>
      new TrainingArguments({
        ...M2SE_TRAIN_ARGS,
        ...s.args,
        output_dir: s.args?.output_dir ?? path.join(opts.outputDir!, `stage-${i + 1}`),
      } as TrainingArgumentsInit),
  );
  if (opts.lora !== false && opts.lora !== undefined && typeof opts.lora !== 'object') invalid('LoRA options or false', 'lora', opts.lora);
  // every stage's records (and for SALMONN its media files and ffmpeg) are checked before any training
  const data: Array<{ recs: M2seRecord[]; examples: M2seExample[] | M2seSalmonnItem[] | M2seInternVLItem[]; tooLong: number }> = [];
  for (const s of stages) {
    const sets = readDatasets(s.datasets, opts.mediaRoot);
    const recs = sets.flatMap((d) => d.records);
    if (internvl) {
      const items: M2seInternVLItem[] = [];
      let tooLong = 0;
      for (const d of sets) {
        const r = await m2seInternVLItems(d.records, internvl, tokenizer, { ...ivlOpts, mediaRoot: d.root, where: d.name });
        for (const it of r.items) items.push(it);
        tooLong += r.tooLong;
      }
      data.push({ recs, examples: items, tooLong });
    } else if (salmonn) {
      const items: M2seSalmonnItem[] = [];
      let tooLong = 0;
      for (const d of sets) {
        const r = await m2seSalmonnItems(d.records, salmonn, { mediaRoot: d.root, maxLength: opts.maxLength, where: d.name });
        for (const it of r.items) items.push(it);
        tooLong += r.tooLong;
      }
      data.push({ recs, examples: items, tooLong });
    } else {
      const { examples, tooLong } = await m2seExamples(recs, tokenizer, { system: opts.system, maxLength: opts.maxLength });
      data.push({ recs, examples, tooLong });
    }
  }
  const loraTarget = salmonn ? salmonn.llama_model : model;
  if (opts.lora !== false && !loraTarget.namedParameters().some(([n]) => n.includes('.lora_'))) {
    const l = { ...M2SE_LORA, ...(internvl ? { targetModules: INTERNVL_LORA_TARGETS } : {}), ...(opts.lora || {}) };
    checkNumber(l.dropout, 'lora.dropout', 0, 1);
    applyLora(loraTarget, l);
  }
  const padId = tokenizer.padTokenId ?? 0;
  const results: M2seStageResult[] = [];
  for (let i = 0; i < stages.length; i++) {
    const { recs, examples, tooLong } = data[i];
    const media = internvl ? { unusedMedia: internvlUnused(recs) } : mediaReport(recs, !!salmonn);
    if (media.unusedMedia.records) {
      const u = media.unusedMedia;
      process.emitWarning(
        internvl
          ? `M2SE stage ${i + 1}: ${u.records} records carry audio InternVL2 cannot encode (${u.audios} files); trained on their text, images and video frames`
          : salmonn
            ? `M2SE stage ${i + 1}: ${u.records} records carry media SALMONN cannot encode (${u.images} images, the frames of ${u.videos} videos); trained on their audio and text`
            : `M2SE stage ${i + 1}: ${u.records} records carry media a text-only model cannot use (${u.images} images, ${u.videos} videos, ${u.audios} audios); trained on their text`,
      );
    }
    if (examples.length === 0) throw new EmotorchError(`M2SE stage ${i + 1}: no example fits maxLength (${tooLong} too long)`, 'ERR_DATA');
    const outputDir = stageArgs[i].output_dir;
    const trainDataset = { length: examples.length, get: (k: number) => examples[k] } as never;
    const side = internvl ? (internvl.config.force_image_size ?? internvl.vision_model.config.image_size) : 0;
    const trainer = internvl
      ? new Trainer<M2seInternVLItem>({
          model: internvl,
          args: stageArgs[i],
          trainDataset,
          trainMetrics,
          dataCollator: (b) => m2seInternVLCollate(b, { imageSize: side, padId, videoSegments: opts.videoSegments }),
        })
      : salmonn
        ? new Trainer<M2seSalmonnItem>({
            model: salmonn,
            args: stageArgs[i],
            trainDataset,
            dataCollator: m2seSalmonnCollate,
            computeLoss: (_m, batch, ctx) => salmonnLoss(salmonn, batch, ctx.numItemsInBatch),
          })
        : new Trainer<M2seExample>({ model, args: stageArgs[i], trainDataset, trainMetrics, dataCollator: (b) => m2seCollate(b, padId) });
    const out = await trainer.train();
    results.push({ outputDir, examples: examples.length, tooLong, ...media, globalStep: out.globalStep, trainingLoss: out.trainingLoss });
  }
  return results;
}

/** Options of `m2seInfer`. */
export interface M2seInferOptions {
  /** InternVL2 (records' images and videos through its vision tower), a text-only LLaMA, or SALMONN (records with audio are answered from their audio). */
  model: InternVL | LlamaForCausalLM | Salmonn;
  /** The tokenizer of InternVL2 or the LLaMA (SALMONN uses its own). */
  tokenizer?: Tokenizer;
  /** InternVL2: as {@link M2seStagesOptions.maxNum}. */
  maxNum?: number;
  /** InternVL2: as {@link M2seStagesOptions.videoSegments}. */
  videoSegments?: number;
  /** InternVL2: as {@link M2seStagesOptions.template}. */
  template?: keyof typeof INTERNVL_TEMPLATES;
  /** The test JSON / JSONL (or records). */
  dataset: string | readonly unknown[];
  /** The JSONL to write. */
  outFile: string;
  system?: string;
  /** Default 64. */
  maxNewTokens?: number;
  /** Folder for relative media paths (SALMONN): default the dataset file's folder, or the working directory. */
  mediaRoot?: string;
  /**
   * `response` as swift 2.6.1's `generate_ids_to_response` writes it (default false): the answer
   * up to its end token, decoded with special tokens kept and its spaces as they are. true: with
   * special tokens skipped and the ends trimmed.
   */
  trimResponse?: boolean;
}

/**
 * An answer's text as swift 2.6.1's inference writes it. Where swift's generation stops: at the
 * first token in `ends` (swift's EOS), or, given `suffix` (the template's `suffix[-1]`, a stop word
 * of its `StopWordsCriteria`), at the first token after which the decoded text of the last 20 new
 * tokens holds it; later tokens are not swift's. Then `generate_ids_to_response`: the end token
 * dropped, the rest decoded with special tokens kept and spaces as they are, a trailing `suffix`
 * cut off; with `trim`, special tokens skipped and the ends trimmed instead. swift loads InternVL2's
 * tokenizer as the slow class (`use_fast=False`), whose decode this follows by `tokenizer_class`:
 * `InternLM2Tokenizer` (InternVL2-2B/8B/26B, EmoVerse), `LlamaTokenizer` (InternVL2-4B's Phi-3-mini)
 * and `Qwen2Tokenizer` (InternVL2-1B); another class decodes as its tokenizer.json does.
 * @param tokenizer the model's tokenizer
 * @param tokens the generated tokens (the prompt not included)
 * @param ends the ids generation stops at (swift's EOS first)
 * @param trim skip special tokens and trim (default false)
 * @param suffix swift's template suffix (`'<|im_end|>'`, `'<|end|>'`), a stop word; none by default
 * @returns the response
 * @throws EmotorchError ERR_INVALID_ARG for a bad argument
 * @example
 * await et.systems.m2se.m2seResponse(tok, ids, [tok.tokenToId('<|end|>')!], false, '<|end|>');
 */
export async function m2seResponse(tokenizer: Tokenizer, tokens: readonly number[], ends: readonly number[], trim = false, suffix?: string): Promise<string> {
  if (!tokenizer || typeof tokenizer !== 'object' || typeof (tokenizer as { idToToken?: unknown }).idToToken !== 'function')
    invalid('an et.data.Tokenizer', 'tokenizer', tokenizer);
  const ids = (v: unknown, name: string): void => {
    if (!Array.isArray(v) || !v.every((t) => Number.isSafeInteger(t) && t >= 0)) invalid('an array of token ids (non-negative integers)', name, v);
  };
  ids(tokens, 'tokens');
  ids(ends, 'ends');
  if (typeof trim !== 'boolean') invalid('a boolean', 'trim', trim);
  if (suffix !== undefined && (typeof suffix !== 'string' || !suffix)) invalid('a non-empty string (or undefined)', 'suffix', suffix);
  const decode = slowDecoder(tokenizer, ends.length ? tokenizer.idToToken(ends[0]) : undefined);
  let cut = -1;
  for (let k = 0; k < tokens.length && cut < 0; k++) {
    if (ends.includes(tokens[k]) || (suffix && (await decode(tokens.slice(Math.max(0, k - 19), k + 1))).includes(suffix))) cut = k;
  }
  const answer = cut < 0 ? [...tokens] : ends.includes(tokens[cut]) ? tokens.slice(0, cut) : tokens.slice(0, cut + 1);
  if (trim) return (await tokenizer.decode(answer, { skipSpecialTokens: true })).trim();
  const text = await decode(answer);
  return suffix && text.endsWith(suffix) ? text.slice(0, text.length - suffix.length) : text;
}

/** transformers' `clean_up_tokenization` (InternLM2Tokenizer applies it to every text run). */
function cleanUpTokenization(s: string): string {
  return s
    .replace(/ \./g, '.')
    .replace(/ \?/g, '?')
    .replace(/ !/g, '!')
    .replace(/ ,/g, ',')
    .replace(/ ' /g, "'")
    .replace(/ n't/g, "n't")
    .replace(/ 'm/g, "'m")
    .replace(/ 's/g, "'s")
    .replace(/ 've/g, "'ve")
    .replace(/ 're/g, "'re");
}

/**
 * `tokenizer.decode(ids)` as swift 2.6.1's slow tokenizer writes it (transformers'
 * `PreTrainedTokenizer._decode`), `eos` being swift's EOS: the special tokens are BOS, EOS, UNK,
 * PAD and `additional_special_tokens`; added tokens that are not special, and special ones past the
 * base vocabulary, stand alone (`legacy_added_tokens`), joined to the text around them by one space
 * (InternLM2, Llama) or none (Qwen2's `decode`); the runs between them go through the class's
 * `convert_tokens_to_string`. Another class: its tokenizer.json decode.
 */
/** The fields of a tokenizer.json the slow decodes read (its own snake_case names). */
type TokenizerJsonFields = {
  model?: { unk_token?: unknown };
  added_tokens?: Array<{ id: number; content: string; special: boolean }>;
  normalizer?: unknown;
  pre_tokenizer?: unknown;
};

function slowDecoder(tok: Tokenizer, eos: string | undefined): (ids: readonly number[]) => Promise<string> {
  const cfg = tok.config;
  const cls = cfg.tokenizer_class;
  if (cls !== 'InternLM2Tokenizer' && cls !== 'LlamaTokenizer' && cls !== 'Qwen2Tokenizer') return (ids) => tok.decode(ids, { skipSpecialTokens: false });
  const name = (v: unknown): string | undefined =>
    typeof v === 'string'
      ? v
      : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string'
        ? (v as { content: string }).content
        : undefined;
  const additional = Array.isArray(cfg.additional_special_tokens) ? cfg.additional_special_tokens.map(name).filter((t): t is string => t !== undefined) : [];
  const special = new Set([tok.bosToken, eos ?? tok.eosToken, tok.unkToken, tok.padToken, ...additional].filter((t): t is string => t !== undefined));
  const base = tok.getVocabSize(false);
  // the slow tokenizer's added tokens: tokenizer_config.json's added_tokens_decoder (save_pretrained writes
  // them all there) and those past the base vocabulary; without that table, all of emotorch's
  const table =
    cfg.added_tokens_decoder && typeof cfg.added_tokens_decoder === 'object'
      ? Object.values(cfg.added_tokens_decoder as Record<string, unknown>).map(name)
      : null;
  const json = tok.toJSON() as TokenizerJsonFields;
  const addedAll = json.added_tokens ?? [];
  const added = table
    ? [...table.filter((t): t is string => t !== undefined), ...addedAll.filter((t) => t.id >= base).map((t) => t.content)]
    : addedAll.map((t) => t.content);
  const legacy = new Set([...added.filter((t) => !special.has(t)), ...additional.filter((t) => (tok.tokenToId(t) ?? -1) >= base)]);
  // SentencePiece's control pieces (the model's BOS / EOS, which emotorch lists as special added tokens) decode to nothing
  const unkPiece = json.model?.unk_token;
  const control = new Set(addedAll.filter((t) => t.id < base && t.special && t.content !== unkPiece).map((t) => t.content));
  const ws =
    cls === 'Qwen2Tokenizer' ? { strip: false, more: false, control } : { ...spaceRule(json, cls === 'InternLM2Tokenizer' || cfg.legacy !== false), control };
  const runText =
    cls === 'InternLM2Tokenizer'
      ? (run: string[]): string => cleanUpTokenization(llamaTokensToString(run, special, ws, true, false, true))
      : cls === 'LlamaTokenizer'
        ? (run: string[]): string => llamaTokensToString(run, special, ws, cfg.legacy !== false, cfg.add_prefix_space !== false)
        : byteLevelTokensToString;
  const cleanUp = cls === 'LlamaTokenizer' && cfg.clean_up_tokenization_spaces === true;
  return async (ids) => {
    const parts: string[] = [];
    let run: string[] = [];
    for (const id of ids) {
      const t = tok.idToToken(id) ?? '';
      if (legacy.has(t)) {
        if (run.length) {
          const s = runText(run);
          if (s.length) parts.push(s);
          run = [];
        }
        parts.push(t);
      } else {
        run.push(t);
      }
    }
    if (run.length) parts.push(runText(run));
    const text = parts.join(cls === 'Qwen2Tokenizer' ? '' : ' ');
    return cleanUp ? cleanUpTokenization(text) : text;
  };
}

/**
 * A run of SentencePiece tokens as the slow `LlamaTokenizer.convert_tokens_to_string` (and InternLM2's,
 * its legacy form) writes it: special tokens as they are, the text between them SentencePiece's decode;
 * `legacy`: a space before each run of text a special token follows (InternLM2's: the first too); not `legacy` (`add_dummy_prefix` off): the first token's `▁` dropped when
 * `add_prefix_space`, and a space after a first special token when the next does not begin with `▁`.
 */
function llamaTokensToString(
  tokens: readonly string[],
  special: ReadonlySet<string>,
  ws: SpaceRule,
  legacy: boolean,
  addPrefixSpace: boolean,
  internlm2 = false,
): string {
  const toks = [...tokens];
  if (!legacy && addPrefixSpace && toks.length && toks[0].startsWith('\u2581')) toks[0] = toks[0].slice(1);
  let out = '';
  let text: string[] = [];
  let prevSpecial = false;
  toks.forEach((t, i) => {
    if (special.has(t)) {
      if (!prevSpecial && (i !== 0 || internlm2) && legacy) out += ' ';
      out += sentencePieceDecode(text, ws) + t;
      prevSpecial = true;
      text = [];
    } else {
      if (!legacy && prevSpecial && i === 1 && addPrefixSpace && !t.startsWith('\u2581')) out += ' ';
      text.push(t);
      prevSpecial = false;
    }
  });
  return out + sentencePieceDecode(text, ws);
}

/** GPT-2's byte ↔ character table (Qwen2's `bytes_to_unicode`), character to byte. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const m = new Map<string, number>();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    m.set(String.fromCodePoint(printable ? b : 256 + n++), b);
  }
  return m;
})();

const UTF8_REPLACE = new TextDecoder('utf-8', { fatal: false });

/** Qwen2Tokenizer's `convert_tokens_to_string`: each character its byte, read as UTF-8 with `errors='replace'`. */
function byteLevelTokensToString(tokens: readonly string[]): string {
  const bytes: number[] = [];
  for (const c of tokens.join('')) {
    const b = BYTE_OF_CHAR.get(c);
    if (b === undefined) throw new EmotorchError(`Qwen2Tokenizer: the token character '${c}' is not one of the byte-level alphabet`, 'ERR_FORMAT');
    bytes.push(b);
  }
  return UTF8_REPLACE.decode(Uint8Array.from(bytes));
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Bytes read as UTF-8 the way SentencePiece reads byte pieces: a whole well-formed character is
 * kept; otherwise its first byte becomes one U+FFFD and reading goes on from the next byte (so a
 * cut-off three-byte character is two U+FFFD, where TextDecoder writes one).
 */
function utf8OneByteReplacement(bytes: readonly number[]): string {
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i];
    const n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    let ch: string | null = null;
    if (n && i + n <= bytes.length) {
      try {
        ch = UTF8.decode(Uint8Array.from(bytes.slice(i, i + n)));
      } catch {
        ch = null;
      }
    }
    if (ch === null) {
      out += '\uFFFD';
      i += 1;
    } else {
      out += ch;
      i += n;
    }
  }
  return out;
}

/**
 * SentencePiece's `decode` of pieces (`sp_model.decode`, as the slow tokenizer calls it): control
 * pieces (`ws.control`) are dropped, `▁` is a space; at the start (`ws.strip`: the model adds a dummy prefix or removes extra whitespace) the
 * first piece's leading `▁` is dropped, and with `ws.more` (removing extra whitespace) so is the next
 * one's while the pieces so far came out empty; byte pieces (`<0x0A>`) are gathered and read as
 * UTF-8 a character at a time, each byte of a malformed or cut-off character one U+FFFD (where a
 * tokenizer.json's ByteFallback replaces every byte of a malformed run).
 */
function sentencePieceDecode(pieces: readonly string[], ws: SpaceRule): string {
  let out = '';
  let bytes: number[] = [];
  let atStart = ws.strip;
  const flush = (): void => {
    if (bytes.length) out += utf8OneByteReplacement(bytes);
    bytes = [];
  };
  for (const p of pieces) {
    const b = /^<0x([0-9A-Fa-f]{2})>$/.exec(p);
    if (b) {
      bytes.push(parseInt(b[1], 16));
      atStart = false;
      continue;
    }
    flush();
    if (ws.control?.has(p)) continue;
    let piece = p;
    if (atStart) {
      if (piece.startsWith('\u2581')) piece = piece.slice(1);
      atStart = ws.more && piece.length === 0;
    }
    out += piece.replace(/\u2581/g, ' ');
  }
  flush();
  return out;
}

/** When SentencePiece's decode drops leading spaces (see sentencePieceDecode), and its control pieces. */
interface SpaceRule {
  strip: boolean;
  more: boolean;
  control?: ReadonlySet<string>;
}

/**
 * The decode's leading-space rule of a SentencePiece tokenizer's model: `add_dummy_prefix` (off
 * for a non-legacy LlamaTokenizer, which loads the model with it off) and `remove_extra_whitespaces`,
 * read from the normalizer emotorch built from the `.model` (a `Prepend` of `▁`; the collapsing of
 * runs of spaces); a tokenizer.json (no such normalizer): the dummy prefix as its Metaspace says.
 */
function spaceRule(json: TokenizerJsonFields, dummyAllowed: boolean): SpaceRule {
  const seen: Array<Record<string, unknown>> = [];
  const walk = (v: unknown): void => {
    if (!v || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    seen.push(o);
    for (const k of ['normalizers', 'pretokenizers']) if (Array.isArray(o[k])) (o[k] as unknown[]).forEach(walk);
  };
  walk(json.normalizer);
  walk(json.pre_tokenizer);
  const more = seen.some((o) => o.type === 'Replace' && (o.pattern as { Regex?: unknown } | undefined)?.Regex === ' {2,}');
  const dummy = seen.some(
    (o) =>
      (o.type === 'Prepend' && o.prepend === '\u2581') ||
      (o.type === 'Metaspace' && (o.prepend_scheme === 'always' || o.prepend_scheme === 'first' || o.add_prefix_space === true)),
  );
  return { strip: (dummyAllowed && dummy) || more, more };
}

/**
 * `swift infer` over a test set: greedy generation per record (stopping at the end token; for
 * InternVL2 where swift 2.6.1 stops: the template's end token, or its
 * text in the last 20 new tokens; with the record's images and videos), written
 * as JSONL lines `{ system, query, response, label, history, images?, videos?, audios? }` that
 * `et.metrics.readSwiftResults` / `m2seComputeResult` score. With SALMONN, records with audio are
 * answered from it (greedy, SALMONN's prompt); its system field is then SALMONN's (none: '').
 * @returns the file, the record count, the media the model could not use (and SALMONN's audio)
 * @throws EmotorchError ERR_INVALID_ARG for bad options, ERR_IO / ERR_FORMAT on the files (a
 *   missing media file or ffmpeg before anything is generated)
 * @example
 * await et.systems.m2se.m2seInfer({ model, tokenizer, dataset: 'meld_test_data.json', outFile: 'meld.jsonl' });
 * et.metrics.m2seComputeResult('meld.jsonl', 'emotion');
 */
export async function m2seInfer(opts: M2seInferOptions): Promise<{ file: string; count: number; unusedMedia: M2seMediaReport; audio?: M2seAudioReport }> {
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  checkOptionNames(
    opts,
    ['model', 'tokenizer', 'dataset', 'outFile', 'system', 'maxNewTokens', 'mediaRoot', 'maxNum', 'videoSegments', 'template', 'trimResponse'],
    'm2seInfer',
  );
  const { salmonn, internvl, tokenizer } = checkModel(opts.model, opts.tokenizer);
  const ivlOpts = internvlOptions(opts, internvl);
  if (typeof opts.outFile !== 'string' || !opts.outFile) invalid('a file path', 'outFile', opts.outFile);
  const maxNew = checkInt(opts.maxNewTokens ?? 64, 'maxNewTokens', 1);
  const trim = opts.trimResponse ?? false;
  if (typeof trim !== 'boolean') invalid('a boolean', 'trimResponse', opts.trimResponse);
  const system = opts.system ?? M2SE_SYSTEM;
  if (typeof system !== 'string') invalid('a string', 'system', system);
  if (opts.mediaRoot !== undefined && typeof opts.mediaRoot !== 'string') invalid('a folder path', 'mediaRoot', opts.mediaRoot);
  const [set] = readDatasets([opts.dataset], opts.mediaRoot);
  const recs = set.records;
  const items = salmonn ? (await m2seSalmonnItems(recs, salmonn, { mediaRoot: set.root, maxLength: Number.MAX_SAFE_INTEGER, where: set.name })).items : null;
  const ivlItems = internvl
    ? (await m2seInternVLItems(recs, internvl, tokenizer, { ...ivlOpts, system, mediaRoot: set.root, where: set.name, inference: true })).items
    : null;
  const ends = salmonn ? [salmonn.ids.eos] : endIds(tokenizer, internvl, opts.template);
  const end = ends[0];
  const llm = salmonn ? salmonn.llama_model : internvl ? internvl.language_model : (opts.model as LlamaForCausalLM);
  const side = internvl ? (internvl.config.force_image_size ?? internvl.vision_model.config.image_size) : 0;
  const wasTraining = opts.model.training;
  opts.model.eval();
  const lines: string[] = [];
  try {
    for (let i = 0; i < recs.length; i++) {
      const r = recs[i];
      let toks: number[];
      if (ivlItems) {
        const b = await m2seInternVLCollate([ivlItems[i]], { imageSize: side, videoSegments: opts.videoSegments });
        const newTokens = await internvl!.generate(
          { inputIds: b.inputIds as Tensor, pixelValues: (b.pixelValues as Tensor | undefined) ?? null },
          { maxNewTokens: maxNew, eosTokenId: ends, padTokenId: end },
        );
        toks = Array.from(newTokens.dataSync() as ArrayLike<number | bigint>, Number);
        for (const v of Object.values(b)) if (v instanceof Tensor) v.dispose();
        newTokens.dispose();
      } else if (items && items[i].audio.length) {
        [toks] = await salmonn!.generateTokens([await m2seAudio(items[i].audio)], [items[i].prompt], { numBeams: 1, maxNewTokens: maxNew });
      } else {
        const ids = items
          ? [salmonn!.ids.bos, ...(await tokenizer.encode(items[i].prompt, { addSpecialTokens: false }))]
          : await tokenizer.encode(m2sePrompt(r, system));
        const { newTokens } = await llm.generate({ inputIds: tensor([ids], { dtype: 'int64' }) }, { maxNewTokens: maxNew, eosTokenId: end, padTokenId: end });
        toks = Array.from(newTokens.dataSync() as ArrayLike<number | bigint>, Number);
      }
      const response = await m2seResponse(
        tokenizer,
        toks,
        ends,
        trim,
        internvl ? internvlStop(tokenizer, opts.template ?? internvlTemplateOf(internvl)).suffix : undefined,
      );
      const media = Object.fromEntries((['images', 'videos', 'audios'] as const).filter((k) => r[k].length).map((k) => [k, r[k]]));
      lines.push(JSON.stringify({ system: salmonn ? '' : (r.system ?? system), query: r.query, response, label: r.response, history: r.history, ...media }));
    }
  } finally {
    if (wasTraining) opts.model.train();
  }
  try {
    await fs.promises.mkdir(path.dirname(path.resolve(opts.outFile)), { recursive: true });
    await fs.promises.writeFile(opts.outFile, lines.map((l) => `${l}\n`).join(''));
  } catch (e) {
    throw new EmotorchError(`cannot write '${opts.outFile}': ${(e as Error).message}`, 'ERR_IO');
  }
  return { file: opts.outFile, count: recs.length, ...(internvl ? { unusedMedia: internvlUnused(recs) } : mediaReport(recs, !!salmonn)) };
}
