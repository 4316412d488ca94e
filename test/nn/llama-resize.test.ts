// resizeTokenEmbeddings = HF's resize_token_embeddings (scripts/fixtures/llama_resize.py), and
// SALMONN's resizeTokenEmbeddings option = the original models/salmonn.py, whose LLaMA is resized
// after '[PAD]' is added (the SALMONN fixture's reference ran the resized 1501-row LLaMA).
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'llama_resize');
let io: Map<string, et.Tensor>;
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
});

const weight = (m: et.nn.Module, name: string) => m.namedParameters().find(([n]) => n === name)![1];

describe('LlamaForCausalLM.resizeTokenEmbeddings = HF resize_token_embeddings', () => {
  it('with the rows HF drew: the same logits and loss (the new id as a masked pad)', async () => {
    const base = await et.nn.LlamaForCausalLM.fromPretrained(path.join(DIR, 'llm'));
    const m = await base.resizeTokenEmbeddings(51, { rows: { embed: io.get('embed_row')!, lmHead: io.get('lm_head_row')! } });
    expect(m.config.vocab_size).toBe(51);
    expect(base.config.vocab_size).toBe(50);
    expect(maxAbsDiff(weight(m, 'model.embed_tokens.weight').slice(0, 0, 50), weight(base, 'model.embed_tokens.weight'))).toBe(0);
    const out = await et.noGrad(() => m.forward({ inputIds: io.get('input_ids')!, attentionMask: io.get('attention_mask')!, labels: io.get('labels')! }));
    expect(maxAbsDiff(out.logits, io.get('logits')!)).toBeLessThan(1e-5);
    expect(Math.abs(out.loss!.item() - io.get('loss')!.item())).toBeLessThan(1e-5);
  });

  it("by default draws rows as HF's mean resizing: the old rows' mean plus noise of 1e-9 × their covariance", async () => {
    const base = await et.nn.LlamaForCausalLM.fromPretrained(path.join(DIR, 'llm'));
    et.manualSeed(4);
    const m = await base.resizeTokenEmbeddings(53);
    for (const [name, mean, hf] of [
      ['model.embed_tokens.weight', 'embed_mean', 'embed_row'],
      ['lm_head.weight', 'lm_head_mean', 'lm_head_row'],
    ] as const) {
      const rows = weight(m, name).slice(0, 50, 53);
      const dev = maxAbsDiff(rows, io.get(mean)!.expand([3, 16]));
      expect(dev).toBeGreaterThan(0); // drawn, not the bare mean
      expect(dev).toBeLessThan(2e-4); // HF's own draw is 1.1e-5 from the mean here
      expect(maxAbsDiff(rows.slice(0, 0, 1), io.get(hf)!)).toBeLessThan(2e-4);
    }
    et.manualSeed(4);
    const again = await base.resizeTokenEmbeddings(53);
    expect(maxAbsDiff(weight(again, 'lm_head.weight'), weight(m, 'lm_head.weight'))).toBe(0); // seeded
    const small = await base.resizeTokenEmbeddings(40);
    expect(weight(small, 'lm_head.weight').shape).toEqual([40, 16]);
  });

  it('refuses bad sizes, mis-shaped rows and a model with LoRA', async () => {
    const base = await et.nn.LlamaForCausalLM.fromPretrained(path.join(DIR, 'llm'));
    await rejectsWith(() => base.resizeTokenEmbeddings(0), 'ERR_INVALID_ARG', /newSize/);
    await rejectsWith(() => base.resizeTokenEmbeddings(52, { rows: { embed: et.zeros([1, 16]) } }), 'ERR_INVALID_ARG', /\[2, 16\].*opts\.rows\.embed/);
    await rejectsWith(() => base.resizeTokenEmbeddings(52, { row: 1 } as never), 'ERR_INVALID_ARG', /row/);
    et.nn.applyLora(base, { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj'] });
    await rejectsWith(() => base.resizeTokenEmbeddings(52), 'ERR_INVALID_ARG', /applyLora/);
  });
});

describe('Salmonn.fromPretrained({ resizeTokenEmbeddings })', () => {
  const S = path.join(FIXTURES, 'salmonn');
  const cfg = JSON.parse(fs.readFileSync(path.join(S, 'config.json'), 'utf8'));
  const gen = JSON.parse(fs.readFileSync(path.join(S, 'gen.json'), 'utf8'));

  it("resized with the original's row gives the original's loss; without, the loss measurably differs", async () => {
    // the reference's LLaMA is the 1500-row one resized to 1501 after '[PAD]': write the 1500-row one
    const full = await et.nn.LlamaForCausalLM.fromPretrained(path.join(S, 'llm'));
    const dir = tmpdir();
    const llm = path.join(dir, 'llm');
    fs.mkdirSync(llm);
    const small = await full.resizeTokenEmbeddings(1500);
    await small.save(path.join(llm, 'model.safetensors'));
    fs.writeFileSync(
      path.join(llm, 'config.json'),
      JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(S, 'llm', 'config.json'), 'utf8')), vocab_size: 1500 }),
    );
    const row = (n: string) => weight(full, n).slice(0, 1500, 1501).contiguous();
    const parts = {
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm,
      tokenizer: path.join(S, 'llm', 'tokenizer.json'),
      checkpoint: path.join(S, 'salmonn.pth'),
      config: cfg,
    };
    const io2 = (await et.io.loadSafetensors(path.join(S, 'io.safetensors'))).tensors;
    const waves = [io2.get('wave_a')!.dataSync() as Float32Array, io2.get('wave_b')!.dataSync() as Float32Array];
    const lossOf = async (m: et.systems.salmonn.Salmonn) =>
      (await et.noGrad(() => m.forward({ audio: waves, instruction: gen.instructions, target: gen.texts }))).loss!.item();

    const resized = await et.systems.salmonn.Salmonn.fromPretrained({
      ...parts,
      resizeTokenEmbeddings: { rows: { embed: row('model.embed_tokens.weight'), lmHead: row('lm_head.weight') } },
    });
    expect(resized.llama_model.config.vocab_size).toBe(1501);
    expect(resized.ids.pad).toBe(1500);
    const want = io2.get('loss')!.item();
    const withRow = await lossOf(resized);
    expect(Math.abs(withRow - want)).toBeLessThan(1e-4);

    const drawn = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, resizeTokenEmbeddings: true });
    expect(drawn.llama_model.config.vocab_size).toBe(1501);
    const plain = await et.systems.salmonn.Salmonn.fromPretrained(parts);
    expect(plain.llama_model.config.vocab_size).toBe(1500);
    const without = await lossOf(plain);
    console.log(
      `SALMONN loss: original (resized, its row) ${want.toFixed(6)}; resized here ${withRow.toFixed(6)}; HF-drawn row ${(await lossOf(drawn)).toFixed(6)}; not resized ${without.toFixed(6)} (|Δ| ${Math.abs(without - want).toExponential(2)})`,
    );
    expect(Math.abs(without - want)).toBeGreaterThan(1e-4); // the extra logit in every softmax
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, resizeTokenEmbeddings: 'yes' as never }),
      'ERR_INVALID_ARG',
      /resizeTokenEmbeddings/,
    );
  });
});
