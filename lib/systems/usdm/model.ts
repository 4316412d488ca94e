/**
 * USDM (naver-ai/usdm): a Mistral/LLaMA-family decoder over speech units and text. The unit
 * vocabulary (`<|continue|>`, `<|correspond|>`, `<|unit0..9999|>`, `<pad>` = ids 32000–42002 on
 * Mistral), SFT labels by the original single-turn masking, and the original three greedy stages:
 * user units → user transcript → agent text → agent units; then speech out of the units
 * ({@link UsdmSpeaker}: the token Voicebox and BigVGAN of the original's src/decoder). Facts: SYSTEMS.md §6.
 */
import { Module } from '../../nn/module';
import { LlamaForCausalLM } from '../../nn/llama';
import { checkQuantFormat } from '../../nn/quant';
import type { QuantFormat } from '../../nn/quant';
import type { LlamaOutputs } from '../../nn/llama';
import { checkPretrainedOptions, pretrainedPath } from '../../nn/pretrained';
import type { PretrainedOptions } from '../../nn/pretrained';
import { applyLora } from '../../nn/lora';
import { Tensor, randn, tensor, zeros, cat } from '../../tensor';
import { Voicebox, unitsToFrames } from '../../nn/voicebox';
import { BigVGAN } from '../../nn/bigvgan';
import { vocoderLogMel } from '../../audio/features';
import { resample } from '../../audio/resample';
import { USDM_SYSTEM, unitString } from '../../data/usdm';
import { EmotorchError, invalid, checkInt, checkNumber, checkOptionNames } from '../../errors';
import { USDM_TOKEN_IDS, UsdmTextCodec, UsdmTokenIds, usdmCollate } from './data';

function checkIds(ids: unknown, V: number): UsdmTokenIds {
  const o = { ...USDM_TOKEN_IDS, ...((ids as object) ?? {}) } as UsdmTokenIds;
  for (const k of Object.keys(USDM_TOKEN_IDS) as (keyof UsdmTokenIds)[]) checkInt(o[k], `tokenIds.${k}`, 0);
  if (o.unit0 + o.numUnits > V) invalid(`unit ids inside the vocabulary (${V})`, 'tokenIds.unit0 + numUnits', o.unit0 + o.numUnits);
  for (const k of ['newline', 'space', 'continue', 'correspond', 'pad', 'bos'] as const) if (o[k] >= V) invalid(`an id below ${V}`, `tokenIds.${k}`, o[k]);
  return o;
}

/** Options of {@link Usdm.fromPretrained}. */
export interface UsdmOptions extends PretrainedOptions {
  /** Add the unit vocabulary when the checkpoint lacks it (a base Mistral): 2 + numUnits + 1 rows, N(0, initializer_range). */
  addUnitVocabulary?: boolean;
  /** LoRA as the original's option (r 8, α 16, dropout 0.1 on q/k/v/o) or false for a full fine-tune (default). */
  lora?: boolean | { r: number; alpha: number; dropout?: number; targetModules?: string[] };
  /** Token ids (defaults: Mistral's, {@link USDM_TOKEN_IDS}). */
  tokenIds?: Partial<UsdmTokenIds>;
  /**
   * emotorch's own (the original has no quantized path): the decoder's Linear layers quantized while
   * the checkpoint is read ({@link QuantFormat}), the LM head, embeddings and norms in `dtype`; LoRA
   * adapters train in float32 over them (QLoRA). Not with `addUnitVocabulary` (its resize builds a
   * float copy of the model).
   */
  quantize?: QuantFormat;
}

/** The three stages of {@link Usdm.infer}: the user's transcript, the agent's text, the agent's units. */
export type UsdmStage = 'user' | 'agent' | 'units';

/** Options of {@link Usdm.infer}. */
export interface UsdmInferOptions {
  /** Tokens per stage at most (default 512). */
  maxNewTokens?: number;
  /**
   * Sampling as the Streamlit demo's vLLM SamplingParams: 0 is greedy; above 0 samples at this
   * temperature (with topP, topK). Default: greedy, as inference.py.
   */
  temperature?: number;
  /** Nucleus sampling's mass, in (0, 1] (the demo's top_p; 1: off); no effect at temperature 0, as in vLLM. */
  topP?: number;
  /** Sampling among the k likeliest ids (the demo's top_k; 0 or -1: off, as vLLM; 1: greedy); no effect at temperature 0. */
  topK?: number;
  /** Seeds each stage's sampling (a generator of its own; the same seed, the same answer). */
  seed?: number;
  /** Called with the first stage's prompt length in tokens before it runs (a throw here ends the call). */
  onPrompt?: (promptTokens: number) => void;
  /** Called with each new token id of each stage (for streaming). */
  onTokens?: (stage: UsdmStage, ids: number[]) => void;
  /** Aborts generation at the next token (ERR_ABORTED). */
  signal?: AbortSignal;
  /** Speaks the agent's units: the answer gets `speech`. */
  speaker?: UsdmSpeaker;
  /** The speaker's options (reference voice, flow steps, guidance, seed). */
  speak?: UsdmSpeakOptions;
}

/** What {@link Usdm.infer} answers. */
export interface UsdmAnswer {
  /** The user's transcript (stage 1). */
  userText: string;
  /** The agent's text (stage 2). */
  agentText: string;
  /** The agent's units (stage 3). */
  agentUnits: number[];
  /** Tokens of the first stage's prompt (BOS, template and the user's units). */
  promptTokens: number;
  /** Tokens each stage generated (its stop token included). */
  generatedTokens: Record<UsdmStage, number>;
  /** Whether a stage ended at maxNewTokens rather than at its stop token. */
  truncated: boolean;
  /** With `speaker`: the agent's speech, mono samples at the vocoder's rate. */
  speech?: { samples: Float32Array; sampleRate: number };
}

/** The generation options of {@link UsdmInferOptions}' sampling, checked (vLLM's meanings). */
function usdmSampling(o: UsdmInferOptions): { doSample?: boolean; temperature?: number; topP?: number; topK?: number; seed?: number } {
  const t = o.temperature === undefined ? 0 : checkNumber(o.temperature, 'temperature', 0);
  const topP = o.topP === undefined ? 1 : checkNumber(o.topP, 'topP', Number.MIN_VALUE, 1);
  const topK = o.topK === undefined ? 0 : checkInt(o.topK, 'topK', -1);
  const seed = o.seed === undefined ? undefined : checkInt(o.seed, 'seed', 0);
  if (t === 0) return {}; // greedy, topP and topK aside, as vLLM at temperature 0
  return { doSample: true, temperature: t, topP, topK: Math.max(topK, 0), ...(seed === undefined ? {} : { seed }) };
}

/**
 * USDM: the decoder with the unit vocabulary, SFT forward (`{ inputIds, attentionMask, labels }` →
 * `{ loss, logits }`), and the three-stage inference.
 * Guide: [USDM](../../../docs/usdm.md).
 * @example
 * const usdm = await et.systems.usdm.Usdm.fromPretrained('USDM-DailyTalk/');
 * const { userText, agentText, agentUnits } = await usdm.infer(units, tokenizerCodec);
 */
export class Usdm extends Module {
  readonly llm: LlamaForCausalLM;
  readonly tokenIds: UsdmTokenIds;
  readonly loraLayers: string[];

  constructor(llm: LlamaForCausalLM, opts: { tokenIds?: Partial<UsdmTokenIds>; lora?: UsdmOptions['lora'] } = {}) {
    super();
    if (!(llm instanceof LlamaForCausalLM)) invalid('a LlamaForCausalLM', 'llm', llm);
    checkOptionNames(opts, ['tokenIds', 'lora'], 'Usdm');
    this.tokenIds = checkIds(opts.tokenIds, llm.config.vocab_size);
    this.llm = this.registerModule('model', llm);
    const l = opts.lora === true ? { r: 8, alpha: 16, dropout: 0.1 } : opts.lora || null;
    if (l !== null && typeof l !== 'object') invalid('a boolean or { r, alpha, dropout?, targetModules? }', 'lora', opts.lora);
    this.loraLayers = l
      ? applyLora(llm, {
          r: l.r,
          alpha: l.alpha,
          dropout: l.dropout ?? 0.1,
          targetModules: (l as { targetModules?: string[] }).targetModules ?? ['q_proj', 'k_proj', 'v_proj', 'o_proj'],
        })
      : [];
  }

  /**
   * Loads a local Mistral/LLaMA folder (USDM checkpoints already carry the 42003-token vocabulary);
   * with `opts.quantize`, its decoder layers quantized as they load.
   * @throws EmotorchError as LlamaForCausalLM.fromPretrained; ERR_INVALID_ARG when the vocabulary lacks the unit ids
   */
  static async fromPretrained(dir: string, opts: UsdmOptions = {}): Promise<Usdm> {
    opts = checkPretrainedOptions(opts, 'Usdm.fromPretrained', ['addUnitVocabulary', 'lora', 'tokenIds', 'quantize']);
    const quantize = opts.quantize === undefined ? undefined : checkQuantFormat(opts.quantize, 'Usdm.fromPretrained opts.quantize');
    if (quantize && opts.addUnitVocabulary)
      invalid(
        'no addUnitVocabulary with quantize (the resize builds a float copy of the model): add the vocabulary first (usdm extend-vocab)',
        'opts.quantize',
        quantize,
      );
    dir = await pretrainedPath(dir, opts);
    // loaded in place in the dtype asked for (the unit rows, when added, take it too), then moved
    let llm = await LlamaForCausalLM.fromPretrained(dir, { strict: opts.strict, config: opts.config, dtype: opts.dtype, ...(quantize ? { quantize } : {}) });
    if (opts.addUnitVocabulary) llm = await addUnitVocabulary(llm, opts.tokenIds?.numUnits ?? USDM_TOKEN_IDS.numUnits);
    if (opts.device) await llm.to({ device: opts.device });
    return new Usdm(llm, { tokenIds: opts.tokenIds, lora: opts.lora });
  }

  /** SFT forward: `{ inputIds, attentionMask?, labels? }` → `{ logits, loss? }` (HF's shifted causal-LM loss). */
  async forward(inputs: { inputIds: Tensor; attentionMask?: Tensor; labels?: Tensor; numItemsInBatch?: number }): Promise<LlamaOutputs> {
    return this.llm.forward(inputs);
  }

  /**
   * Pads `ids|labels` examples into a batch as `train_sft.py`: ids with `<pad>`, labels with −100,
   * attentionMask = ids ≠ pad.
   */
  collate(examples: Array<{ ids: number[]; labels: number[] }>): { inputIds: Tensor; attentionMask: Tensor; labels: Tensor } {
    return usdmCollate(examples, this.tokenIds.pad);
  }

  /**
   * The three stages of `src/inference.py`: units → user transcript (stops at "\n"; unit and
   * special ids banned) → agent text (stops at `<|correspond|>`; unit ids banned) → agent units
   * (stops at "▁"; every id below the units banned except "▁"); greedy as inference.py, or sampled
   * as the Streamlit demo's vLLM sampling (temperature, topP, topK); then, with `speaker`, the
   * agent's speech ({@link UsdmSpeaker.speak}).
   * @param userUnits the user's speech units (0 ≤ u < numUnits)
   * @param codec encode (no BOS) / decode (special tokens kept) of the model's tokenizer
   * @param opts see {@link UsdmInferOptions}
   * @returns the user's transcript, the agent's text and units, the token counts of the stages,
   *   and with `speaker` the agent's speech
   * @throws EmotorchError ERR_INVALID_ARG for bad units, codec or option value, or an unknown option name;
   *   ERR_ABORTED when `signal` aborts
   */
  async infer(userUnits: number[], codec: UsdmTextCodec, opts: UsdmInferOptions = {}): Promise<UsdmAnswer> {
    const I = this.tokenIds;
    if (!Array.isArray(userUnits) || userUnits.length === 0 || !userUnits.every((u) => Number.isSafeInteger(u) && u >= 0 && u < I.numUnits))
      invalid(`a non-empty array of units in [0, ${I.numUnits})`, 'userUnits', userUnits);
    if (!codec || typeof codec.encode !== 'function' || typeof codec.decode !== 'function')
      invalid('an object with encode(text) and decode(ids)', 'codec', codec);
    checkOptionNames(opts, ['maxNewTokens', 'temperature', 'topP', 'topK', 'seed', 'onPrompt', 'onTokens', 'signal', 'speaker', 'speak'], 'Usdm.infer');
    const maxNew = checkInt(opts.maxNewTokens ?? 512, 'maxNewTokens', 1);
    const sampling = usdmSampling(opts);
    for (const k of ['onPrompt', 'onTokens'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'function') invalid('a function', k, opts[k]);
    if (opts.speaker !== undefined && !(opts.speaker instanceof UsdmSpeaker)) invalid('an et.systems.usdm.UsdmSpeaker', 'speaker', opts.speaker);
    if (opts.speak !== undefined && opts.speaker === undefined) invalid('absent without speaker', 'speak', opts.speak);
    const V = this.llm.config.vocab_size;
    const counts = { user: 0, agent: 0, units: 0 };
    let promptTokens = 0,
      truncated = false;
    const stage = async (name: UsdmStage, prompt: string, banned: Array<[number, number]>, eos: number): Promise<string> => {
      const ids = [I.bos, ...(await codec.encode(prompt))];
      if (name === 'user') {
        promptTokens = ids.length;
        opts.onPrompt?.(promptTokens);
      }
      const inputIds = tensor([ids], { dtype: 'int64' });
      const on = opts.onTokens;
      const { newTokens } = await this.llm.generate(
        { inputIds },
        {
          maxNewTokens: maxNew,
          eosTokenId: eos,
          padTokenId: 0,
          bannedTokenRanges: banned.filter(([a, b]) => b > a),
          ...sampling,
          ...(on ? { onTokens: (t: number[]) => on(name, t) } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
      );
      const got = (newTokens.toArray() as number[][])[0].map(Number);
      const end = got.indexOf(eos);
      counts[name] = end < 0 ? got.length : end + 1;
      if (end < 0) truncated = true;
      const out = [...ids, ...got];
      inputIds.dispose();
      newTokens.dispose();
      return codec.decode(out);
    };
    const template = `${USDM_SYSTEM}\n### User\n${unitString(userUnits)}<|correspond|>`;
    const first = Math.min(I.continue, I.correspond, I.unit0, I.pad);
    const s1 = await stage('user', template, [[first, V]], I.newline);
    const userText = stripAll(s1.split('<|correspond|>').pop()!, ['\n', ' ']);
    const p2 = `${template}${userText}\n### Agent\n`;
    const s2 = await stage('agent', p2, [[I.unit0, V]], I.correspond);
    const agentText = stripAll(s2.split('\n').pop()!, ['\n', ' ', '<|correspond|>']);
    const s3 = await stage(
      'units',
      `${p2}${agentText}<|correspond|>`,
      [
        [0, I.space],
        [I.space + 1, I.unit0],
      ],
      I.space,
    );
    const agentUnits = [
      ...s3
        .split('<|correspond|>')
        .pop()!
        .matchAll(/<\|unit(\d+)\|>/g),
    ].map((m) => Number(m[1]));
    const answer: UsdmAnswer = { userText, agentText, agentUnits, promptTokens, generatedTokens: counts, truncated };
    if (opts.speaker) {
      if (!agentUnits.length) throw new EmotorchError('Usdm.infer: the model answered with no units: there is no speech to make', 'ERR_DATA');
      const { samples, sampleRate } = await opts.speaker.speak(agentUnits, opts.speak ?? {});
      answer.speech = { samples, sampleRate };
    }
    return answer;
  }
}

/** The original's strip: removes any of `pieces` from both ends until none is there. */
function stripAll(s: string, pieces: string[]): string {
  for (let changed = true; changed;) {
    changed = false;
    for (const p of pieces) {
      if (s.startsWith(p)) {
        s = s.slice(p.length);
        changed = true;
      }
      if (s.endsWith(p)) {
        s = s.slice(0, -p.length);
        changed = true;
      }
    }
  }
  return s;
}

/**
 * A copy of `llm` with 2 + numUnits + 1 new token rows (`<|continue|>`, `<|correspond|>`, units,
 * `<pad>`), the new embedding and head rows drawn from N(0, initializer_range) as
 * `resize_token_embeddings` + `_init_weights` do. The given model is disposed.
 */
export async function addUnitVocabulary(llm: LlamaForCausalLM, numUnits = 10000): Promise<LlamaForCausalLM> {
  checkInt(numUnits, 'numUnits', 1);
  const { vocab_size: v, hidden_size: h, initializer_range: std, tie_word_embeddings: tied } = llm.config;
  const V = v + numUnits + 3;
  const embed = randn([V - v, h]).mul(std); // drawn in this order: embed, then head
  const lmHead = tied ? undefined : randn([V - v, h]).mul(std);
  const bigger = await llm.resizeTokenEmbeddings(V, { rows: { embed, lmHead } });
  llm.dispose();
  bigger.eval();
  return bigger;
}

/** The original's mel normalization (src/decoder/voicebox/util/model_util.py: mel_mean, mel_std). */
export const USDM_MEL_MEAN = -5.5419;
/** The original's mel standard deviation (model_util.py's mel_std): normalized = (log-mel − mean) / std. */
export const USDM_MEL_STD = 2.1575;

/** A speaker reference for {@link UsdmSpeaker.speak}: its 50 Hz units and its waveform. */
export interface UsdmReference {
  /** The reference's units (the same extractor as the user's: XLS-R layer 35 (index 34) + k-means, from its 16 kHz samples). */
  units: ArrayLike<number>;
  /** Its mono samples at `sampleRate` (resampled to the vocoder's rate as the original's get_mel: torchaudio's resampler). */
  samples: Float32Array;
  sampleRate: number;
}

/** Options of {@link UsdmSpeaker.speak}. */
export interface UsdmSpeakOptions {
  /** The voice: the reference's units and waveform, put in front as a prompt (the original's --reference_path). */
  reference?: UsdmReference;
  /** The original's n_timesteps (inference.py: 50; the Streamlit demo's "flow steps": 15). Default 50. */
  steps?: number;
  /** Classifier-free guidance (the original's gradient_scale, 1.0 in reconstruct_speech). Default 1. */
  guidance?: number;
  /** Seeds the sampler's noise (as torch.manual_seed before the original's generate); default: the process's generator. */
  seed?: number;
}

/**
 * USDM's speech out of units, as the original's reconstruct_speech: the 50 Hz units held per hop of
 * the vocoder ({@link unitsToFrames}), the reference's units and normalized log-mel in front, the
 * Voicebox sampler (Heun, guidance), the answer's frames cut out, de-normalized and vocoded by
 * BigVGAN, clamped to [−1, 1].
 * @example
 * const speaker = await et.systems.usdm.UsdmSpeaker.fromPretrained('xlsr-token-Voicebox/', 'bigvgan_22khz_80band/');
 * const { samples, sampleRate } = await speaker.speak(agentUnits, { steps: 50, seed: 0 });
 */
export class UsdmSpeaker {
  constructor(
    readonly voicebox: Voicebox,
    readonly vocoder: BigVGAN,
  ) {
    if (!(voicebox instanceof Voicebox)) invalid('an et.nn.Voicebox', 'voicebox', voicebox);
    if (!(vocoder instanceof BigVGAN)) invalid('an et.nn.BigVGAN', 'vocoder', vocoder);
    if (voicebox.config.n_feats !== vocoder.config.num_mels)
      invalid(`the vocoder's num_mels (${vocoder.config.num_mels})`, 'the Voicebox n_feats', voicebox.config.n_feats);
  }

  /** The released folders (naver-ai/xlsr-token-Voicebox, nvidia/bigvgan_22khz_80band), in eval mode. */
  static async fromPretrained(voiceboxDir: string, vocoderDir: string, opts: Pick<PretrainedOptions, 'device' | 'dtype'> = {}): Promise<UsdmSpeaker> {
    checkOptionNames(opts, ['device', 'dtype'], 'UsdmSpeaker.fromPretrained options');
    const vb = await Voicebox.fromPretrained(voiceboxDir, opts);
    const gan = await BigVGAN.fromPretrained(vocoderDir, opts);
    return new UsdmSpeaker(vb.eval() as Voicebox, gan.eval() as BigVGAN);
  }

  /** The vocoder's sample rate (22050 for bigvgan_22khz_80band). */
  get sampleRate(): number {
    return this.vocoder.config.sampling_rate;
  }

  /**
   * The agent's speech from its 50 Hz units.
   * @returns `{ samples, sampleRate, mel }`: mono float32 samples (units · rate / 50, cut to whole hops),
   *   the vocoder's rate, and the answer's log-mel (1, n_feats, frames)
   * @throws EmotorchError ERR_INVALID_ARG for no units, units outside the vocabulary, too few for one
   *   frame, a reference that is silent, too short for a frame or not finite, more than
   *   et.nn.VOICEBOX_MAX_FRAMES frames with the reference's, or bad options
   */
  async speak(units: ArrayLike<number>, opts: UsdmSpeakOptions = {}): Promise<{ samples: Float32Array; sampleRate: number; mel: Tensor }> {
    checkOptionNames(opts, ['reference', 'steps', 'guidance', 'seed'], 'speak options');
    const cfg = this.vocoder.config;
    const V = this.voicebox.config.n_tokens;
    const checkUnits = (u: ArrayLike<number>, what: string) => {
      if (!u || typeof u.length !== 'number' || u.length === 0) invalid('a non-empty list of unit ids', what, u);
      for (let i = 0; i < u.length; i++) if (!Number.isInteger(u[i]) || u[i] < 0 || u[i] >= V) invalid(`unit ids from 0 to ${V - 1}`, `${what}[${i}]`, u[i]);
    };
    checkUnits(units, 'units');
    const agent = unitsToFrames(units, cfg.sampling_rate, cfg.hop_size);
    if (agent.frames.length === 0) invalid(`units for at least one frame of ${cfg.hop_size} samples`, 'units', `${units.length} unit(s)`);
    let frames = agent.frames;
    let cond: Tensor | undefined;
    let P = 0;
    const ref = opts.reference;
    if (ref !== undefined) {
      if (!ref || typeof ref !== 'object') invalid('{ units, samples, sampleRate }', 'opts.reference', ref);
      checkUnits(ref.units, 'opts.reference.units');
      if (!(ref.samples instanceof Float32Array)) invalid('a Float32Array', 'opts.reference.samples', ref.samples);
      checkInt(ref.sampleRate, 'opts.reference.sampleRate', 1000);
      let peak = 0;
      for (const x of ref.samples) {
        if (!Number.isFinite(x)) invalid('finite samples', 'opts.reference.samples', x);
        peak = Math.max(peak, Math.abs(x));
      }
      if (peak < 1e-4) invalid('a voice (the reference is silent: its peak is below 1e-4)', 'opts.reference.samples', `peak ${peak}`);
      const r = unitsToFrames(ref.units, cfg.sampling_rate, cfg.hop_size);
      if (r.frames.length === 0) invalid(`units for at least one frame`, 'opts.reference.units', `${ref.units.length} unit(s)`);
      // get_mel: the file at its own rate, resampled to the vocoder's (torchaudio), cut to the units' span
      let wave = ref.samples;
      if (ref.sampleRate !== cfg.sampling_rate) wave = resample(wave, ref.sampleRate, cfg.sampling_rate, { method: 'torchaudio' });
      if (wave.length < r.samples)
        throw new EmotorchError(
          `speak: the reference's ${wave.length} samples at ${cfg.sampling_rate} Hz are fewer than its ${ref.units.length} units span (${r.samples}): units and samples are not of one clip`,
          'ERR_INVALID_ARG',
        );
      const clip = tensor(wave.subarray(0, r.samples)).reshape([1, -1]).clamp(-1, 1);
      const mel = await vocoderLogMel(clip, {
        sampleRate: cfg.sampling_rate,
        nFft: cfg.n_fft,
        nMels: cfg.num_mels,
        hop: cfg.hop_size,
        win: cfg.win_size,
        fmin: cfg.fmin,
        fmax: cfg.fmax,
      });
      P = r.frames.length;
      const normalized = mel.sub(USDM_MEL_MEAN).div(USDM_MEL_STD);
      cond = cat([normalized, zeros([1, cfg.num_mels, agent.frames.length])], 2);
      frames = [...r.frames, ...agent.frames];
    }
    const device = (this.voicebox.parameters()[0] as Tensor | undefined)?.device ?? 'cpu';
    const u = tensor(frames, { dtype: 'int64' }).reshape([1, -1]).to({ device });
    const { mel } = await this.voicebox.generate(u, {
      ...(cond ? { cond: cond.to({ device }) } : {}),
      promptLength: P,
      steps: opts.steps ?? 50,
      guidance: opts.guidance ?? 1,
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
    });
    const answer = mel.slice(2, P).mul(USDM_MEL_STD).add(USDM_MEL_MEAN);
    const { waveform } = await this.vocoder.forward({ mel: answer.to({ dtype: this.vocoderDtype() }) });
    const samples = (await waveform.to({ dtype: 'float32', device: 'cpu' }).clamp(-1, 1).flatten().data()) as Float32Array;
    return { samples, sampleRate: cfg.sampling_rate, mel: answer };
  }

  private vocoderDtype() {
    return (this.vocoder.parameters()[0] as Tensor).dtype;
  }
}
