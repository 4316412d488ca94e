// et.systems.usdm.Usdm against scripts/fixtures/usdm.py: the original SFT masking (identical ids|labels
// lines) and the original three greedy stages with HF generate (identical texts and units), on a
// tiny random Mistral with a character-level toy tokenizer laid out like USDM's Mistral ids.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { IDS, codec } from './usdm-toy';
import { FIXTURES, rejectsWith, throwsWith } from '../helpers';

const dir = path.join(FIXTURES, 'usdm');
const ref = JSON.parse(fs.readFileSync(path.join(dir, 'usdm.json'), 'utf8')) as {
  examples: Array<{ userUnits: number[]; userText: string; agentText: string; agentUnits: number[]; line: string }>;
  inference: Array<{ userUnits: number[]; userText: string; agentText: string; agentUnits: number[] }>;
};
describe('Usdm SFT labels = the original masking', () => {
  it('gives identical ids|labels lines', () => {
    for (const ex of ref.examples) {
      const text = `${et.data.usdm.USDM_SYSTEM}\n### User\n${et.data.usdm.unitString(ex.userUnits)}<|correspond|>${ex.userText.toLowerCase()}\n### Agent\n${ex.agentText.toLowerCase()}<|correspond|>${et.data.usdm.unitString(ex.agentUnits)}\n</s>`;
      const ids = [1, ...codec.encode(text)];
      expect(et.data.usdm.formatUsdmLine({ ids, labels: et.systems.usdm.usdmSftLabels(ids, IDS) })).toBe(ex.line);
    }
    throwsWith(() => et.systems.usdm.usdmSftLabels([1, 13, 13, 101], IDS), 'ERR_INVALID_ARG', /single-turn/);
  });
});

describe('Usdm three-stage inference = the original with HF generate', () => {
  it('gives identical user text, agent text and agent units', async () => {
    const usdm = await et.systems.usdm.Usdm.fromPretrained(path.join(dir, 'mistral'), { tokenIds: IDS });
    for (const r of ref.inference) {
      const out = await usdm.infer(r.userUnits, codec, { maxNewTokens: 16 });
      expect(out).toMatchObject({ userText: r.userText, agentText: r.agentText, agentUnits: r.agentUnits });
    }
    await rejectsWith(() => usdm.infer([57], codec), 'ERR_INVALID_ARG', /userUnits/);
    await rejectsWith(() => usdm.infer([1], {} as never), 'ERR_INVALID_ARG', /codec/);
  });
});

describe('Usdm training pieces', () => {
  it('adds the unit vocabulary (old rows kept, new rows N(0, initializer_range)), collates, takes a LoRA SFT step', async () => {
    const base = await et.nn.LlamaForCausalLM.fromPretrained(path.join(dir, 'mistral'));
    const old = base.stateDict().get('model.embed_tokens.weight')!.toArray() as number[][];
    const grown = await et.systems.usdm.addUnitVocabulary(base, 57);
    expect(grown.config.vocab_size).toBe(160 + 60);
    const w = grown.stateDict().get('model.embed_tokens.weight')!;
    expect(w.slice(0, 0, 160).toArray() as number[][]).toEqual(old);
    const fresh = w.slice(0, 160, 220);
    const std = Math.sqrt(fresh.square().mean().item() as number);
    expect(std).toBeGreaterThan(0.07);
    expect(std).toBeLessThan(0.13); // initializer_range 0.1
    const usdm = new et.systems.usdm.Usdm(await et.nn.LlamaForCausalLM.fromPretrained(path.join(dir, 'mistral')), { tokenIds: IDS, lora: true });
    expect(usdm.loraLayers.length).toBe(8);
    const lines = ref.examples
      .map((e) => e.line)
      .map((l, i) => ({ ids: l.split('|')[0].split(' ').map(Number), labels: l.split('|')[1].split(' ').map(Number), i }));
    const batch = usdm.collate(lines);
    expect(batch.inputIds.shape[0]).toBe(2);
    usdm.llm.freeze();
    for (const [n, p] of usdm.namedParameters()) if (n.includes('lora_')) p.requiresGrad = true;
    const { loss } = await usdm.forward(batch);
    expect(Number.isFinite(loss!.item())).toBe(true);
    await loss!.backward();
    expect(usdm.trainableParameters().every((p) => p.grad !== null)).toBe(true);
    throwsWith(() => new et.systems.usdm.Usdm(usdm.llm, { tokenIds: { unit0: 150 } }), 'ERR_INVALID_ARG', /unit0/);
  });
});
