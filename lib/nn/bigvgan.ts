/** BigVGAN v1, the vocoder USDM speaks through (naver-ai/usdm src/decoder/voicebox/vocoder), on native/models/bigvgan. */
import * as fs from 'fs';
import * as path from 'path';
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { Tensor, checkTensor } from '../tensor';
import { EmotorchError, invalid } from '../errors';
import { loadSafetensors, loadTorchFile } from '../io';
import { PretrainedOptions, loadPretrained } from './pretrained';
import { foldWeightNorm } from './voicebox';

/** bigvgan_22khz_80band's config.json (its defaults: that model's). The training keys are accepted and not used. */
export const BIGVGAN = declareConfig({
  name: 'BigVGAN',
  kind: 'bigvgan',
  fields: {
    /** Mel bands of the input. */
    num_mels: f.posint(80),
    /** Each stage's upsampling factor; their product is the hop (256 samples a frame). */
    upsample_rates: f.ints([4, 4, 2, 2, 2, 2]),
    upsample_kernel_sizes: f.ints([8, 8, 4, 4, 4, 4]),
    /** Channels after conv_pre, halved at each stage. */
    upsample_initial_channel: f.posint(1536),
    /** '1' (AMPBlock1: two convs a dilation) or '2' (AMPBlock2: one). */
    resblock: f.string('1'),
    resblock_kernel_sizes: f.ints([3, 7, 11]),
    /** One list of dilations per kernel size. */
    resblock_dilation_sizes: f
      .any<number[][]>('i64[]', [
        [1, 3, 5],
        [1, 3, 5],
        [1, 3, 5],
      ])
      .sends((c: Record<string, number[][]>) => c.resblock_dilation_sizes.flat()),
    /** 'snakebeta' or 'snake'. */
    activation: f.string('snakebeta'),
    /** The snake parameters stored as logarithms. */
    snake_logscale: f.bool(true),
    /** The waveform's rate (Hz) and the analysis the mels come from (et.audio.vocoderLogMel). */
    sampling_rate: f.posint(22050).host(),
    n_fft: f.posint(1024).host(),
    hop_size: f.posint(256).host(),
    win_size: f.posint(1024).host(),
    fmin: f.nonnegnum(0).host(),
    fmax: f.posnum(8000).host(),
  },
  check(c) {
    const ints = (v: unknown, what: string) => {
      if (!Array.isArray(v) || v.length === 0 || !v.every((x) => Number.isInteger(x) && x >= 1))
        invalid('a non-empty list of positive integers', `BigVGAN config.${what}`, v);
    };
    ints(c.upsample_rates, 'upsample_rates');
    ints(c.upsample_kernel_sizes, 'upsample_kernel_sizes');
    ints(c.resblock_kernel_sizes, 'resblock_kernel_sizes');
    if (c.upsample_kernel_sizes.length !== c.upsample_rates.length)
      invalid(`as many kernel sizes as upsample_rates (${c.upsample_rates.length})`, 'BigVGAN config.upsample_kernel_sizes', c.upsample_kernel_sizes);
    c.upsample_rates.forEach((u, i) => {
      const k = c.upsample_kernel_sizes[i];
      if (k < u || (k - u) % 2) invalid(`≥ the rate ${u} and of its parity`, `BigVGAN config.upsample_kernel_sizes[${i}]`, k);
    });
    const d = c.resblock_dilation_sizes;
    if (
      !Array.isArray(d) ||
      d.length !== c.resblock_kernel_sizes.length ||
      !d.every((r) => Array.isArray(r) && r.length === d[0].length && r.length > 0 && r.every((x) => Number.isInteger(x) && x >= 1))
    )
      invalid(
        `one list of positive dilations (all of one length) per kernel size (${c.resblock_kernel_sizes.length})`,
        'BigVGAN config.resblock_dilation_sizes',
        d,
      );
    if (c.resblock !== '1' && c.resblock !== '2') invalid("'1' or '2'", 'BigVGAN config.resblock', c.resblock);
    if (c.activation !== 'snake' && c.activation !== 'snakebeta') invalid("'snake' or 'snakebeta'", 'BigVGAN config.activation', c.activation);
    if (c.upsample_initial_channel >> c.upsample_rates.length < 1)
      invalid(`at least 2^${c.upsample_rates.length} (halved at each stage)`, 'BigVGAN config.upsample_initial_channel', c.upsample_initial_channel);
    if (c.upsample_rates.reduce((a, b) => a * b, 1) !== c.hop_size)
      invalid(`the product of upsample_rates (${c.upsample_rates.reduce((a, b) => a * b, 1)})`, 'BigVGAN config.hop_size', c.hop_size);
    if (c.fmax <= c.fmin || c.fmax > c.sampling_rate / 2) invalid(`above fmin and at most half the rate`, 'BigVGAN config.fmax', c.fmax);
    if (c.win_size > c.n_fft || c.hop_size > c.n_fft) invalid(`≥ win_size and hop_size`, 'BigVGAN config.n_fft', c.n_fft);
  },
});

/**
 * bigvgan_22khz_80band's config.json fields.
 * @interface
 */
export type BigVGANConfig = ConfigOf<typeof BIGVGAN>;
/** The BigVGANConfig values used for the fields a config leaves out. */
export const BIGVGAN_DEFAULTS: BigVGANConfig = defaultsOf(BIGVGAN);

/** The inputs of {@link BigVGAN.forward}. */
export interface BigVGANInputs {
  /** (batch, num_mels, frames) natural-log mel, as et.audio.vocoderLogMel makes it. */
  mel: Tensor;
}
/** The outputs of {@link BigVGAN.forward}. */
export interface BigVGANOutputs {
  /** (batch, 1, frames · hop_size) in [−1, 1] (tanh), at config.sampling_rate. */
  waveform: Tensor;
}

/** The weight-normed convolutions of a BigVGAN state dict: each `*.weight_g` / `*.weight_v` pair (legacy torch weight_norm, dim 0). */
function foldBigvgan(sd: Map<string, Tensor>): Map<string, Tensor> {
  return foldWeightNorm(sd, /\.weight_g$/, '.weight_v', 0);
}

/**
 * BigVGAN v1's generator: log-mel (batch, num_mels, frames) → waveform (batch, 1, frames · hop).
 * @example
 * const vocoder = await et.nn.BigVGAN.fromPretrained('bigvgan_22khz_80band/');
 * const { waveform } = await vocoder.forward({ mel });
 */
export class BigVGAN extends ConfiguredModule<BigVGANConfig> {
  /** A BigVGAN with random weights; fields the config leaves out take the defaults. */
  static create(config: Partial<BigVGANConfig> = {}, opts: ModuleOptions = {}): BigVGAN {
    return new BigVGAN(BIGVGAN, config, opts);
  }

  /**
   * Loads the released folder as users have it (`nvidia/bigvgan_22khz_80band`): config.json and
   * bigvgan_generator.pt (`{ generator: state dict }`, the convolutions weight-normed as
   * `weight_g` / `weight_v`, folded here as the original's remove_weight_norm; a state dict saved
   * after that is read as well), or a model.safetensors.
   * @throws EmotorchError ERR_IO when neither file is there; ERR_FORMAT when the .pt holds no
   *   `generator`; ERR_STATE_DICT for missing / unexpected keys or shapes
   */
  static async fromPretrained(dir: string, opts: PretrainedOptions<BigVGANConfig> = {}): Promise<BigVGAN> {
    return loadPretrained(BIGVGAN, BigVGAN, dir, opts, {
      async read(d) {
        const st = path.join(d, 'model.safetensors');
        const pt = path.join(d, 'bigvgan_generator.pt');
        if (fs.existsSync(st) || !fs.existsSync(pt)) {
          if (!fs.existsSync(st)) throw new EmotorchError(`'${d}' has neither bigvgan_generator.pt nor model.safetensors`, 'ERR_IO');
          return { sd: foldBigvgan((await loadSafetensors(st)).tensors) };
        }
        const obj = await loadTorchFile(pt);
        const g = obj instanceof Map ? obj.get('generator') : undefined;
        if (!(g instanceof Map)) throw new EmotorchError(`'${pt}' holds no 'generator' state dict`, 'ERR_FORMAT');
        return { sd: foldBigvgan(g as Map<string, Tensor>) };
      },
    });
  }

  /**
   * @param inputs `{ mel }`: (batch, num_mels, frames ≥ 1); or that tensor alone
   * @returns `{ waveform }` (batch, 1, frames · hop_size)
   */
  async forward(inputs: BigVGANInputs | Tensor): Promise<BigVGANOutputs> {
    const { mel } = this.namedInputs<BigVGANInputs>(inputs, 'mel', 'BigVGAN');
    checkTensor(mel, 'mel');
    const s = mel.shape;
    if (s.length !== 3 || s[1] !== this.config.num_mels || s[2] < 1) invalid(`a log-mel (batch, ${this.config.num_mels}, frames ≥ 1)`, 'mel', `[${s}]`);
    if (s[0] === 0) return { waveform: this.emptyOutput([0, 1, s[2] * this.config.hop_size], mel.device) };
    return { waveform: (await this.run({ mel })).waveform! };
  }
}
