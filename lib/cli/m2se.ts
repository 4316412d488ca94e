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
  readJsonFile,
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

/** swift 2.6.1's bitsandbytes flags (SftArguments / InferArguments), shared by sft and infer. */
const QUANT_FLAGS = {
  quant_method: {
    kind: 'string',
    help: "swift's quantization method: bnb (the default with --quantization_bit 4 or 8; hqq, eetq, awq, gptq, aqlm are not part of emotorch)",
  },
  quantization_bit: {
    kind: 'number',
    help: "0, 4 or 8 (swift's bitsandbytes): the LLM's decoder Linear layers quantized as they load, 4: NF4 (QLoRA's, double-quantized: ~0.52 byte a weight), 8: int8 (LLM.int8's per-row absmax: ~1 byte); LoRA adapters train in float32 over them",
    default: '0',
  },
  bnb_4bit_comp_dtype: {
    kind: 'string',
    help: "fp16, bf16, fp32 or AUTO: the dtype 4-bit weights are dequantized to for the product; emotorch loads the model's float parts in it, so activations take it too (AUTO: emotorch's float32)",
    default: 'AUTO',
  },
  bnb_4bit_quant_type: { kind: 'string', help: "nf4 (swift's default; fp4 is not part of emotorch)", default: 'nf4' },
  bnb_4bit_use_double_quant: {
    kind: 'bool',
    help: "NF4's block absmax quantized again (8 bits in blocks of 256), as swift's default; false is not part of emotorch",
    default: 'true',
  },
} as const;

/** What swift's bitsandbytes flags load: the quantization of the LLM's layers, and the dtype of the rest. */
interface SwiftQuantization {
  quantize?: et.nn.QuantFormat;
  dtype?: et.DType;
}

/**
 * swift 2.6.1's `select_bnb` on emotorch's formats: `--quantization_bit 4` is NF4 (double-quantized,
 * compute dtype `--bnb_4bit_comp_dtype`), 8 is int8, 0 none.
 * @param v the flags' values (a command line's, or a checkpoint's sft_args.json)
 * @param where how messages name the values ('' for the command line)
 * @throws UsageError naming the flag for a value swift takes and emotorch has not (fp4, no double
 *   quantization, hqq's bits, another quant_method), or one swift refuses (full fine-tuning)
 */
function swiftQuantization(v: Record<string, unknown>, where = ''): SwiftQuantization {
  const at = where ? ` (${where})` : '';
  const bits = Number(v.quantization_bit ?? 0);
  if (![0, 1, 2, 3, 4, 8].includes(bits)) throw new UsageError(`--quantization_bit takes 0, 4 or 8, not '${String(v.quantization_bit)}'${at}`);
  const method = v.quant_method ?? (bits > 0 ? 'bnb' : undefined);
  if (bits === 0) return {};
  if (method !== 'bnb')
    throw new UsageError(`--quant_method ${String(method)}: emotorch quantizes as bitsandbytes does (bnb); ${String(method)} is not part of it${at}`);
  if (bits !== 4 && bits !== 8)
    throw new UsageError(`--quantization_bit ${bits}: bnb takes 4 or 8 (swift gives ${bits} bits to hqq, which emotorch has not)${at}`);
  if (v.sft_type === 'full')
    throw new UsageError(`--quantization_bit ${bits} with --sft_type full: full parameter fine-tuning does not support quantization (as swift)${at}`);
  if (bits === 8) return { quantize: 'int8' };
  const type = String(v.bnb_4bit_quant_type ?? 'nf4');
  if (type !== 'nf4')
    throw new UsageError(
      `--bnb_4bit_quant_type ${type}: emotorch's 4-bit weights are NF4 (QLoRA's NormalFloat4, swift's default); ${type === 'fp4' ? 'fp4 is' : `'${type}' is`} not supported${at}`,
    );
  const dq = v.bnb_4bit_use_double_quant;
  if (dq === false || dq === 'false')
    throw new UsageError(
      `--bnb_4bit_use_double_quant false: emotorch's NF4 always quantizes the block absmax again (bitsandbytes' compress_statistics, swift's default true); false is not supported${at}`,
    );
  const comp = String(v.bnb_4bit_comp_dtype ?? 'AUTO');
  const dtypes: Record<string, et.DType | undefined> = { fp16: 'float16', bf16: 'bfloat16', fp32: 'float32', AUTO: undefined };
  if (!(comp in dtypes)) throw new UsageError(`--bnb_4bit_comp_dtype takes fp16, bf16, fp32 or AUTO, not '${comp}'${at}`);
  return dtypes[comp] ? { quantize: 'nf4', dtype: dtypes[comp] } : { quantize: 'nf4' };
}

/**
 * The quantization a LoRA checkpoint was trained over: its sft_args.json's swift flags, which win
 * over the command line's as swift's `load_from_ckpt_dir` imports them (said on stderr when they
 * differ); the command line's when the checkpoint has none.
 */
function checkpointQuantization(v: Record<string, unknown>, adapter: string | undefined): SwiftQuantization {
  const given = swiftQuantization(v);
  const file = adapter && path.join(adapter, 'sft_args.json');
  if (!file || !fs.existsSync(file)) return given;
  const args = readJsonFile(file, "the checkpoint's sft_args.json") as Record<string, unknown> | null;
  if (!args || typeof args !== 'object' || args.quantization_bit === undefined) return given;
  const keys = ['quant_method', 'quantization_bit', 'bnb_4bit_comp_dtype', 'bnb_4bit_quant_type', 'bnb_4bit_use_double_quant'];
  const taken = swiftQuantization(Object.fromEntries(keys.map((k) => [k, args[k] ?? v[k]])), file);
  if (taken.quantize !== given.quantize || taken.dtype !== given.dtype)
    process.stderr.write(
      `emotorch: ${file}: the checkpoint was trained with --quantization_bit ${String(args.quantization_bit)}: loading its base so (as swift)\n`,
    );
  return taken;
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
    ...QUANT_FLAGS,
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
    // --quantization_bit 4 / 8: QLoRA, the LLM's layers quantized as they load, the adapters float32 over them
    const quant = swiftQuantization(v);
    const { model, tokenizer } = await loadChatModel(dir, str(v, 'tokenizer'), quant);
    if (quant.quantize)
      out(`quantized: ${quantizedCount(model)} Linear layers of the LLM in ${quant.quantize} (QLoRA: the adapters train in float32 over them)`);
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
    ...QUANT_FLAGS,
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
    // a checkpoint trained over a quantized base answers over the same (swift imports sft_args.json's bnb flags)
    const { model, tokenizer } = await loadChatModel(dir, str(v, 'tokenizer'), { adapter: ckpt, ...checkpointQuantization(v, ckpt) });
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

/**
 * The float weight of every quantized Linear layer of a chat model (its LLM's), by the checkpoint
 * name `<layer>.weight`, from the quantized tensors its state dict holds under bitsandbytes' names
 * (`<layer>.weight`, `<layer>.SCB`, `<layer>.weight.absmax` …), in float32.
 */
async function dequantizedWeights(model: et.systems.m2se.InternVL | et.nn.LlamaForCausalLM, sd: Map<string, et.Tensor>): Promise<Map<string, et.Tensor>> {
  const [llm, prefix] = model instanceof et.systems.m2se.InternVL ? [model.language_model, 'language_model.'] : [model, ''];
  const out = new Map<string, et.Tensor>();
  for (const l of et.nn.linearLayers(llm)) {
    if (!l.format) continue;
    const at = `${prefix}${l.name}`;
    const tensors: Record<string, et.Tensor> = { weight: sd.get(`${at}.weight`)! };
    if (sd.has(`${at}.SCB`)) tensors.SCB = sd.get(`${at}.SCB`)!;
    for (const [k, t] of sd) if (k.startsWith(`${at}.weight.`)) tensors[k.slice(at.length + '.weight.'.length)] = t;
    out.set(`${at}.weight`, await et.nn.dequantizeWeight({ format: l.format, shape: [l.out, l.in], tensors }));
  }
  return out;
}

/** How many Linear layers of a chat model's LLM are quantized. */
function quantizedCount(model: et.systems.m2se.InternVL | et.nn.LlamaForCausalLM): number {
  const llm = model instanceof et.systems.m2se.InternVL ? model.language_model : model;
  return et.nn.linearLayers(llm).filter((l) => l.format !== null).length;
}

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
    ...QUANT_FLAGS,
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
    // a QLoRA checkpoint: its base loaded quantized as it trained (sft_args.json's bnb flags), the
    // LoRA merged into the quantized weights as swift 2.6.1's merge_lora does through peft
    const { quantize } = checkpointQuantization(v, adapter);
    if (quantize)
      process.stderr.write(
        `emotorch: It is not recommended to merge quantized models, as this can result in performance degradation (swift's warning): the LoRA goes into the ${quantize} weights as peft merges into bitsandbytes layers (dequantized, updated, quantized again); the merged weights are written dequantized, in the base's layout and dtypes\n`,
      );
    // the base in its own dtype (a bfloat16 8B stays 16 GB), the adapters folded into it
    const { model, dir: base } = await loadChatModel(dir, str(v, 'tokenizer'), { adapter, merge: true, dtype: 'auto', ...(quantize ? { quantize } : {}) });
    // the base checkpoint's own tensor names, in its own dtypes: the merged folder loads wherever the base does
    const released = await et.nn.loadCheckpoint(base);
    const own = model.stateDict();
    const dequantized = await dequantizedWeights(model, own);
    const merged = new Map<string, et.Tensor>();
    for (const [k, t] of released) {
      const p = own.get(k);
      if (!p && k.endsWith('.rotary_emb.inv_freq')) {
        merged.set(k, t);
        continue;
      } // a buffer the loader recomputes
      const q = dequantized.get(k);
      if (q) {
        merged.set(k, q.to({ dtype: t.dtype }));
        continue;
      }
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
