/**
 * SPECTRA pre-training (AlibabaResearch/DAMO-ConvAI spectra/modeling_spectra/model.py
 * `ATForPreTraining`, wavlm.py `create_mam_samples` / `WavLMMAMHead`): the SPECTRA body and five
 * heads, with the four objectives main.py sums — masked language modelling, masked acoustic
 * modelling, response selection and word-boundary (span) regression. Key names are the
 * original's: `model.*` as {@link SpectraModel}, `mlm_head.*`, `mam_head.*`, `selection_head.*`,
 * `start_prediction_head.0.*`, `end_prediction_head.0.*`.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Module, ModuleOptions, checkModuleOptions, lockConfig } from '../../../nn/module';
import { Linear, LayerNorm } from '../../../nn/layers';
import { RobertaModel } from '../../../nn/roberta';
import { WavLMModel } from '../../../nn/wavlm';
import { checkPretrainedOptions, checkpointDtype, pretrainedPath } from '../../../nn/pretrained';
import { Tensor, tensor, cat, zeros, ones, checkTensor } from '../../../tensor';
import { EmotorchError, checkInt, invalid } from '../../../errors';
import { crossEntropy, l1Loss, mseLoss } from '../../../functional';
import { saveSafetensors } from '../../../io/safetensors';
import {
  SpectraConfig,
  SpectraConfigInput,
  SpectraModel,
  SpectraPretrainedOptions,
  loadSpectraStateDict,
  readSpectraConfigs,
  resolveSpectraConfig,
} from '../finetune/model';
import { SpectraPretrainBatch, generator } from './data';

/**
 * The masked acoustic frames of one clip: the frames chosen (span after span, in order) and what
 * became of each: −1 set to zero, −2 kept, k ≥ 0 replaced by the clip's clean frame k.
 */
export interface SpectraMamClip {
  frames: number[];
  action: number[];
}

/** Inputs of {@link SpectraForPreTraining.forward}: a {@link SpectraPretrainBatch}, and optionally the masked frames to use. */
export type SpectraPretrainInputs = Omit<SpectraPretrainBatch, 'mlm'> & {
  /** Per clip (context, response, negative of each item, in the batch's order): replays a draw. */
  mam?: SpectraMamClip[];
};

/** Named outputs of {@link SpectraForPreTraining.forward}. */
export interface SpectraPretrainOutputs {
  /** mlmLoss + mamLoss + rsLoss + spanLoss (main.py: all weights 1). */
  loss: Tensor;
  mlmLoss: Tensor;
  mamLoss: Tensor;
  rsLoss: Tensor;
  spanLoss: Tensor;
  /** The masked acoustic frames used (pass them back as `mam` to replay). */
  mam: SpectraMamClip[];
}

/** SPECTRA pre-training switches: each reproduces the original by default. */
export interface SpectraPretrainingOptions {
  /**
   * The fused layers' attention mask as the original builds it (model.py:28-29, 54): its rows are
   * tiled over the batch while the features are interleaved per sample, so most rows are masked
   * with another combination's padding. Default true (the released weights were trained with it);
   * false masks each row with its own text and audio padding.
   */
  tiledFusedMask?: boolean;
  /**
   * Detach the masked-acoustic target: the original compares against the clean conv features
   * without detaching them (wavlm.py:696), so the L1 gradient reaches the conv stack through the
   * target too. Default false (as the original).
   */
  detachMamTarget?: boolean;
  /** Seeds the masked-frame draws (default Math.random). */
  seed?: number;
}

/** The names {@link SpectraPretrainingOptions} has. */
const PRETRAINING_OPTIONS: readonly (keyof SpectraPretrainingOptions)[] = ['tiledFusedMask', 'detachMamTarget', 'seed'];

/** `RobertaLMHead` / `WavLMMAMHead`: dense → GELU (erf) → LayerNorm → decoder, plus a bias of the output size (the decoder's, tied). */
class PredictionHead extends Module {
  readonly dense: Linear;
  readonly layer_norm: LayerNorm;
  readonly decoder: Linear;
  readonly bias: Tensor;
  constructor(hidden: number, out: number, eps: number, opts: ModuleOptions) {
    super();
    this.dense = this.registerModule('dense', Linear.create({ in_features: hidden, out_features: hidden }, opts));
    this.layer_norm = this.registerModule('layer_norm', LayerNorm.create({ normalized_shape: hidden, eps }, opts));
    this.decoder = this.registerModule('decoder', Linear.create({ in_features: hidden, out_features: out, bias: false }, opts));
    this.bias = this.registerParameter('bias', zeros([out], { device: opts.device ?? 'cpu', dtype: opts.dtype ?? 'float32' }));
  }
  async forward(inputs: { hiddenStates: Tensor }): Promise<{ logits: Tensor }> {
    const x = await this.layer_norm.forward((await this.dense.forward(inputs.hiddenStates)).gelu());
    return { logits: (await this.decoder.forward(x)).add(this.paramOf('bias')) };
  }
  /** The bias as it is now (a load replaces the tensor). */
  private paramOf(name: string): Tensor {
    return this.namedParameters().find(([n]) => n === name)![1];
  }
}

/** `nn.Sequential(nn.Linear(H, 1))`: keys `0.weight`, `0.bias`. */
class OneLinear extends Module {
  readonly linear: Linear;
  constructor(hidden: number, opts: ModuleOptions) {
    super();
    this.linear = this.registerModule('0', Linear.create({ in_features: hidden, out_features: 1 }, opts));
  }
  async forward(x: Tensor): Promise<Tensor> {
    return (await this.linear.forward(x)).squeeze(-1);
  }
}

/**
 * The original's masked-frame draw for one clip of `frames` counted frames (wavlm.py
 * select_interval in its "mlm" mode and create_mam_samples): a span length of 20–50 frames, then
 * walking the frames, a span starts with probability 0.15 and the walk skips 1.2 span lengths past
 * it; of the chosen frames 80 % are zeroed, 10 % replaced by a random clean frame of the clip (a
 * draw without replacement) and 10 % kept, decided frame by frame. A clip no longer than a span
 * has none.
 */
export function drawSpectraMam(frames: number, random: () => number = Math.random): SpectraMamClip {
  checkInt(frames, 'frames', 0);
  const span = 20 + Math.floor(random() * 31);
  const frameList: number[] = [];
  for (let i = 0; i < frames - span; i++) {
    if (random() < 0.15) {
      for (let j = 0; j < span; j++) frameList.push(i + j);
      i += Math.round(span * 1.2);
    }
  }
  const dice = frameList.map(() => random());
  const nRand = dice.filter((d) => d >= 0.8 && d < 0.9).length;
  // the first nRand entries of a random permutation of the clip's frames
  const pool = Array.from({ length: frames }, (_, k) => k);
  for (let k = 0; k < nRand; k++) {
    const j = k + Math.floor(random() * (frames - k));
    [pool[k], pool[j]] = [pool[j], pool[k]];
  }
  let r = 0;
  return { frames: frameList, action: dice.map((d) => (d < 0.8 ? -1 : d < 0.9 ? pool[r++] : -2)) };
}

/**
 * SPECTRA for pre-training (`ATForPreTraining`): the body of {@link Spectra} and its five heads.
 * Each batch holds B dialogue samples: three clips each (context, response, negative) and two
 * texts (history + context + response, and history + context + negative). The forward makes the
 * original's four combinations per sample (true/negative text × true/negative audio) through the
 * fused layers and computes:
 * - MLM: cross-entropy of the RoBERTa LM head on the true combination's text tokens;
 * - MAM: L1 between the MAM head's output on the true combination's audio frames and the clean
 *   conv features of the masked context and response frames;
 * - response selection: a 4-way classifier of which combination each row is, from its `<s>` state;
 * - span: mean squared error of the start / end heads on the first / last token of each context
 *   and response word against its start / end sample ÷ 160 000.
 * Reproduced from the original, with the line: the tiled fused mask ({@link SpectraPretrainingOptions.tiledFusedMask}),
 * the undetached MAM target, the negative clip masked too (never scored), the MLM loss 0 without
 * gradient when no token is masked (model.py:88); where the original divides by zero (no masked
 * frame: model.py:90 gives 0; no word: model.py:100 gives NaN) the loss is 0 without gradient.
 * Guide: [SPECTRA](../../../../docs/spectra.md).
 * @example
 * const model = await et.systems.spectra.SpectraForPreTraining.fromEncoders('wavlm-base-plus/', 'roberta-base/');
 * const { loss, mlmLoss, mamLoss, rsLoss, spanLoss } = await model.forward(batch);
 */
export class SpectraForPreTraining extends Module {
  declare readonly config: SpectraConfig;
  readonly model: SpectraModel;
  readonly mlm_head: PredictionHead;
  readonly mam_head: PredictionHead;
  readonly selection_head: Linear;
  readonly start_prediction_head: OneLinear;
  readonly end_prediction_head: OneLinear;
  readonly options: Required<Omit<SpectraPretrainingOptions, 'seed'>>;
  /** What a loader did: checkpoint keys not used, parameters left at their initial values. */
  loadInfo: { skipped: string[]; initialized: string[] } = { skipped: [], initialized: [] };
  private random: () => number;

  private constructor(config: SpectraConfig, opts: ModuleOptions, pre: SpectraPretrainingOptions) {
    super();
    lockConfig(this, 'SPECTRA', config);
    const H = config.text.hidden_size;
    this.model = this.registerModule('model', new SpectraModel(config, opts, true));
    this.mlm_head = this.registerModule('mlm_head', new PredictionHead(H, config.text.vocab_size, config.text.layer_norm_eps, opts));
    this.mam_head = this.registerModule('mam_head', new PredictionHead(H, config.audio.conv_dim[config.audio.conv_dim.length - 1], 1e-5, opts));
    this.selection_head = this.registerModule('selection_head', Linear.create({ in_features: H, out_features: 4 }, opts));
    this.start_prediction_head = this.registerModule('start_prediction_head', new OneLinear(H, opts));
    this.end_prediction_head = this.registerModule('end_prediction_head', new OneLinear(H, opts));
    this.options = checkPretrainingOptions(pre);
    this.random = generator(pre.seed);
    // RoBERTa's pooler is in the original's checkpoints but no loss reaches it: frozen, so that
    // data-parallel training need not look for unused parameters (the original passes find_unused_parameters)
    for (const [n, p] of this.model.text_encoder.namedParameters()) if (n.startsWith('pooler.')) p.requiresGrad = false;
  }

  /**
   * A randomly initialized SPECTRA for pre-training.
   * @param config as {@link Spectra.create} (num_class is not needed)
   * @throws EmotorchError ERR_INVALID_ARG naming a bad field or option.
   */
  static create(config: Omit<SpectraConfigInput, 'num_class' | 'task'> = {}, opts: ModuleOptions & SpectraPretrainingOptions = {}): SpectraForPreTraining {
    opts = checkModuleOptions(opts, 'SpectraForPreTraining.create', PRETRAINING_OPTIONS);
    const { device, dtype, ...pre } = opts;
    return new SpectraForPreTraining(resolveSpectraConfig({ ...config, num_class: 1 }), { device, dtype }, pre);
  }

  /**
   * The original's start from pre-trained encoders (main.py `--audio_path`, `--text_path`): WavLM
   * and RoBERTa folders as Hugging Face saves them (`config.json` and weights; a RobertaForMaskedLM
   * or WavLMFor… checkpoint's body loads too). The fused layers, modality embeddings, `audio_cls`,
   * `audio_sep` and the five heads start random, as in the original. RoBERTa's token-type table
   * needs two rows (turn ids, audio segments); roberta-base has one, which the original cannot
   * load (its config must be edited and the table then mismatches): here row 0 is the checkpoint's
   * and row 1 a copy of it.
   * @param opts `audioLength` / `textLength` (the clip samples and tokens the collator cuts to;
   *   default 160 000 and 512), `numFusedLayers` (default 1), `device`, `dtype`, and the
   *   {@link SpectraPretrainingOptions}
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable folders, ERR_STATE_DICT for weights that do not fit.
   */
  static async fromEncoders(
    audioPath: string,
    textPath: string,
    opts: ModuleOptions & SpectraPretrainingOptions & { audioLength?: number; textLength?: number; numFusedLayers?: number; revision?: string } = {},
  ): Promise<SpectraForPreTraining> {
    opts = checkModuleOptions(opts, 'SpectraForPreTraining.fromEncoders', ['audioLength', 'textLength', 'numFusedLayers', 'revision', ...PRETRAINING_OPTIONS]);
    const { device, dtype, audioLength, textLength, numFusedLayers, revision, ...pre } = opts;
    const wavlm = await WavLMModel.fromPretrained(audioPath, { revision });
    const roberta = await RobertaModel.fromPretrained(textPath, { revision });
    const model = SpectraForPreTraining.create(
      {
        audio: { ...wavlm.config, max_length: checkInt(audioLength ?? 160000, 'audioLength', 1) },
        text: {
          ...roberta.config,
          type_vocab_size: Math.max(2, roberta.config.type_vocab_size),
          num_fused_layers: checkInt(numFusedLayers ?? 1, 'numFusedLayers', 0),
          max_length: checkInt(textLength ?? 512, 'textLength', 2),
        },
      },
      pre,
    );
    const skipped: string[] = [];
    const audioSd = wavlm.stateDict();
    audioSd.delete('masked_spec_embed');
    const rep = await model.model.audio_encoder.loadStateDict(audioSd, { strict: false });
    skipped.push(...rep.unexpected.map((k) => `audio.${k}`));
    const textSd = roberta.stateDict();
    const table = textSd.get('embeddings.token_type_embeddings.weight');
    if (table && table.shape[0] < 2) textSd.set('embeddings.token_type_embeddings.weight', cat([table, table.expand([2 - table.shape[0], table.shape[1]])], 0));
    const rep2 = await model.model.text_encoder.loadStateDict(textSd, { strict: false });
    skipped.push(...rep2.unexpected.map((k) => `text.${k}`));
    const notLoaded = [...rep.missing.map((k) => `model.audio_encoder.${k}`), ...rep2.missing.map((k) => `model.text_encoder.${k}`)];
    const expected = /^model\.audio_encoder\.(audio_cls|audio_sep)$|^model\.text_encoder\.pooler\./;
    const bad = notLoaded.filter((k) => !expected.test(k));
    if (bad.length)
      throw new EmotorchError(`SPECTRA encoders '${audioPath}', '${textPath}': missing keys ${bad.map((k) => `'${k}'`).join(', ')}`, 'ERR_STATE_DICT');
    wavlm.dispose();
    roberta.dispose();
    const own = new Set([
      ...model.model.audio_encoder.namedParameters().map(([k]) => `model.audio_encoder.${k}`),
      ...model.model.text_encoder.namedParameters().map(([k]) => `model.text_encoder.${k}`),
    ]);
    model.loadInfo = {
      skipped,
      initialized: model
        .namedParameters()
        .map(([k]) => k)
        .filter((k) => !own.has(k) || notLoaded.includes(k)),
    };
    if (device || dtype) await model.to({ device, dtype });
    return model;
  }

  /**
   * Loads a SPECTRA folder (`audio_config.json`, `text_config.json`, `pytorch_model.bin` or
   * `model.safetensors`) with its pre-training heads: what ATForPreTraining and
   * {@link savePretrained} write (SPECTRA-base as published). The heads' tied biases load as the
   * original's load leaves them (the decoder's). Heads missing from the folder start random and are
   * listed in `loadInfo.initialized`; a fine-tuning `head.*` is skipped.
   * @throws EmotorchError ERR_IO / ERR_FORMAT for unreadable files, ERR_STATE_DICT naming missing, unexpected or mis-shaped keys.
   */
  static async fromPretrained(dir: string, opts: SpectraPretrainedOptions & SpectraPretrainingOptions = {}): Promise<SpectraForPreTraining> {
    if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
    opts = checkPretrainedOptions(opts, 'SpectraForPreTraining.fromPretrained', ['maskAudioCls', 'extraAudioFrame', ...PRETRAINING_OPTIONS]);
    dir = await pretrainedPath(dir, opts);
    const { audio, text } = readSpectraConfigs(dir, opts.config);
    const sd = await loadSpectraStateDict(dir);
    // the tied head biases: a 4.x load copies `bias`, then `decoder.bias` into the same tensor
    for (const head of ['mlm_head', 'mam_head']) {
      const dec = sd.get(`${head}.decoder.bias`);
      if (dec) {
        sd.set(`${head}.bias`, dec);
        sd.delete(`${head}.decoder.bias`);
      }
    }
    const skipped = [...sd.keys()].filter((k) => k.startsWith('head.'));
    for (const k of skipped) sd.delete(k);
    const model = SpectraForPreTraining.create(
      {
        audio,
        text,
        mask_audio_cls: opts.maskAudioCls ?? (typeof audio.mask_audio_cls === 'boolean' ? audio.mask_audio_cls : undefined),
        extra_audio_frame: opts.extraAudioFrame ?? (typeof audio.extra_audio_frame === 'boolean' ? audio.extra_audio_frame : undefined),
      },
      { tiledFusedMask: opts.tiledFusedMask, detachMamTarget: opts.detachMamTarget, seed: opts.seed },
    );
    const report = await model.loadStateDict(sd, { strict: false });
    const heads = /^(mlm_head|mam_head|selection_head|start_prediction_head|end_prediction_head)\.|^model\.text_encoder\.pooler\./;
    const missing = report.missing.filter((k) => !heads.test(k));
    const problems: string[] = [];
    if (missing.length) problems.push(`missing keys: ${missing.map((k) => `'${k}'`).join(', ')}`);
    if (report.unexpected.length) problems.push(`unexpected keys: ${report.unexpected.map((k) => `'${k}'`).join(', ')}`);
    if (problems.length && opts.strict !== false) throw new EmotorchError(`SPECTRA checkpoint '${dir}': ${problems.join('; ')}`, 'ERR_STATE_DICT');
    model.loadInfo = { skipped, initialized: report.missing };
    const dtype = opts.dtype === 'auto' ? checkpointDtype(sd) : opts.dtype;
    if (opts.device || dtype) await model.to({ device: opts.device, dtype });
    return model;
  }

  /**
   * Writes what {@link fromPretrained} and {@link Spectra.fromPretrained} read, in the layout
   * ATForPreTraining saves: `audio_config.json`, `text_config.json`, `model.safetensors` with the
   * body under `model.` and the heads beside it (the tied biases written under both names, as the
   * original's state dict has them; `Spectra.fromPretrained` skips the heads).
   * @throws EmotorchError ERR_IO when the folder cannot be written.
   */
  async savePretrained(dir: string): Promise<void> {
    if (typeof dir !== 'string') invalid('a folder path', 'dir', dir);
    try {
      fs.mkdirSync(dir, { recursive: true });
      const audio = { ...this.config.audio, mask_audio_cls: this.config.mask_audio_cls, extra_audio_frame: this.config.extra_audio_frame };
      fs.writeFileSync(path.join(dir, 'audio_config.json'), JSON.stringify(audio, null, 2));
      fs.writeFileSync(path.join(dir, 'text_config.json'), JSON.stringify(this.config.text, null, 2));
    } catch (e) {
      throw new EmotorchError(`cannot write '${dir}': ${(e as Error).message}`, 'ERR_IO');
    }
    const sd = this.stateDict();
    for (const head of ['mlm_head', 'mam_head']) sd.set(`${head}.decoder.bias`, sd.get(`${head}.bias`)!);
    await saveSafetensors(path.join(dir, 'model.safetensors'), sd, { format: 'pt' });
  }

  /** Counted frames of a clip of `samples` valid samples (the original's conv length formula, +1 with extra_audio_frame, at most `frames`). */
  private clipFrames(samples: number, frames: number): number {
    let n = samples;
    this.config.audio.conv_kernel.forEach((k, i) => {
      n = Math.trunc((n - k) / this.config.audio.conv_stride[i]) + 1;
    });
    if (this.config.extra_audio_frame) n += 1;
    return Math.max(0, Math.min(n, frames));
  }

  /**
   * The four losses and their sum on a pre-training batch ({@link spectraPretrainCollate}'s).
   * @throws EmotorchError ERR_INVALID_ARG for malformed inputs or masked-frame choices, a sample
   *   whose context or response clip is empty, or word targets that do not match the boundary flags.
   */
  async forward(inputs: SpectraPretrainInputs): Promise<SpectraPretrainOutputs> {
    const { B, L, S, W } = checkPretrainInputs(inputs, this.config.text.vocab_size);
    const cfg = this.config;
    const H = cfg.text.hidden_size,
      C = cfg.audio.conv_dim[cfg.audio.conv_dim.length - 1];
    const dev = inputs.textInput.device;
    const T = this.model.audio_encoder.framesFor(S);
    if (T < 1) invalid(`clips of at least one frame (${S} samples are too few)`, 'audio', `[${inputs.audio.shape}]`);
    const sums = Array.from((await inputs.audioAttentionMask.ne(0).sum(1).to({ device: 'cpu' }).data()) as ArrayLike<number | bigint>, Number);
    const lens = sums.map((n) => this.clipFrames(n, T));
    for (let i = 0; i < B; i++) {
      if (sums[3 * i] === 0) invalid('a non-empty clip', `the context audio of sample ${i}`, 'no samples');
      if (sums[3 * i + 1] === 0) invalid('a non-empty clip', `the response audio of sample ${i}`, 'no samples');
    }
    // the masked acoustic frames: given, or drawn
    let mam = inputs.mam;
    if (mam === undefined) mam = lens.map((n) => drawSpectraMam(n, this.random));
    else if (!Array.isArray(mam) || mam.length !== 3 * B) invalid(`${3 * B} clips' masked frames (context, response, negative per sample)`, 'mam', mam);
    const zero = new Uint8Array(3 * B * T),
      masked = new Uint8Array(3 * B * T);
    const source = new BigInt64Array(3 * B * T);
    for (let c = 0; c < 3 * B; c++) {
      for (let t = 0; t < T; t++) source[c * T + t] = BigInt(t);
      const clip = mam[c];
      if (!clip || !Array.isArray(clip.frames) || !Array.isArray(clip.action) || clip.action.length !== clip.frames.length)
        invalid('{ frames, action } of equal lengths', `mam[${c}]`, clip);
      clip.frames.forEach((f, j) => {
        const a = clip.action[j];
        if (!Number.isInteger(f) || f < 0 || f >= lens[c] || masked[c * T + f])
          invalid(`a frame below ${lens[c]} (the clip's counted frames), each once`, `mam[${c}].frames[${j}]`, f);
        if (!Number.isInteger(a) || a < -2 || a >= lens[c]) invalid(`-1 (zeroed), -2 (kept) or a frame below ${lens[c]}`, `mam[${c}].action[${j}]`, a);
        masked[c * T + f] = 1;
        if (a === -1) zero[c * T + f] = 1;
        else if (a >= 0) source[c * T + f] = BigInt(a);
      });
    }
    const textModel = this.model.text_encoder;
    const table = textModel.namedParameters().find(([n]) => n === 'embeddings.token_type_embeddings.weight')![1];
    const audio = await this.model.audio_encoder.forward({
      inputValues: inputs.audio,
      attentionMask: inputs.audioAttentionMask,
      batchSize: B,
      tokenTypeTable: cfg.audio.multi_turn ? table : null,
      mamZero: tensor(zero, { dtype: 'bool' })
        .reshape([3 * B, T])
        .to({ device: dev }),
      mamSource: tensor(source, { dtype: 'int64' })
        .reshape([3 * B, T])
        .to({ device: dev }),
      detachTarget: this.options.detachMamTarget,
    });
    const A = audio.lastHiddenState.shape[1];
    const text = (await textModel.forward({ inputIds: inputs.textInput, attentionMask: inputs.textAttentionMask, tokenTypeIds: inputs.turnId }))
      .lastHiddenState;
    // the four combinations per sample: rows (text, audio) = (pos, pos), (pos, neg), (neg, pos), (neg, neg)
    const tx = text
      .reshape([B, 2, 1, L, H])
      .expand([B, 2, 2, L, H])
      .reshape([4 * B, L, H]);
    const ax = audio.lastHiddenState
      .reshape([B, 1, 2, A, H])
      .expand([B, 2, 2, A, H])
      .reshape([4 * B, A, H]);
    const modal = cat([zeros([4 * B, L], { dtype: 'int64', device: dev }), ones([4 * B, A], { dtype: 'int64', device: dev })], 1);
    let fused = cat([tx, ax], 1).add(await this.model.token_type_embeddings.forward(modal));
    const tm = inputs.textAttentionMask.long(),
      am = audio.attentionMask;
    const mask = this.options.tiledFusedMask
      ? cat([tm.repeat([2, 1]), am.repeat([2, 1])], 1) // model.py:54: row r masked by text and audio row r mod 2B
      : cat(
          [
            tm
              .reshape([B, 2, 1, L])
              .expand([B, 2, 2, L])
              .reshape([4 * B, L]),
            am
              .reshape([B, 1, 2, A])
              .expand([B, 2, 2, A])
              .reshape([4 * B, A]),
          ],
          1,
        );
    fused = (await this.model.fused_encoder.forward({ hiddenStates: fused, attentionMask: mask })).lastHiddenState;
    const rows = fused.reshape([B, 4, L + A, H]);
    const best = rows.select(1, 0); // true text with true audio
    const textFused = best.slice(1, 0, L),
      audioFused = best.slice(1, L);
    const noGrad = () => zeros([], { device: dev });

    // MLM (model.py:85-89): no masked token gives NaN there, replaced by a constant 0
    const labels = Array.from((await inputs.mlmLabel.ne(-100).any().to({ device: 'cpu' }).data()) as ArrayLike<number>);
    const mlmLoss = labels[0]
      ? crossEntropy((await this.mlm_head.forward({ hiddenStates: textFused })).logits.reshape([-1, cfg.text.vocab_size]), inputs.mlmLabel.reshape([-1]))
      : noGrad();

    // MAM (model.py:84, 90-93): the masked context and response frames, in the concatenation and in clip layout
    const concat = new Uint8Array(B * A),
      clipMask = new Uint8Array(2 * B * T);
    let anyMasked = false;
    for (let i = 0; i < B; i++) {
      const la = lens[3 * i],
        lp = lens[3 * i + 1];
      for (let t = 0; t < la; t++)
        if (masked[3 * i * T + t]) {
          concat[i * A + 1 + t] = 1;
          clipMask[2 * i * T + t] = 1;
          anyMasked = true;
        }
      for (let t = 0; t < lp; t++)
        if (masked[(3 * i + 1) * T + t]) {
          concat[i * A + la + 2 + t] = 1;
          clipMask[(2 * i + 1) * T + t] = 1;
          anyMasked = true;
        }
    }
    let mamLoss = noGrad();
    if (anyMasked) {
      const pred = (await this.mam_head.forward({ hiddenStates: audioFused })).logits.index(
        tensor(concat, { dtype: 'bool' }).reshape([B, A]).to({ device: dev }),
      );
      const target = audio
        .target!.reshape([B, 3, T, C])
        .slice(1, 0, 2)
        .reshape([2 * B, T, C])
        .index(
          tensor(clipMask, { dtype: 'bool' })
            .reshape([2 * B, T])
            .to({ device: dev }),
        );
      mamLoss = l1Loss(pred, target.to({ dtype: pred.dtype }));
    }

    // response selection (model.py:94-95): which of the four combinations each row is
    const logits = await this.selection_head.forward(rows.select(2, 0).reshape([4 * B, H]));
    const rsLoss = crossEntropy(
      logits,
      tensor(
        Array.from({ length: 4 * B }, (_, k) => k % 4),
        { dtype: 'int64' },
      ).to({ device: dev }),
    );

    // span (model.py:96-100): first / last token of each context and response word
    let spanLoss = noGrad();
    if (W > 0) {
      const ps = await this.start_prediction_head.forward(textFused.index(inputs.startValid));
      const pe = await this.end_prediction_head.forward(textFused.index(inputs.endValid));
      const pred = cat([ps, pe]);
      spanLoss = mseLoss(pred, cat([inputs.starts, inputs.ends]).to({ dtype: pred.dtype, device: dev }));
    }
    const loss = mlmLoss.add(mamLoss).add(rsLoss).add(spanLoss);
    return { loss, mlmLoss, mamLoss, rsLoss, spanLoss, mam };
  }
}

function checkPretrainingOptions(o: SpectraPretrainingOptions): Required<Omit<SpectraPretrainingOptions, 'seed'>> {
  for (const k of ['tiledFusedMask', 'detachMamTarget'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') invalid('a boolean', k, o[k]);
  if (o.seed !== undefined) checkInt(o.seed, 'seed', 0);
  return { tiledFusedMask: o.tiledFusedMask ?? true, detachMamTarget: o.detachMamTarget ?? false };
}

/** Checks a pre-training batch's shapes and dtypes; returns its sizes. */
function checkPretrainInputs(inputs: SpectraPretrainInputs, vocab?: number): { B: number; L: number; S: number; W: number } {
  if (!inputs || typeof inputs !== 'object' || inputs instanceof Tensor)
    invalid('a pre-training batch object ({ audio, audioAttentionMask, textInput, … })', 'SPECTRA pre-training inputs', inputs);
  const lab = checkTensor(inputs.mlmLabel, 'mlmLabel');
  if (lab.ndim !== 2 || lab.dtype !== 'int64') invalid('an int64 tensor (batch, length)', 'mlmLabel', `${lab.dtype} [${lab.shape}]`);
  const [B, L] = lab.shape;
  if (B < 1 || L < 1) invalid('a non-empty batch', 'mlmLabel', `[${lab.shape}]`);
  const shape = (name: keyof SpectraPretrainInputs, want: number[], dtypes: string[]) => {
    const t = checkTensor(inputs[name] as Tensor, name);
    if (t.shape.join() !== want.join() || !dtypes.includes(t.dtype)) invalid(`${dtypes.join(' or ')} [${want}]`, name, `${t.dtype} [${t.shape}]`);
    return t;
  };
  for (const k of ['textInput', 'textAttentionMask', 'turnId'] as const) shape(k, [2 * B, L], ['int64', 'int32']);
  shape('startValid', [B, L], ['bool']);
  shape('endValid', [B, L], ['bool']);
  const audio = checkTensor(inputs.audio, 'audio');
  if (audio.ndim !== 2 || audio.shape[0] !== 3 * B)
    invalid(`a waveform tensor (${3 * B} clips: context, response, negative per sample; samples)`, 'audio', `[${audio.shape}]`);
  shape('audioAttentionMask', audio.shape, ['float32', 'float16', 'bfloat16', 'int64', 'bool']);
  const starts = checkTensor(inputs.starts, 'starts'),
    ends = checkTensor(inputs.ends, 'ends');
  if (starts.ndim !== 1 || ends.ndim !== 1) invalid('1-D tensors of word boundaries', 'starts / ends', `[${starts.shape}] / [${ends.shape}]`);
  const ns = Number(inputs.startValid.sum().item()),
    ne = Number(inputs.endValid.sum().item());
  if (vocab !== undefined) {
    const top = Number(inputs.textInput.max().item()),
      low = Number(inputs.textInput.min().item());
    if (low < 0 || top >= vocab)
      invalid(
        `token ids in 0..${vocab - 1} (the model's vocabulary; a collate's maskTokenId / vocabSize must fit it: give it the tokenizer)`,
        'textInput',
        `ids ${low}..${top}`,
      );
  }
  // the original's view(-1, H) and subtraction break (or broadcast one value) when these differ (dataset.py:30, model.py:100)
  if (ns !== starts.shape[0] || ne !== ends.shape[0])
    invalid(`one start per startValid flag (${ns}) and one end per endValid flag (${ne})`, 'starts / ends', `${starts.shape[0]} / ${ends.shape[0]}`);
  return { B, L, S: audio.shape[1], W: starts.shape[0] };
}
