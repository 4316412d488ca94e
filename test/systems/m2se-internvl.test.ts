// M2SE on InternVL2 against ms-swift 2.6.1 + InternVL's remote code + peft
// (scripts/fixtures/internvl2.py m2se -> test/fixtures/m2se_internvl/): the records' ids and
// labels as swift's templates build them, the image tiles and video frames, swift's LoRA targets,
// the loss and every LoRA gradient of one step (batch 1 x accumulation 3), swift's sentence
// accuracy, and greedy answers, for a tiny InternVL2-8B-shaped (InternLM2) and -4B-shaped (Phi-3) model.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { findFfmpeg } from '../../lib/audio/ffmpeg';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'm2se_internvl');
const RECORDS = path.join(DIR, 'records.json');
const hasFfmpeg = findFfmpeg() !== null;
const ints = (t: et.Tensor) => Array.from(t.dataSync() as ArrayLike<number | bigint>, Number);

let tok: et.data.Tokenizer;
beforeAll(async () => {
  tok = await et.data.Tokenizer.fromFile(path.join(DIR, 'tokenizer.json'));
});

async function adapted(family: string, io: Map<string, et.Tensor>): Promise<et.systems.m2se.InternVL> {
  const m = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, family), { imgContextTokenId: tok.tokenToId('<IMG_CONTEXT>') });
  const wrapped = et.nn.applyLora(m, { ...et.systems.m2se.M2SE_LORA, targetModules: et.systems.m2se.INTERNVL_LORA_TARGETS, dropout: 0 });
  const lora = new Map([...io].filter(([k]) => k.startsWith('lora.')).map(([k, t]) => [k.slice(5), t] as [string, et.Tensor]));
  // swift's regex picks the same layers as peft wrapped: every Linear of the LLM and mlp1, nothing of the vision tower
  expect(
    m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n)
      .sort(),
  ).toEqual([...lora.keys()].sort());
  expect(wrapped.some((n) => n.startsWith('mlp1.'))).toBe(true);
  expect(wrapped.some((n) => n.startsWith('vision_model.') || /output|lm_head|emb/.test(n))).toBe(false);
  await m.loadStateDict(lora, { strict: false });
  return m;
}

describe.skipIf(!hasFfmpeg)('M2SE on InternVL2 = ms-swift 2.6.1 + remote code + peft', () => {
  for (const family of ['internlm2', 'phi3']) {
    it(`${family}: ids, labels, tiles, one SFT step (loss, LoRA gradients, sentence accuracy) and greedy answers`, async () => {
      const io = (await et.io.loadSafetensors(path.join(DIR, family, 'io.safetensors'))).tensors;
      const m = await adapted(family, io);
      m.train();
      const recs = et.systems.m2se.m2seRecords(RECORDS);
      const { items, tooLong } = await et.systems.m2se.m2seInternVLItems(recs, m, tok, { mediaRoot: DIR });
      expect(tooLong).toBe(0);
      expect(items.map((x) => x.media.map((md) => md.kind))).toEqual([['image'], ['video'], []]);
      const total = items.reduce((n, x) => n + x.labels.slice(1).filter((l) => l !== -100).length, 0);
      let step = 0;
      for (let j = 0; j < items.length; j++) {
        expect(items[j].ids).toEqual(ints(io.get(`ex${j}.input_ids`)!));
        expect(items[j].labels).toEqual(ints(io.get(`ex${j}.labels`)!));
        const batch = await et.systems.m2se.m2seInternVLCollate([items[j]], { imageSize: 56 });
        const px = io.get(`ex${j}.pixel_values`);
        if (px) expect(maxAbsDiff(batch.pixelValues as et.Tensor, px)).toBeLessThan(1e-5);
        else expect(batch.pixelValues).toBeUndefined();
        const out = await m.forward({ ...(batch as unknown as et.systems.m2se.InternVLInputs), numItemsInBatch: total });
        expect(Math.abs(out.loss!.item() - io.get(`ex${j}.loss`)!.item())).toBeLessThan(1e-4);
        expect(et.metrics.lmAccuracy(out.logits, batch.labels as et.Tensor, 'sentence')).toBe(ints(io.get('acc_sentence')!)[j]);
        step += out.loss!.item();
        await out.loss!.backward();
      }
      expect(Math.abs(step - io.get('step_loss')!.item())).toBeLessThan(1e-4);
      let worst = 0,
        scale = 0;
      for (const [n, p] of m.namedParameters().filter(([, q]) => q.requiresGrad)) {
        const ref = io.get(`grad.${n}`)!;
        worst = Math.max(worst, maxAbsDiff(p.grad!, ref));
        scale = Math.max(scale, ref.abs().max().item());
      }
      expect(worst).toBeLessThan(1e-4 * Math.max(scale, 1));

      // greedy answers of the adapted model: the inference prompts, then tokens up to the first end
      m.eval();
      const inf = await et.systems.m2se.m2seInternVLItems(recs, m, tok, { mediaRoot: DIR, inference: true });
      const sep = tok.tokenToId(family === 'phi3' ? '<|end|>' : '<|im_end|>')!;
      for (let j = 0; j < inf.items.length; j++) {
        expect(inf.items[j].ids).toEqual(ints(io.get(`ex${j}.prompt_ids`)!));
        const b = await et.systems.m2se.m2seInternVLCollate([inf.items[j]], { imageSize: 56 });
        const ref = ints(io.get(`ex${j}.greedy_new`)!);
        const got = await m.generate(
          { inputIds: b.inputIds as et.Tensor, pixelValues: (b.pixelValues as et.Tensor) ?? null },
          { maxNewTokens: ref.length, eosTokenId: [sep, tok.eosTokenId!], padTokenId: sep },
        );
        expect(ints(got).slice(0, ref.length)).toEqual(ref);
      }
    });
  }
});

describe('applyLora targets on full names, as peft', () => {
  it('takes a list entry that spans modules (mlp1.1) and a regex string; refuses a bad regex', async () => {
    const m = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, 'internlm2'));
    expect(et.nn.applyLora(m, { r: 2, alpha: 4, targetModules: ['mlp1.1', 'attention.wo'] }).sort()).toEqual([
      'language_model.model.layers.0.attention.wo',
      'language_model.model.layers.1.attention.wo',
      'mlp1.1',
    ]);
    const m2 = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, 'internlm2'));
    expect(et.nn.applyLora(m2, { r: 2, alpha: 4, targetModules: 'vision_model\\.encoder\\.layers\\.1\\.mlp\\.fc\\d' }).sort()).toEqual([
      'vision_model.encoder.layers.1.mlp.fc1',
      'vision_model.encoder.layers.1.mlp.fc2',
    ]);
    const m3 = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, 'internlm2'));
    expect(() => et.nn.applyLora(m3, { r: 2, alpha: 4, targetModules: '(' })).toThrow(/not a regular expression/);
    expect(() => et.nn.applyLora(m3, { r: 2, alpha: 4, targetModules: 'wqkv' })).toThrow(/no Linear layer is named to match/); // a string must match the whole name
  });
});

describe.skipIf(!hasFfmpeg)('m2seStages / m2seInfer with InternVL2', () => {
  it("trains two stages on records with an image and a video, logs swift's acc, writes adapters and a swift infer JSONL", async () => {
    const m = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, 'internlm2'));
    const out = tmpdir();
    const records = et.systems.m2se
      .m2seRecords(RECORDS)
      .map((r) => ({ ...r, images: r.images.map((f) => path.join(DIR, f)), videos: r.videos.map((f) => path.join(DIR, f)) }));
    const args = { max_steps: 2, gradient_accumulation_steps: 1, logging_steps: 1, save_strategy: 'no' as const, report_to: [] };
    const res = await et.systems.m2se.m2seStages({
      model: m,
      tokenizer: tok,
      outputDir: out,
      stages: [
        { datasets: [records], args },
        { datasets: [records.slice(0, 1)], args },
      ],
    });
    expect(res.map((r) => r.globalStep)).toEqual([2, 2]);
    expect(res[0].unusedMedia).toEqual({ records: 0, images: 0, videos: 0, audios: 0 });
    const log = fs
      .readFileSync(path.join(out, 'stage-1', 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const train = log.filter((r) => 'loss' in r && 'learning_rate' in r);
    expect(train.length).toBe(2);
    for (const r of train) expect(r.acc === 0 || r.acc === 1).toBe(true); // one record a step: all its label tokens right or not
    // the vision tower stays frozen; LoRA sits on the LLM and mlp1
    const trainable = m
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n);
    expect(trainable.every((n) => n.includes('.lora_') && (n.startsWith('language_model.') || n.startsWith('mlp1.')))).toBe(true);

    const file = path.join(out, 'infer.jsonl');
    const r = await et.systems.m2se.m2seInfer({ model: m, tokenizer: tok, dataset: records, outFile: file, maxNewTokens: 4 });
    expect(r.count).toBe(3);
    const lines = fs
      .readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines[0].images).toEqual(records[0].images);
    expect(lines[1].videos).toEqual(records[1].videos);
    expect(lines[1].history).toEqual([["The person says: 'I lost my keys again' Which emotion does the video show?", 'Anger.']]);
    for (const l of lines) expect(typeof l.response).toBe('string');
  });

  it('refuses a record naming a missing or unreadable image before training, naming the record', async () => {
    const m = await et.systems.m2se.InternVL.fromPretrained(path.join(DIR, 'internlm2'));
    const dir = tmpdir();
    fs.writeFileSync(path.join(dir, 'not-an-image.png'), 'hello');
    const base = { query: 'q', response: 'a' };
    await rejectsWith(
      et.systems.m2se.m2seStages({
        model: m,
        tokenizer: tok,
        outputDir: dir,
        stages: [{ datasets: [[base, { ...base, images: [path.join(dir, 'missing.png')] }]] }],
      }),
      'ERR_IO',
      /item 1: media file .*missing\.png/,
    );
    await rejectsWith(
      et.systems.m2se.m2seStages({
        model: m,
        tokenizer: tok,
        outputDir: dir,
        stages: [{ datasets: [[{ ...base, images: [path.join(dir, 'not-an-image.png')] }]] }],
      }),
      'ERR_FORMAT',
      /item 0: .*not-an-image\.png/,
    );
    expect(fs.existsSync(path.join(dir, 'stage-1'))).toBe(false);
    await rejectsWith(
      et.systems.m2se.m2seStages({
        model: m,
        tokenizer: await et.data.Tokenizer.fromFile(path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json')),
        outputDir: dir,
        stages: [{ datasets: [[base]] }],
      }),
      'ERR_INVALID_ARG',
      /IMG_CONTEXT/,
    );
    await rejectsWith(
      et.systems.m2se.m2seStages({ model: m, tokenizer: tok, outputDir: dir, maxNum: 0, stages: [{ datasets: [[base]] }] }),
      'ERR_INVALID_ARG',
      /maxNum/,
    );
  });
});

describe("m2seInfer's response = swift 2.6.1's generate_ids_to_response", () => {
  // test/fixtures/m2se_internvl/responses.json (scripts/fixtures/m2se_responses.py): each family's
  // greedy answers, as generated and with the end token that stops them, decoded as swift does
  const want = JSON.parse(fs.readFileSync(path.join(DIR, 'responses.json'), 'utf8')) as Record<string, Array<{ ids: number[]; response: string }>>;
  it('keeps special tokens and spaces, drops the end token; trimResponse skips specials and trims', async () => {
    for (const [family, rows] of Object.entries(want)) {
      const ends = [tok.tokenToId(family === 'phi3' ? '<|end|>' : '<|im_end|>')!, tok.eosTokenId!];
      for (const { ids, response } of rows) {
        expect(await et.systems.m2se.m2seResponse(tok, ids, ends), `${family} ${ids}`).toBe(response);
        const trimmed = await et.systems.m2se.m2seResponse(tok, ids, ends, true);
        expect(trimmed).toBe(trimmed.trim());
      }
    }
    // a special token inside an answer stays in swift's text and goes with trimResponse
    const special = tok.tokenToId('<img>')!;
    const ids = [...want.internlm2[0].ids.slice(0, 2), special, ...want.internlm2[0].ids.slice(2, 4)];
    expect(await et.systems.m2se.m2seResponse(tok, ids, [])).toContain('<img>');
    expect(await et.systems.m2se.m2seResponse(tok, ids, [], true)).not.toContain('<img>');
  });
});
