/**
 * 8-bit and 4-bit weights: Linear layers whose weight is kept quantized (native/kernels/quant.h),
 * in the layouts of the libraries users come from:
 * - `'int8'`: LLM.int8's vector-wise absmax (bitsandbytes' `load_in_8bit`): an int8 per weight and
 *   the row's absmax `SCB`.
 * - `'nf4'`: QLoRA's NormalFloat4 (bitsandbytes' `load_in_4bit`, `bnb_4bit_quant_type='nf4'`,
 *   double quantization on): blocks of 64, their absmax quantized again in blocks of 256.
 * - `'q8_0'`, `'q4_0'`: llama.cpp's blocks of 32 with a float16 scale, byte for byte as in a GGUF.
 *
 * For inference (no autograd) a layer's input is quantized as the format's library does before its
 * integer products: int8 as bitsandbytes' LLM.int8 (threshold 6: elements with |x| ≥ 6 stay in
 * float, the rest of the row int8 by its absmax; each row's own outliers, where bitsandbytes takes
 * the union over a product's rows), q8_0 / q4_0 as llama.cpp (the input in Q8_0 blocks of 32); nf4
 * keeps its input, as bitsandbytes' 4-bit layers do. With autograd (training) no input is quantized:
 * the gradient flows through the dequantized weight to the input and to LoRA adapters (QLoRA), as
 * bitsandbytes trains on a CPU. On the CPU a decoding step reads the quantized weight once for all
 * its rows (integer products on AVX-512 VNNI, which take int8's and interleaved q4_0's prompts of
 * any length, q8_0's up to 24 rows; on AVX2 int8's of any length, q8_0's and q4_0's up to 64); a
 * longer input dequantizes the weight (in its dtype) for the product.
 */
import { binding } from '../native';
import type { TensorHandle } from '../native';
import { Tensor } from '../tensor';
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import { DType, checkDtype, isFloating } from '../dtype';
import { allFinite, nativeParts } from './module';
import type { Module, NativeModule } from './module';

/** A quantization emotorch implements (see the module's documentation). */
export type QuantFormat = 'int8' | 'q8_0' | 'q4_0' | 'nf4';

/** Every {@link QuantFormat}. */
export const QUANT_FORMATS: readonly QuantFormat[] = ['int8', 'q8_0', 'q4_0', 'nf4'];

/** Bytes a quantized weight takes per weight (scales included). */
export const QUANT_BYTES_PER_WEIGHT: Readonly<Record<QuantFormat, number>> = { int8: 1, q8_0: 34 / 32, q4_0: 18 / 32, nf4: 0.5 + 1 / 64 };

/** The tensors of each format's {@link QuantizedWeight}, by name. */
const QUANT_TENSORS: Readonly<Record<QuantFormat, readonly string[]>> = {
  int8: ['weight', 'SCB'],
  q8_0: ['weight'],
  q4_0: ['weight'],
  nf4: ['weight', 'absmax', 'quant_map', 'nested_absmax', 'nested_quant_map', 'offset'],
};

/** The dtype of each integer tensor of a format (its codes; the rest are floating: scales, tables). */
const QUANT_CODES: Readonly<Record<QuantFormat, Readonly<Record<string, DType>>>> = {
  int8: { weight: 'int8' },
  q8_0: { weight: 'uint8' },
  q4_0: { weight: 'uint8' },
  nf4: { weight: 'uint8', absmax: 'uint8' },
};

/**
 * @internal Where a quantized layer's tensor lies in a state dict (bitsandbytes' names, as
 * transformers saves them): `<layer>.weight`, `<layer>.SCB`, `<layer>.weight.absmax`, ….
 */
export function quantStateKey(layer: string, tensor: string): string {
  return tensor === 'weight' || tensor === 'SCB' ? `${layer}.${tensor}` : `${layer}.weight.${tensor}`;
}

/**
 * @internal Checks a quantized weight's tensors before they are used: each integer tensor (the
 * codes) in its format's dtype, each other one floating and finite (a NaN or an infinity in a
 * scale or a table would make the layer's every product NaN without a word). Only the tensors
 * present are checked (their presence and shapes are checked where they are set).
 * @param key the name to give tensor `k` in an error
 * @param where what the errors begin with (`'bitsandbytes checkpoint: '`)
 * @throws EmotorchError ERR_STATE_DICT naming the tensor
 */
export function checkQuantState(format: QuantFormat, tensors: Record<string, Tensor>, key: (k: string) => string, where = ''): void {
  const codes = QUANT_CODES[format];
  const code = 'ERR_STATE_DICT';
  for (const [k, t] of Object.entries(tensors)) {
    if (codes[k]) {
      if (t.dtype !== codes[k]) throw new EmotorchError(`${where}'${key(k)}' is ${t.dtype}; ${format}'s ${k} is ${codes[k]}`, code);
      continue;
    }
    if (!isFloating(t.dtype)) throw new EmotorchError(`${where}'${key(k)}' is ${t.dtype}; ${format}'s ${k} is floating`, code);
    if (!allFinite(t)) throw new EmotorchError(`${where}'${key(k)}' has NaN or infinite values (a corrupt quant state)`, code);
  }
}

/**
 * A quantized (out, in) weight: its tensors by the names the format's files use.
 * - int8: `weight` int8 (out, in), `SCB` float32 (out).
 * - nf4: `weight` uint8 (out·in/2, 1), `absmax` uint8 (out·in/64), `quant_map` float32 (16),
 *   `nested_absmax` float32 (⌈out·in/64/256⌉), `nested_quant_map` float32 (256), `offset` float32 ().
 * - q8_0 / q4_0: `weight` uint8 (out, in/32 · 34 or 18): each row's GGUF blocks.
 */
export interface QuantizedWeight {
  format: QuantFormat;
  shape: [number, number];
  tensors: Record<string, Tensor>;
}

/**
 * Checks a quantization name.
 * @throws EmotorchError ERR_INVALID_ARG naming the option and the formats taken
 */
export function checkQuantFormat(v: unknown, name: string): QuantFormat {
  if (typeof v !== 'string' || !(QUANT_FORMATS as readonly string[]).includes(v)) invalid(`one of ${QUANT_FORMATS.join(', ')}`, name, v);
  return v as QuantFormat;
}

/**
 * Quantizes a weight matrix. int8 rounds the weight to float16 first, as bitsandbytes does; the
 * 4-bit and q8_0 formats need rows a multiple of their block (64 for nf4, 32 for q8_0 / q4_0).
 * @param weight (out, in), floating, on any device (quantized on the CPU, returned on its device)
 * @param format the quantization
 * @throws EmotorchError ERR_INVALID_ARG for another shape or dtype, no elements, a block that does not
 *   divide the rows, NaN or infinite values (int8: values beyond float16's range)
 * @example
 * const q = await et.nn.quantizeWeight(linear.weight, 'nf4');
 * q.tensors.absmax; // uint8, one per block of 64
 */
export async function quantizeWeight(weight: Tensor, format: QuantFormat, name = 'weight'): Promise<QuantizedWeight> {
  if (!(weight instanceof Tensor)) invalid('a Tensor', 'weight', weight);
  checkQuantFormat(format, 'format');
  if (weight.ndim !== 2 || !isFloating(weight.dtype) || weight.numel === 0)
    invalid('a floating (out, in) matrix with elements', name, `${weight.dtype} [${weight.shape.join(', ')}]`);
  const handles = await binding.quantizeWeight(weight.handle, format, name);
  const tensors: Record<string, Tensor> = {};
  for (const [k, h] of Object.entries(handles)) tensors[k] = new Tensor(h);
  return { format, shape: [weight.shape[0], weight.shape[1]], tensors };
}

/**
 * The weight a quantized weight stands for: each value as the format defines it (int8:
 * `(q · SCB) · (1/127)`; q8_0: `q · d`; q4_0: `(q − 8) · d`; nf4: `quant_map[q] · absmax`, the absmax
 * from its double quantization), computed in float32, then in `dtype`.
 * @param q a quantized weight ({@link quantizeWeight}, or tensors read from a checkpoint)
 * @param dtype a floating dtype (default float32)
 * @throws EmotorchError ERR_STATE_DICT naming a missing or mis-shaped tensor, codes in another dtype,
 *   a scale or table with NaN or infinite values; ERR_INVALID_ARG for a bad dtype, a shape that is not
 *   two positive integers, a tensor name the format does not have
 * @example
 * const w = await et.nn.dequantizeWeight(q, 'bfloat16');
 */
export async function dequantizeWeight(q: QuantizedWeight, dtype: DType = 'float32'): Promise<Tensor> {
  if (!q || typeof q !== 'object' || !q.tensors || typeof q.tensors !== 'object' || !Array.isArray(q.shape))
    invalid('a quantized weight { format, shape, tensors }', 'q', q);
  const format = checkQuantFormat(q.format, 'q.format');
  if (q.shape.length !== 2 || !q.shape.every((d) => Number.isSafeInteger(d) && d > 0) || !Number.isSafeInteger(q.shape[0] * q.shape[1]))
    invalid('two positive integers (out, in) whose product is a safe integer', 'q.shape', q.shape);
  if (!isFloating(checkDtype(dtype))) invalid('a floating dtype', 'dtype', dtype);
  const names = QUANT_TENSORS[format];
  const sent: Record<string, TensorHandle> = {};
  for (const [k, t] of Object.entries(q.tensors)) {
    if (!names.includes(k)) invalid(`one of ${names.join(', ')} (${format}'s tensors)`, 'a q.tensors name', k);
    if (!(t instanceof Tensor)) invalid('a Tensor', `q.tensors.${k}`, t);
    sent[k] = t.handle;
  }
  checkQuantState(format, q.tensors, (k) => `q.tensors.${k}`);
  return new Tensor(await binding.dequantizeWeight(q.format, q.shape[0], q.shape[1], sent, dtype, 'weight'));
}

/** One Linear layer of a native model: its name, shape and quantization. */
export interface LinearLayerInfo {
  name: string;
  out: number;
  in: number;
  format: QuantFormat | null;
}

/** The Linear layers of a native model (in module order) and how each is quantized. */
export function linearLayers(model: Module): LinearLayerInfo[] {
  return nativeParts(model).flatMap(([prefix, m]) =>
    binding.linearLayers(m.native).map(([name, out, inF, format]) => ({ name: prefix + name, out, in: inF, format: format as QuantFormat | null })),
  );
}

/** The native part holding a layer of `model`, and the layer's name within it. */
function partOf(model: Module, name: string): [NativeModule, string] {
  const hit = nativeParts(model)
    .filter(([p]) => name.startsWith(p))
    .sort((a, b) => b[0].length - a[0].length)[0];
  if (!hit) invalid('the name of a Linear layer of the model', 'layer', name);
  return [hit[1], name.slice(hit[0].length)];
}

/**
 * Quantizes a loaded model's Linear layers in place (those named, or all but `skip`): their float
 * weights are released, LoRA adapters (existing or added later) stay in float32 over the quantized
 * weight. Loading with `fromPretrained(dir, { quantize })` does the same without ever holding the
 * whole float model.
 * @param model a model: a native one, or one made of native parts (InternVL: its layers named
 *   `language_model.…`, `vision_model.…`, `mlp1.…`)
 * @param format the quantization
 * @param opts.layers the layers to quantize (default: every Linear layer not yet quantized, but those in
 *   `skip`; a second call quantizes none)
 * @param opts.skip layers left in float (e.g. the LM head, as transformers leaves it)
 * @returns the names of the layers quantized
 * @throws EmotorchError ERR_INVALID_ARG for a model without Linear layers inside it (a Linear on its
 *   own included), a name that is not a Linear layer of the model or is named twice, a layer already
 *   quantized, a block that does not divide a layer's rows (naming the layer); nothing is quantized then
 * @example
 * await et.nn.quantize(llm, 'int8', { skip: ['lm_head'] });
 */
export async function quantize(model: Module, format: QuantFormat, opts: { layers?: string[]; skip?: string[] } = {}): Promise<string[]> {
  checkOptionNames(opts, ['layers', 'skip'], 'quantize options');
  checkQuantFormat(format, 'format');
  const all = linearLayers(model);
  // (a model's layers are the Linear modules inside it: a Linear on its own lists none, and
  // quantizing nothing would pass without a word)
  if (!all.length)
    invalid(
      'a model with Linear layers inside it (a Linear on its own is not one: put it in a model, or quantize its weight with quantizeWeight)',
      'quantize model',
      `${model.constructor.name}, which has none`,
    );
  const known = new Set(all.map((l) => l.name));
  for (const k of ['layers', 'skip'] as const) {
    const v = opts[k];
    if (v === undefined) continue;
    if (!Array.isArray(v)) invalid('an array of Linear layer names', `quantize options.${k}`, v);
    for (const n of v) if (typeof n !== 'string' || !known.has(n)) invalid('the name of a Linear layer of the model', `a quantize options.${k} entry`, n);
    // (a layer named twice would be quantized, then refused as already quantized: half the model changed)
    const twice = v.find((n, i) => v.indexOf(n) !== i);
    if (twice !== undefined) invalid('each layer named once', `quantize options.${k}`, `'${twice}' twice`);
  }
  const skip = new Set(opts.skip ?? []);
  const names = (opts.layers ?? all.filter((l) => l.format === null).map((l) => l.name)).filter((n) => !skip.has(n));
  const done = all.filter((l) => l.format !== null && names.includes(l.name));
  if (done.length) throw new EmotorchError(`quantize: layer '${done[0].name}' is already quantized (${done[0].format})`, 'ERR_INVALID_ARG');
  for (const [prefix, m] of nativeParts(model)) {
    const mine = names.filter((n) => n.startsWith(prefix)).map((n) => n.slice(prefix.length));
    if (mine.length) await binding.quantizeLinears(m.native, mine, format);
  }
  return names;
}

/**
 * @internal Puts a quantized weight (its tensors by the names of {@link QuantizedWeight}) into a
 * Linear layer of a native model, checked natively against the layer (ERR_STATE_DICT naming the
 * tensor). The model shares the tensors (but a q4_0 or int8 weight on a CPU with AVX-512 VNNI,
 * which it copies into its kernel's interleaved layout: {@link quantizeLayer} makes none).
 */
export async function setQuantizedLayer(model: Module, layer: LinearLayerInfo, format: QuantFormat, tensors: Record<string, Tensor>): Promise<void> {
  const sent: Record<string, TensorHandle> = {};
  for (const [k, t] of Object.entries(tensors)) sent[k] = t.handle;
  const [part, name] = partOf(model, layer.name);
  await binding.setQuantized(part.native, name, format, layer.out, layer.in, sent);
}

/**
 * @internal Quantizes a float weight (a checkpoint's, as it is read) straight into a Linear layer of a
 * native model: the layer's tensors are its own, so a layout for the kernels is made in place.
 */
export async function quantizeLayer(model: Module, layer: LinearLayerInfo, format: QuantFormat, weight: Tensor, name: string): Promise<void> {
  const [part, local] = partOf(model, layer.name);
  await binding.quantizeLayer(part.native, local, weight.handle, format, name);
}
