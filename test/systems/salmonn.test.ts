// SALMONN parity with a Python re-reading of the original models/salmonn.py on HF modules and
// the original BEATs math (scripts/fixtures/salmonn.py -> test/fixtures/salmonn/).
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const DIR = path.join(FIXTURES, 'salmonn');
const TOL = 1e-4;
// The audio tokens (Whisper + BEATs + window Q-Former + projection on tiny random weights) move by
// 2.5e-4 (of values up to 1.9) between the reference as computed on an AMD EPYC and the same script
// run on an Intel Xeon; emotorch agrees with the reference of its own CPU to 1.2e-6. The bound is
// what the reference itself varies by across CPUs, with margin.
const TOL_AUDIO_TOKENS = 1e-3;
const cfg = JSON.parse(fs.readFileSync(path.join(DIR, 'config.json'), 'utf8'));
const gen = JSON.parse(fs.readFileSync(path.join(DIR, 'gen.json'), 'utf8'));
const parts = { whisper: path.join(FIXTURES, 'whisper'), beats: path.join(FIXTURES, 'beats', 'beats.pt'), llm: path.join(DIR, 'llm') };
const load = (checkpoint: string | null = path.join(DIR, 'salmonn.pth')) => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint, config: cfg });

let io: Map<string, et.Tensor>;
let waves: Float32Array[];
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(DIR, 'io.safetensors'))).tensors;
  waves = [io.get('wave_a')!.dataSync() as Float32Array, io.get('wave_b')!.dataSync() as Float32Array];
});

describe('Salmonn = the original forward (Python reference)', () => {
  it('gives the same loss, logits and gradients of every trainable tensor', async () => {
    const m = await load();
    expect(m.loadReport.ignored.sort()).toEqual([
      'beats.encoder.layers.1.self_attn.relative_attention_bias.weight',
      'llama_model.base_model.model.model.layers.0.self_attn.rotary_emb.inv_freq',
      'llama_model.base_model.model.model.layers.1.self_attn.rotary_emb.inv_freq',
      'speech_Qformer.bert.embeddings.position_ids',
    ]);
    expect(m.window).toEqual({ kernel: 17, stride: 17 });
    const tokens = await m.encodeAudio(waves);
    expect(tokens.map((t) => t.shape)).toEqual([
      [1, 88, 48],
      [1, 88, 48],
    ]);
    expect(maxAbsDiff(et.cat(tokens, 0), io.get('audio_tokens')!)).toBeLessThan(TOL_AUDIO_TOKENS);

    const out = await m.forward({ audio: waves, instruction: gen.instructions, target: gen.texts });
    expect(out.labels!.toArray()).toEqual(io.get('labels')!.toArray());
    expect(out.attentionMask.toArray()).toEqual(io.get('attention_mask')!.toArray());
    expect(Math.abs(out.loss!.item() - io.get('loss')!.item())).toBeLessThan(TOL);
    const t = out.logits.shape[1];
    expect(maxAbsDiff(out.logits.slice(1, t - 24, t), io.get('logits_tail')!)).toBeLessThan(TOL);

    await out.loss!.backward();
    const trainable = m.namedParameters().filter(([, p]) => p.requiresGrad);
    const want = [...io.keys()].filter((k) => k.startsWith('grad.')).sort();
    expect(trainable.map(([n]) => `grad.${m.originalName(n)}`).sort()).toEqual(want);
    let worst = 0;
    for (const [n, p] of trainable) worst = Math.max(worst, maxAbsDiff(p.grad!, io.get(`grad.${m.originalName(n)}`)!));
    expect(worst).toBeLessThan(TOL);
    // the same prompts given whole (as the dataset gives them)
    const again = await et.noGrad(() => m.forward({ audio: waves, prompt: gen.prompts, target: gen.texts }));
    expect(Math.abs(again.loss!.item() - io.get('loss')!.item())).toBeLessThan(TOL);
  });

  it('keeps speech_query_tokens the registered parameter after to() (a GPU move once left it behind on the CPU)', async () => {
    const m = await load();
    const before = m.speech_query_tokens.toArray();
    await m.to({ dtype: 'float64' });
    const registered = new Map(m.namedParameters()).get('speech_query_tokens')!;
    expect(m.speech_query_tokens).toBe(registered);
    expect(m.speech_query_tokens.dtype).toBe('float64');
    expect(m.speech_query_tokens.requiresGrad).toBe(true);
    expect(m.speech_query_tokens.toArray()).toEqual(before);
    expect(m.trainableParameters()).toContain(registered);
  });

  it('generates the same greedy and beam tokens', async () => {
    const m = await load();
    const greedy = await m.generateTokens(waves, gen.gen_instruction, { numBeams: 1, maxNewTokens: gen.max_new_tokens });
    const cut = (rows: number[][]) => rows.map((r) => (r.includes(2) ? r.slice(0, r.indexOf(2)) : r));
    expect(greedy).toEqual(cut(gen.greedy));
    const beam = await m.generateTokens(waves, gen.gen_instruction, { maxNewTokens: gen.max_new_tokens });
    expect(beam).toEqual(cut(gen.beam));
    const text = await m.generate([waves[1]], gen.gen_instruction, { maxNewTokens: gen.max_new_tokens });
    expect(text).toEqual([await m.tokenizer.decode(cut(gen.beam)[1], { skipSpecialTokens: true })]);
  });

  it('generates for different instructions in one batch as for each alone (pads inside the prompt are masked and skipped)', async () => {
    const m = await load();
    // one clip twice: clips of different lengths change each other's BEATs states (padded together, as the original)
    const w = [waves[1], waves[1]];
    const instr = ['Describe the emotion of the speaker in one word.', 'Feel?']; // prompts of different lengths
    for (const num_beams of [1, 4]) {
      const batched = await m.generateTokens(w, instr, { numBeams: num_beams, maxNewTokens: 8 });
      const alone = [
        (await m.generateTokens([w[0]], [instr[0]], { numBeams: num_beams, maxNewTokens: 8 }))[0],
        (await m.generateTokens([w[1]], [instr[1]], { numBeams: num_beams, maxNewTokens: 8 }))[0],
      ];
      expect(batched).toEqual(alone);
    }
  });
});

describe("Salmonn.fromPretrained({ dtype }): half-precision towers, SALMONN's own parts in float32", () => {
  // The reference is the float32 one: a half-precision tower moves the outputs by its rounding, so
  // each bound is a few times what that rounding gives here (bfloat16: audio tokens 1.2 % of their
  // largest value, logits 0.042, loss 6e-4; float16: 0.1 %, 0.005, 4e-4), not a last-bit match.
  const bounds = { bfloat16: { audio: 0.05, logits: 0.2, loss: 0.02 }, float16: { audio: 0.01, logits: 0.03, loss: 0.01 } } as const;
  for (const dtype of ['bfloat16', 'float16'] as const) {
    it(`${dtype}: Whisper, BEATs and the LLaMA load in ${dtype}, and loss, logits, audio tokens and gradients stay near the float32 reference`, async () => {
      const m = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint: path.join(DIR, 'salmonn.pth'), config: cfg, dtype });
      const dtypes = (mod: et.nn.Module, frozen: boolean) =>
        new Set(
          mod
            .namedParameters()
            .filter(([n]) => frozen === !/\.lora_[AB]\./.test(n))
            .map(([, p]) => p.dtype),
        );
      expect(dtypes(m.speech_encoder, true)).toEqual(new Set([dtype]));
      expect(dtypes(m.beats!, true)).toEqual(new Set([dtype]));
      expect(dtypes(m.llama_model, true)).toEqual(new Set([dtype]));
      expect(dtypes(m.llama_model, false)).toEqual(new Set(['float32'])); // the LoRA adapters
      for (const own of [m.speech_Qformer, m.speech_llama_proj, m.ln_speech, m.ln_audio!]) expect(dtypes(own, true)).toEqual(new Set(['float32']));
      expect(m.speech_query_tokens.dtype).toBe('float32');

      const b = bounds[dtype];
      const want = io.get('audio_tokens')!;
      const tokens = et.cat(await et.noGrad(() => m.encodeAudio(waves)), 0);
      expect(tokens.dtype).toBe('float32');
      expect(maxAbsDiff(tokens, want)).toBeLessThan(b.audio * want.abs().max().item());
      const out = await m.forward({ audio: waves, instruction: gen.instructions, target: gen.texts });
      expect(Math.abs(out.loss!.item() - io.get('loss')!.item())).toBeLessThan(b.loss);
      const t = out.logits.shape[1];
      expect(maxAbsDiff(out.logits.slice(1, t - 24, t).float(), io.get('logits_tail')!)).toBeLessThan(b.logits);
      // the trainable float32 parts get float32 gradients through the half-precision LLaMA, pointing
      // where the reference's do
      await out.loss!.backward();
      for (const [n, p] of m.namedParameters().filter(([, q]) => q.requiresGrad)) {
        const ref = io.get(`grad.${m.originalName(n)}`)!;
        expect(p.grad!.dtype).toBe('float32');
        const norm = ref.norm().item();
        if (norm < 1e-6) continue; // the one-query self-attention's q/k and key biases get none
        const cos = p.grad!.mul(ref).sum().item() / (p.grad!.norm().item() * norm);
        expect(cos, n).toBeGreaterThan(0.98);
      }
      const answers = await m.generateTokens(waves, gen.gen_instruction, { numBeams: 1, maxNewTokens: 4 });
      expect(answers.map((a) => a.length > 0)).toEqual([true, true]);
    });
  }

  it("'auto' keeps each tower's checkpoint dtype (float32 here); a bad dtype fails before anything loads", async () => {
    const m = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: cfg, dtype: 'auto' });
    expect(m.speech_encoder.parameters()[0].dtype).toBe('float32');
    expect(m.llama_model.parameters()[0].dtype).toBe('float32');
    await rejectsWith(() => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: cfg, dtype: 'int8' as never }), 'ERR_INVALID_ARG', /dtype/);
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, whisper: '/nonexistent', config: cfg, dtype: 'half' as never }),
      'ERR_INVALID_ARG',
      /dtype/,
    );
  });
});

describe('Salmonn checkpoints', () => {
  it('loads the v1 layout (text branch and cls reported and skipped) and round-trips its own saves', async () => {
    const m = await load(path.join(DIR, 'salmonn_v1.pth'));
    expect(m.loadReport.ignored.filter((k) => /cls|intermediate\.|\.output\.|word_embeddings|position_embeddings/.test(k)).length).toBe(9);
    const file = path.join(tmpdir(), 'ours.safetensors');
    await m.saveCheckpoint(file);
    const saved = (await et.io.loadSafetensors(file)).tensors;
    const orig = (await et.io.loadTorchFile(path.join(DIR, 'salmonn.pth'))) as Map<string, Map<string, et.Tensor>>;
    const wantKeys = [...orig.get('model')!.keys()].filter((k) => !et.systems.salmonn.SALMONN_IGNORABLE.some((r) => r.test(k))).sort();
    expect([...saved.keys()].sort()).toEqual(wantKeys);
    for (const k of wantKeys) expect(maxAbsDiff(saved.get(k)!, orig.get('model')!.get(k)!)).toBe(0);
    const back = await load(file);
    expect(back.loadReport.loaded.length).toBe(wantKeys.length);
  });

  it('names unknown, missing and mis-shaped keys', async () => {
    const m = await load(null);
    const sd = (await et.io.loadTorchFile(path.join(DIR, 'salmonn.pth'))) as Map<string, Map<string, et.Tensor>>;
    const good = sd.get('model')!;
    const withExtra = new Map(good).set('speech_Qformer.bert.encoder.layer.0.bogus.weight', et.zeros([2]));
    await rejectsWith(
      () => m.loadCheckpointStateDict(withExtra),
      'ERR_STATE_DICT',
      /unexpected keys: 'speech_Qformer\.bert\.encoder\.layer\.0\.bogus\.weight'/,
    );
    const without = new Map(good);
    without.delete('speech_llama_proj.bias');
    await rejectsWith(() => m.loadCheckpointStateDict(without), 'ERR_STATE_DICT', /missing keys: 'speech_llama_proj\.bias'/);
    const wrong = new Map(good).set('speech_query_tokens', et.zeros([1, 2, 32]));
    await rejectsWith(
      () => m.loadCheckpointStateDict(wrong),
      'ERR_STATE_DICT',
      /wrong shapes: 'speech_query_tokens': checkpoint \[1,2,32\] vs model \[1,1,32\]/,
    );
  });
});

describe('Salmonn long audio and inputs', () => {
  it('encodes audio longer than 30 s in chunks (88 tokens per full chunk, fewer for the tail) and caps it', async () => {
    const m = await load();
    const long = new Float32Array(75 * 16000).map((_, i) => 0.3 * Math.sin(i / 7));
    const [tokens] = await et.noGrad(() => m.encodeAudio([long]));
    expect(tokens.shape).toEqual([1, 88 + 88 + 44, 48]);
    // the first chunk alone is exactly the ≤ 30 s path
    const [first] = await et.noGrad(() => m.encodeAudio([long.subarray(0, 30 * 16000)]));
    expect(maxAbsDiff(tokens.slice(1, 0, 88), first)).toBeLessThan(1e-5);
    // a waveform given as a Tensor stays native and gives the same tokens
    const [viaTensor] = await et.noGrad(() => m.encodeAudio([et.tensor(long)]));
    expect(maxAbsDiff(viaTensor, tokens)).toBe(0);
    const capped = await et.systems.salmonn.Salmonn.fromPretrained({
      ...parts,
      checkpoint: path.join(DIR, 'salmonn.pth'),
      config: { ...cfg, max_audio_seconds: 30 },
    });
    const [c] = await et.noGrad(() => capped.encodeAudio([long]));
    expect(c.shape).toEqual([1, 88, 48]);
    // the deprecated spelling still works, and both at once are refused
    const old = await et.systems.salmonn.Salmonn.fromPretrained({
      ...parts,
      checkpoint: path.join(DIR, 'salmonn.pth'),
      config: { ...cfg, maxAudioSeconds: 30 },
    });
    expect(old.config.max_audio_seconds).toBe(30);
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, maxAudioSeconds: 30, max_audio_seconds: 20 } }),
      'ERR_INVALID_ARG',
      /max_audio_seconds or its deprecated spelling maxAudioSeconds/,
    );
  });

  it('rejects malformed batches and configs', async () => {
    const m = await load();
    await rejectsWith(() => m.forward({ audio: waves, instruction: ['only one'] }), 'ERR_INVALID_ARG', /instruction/);
    await rejectsWith(() => m.forward({ audio: [new Float32Array(0)], instruction: ['x'] }), 'ERR_INVALID_ARG', /non-empty waveform/);
    await rejectsWith(() => m.forward({ audio: waves, prompt: ['no placeholder', 'x <SpeechHere>'] }), 'ERR_INVALID_ARG', /exactly one '<SpeechHere>'/);
    await rejectsWith(() => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, lora_rank: 0 } }), 'ERR_INVALID_ARG', /lora_rank/);
    await rejectsWith(
      () => et.systems.salmonn.Salmonn.fromPretrained({ ...parts, config: { ...cfg, prompt_template: 'no slot' } }),
      'ERR_INVALID_ARG',
      /prompt_template/,
    );
  });
});
