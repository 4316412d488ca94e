/**
 * `emotorch semeval train | predict`: the SemEval-2024 Task 3 seed classifier (per-utterance
 * embeddings of each modality, concatenated, one Linear(Σd, 7, bias=False)) trained with the
 * seed's TrainingArguments on ECF 2.0 conversations, and the Subtask 2 submission file
 * (`Subtask_2_pred.json`) from its predictions with the self-cause pairing.
 */
import * as path from 'path';
import * as et from '../index';
import { Command, MAX_DATA_BYTES, UsageError, Values, need, num, outputFolder, readJsonFile, str, writeTextFile } from './common';

/** `--features text=text.safetensors video=video.safetensors` → files in that order. */
function features(v: Values): Record<string, string> {
  const list = v.features as string[] | undefined;
  if (!list?.length) throw new UsageError('--features is required: modality=embeddings.safetensors … (tensor names <conversation>_<utterance>)');
  const out: Record<string, string> = {};
  for (const f of list) {
    const m = /^([A-Za-z_][\w-]*)=(.+)$/.exec(f);
    if (!m) throw new UsageError(`--features takes modality=file pairs, not '${f}'`);
    if (out[m[1]]) throw new UsageError(`--features names '${m[1]}' twice`);
    out[m[1]] = path.resolve(m[2]);
  }
  return out;
}

/** The conversations with their embeddings, and each modality's embedding size (the dataset checked they agree). */
async function dataset(
  file: string,
  files: Record<string, string>,
): Promise<{ ds: et.data.EcfDataset; items: et.data.EcfItem[]; sizes: Record<string, number> }> {
  const ds = await et.data.EcfDataset.fromFile(file, { features: { files } });
  if (!ds.length) throw new et.EmotorchError(`'${file}' has no utterances`, 'ERR_DATA');
  const items = await Promise.all([...Array(ds.length).keys()].map((i) => ds.get(i)));
  const key = `${items[0].conversationId}_${items[0].utteranceId}`;
  const sizes = Object.fromEntries(
    Object.entries(files).map(([m, f]) => [
      m,
      et.io
        .readSafetensorsHeader(f)
        .entries.get(key)!
        .shape.reduce((a, b) => a * b, 1),
    ]),
  );
  return { ds, items, sizes };
}

const asDataset = (items: et.data.EcfItem[]) => ({ length: items.length, get: (i: number) => items[i] });
const CONFIG = 'semeval_config.json';
const WEIGHTS = 'model.safetensors';

/** Macro and weighted F1 over the 7 emotions, for the items with a label. */
function scores({ predictions, labelIds }: { predictions: et.Tensor; labelIds: et.Tensor | null }): Record<string, number> {
  if (!labelIds) return {};
  const keep = labelIds.ne(-100);
  const pred = predictions.argmax(-1).index(keep),
    gold = labelIds.index(keep);
  const labels = [0, 1, 2, 3, 4, 5, 6];
  return {
    macro_f1: et.metrics.f1(pred, gold, { average: 'macro', labels }) as number,
    weighted_f1: et.metrics.f1(pred, gold, { average: 'weighted', labels }) as number,
  };
}

export const SEMEVAL_TRAIN: Command = {
  summary: "the seed's classifier: concatenated per-utterance embeddings → Linear(Σd, 7, bias=False), HF TrainingArguments (the seed's as defaults)",
  flags: {
    train_file: { kind: 'string', help: 'ECF 2.0 conversations (Subtask_2_train.json layout)' },
    eval_file: { kind: 'string', help: 'held-out conversations, evaluated every epoch (macro / weighted F1)' },
    features: { kind: 'list', help: 'modality=embeddings.safetensors, in concatenation order (tensors <conversation>_<utterance>)' },
    output_dir: { kind: 'string', help: 'where checkpoints, logs and the final model go', default: 'output' },
    num_train_epochs: { kind: 'number', help: 'epochs', default: '10' },
    per_device_train_batch_size: { kind: 'number', help: 'utterances per batch', default: '4' },
    gradient_accumulation_steps: { kind: 'number', help: 'batches per optimizer step', default: '16' },
    learning_rate: { kind: 'number', help: "AdamW's learning rate (HF's default; transformers 4.x's AdamW, the seed's optim 'adamw_hf')", default: '5e-5' },
    seed: { kind: 'number', help: 'random seed', default: '42' },
    bf16: { kind: 'bool', help: 'bfloat16 autocast (the seed trains in bf16)', default: 'false' },
    resume_from_checkpoint: { kind: 'string', help: 'a checkpoint folder to go on from' },
  },
  async run(v, _pos, out) {
    const files = features(v);
    const outDir = outputFolder(str(v, 'output_dir')!, '--output_dir', false); // checked before the work
    const train = await dataset(need(v, 'train_file'), files);
    const evalSet = str(v, 'eval_file') ? await dataset(str(v, 'eval_file')!, files) : null;
    const modalities = train.sizes;
    et.manualSeed(num(v, 'seed')!);
    const model = et.systems.semeval.ConcatFusionClassifier.create({ modalities });
    const trainer = new et.train.Trainer({
      model,
      trainDataset: asDataset(train.items),
      evalDataset: evalSet ? asDataset(evalSet.items) : undefined,
      dataCollator: (xs: et.data.EcfItem[]) => et.systems.semeval.ConcatFusionClassifier.collate(xs) as unknown as Record<string, et.Tensor>,
      computeMetrics: scores,
      args: {
        output_dir: outDir,
        num_train_epochs: num(v, 'num_train_epochs'),
        per_device_train_batch_size: num(v, 'per_device_train_batch_size'),
        per_device_eval_batch_size: num(v, 'per_device_train_batch_size'),
        gradient_accumulation_steps: num(v, 'gradient_accumulation_steps'),
        learning_rate: num(v, 'learning_rate'),
        seed: num(v, 'seed'),
        bf16: v.bf16 === true,
        logging_steps: 5,
        optim: 'adamw_hf',
        eval_strategy: evalSet ? 'epoch' : 'no',
        save_strategy: 'epoch',
        save_total_limit: 1,
        report_to: 'none',
        ...(str(v, 'resume_from_checkpoint') ? { resume_from_checkpoint: str(v, 'resume_from_checkpoint') } : {}),
      },
    });
    await trainer.train();
    outputFolder(outDir, '--output_dir');
    await model.save(path.join(outDir, WEIGHTS));
    writeTextFile(path.join(outDir, CONFIG), `${JSON.stringify({ modalities, emotions: et.data.ECF_EMOTIONS }, null, 2)}\n`, '--output_dir');
    if (evalSet) {
      const m = await trainer.evaluate();
      out(`eval: macro F1 ${m.eval_macro_f1.toFixed(4)}, weighted F1 ${m.eval_weighted_f1.toFixed(4)} (${evalSet.items.length} utterances)`);
    }
    out(
      `saved ${path.join(outDir, WEIGHTS)} and ${CONFIG} (${Object.entries(modalities)
        .map(([k, d]) => `${k} ${d}`)
        .join(' + ')} → 7)`,
    );
  },
};

export const SEMEVAL_PREDICT: Command = {
  summary: 'emotions of every utterance and the Subtask 2 submission file (Subtask_2_pred.json, self-cause pairs), scored when the file has gold labels',
  flags: {
    model_dir: { kind: 'string', help: "a 'semeval train' output folder (model.safetensors, semeval_config.json)" },
    test_file: { kind: 'string', help: 'ECF 2.0 conversations to predict (emotions may be absent)' },
    features: { kind: 'list', help: 'modality=embeddings.safetensors, the modalities the model was trained on' },
    output_file: { kind: 'string', help: 'the submission file', default: 'Subtask_2_pred.json' },
    batch_size: { kind: 'number', help: 'utterances per batch', default: '64' },
  },
  async run(v, _pos, out) {
    const dir = need(v, 'model_dir');
    let cfg: { modalities?: Record<string, number> } | null;
    try {
      cfg = readJsonFile(path.join(dir, CONFIG), CONFIG) as typeof cfg;
    } catch (e) {
      throw new et.EmotorchError(`--model_dir '${dir}' is not a 'semeval train' output: ${(e as Error).message}`, (e as et.EmotorchError).code);
    }
    const mods = cfg?.modalities;
    if (
      !cfg ||
      typeof cfg !== 'object' ||
      !mods ||
      typeof mods !== 'object' ||
      Array.isArray(mods) ||
      !Object.values(mods).every((d) => Number.isSafeInteger(d) && d > 0)
    ) {
      throw new et.EmotorchError(`'${path.join(dir, CONFIG)}' is not a 'semeval train' ${CONFIG}: no "modalities" object of embedding sizes`, 'ERR_FORMAT');
    }
    const files = features(v);
    const trained = Object.keys(cfg.modalities ?? {});
    if (trained.join() !== Object.keys(files).join())
      throw new UsageError(
        `the model was trained on --features ${trained.map((m) => `${m}=…`).join(' ')} (in that order); given ${Object.keys(files).join(', ')}`,
      );
    const test = await dataset(need(v, 'test_file'), files);
    for (const [m, d] of Object.entries(test.sizes)) {
      if (cfg.modalities![m] !== d)
        throw new et.EmotorchError(`the ${m} embeddings have ${d} values per utterance; the model was trained on ${cfg.modalities![m]}`, 'ERR_INVALID_ARG');
    }
    const model = et.systems.semeval.ConcatFusionClassifier.create({ modalities: cfg.modalities! });
    await model.load(path.join(dir, WEIGHTS));
    model.eval();
    const bs = num(v, 'batch_size')!;
    if (!Number.isInteger(bs) || bs < 1) throw new UsageError('--batch-size must be a positive integer');
    const pred: number[] = [];
    const logitsAll: et.Tensor[] = [];
    await et.noGrad(async () => {
      for (let i = 0; i < test.items.length; i += bs) {
        const b = et.systems.semeval.ConcatFusionClassifier.collate(test.items.slice(i, i + bs));
        const { logits } = await model.forward(b);
        logitsAll.push(logits);
        pred.push(...Array.from(logits.argmax(-1).dataSync(), Number));
      }
    });
    const file = str(v, 'output_file')!;
    const pairs = et.systems.semeval.selfCausePairs(test.items, pred);
    et.metrics.writeEcfSubmission(file, test.items, pairs);
    const counts = et.data.ECF_EMOTIONS.map((e, k) => `${e} ${pred.filter((p) => p === k).length}`).join(', ');
    out(`wrote ${file}: ${test.ds.conversations.length} conversations, ${pairs.length} emotion-cause pairs (predicted: ${counts})`);
    if (test.items.some((it) => it.label >= 0)) {
      const s = scores({
        predictions: et.cat(logitsAll, 0),
        labelIds: et.tensor(
          test.items.map((it) => (it.label >= 0 ? it.label : -100)),
          { dtype: 'int64' },
        ),
      });
      type Conversations = Parameters<typeof et.metrics.ecacPairs>[0];
      const gold = readJsonFile(need(v, 'test_file'), '--test_file', MAX_DATA_BYTES) as Conversations;
      const sub = et.metrics.ecacPairs(readJsonFile(file, '--output_file', MAX_DATA_BYTES) as Conversations, gold);
      out(
        `gold labels in the file: macro F1 ${s.macro_f1.toFixed(4)}, weighted F1 ${s.weighted_f1.toFixed(4)}; Subtask 2 w-avg F1 ${sub.weighted.f1.toFixed(4)} (micro ${sub.micro.f1.toFixed(4)})`,
      );
    }
  },
};
