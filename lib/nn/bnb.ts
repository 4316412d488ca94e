/**
 * Checkpoints quantized by transformers + bitsandbytes (issue 58), as they are saved: the
 * `quantization_config` of a config.json (transformers' `BitsAndBytesConfig.to_dict()`) and the
 * tensors bitsandbytes writes for each quantized Linear layer (bitsandbytes/nn/modules.py:
 * `Linear8bitLt._save_to_state_dict`, `Params4bit` / `QuantState.as_dict(packed=True)`):
 * - 8-bit (`load_in_8bit`, LLM.int8): `<layer>.weight` int8 (out, in), `<layer>.SCB` float32 (out),
 *   `<layer>.weight_format` uint8 () = 0 ('row').
 * - 4-bit NF4 with double quantization (`load_in_4bit`, `bnb_4bit_quant_type: 'nf4'`,
 *   `bnb_4bit_use_double_quant: true`): `<layer>.weight` uint8 (out·in/2, 1), `.weight.absmax` uint8,
 *   `.weight.quant_map` float32 (16), `.weight.nested_absmax` float32, `.weight.nested_quant_map`
 *   float32 (256) and `.weight.quant_state.bitsandbytes__nf4`: the UTF-8 bytes of the JSON
 *   `{"quant_type": "nf4", "blocksize": 64, "dtype", "shape", "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset"}`.
 *
 * emotorch keeps the same tensors in its quantized layers (`QuantizedWeight`); the one
 * difference is NF4's double-quantization offset, an emotorch tensor `<layer>.weight.offset` and
 * bitsandbytes' `nested_offset` inside the JSON. The loading and saving themselves are in
 * pretrained.ts (`fromPretrained` reads these folders, `savePretrained` writes them).
 */
import { EmotorchError, invalid } from '../errors';
import { DType, isFloating } from '../dtype';
import type { QuantFormat } from './quant';

/** The quantizations bitsandbytes saves and emotorch implements. */
export type BnbFormat = Extract<QuantFormat, 'int8' | 'nf4'>;

/** A checkpoint's bitsandbytes `quantization_config`, as emotorch reads it ({@link readBnbQuantization}). */
export interface BnbQuantization {
  /** 'int8' for `load_in_8bit`, 'nf4' for `load_in_4bit`. */
  format: BnbFormat;
  /**
   * `llm_int8_skip_modules`: the modules left in float (transformers' patterns: a name equal to,
   * ending with, or starting with one of them); null: transformers' default, the output embedding
   * (the LM head).
   */
  skipModules: string[] | null;
  /** `bnb_4bit_compute_dtype`, where it names a floating dtype (kept to be saved again). */
  computeDtype?: DType;
  /** The config's own `dtype` (`torch_dtype` in transformers 4): the dtype of the unquantized tensors. */
  dtype?: DType;
}

const fail = (key: string, what: string): never => {
  throw new EmotorchError(`quantization_config.${key}: ${what}`, 'ERR_FORMAT');
};

const DTYPE_NAMES: Record<string, DType> = { float32: 'float32', float16: 'float16', bfloat16: 'bfloat16', float64: 'float64' };

/** A torch dtype name as transformers writes it ('float16', or 'torch.float16' from older versions); undefined otherwise. */
function dtypeName(v: unknown): DType | undefined {
  return typeof v === 'string' ? DTYPE_NAMES[v.replace(/^torch\./, '')] : undefined;
}

/**
 * The bitsandbytes quantization a config.json declares, checked against what emotorch implements;
 * null when it has no `quantization_config`.
 * @param config a config.json's object
 * @throws EmotorchError ERR_FORMAT naming the `quantization_config` key for another `quant_method`
 *   (GPTQ, AWQ, …), neither `load_in_8bit` nor `load_in_4bit`, 4-bit FP4, 4-bit without double
 *   quantization, `bnb_4bit_quant_storage` other than uint8, `llm_int8_has_fp16_weight` (float16
 *   weights quantized at every forward), or a malformed `llm_int8_skip_modules`
 * @example
 * const q = et.nn.readBnbQuantization(JSON.parse(fs.readFileSync('vicuna-7b-8bit/config.json', 'utf8')));
 * q?.format; // 'int8'
 */
export function readBnbQuantization(config: Record<string, unknown>): BnbQuantization | null {
  if (!config || typeof config !== 'object') invalid('a config object', 'config', config);
  const qc = config.quantization_config as Record<string, unknown> | undefined | null;
  if (qc === undefined || qc === null) return null;
  if (typeof qc !== 'object' || Array.isArray(qc)) fail('', 'expected an object');
  const method = qc.quant_method ?? 'bitsandbytes';
  if (method !== 'bitsandbytes')
    fail('quant_method', `'${String(method)}' is not implemented (emotorch reads bitsandbytes checkpoints: load_in_8bit, load_in_4bit with nf4)`);
  const flag = (k: string): boolean => qc[k] === true || qc[`_${k}`] === true;
  const in8 = flag('load_in_8bit');
  const in4 = flag('load_in_4bit');
  if (in8 === in4) fail('load_in_8bit', in8 ? 'and load_in_4bit both true' : 'neither load_in_8bit nor load_in_4bit is true');
  if (qc.llm_int8_has_fp16_weight === true)
    fail('llm_int8_has_fp16_weight', 'true (float16 weights quantized at every forward) is not implemented: the checkpoint must hold the int8 weights');
  // emotorch's int8 inference splits off the outliers at transformers' default, 6.0 (nn/quant.ts)
  const threshold = qc.llm_int8_threshold;
  if (in8 && threshold !== undefined && threshold !== null && threshold !== 6)
    fail(
      'llm_int8_threshold',
      `${JSON.stringify(threshold)}: emotorch's int8 layers take |x| ≥ 6.0 as outliers (transformers' default) and no other threshold`,
    );
  let skip: string[] | null = null;
  const s = qc.llm_int8_skip_modules;
  if (s !== undefined && s !== null) {
    if (!Array.isArray(s) || !s.every((x) => typeof x === 'string')) fail('llm_int8_skip_modules', 'expected null or a list of module names');
    skip = s as string[];
  }
  const out: BnbQuantization = { format: in8 ? 'int8' : 'nf4', skipModules: skip };
  if (in4) {
    const type = qc.bnb_4bit_quant_type ?? 'fp4';
    if (type !== 'nf4') fail('bnb_4bit_quant_type', `'${String(type)}' is not implemented (emotorch's 4-bit format is 'nf4')`);
    if (qc.bnb_4bit_use_double_quant !== true)
      fail(
        'bnb_4bit_use_double_quant',
        'false (4-bit without double quantization) is not implemented: emotorch reads NF4 with its absmax double-quantized, as QLoRA saves it',
      );
    const storage = qc.bnb_4bit_quant_storage ?? 'uint8';
    if (storage !== 'uint8') fail('bnb_4bit_quant_storage', `'${String(storage)}' is not implemented (uint8 only)`);
  }
  const cd = dtypeName(qc.bnb_4bit_compute_dtype);
  if (cd) out.computeDtype = cd;
  const own = dtypeName(config.dtype) ?? dtypeName(config.torch_dtype);
  if (own) out.dtype = own;
  return out;
}

/**
 * Whether transformers leaves the module `name` in float for these `llm_int8_skip_modules`
 * patterns (transformers' `should_convert_module`: the pattern matches the start of the name as a
 * regular expression, or the name ends with it).
 */
export function bnbSkips(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    if (name.endsWith(p)) return true;
    try {
      return new RegExp(`^(?:${p})`).test(name);
    } catch {
      return name.startsWith(p);
    }
  });
}

/** A tensor's dtype and shape, as a safetensors header lists it. */
export interface TensorInfo {
  dtype: DType;
  shape: number[];
}

/** The key suffixes bitsandbytes saves for a quantized layer, after `<layer>`; `optional` may be absent. */
export function bnbLayerKeys(format: BnbFormat): { required: string[]; optional: string[] } {
  return format === 'int8'
    ? { required: ['.weight', '.SCB'], optional: ['.weight_format'] }
    : {
        required: [
          '.weight',
          '.weight.absmax',
          '.weight.quant_map',
          '.weight.nested_absmax',
          '.weight.nested_quant_map',
          '.weight.quant_state.bitsandbytes__nf4',
        ],
        optional: [],
      };
}

/**
 * Checks, from the checkpoint's headers alone, the tensors of one quantized layer (out × in):
 * present, in bitsandbytes' dtypes and shapes.
 * @param layer the layer's name (`model.layers.0.self_attn.q_proj`)
 * @param get a tensor's header entry by full key (undefined when the checkpoint lacks it)
 * @throws EmotorchError ERR_STATE_DICT naming the missing or mis-shaped tensor; ERR_FORMAT for a
 *   layout emotorch does not implement (FP4's quant state, NF4 without double quantization)
 */
export function checkBnbLayer(layer: string, format: BnbFormat, out: number, inF: number, get: (key: string) => TensorInfo | undefined): void {
  const bad = (key: string, what: string): never => {
    throw new EmotorchError(`bitsandbytes checkpoint: '${layer}${key}' ${what}`, 'ERR_STATE_DICT');
  };
  const need = (key: string, dtype: DType, shape: number[] | null): void => {
    const e = get(layer + key);
    if (!e) bad(key, `is missing (the ${format === 'int8' ? 'load_in_8bit' : 'load_in_4bit'} layer '${layer}' needs it)`);
    if (e!.dtype !== dtype) bad(key, `is ${e!.dtype}, expected ${dtype}`);
    if (shape && e!.shape.join() !== shape.join()) bad(key, `has shape [${e!.shape.join(', ')}], expected [${shape.join(', ')}]`);
  };
  if (format === 'int8') {
    need('.weight', 'int8', [out, inF]);
    need('.SCB', 'float32', [out]);
    if (get(`${layer}.weight_format`)) need('.weight_format', 'uint8', []);
    return;
  }
  if (get(`${layer}.weight.quant_state.bitsandbytes__fp4`))
    throw new EmotorchError(`bitsandbytes checkpoint: '${layer}.weight.quant_state.bitsandbytes__fp4': 4-bit FP4 is not implemented (nf4 only)`, 'ERR_FORMAT');
  if ((out * inF) % 64 !== 0) bad('.weight', `belongs to a ${out} × ${inF} layer, whose ${out * inF} weights are no whole number of NF4 blocks (64)`);
  const nb = (out * inF) / 64;
  const absmax = get(`${layer}.weight.absmax`);
  if (absmax && absmax.dtype === 'float32' && !get(`${layer}.weight.nested_absmax`))
    throw new EmotorchError(
      `bitsandbytes checkpoint: '${layer}.weight.absmax' is float32 with no nested_absmax: 4-bit without double quantization is not implemented`,
      'ERR_FORMAT',
    );
  need('.weight', 'uint8', [(out * inF) / 2, 1]);
  need('.weight.absmax', 'uint8', [nb]);
  need('.weight.quant_map', 'float32', [16]);
  need('.weight.nested_absmax', 'float32', [Math.ceil(nb / 256)]);
  need('.weight.nested_quant_map', 'float32', [256]);
  const st = get(`${layer}.weight.quant_state.bitsandbytes__nf4`);
  if (!st) bad('.weight.quant_state.bitsandbytes__nf4', 'is missing (the load_in_4bit layer needs its quant state)');
  if (st!.dtype !== 'uint8' || st!.shape.length !== 1)
    bad('.weight.quant_state.bitsandbytes__nf4', `is ${st!.dtype} [${st!.shape.join(', ')}], expected the uint8 bytes of a JSON text`);
  // (bitsandbytes writes about 200 bytes; the text is read whole and parsed)
  if (st!.shape[0] > NF4_STATE_MAX_BYTES)
    bad('.weight.quant_state.bitsandbytes__nf4', `is ${st!.shape[0]} bytes, more than a quant state's JSON takes (at most ${NF4_STATE_MAX_BYTES})`);
}

/** The most bytes an NF4 layer's quant-state JSON may take (bitsandbytes' is about 200). */
export const NF4_STATE_MAX_BYTES = 65536;

/**
 * Reads an NF4 layer's `weight.quant_state.bitsandbytes__nf4` (the JSON bitsandbytes packs into
 * uint8 bytes) and checks it against the layer and what emotorch implements.
 * @returns the double-quantization offset (`nested_offset`, as float32) and the quant state's dtype
 * @throws EmotorchError ERR_STATE_DICT naming the tensor for bytes that are no JSON object, a
 *   missing field, a shape other than the layer's; ERR_FORMAT for a quant type, block size or
 *   nested block size emotorch does not implement
 */
export function readNf4State(key: string, bytes: Uint8Array, out: number, inF: number): { offset: number; dtype?: DType } {
  const bad = (what: string): never => {
    throw new EmotorchError(`bitsandbytes checkpoint: '${key}' ${what}`, 'ERR_STATE_DICT');
  };
  let s: Record<string, unknown> = {};
  try {
    s = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes)) as Record<string, unknown>;
  } catch {
    bad('is not the UTF-8 bytes of a JSON object (a corrupt quant state)');
  }
  if (!s || typeof s !== 'object' || Array.isArray(s)) bad('is not a JSON object (a corrupt quant state)');
  const unsupported = (what: string): never => {
    throw new EmotorchError(`bitsandbytes checkpoint: '${key}': ${what} is not implemented`, 'ERR_FORMAT');
  };
  if (s.quant_type !== 'nf4') (typeof s.quant_type === 'string' ? unsupported : bad)(`quant_type ${JSON.stringify(s.quant_type ?? null)}`);
  if (s.blocksize !== 64) (typeof s.blocksize === 'number' ? unsupported : bad)(`blocksize ${JSON.stringify(s.blocksize ?? null)} (NF4 in blocks of 64 only)`);
  if (!('nested_offset' in s) && !('nested_blocksize' in s)) unsupported('a quant state without double quantization (no nested_offset)');
  if (s.nested_blocksize !== 256)
    (typeof s.nested_blocksize === 'number' ? unsupported : bad)(`nested_blocksize ${JSON.stringify(s.nested_blocksize ?? null)} (256 only)`);
  if (s.nested_dtype !== undefined && s.nested_dtype !== 'float32') unsupported(`nested_dtype ${JSON.stringify(s.nested_dtype)}`);
  const shape = s.shape;
  if (!Array.isArray(shape) || shape.length !== 2 || shape[0] !== out || shape[1] !== inF)
    bad(`has shape ${JSON.stringify(shape ?? null)}, the layer [${out}, ${inF}]`);
  const off = s.nested_offset;
  if (typeof off !== 'number' || !Number.isFinite(off)) bad(`has nested_offset ${JSON.stringify(off ?? null)}, expected a finite number`);
  const dtype = dtypeName(s.dtype);
  if (s.dtype !== undefined && (!dtype || !isFloating(dtype))) bad(`has dtype ${JSON.stringify(s.dtype)}, expected a floating dtype name`);
  return { offset: Math.fround(off as number), ...(dtype ? { dtype } : {}) };
}

/**
 * A float as Python's `repr` (and so `json.dumps`) writes it: the shortest digits that read back
 * to it, in fixed notation from 1e-4 up to 1e16 (with '.0' when integral), otherwise as
 * `d.ddde±XX`. Keeps the quant state's bytes equal to bitsandbytes' own.
 */
export function pythonFloat(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, exp] = Math.abs(x).toExponential().split('e');
  const digits = mant.replace('.', '');
  const e = Number(exp);
  const point = e + 1; // digits before the decimal point
  let s: string;
  if (point > -4 && point <= 16) {
    if (point <= 0) s = `0.${'0'.repeat(-point)}${digits}`;
    else if (point >= digits.length) s = `${digits}${'0'.repeat(point - digits.length)}.0`;
    else s = `${digits.slice(0, point)}.${digits.slice(point)}`;
  } else {
    s = `${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  return x < 0 ? `-${s}` : s;
}

/**
 * The JSON text bitsandbytes packs into `weight.quant_state.bitsandbytes__nf4` for an (out, in)
 * NF4 weight dequantized to `dtype`, byte for byte as Python's `json.dumps` writes it.
 */
export function nf4StateJson(out: number, inF: number, dtype: DType, offset: number): string {
  return (
    `{"quant_type": "nf4", "blocksize": 64, "dtype": "${dtype}", "shape": [${out}, ${inF}], ` +
    `"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": ${pythonFloat(offset)}}`
  );
}

/**
 * The `quantization_config` transformers 5 writes for a model quantized with bitsandbytes
 * (`BitsAndBytesConfig(...).to_dict()`, keys sorted as config.json has them).
 * @param format 'int8' (`load_in_8bit`) or 'nf4' (`load_in_4bit`, nf4, double quantization)
 * @param skipModules `llm_int8_skip_modules` (null: transformers' default, the LM head)
 * @param computeDtype `bnb_4bit_compute_dtype` (transformers' default: float32)
 */
export function bnbQuantizationConfig(format: BnbFormat, skipModules: string[] | null, computeDtype: DType = 'float32'): Record<string, unknown> {
  const four = format === 'nf4';
  return {
    _load_in_4bit: four,
    _load_in_8bit: !four,
    bnb_4bit_compute_dtype: computeDtype,
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: four ? 'nf4' : 'fp4',
    bnb_4bit_use_double_quant: four,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: skipModules,
    llm_int8_threshold: 6.0,
    load_in_4bit: four,
    load_in_8bit: !four,
    quant_method: 'bitsandbytes',
  };
}
