/**
 * USDM's unit-to-mel decoder: the token Voicebox of naver-ai/usdm (src/decoder/voicebox), its
 * flow-matching estimator and sampler on native/models/voicebox.
 */
import type { ModuleOptions } from './module';
import { ConfigOf, ConfiguredModule, declareConfig, defaultsOf, f } from './config';
import { Tensor, checkTensor, linspace, randn, tensor, zeros } from '../tensor';
import { getRngState, manualSeed, setRngState } from '../runtime';
import { EmotorchError, invalid } from '../errors';
import { PretrainedOptions, loadCheckpoint, loadPretrained } from './pretrained';

/** naver-ai/xlsr-token-Voicebox's config.json (its defaults: that model's). */
export const VOICEBOX = declareConfig({
  name: 'Voicebox',
  kind: 'voicebox',
  fields: {
    /** Mel bands (the vocoder's num_mels). */
    n_feats: f.posint(80),
    /** Unit vocabulary (0 … n_tokens − 1); n_tokens itself is the mask (unconditional) unit. */
    n_tokens: f.posint(10000),
    embedding_dim: f.posint(1280),
    hidden_size: f.posint(1024),
    intermediate_size: f.posint(4096),
    num_attention_heads: f.posint(16),
    /** Even: the second half takes the first half's outputs back (U-Net skips). */
    num_hidden_layers: f.posint(24),
    /** Odd. */
    convpos_width: f.posint(31),
    convpos_groups: f.posint(16),
    convpos_depth: f.nonneg(2),
    attention_dropout: f.prob(0),
    activation_dropout: f.prob(0.1),
    hidden_dropout: f.prob(0),
    /** The config's solver (the original's generate is called with 'heun' by USDM, as here). */
    solver: f.string('euler'),
    sigma_min: f.nonnegnum(1e-4),
  },
  check(c) {
    const where = 'Voicebox config';
    if (c.num_hidden_layers % 2) invalid('an even number (U-Net skips)', `${where}.num_hidden_layers`, c.num_hidden_layers);
    if (c.hidden_size % 2 || c.hidden_size < 4 || c.hidden_size % c.num_attention_heads || c.hidden_size % c.convpos_groups)
      invalid(
        `even, ≥ 4 and a multiple of num_attention_heads (${c.num_attention_heads}) and convpos_groups (${c.convpos_groups})`,
        `${where}.hidden_size`,
        c.hidden_size,
      );
    if (c.convpos_width % 2 === 0) invalid('odd (an even width is not part of emotorch)', `${where}.convpos_width`, c.convpos_width);
    if (c.sigma_min >= 1) invalid('below 1', `${where}.sigma_min`, c.sigma_min);
  },
});

/**
 * naver-ai/xlsr-token-Voicebox's config.json fields.
 * @interface
 */
export type VoiceboxConfig = ConfigOf<typeof VOICEBOX>;
/** The VoiceboxConfig values used for the fields a config leaves out. */
export const VOICEBOX_DEFAULTS: VoiceboxConfig = defaultsOf(VOICEBOX);

/**
 * A state dict with its weight-normed tensors folded: each key matching `gain` (the g) and its
 * partner (`gain` replaced by `direction`, the v) become `<layer>.weight = v · (g / ‖v‖)`, the norm over
 * every dimension but `dim`, as torch's weight_norm computes the weight (and remove_weight_norm keeps).
 * Both spellings of each: torch's parametrizations (`.parametrizations.weight.original0 / 1`) and the
 * legacy `weight_g` / `weight_v`.
 * @internal
 */
export function foldWeightNorm(sd: Map<string, Tensor>, gain: RegExp, direction: string, dim: number): Map<string, Tensor> {
  const out = new Map(sd);
  for (const [k, g] of sd) {
    if (!gain.test(k)) continue;
    const vk = k.replace(gain, direction);
    const v = sd.get(vk);
    if (!v) throw new EmotorchError(`weight norm: '${k}' has no '${vk}' beside it`, 'ERR_STATE_DICT');
    const dims = v.shape.map((_, i) => i).filter((i) => i !== dim);
    if (g.shape.length !== v.shape.length || g.shape.some((n, i) => n !== (i === dim ? v.shape[dim] : 1)))
      throw new EmotorchError(`weight norm: '${k}' is [${g.shape}], not the gain of '${vk}' [${v.shape}] over dimension ${dim}`, 'ERR_STATE_DICT');
    const v32 = v.to({ dtype: 'float32' });
    const w = v32.mul(g.to({ dtype: 'float32' }).div(v32.norm(2, dims, true)));
    out.delete(k);
    out.delete(vk);
    out.set(k.replace(gain, '.weight'), w.to({ dtype: v.dtype }));
  }
  return out;
}

/** The inputs of {@link Voicebox.forward} (one velocity). */
export interface VoiceboxInputs {
  /** (batch, frames) unit ids, 0 … n_tokens (n_tokens: masked). */
  units: Tensor;
  /** (batch, n_feats, frames) the noisy mel at time t. */
  noisyMel: Tensor;
  /** (batch, n_feats, frames) the condition (the prompt's normalized mel, zeros elsewhere). */
  cond: Tensor;
  /** (batch) the flow time in [0, 1]. */
  t: Tensor;
  /** (batch) frames of each row (the rest padding); all by default. */
  lengths?: Tensor;
}
/** The outputs of {@link Voicebox.forward}. */
export interface VoiceboxOutputs {
  /** (batch, n_feats, frames) the estimated velocity. */
  velocity: Tensor;
}

/** Options of {@link Voicebox.generate}. */
export interface VoiceboxGenerateOptions {
  /** (1, n_feats, frames): the reference's normalized mel in its first `promptLength` frames. Default zeros. */
  cond?: Tensor;
  /** Frames of `cond` that hold the reference (re-noised each stage, as the original's speech_prompt). Default 0. */
  promptLength?: number;
  /** The original's n_timesteps: (n + 1) / 2 Heun steps (USDM's inference: 50, its demo: 15). Default 50. */
  steps?: number;
  /** Classifier-free guidance scale (the original's gradient_scale; USDM: 1). 0: none. */
  guidance?: number;
  /** Seeds the noise (libtorch's CPU generator, as torch.manual_seed before the original's generate). */
  seed?: number;
  /** The draws themselves, (draws, 1, n_feats, frames): 2 · steps' Heun count with a prompt, else 1. */
  noise?: Tensor;
}

/** Most Heun steps a generate call takes (the original's n_timesteps up to 2 · this − 1). */
export const VOICEBOX_MAX_STEPS = 1000;

/**
 * Most frames (the prompt's and the answer's together) one row may have: 4096 frames of 256 samples
 * at 22.05 kHz are 47.6 s, whose attention bias under guidance alone is 2 · heads · 4097² floats
 * (2.1 GiB for the released 16 heads). Longer answers: speak them in parts.
 */
export const VOICEBOX_MAX_FRAMES = 4096;

/**
 * 50 Hz units to mel frames, as the original's process_unit: each unit held for sampleRate / 50
 * samples (441 at 22.05 kHz), cut to whole hops, each hop taking its most frequent unit (the smaller
 * id on a tie, as torch.mode on the CPU). Returns the frames' units and the samples they span.
 */
export function unitsToFrames(units: ArrayLike<number>, sampleRate = 22050, hop = 256): { frames: number[]; samples: number } {
  const per = Math.floor(sampleRate / 50);
  const samples = Math.floor((units.length * per) / hop) * hop;
  const frames: number[] = [];
  for (let s = 0; s < samples; s += hop) {
    const a = units[Math.floor(s / per)],
      lastUnit = Math.floor((s + hop - 1) / per);
    if (lastUnit === Math.floor(s / per)) {
      frames.push(a);
      continue;
    }
    const b = units[lastUnit];
    const na = lastUnit * per - s,
      nb = hop - na;
    frames.push(na > nb ? a : nb > na ? b : Math.min(a, b));
  }
  return { frames, samples };
}

/**
 * USDM's token Voicebox: the estimator (`forward`: one velocity) and its sampler (`generate`: Heun
 * steps from noise to a normalized mel, with guidance and a reference prompt).
 * @example
 * const vb = await et.nn.Voicebox.fromPretrained('xlsr-token-Voicebox/');
 * const { mel } = await vb.generate(unitFrames, { steps: 50, guidance: 1, seed: 0 });
 */
export class Voicebox extends ConfiguredModule<VoiceboxConfig> {
  /** A Voicebox with random weights; fields the config leaves out take the defaults. */
  static create(config: Partial<VoiceboxConfig> = {}, opts: ModuleOptions = {}): Voicebox {
    return new Voicebox(VOICEBOX, config, opts);
  }

  /**
   * Loads the released folder (`naver-ai/xlsr-token-Voicebox`: config.json and model.safetensors,
   * keys `estimator.*`), the position convolutions' weight norm folded as they are read
   * (`parametrizations.weight.original0 / 1` or `weight_g / weight_v`, over each tap). Unlike the
   * original's loader (strict=False), a missing or unexpected key is an error.
   */
  static async fromPretrained(dir: string, opts: PretrainedOptions<VoiceboxConfig> = {}): Promise<Voicebox> {
    return loadPretrained(VOICEBOX, Voicebox, dir, opts, {
      async read(d) {
        let sd = await loadCheckpoint(d);
        sd = foldWeightNorm(sd, /\.parametrizations\.weight\.original0$/, '.parametrizations.weight.original1', 2);
        return { sd: foldWeightNorm(sd, /\.weight_g$/, '.weight_v', 2) };
      },
    });
  }

  /** One velocity of the estimator. */
  async forward(inputs: VoiceboxInputs): Promise<VoiceboxOutputs> {
    const { units, noisyMel, cond, t, lengths } = inputs ?? ({} as VoiceboxInputs);
    this.checkUnits(units, 'units');
    const [B, T] = units.shape;
    if (T > VOICEBOX_MAX_FRAMES || B * T > 8 * VOICEBOX_MAX_FRAMES)
      invalid(`at most ${VOICEBOX_MAX_FRAMES} frames a row and ${8 * VOICEBOX_MAX_FRAMES} in all`, 'units', `[${units.shape}]`);
    for (const [x, n] of [
      [noisyMel, 'noisyMel'],
      [cond, 'cond'],
    ] as const) {
      checkTensor(x, n);
      if (x.shape.join() !== [B, this.config.n_feats, T].join()) invalid(`a (${B}, ${this.config.n_feats}, ${T}) mel`, n, `[${x.shape}]`);
    }
    checkTensor(t, 't');
    if (t.shape.join() !== String(B)) invalid(`(${B}) flow times`, 't', `[${t.shape}]`);
    if (lengths !== undefined) {
      checkTensor(lengths, 'lengths');
      if (lengths.shape.join() !== String(B)) invalid(`(${B}) lengths`, 'lengths', `[${lengths.shape}]`);
    }
    const out = await this.run({ units, noisy_mel: noisyMel, cond, t, lengths: lengths ?? null });
    return { velocity: out.velocity! };
  }

  /**
   * The original's CFM.generate with solve_heun, for one row: from noise at t = 0 to the
   * normalized mel at t = 1 over a uniform grid, each step's velocity guided (v_c + g · (v_c − v_u),
   * the unconditional branch with every unit masked and no condition), the prompt frames re-noised
   * after each stage, the last step without its corrector.
   * @param units (1, frames) or a list: the frames' unit ids ({@link unitsToFrames}), the prompt's first
   * @returns `{ mel, states }`: mel (1, n_feats, frames) normalized (the original's mel_mean / mel_std
   *   undone by the caller); states (steps, 1, n_feats, frames) the mel after each Heun step
   */
  async generate(units: Tensor | ArrayLike<number>, opts: VoiceboxGenerateOptions = {}): Promise<{ mel: Tensor; states: Tensor }> {
    const u = units instanceof Tensor ? units : tensor(Array.from(units), { dtype: 'int64' }).reshape([1, -1]);
    this.checkUnits(u, 'units');
    const [B, T] = u.shape;
    if (B !== 1 || T < 1) invalid('one row of at least one frame', 'units', `[${u.shape}]`);
    if (T > VOICEBOX_MAX_FRAMES) invalid(`at most ${VOICEBOX_MAX_FRAMES} frames (47.6 s at 22.05 kHz; speak longer answers in parts)`, 'units', `${T} frames`);
    const F = this.config.n_feats;
    const n = opts.steps ?? 50;
    if (!Number.isInteger(n) || n < 1 || n > 2 * VOICEBOX_MAX_STEPS - 1) invalid(`an integer from 1 to ${2 * VOICEBOX_MAX_STEPS - 1}`, 'opts.steps', n);
    const g = opts.guidance ?? 1;
    if (!Number.isFinite(g) || g < 0 || g > 100) invalid('a number from 0 to 100', 'opts.guidance', g);
    const P = opts.promptLength ?? 0;
    if (!Number.isInteger(P) || P < 0 || P >= T) invalid(`an integer from 0 to ${T - 1} (frames of cond before the answer's)`, 'opts.promptLength', P);
    const cond = opts.cond ?? zeros([1, F, T]);
    checkTensor(cond, 'opts.cond');
    if (cond.shape.join() !== [1, F, T].join()) invalid(`a (1, ${F}, ${T}) mel`, 'opts.cond', `[${cond.shape}]`);
    if (!cond.isfinite().all().item()) invalid('finite values', 'opts.cond', 'NaN or infinity');
    const N = Math.floor((n + 1) / 2);
    const draws = P > 0 ? 2 * N : 1;
    let noise = opts.noise;
    if (noise === undefined) {
      const seed = opts.seed;
      if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) invalid('a non-negative integer', 'opts.seed', seed);
      // seeded: the draws of torch.manual_seed(seed) then the original's randn_like calls, the
      // process's generator left as it was
      const saved = seed === undefined ? null : getRngState();
      if (seed !== undefined) manualSeed(seed);
      try {
        noise = randn([draws, 1, F, T]).to({ device: cond.device });
      } finally {
        if (saved) setRngState(saved);
      }
    } else {
      checkTensor(noise, 'opts.noise');
      if (noise.shape.join() !== [draws, 1, F, T].join()) invalid(`(${draws}, 1, ${F}, ${T}) draws`, 'opts.noise', `[${noise.shape}]`);
      if (!noise.isfinite().all().item()) invalid('finite draws', 'opts.noise', 'NaN or infinity');
    }
    const out = await this.run({
      units: u,
      cond,
      noise,
      timesteps: linspace(0, 1, N + 1, { dtype: 'float32' }),
      guidance: tensor(g, { dtype: 'float64' }),
      prompt_length: tensor(P, { dtype: 'int64' }),
    });
    return { mel: out.mel!, states: out.states! };
  }

  private checkUnits(units: Tensor, name: string): void {
    checkTensor(units, name);
    if (units.ndim !== 2 || (units.dtype !== 'int64' && units.dtype !== 'int32'))
      invalid('(batch, frames) integer unit ids', name, `${units.dtype} [${units.shape}]`);
    if (units.numel > 0) {
      const lo = units.min().item(),
        hi = units.max().item();
      if (lo < 0 || hi > this.config.n_tokens) invalid(`unit ids from 0 to ${this.config.n_tokens} (the mask unit)`, name, `ids ${lo} … ${hi}`);
    }
  }
}
