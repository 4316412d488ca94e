/** `emotorch m2se sft | infer | score`: M2SE's ms-swift command lines and compute_result. */
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../index';
import {
  Command,
  UsageError,
  contextLength,
  loadChatModel,
  loraCheckpoint,
  maxNewTokens,
  modelAndAdapter,
  need,
  num,
  outputFolder,
  str,
  writeTextFile,
} from './common';

const stamp = (): string => new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);

/**
 * swift 2.x's output folder: `<output_dir>/<model_type>/v<N>-<timestamp>`.
 * @throws EmotorchError ERR_INVALID_ARG naming --output_dir when it (or `<output_dir>/<model_type>`) is not a folder
 */
function versionDir(outputDir: string, modelType: string): string {
  const base = outputFolder(path.join(outputDir, modelType), '--output_dir/--model_type');
  const taken = fs
    .readdirSync(base)
    .map((d) => /^v(\d+)-/.exec(d)?.[1])
    .filter((x): x is string => !!x)
    .map(Number);
  return path.join(base, `v${taken.length ? Math.max(...taken) + 1 : 0}-${stamp()}`);
}

/** The flags naming the model's files, shared by sft and infer. */
const MODEL_FLAGS = {
  model_id_or_path: { kind: 'string', help: "swift's name for --model" },
  tokenizer: { kind: 'string', help: 'a tokenizer file or folder (default: the model folder)' },
  system: { kind: 'string', help: 'the system prompt', default: et.systems.m2se.M2SE_SYSTEM },
} as const;

export const M2SE_SFT: Command = {
  summary: "LoRA SFT over ms-swift records, as M2SE's first_stage.sh / second_stage.sh run `swift sft`",
  flags: {
    model: { kind: 'string', help: 'the model folder (InternVL2 / EmoVerse, or a LLaMA-family LLM)' },
    ...MODEL_FLAGS,
    model_type: { kind: 'string', help: "names the output subfolder (swift: internvl2-4b); default the model folder's name" },
    dataset: { kind: 'list', help: 'ms-swift JSON / JSONL files' },
    sft_type: { kind: 'string', help: 'lora or full', default: 'lora' },
    num_train_epochs: { kind: 'number', help: 'epochs', default: '1' },
    max_steps: { kind: 'number', help: 'stop after this many optimizer steps (-1: the epochs decide)', default: '-1' },
    max_length: { kind: 'number', help: "longer records are dropped (swift's delete)", default: '2048' },
    batch_size: { kind: 'number', help: 'per device', default: '1' },
    gradient_accumulation_steps: { kind: 'number', help: 'micro-batches per step', default: '1' },
    gradient_checkpointing: { kind: 'bool', help: 'recompute layers in backward', default: 'true' },
    learning_rate: { kind: 'number', help: 'default 1e-4 for lora, 1e-5 for full (swift)' },
    lora_rank: { kind: 'number', help: 'LoRA rank', default: '8' },
    lora_alpha: { kind: 'number', help: 'LoRA alpha', default: '32' },
    lora_dropout: { kind: 'number', help: 'LoRA dropout', default: '0.05' },
    lora_dropout_p: { kind: 'number', help: "swift 2.x's older name for --lora_dropout" },
    acc_strategy: { kind: 'string', help: 'token or sentence (logged acc)', default: 'token' },
    logging_steps: { kind: 'number', help: 'log every N steps', default: '5' },
    seed: { kind: 'number', help: 'random seed', default: '42' },
    output_dir: { kind: 'string', help: 'where runs go', default: 'output' },
    resume_from_checkpoint: { kind: 'string', help: 'a checkpoint folder (peft adapter) to start from: stage 2 from stage 1' },
    // first_stage.sh / second_stage.sh pass these; swift evaluates on a held-out share of the data and saves every N steps
    eval_steps: {
      kind: 'number',
      help: "swift's evaluation every N steps on its held-out 1 % (dataset_test_ratio): no split is held out here (score with m2se infer + m2se score)",
      unused: true,
    },
    save_steps: { kind: 'number', help: 'swift saves every N steps: the adapter is saved once, at the end (checkpoint-<last step>)', unused: true },
    save_total_limit: { kind: 'number', help: 'swift keeps the newest N checkpoints: one is written', unused: true },
    ignore_args_error: { kind: 'bool', help: "swift's switch for unknown flags", unused: true },
  },
  async run(v, _pos, out) {
    let dir = str(v, 'model') ?? str(v, 'model_id_or_path');
    if (!dir) throw new UsageError('--model is required (a local folder or a Hugging Face repo id, read from the hub cache)');
    let resume = str(v, 'resume_from_checkpoint');
    const stage = fs.existsSync(dir) ? loraCheckpoint(dir) : null; // second_stage.sh: the first stage's checkpoint
    if (stage) {
      if (resume) throw new UsageError(`--model_id_or_path '${dir}' is a LoRA checkpoint and --resume_from_checkpoint names another: give one`);
      dir = stage.base;
      resume = stage.adapter;
    }
    const datasets = need(v, 'dataset') as unknown as string[];
    const sftType = str(v, 'sft_type')!;
    if (sftType !== 'lora' && sftType !== 'full') throw new UsageError(`--sft_type takes lora or full, not '${sftType}'`);
    const acc = str(v, 'acc_strategy')!;
    if (acc !== 'token' && acc !== 'sentence') throw new UsageError(`--acc_strategy takes token or sentence, not '${acc}'`);
    const runDir0 = str(v, 'output_dir')!;
    outputFolder(runDir0, '--output_dir', false); // checked before the model loads: a file there fails at once
    const { model, tokenizer } = await loadChatModel(dir, str(v, 'tokenizer'));
    if (resume) {
      if (sftType !== 'lora') throw new UsageError('--resume_from_checkpoint starts from a LoRA adapter: use it with --sft_type lora');
      await et.nn.loadLoraAdapter(model, resume);
    }
    const runDir = outputFolder(versionDir(runDir0, str(v, 'model_type') ?? path.basename(path.resolve(dir))), '--output_dir');
    writeTextFile(path.join(runDir, 'sft_args.json'), JSON.stringify({ ...v, model: path.resolve(dir) }, null, 2), '--output_dir');
    out(`output: ${runDir}`);
    et.manualSeed(num(v, 'seed')!);
    const [r] = await et.systems.m2se.m2seStages({
      model,
      tokenizer,
      system: str(v, 'system'),
      maxLength: num(v, 'max_length'),
      accStrategy: acc,
      lora:
        sftType === 'full' ? false : { r: num(v, 'lora_rank')!, alpha: num(v, 'lora_alpha')!, dropout: num(v, 'lora_dropout_p') ?? num(v, 'lora_dropout')! },
      stages: [
        {
          datasets: datasets.map((d) => path.resolve(d)),
          args: {
            output_dir: runDir,
            num_train_epochs: num(v, 'num_train_epochs'),
            max_steps: num(v, 'max_steps'),
            per_device_train_batch_size: num(v, 'batch_size'),
            gradient_accumulation_steps: num(v, 'gradient_accumulation_steps'),
            gradient_checkpointing: v.gradient_checkpointing as boolean,
            learning_rate: num(v, 'learning_rate') ?? (sftType === 'lora' ? 1e-4 : 1e-5),
            logging_steps: num(v, 'logging_steps'),
            seed: num(v, 'seed'),
            save_strategy: 'no',
            disable_tqdm: false,
          },
        },
      ],
    });
    const ckpt = path.join(runDir, `checkpoint-${r.globalStep}`);
    if (sftType === 'lora') await et.nn.saveLoraAdapter(model, ckpt, { baseModel: path.resolve(dir) });
    else await model.save(path.join(ckpt, 'model.safetensors'));
    writeTextFile(path.join(ckpt, 'sft_args.json'), JSON.stringify({ ...v, model: path.resolve(dir) }, null, 2), '--output_dir');
    out(`${r.examples} examples (${r.tooLong} longer than max_length dropped), ${r.globalStep} steps, train_loss ${r.trainingLoss.toFixed(6)}`);
    out(`last_model_checkpoint: ${ckpt}`);
  },
};

export const M2SE_INFER: Command = {
  summary: "greedy answers to ms-swift records as `swift infer` writes them (M2SE's test.sh)",
  flags: {
    model: { kind: 'string', help: 'the model folder (default: the one --ckpt_dir was trained from)' },
    ...MODEL_FLAGS,
    model_type: { kind: 'string', help: "accepted for swift's command lines; the model folder decides" },
    ckpt_dir: { kind: 'string', help: 'a LoRA checkpoint folder (peft adapter) written by sft' },
    val_dataset: { kind: 'list', help: 'ms-swift JSON / JSONL test files' },
    max_length: { kind: 'number', help: "accepted for swift's command lines (prompts are not cut)" },
    max_new_tokens: {
      kind: 'number',
      help: "most tokens per answer, at most the model's context (max_position_embeddings); default 2048 or the context if smaller",
    },
    result_dir: { kind: 'string', help: 'where the JSONL goes (default <ckpt_dir or model>/infer_result)' },
    trim_response: {
      kind: 'bool',
      help: 'write responses with special tokens skipped and trimmed (default: as swift writes them, special tokens kept)',
      default: 'false',
    },
  },
  async run(v, _pos, out) {
    const { dir, adapter: ckpt } = modelAndAdapter(str(v, 'model') ?? str(v, 'model_id_or_path'), str(v, 'ckpt_dir'));
    const sets = need(v, 'val_dataset') as unknown as string[];
    const { model, tokenizer } = await loadChatModel(dir, str(v, 'tokenizer'), { adapter: ckpt });
    const maxNew = maxNewTokens(num(v, 'max_new_tokens'), contextLength(model), '--max_new_tokens', 2048);
    const resultDir = outputFolder(str(v, 'result_dir') ?? path.join(ckpt ?? dir, 'infer_result'), '--result_dir');
    for (const set of sets) {
      const file = path.join(resultDir, `${stamp()}${sets.length > 1 ? `-${path.basename(set).replace(/\.[^.]*$/, '')}` : ''}.jsonl`);
      const r = await et.systems.m2se.m2seInfer({
        model,
        tokenizer,
        dataset: path.resolve(set),
        outFile: file,
        system: str(v, 'system'),
        maxNewTokens: maxNew,
        trimResponse: v.trim_response === true,
      });
      out(`${r.count} records of ${set} -> ${r.file}`);
    }
  },
};

/** The weight files of a model folder (not copied by export: the merged weights replace them). */
const WEIGHT_FILE = /(\.safetensors|\.bin|\.pt|\.pth|\.safetensors\.index\.json|\.bin\.index\.json)$/;

export const M2SE_EXPORT: Command = {
  summary:
    "`swift export --ckpt_dir … --merge_lora true`: the base model with the checkpoint's LoRA folded in, as a model folder in the base's released layout",
  flags: {
    ckpt_dir: { kind: 'string', help: 'a LoRA checkpoint folder that sft wrote (its base model from sft_args.json)' },
    merge_lora: { kind: 'bool', help: 'fold the adapters into the weights (the one export this command makes)', default: 'false' },
    model: { kind: 'string', help: 'the base model folder (default: the one --ckpt_dir was trained from)' },
    ...MODEL_FLAGS,
    model_type: { kind: 'string', help: "swift's model type: the base folder's config decides", unused: true },
    output_dir: { kind: 'string', help: 'where the merged folder goes (default <ckpt_dir>-merged, as swift)' },
  },
  async run(v, _pos, out) {
    if (v.merge_lora !== true)
      throw new UsageError("this command exports with --merge_lora true (swift export's other exports, quantization and pushing, are not part of emotorch)");
    const ckpt = need(v, 'ckpt_dir');
    const { dir, adapter } = modelAndAdapter(str(v, 'model') ?? str(v, 'model_id_or_path'), ckpt);
    const target = str(v, 'output_dir') ?? `${ckpt.replace(/[/\\]+$/, '')}-merged`;
    if (fs.existsSync(target))
      throw new et.EmotorchError(`--output_dir '${target}' exists: export writes a new folder (remove it or name another)`, 'ERR_INVALID_ARG');
    outputFolder(path.dirname(path.resolve(target)), '--output_dir', false);
    // the base in its own dtype (a bfloat16 8B stays 16 GB), the adapters folded into it
    const { model, dir: base } = await loadChatModel(dir, str(v, 'tokenizer'), { adapter, merge: true, dtype: 'auto' });
    // the base checkpoint's own tensor names, in its own dtypes: the merged folder loads wherever the base does
    const released = await et.nn.loadCheckpoint(base);
    const own = model.stateDict();
    const merged = new Map<string, et.Tensor>();
    for (const [k, t] of released) {
      const p = own.get(k);
      if (!p && k.endsWith('.rotary_emb.inv_freq')) {
        merged.set(k, t);
        continue;
      } // a buffer the loader recomputes
      if (!p) throw new et.EmotorchError(`the base checkpoint's '${k}' has no tensor in the loaded model (export keeps the base's layout)`, 'ERR_STATE_DICT');
      merged.set(k, p.dtype === t.dtype ? p : p.to({ dtype: t.dtype }));
    }
    const tmp = `${target}.tmp-${process.pid}`;
    fs.mkdirSync(tmp, { recursive: true });
    try {
      await et.io.saveSafetensors(path.join(tmp, 'model.safetensors'), merged, { format: 'pt' });
      for (const f of fs.readdirSync(base)) {
        const from = path.join(base, f);
        if (!WEIGHT_FILE.test(f) && fs.statSync(from).isFile()) fs.copyFileSync(from, path.join(tmp, f));
      }
      const tok = str(v, 'tokenizer');
      if (tok) {
        const files = fs.statSync(tok).isDirectory()
          ? fs
              .readdirSync(tok)
              .filter((f) => /^(tokenizer|special_tokens_map|added_tokens|vocab|merges)/.test(f))
              .map((f) => path.join(tok, f))
          : [tok];
        for (const f of files) fs.copyFileSync(f, path.join(tmp, path.basename(f)));
      }
      fs.renameSync(tmp, target);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    out(`merged ${path.basename(adapter!)} into ${base}: ${merged.size} tensors`);
    out(`output_dir: ${target}`);
  },
};

export const M2SE_SCORE: Command = {
  summary: "compute_result's numbers for a `swift infer` JSONL (sentiment, emotion or emotion-cause pairs)",
  args: '<infer.jsonl>',
  flags: {
    task: { kind: 'string', help: 'sentiment, emotion or pairs' },
    json: { kind: 'bool', help: 'print the whole result as JSON' },
  },
  async run(v, pos, out) {
    if (pos.length !== 1) throw new UsageError('give one infer JSONL file');
    const task = need(v, 'task');
    if (!['sentiment', 'emotion', 'pairs'].includes(task)) throw new UsageError(`--task takes sentiment, emotion or pairs, not '${task}'`);
    const r = task === 'pairs' ? et.metrics.m2seComputeResult(pos[0], 'pairs') : et.metrics.m2seComputeResult(pos[0], task as 'sentiment' | 'emotion');
    if (v.json) {
      out(JSON.stringify(r, null, 2));
      return;
    }
    if ('micro' in r) {
      out(`F1 ${r.micro.f1.toFixed(4)}  P ${r.micro.precision.toFixed(4)}  R ${r.micro.recall.toFixed(4)}`);
      out(`WF1 ${r.weightedF1.toFixed(4)}`);
    } else {
      out(`accuracy ${r.accuracy.toFixed(4)} (${r.correct} of ${r.total}; ${r.unparsable} answers none of the labels)`);
      out(`weighted F1 ${r.weightedF1.toFixed(4)}`);
      out(
        `recall ${Object.entries(r.recall)
          .map(([k, x]) => `${k} ${x.toFixed(4)}`)
          .join('  ')}`,
      );
    }
  },
};
