// SALMONN's `low_resource: True` (bytedance/SALMONN models/salmonn.py: the LLaMA loaded with
// load_in_8bit=True): the LLaMA's decoder Linear layers in int8, the rest as it was; its answers on
// the tiny reference (scripts/fixtures/salmonn.py, the original forward in float32) compared with
// the float reference's.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith } from '../helpers';

const DIR = path.join(FIXTURES, 'salmonn');
const cfg = JSON.parse(fs.readFileSync(path.join(DIR, 'config.json'), 'utf8'));
const gen = JSON.parse(fs.readFileSync(path.join(DIR, 'gen.json'), 'utf8'));
const parts = { whisper: path.join(FIXTURES, 'whisper'), beats: path.join(FIXTURES, 'beats', 'beats.pt'), llm: path.join(DIR, 'llm') };
const checkpoint = path.join(DIR, 'salmonn.pth');

let io: Map<string, et.Tensor>;
let waves: Float32Array[];
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
  waves = [io.get('wave_a')!.dataSync() as Float32Array, io.get('wave_b')!.dataSync() as Float32Array];
});

describe('Salmonn with low_resource: True', () => {
  it('loads the LLaMA decoder in int8 (LM head in float), the towers and Q-Former as they were', async () => {
    const m = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint, config: { ...cfg, low_resource: true, device_8bit: 0 } });
    const layers = et.nn.linearLayers(m.llama_model);
    expect(layers.filter((l) => l.name === 'lm_head').map((l) => l.format)).toEqual([null]);
    const decoder = layers.filter((l) => l.name !== 'lm_head');
    expect(decoder.length).toBe(2 * 7); // q, k, v, o, gate, up, down in each of 2 layers
    expect(new Set(decoder.map((l) => l.format))).toEqual(new Set(['int8']));
    for (const tower of [m.speech_encoder, m.beats!, m.speech_Qformer]) expect(et.nn.linearLayers(tower).every((l) => l.format === null)).toBe(true);
    // LoRA on q_proj / v_proj over the int8 weights, loaded from the checkpoint
    expect(m.loadReport.loaded.filter((k) => /lora_[AB]/.test(k)).length).toBe(8);
  });

  it("answers as the float reference: the same greedy tokens, loss and logits within int8's error", async () => {
    const m = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint, config: { ...cfg, low_resource: true } });
    const greedy = await m.generateTokens(waves, gen.gen_instruction, { numBeams: 1, maxNewTokens: gen.max_new_tokens });
    const cut = (rows: number[][]) => rows.map((r) => (r.includes(2) ? r.slice(0, r.indexOf(2)) : r));
    expect(greedy).toEqual(cut(gen.greedy));
    const out = await et.noGrad(() => m.forward({ audio: waves, instruction: gen.instructions, target: gen.texts }));
    const t = out.logits.shape[1];
    const ref = io.get('logits_tail')!;
    const diff = maxAbsDiff(out.logits.slice(1, t - 24, t), ref);
    const loss = Math.abs(out.loss!.item() - io.get('loss')!.item());
    // int8 rounds each weight to within half a step of its row's absmax / 127 (and to float16 first),
    // and for inference each layer's input as LLM.int8 does: on this model the logits move by 0.059
    // (of logits up to 2.84; 0.039 with the weights' rounding alone) and the loss by 0.002; the
    // bounds are those with margin (the int8 bytes themselves are exact on every CPU)
    expect(diff).toBeLessThan(0.1);
    expect(loss).toBeLessThan(0.01);
  });

  it('trains LoRA over the int8 LLaMA (QLoRA): the adapters get gradients and change', async () => {
    const m = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint, config: { ...cfg, low_resource: true } });
    m.train();
    const lora = m.namedParameters().filter(([n]) => /lora_[AB]/.test(n));
    const before = lora.map(([, p]) => p.clone());
    const opt = new et.optim.AdamW(m.trainableParameters(), { lr: 1e-2 });
    const { loss } = await m.forward({ audio: waves, instruction: gen.instructions, target: gen.texts });
    await loss!.backward();
    for (const [n, p] of lora) expect(p.grad, n).toBeTruthy();
    await opt.step();
    expect(lora.every(([, p], i) => maxAbsDiff(p, before[i]) > 0)).toBe(true);
  });

  it('refuses what low_resource cannot mean, naming the option', async () => {
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, low_resource: 'yes' as never } }),
      'ERR_INVALID_ARG',
      /config\.low_resource/,
    );
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, low_resource: true }, quantize: 'nf4' }),
      'ERR_INVALID_ARG',
      /opts\.quantize.*nf4|low_resource/,
    );
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, low_resource: true }, resizeTokenEmbeddings: true }),
      'ERR_INVALID_ARG',
      /resizeTokenEmbeddings.*low_resource/,
    );
    await rejectsWith(() => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, device_8bit: -1 } }), 'ERR_INVALID_ARG', /device_8bit/);
    await rejectsWith(() => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, quantize: 'int4' as never }), 'ERR_INVALID_ARG', /opts\.quantize/);
    const llm = await et.nn.LlamaForCausalLM.fromPretrained(parts.llm);
    const whisper = await et.nn.WhisperEncoder.fromPretrained(parts.whisper);
    const tokenizer = await et.data.Tokenizer.fromFile(parts.llm);
    expect(() => new et.systems.salmonn.Salmonn({ whisper, llm, tokenizer }, { ...cfg, low_resource: true })).toThrow(/parts\.llm.*float LLaMA/);
  });

  it("emotorch's quantize option: a block format whose block does not divide the LLaMA's rows (48) is refused naming the layer", async () => {
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint, config: cfg, quantize: 'q8_0' }),
      'ERR_INVALID_ARG',
      /q8_0.*block of 32.*model\.layers\.0\./,
    );
  });
});
