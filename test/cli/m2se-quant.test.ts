// `npx emotorch m2se sft --quantization_bit 4|8` (ms-swift 2.6.1's bitsandbytes flags: QLoRA over
// InternVL2's LLM), `m2se infer` and `m2se export --merge_lora` on such a checkpoint as swift treats
// it (sft_args.json's flags imported; the merge into the quantized weights, with swift's warning),
// and the flag values emotorch does not implement refused by name (dist/cli/main.js, spawned).
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { findFfmpeg } from '../../lib/audio/ffmpeg';
import { FIXTURES, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const FX = path.join(FIXTURES, 'm2se_internvl');
const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const records = path.join(FX, 'records.json');
const tok = ['--tokenizer', path.join(FX, 'tokenizer.json')];

describe('m2se sft: the bitsandbytes flags emotorch does not implement are refused by name (exit 2)', () => {
  const base = ['m2se', 'sft', '--model', path.join(FX, 'internlm2'), ...tok, '--dataset', records, '--output_dir', tmpdir()];
  it.each([
    [['--quantization_bit', '4', '--bnb_4bit_quant_type', 'fp4'], /--bnb_4bit_quant_type fp4: .*NF4.*fp4 is not supported/],
    [['--quantization_bit', '4', '--bnb_4bit_use_double_quant', 'false'], /--bnb_4bit_use_double_quant false: .*not supported/],
    [['--quantization_bit', '4', '--bnb_4bit_comp_dtype', 'int8'], /--bnb_4bit_comp_dtype takes fp16, bf16, fp32 or AUTO/],
    [['--quantization_bit', '3'], /--quantization_bit 3: bnb takes 4 or 8/],
    [['--quantization_bit', '5'], /--quantization_bit takes 0, 4 or 8/],
    [['--quantization_bit', '8', '--quant_method', 'hqq'], /--quant_method hqq: .*not part of it/],
    [['--quantization_bit', '8', '--sft_type', 'full'], /--quantization_bit 8 with --sft_type full: full parameter fine-tuning does not support quantization/],
  ])('%j', (flags, message) => {
    const r = run(...base, ...flags);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(message);
  });
});

describe.skipIf(findFfmpeg() === null)('m2se sft --quantization_bit on a tiny InternVL2 (QLoRA), infer and export of its checkpoint', () => {
  // the fixture's LLM with an intermediate size of 128: NF4 blocks of 64 divide every row of its layers
  let model: string;
  beforeAll(async () => {
    const raw = JSON.parse(fs.readFileSync(path.join(FX, 'internlm2', 'config.json'), 'utf8'));
    const config = { ...raw, llm_config: { ...raw.llm_config, intermediate_size: 128 } };
    const top = Object.fromEntries(Object.keys(et.systems.m2se.INTERNVL_DEFAULTS).flatMap((k) => (k in raw ? [[k, raw[k]]] : [])));
    et.manualSeed(3);
    const m = et.nn.InternVL.create({ ...top, vision_config: raw.vision_config, llm_config: config.llm_config } as never);
    model = tmpdir();
    await m.save(path.join(model, 'model.safetensors'));
    fs.writeFileSync(path.join(model, 'config.json'), JSON.stringify(config));
  });

  it('4: NF4 under the LLM, the adapters trained; infer loads the base as sft_args.json says; export merges as swift', async () => {
    const out = tmpdir();
    const s = run(
      'm2se',
      'sft',
      '--model',
      model,
      ...tok,
      '--dataset',
      records,
      '--max_steps',
      '3',
      '--learning_rate',
      '1e-2',
      '--quantization_bit',
      '4',
      '--bnb_4bit_comp_dtype',
      'fp32',
      '--output_dir',
      out,
    );
    expect(s.err).not.toMatch(/\n\s+at /);
    expect(s.code, s.err).toBe(0);
    expect(s.out).toMatch(/quantized: 10 Linear layers of the LLM in nf4/);
    const ckpt = /last_model_checkpoint: (.*)/.exec(s.out)![1].trim();
    const args = JSON.parse(fs.readFileSync(path.join(ckpt, 'sft_args.json'), 'utf8'));
    expect(args).toMatchObject({ quantization_bit: '4', bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: true });
    // the adapters moved from peft's initialisation (lora_B zeros; swift's warmup gives the first step lr 0)
    const adapter = (await et.io.loadSafetensors(path.join(ckpt, 'adapter_model.safetensors'))).tensors;
    const bs = [...adapter].filter(([k]) => k.includes('lora_B'));
    expect(bs.length).toBeGreaterThan(0);
    expect(bs.every(([, t]) => t.abs().max().item() > 0)).toBe(true);

    // infer: the checkpoint's base loaded in NF4 again (swift's load_from_ckpt_dir), said on stderr
    const inf = run('m2se', 'infer', '--ckpt_dir', ckpt, ...tok, '--val_dataset', records, '--max_new_tokens', '4');
    expect(inf.code, inf.err).toBe(0);
    expect(inf.err).toMatch(/trained with --quantization_bit 4: loading its base so/);
    const lines = fs
      .readFileSync(/-> (.*\.jsonl)/.exec(inf.out)![1], 'utf8')
      .trim()
      .split('\n');
    expect(lines.length).toBe(JSON.parse(fs.readFileSync(records, 'utf8')).length);

    // export --merge_lora: swift's warning, the LoRA merged into the NF4 weights (dequantized, updated,
    // quantized again, as peft merges into bitsandbytes layers), written dequantized in the base's layout
    const ex = run('m2se', 'export', '--ckpt_dir', ckpt, ...tok, '--merge_lora', 'true');
    expect(ex.code, ex.err).toBe(0);
    expect(ex.err).toMatch(/It is not recommended to merge quantized models/);
    const merged = (await et.io.loadSafetensors(path.join(`${ckpt}-merged`, 'model.safetensors'))).tensors;
    const want = await et.nn.InternVL.fromPretrained(model, { quantize: 'nf4' });
    await et.nn.loadLoraAdapter(want, ckpt);
    et.nn.mergeLora(want);
    const sd = want.stateDict();
    const key = 'language_model.model.layers.1.feed_forward.w2';
    const q = {
      weight: sd.get(`${key}.weight`)!,
      ...Object.fromEntries([...sd].filter(([k]) => k.startsWith(`${key}.weight.`)).map(([k, t]) => [k.slice(key.length + 8), t])),
    };
    const w = await et.nn.dequantizeWeight({ format: 'nf4', shape: [64, 128], tensors: q });
    expect(merged.get(`${key}.weight`)!.dtype).toBe('float32');
    expect(merged.get(`${key}.weight`)!.sub(w).abs().max().item()).toBe(0);
    // the merged folder loads as a float model
    const back = await et.nn.InternVL.fromPretrained(`${ckpt}-merged`);
    expect(et.nn.linearLayers(back.language_model).every((l) => l.format === null)).toBe(true);
  }, 300_000);

  it('8: int8 under the LLM of the fixture as released', () => {
    const s = run(
      'm2se',
      'sft',
      '--model',
      path.join(FX, 'internlm2'),
      ...tok,
      '--dataset',
      records,
      '--max_steps',
      '1',
      '--quantization_bit',
      '8',
      '--output_dir',
      tmpdir(),
    );
    expect(s.code, s.err).toBe(0);
    expect(s.out).toMatch(/quantized: 10 Linear layers of the LLM in int8/);
  }, 300_000);
});
