/**
 * USDM (naver-ai/usdm): a Mistral/LLaMA-family decoder over speech units and text. The unit
 * vocabulary (`<|continue|>`, `<|correspond|>`, `<|unit0..9999|>`, `<pad>` = ids 32000–42002 on
 * Mistral), SFT labels by the original single-turn masking, and the original three greedy stages:
 * user units → user transcript → agent text → agent units. Unit-to-speech synthesis (Token-Voicebox
 * + BigVGAN) is not part of emotorch. Facts: SYSTEMS.md §6.
 */
import { Module } from '../../nn/module';
import { LlamaForCausalLM } from '../../nn/llama';
import { checkQuantFormat } from '../../nn/quant';
import type { QuantFormat } from '../../nn/quant';
import type { LlamaOutputs } from '../../nn/llama';
import { checkPretrainedOptions, pretrainedPath } from '../../nn/pretrained';
import type { PretrainedOptions } from '../../nn/pretrained';
import { applyLora } from '../../nn/lora';
import { Tensor, randn, tensor } from '../../tensor';
import { USDM_SYSTEM, unitString } from '../../data/usdm';
import { invalid, checkInt, checkOptionNames } from '../../errors';
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
   * The three greedy stages of `src/inference.py`: units → user transcript (stops at "\n"; unit and
   * special ids banned) → agent text (stops at `<|correspond|>`; unit ids banned) → agent units
   * (stops at "▁"; every id below the units banned except "▁").
   * @param userUnits the user's speech units (0 ≤ u < numUnits)
   * @param codec encode (no BOS) / decode (special tokens kept) of the model's tokenizer
   * @param opts maxNewTokens per stage (default 512)
   * @throws EmotorchError ERR_INVALID_ARG for bad units, codec or option value, or an unknown option name
   */
  async infer(
    userUnits: number[],
    codec: UsdmTextCodec,
    opts: { maxNewTokens?: number } = {},
  ): Promise<{ userText: string; agentText: string; agentUnits: number[] }> {
    const I = this.tokenIds;
    if (!Array.isArray(userUnits) || userUnits.length === 0 || !userUnits.every((u) => Number.isSafeInteger(u) && u >= 0 && u < I.numUnits))
      invalid(`a non-empty array of units in [0, ${I.numUnits})`, 'userUnits', userUnits);
    if (!codec || typeof codec.encode !== 'function' || typeof codec.decode !== 'function')
      invalid('an object with encode(text) and decode(ids)', 'codec', codec);
    checkOptionNames(opts, ['maxNewTokens'], 'Usdm.infer');
    const maxNew = checkInt(opts.maxNewTokens ?? 512, 'maxNewTokens', 1);
    const V = this.llm.config.vocab_size;
    const stage = async (prompt: string, banned: Array<[number, number]>, eos: number): Promise<string> => {
      const ids = [I.bos, ...(await codec.encode(prompt))];
      const inputIds = tensor([ids], { dtype: 'int64' });
      const { newTokens } = await this.llm.generate(
        { inputIds },
        { maxNewTokens: maxNew, eosTokenId: eos, padTokenId: 0, bannedTokenRanges: banned.filter(([a, b]) => b > a) },
      );
      const out = [...ids, ...(newTokens.toArray() as number[][])[0]];
      inputIds.dispose();
      newTokens.dispose();
      return codec.decode(out);
    };
    const template = `${USDM_SYSTEM}\n### User\n${unitString(userUnits)}<|correspond|>`;
    const first = Math.min(I.continue, I.correspond, I.unit0, I.pad);
    const s1 = await stage(template, [[first, V]], I.newline);
    const userText = stripAll(s1.split('<|correspond|>').pop()!, ['\n', ' ']);
    const p2 = `${template}${userText}\n### Agent\n`;
    const s2 = await stage(p2, [[I.unit0, V]], I.correspond);
    const agentText = stripAll(s2.split('\n').pop()!, ['\n', ' ', '<|correspond|>']);
    const s3 = await stage(
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
    return { userText, agentText, agentUnits };
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
