/**
 * et.systems grouped per system (`et.systems.salmonn`, `.spectra`, `.usdm`, `.semeval`, `.m2se`),
 * and the flat names of the previous release kept one release as deprecated aliases: each the same
 * object as its grouped name, marked `@deprecated` naming it, and no flat name without a grouped one.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as ts from 'typescript';
import * as et from '../../lib/index';

const SYSTEMS = ['salmonn', 'spectra', 'usdm', 'semeval', 'm2se'] as const;
type System = (typeof SYSTEMS)[number];

/** Every flat name et.systems had in the previous release (values and types), by the system that now holds it. */
const OLD: Record<System, string[]> = {
  salmonn: [
    'Salmonn',
    'SALMONN_DEFAULTS',
    'SALMONN_IGNORABLE',
    'SALMONN_YAML_KEYS',
    'SalmonnConfig',
    'SalmonnBatch',
    'SalmonnOutputs',
    'SalmonnGenerateOptions',
    'SalmonnPretrainedOptions',
    'SalmonnCollateItem',
    'salmonnTrajectorySvg',
    'salmonnJoinTurns',
    'SALMONN_TURN_GAP',
    'salmonnSchedule',
    'salmonnIterationLr',
    'salmonnTotalSteps',
    'salmonnParamGroups',
    'SalmonnOptimsOptions',
  ],
  spectra: [
    'Spectra',
    'SpectraModel',
    'SpectraAudioEncoder',
    'resolveSpectraConfig',
    'SPECTRA_LABEL_NUM',
    'SPECTRA_RENAMES',
    'SpectraConfig',
    'SpectraConfigInput',
    'SpectraAudioConfig',
    'SpectraTextConfig',
    'SpectraInputs',
    'SpectraOutputs',
    'SpectraPretrainedOptions',
    'SpectraCollateOptions',
    'SpectraPretrainDataset',
    'spectraPretrainCollate',
    'buildSpectraPretrainCorpus',
    'tokenizerMasking',
    'SpectraPretrainEntry',
    'SpectraPretrainItem',
    'SpectraPretrainBatch',
    'SpectraPretrainCollateOptions',
    'SpectraPretrainDatasetOptions',
    'SpectraItemMlm',
    'SpectraMlmChoices',
    'SpectraWord',
    'SpectraCorpusOptions',
    'SpectraForPreTraining',
    'drawSpectraMam',
    'SpectraMamClip',
    'SpectraPretrainInputs',
    'SpectraPretrainOutputs',
    'SpectraPretrainingOptions',
    'SPECTRA_BEST_METRIC',
    'spectraMetrics',
    'spectraParamGroups',
    'finetuneSpectra',
    'pretrainSpectra',
    'SpectraFinetuneOptions',
    'SpectraPretrainRecipeOptions',
  ],
  usdm: [
    'Usdm',
    'addUnitVocabulary',
    'UsdmOptions',
    'usdmSftLabels',
    'usdmSftExamples',
    'USDM_TOKEN_IDS',
    'USDM_AUDIO',
    'UsdmTokenIds',
    'UsdmTextCodec',
    'UsdmAudioPair',
    'UsdmSftExamplesOptions',
    'USDM_SFT_ARGS',
  ],
  semeval: [
    'ConcatFusionClassifier',
    'ConcatFusionConfig',
    'ConcatFusionConfigInput',
    'ConcatFusionInputs',
    'ConcatContextConfig',
    'embedUtterances',
    'EncodedUtterances',
    'selfCausePairs',
    'LanguageBind',
    'LanguageBindClassifier',
    'LANGUAGEBIND_MODALITIES',
    'LANGUAGEBIND_ECF_LABELS',
    'LanguageBindModality',
    'LanguageBindKey',
    'LanguageBindOptions',
    'LanguageBindInputs',
    'LanguageBindOutputs',
    'LanguageBindClassifierConfig',
    'LanguageBindClassifierInputs',
    'LANGUAGEBIND_SEMEVAL_ARGS',
    'languageBindMetrics',
    'LanguageBindScores',
    'ecfVideoFile',
    'ecfAudioFile',
    'languageBindLabel',
    'languageBindCollate',
    'languageBindCachedCollate',
    'languageBindEmbeddings',
    'LanguageBindCollateOptions',
    'LanguageBindEmbeddingsOptions',
  ],
  m2se: [
    'InternVL',
    'INTERNVL_DEFAULTS',
    'INTERNVL_IMAGE_TOKENS',
    'resolveInternVLConfig',
    'InternVLConfig',
    'InternVLInputs',
    'InternVLOutputs',
    'InternVLCreateOptions',
    'internvlEncode',
    'INTERNVL_TEMPLATES',
    'INTERNVL2_SYSTEM',
    'InternVLTemplate',
    'InternVLConversation',
    'InternVLEncoded',
    'm2seRecords',
    'm2seMedia',
    'm2sePrompt',
    'm2seExamples',
    'm2seCollate',
    'm2seSalmonnItems',
    'm2seAudio',
    'M2SE_SYSTEM',
    'M2SE_MAX_LENGTH',
    'M2SE_MAX_RECORD_CHARS',
    'M2seRecord',
    'M2seMediaReport',
    'M2seExample',
    'M2seFormatOptions',
    'M2seAudioReport',
    'M2seSalmonnItem',
    'm2seStages',
    'm2seInfer',
    'm2seResponse',
    'M2SE_TRAIN_ARGS',
    'M2SE_LORA',
    'M2seStage',
    'M2seStagesOptions',
    'M2seStageResult',
    'M2seInferOptions',
    'm2seInternVLItems',
    'm2seInternVLCollate',
    'm2seInternVLPixels',
    'internvlTemplateOf',
    'INTERNVL_LORA_TARGETS',
    'M2seInternVLItem',
    'M2seInternVLMedium',
    'M2seInternVLOptions',
  ],
};

/** Older deprecated aliases of et.systems that point out of it (to et.nn / et.metrics), not to a system. */
const MOVED_OUT: Record<string, unknown> = {
  RobertaLayers: et.nn.RobertaLayers,
  ecfSubmission: et.metrics.ecfSubmission,
  writeEcfSubmission: et.metrics.writeEcfSubmission,
};

const systems = et.systems as unknown as Record<string, unknown>;
const group = (s: System) => systems[s] as Record<string, unknown>;

describe('et.systems: grouped per system, the flat names deprecated aliases', () => {
  it('has the five systems as namespaces', () => {
    for (const s of SYSTEMS) expect(typeof group(s), s).toBe('object');
  });

  it('every old flat value is the same object as its grouped name', () => {
    let values = 0;
    for (const s of SYSTEMS) {
      for (const n of OLD[s]) {
        if (!(n in systems)) continue; // a type: checked below
        values++;
        expect(group(s)[n], `et.systems.${s}.${n}`).toBeDefined();
        expect(systems[n], `et.systems.${n} is et.systems.${s}.${n}`).toBe(group(s)[n]);
      }
    }
    expect(values).toBe(77);
  });

  it('no flat name of et.systems is without a grouped name (or, for the older aliases, its new home)', () => {
    const grouped = new Set(SYSTEMS.flatMap((s) => OLD[s]));
    for (const n of Object.keys(systems)) {
      if ((SYSTEMS as readonly string[]).includes(n)) continue;
      if (n in MOVED_OUT) {
        expect(systems[n], n).toBe(MOVED_OUT[n]);
        continue;
      }
      expect(grouped.has(n), `et.systems.${n} is in OLD`).toBe(true);
    }
  });

  it('every old flat name, types included, is exported, marked @deprecated with its grouped name, which its system exports', () => {
    const dir = path.join(__dirname, '..', '..', 'lib', 'systems');
    const files = [path.join(dir, 'index.ts'), ...SYSTEMS.map((s) => path.join(dir, s, 'index.ts'))];
    const program = ts.createProgram(files, {
      strict: true,
      skipLibCheck: true,
      noEmit: true,
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      resolveJsonModule: true,
      esModuleInterop: true,
      types: [],
    });
    const checker = program.getTypeChecker();
    const exportsOf = (file: string) => new Map(checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(file)!)!).map((s) => [s.name, s]));
    const flat = exportsOf(files[0]);
    for (const [i, s] of SYSTEMS.entries()) {
      const mine = exportsOf(files[i + 1]);
      for (const n of OLD[s]) {
        expect(mine.has(n), `et.systems.${s} exports ${n}`).toBe(true);
        const sym = flat.get(n);
        expect(sym, `et.systems.${n} is still exported`).toBeDefined();
        const tags = sym!
          .getJsDocTags(checker)
          .filter((t) => t.name === 'deprecated')
          .map((t) => ts.displayPartsToString(t.text));
        expect(tags.length, `et.systems.${n} is marked @deprecated`).toBeGreaterThan(0);
        for (const t of tags) expect(t, `et.systems.${n}'s @deprecated names its new name`).toContain(`et.systems.${s}.${n}`);
      }
    }
    const all = SYSTEMS.flatMap((s) => OLD[s]);
    expect(new Set(all).size).toBe(all.length);
    expect(
      [...flat.keys()].filter((n) => !(SYSTEMS as readonly string[]).includes(n) && !(n in MOVED_OUT) && n !== 'EcfPairPrediction' && !all.includes(n)),
    ).toEqual([]);
  });
});
