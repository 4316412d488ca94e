// The SemEval-2024 Task 3 seed classifier (et.systems.semeval.ConcatFusionClassifier): per-utterance
// embeddings of a set of modalities, concatenated, one Linear(Σd, 7, bias=false), trained on
// et.train.Trainer with the seed's TrainingArguments (transformers 4.30's optim adamw_hf, 10 epochs, batch 4 × accumulation 16,
// evaluation and saving every epoch, 1 checkpoint kept), on generated ECF 2.0 sample data with
// text and audio embeddings. Macro F1 over the 7 emotions before and after, per modality set,
// and the dialogue-context variant (a transformer over each conversation) on the same split; then
// a RoBERTa text encoder, frozen with cached embeddings vs fine-tuned with LoRA, and with a LoRA
// WavLM audio encoder beside it, on the same split.
//   npm run example:semeval
//
// Real data: ECF 2.0 JSON + one embedding file per modality (tensor names <conv>_<utt>), e.g.
// LanguageBind's 768-d text / video / audio embeddings; on a GPU add bf16: true to the args.
import * as et from 'emotorch';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dataDir = process.env.EMOTORCH_SAMPLE_DIR ?? path.join(os.tmpdir(), 'emotorch-sample-data');
if (!fs.existsSync(path.join(dataDir, 'ecf.json'))) {
  execFileSync(process.execPath, [path.join(here, '..', 'scripts', 'make-sample-data.mjs'), dataDir], { stdio: 'inherit' });
}
et.manualSeed(0);

const files = { text: 'ecf_text.safetensors', audio: 'ecf_audio.safetensors' };
// Macro F1 over the 7 emotions (the seed's figure); rows labelled -100 (padding, no emotion) are left out.
const macroF1 = ({ predictions, labelIds }) => {
  const keep = labelIds.ne(-100);
  return { macro_f1: et.metrics.f1(predictions.argmax(-1).index(keep), labelIds.index(keep), { average: 'macro', labels: [0, 1, 2, 3, 4, 5, 6] }) };
};
const seedArgs = {
  num_train_epochs: 10,
  per_device_train_batch_size: 4,
  gradient_accumulation_steps: 16,
  eval_strategy: 'epoch',
  save_strategy: 'epoch',
  save_total_limit: 1,
  optim: 'adamw_hf',
};
const common = { disable_tqdm: true, report_to: 'none', use_cpu: true };
const outDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'semeval-'));

for (const order of [['text'], ['audio'], ['text', 'audio']]) {
  const ds = await et.data.EcfDataset.fromFile(path.join(dataDir, 'ecf.json'), { features: { files, order } });
  // Split by conversation: every 4th conversation is held out.
  const held = new Set(ds.conversations.filter((_, i) => i % 4 === 0).map((c) => c.id));
  const items = await Promise.all([...Array(ds.length).keys()].map((i) => ds.get(i)));
  const subset = (keep) => {
    const xs = items.filter(keep);
    return { length: xs.length, get: (i) => xs[i] };
  };
  const train = subset((it) => !held.has(it.conversationId)),
    test = subset((it) => held.has(it.conversationId));
  const dims = Object.fromEntries(order.map((m) => [m, ds.featureSize / order.length]));
  const model = et.systems.semeval.ConcatFusionClassifier.create({ modalities: dims });
  const trainer = new et.train.Trainer({
    model,
    trainDataset: train,
    evalDataset: test,
    dataCollator: (xs) => et.systems.semeval.ConcatFusionClassifier.collate(xs),
    computeMetrics: macroF1,
    args: { ...seedArgs, ...common, output_dir: outDir(), learning_rate: 5e-2 },
  });
  const before = await trainer.evaluate();
  await trainer.train();
  const after = await trainer.evaluate();
  console.log(
    `seed     ${order.join('+').padEnd(10)} ${train.length} train / ${test.length} test utterances: macro F1 ${before.eval_macro_f1.toFixed(3)} -> ${after.eval_macro_f1.toFixed(3)}`,
  );

  if (order.length < 2) continue;
  // Subtask 2 (emotion-cause pairs) with the self-cause baseline on the predicted emotions: the
  // official weighted-average F1, and the submission file CodaLab takes.
  const testItems = items.filter((it) => held.has(it.conversationId));
  const { predictions } = await trainer.predict(test);
  const pred = Array.from(predictions.argmax(-1).dataSync(), Number);
  const submission = path.join(outDir(), 'Subtask_2_pred.json');
  et.metrics.writeEcfSubmission(submission, testItems, et.systems.semeval.selfCausePairs(testItems, pred));
  const goldConvs = JSON.parse(fs.readFileSync(path.join(dataDir, 'ecf.json'), 'utf8')).filter((c) => held.has(c.conversation_ID));
  const pairs = et.metrics.ecacPairs(JSON.parse(fs.readFileSync(submission, 'utf8')), goldConvs);
  console.log(`         subtask 2, self-cause pairs: w-avg F1 ${pairs.weighted.f1.toFixed(3)} (micro ${pairs.micro.f1.toFixed(3)}); wrote ${submission}`);
  // Beyond the seed, on the same split: a 1-layer transformer over each conversation's utterances
  // with utterance-position and speaker embeddings (whole conversations per batch).
  const convs = et.systems.semeval.ConcatFusionClassifier.groupConversations(items);
  const csubset = (keep) => {
    const xs = convs.filter((c) => keep(c[0]));
    return { length: xs.length, get: (i) => xs[i] };
  };
  const ctx = et.systems.semeval.ConcatFusionClassifier.create({ modalities: dims, context: { hidden_size: 32, num_attention_heads: 4, num_speakers: 2 } });
  const ctrainer = new et.train.Trainer({
    model: ctx,
    trainDataset: csubset((it) => !held.has(it.conversationId)),
    evalDataset: csubset((it) => held.has(it.conversationId)),
    dataCollator: (cs) => et.systems.semeval.ConcatFusionClassifier.collateConversations(cs),
    computeMetrics: macroF1,
    args: {
      ...common,
      output_dir: outDir(),
      num_train_epochs: 30,
      per_device_train_batch_size: 4,
      eval_strategy: 'epoch',
      save_strategy: 'no',
      learning_rate: 3e-3,
    },
  });
  const cb = await ctrainer.evaluate();
  await ctrainer.train();
  const ca = await ctrainer.evaluate();
  console.log(
    `context  ${order.join('+').padEnd(10)} same split, whole conversations:          macro F1 ${cb.eval_macro_f1.toFixed(3)} -> ${ca.eval_macro_f1.toFixed(3)}`,
  );
}
console.log('(the seed rows use the seed args as they are, except learning_rate 5e-2 for these 16-d embeddings and a tiny set; chance macro F1 is about 0.14)');

// Embeddings computed by an emotorch encoder instead of read from files, on the same split: a
// tiny random-weight RoBERTa over a word vocabulary of the sample texts (with a real checkpoint:
// et.nn.RobertaModel.fromPretrained('roberta-base/') and its tokenizer). (a) the seed way: the
// frozen encoder's mean-pooled states, computed once and cached on disk (et.systems.semeval.embedUtterances),
// then only the linear layer trains; (b) LoRA on the encoder's query/value, trained end to end.
{
  const ds = await et.data.EcfDataset.fromFile(path.join(dataDir, 'ecf.json'));
  const held = new Set(ds.conversations.filter((_, i) => i % 4 === 0).map((c) => c.id));
  const items = await Promise.all([...Array(ds.length).keys()].map((i) => ds.get(i)));
  const words = (t) => t.toLowerCase().split(/\s+/).filter(Boolean);
  const vocab = new Map(); // <s> 0, <pad> 1, </s> 2, then the words
  for (const it of items) for (const w of words(it.text)) if (!vocab.has(w)) vocab.set(w, 3 + vocab.size);
  const tokenIds = (it) => [0, ...words(it.text).map((w) => vocab.get(w)), 2];
  const encoder = () => {
    et.manualSeed(0);
    return et.nn.RobertaModel.create(
      { vocab_size: 3 + vocab.size, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 40 },
      { addPoolingLayer: false },
    );
  };
  const args = { ...common, num_train_epochs: 20, per_device_train_batch_size: 4, eval_strategy: 'no', save_strategy: 'no', learning_rate: 1e-2 };
  const run = async (name, model, withFeatures, collate) => {
    const t0 = performance.now();
    const subset = (keep) => {
      const xs = items.filter(keep).map(withFeatures);
      return { length: xs.length, get: (i) => xs[i] };
    };
    const trainer = new et.train.Trainer({
      model,
      trainDataset: subset((it) => !held.has(it.conversationId)),
      evalDataset: subset((it) => held.has(it.conversationId)),
      dataCollator: collate,
      computeMetrics: macroF1,
      args: { ...args, output_dir: outDir() },
    });
    const before = await trainer.evaluate();
    await trainer.train();
    const after = await trainer.evaluate();
    const trainable = model
      .parameters()
      .filter((p) => p.requiresGrad)
      .reduce((n, p) => n + p.numel, 0);
    console.log(
      `${name} macro F1 ${before.eval_macro_f1.toFixed(3)} -> ${after.eval_macro_f1.toFixed(3)} (${trainable} trained parameters, ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
  };
  const frozen = encoder().eval();
  const cache = await et.systems.semeval.embedUtterances(
    items.map((it) => `${it.conversationId}_${it.utteranceId}`),
    async (idx) => {
      const b = et.systems.semeval.ConcatFusionClassifier.collate(
        idx.map((i) => items[i]),
        { tokenIds },
      );
      const { lastHiddenState } = await frozen.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask });
      return { lastHiddenState, attentionMask: b.attentionMask };
    },
    { cacheFile: path.join(outDir(), 'roberta_text.safetensors') },
  );
  await run(
    'text encoder, cached   ',
    et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 32 } }),
    (it) => ({ ...it, features: cache.get(`${it.conversationId}_${it.utteranceId}`) }),
    (xs) => et.systems.semeval.ConcatFusionClassifier.collate(xs),
  );
  await run(
    'text encoder, LoRA      ',
    et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 32 },
      textEncoder: { model: encoder(), lora: { r: 8, alpha: 16, dropout: 0.1, targetModules: ['query', 'value'] } },
    }),
    (it) => it,
    (xs) => et.systems.semeval.ConcatFusionClassifier.collate(xs, { tokenIds }),
  );

  // The same with an audio encoder as well: each sample utterance is voiced by one of the sample
  // clips of its emotion (wav/<emotion>_<k>.wav); a tiny random-weight WavLM (with a real
  // checkpoint: et.nn.WavLMModel.fromPretrained('wavlm-base-plus/')) with LoRA on q_proj / v_proj,
  // beside the LoRA text encoder, both trained end to end.
  const clipOf = new Map();
  for (const it of items) {
    const file = path.join(dataDir, 'wav', `${it.emotion}_${(7 * it.conversationId + it.utteranceId) % 8}.wav`);
    if (!clipOf.has(file)) clipOf.set(file, (await et.audio.readWav(file)).samples);
    clipOf.set(it, clipOf.get(file));
  }
  et.manualSeed(0);
  const wavlm = et.nn.WavLMModel.create({
    conv_dim: [32, 32, 32],
    conv_kernel: [10, 8, 4],
    conv_stride: [5, 8, 4],
    hidden_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 64,
    num_conv_pos_embeddings: 16,
    num_conv_pos_embedding_groups: 4,
    num_buckets: 32,
    max_bucket_distance: 64,
  });
  await run(
    'text + audio, both LoRA ',
    et.systems.semeval.ConcatFusionClassifier.create({
      modalities: { text: 32, audio: 32 },
      textEncoder: { model: encoder(), lora: { r: 8, alpha: 16, dropout: 0.1, targetModules: ['query', 'value'] } },
      audioEncoder: { model: wavlm, lora: { r: 8, alpha: 16, dropout: 0.1, targetModules: ['q_proj', 'v_proj'] } },
    }),
    (it) => it,
    (xs) => et.systems.semeval.ConcatFusionClassifier.collate(xs, { tokenIds, waveform: (it) => clipOf.get(it) }),
  );
}
