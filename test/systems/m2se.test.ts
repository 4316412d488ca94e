// The M2SE recipe on a tiny random LLaMA with the tiny llama tokenizer of test/fixtures/tokenizers:
// response-only labels, a two-stage LoRA run carrying the adapter, swift-infer JSONL scored by the
// M2SE metrics.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir, rejectsWith, throwsWith } from '../helpers';

const TOK = path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json');
const tiny = (): et.nn.LlamaForCausalLM => {
  et.manualSeed(0);
  return et.nn.LlamaForCausalLM.create({
    vocab_size: 1500,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 512,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 0,
    initializer_range: 0.5,
  });
};
const Q = (u: string): string =>
  `The person says: '${u}' Please determine which emotion label in the video represents: anger, sadness, surprise, disgust, joy, neutral or fear.`;
const RECORDS = [
  { query: Q('I love this day'), response: 'Joy.', videos: ['a.mp4'] },
  { query: Q('Get out of my room'), response: 'Anger.' },
  { query: Q('What a wonderful gift'), response: 'Joy.', images: ['b.png'] },
  { query: Q('You broke it again'), response: 'Anger.' },
];

describe('m2seExamples', () => {
  it('puts −100 exactly over the prompt and the response + EOS after it; the loss is the response tokens only', async () => {
    const tok = await et.data.Tokenizer.fromFile(TOK);
    const recs = et.systems.m2se.m2seRecords(RECORDS);
    const { examples, tooLong } = await et.systems.m2se.m2seExamples(recs, tok);
    expect(tooLong).toBe(0);
    for (let i = 0; i < recs.length; i++) {
      const { ids, labels } = examples[i];
      const P = (
        await tok.encode(
          `<|im_start|>system\n${et.systems.m2se.M2SE_SYSTEM}<|im_end|>\n<|im_start|>user\n${RECORDS[i].query}<|im_end|>\n<|im_start|>assistant\n`,
        )
      ).length;
      expect(ids[0]).toBe(1);
      expect(labels.slice(0, P).every((l) => l === -100)).toBe(true);
      expect(labels.slice(P)).toEqual(ids.slice(P));
      expect(ids[ids.length - 1]).toBe(2);
      expect(await tok.decode(ids.slice(P), { skipSpecialTokens: true })).toBe(RECORDS[i].response);
    }
    // the same record as ms-swift messages gives the same example
    const msg = et.systems.m2se.m2seRecords([
      {
        messages: [
          { role: 'system', content: et.systems.m2se.M2SE_SYSTEM },
          { role: 'user', content: RECORDS[1].query },
          { role: 'assistant', content: 'Anger.' },
        ],
      },
    ]);
    expect((await et.systems.m2se.m2seExamples(msg, tok)).examples[0]).toEqual(examples[1]);
    expect((await et.systems.m2se.m2seExamples(recs, tok, { maxLength: 20 })).tooLong).toBe(4);
    // loss from the model = mean NLL over the label positions, computed here from the logits
    const model = tiny();
    const batch = et.systems.m2se.m2seCollate(examples.slice(0, 2));
    const { logits, loss } = await model.forward(batch);
    const lg = logits.toArray() as number[][][];
    const lb = batch.labels.toArray() as number[][];
    let sum = 0;
    let n = 0;
    for (let b = 0; b < 2; b++)
      for (let t = 0; t + 1 < lb[b].length; t++) {
        const y = lb[b][t + 1];
        if (y === -100) continue;
        const row = lg[b][t];
        const m = Math.max(...row);
        sum += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[y];
        n++;
      }
    expect(n).toBe(examples[0].labels.filter((l) => l !== -100).length + examples[1].labels.filter((l) => l !== -100).length);
    expect(Math.abs((loss!.item() as number) - sum / n)).toBeLessThan(1e-5);
    throwsWith(() => et.systems.m2se.m2seRecords([{ query: 'q' }]), 'ERR_FORMAT', /item 0/);
    throwsWith(() => et.systems.m2se.m2seRecords([{ messages: [{ role: 'user', content: 'q' }] }]), 'ERR_FORMAT', /alternate/);
    await rejectsWith(() => et.systems.m2se.m2seExamples(recs, {} as never), 'ERR_INVALID_ARG', /tokenizer/);
  });
});

describe('m2seStages and m2seInfer', () => {
  it('runs two LoRA stages (stage 2 from stage 1 adapter), counts media, writes checkpoints; infer JSONL scores with compute_result', async () => {
    const tok = await et.data.Tokenizer.fromFile(TOK);
    const model = tiny();
    const out = tmpdir();
    const data = path.join(out, 'train.json');
    fs.writeFileSync(data, JSON.stringify(RECORDS));
    const args = {
      num_train_epochs: 40,
      gradient_accumulation_steps: 1,
      per_device_train_batch_size: 4,
      learning_rate: 1e-2,
      warmup_ratio: 0,
      lr_scheduler_type: 'constant' as const,
      save_strategy: 'epoch' as const,
      save_total_limit: 1,
    };
    const res = await et.systems.m2se.m2seStages({
      model,
      tokenizer: tok,
      outputDir: out,
      lora: { targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
      stages: [
        { datasets: [data], args },
        { datasets: [RECORDS.slice(1)], args: { ...args, num_train_epochs: 4 } },
      ],
    });
    expect(res.map((r) => [r.examples, r.globalStep])).toEqual([
      [4, 40],
      [3, 4],
    ]);
    expect(res[0].unusedMedia).toEqual({ records: 2, images: 1, videos: 1, audios: 0 });
    expect(res[1].unusedMedia).toEqual({ records: 1, images: 1, videos: 0, audios: 0 });
    const ck1 = path.join(out, 'stage-1', 'checkpoint-40', 'model.safetensors');
    const ck2 = path.join(out, 'stage-2', 'checkpoint-4', 'model.safetensors');
    const s1 = (await et.io.loadSafetensors(ck1)).tensors;
    const s2 = (await et.io.loadSafetensors(ck2)).tensors;
    expect([...s1.keys()].every((k) => k.includes('lora_'))).toBe(true);
    expect([...s1.keys()].length).toBe(28); // 2 layers × 7 projections × A,B
    const key = [...s1.keys()].find((k) => k.includes('lora_B'))!;
    expect(s1.get(key)!.abs().max().item()).toBeGreaterThan(0); // B starts at 0: stage 1 trained it
    expect(s2.get(key)!.sub(s1.get(key)!).abs().max().item()).toBeGreaterThan(0);
    // the model object carries the stage-2 adapter
    expect(model.stateDict().get(key)!.sub(s2.get(key)!).abs().max().item()).toBe(0);

    const jsonl = path.join(out, 'infer', 'meld.jsonl');
    const inf = await et.systems.m2se.m2seInfer({ model, tokenizer: tok, dataset: data, outFile: jsonl, maxNewTokens: 8 });
    expect(inf.count).toBe(4);
    const lines = fs
      .readFileSync(jsonl, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.label)).toEqual(RECORDS.map((r) => r.response));
    expect(lines[0].videos).toEqual(['a.mp4']);
    expect(et.metrics.readSwiftResults(jsonl).map((r) => r.label)).toEqual(RECORDS.map((r) => r.response));
    const m = et.metrics.m2seComputeResult(jsonl, 'emotion');
    const hits = lines.filter((l) => l.response === l.label).length;
    expect(m.total).toBe(4);
    expect(m.correct).toBe(hits);
    expect(m.accuracy).toBeCloseTo(hits / 4, 12);
    expect(lines.slice(1).map((l) => l.response)).toEqual(RECORDS.slice(1).map((r) => r.response)); // stage 2 records learned
    expect(hits).toBeGreaterThanOrEqual(3);

    await rejectsWith(() => et.systems.m2se.m2seStages({ model, tokenizer: tok, stages: [] }), 'ERR_INVALID_ARG', /stages/);
    const bad = path.join(out, 'bad');
    await rejectsWith(
      () =>
        et.systems.m2se.m2seStages({
          model,
          tokenizer: tok,
          outputDir: bad,
          stages: [{ datasets: [data] }, { datasets: [data], args: { lr_scheduler_type: 'nope' as never } }],
        }),
      'ERR_INVALID_ARG',
      /lr_scheduler_type/,
    );
    expect(fs.existsSync(bad)).toBe(false); // every stage's arguments are checked before any training
    // a model that already carries adapters continues with them (no second LoRA)
    const nLora = model.namedParameters().filter(([n]) => n.includes('.lora_')).length;
    const more = await et.systems.m2se.m2seStages({
      model,
      tokenizer: tok,
      outputDir: path.join(out, 'more'),
      stages: [{ datasets: [RECORDS], args: { ...args, num_train_epochs: 1 } }],
    });
    expect(more[0].globalStep).toBe(1);
    expect(model.namedParameters().filter(([n]) => n.includes('.lora_')).length).toBe(nLora);
    await rejectsWith(() => et.systems.m2se.m2seStages({ model, tokenizer: tok, stages: [{ datasets: [data] }] }), 'ERR_INVALID_ARG', /outputDir/);
    await rejectsWith(() => et.systems.m2se.m2seInfer({ model, tokenizer: tok, dataset: data, outFile: '' }), 'ERR_INVALID_ARG', /outFile/);
  }, 90000); // ~8 s alone; a loaded 2-core machine took over 15 s
});

// Issue 18 point 10: m2seCollate and m2sePrompt check what they are given.
describe('m2seCollate and m2sePrompt refuse malformed input', () => {
  it('ids and labels of different lengths, non-id entries, and a negative or fractional pad id are ERR_INVALID_ARG', () => {
    throwsWith(
      () => et.systems.m2se.m2seCollate([{ ids: [1, 2, 3], labels: [-100, 5] }]),
      'ERR_INVALID_ARG',
      /3 labels \(one per id\) for examples\[0\]\.labels but received "2 labels"/,
    );
    throwsWith(
      () =>
        et.systems.m2se.m2seCollate([
          { ids: [1, 2], labels: [-100, 2] },
          { ids: [4], labels: [4, 4] },
        ]),
      'ERR_INVALID_ARG',
      /examples\[1\]\.labels/,
    );
    throwsWith(
      () => et.systems.m2se.m2seCollate([{ ids: [1, 2], labels: [-100, 2] }], -1),
      'ERR_INVALID_ARG',
      /non-negative integer for padId but received -1/,
    );
    throwsWith(() => et.systems.m2se.m2seCollate([{ ids: [1, 2], labels: [-100, 2] }], 0.5), 'ERR_INVALID_ARG', /padId/);
    throwsWith(() => et.systems.m2se.m2seCollate([{ ids: [1, -7], labels: [-100, 2] }]), 'ERR_INVALID_ARG', /examples\[0\]\.ids/);
    throwsWith(() => et.systems.m2se.m2seCollate([{ ids: [1, 2], labels: [-100, 2.5] }]), 'ERR_INVALID_ARG', /examples\[0\]\.labels/);
    throwsWith(() => et.systems.m2se.m2seCollate([null as never]), 'ERR_INVALID_ARG', /examples\[0\]/);
    const ok = et.systems.m2se.m2seCollate(
      [
        { ids: [1, 2], labels: [-100, 2] },
        { ids: [3], labels: [3] },
      ],
      7,
    );
    expect(ok.inputIds.toArray()).toEqual([
      [1, 2],
      [3, 7],
    ]);
    expect(ok.labels.toArray()).toEqual([
      [-100, 2],
      [3, -100],
    ]);
  });
  it('m2sePrompt on a foreign record is ERR_INVALID_ARG naming the field (not a TypeError)', () => {
    throwsWith(() => et.systems.m2se.m2sePrompt({ query: 'hi' } as never), 'ERR_INVALID_ARG', /record\.history/);
    throwsWith(() => et.systems.m2se.m2sePrompt({ messages: [] } as never), 'ERR_INVALID_ARG', /record\.query/);
    throwsWith(() => et.systems.m2se.m2sePrompt(null as never), 'ERR_INVALID_ARG', /record/);
    throwsWith(() => et.systems.m2se.m2sePrompt({ query: 'q', history: [['a']] } as never), 'ERR_INVALID_ARG', /record\.history\[0\]/);
    throwsWith(() => et.systems.m2se.m2sePrompt({ query: 'q', history: [], system: 3 } as never), 'ERR_INVALID_ARG', /record\.system/);
    throwsWith(() => et.systems.m2se.m2sePrompt({ query: 'q', history: [] }, 5 as never), 'ERR_INVALID_ARG', /for system/);
    expect(et.systems.m2se.m2sePrompt({ query: 'q', history: [['a', 'b']] })).toContain('<|im_start|>user\nq<|im_end|>');
  });
});
