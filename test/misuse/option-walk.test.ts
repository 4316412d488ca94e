/**
 * Every options object checked (issue 56 item 5): the test walks the exports of `et.nn`,
 * `et.systems`, `et.audio`, `et.data` and `et.vision` — every function, every class's constructor and statics —
 * and each must either be called here with a misspelt (`dtpye`) and two foreign options
 * (`quantize`, which emotorch does not implement, and `fooBar`), each refused as ERR_INVALID_ARG
 * naming it and listing the options the call takes, or be named in NO_OPTIONS as taking no options
 * object. A new export that is neither fails the test, so it cannot slip through; a new model's
 * `create` / `fromPretrained` / `fromFile` is called by the default rows without a line here.
 * (`et.nn.LlamaForCausalLM.fromPretrained(dir, { dtpye: 'bfloat16' })` used to load in float32
 * without a word.)
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';

type Call = (opts: Record<string, unknown>) => unknown;
/** How to call one export with an options object, and one name it must list as taken. */
interface Row { call: Call; takes: string }

const NOWHERE = '/nonexistent/emotorch-option-walk';
const tok = () => et.data.Tokenizer.fromFile(path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json'));
const tinyLlama = () => et.nn.LlamaForCausalLM.create({ vocab_size: 40, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 32 });
const ecfItem = { conversationId: 1, utteranceId: 1, text: '', speaker: 'A', emotion: null, label: 1, causes: [], features: new Float32Array(4) };
const spectraItem = { audio: new Float32Array(800).fill(0.1), textIds: [0, 5, 2], label: 1 };
const samples = new Float32Array(1600);

/** The default rows: what every model class and reader has (a new one is covered without an edit). */
function defaultRow(cls: Record<string, (...a: unknown[]) => unknown>, method: string): Row | null {
  switch (method) {
    case 'create': return { call: (o) => cls.create({}, o), takes: 'dtype' };
    case 'fromPretrained': return { call: (o) => cls.fromPretrained(NOWHERE, o), takes: 'dtype' };
    case 'fromFile': return { call: (o) => cls.fromFile(NOWHERE, o), takes: 'skipBad' };
    default: return null;
  }
}

/** Calls that take an options object in another place, or need real arguments before it. */
const ROWS: Record<string, Row> = {
  // ---- nn
  'nn.applyLora': { call: (o) => et.nn.applyLora(tinyLlama(), { r: 2, alpha: 4, targetModules: ['q_proj'], ...o } as never), takes: 'targetModules' },
  'nn.saveLoraAdapter': { call: (o) => et.nn.saveLoraAdapter(tinyLlama(), NOWHERE, o), takes: 'baseModel' },
  'nn.convertWav2Vec2StateDict': { call: (o) => et.nn.convertWav2Vec2StateDict(new Map(), 'fairseq', o), takes: 'strict' },
  'nn.DistributedDataParallel': { call: (o) => new et.nn.DistributedDataParallel(tinyLlama(), o as never), takes: 'bucketCapMb' },
  // ---- systems
  'systems.Salmonn.fromPretrained': { call: (o) => et.systems.Salmonn.fromPretrained({ whisper: NOWHERE, llm: NOWHERE, ...o } as never), takes: 'dtype' },
  'systems.LanguageBind.fromPretrained': { call: (o) => et.systems.LanguageBind.fromPretrained({ video: NOWHERE }, o), takes: 'dtype' },
  'systems.LanguageBindClassifier.create': { call: (o) => et.systems.LanguageBindClassifier.create({ modalities: ['video'] } as never, o), takes: 'dtype' },
  'systems.ConcatFusionClassifier.create': { call: (o) => et.systems.ConcatFusionClassifier.create({ modalities: { text: 4 } }, o), takes: 'dtype' },
  'systems.InternVL.create': { call: (o) => et.systems.InternVL.create({} as never, o), takes: 'imgContextTokenId' },
  'systems.SpectraForPreTraining.fromEncoders': { call: (o) => et.systems.SpectraForPreTraining.fromEncoders(NOWHERE, NOWHERE, o), takes: 'numFusedLayers' },
  'systems.SpectraPretrainDataset.fromFile': { call: (o) => et.systems.SpectraPretrainDataset.fromFile(NOWHERE, o), takes: 'numTurns' },
  'systems.Spectra.collate': { call: (o) => et.systems.Spectra.collate([spectraItem] as never, o), takes: 'audioLength' },
  'systems.Spectra.finetune': { call: (o) => et.systems.Spectra.finetune(o as never), takes: 'task' },
  'systems.finetuneSpectra': { call: (o) => et.systems.finetuneSpectra(o as never), takes: 'task' },
  'systems.pretrainSpectra': { call: (o) => et.systems.pretrainSpectra(o as never), takes: 'saveDir' },
  'systems.spectraPretrainCollate': { call: (o) => et.systems.spectraPretrainCollate([{}] as never, o), takes: 'mlmProbability' },
  'systems.buildSpectraPretrainCorpus': { call: (o) => et.systems.buildSpectraPretrainCorpus(o as never), takes: 'speechDir' },
  'systems.ConcatFusionClassifier.collate': { call: (o) => et.systems.ConcatFusionClassifier.collate([ecfItem] as never, o), takes: 'device' },
  'systems.ConcatFusionClassifier.collateConversations': { call: (o) => et.systems.ConcatFusionClassifier.collateConversations([[ecfItem]] as never, o), takes: 'device' },
  'systems.embedUtterances': { call: (o) => et.systems.embedUtterances(['k'], async () => { throw new Error('not called'); }, { cacheFile: `${NOWHERE}/cache.safetensors`, ...o }), takes: 'cacheFile' },
  'systems.Usdm': { call: async (o) => new et.systems.Usdm(tinyLlama(), o), takes: 'tokenIds' },
  'systems.usdmSftExamples': { call: (o) => et.systems.usdmSftExamples([{ userAudio: 'a.wav', userText: 'a', agentText: 'b', agentAudio: 'b.wav' }], o as never), takes: 'codec' },
  'systems.salmonnTrajectorySvg': { call: (o) => et.systems.salmonnTrajectorySvg(['happy'], o), takes: 'title' },
  'systems.salmonnSchedule': { call: (o) => et.systems.salmonnSchedule(o as never), takes: 'max_epoch' },
  'systems.salmonnIterationLr': { call: (o) => et.systems.salmonnIterationLr(o as never, 0, 0), takes: 'max_epoch' },
  'systems.salmonnTotalSteps': { call: (o) => et.systems.salmonnTotalSteps(o as never), takes: 'max_epoch' },
  'systems.languageBindCollate': { call: (o) => et.systems.languageBindCollate([ecfItem] as never, o as never), takes: 'videoDir' },
  'systems.languageBindCachedCollate': { call: (o) => et.systems.languageBindCachedCollate([ecfItem] as never, o), takes: 'device' },
  'systems.languageBindEmbeddings': { call: (o) => et.systems.languageBindEmbeddings(null as never, [], o as never), takes: 'videoDir' },
  'systems.internvlEncode': { call: async (o) => et.systems.internvlEncode(await tok(), { messages: [] } as never, o as never), takes: 'template' },
  'systems.m2seExamples': { call: async (o) => et.systems.m2seExamples([], await tok(), o), takes: 'maxLength' },
  'systems.m2seSalmonnItems': { call: (o) => et.systems.m2seSalmonnItems([], null as never, o), takes: 'mediaRoot' },
  'systems.m2seStages': { call: (o) => et.systems.m2seStages(o as never), takes: 'stages' },
  'systems.m2seInfer': { call: (o) => et.systems.m2seInfer(o as never), takes: 'outFile' },
  'systems.m2seInternVLItems': { call: async (o) => et.systems.m2seInternVLItems([], null as never, await tok(), o), takes: 'mediaRoot' },
  'systems.m2seInternVLCollate': { call: (o) => et.systems.m2seInternVLCollate([], o as never), takes: 'imageSize' },
  // ---- audio
  'audio.readWav': { call: (o) => et.audio.readWav(NOWHERE, o), takes: 'sampleRate' },
  'audio.decodeWav': { call: (o) => et.audio.decodeWav(new Uint8Array(0), o), takes: 'sampleRate' },
  'audio.readAudio': { call: (o) => et.audio.readAudio(NOWHERE, o), takes: 'sampleRate' },
  'audio.encodeWav': { call: (o) => et.audio.encodeWav(samples, 16000, o), takes: 'format' },
  'audio.resample': { call: (o) => et.audio.resample(samples, 16000, 8000, o), takes: 'method' },
  'audio.whisperLogMel': { call: (o) => et.audio.whisperLogMel(samples, o), takes: 'nMels' },
  'audio.kaldiFbank': { call: (o) => et.audio.kaldiFbank(samples, o), takes: 'numMelBins' },
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
  'data.DataLoader': { call: (o) => new et.data.DataLoader({ length: 2, get: (i: number) => i }, o), takes: 'batchSize' },
};

/** Exports that take no options object (a name here with a reason; a new export must be placed in ROWS or here). */
const NO_OPTIONS: Record<string, string> = Object.fromEntries(Object.entries({
  'positional arguments only': [
    'nn.readConfig', 'nn.loadCheckpoint', 'nn.renameKeys', 'nn.stripPrefix', 'nn.normalizeRope', 'nn.normalizeLlamaConfig', 'nn.mergeLora', 'nn.unmergeLora',
    'nn.loadLoraAdapter', 'nn.wav2vec2Dialect', 'nn.internVisionConfig',
    'systems.resolveSpectraConfig', 'systems.tokenizerMasking', 'systems.drawSpectraMam', 'systems.spectraMetrics', 'systems.spectraParamGroups',
    'systems.salmonnParamGroups', 'systems.selfCausePairs', 'systems.addUnitVocabulary', 'systems.usdmSftLabels', 'systems.languageBindMetrics',
    'systems.ecfVideoFile', 'systems.ecfAudioFile', 'systems.languageBindLabel', 'systems.resolveInternVLConfig', 'systems.m2seRecords', 'systems.m2seMedia',
    'systems.m2sePrompt', 'systems.m2seCollate', 'systems.m2seAudio', 'systems.m2seResponse', 'systems.m2seInternVLPixels', 'systems.internvlTemplateOf',
    'systems.ecfSubmission', 'systems.writeEcfSubmission', 'systems.ConcatFusionClassifier.groupConversations', 'systems.Salmonn.collate', 'systems.salmonnJoinTurns',
    'audio.findFfmpeg', 'audio.findFfprobe', 'audio.soxrStatus',
    'data.mulberry32', 'data.inferSwiftTask', 'data.Tokenizer.fromFileSync',
    'vision.linspaceIndices', 'vision.libavAvailable', 'vision.internvlGrids', 'vision.internvlFrameIndices', 'vision.findClosestAspectRatio',
  ],
  'a config (its field names checked by the config, not an options object)': [
    'systems.Salmonn', 'data.Tokenizer.fromJSON',
  ],
  'an abstract or internal base class, a model part made by its system, or a reader made by its fromFile (no public constructor options)': [
    'nn.Module', 'nn.NativeModule', 'systems.SpectraPretrainDataset', 'data.Tokenizer', 'data.SpectraDataset', 'data.SalmonnDataset', 'data.EcfDataset',
    'data.SwiftDataset', 'data.UsdmDataset', 'nn.RobertaLayers', 'nn.DecodeBatch', 'systems.SpectraModel', 'systems.SpectraAudioEncoder', 'systems.RobertaLayers',
    'data.BaseDataset', 'data.NdArray',
  ],
}).flatMap(([why, names]) => names.map((n) => [n, why])));

/** Every function, class constructor and class static of the four namespaces, by dotted name. */
function walk(): Array<{ key: string; row: Row | null }> {
  const out: Array<{ key: string; row: Row | null }> = [];
  const spaces = { nn: et.nn, systems: et.systems, audio: et.audio, data: et.data, vision: et.vision } as Record<string, Record<string, unknown>>;
  for (const [ns, mod] of Object.entries(spaces)) {
    for (const [name, v] of Object.entries(mod)) {
      if (typeof v !== 'function') continue;
      const key = `${ns}.${name}`;
      const isClass = /^class[\s{]/.test(Function.prototype.toString.call(v));
      if (!isClass) { out.push({ key, row: ROWS[key] ?? null }); continue; }
      if (ROWS[key] || NO_OPTIONS[key]) out.push({ key, row: ROWS[key] ?? null });
      else if (!['create', 'fromPretrained'].some((m) => typeof (v as never)[m] === 'function')) out.push({ key, row: null });   // a constructor to place
      const statics = new Set<string>();
      for (let c = v as object | null; c && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
        for (const m of Object.getOwnPropertyNames(c)) if (!['length', 'name', 'prototype', 'caller', 'arguments'].includes(m) && typeof (v as never)[m] === 'function') statics.add(m);
      }
      for (const m of statics) out.push({ key: `${key}.${m}`, row: ROWS[`${key}.${m}`] ?? defaultRow(v as never, m) });
    }
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

const BAD: Array<Record<string, unknown>> = [{ dtpye: 'bfloat16' }, { quantize: 'int8' }, { fooBar: 1 }];

describe('every options object is checked', () => {
  const all = walk();

  it('every export of et.nn, et.systems, et.audio, et.data and et.vision is called below or named as taking no options', () => {
    const unplaced = all.filter(({ key, row }) => !row && !NO_OPTIONS[key]).map(({ key }) => key);
    expect(unplaced, 'add each to ROWS (how to call it with options) or NO_OPTIONS (why it takes none)').toEqual([]);
    const seen = new Set(all.map(({ key }) => key));
    expect([...Object.keys(ROWS), ...Object.keys(NO_OPTIONS)].filter((k) => !seen.has(k)), 'rows for names that are not exported').toEqual([]);
    expect(all.filter(({ row }) => row).length).toBeGreaterThan(60);
  });

  for (const { key, row } of all) {
    if (!row) continue;
    it(`${key}: a misspelt or unknown option is ERR_INVALID_ARG naming it and the options taken`, async () => {
      for (const bad of BAD) {
        const name = Object.keys(bad)[0];
        const e = await outcome(() => row.call(bad));
        expect(e, `${key}(${name})`).toBeInstanceOf(et.EmotorchError);
        expect((e as et.EmotorchError).code, `${key}(${name}): ${(e as Error).message}`).toBe('ERR_INVALID_ARG');
        const m = /^Expected one of (.+) for (.+) but received "(.+)"$/.exec((e as Error).message);
        expect(m, `${key}(${name}): ${(e as Error).message}`).not.toBeNull();
        expect(m![3]).toBe(name);
        expect(m![1].split(', '), `${key} lists the options it takes`).toContain(row.takes);
      }
    }, 30_000);
  }
});
