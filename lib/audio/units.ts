/**
 * Discrete speech units (USDM's input): a speech encoder's hidden states at one layer, each frame
 * assigned its nearest k-means centroid (squared L2) in native code (native/audio/units), batched,
 * optionally with runs of one unit collapsed. Centroids come from a numpy `.npy` file such as
 * seamless's `kmeans_10k.npy`.
 */
import { readNpy, NpyArray } from '../io/npy';
import { Module, NativeModule } from '../nn/module';
import type { ModuleOptions } from '../nn/module';
import type { Wav2Vec2Model } from '../nn/wav2vec2';
import { Tensor, checkTensor, tensor, cat, zeros } from '../tensor';
import { invalid, checkOptionNames } from '../errors';

/** Nearest-centroid assignment over (batch, frames, dim) states; the centroids are the buffer `centroids`. @internal */
class KMeansUnits extends NativeModule {
  constructor(numUnits: number, dim: number, opts: ModuleOptions) {
    super('kmeans_units', { num_units: numUnits, dim }, opts);
  }
  async forward(inputs: { states: Tensor; attentionMask: Tensor | null; dedup: boolean }): Promise<{ units: Tensor; lengths: Tensor }> {
    const flag = tensor([inputs.dedup ? 1 : 0], { dtype: 'int64' });
    try {
      const o = await this.run({ hidden_states: inputs.states, attention_mask: inputs.attentionMask, dedup: flag });
      return { units: o.units!, lengths: o.lengths! };
    } finally {
      flag.dispose();
    }
  }
}

/** Options of {@link UnitExtractor}. */
export interface UnitExtractorOptions {
  /** The speech encoder (XLS-R for USDM). */
  encoder: Wav2Vec2Model;
  /** Hidden state index: 0 = encoder input, i = output of layer i (USDM: 35 of XLS-R 1B, seamless's `out_layer_idx` 34). */
  layer: number;
  /** (units, dim) centroids: a `.npy` path, a float Tensor, or `{ data, shape }`. */
  centroids: string | Tensor | NpyArray;
  /** Collapse runs of one unit (default false: USDM keeps every frame's unit). */
  dedup?: boolean;
  /** Standardize each clip over its real samples, (x − mean) / sqrt(var + 1e-5), as seamless's UnitExtractor does (default true). */
  normalize?: boolean;
  /**
   * Pad each clip of odd length as seamless's `UnitExtractor.predict` does (default true): its
   * fairseq2 `Collater(pad_value=2, pad_to_multiple=2)` appends one sample of value 2 to an
   * odd-length clip; the layer norm then runs over that sample too, the encoder's padding mask
   * covers the real samples only, and the frame the extra sample can add (a 16 kHz length ≡ 79
   * mod 320 with XLS-R's convolutions) is kept as a unit. With false, each clip is taken as it is.
   */
  seamlessPad?: boolean;
}

/**
 * k-means speech units from a Wav2Vec2 / XLS-R layer: `forward` → `{ units (batch, frames), lengths }`
 * with −1 after each row's length; `predict` gives plain arrays.
 * @example
 * const xlsr = await et.nn.Wav2Vec2Model.fromPretrained('xlsr2_1b_v2/');
 * const ux = new et.audio.UnitExtractor({ encoder: xlsr, layer: 35, centroids: 'kmeans_10k.npy' });
 * const [units] = await ux.predict({ inputValues: wave });   // [ 4120, 4120, 873, … ]
 */
export class UnitExtractor extends Module {
  readonly encoder: Wav2Vec2Model;
  readonly layer: number;
  readonly dedup: boolean;
  readonly normalize: boolean;
  readonly seamlessPad: boolean;
  readonly numUnits: number;
  private readonly kmeans: KMeansUnits;

  /**
   * @throws EmotorchError ERR_INVALID_ARG for a bad layer or centroids whose width is not the encoder's hidden size; ERR_IO / ERR_FORMAT for the .npy file
   */
  constructor(opts: UnitExtractorOptions) {
    super();
    if (!opts || typeof opts !== 'object') invalid('an options object ({ encoder, layer, centroids })', 'UnitExtractor options', opts);
    checkOptionNames(opts, ['encoder', 'layer', 'centroids', 'dedup', 'normalize', 'seamlessPad'], 'UnitExtractor');
    const enc = opts.encoder as Wav2Vec2Model & { hiddenStateAt?: unknown };
    if (!(enc instanceof Module) || typeof enc.hiddenStateAt !== 'function') invalid('a Wav2Vec2Model', 'encoder', opts.encoder);
    const L = opts.encoder.config.num_hidden_layers,
      H = opts.encoder.config.hidden_size;
    if (!Number.isSafeInteger(opts.layer) || opts.layer < 0 || opts.layer > L) invalid(`an integer in [0, ${L}]`, 'layer', opts.layer);
    for (const k of ['dedup', 'normalize', 'seamlessPad'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'boolean') invalid('a boolean', k, opts[k]);
    let c: Tensor;
    if (opts.centroids instanceof Tensor) {
      c = checkTensor(opts.centroids, 'centroids');
    } else {
      const a =
        typeof opts.centroids === 'string'
          ? readNpy(opts.centroids)
          : opts.centroids && typeof opts.centroids === 'object' && (opts.centroids as NpyArray).data instanceof Float32Array
            ? (opts.centroids as NpyArray)
            : invalid('a .npy path, a Tensor or { data: Float32Array, shape }', 'centroids', opts.centroids);
      c = tensor(a.data, { shape: a.shape });
    }
    if (c.shape.length !== 2 || c.shape[0] < 1 || c.shape[1] !== H) invalid(`centroids (units ≥ 1, ${H})`, 'centroids shape', `[${c.shape}]`);
    this.encoder = this.registerModule('encoder', opts.encoder);
    this.layer = opts.layer;
    this.dedup = opts.dedup ?? false;
    this.normalize = opts.normalize ?? true;
    this.seamlessPad = opts.seamlessPad ?? true;
    this.numUnits = c.shape[0];
    const device = opts.encoder.parameters()[0]?.device;
    this.kmeans = this.registerModule('kmeans', new KMeansUnits(c.shape[0], H, device ? { device } : {}));
    // Loading is async: forward waits for it (a failure surfaces there, not as an unhandled rejection).
    const owned = c !== opts.centroids;
    this.ready = this.kmeans.loadStateDict({ centroids: c }, { strict: true }).then(
      () => {
        if (owned) c.dispose();
        return null;
      },
      (e: unknown) => e,
    );
  }

  private readonly ready: Promise<unknown>;

  /**
   * @param inputs.inputValues (batch, samples) 16 kHz waveform
   * @param inputs.attentionMask (batch, samples) 1 = real sample, 0 = padding
   * @returns units (batch, frames) int64, −1 past each row's length; lengths (batch) int64
   * @throws EmotorchError ERR_INVALID_ARG for bad shapes
   */
  async forward(inputs: { inputValues: Tensor; attentionMask?: Tensor | null; dedup?: boolean } | Tensor): Promise<{ units: Tensor; lengths: Tensor }> {
    const x = inputs instanceof Tensor ? { inputValues: inputs } : inputs;
    if (!x || typeof x !== 'object') invalid('an inputs object ({ inputValues, attentionMask? }) or a Tensor', 'UnitExtractor inputs', inputs);
    if (x.dedup !== undefined && typeof x.dedup !== 'boolean') invalid('a boolean', 'dedup', x.dedup);
    const wave = checkTensor(x.inputValues, 'inputValues');
    if (wave.shape.length !== 2) invalid('a waveform (batch, samples)', 'inputValues', `[${wave.shape}]`);
    const mask = x.attentionMask ?? null;
    if (mask && checkTensor(mask, 'attentionMask').shape.join() !== wave.shape.join()) invalid(`shape [${wave.shape}]`, 'attentionMask', `[${mask.shape}]`);
    const failed = await this.ready;
    if (failed) throw failed;
    const owned: Tensor[] = [];
    try {
      let input = wave,
        normMask = mask,
        encMask = mask,
        frames: number[] | null = null;
      if (this.seamlessPad) {
        const padded = seamlessPadding(wave, mask);
        if (padded) {
          owned.push(padded.input, padded.normMask, padded.encMask);
          ({ input, normMask, encMask } = padded);
          frames = padded.lengths.map((n) => Math.max(0, this.encoder.framesFor(n)));
        }
      }
      const values = this.normalize ? standardize(input, normMask) : input;
      if (values !== input) owned.push(values);
      const { hiddenState, attentionMask } = await this.encoder.hiddenStateAt({ inputValues: values, attentionMask: encMask }, this.layer);
      owned.push(hiddenState);
      if (attentionMask) owned.push(attentionMask);
      let unitMask = attentionMask;
      if (frames) {
        // The frames of each padded clip are units, the one its pad sample adds included.
        const F = hiddenState.shape[1];
        const m = new Uint8Array(frames.length * F);
        frames.forEach((n, b) => m.fill(1, b * F, b * F + Math.min(n, F)));
        unitMask = tensor(m, { shape: [frames.length, F], dtype: 'bool' }).to({ device: hiddenState.device });
        owned.push(unitMask);
      }
      return await this.kmeans.forward({ states: hiddenState, attentionMask: unitMask, dedup: x.dedup ?? this.dedup });
    } finally {
      for (const t of owned) t.dispose();
    }
  }

  /** Unit id lists, one per clip (padding removed). Same parameters as {@link forward}. */
  async predict(inputs: { inputValues: Tensor; attentionMask?: Tensor | null; dedup?: boolean } | Tensor): Promise<number[][]> {
    const { units, lengths } = await this.forward(inputs);
    const u = units.toArray() as number[][],
      n = lengths.toArray() as number[];
    units.dispose();
    lengths.dispose();
    return u.map((row, i) => row.slice(0, n[i]));
  }
}

/**
 * seamless's padding of each clip (fairseq2's Collater(pad_value=2, pad_to_multiple=2) on one clip):
 * an odd-length clip gets one more sample, of value 2. Returns null when no clip is odd. `input`
 * holds the clips with that sample (widened by a column when a clip fills the batch width),
 * `normMask` the samples the layer norm runs over (real + pad), `encMask` the real samples (the
 * encoder's padding mask), `lengths` each clip's padded length.
 */
function seamlessPadding(wave: Tensor, mask: Tensor | null): { input: Tensor; normMask: Tensor; encMask: Tensor; lengths: number[] } | null {
  const [B, T] = wave.shape;
  let real: number[];
  if (mask) {
    const m = mask.to({ dtype: 'float32' });
    const n = m.sum(1);
    real = (n.toArray() as number[]).map((v) => Math.round(v));
    m.dispose();
    n.dispose();
  } else {
    real = Array(B).fill(T);
  }
  if (real.every((n) => n % 2 === 0)) return null;
  const lengths = real.map((n) => n + (n % 2));
  const W = Math.max(T, ...lengths);
  const pad = new Float32Array(B * W),
    norm = new Float32Array(B * W),
    enc = new Float32Array(B * W);
  real.forEach((n, b) => {
    enc.fill(1, b * W, b * W + n);
    norm.fill(1, b * W, b * W + lengths[b]);
    if (lengths[b] > n) pad[b * W + n] = 2;
  });
  const device = wave.device;
  const opt = { shape: [B, W] };
  const encMask = tensor(enc, opt).to({ device, dtype: wave.dtype });
  const normMask = tensor(norm, opt).to({ device, dtype: wave.dtype });
  const padT = tensor(pad, opt).to({ device, dtype: wave.dtype });
  const extra = W > T ? zeros([B, W - T], { dtype: wave.dtype, device }) : null;
  const wide = extra ? cat([wave, extra], 1) : wave;
  const masked = wide.mul(encMask);
  const input = masked.add(padT);
  for (const t of [padT, masked, ...(extra ? [extra, wide] : [])]) t.dispose();
  return { input, normMask, encMask, lengths };
}

/** (x − mean) / sqrt(var + 1e-5) over each row's real samples; padding stays 0. */
function standardize(wave: Tensor, mask: Tensor | null): Tensor {
  if (!mask) {
    const mean = wave.mean(1, true);
    const c = wave.sub(mean);
    const out = c.div(c.square().mean(1, true).add(1e-5).sqrt());
    mean.dispose();
    c.dispose();
    return out;
  }
  const m = checkTensor(mask, 'attentionMask').to({ dtype: wave.dtype });
  const n = m.sum(1, true).clamp(1);
  const mean = wave.mul(m).sum(1, true).div(n);
  const c = wave.sub(mean).mul(m);
  const out = c.div(c.square().sum(1, true).div(n).add(1e-5).sqrt());
  for (const t of [m, n, mean, c]) t.dispose();
  return out;
}
