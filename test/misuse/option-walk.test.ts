/**
 * Every options object checked (issue 56 item 5): the test walks the exports of every public
 * namespace (`et.nn`, `et.systems`, `et.audio`, `et.data`, `et.vision`, `et.functional`, `et.optim`
 * with its schedules, `et.train`, `et.amp`, `et.io`, `et.hub`, `et.metrics`, `et.distributed`,
 * `et.profiler`) and of `et` itself (the tensor factories, autocast, `et.cpu`, `et.cuda`) — every
 * function, every class's constructor and statics, and every method of those classes (and of
 * Tensor) whose parameter is called `opts` or `options` — and each must either be called here with
 * a misspelt (`dtpye`) and two foreign options (`lowCpuMemUsage`, transformers' `low_cpu_mem_usage`,
 * which emotorch does not take, and `fooBar`), each refused as ERR_INVALID_ARG naming it and listing the options the call takes, or
 * be named in NO_OPTIONS as taking no options object. A new export that is neither fails the test,
 * so it cannot slip through; a new model's `create` / `fromPretrained` / `fromFile` is called by
 * the default rows without a line here. (`et.nn.LlamaForCausalLM.fromPretrained(dir, { dtpye:
 * 'bfloat16' })` used to load in float32 without a word, `et.zeros([2], { dtpye: 'float64' })` made
 * float32.) What needs a process group (`et.distributed` collectives) takes no options object; the
 * methods of a DistributedDataParallel are nn.Module's, called on a module without one.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';
import { EventEmitter } from 'events';

type Call = (opts: Record<string, unknown>) => unknown;
/**
 * How to call one export with an options object, and one name it must list as taken — or, where the
 * names taken are too many to list (TrainingArguments' HF fields), the message that points to them.
 */
interface Row {
  call: Call;
  takes: string;
  pointsTo?: RegExp;
}

const NOWHERE = '/nonexistent/emotorch-option-walk';
const tok = () => et.data.Tokenizer.fromFile(path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json'));
const tinyLlama = () =>
  et.nn.LlamaForCausalLM.create({
    vocab_size: 40,
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    max_position_embeddings: 32,
  });
const ecfItem = { conversationId: 1, utteranceId: 1, text: '', speaker: 'A', emotion: null, label: 1, causes: [], features: new Float32Array(4) };
const spectraItem = { audio: new Float32Array(800).fill(0.1), textIds: [0, 5, 2], label: 1 };
const samples = new Float32Array(1600);

/** The default rows: what every model class and reader has (a new one is covered without an edit). */
function defaultRow(cls: Record<string, (...a: unknown[]) => unknown>, method: string): Row | null {
  switch (method) {
    case 'create':
      return { call: (o) => cls.create({}, o), takes: 'dtype' };
    case 'fromPretrained':
      return { call: (o) => cls.fromPretrained(NOWHERE, o), takes: 'dtype' };
    case 'fromFile':
      return { call: (o) => cls.fromFile(NOWHERE, o), takes: 'skipBad' };
    default:
      return null;
  }
}

/** A DistributedDataParallel method: nn.Module's, called on a module (a DDP needs a process group). */
const ROW_DDP_METHOD = (m: string): Row => ({ call: (o) => DDP_METHODS[m](o), takes: DDP_TAKES[m] });
const DDP_METHODS: Record<string, Call> = {
  to: (o) => tinyLlama().to(o as never),
  stateDict: (o) => tinyLlama().stateDict(o as never),
  loadStateDict: (o) => tinyLlama().loadStateDict(new Map(), o as never),
  save: (o) => tinyLlama().save(`${NOWHERE}/m.safetensors`, o as never),
  load: (o) => tinyLlama().load(`${NOWHERE}/m.safetensors`, o as never),
};
const DDP_TAKES: Record<string, string> = { to: 'dtype', stateDict: 'trainableOnly', loadStateDict: 'strict', save: 'metadata', load: 'strict' };

/** Calls that take an options object in another place, or need real arguments before it. */
const ROWS: Record<string, Row> = {
  // ---- nn
  'nn.applyLora': { call: (o) => et.nn.applyLora(tinyLlama(), { r: 2, alpha: 4, targetModules: ['q_proj'], ...o } as never), takes: 'targetModules' },
  'nn.saveLoraAdapter': { call: (o) => et.nn.saveLoraAdapter(tinyLlama(), NOWHERE, o), takes: 'baseModel' },
  'nn.quantize': { call: (o) => et.nn.quantize(tinyLlama(), 'int8', o as never), takes: 'skip' },
  'nn.savePretrained': { call: (o) => et.nn.savePretrained(tinyLlama(), NOWHERE, {}, o), takes: 'defaultSkip' },
  'nn.convertWav2Vec2StateDict': { call: (o) => et.nn.convertWav2Vec2StateDict(new Map(), 'fairseq', o), takes: 'strict' },
  'nn.DistributedDataParallel': { call: (o) => new et.nn.DistributedDataParallel(tinyLlama(), o as never), takes: 'bucketCapMb' },
  // ---- systems
  'systems.salmonn.Salmonn.fromPretrained': {
    call: (o) => et.systems.salmonn.Salmonn.fromPretrained({ whisper: NOWHERE, llm: NOWHERE, ...o } as never),
    takes: 'dtype',
  },
  'systems.usdm.usdmChat': {
    call: (o) =>
      et.systems.usdm.usdmChat(
        new et.systems.usdm.Usdm(tinyLlama(), { tokenIds: { newline: 1, space: 2, continue: 3, correspond: 4, unit0: 5, numUnits: 30, pad: 35, bos: 1 } }),
        { tokenizer: null, units: null, ...o } as never,
        'x',
      ),
    takes: 'speaker',
  },
  'systems.usdm.UsdmSpeaker.fromPretrained': { call: (o) => et.systems.usdm.UsdmSpeaker.fromPretrained(NOWHERE, NOWHERE, o), takes: 'dtype' },
  'nn.LanguageBind.fromPretrained': { call: (o) => et.systems.semeval.LanguageBind.fromPretrained({ video: NOWHERE }, o), takes: 'dtype' },
  'systems.semeval.LanguageBindClassifier.create': {
    call: (o) => et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video'] } as never, o),
    takes: 'dtype',
  },
  'systems.semeval.ConcatFusionClassifier.create': {
    call: (o) => et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 4 } }, o),
    takes: 'dtype',
  },
  'nn.InternVL.create': { call: (o) => et.systems.m2se.InternVL.create({} as never, o), takes: 'imgContextTokenId' },
  'systems.spectra.SpectraForPreTraining.fromEncoders': {
    call: (o) => et.systems.spectra.SpectraForPreTraining.fromEncoders(NOWHERE, NOWHERE, o),
    takes: 'numFusedLayers',
  },
  'systems.spectra.SpectraPretrainDataset.fromFile': { call: (o) => et.systems.spectra.SpectraPretrainDataset.fromFile(NOWHERE, o), takes: 'numTurns' },
  'systems.spectra.Spectra.collate': { call: (o) => et.systems.spectra.Spectra.collate([spectraItem] as never, o), takes: 'audioLength' },
  'systems.spectra.Spectra.finetune': { call: (o) => et.systems.spectra.Spectra.finetune(o as never), takes: 'task' },
  'systems.spectra.finetuneSpectra': { call: (o) => et.systems.spectra.finetuneSpectra(o as never), takes: 'task' },
  'systems.spectra.pretrainSpectra': { call: (o) => et.systems.spectra.pretrainSpectra(o as never), takes: 'saveDir' },
  'systems.spectra.spectraPretrainCollate': { call: (o) => et.systems.spectra.spectraPretrainCollate([{}] as never, o), takes: 'mlmProbability' },
  'systems.spectra.buildSpectraPretrainCorpus': { call: (o) => et.systems.spectra.buildSpectraPretrainCorpus(o as never), takes: 'speechDir' },
  'systems.semeval.ConcatFusionClassifier.collate': { call: (o) => et.systems.semeval.ConcatFusionClassifier.collate([ecfItem] as never, o), takes: 'device' },
  'systems.semeval.ConcatFusionClassifier.collateConversations': {
    call: (o) => et.systems.semeval.ConcatFusionClassifier.collateConversations([[ecfItem]] as never, o),
    takes: 'device',
  },
  'systems.semeval.embedUtterances': {
    call: (o) =>
      et.systems.semeval.embedUtterances(
        ['k'],
        async () => {
          throw new Error('not called');
        },
        { cacheFile: `${NOWHERE}/cache.safetensors`, ...o },
      ),
    takes: 'cacheFile',
  },
  'systems.usdm.Usdm': { call: async (o) => new et.systems.usdm.Usdm(tinyLlama(), o), takes: 'tokenIds' },
  'systems.usdm.usdmSftExamples': {
    call: (o) => et.systems.usdm.usdmSftExamples([{ userAudio: 'a.wav', userText: 'a', agentText: 'b', agentAudio: 'b.wav' }], o as never),
    takes: 'codec',
  },
  'systems.salmonn.salmonnTrajectorySvg': { call: (o) => et.systems.salmonn.salmonnTrajectorySvg(['happy'], o), takes: 'title' },
  'systems.salmonn.salmonnSchedule': { call: (o) => et.systems.salmonn.salmonnSchedule(o as never), takes: 'max_epoch' },
  'systems.salmonn.salmonnIterationLr': { call: (o) => et.systems.salmonn.salmonnIterationLr(o as never, 0, 0), takes: 'max_epoch' },
  'systems.salmonn.salmonnTotalSteps': { call: (o) => et.systems.salmonn.salmonnTotalSteps(o as never), takes: 'max_epoch' },
  'systems.semeval.languageBindCollate': { call: (o) => et.systems.semeval.languageBindCollate([ecfItem] as never, o as never), takes: 'videoDir' },
  'systems.semeval.languageBindCachedCollate': { call: (o) => et.systems.semeval.languageBindCachedCollate([ecfItem] as never, o), takes: 'device' },
  'systems.semeval.languageBindEmbeddings': { call: (o) => et.systems.semeval.languageBindEmbeddings(null as never, [], o as never), takes: 'videoDir' },
  'data.internvlEncode': { call: async (o) => et.systems.m2se.internvlEncode(await tok(), { messages: [] } as never, o as never), takes: 'template' },
  'systems.m2se.m2seExamples': { call: async (o) => et.systems.m2se.m2seExamples([], await tok(), o), takes: 'maxLength' },
  'systems.m2se.m2seSalmonnItems': { call: (o) => et.systems.m2se.m2seSalmonnItems([], null as never, o), takes: 'mediaRoot' },
  'systems.m2se.m2seStages': { call: (o) => et.systems.m2se.m2seStages(o as never), takes: 'stages' },
  'systems.m2se.m2seInfer': { call: (o) => et.systems.m2se.m2seInfer(o as never), takes: 'outFile' },
  'systems.m2se.m2seInternVLItems': { call: async (o) => et.systems.m2se.m2seInternVLItems([], null as never, await tok(), o), takes: 'mediaRoot' },
  'systems.m2se.m2seInternVLCollate': { call: (o) => et.systems.m2se.m2seInternVLCollate([], o as never), takes: 'imageSize' },
  // ---- audio
  'audio.readWav': { call: (o) => et.audio.readWav(NOWHERE, o), takes: 'sampleRate' },
  'audio.decodeWav': { call: (o) => et.audio.decodeWav(new Uint8Array(0), o), takes: 'sampleRate' },
  'audio.readAudio': { call: (o) => et.audio.readAudio(NOWHERE, o), takes: 'sampleRate' },
  'audio.encodeWav': { call: (o) => et.audio.encodeWav(samples, 16000, o), takes: 'format' },
  'audio.resample': { call: (o) => et.audio.resample(samples, 16000, 8000, o), takes: 'method' },
  'audio.whisperLogMel': { call: (o) => et.audio.whisperLogMel(samples, o), takes: 'nMels' },
  'audio.kaldiFbank': { call: (o) => et.audio.kaldiFbank(samples, o), takes: 'numMelBins' },
  'audio.vocoderLogMel': { call: (o) => et.audio.vocoderLogMel(samples, o), takes: 'nMels' },
  'audio.languageBindAudio': { call: (o) => et.audio.languageBindAudio(samples, o), takes: 'sampleRate' },
  'audio.UnitExtractor': { call: (o) => new et.audio.UnitExtractor(o as never), takes: 'centroids' },
  // ---- vision
  'vision.probeVideo': { call: (o) => et.vision.probeVideo(NOWHERE, o), takes: 'backend' },
  'vision.readVideoFrames': { call: (o) => et.vision.readVideoFrames(NOWHERE, o), takes: 'numFrames' },
  'vision.readImage': { call: (o) => et.vision.readImage(NOWHERE, o), takes: 'maxPixels' },
  'vision.videoTransform': { call: (o) => et.vision.videoTransform(et.zeros([1, 3, 4, 4]), o), takes: 'size' },
  'vision.clipImageTransform': { call: (o) => et.vision.clipImageTransform(et.zeros([3, 4, 4]), o), takes: 'cropSize' },
  'vision.processVideo': { call: (o) => et.vision.processVideo(NOWHERE, o), takes: 'numFrames' },
  'vision.processImage': { call: (o) => et.vision.processImage(NOWHERE, o), takes: 'size' },
  'vision.internvlTiles': { call: (o) => et.vision.internvlTiles(et.zeros([3, 4, 4]), o), takes: 'maxNum' },
  'vision.internvlTileCount': { call: (o) => et.vision.internvlTileCount(4, 4, o), takes: 'maxNum' },
  // ---- data
  'data.readPickle': { call: (o) => et.data.readPickle(NOWHERE, o), takes: 'dict' },
  'data.parsePickle': { call: (o) => et.data.parsePickle(new Uint8Array([0x80, 2, 0x4e, 0x2e]), o), takes: 'dict' },
  'data.padSequences': { call: (o) => et.data.padSequences([[1]], o), takes: 'padValue' },
  'data.stackNumbers': { call: (o) => et.data.stackNumbers([1], o), takes: 'dtype' },
  'data.Tokenizer.fromFile': { call: (o) => et.data.Tokenizer.fromFile(NOWHERE, o), takes: 'revision' },
  'data.usdm.usdmText': { call: (o) => et.data.usdm.usdmText({ text: 'a' } as never, o), takes: 'numUnits' },
  'data.usdm.buildUsdmExample': { call: (o) => et.data.usdm.buildUsdmExample({ text: 'a' } as never, { encode: () => [1] }, o), takes: 'bos' },
  'data.usdm.readUsdmLines': { call: (o) => et.data.usdm.readUsdmLines(NOWHERE, o), takes: 'vocabSize' },
  'data.DataLoader': { call: (o) => new et.data.DataLoader({ length: 2, get: (i: number) => i }, o), takes: 'batchSize' },
  // ---- et itself: tensor factories, autocast, the CPU runtime, Tensor methods
  'tensor': { call: (o) => et.tensor([1], o), takes: 'shape' },
  'zeros': { call: (o) => et.zeros([1], o), takes: 'dtype' },
  'ones': { call: (o) => et.ones([1], o), takes: 'dtype' },
  'full': { call: (o) => et.full([1], 2, o), takes: 'dtype' },
  'randn': { call: (o) => et.randn([1], o), takes: 'dtype' },
  'rand': { call: (o) => et.rand([1], o), takes: 'dtype' },
  'randint': { call: (o) => et.randint(0, 2, [1], o), takes: 'dtype' },
  'arange': { call: (o) => et.arange(0, 2, 1, o), takes: 'dtype' },
  'linspace': { call: (o) => et.linspace(0, 1, 2, o), takes: 'dtype' },
  'eye': { call: (o) => et.eye(2, o), takes: 'dtype' },
  'zerosLike': { call: (o) => et.zerosLike(et.zeros([1]), o), takes: 'requiresGrad' },
  'onesLike': { call: (o) => et.onesLike(et.zeros([1]), o), takes: 'requiresGrad' },
  'autocast': { call: (o) => et.autocast(o as never, () => 0), takes: 'device' },
  'cpu.configureCache': { call: (o) => et.cpu.configureCache(o as never), takes: 'limitMb' },
  'Tensor#backward': { call: (o) => et.zeros([1], { requiresGrad: true }).sum().backward(undefined, o), takes: 'retainGraph' },
  'Tensor#to': { call: (o) => et.zeros([1]).to(o), takes: 'dtype' },
  // ---- functional
  'functional.crossEntropy': { call: (o) => et.functional.crossEntropy(et.zeros([1, 2]), et.tensor([0], { dtype: 'int64' }), o), takes: 'ignoreIndex' },
  'functional.nllLoss': { call: (o) => et.functional.nllLoss(et.zeros([1, 2]), et.tensor([0], { dtype: 'int64' }), o), takes: 'ignoreIndex' },
  'functional.mseLoss': { call: (o) => et.functional.mseLoss(et.zeros([1]), et.zeros([1]), o), takes: 'reduction' },
  'functional.l1Loss': { call: (o) => et.functional.l1Loss(et.zeros([1]), et.zeros([1]), o), takes: 'reduction' },
  'functional.binaryCrossEntropyWithLogits': { call: (o) => et.functional.binaryCrossEntropyWithLogits(et.zeros([1]), et.zeros([1]), o), takes: 'posWeight' },
  'functional.interpolate': { call: (o) => et.functional.interpolate(et.zeros([1, 1, 2, 2]), { size: [1, 1], ...o }), takes: 'size' },
  'functional.scaledDotProductAttention': {
    call: (o) => et.functional.scaledDotProductAttention(et.zeros([1, 1, 1, 4]), et.zeros([1, 1, 2, 4]), et.zeros([1, 1, 2, 4]), o),
    takes: 'scale',
  },
  // ---- optim
  'optim.AdamW': { call: (o) => new et.optim.AdamW([], o), takes: 'weightDecay' },
  'optim.AdamWHF': { call: (o) => new et.optim.AdamWHF([], o), takes: 'correctBias' },
  'optim.FusedAdam': { call: (o) => new et.optim.FusedAdam([], o), takes: 'biasCorrection' },
  'optim.SGD': { call: (o) => new et.optim.SGD([], o as never), takes: 'momentum' },
  'optim.schedules.linearWarmupLinearDecay': { call: (o) => et.optim.schedules.linearWarmupLinearDecay(o as never), takes: 'endLr' },
  'optim.schedules.linearWarmupCosine': { call: (o) => et.optim.schedules.linearWarmupCosine(o as never), takes: 'minLr' },
  'optim.schedules.hfSchedule': { call: (o) => et.optim.schedules.hfSchedule('linear', o as never), takes: 'numCycles' },
  // ---- train, amp
  'train.Trainer': { call: (o) => new et.train.Trainer(o as never), takes: 'trainDataset' },
  // ~60 HF fields: the message points to the training guide's list (test/train/args.test.ts keeps it under 300 characters)
  'train.TrainingArguments': {
    call: (o) => new et.train.TrainingArguments(o as never),
    takes: 'learning_rate',
    pointsTo: /^Expected a TrainingArguments field emotorch supports \(see docs\/training\.md\) for args field but received "(.+)"$/,
  },
  'train.EarlyStoppingCallback': { call: (o) => new et.train.EarlyStoppingCallback(o), takes: 'patience' },
  'amp.GradScaler': { call: (o) => new et.amp.GradScaler(o), takes: 'initScale' },
  // ---- io, hub
  'io.loadSafetensors': { call: (o) => et.io.loadSafetensors(NOWHERE, o), takes: 'only' },
  'io.readPickle': { call: (o) => et.io.readPickle(NOWHERE, o), takes: 'dict' },
  'io.parsePickle': { call: (o) => et.io.parsePickle(new Uint8Array([0x80, 2, 0x4e, 0x2e]), o), takes: 'dict' },
  'hub.cachedSnapshot': { call: (o) => et.hub.cachedSnapshot('org/name', o), takes: 'revision' },
  'hub.hubSnapshot': { call: (o) => et.hub.hubSnapshot('org/name', { localFilesOnly: true, cacheDir: NOWHERE, ...o }), takes: 'localFilesOnly' },
  'hub.resolvePretrainedPath': { call: (o) => et.hub.resolvePretrainedPath(FIXTURES, o), takes: 'revision' },
  // ---- distributed (without a process group: each refuses its options before it needs one)
  'distributed.init': { call: (o) => et.distributed.init(o), takes: 'backend' },
  'distributed.DistributedDataParallel': { call: (o) => new et.distributed.DistributedDataParallel(tinyLlama(), o as never), takes: 'bucketCapMb' },
  'distributed.DDP': { call: (o) => new et.distributed.DDP(tinyLlama(), o as never), takes: 'bucketCapMb' },
  'distributed.DistributedSampler': { call: (o) => new et.distributed.DistributedSampler(4, o), takes: 'numReplicas' },
  'distributed.ShardedDataParallel': { call: (o) => new et.distributed.ShardedDataParallel(tinyLlama(), o as never), takes: 'stage' },
  // its own methods check their options before anything else (here on a bare receiver: a live
  // wrapper needs a process group); the others are nn.Module's
  'distributed.ShardedDataParallel#fullStateDict': {
    call: (o) => et.distributed.ShardedDataParallel.prototype.fullStateDict.call({} as never, o as never),
    takes: 'rankZeroOnly',
  },
  'distributed.ShardedDataParallel#saveShards': {
    call: (o) => et.distributed.ShardedDataParallel.prototype.saveShards.call({} as never, NOWHERE, o as never),
    takes: 'optimizer',
  },
  'distributed.ShardedDataParallel#loadShards': {
    call: (o) => et.distributed.ShardedDataParallel.prototype.loadShards.call({} as never, NOWHERE, o as never),
    takes: 'optimizer',
  },
  ...Object.fromEntries(['to', 'loadStateDict', 'save', 'load'].map((m) => [`distributed.ShardedDataParallel#${m}`, ROW_DDP_METHOD(m)])),
  // the methods a DistributedDataParallel has are nn.Module's
  ...Object.fromEntries(['to', 'stateDict', 'loadStateDict', 'save', 'load'].map((m) => [`distributed.DistributedDataParallel#${m}`, ROW_DDP_METHOD(m)])),
  ...Object.fromEntries(['to', 'stateDict', 'loadStateDict', 'save', 'load'].map((m) => [`distributed.DDP#${m}`, ROW_DDP_METHOD(m)])),
  // ---- profiler
  'profiler.start': { call: (o) => et.profiler.start(o), takes: 'recordShapes' },
  'profiler.stop': { call: (o) => et.profiler.stop(o), takes: 'tracePath' },
  'profiler.profile': { call: (o) => et.profiler.profile(() => 0, o), takes: 'tracePath' },
  'profiler.ProfileResult#keyAverages': { call: (o) => new et.profiler.ProfileResult([]).keyAverages(o as never), takes: 'groupByShapes' },
  'profiler.ProfileResult#table': { call: (o) => new et.profiler.ProfileResult([]).table(o as never), takes: 'rowLimit' },
  // ---- metrics
  ...Object.fromEntries(
    (
      [
        ['unweightedAccuracy', 'adjusted'],
        ['balancedAccuracy', 'adjusted'],
        ['precisionRecallFscoreSupport', 'average'],
        ['precision', 'average'],
        ['recall', 'average'],
        ['f1', 'average'],
        ['confusionMatrix', 'normalize'],
        ['classificationReport', 'digits'],
      ] as const
    ).map(([f, takes]) => [
      `metrics.${f}`,
      { call: (o: Record<string, unknown>) => (et.metrics[f] as (...a: unknown[]) => unknown)(['a', 'b'], ['a', 'b'], o), takes },
    ]),
  ),
  ...Object.fromEntries(
    (
      [
        ['BalancedAccuracy', 'adjusted'],
        ['PrecisionRecallFscore', 'average'],
        ['Precision', 'average'],
        ['Recall', 'average'],
        ['F1', 'average'],
        ['ConfusionMatrix', 'normalize'],
        ['ClassificationReport', 'digits'],
        ['CCC', 'ddof'],
        ['Mmsa', 'dataset'],
        ['M2seSentiment', 'labels'],
        ['M2seEmotion', 'labels'],
        ['TokenAccuracy', 'ignoreIndex'],
        ['Rouge', 'tokenizer'],
        ['Bleu', 'tokenize'],
        ['EmotionSequenceAccuracy', 'marker'],
      ] as const
    ).map(([c, takes]) => [`metrics.${c}`, { call: (o: Record<string, unknown>) => new (et.metrics[c] as new (...a: unknown[]) => unknown)(o), takes }]),
  ),
  'metrics.LabelParser': { call: (o) => new et.metrics.LabelParser({ labels: ['a'], ...o }), takes: 'synonyms' },
  'metrics.fbeta': { call: (o) => et.metrics.fbeta(['a', 'b'], ['a', 'b'], { beta: 2, ...o }), takes: 'beta' },
  'metrics.ccc': { call: (o) => et.metrics.ccc([1, 2], [1, 2], o), takes: 'ddof' },
  'metrics.mmsa': { call: (o) => et.metrics.mmsa([0.5], [0.5], o), takes: 'dataset' },
  'metrics.m2seSentiment': { call: (o) => et.metrics.m2seSentiment(['positive'], ['positive'], o), takes: 'labels' },
  'metrics.m2seEmotion': { call: (o) => et.metrics.m2seEmotion(['joy'], ['joy'], o), takes: 'labels' },
  'metrics.m2seComputeResult': { call: (o) => et.metrics.m2seComputeResult(NOWHERE, 'sentiment', o), takes: 'labels' },
  'metrics.tokenAccuracy': { call: (o) => et.metrics.tokenAccuracy([[1]], [[1]], o), takes: 'shift' },
  'metrics.rouge': { call: (o) => et.metrics.rouge(['a'], ['a'], o), takes: 'maxTokens' },
  'metrics.rougeAsync': { call: (o) => et.metrics.rougeAsync(['a'], ['a'], o), takes: 'maxTokens' },
  'metrics.bleu': { call: (o) => et.metrics.bleu(['a'], ['a'], o), takes: 'smoothMethod' },
  'metrics.parseEmotionSequence': { call: (o) => et.metrics.parseEmotionSequence('a', o), takes: 'synonyms' },
  'metrics.emotionSequenceAccuracy': { call: (o) => et.metrics.emotionSequenceAccuracy(['a'], ['a'], o), takes: 'marker' },
};

/** Exports that take no options object (a name here with a reason; a new export must be placed in ROWS or here). */
const NO_OPTIONS: Record<string, string> = Object.fromEntries(
  Object.entries({
    'refused on a sharded module, whatever it is given (ERR_DIST_STATE: fullStateDict or saveShards)': ['distributed.ShardedDataParallel#stateDict'],
    'positional arguments only': [
      'nn.readConfig',
      'nn.pretrainedConfig',
      'nn.configJson',
      'nn.readBnbQuantization',
      'nn.quantizeWeight',
      'nn.dequantizeWeight',
      'nn.linearLayers',
      'nn.checkQuantFormat',
      'nn.bnbQuantizationConfig',
      'nn.llamaConfigJson',
      'nn.loadCheckpoint',
      'nn.renameKeys',
      'nn.stripPrefix',
      'nn.normalizeRope',
      'nn.normalizeLlamaConfig',
      'nn.mergeLora',
      'nn.unmergeLora',
      'nn.loadLoraAdapter',
      'nn.wav2vec2Dialect',
      'nn.internVisionConfig',
      'nn.unitsToFrames',
      'systems.spectra.resolveSpectraConfig',
      'systems.spectra.tokenizerMasking',
      'systems.spectra.drawSpectraMam',
      'systems.spectra.spectraMetrics',
      'systems.spectra.spectraParamGroups',
      'systems.salmonn.salmonnParamGroups',
      'systems.semeval.selfCausePairs',
      'systems.usdm.addUnitVocabulary',
      'systems.usdm.usdmSftLabels',
      'systems.semeval.languageBindMetrics',
      'systems.semeval.ecfVideoFile',
      'systems.semeval.ecfAudioFile',
      'systems.semeval.languageBindLabel',
      'nn.resolveInternVLConfig',
      'systems.m2se.m2seRecords',
      'systems.m2se.m2seMedia',
      'systems.m2se.m2sePrompt',
      'systems.m2se.m2seCollate',
      'systems.m2se.m2seAudio',
      'systems.m2se.m2seResponse',
      'systems.m2se.m2seInternVLPixels',
      'systems.m2se.internvlTemplateOf',
      'systems.ecfSubmission',
      'systems.writeEcfSubmission',
      'systems.semeval.ConcatFusionClassifier.groupConversations',
      'systems.salmonn.Salmonn.collate',
      'systems.salmonn.salmonnJoinTurns',
      'systems.salmonn.salmonnChat',
      'systems.m2se.internvlChat',
      'systems.m2se.llmChat',
      'data.ChatRequestError',
      'audio.findFfmpeg',
      'audio.findFfprobe',
      'audio.soxrStatus',
      'data.mulberry32',
      'data.inferSwiftTask',
      'data.Tokenizer.fromFileSync',
      'data.usdm.unitString',
      'data.usdm.parseUsdmLine',
      'data.usdm.formatUsdmLine',
      'train.TrainingArguments.steps',
      'vision.linspaceIndices',
      'vision.libavAvailable',
      'vision.internvlGrids',
      'vision.internvlFrameIndices',
      'vision.findClosestAspectRatio',
      'randperm',
      'cat',
      'stack',
      'where',
      'noGrad',
      'isGradEnabled',
      'manualSeed',
      'setNumThreads',
      'getNumThreads',
      'setAdaptiveThreads',
      'getAdaptiveThreads',
      'getActiveThreads',
      'getRngState',
      'setRngState',
      'cpu.availableMemory',
      'cpu.cacheStats',
      'cpu.linearBackends',
      'cpu.convBackends',
      'cpu.emptyCache',
      'cpu.resetPeakMemory',
      'cuda.isAvailable',
      'cuda.deviceCount',
      'cuda.synchronize',
      'EmotorchError',
      'functional.linear',
      'functional.dropout',
      'functional.layerNorm',
      'functional.softmax',
      'functional.logSoftmax',
      'functional.applyRotaryPosEmb',
      'optim.decayGroups',
      'optim.clipGradNorm',
      'optim.LRScheduler',
      'train.listCheckpoints',
      'train.readDeepSpeedConfig',
      'train.TensorBoardWriter',
      'train.writePlots',
      'io.readSafetensorsHeader',
      'io.loadTorchFile',
      'io.pickleValue',
      'io.NdArray',
      'io.readNpy',
      'io.writeNpy',
      'io.readRegularTextSync',
      'io.readJsonSync',
      'io.notAFile',
      'hub.hubCacheDir',
      'hub.isRepoId',
      'hub.modelFiles',
      'distributed.isInitialized',
      'distributed.rank',
      'distributed.worldSize',
      'distributed.localRank',
      'distributed.backend',
      'distributed.destroy',
      'distributed.allReduce',
      'distributed.broadcast',
      'distributed.allGather',
      'distributed.reduceScatter',
      'distributed.barrier',
      'distributed.glooLayoutReport',
      'metrics.pyRound',
      'metrics.pyFixed',
      'metrics.weightedAccuracy',
      'metrics.accuracy',
      'metrics.mae',
      'metrics.mse',
      'metrics.pearsonOf',
      'metrics.pearson',
      'metrics.rankAverage',
      'metrics.spearman',
      'metrics.ecacPairs',
      'metrics.ecacSpans',
      'metrics.ecfSubmission',
      'metrics.writeEcfSubmission',
      'metrics.readSwiftResults',
      'metrics.m2sePairs',
      'metrics.lmAccuracy',
      'metrics.rougeTokenize',
      'metrics.tokenize13a',
      'metrics.Accuracy',
      'metrics.MAE',
      'metrics.MSE',
      'metrics.Pearson',
      'metrics.Spearman',
      'metrics.EcacPairs',
      'metrics.EcacSpans',
      'metrics.M2sePairs',
    ],
    'data, not options: a string map written into the file (saveSafetensors), the environment to read (readEnv)': ['io.saveSafetensors', 'distributed.readEnv'],
    'a config (its field names checked by the config, not an options object)': ['systems.salmonn.Salmonn', 'data.Tokenizer.fromJSON'],
    'an abstract or internal base class, a model part made by its system, or a reader made by its fromFile (no public constructor options)': [
      'nn.Module',
      'nn.NativeModule',
      'systems.spectra.SpectraPretrainDataset',
      'data.Tokenizer',
      'data.SpectraDataset',
      'data.SalmonnDataset',
      'data.EcfDataset',
      'data.SwiftDataset',
      'data.UsdmDataset',
      'nn.RobertaLayers',
      'nn.DecodeBatch',
      'systems.spectra.SpectraModel',
      'systems.spectra.SpectraAudioEncoder',
      'systems.RobertaLayers',
      'data.BaseDataset',
      'data.NdArray',
      'optim.Optimizer',
      'metrics.Metric',
      'Tensor',
      'profiler.ProfileResult',
    ],
  }).flatMap(([why, names]) => names.map((n) => [n, why])),
);

/** The namespaces of `et` (each walked under its own name; `et`'s other exports under theirs). */
const NAMESPACES = ['nn', 'systems', 'audio', 'data', 'vision', 'functional', 'optim', 'train', 'amp', 'io', 'hub', 'metrics', 'distributed', 'profiler'];
/** Where the methods of a class are walked too (those whose parameter is named opts or options); `et.nn`'s and `et.systems`' model methods are checked by their own tests. */
const METHOD_SPACES = new Set(['', 'functional', 'optim', 'train', 'amp', 'io', 'hub', 'metrics', 'distributed', 'profiler']);
const SKIP = ['length', 'name', 'prototype', 'caller', 'arguments', 'constructor'];
const src = (f: unknown) => Function.prototype.toString.call(f);
const isClass = (v: unknown) => typeof v === 'function' && /^class[\s{]/.test(src(v));
/** A class of Node's or the engine's, whose statics and methods are not emotorch's. */
const foreign = (c: unknown) =>
  c === EventEmitter || c === EventEmitter.prototype || c === Error || c === Error.prototype || c === Object.prototype || c === Function.prototype;
const paramsOf = (f: unknown) => {
  const t = src(f);
  return t.slice(t.indexOf('('), t.indexOf(')') + 1);
};

/** Every value of the systems' namespaces (`et.systems.salmonn`, …). */
const GROUPED = new Set(['salmonn', 'spectra', 'usdm', 'semeval', 'm2se'].flatMap((s) => Object.values((et.systems as unknown as Record<string, object>)[s])));
/** What et.nn and et.data export (InternVL, LanguageBind and InternVL's prompts, which M2SE and SemEval re-export). */
const ELSEWHERE = new Set([...Object.values(et.nn), ...Object.values(et.data)]);

/** Every function, class constructor, class static and options-taking method of every namespace and of `et`, by dotted name. */
function walk(): Array<{ key: string; row: Row | null }> {
  const out: Array<{ key: string; row: Row | null }> = [];
  const entries: Array<[string, string, unknown]> = []; // [namespace, dotted name, value]
  const add = (ns: string, prefix: string, mod: object) => {
    // a sub-namespace that re-exports its parent's names (et.data.datasets) is walked once; et.systems' sub-namespaces are its systems, walked whole
    const own = new Set(ns === 'systems' ? [] : Object.values((et as Record<string, unknown>)[ns] ?? {}));
    for (const [name, v] of Object.entries(mod)) {
      if (prefix === 'systems.' && GROUPED.has(v)) continue; // a deprecated flat alias of a grouped name (test/systems/names.test.ts)
      if (prefix.startsWith('systems.') && prefix !== 'systems.' && ELSEWHERE.has(v)) continue; // a composed model et.nn / et.data has, re-exported by its system
      if (typeof v === 'function' && !(prefix.split('.').length > 2 && own.has(v))) entries.push([ns, prefix + name, v]);
      else if (v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).some((x) => typeof x === 'function')) add(ns, `${prefix}${name}.`, v);
    }
  };
  for (const [name, v] of Object.entries(et)) {
    if (NAMESPACES.includes(name)) add(name, `${name}.`, v as object);
    else if (typeof v === 'function') entries.push(['', name, v]);
    else if (v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).some((x) => typeof x === 'function')) add('', `${name}.`, v);
  }
  for (const [ns, key, v] of entries) {
    if (!isClass(v)) {
      out.push({ key, row: ROWS[key] ?? null });
      continue;
    }
    if (ROWS[key] || NO_OPTIONS[key]) out.push({ key, row: ROWS[key] ?? null });
    else if (!['create', 'fromPretrained'].some((m) => typeof (v as never)[m] === 'function')) out.push({ key, row: null }); // a constructor to place
    const statics = new Set<string>();
    for (let c = v as object | null; c && !foreign(c); c = Object.getPrototypeOf(c)) {
      for (const m of Object.getOwnPropertyNames(c)) if (!SKIP.includes(m) && typeof (v as never)[m] === 'function') statics.add(m);
    }
    for (const m of statics) out.push({ key: `${key}.${m}`, row: ROWS[`${key}.${m}`] ?? defaultRow(v as never, m) });
    if (!METHOD_SPACES.has(ns)) continue;
    const methods = new Set<string>();
    for (let p = (v as { prototype: object }).prototype as object | null; p && !foreign(p); p = Object.getPrototypeOf(p)) {
      for (const m of Object.getOwnPropertyNames(p)) {
        const d = Object.getOwnPropertyDescriptor(p, m)!;
        if (!SKIP.includes(m) && typeof d.value === 'function' && /\b(opts|options)\b/.test(paramsOf(d.value))) methods.add(m);
      }
    }
    for (const m of methods) out.push({ key: `${key}#${m}`, row: ROWS[`${key}#${m}`] ?? null });
  }
  return out;
}

async function outcome(run: () => unknown): Promise<unknown> {
  try {
    await run();
    return null;
  } catch (e) {
    return e;
  }
}

const BAD: Array<Record<string, unknown>> = [{ dtpye: 'bfloat16' }, { lowCpuMemUsage: true }, { fooBar: 1 }];

describe('every options object is checked', () => {
  const all = walk();

  it('every export of et and its namespaces is called below or named as taking no options', () => {
    const unplaced = all.filter(({ key, row }) => !row && !NO_OPTIONS[key]).map(({ key }) => key);
    expect(unplaced, 'add each to ROWS (how to call it with options) or NO_OPTIONS (why it takes none)').toEqual([]);
    const seen = new Set(all.map(({ key }) => key));
    expect(
      [...Object.keys(ROWS), ...Object.keys(NO_OPTIONS)].filter((k) => !seen.has(k)),
      'rows for names that are not exported',
    ).toEqual([]);
    expect(all.filter(({ row }) => row).length).toBeGreaterThan(150);
  });

  for (const { key, row } of all) {
    if (!row) continue;
    it(`${key}: a misspelt or unknown option is ERR_INVALID_ARG naming it and the options taken`, async () => {
      for (const bad of BAD) {
        const name = Object.keys(bad)[0];
        const e = await outcome(() => row.call(bad));
        expect(e, `${key}(${name})`).toBeInstanceOf(et.EmotorchError);
        expect((e as et.EmotorchError).code, `${key}(${name}): ${(e as Error).message}`).toBe('ERR_INVALID_ARG');
        if (row.pointsTo) {
          expect(row.pointsTo.exec((e as Error).message)?.[1], `${key}(${name}): ${(e as Error).message}`).toBe(name);
          continue;
        }
        const m = /^Expected one of (.+) for (.+) but received "(.+)"$/.exec((e as Error).message);
        expect(m, `${key}(${name}): ${(e as Error).message}`).not.toBeNull();
        expect(m![3]).toBe(name);
        expect(m![1].split(', '), `${key} lists the options it takes`).toContain(row.takes);
      }
    }, 30_000);
  }
});
