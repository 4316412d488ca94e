/**
 * `emotorch spectra finetune`: SPECTRA's `main.py --mode finetune` with the flags of
 * `scripts/finetune.sh` as main.py parses them, on `{data_path}/{task}/{train,valid,test}.pkl`,
 * through `et.systems.spectra.Spectra.finetune` (the paper's recipe on the Trainer).
 * `emotorch spectra pretrain`: `main.py --mode pretrain` with the flags of `scripts/train-960.sh`,
 * through `et.systems.spectra.pretrainSpectra`.
 */
import * as path from 'path';
import * as et from '../index';
import { Command, UsageError, Values, need, num, outputFolder, str } from './common';

/** The longest clip `--audio_length` may ask for, in seconds (every clip is padded to it: 24 clips of 10 min are 0.9 GB). */
const MAX_AUDIO_SECONDS = 600;
/** The most tokens `--text_length` may ask for (RoBERTa-style text encoders have 512 positions; SPECTRA's 514). */
const MAX_TEXT_LENGTH = 1 << 16;

const TASKS = ['mosi', 'mosei', 'iemocap', 'mintrec'] as const;

/**
 * `--apex_level`: main.py builds apex's FusedAdam (bias_correction=False) above 0 and transformers'
 * AdamW at 0. main.py drops to 0 on a machine without CUDA (apex cannot run there); emotorch runs
 * FusedAdam's update on any device, so the released recipe's optimizer is what a CPU run gets too.
 */
function apexLevel(v: Values): number {
  const x = num(v, 'apex_level')!;
  if (!Number.isInteger(x) || x < 0 || x > 3) throw new UsageError(`--apex_level takes 0 to 3 (apex's O0-O3), not ${x}`);
  return x;
}

export const SPECTRA_FINETUNE: Command = {
  summary: "SPECTRA's main.py fine-tuning (scripts/finetune.sh's flags): train on train.pkl, choose the best epoch on valid.pkl, score test.pkl",
  flags: {
    model_path: { kind: 'string', help: 'the pre-trained SPECTRA folder (audio_config.json, text_config.json, pytorch_model.bin)' },
    data_path: { kind: 'string', help: 'the data root: <data_path>/<task>/{train,valid,test}.pkl', default: './data' },
    task: { kind: 'string', help: 'iemocap | mosi | mosei | mintrec' },
    batch_size: { kind: 'number', help: 'samples per batch (finetune.sh: 24)', default: '256' },
    epochs: { kind: 'number', help: 'epochs (finetune.sh: 5)', default: '10' },
    grad_acc: { kind: 'number', help: 'batches per optimizer step (finetune.sh: 1)', default: '16' },
    lr: { kind: 'number', help: 'learning rate (finetune.sh: 2e-5)', default: '1e-4' },
    warmup: { kind: 'number', help: 'warmup as a share of the steps; 0 steps → cosine, else linear decay', default: '0.01' },
    weight_decay: { kind: 'number', help: 'weight decay (not on biases and LayerNorms)', default: '0.01' },
    grad_norm: { kind: 'number', help: 'gradient clipping norm, after every batch (0: none)', default: '1' },
    audio_length: { kind: 'number', help: 'seconds every clip is cut or padded to', default: '10' },
    text_length: { kind: 'number', help: 'tokens at most (the history is cut from the left)', default: '512' },
    seed: { kind: 'number', help: 'random seed', default: '42' },
    multi_audio: { kind: 'bool', help: "the [audio_list, items] pickle layout with the previous turn's clip (iemocap: always)" },
    use_turn_ids: { kind: 'bool', help: 'accepted as main.py does; turn ids are used whenever the data has them' },
    apex_level: {
      kind: 'number',
      help: "apex level: above 0 apex's FusedAdam without bias correction (finetune.sh / train-960.sh: 1) and float16 autocast on CUDA; 0 transformers 4.x's AdamW",
      default: '0',
    },
    mode: { kind: 'string', help: "main.py's mode: this command is 'finetune' (finetune.sh leaves main.py's default 'pretrain')" },
    transcripts: { kind: 'string', help: 'required by main.py, read only when pre-training', unused: true },
    patience: { kind: 'number', help: "main.py's early stop (the best epoch by the task's metric is loaded at the end)", unused: true },
    show_inner_progress: { kind: 'bool', help: "main.py's progress within an epoch: shown (unless --dont_show)" },
    dont_show: { kind: 'bool', help: 'no progress bar' },
    // main.py's other flags, as finetune.sh and train-960.sh may pass them
    audio_model_class: { kind: 'string', help: "the audio tower's class: --model_path's audio_config.json decides", unused: true },
    text_model_class: { kind: 'string', help: "the text tower's class: --model_path's text_config.json decides", unused: true },
    num_turns: { kind: 'number', help: "the model's dialogue turns: --model_path's config decides", unused: true },
    num_fused_layers: { kind: 'number', help: "the model's fused layers: --model_path's config decides", unused: true },
    ds_config: { kind: 'string', help: 'DeepSpeed: fine-tuning runs on one device', unused: true },
    ds_stage: { kind: 'number', help: 'DeepSpeed: fine-tuning runs on one device', unused: true },
    grad_ckpt: { kind: 'bool', help: "activation checkpointing: SPECTRA's towers are not recomputed here", unused: true },
    loss_scale: { kind: 'number', help: "apex's static loss scale: float16 (--apex_level) scales dynamically", unused: true },
    local_rank: { kind: 'number', help: 'torch.distributed.launch passes it: npx emotorch-run sets LOCAL_RANK instead', unused: true },
    dont_use_ckpts: { kind: 'bool', help: 'pre-training only', unused: true },
    audio_path: { kind: 'string', help: 'pre-training only (the WavLM to start from): fine-tuning reads --model_path', unused: true },
    text_path: { kind: 'string', help: 'pre-training only (the RoBERTa to start from): fine-tuning reads --model_path', unused: true },
    model_save_path: { kind: 'string', help: 'pre-training only: fine-tuning writes to --output_dir', unused: true },
    model_name: { kind: 'string', help: 'pre-training only', unused: true },
    save_interval: { kind: 'number', help: 'pre-training only', unused: true },
    output_dir: { kind: 'string', help: 'checkpoints and logs (main.py saves nothing when fine-tuning)' },
  },
  async run(v, _pos, out) {
    const task = need(v, 'task') as (typeof TASKS)[number];
    if (!TASKS.includes(task)) throw new UsageError(`--task takes ${TASKS.join(', ')}, not '${task}'`);
    if (v.mode !== undefined && v.mode !== 'finetune')
      throw new UsageError(`--mode ${str(v, 'mode')}: this command fine-tunes; pre-train with npx emotorch spectra pretrain`);
    const int = (k: string, min: number) => {
      const x = num(v, k)!;
      if (!Number.isInteger(x) || x < min) throw new UsageError(`--${k} must be an integer ≥ ${min}`);
      return x;
    };
    const batch = int('batch_size', 1),
      epochs = int('epochs', 1),
      accum = int('grad_acc', 1);
    const audioSeconds = num(v, 'audio_length')!;
    if (!(audioSeconds > 0 && audioSeconds <= MAX_AUDIO_SECONDS))
      throw new et.EmotorchError(
        `Expected a number of seconds in (0, ${MAX_AUDIO_SECONDS}] for --audio_length but received ${audioSeconds}`,
        'ERR_INVALID_ARG',
      );
    const textLength = int('text_length', 2);
    if (textLength > MAX_TEXT_LENGTH)
      throw new et.EmotorchError(`Expected an integer in [2, ${MAX_TEXT_LENGTH}] for --text_length but received ${textLength}`, 'ERR_INVALID_ARG');
    const root = path.join(str(v, 'data_path')!, task);
    const split = async (name: string) => {
      const file = path.join(root, `${name}.pkl`);
      const why = et.io.notAFile(file);
      if (why) throw new et.EmotorchError(`'${file}' ${why} (main.py reads <data_path>/<task>/${name}.pkl)`, 'ERR_IO');
      return et.data.SpectraDataset.fromFile(file, { task });
    };
    const [train, valid, test] = [await split('train'), await split('valid'), await split('test')];
    const steps = epochs * Math.ceil(train.length / batch / accum);
    const warmupSteps = Math.floor(num(v, 'warmup')! * steps);
    const apex = apexLevel(v);
    const fp16 = apex > 0 && et.cuda.isAvailable();
    const outputDir = outputFolder(str(v, 'output_dir') ?? path.join('output', `spectra-${task}`), '--output_dir', false);
    et.manualSeed(int('seed', 0)); // main.py seeds before it builds the model (a new head is drawn at load)
    const { trainer } = await et.systems.spectra.Spectra.finetune({
      task,
      model: need(v, 'model_path'),
      train,
      eval: valid,
      optim: apex > 0 ? 'fused_adam' : 'adamw_hf',
      load: fp16 || et.cuda.isAvailable() ? { device: 'cuda' } : {},
      collate: { audioLength: Math.round(audioSeconds * 16000), textLength, ...(v.multi_audio === true ? { multiAudio: true } : {}) },
      args: {
        output_dir: outputDir,
        per_device_train_batch_size: batch,
        per_device_eval_batch_size: batch,
        num_train_epochs: epochs,
        gradient_accumulation_steps: accum,
        learning_rate: num(v, 'lr'),
        weight_decay: num(v, 'weight_decay'),
        max_grad_norm: num(v, 'grad_norm'),
        seed: int('seed', 0),
        warmup_steps: warmupSteps,
        lr_scheduler_type: warmupSteps === 0 ? 'cosine' : 'linear',
        fp16,
        disable_tqdm: v.dont_show === true,
        report_to: 'none',
      },
    });
    const m = await trainer.evaluate(test, 'test');
    out(
      `test: ${Object.entries(m)
        .filter(([k]) => k.startsWith('test_') && !/runtime|per_second/.test(k))
        .map(([k, x]) => `${k.slice(5)} ${Number(x).toFixed(4)}`)
        .join(' - ')}`,
    );
    out(`checkpoints and log in ${outputDir}`);
  },
};

/** main.py's flags that `spectra pretrain` accepts without using (fine-tuning's, DeepSpeed's, apex's loss scale). */
const PRETRAIN_UNUSED = [
  'multi_audio',
  'patience',
  'task',
  'use_turn_ids',
  'ds_config',
  'ds_stage',
  'grad_ckpt',
  'loss_scale',
  'local_rank',
  'dont_use_ckpts',
  'audio_model_class',
  'text_model_class',
] as const;

export const SPECTRA_PRETRAIN: Command = {
  summary:
    "SPECTRA's main.py pre-training (scripts/train-960.sh's flags): MLM, masked acoustic frames, response selection and word boundaries on transcripts.pkl",
  flags: {
    transcripts: { kind: 'string', help: 'transcripts.pkl (or a folder of them) as process_pretrain.py writes it' },
    data_path: { kind: 'string', help: "the folder the transcripts' .npy paths are relative to", default: './data' },
    audio_path: { kind: 'string', help: 'the WavLM folder to start from (config.json and weights, e.g. wavlm-base-plus)' },
    text_path: { kind: 'string', help: 'the RoBERTa folder to start from, and the tokenizer (e.g. roberta-base)' },
    model_path: { kind: 'string', help: 'a SPECTRA folder to continue from (its heads included) instead of --audio_path / --text_path' },
    model_save_path: { kind: 'string', help: 'where {model_name}-{epoch} folders are saved (none: nothing is saved, as main.py)' },
    model_name: { kind: 'string', help: "the saved folders' name (train-960.sh: spectra)", default: 'v1.1' },
    save_interval: {
      kind: 'number',
      help: 'save every this many epochs; the last epoch is saved too (train-960.sh: 25, with 5 epochs the original saves nothing)',
      default: '100',
    },
    batch_size: { kind: 'number', help: 'samples per batch and device (train-960.sh: 24)', default: '256' },
    epochs: { kind: 'number', help: 'epochs (train-960.sh: 5)', default: '10' },
    grad_acc: { kind: 'number', help: 'batches per optimizer step (train-960.sh: 4)', default: '16' },
    lr: { kind: 'number', help: 'learning rate (train-960.sh: 1e-4)', default: '1e-4' },
    warmup: { kind: 'number', help: 'warmup as a share of the steps; 0 steps → cosine, else linear decay', default: '0.01' },
    weight_decay: { kind: 'number', help: 'weight decay (not on biases and LayerNorms)', default: '0.01' },
    grad_norm: { kind: 'number', help: 'gradient clipping norm, after every batch (0: none)', default: '1' },
    audio_length: { kind: 'number', help: 'seconds every clip is cut or padded to', default: '10' },
    text_length: { kind: 'number', help: 'tokens at most (the history is cut from the left)', default: '512' },
    num_turns: { kind: 'number', help: 'turns of text per example: context, response and up to num_turns − 2 earlier ones', default: '8' },
    num_fused_layers: { kind: 'number', help: 'RoBERTa layers over text + audio (a new model only; --model_path keeps its own)', default: '1' },
    seed: { kind: 'number', help: 'random seed (negatives, MLM and audio masks, new weights)', default: '42' },
    apex_level: {
      kind: 'number',
      help: "apex level: above 0 apex's FusedAdam without bias correction (finetune.sh / train-960.sh: 1) and float16 autocast on CUDA; 0 transformers 4.x's AdamW",
      default: '0',
    },
    show_inner_progress: { kind: 'bool', help: 'the four losses in the progress (they are logged every step anyway)' },
    mode: { kind: 'string', help: "main.py's mode: this command is 'pretrain'" },
    ...Object.fromEntries(
      PRETRAIN_UNUSED.map((k) => [
        k,
        {
          kind: SPECTRA_FINETUNE.flags[k]?.kind ?? 'string',
          help:
            k === 'local_rank'
              ? 'torch.distributed.launch passes it: npx emotorch-run sets LOCAL_RANK instead'
              : 'fine-tuning / DeepSpeed only: not used when pre-training',
          unused: true,
        },
      ]),
    ),
  },
  async run(v, _pos, out) {
    // under npx emotorch-run (torch.distributed.launch's place): data-parallel over its ranks, rank 0 writing
    const ddp = Number(process.env.WORLD_SIZE ?? '1') > 1;
    if (ddp) await et.distributed.init();
    try {
      await spectraPretrain(v, ddp && et.distributed.rank() !== 0 ? () => {} : out);
    } finally {
      if (ddp) await et.distributed.destroy();
    }
  },
};

async function spectraPretrain(v: Values, out: (line: string) => void): Promise<void> {
  if (v.mode !== undefined && v.mode !== 'pretrain')
    throw new UsageError(`--mode ${str(v, 'mode')}: this command pre-trains; fine-tune with npx emotorch spectra finetune`);
  const int = (k: string, min: number) => {
    const x = num(v, k)!;
    if (!Number.isInteger(x) || x < min) throw new UsageError(`--${k} must be an integer ≥ ${min}`);
    return x;
  };
  const batch = int('batch_size', 1),
    epochs = int('epochs', 1),
    accum = int('grad_acc', 1),
    seed = int('seed', 0);
  const audioSeconds = num(v, 'audio_length')!;
  if (!(audioSeconds > 0 && audioSeconds <= MAX_AUDIO_SECONDS))
    throw new et.EmotorchError(`Expected a number of seconds in (0, ${MAX_AUDIO_SECONDS}] for --audio_length but received ${audioSeconds}`, 'ERR_INVALID_ARG');
  const textLength = int('text_length', 2);
  if (textLength > MAX_TEXT_LENGTH)
    throw new et.EmotorchError(`Expected an integer in [2, ${MAX_TEXT_LENGTH}] for --text_length but received ${textLength}`, 'ERR_INVALID_ARG');
  const modelPath = str(v, 'model_path'),
    audioPath = str(v, 'audio_path'),
    textPath = str(v, 'text_path');
  if (!modelPath && !(audioPath && textPath)) {
    // the original falls back to ATConfig.from_classes, which calls a method RobertaConfig does not have
    throw new UsageError('give --audio_path and --text_path (the WavLM and RoBERTa to start from), or --model_path (a SPECTRA folder)');
  }
  const tokDir = textPath ?? modelPath!;
  let tok: et.data.Tokenizer;
  try {
    tok = await et.data.Tokenizer.fromFile(tokDir);
  } catch (e) {
    throw new et.EmotorchError(`no tokenizer in '${tokDir}' (main.py reads RoBERTa's from --text_path): ${(e as Error).message}`, 'ERR_IO');
  }
  et.systems.spectra.tokenizerMasking(tok); // its <mask> is needed: refused here rather than at the first batch
  const apex = apexLevel(v);
  const fp16 = apex > 0 && et.cuda.isAvailable();
  const device = et.cuda.isAvailable() ? 'cuda' : undefined;
  const audioLength = Math.round(audioSeconds * 16000);
  et.manualSeed(seed);
  const pre = { seed: seed + 1 };
  const model = modelPath
    ? await et.systems.spectra.SpectraForPreTraining.fromPretrained(modelPath, {
        ...pre,
        device,
        config: { audio: { max_length: audioLength }, text: { max_length: textLength } },
      })
    : await et.systems.spectra.SpectraForPreTraining.fromEncoders(audioPath!, textPath!, {
        ...pre,
        device,
        audioLength,
        textLength,
        numFusedLayers: int('num_fused_layers', 0),
      });
  const transcripts = need(v, 'transcripts');
  const train = await et.systems.spectra.SpectraPretrainDataset.fromFile(transcripts, {
    dataPath: str(v, 'data_path'),
    numTurns: int('num_turns', 2),
    seed: seed + 2,
  });
  out(`${train.length} examples (turns with a previous turn) from ${train.entries.length} turns in '${transcripts}'`);
  const steps = epochs * Math.ceil(train.length / batch / accum / (et.distributed.isInitialized() ? et.distributed.worldSize() : 1));
  const warmupSteps = Math.floor(num(v, 'warmup')! * steps);
  const saveDir = str(v, 'model_save_path');
  const { saved, output } = await et.systems.spectra.pretrainSpectra({
    model,
    train,
    saveDir,
    modelName: str(v, 'model_name'),
    saveInterval: int('save_interval', 1),
    seed,
    optim: apex > 0 ? 'fused_adam' : 'adamw_hf',
    collate: { audioLength, textLength, tokenizer: tok },
    args: {
      output_dir: saveDir ?? path.join('output', 'spectra-pretrain'),
      per_device_train_batch_size: batch,
      num_train_epochs: epochs,
      gradient_accumulation_steps: accum,
      learning_rate: num(v, 'lr'),
      weight_decay: num(v, 'weight_decay'),
      max_grad_norm: num(v, 'grad_norm'),
      seed,
      warmup_steps: warmupSteps,
      lr_scheduler_type: warmupSteps === 0 ? 'cosine' : 'linear',
      fp16,
      logging_steps: 1,
    },
  });
  out(`trained ${output.globalStep} steps, final loss ${output.trainingLoss.toFixed(4)}`);
  out(saved.length ? `saved: ${saved.join(', ')}` : 'nothing saved (give --model_save_path)');
}

export const SPECTRA_PROCESS_PRETRAIN: Command = {
  summary: "SPECTRA's preprocess/process_pretrain.py (process_pretrain.sh's flags): audio + word alignments → transcripts.pkl and one .npy clip per slice",
  flags: {
    speech_dir: { kind: 'string', help: 'a tree of audio files; each leaf folder is one show' },
    text_dir: { kind: 'string', help: 'the same tree of alignment JSON files (<name>.json: Google Speech-to-Text results with word times)' },
    save_processed_speech_dir: { kind: 'string', help: 'where the clips are written (the same tree)' },
    save_processed_text_filename: { kind: 'string', help: 'the corpus file, in --save_processed_speech_dir (or this path when absolute)' },
    hours: { kind: 'number', help: 'stop after this many hours of clips (process_pretrain.sh: 960)', default: '60000' },
    max_speech_slice_length: { kind: 'number', help: 'longest clip in seconds', default: '10' },
    sample_rate: { kind: 'number', help: "the clips' sample rate", default: '16000' },
    tokenizer: {
      kind: 'string',
      help: 'the tokenizer each word is encoded with: a folder, or a repo id read through the Hugging Face cache',
      default: 'roberta-base',
    },
    link_across_files: { kind: 'bool', help: 'link the last clip of one file to the first of the next in the same folder, as the original does' },
  },
  async run(v, _pos, out) {
    const tokPath = str(v, 'tokenizer')!;
    let tok: et.data.Tokenizer;
    try {
      tok = await et.data.Tokenizer.fromFile(await et.hub.resolvePretrainedPath(tokPath));
    } catch (e) {
      throw new et.EmotorchError(`cannot load the tokenizer '${tokPath}' (the original encodes words with roberta-base's): ${(e as Error).message}`, 'ERR_IO');
    }
    const int = (k: string, min: number) => {
      const x = num(v, k)!;
      if (!Number.isInteger(x) || x < min) throw new UsageError(`--${k} must be an integer ≥ ${min}`);
      return x;
    };
    const hours = num(v, 'hours')!;
    if (!(hours > 0)) throw new UsageError('--hours must be above 0');
    let last = 0;
    const r = await et.systems.spectra.buildSpectraPretrainCorpus({
      speechDir: need(v, 'speech_dir'),
      textDir: need(v, 'text_dir'),
      outDir: need(v, 'save_processed_speech_dir'),
      transcriptsName: need(v, 'save_processed_text_filename'),
      hours,
      maxSliceSeconds: int('max_speech_slice_length', 1),
      sampleRate: int('sample_rate', 1000),
      encode: (w) => tok.encode(w),
      linkAcrossFiles: v.link_across_files === true,
      onProgress: (p) => {
        if (Date.now() - last < 2000) return;
        last = Date.now();
        out(`processed ${p.files} files | ${p.clips} audio slices | total audio length ${(p.tenths / 10).toFixed(1)} s`);
      },
    });
    out(`total: ${r.clips} audio slices, ${(r.tenths / 10).toFixed(1)} s of audio; corpus in ${r.transcripts}`);
  },
};
