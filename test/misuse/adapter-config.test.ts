// peft adapter_config.json fields (issue 56): use_rslora, rank_pattern, alpha_pattern and
// exclude_modules give peft's own logits (test/fixtures/lora_config, written by
// scripts/fixtures/lora_config.py through PeftModel.from_pretrained); every other field is either
// one that leaves peft's numbers unchanged or refused with ERR_FORMAT naming it; a non-finite or
// absurd value (`"lora_alpha": 1e309` parses as Infinity) is refused; a config past 16 MiB is not
// read. loadLoraAdapter is what serve --adapter / --ckpt_dir and the m2se commands load through.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const BASE = path.join(FIXTURES, 'llama');
const FX = path.join(FIXTURES, 'lora_config');
const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');

async function logits(m: et.nn.LlamaForCausalLM, ids: et.Tensor): Promise<et.Tensor> {
  return (await et.noGrad(() => m.forward({ inputIds: ids }))).logits;
}

/** A copy of the rslora adapter whose adapter_config.json is `edit(config)` (or the raw text it returns). */
function adapterWith(edit: (cfg: Record<string, unknown>) => Record<string, unknown> | string): string {
  const dir = tmpdir();
  fs.copyFileSync(path.join(FX, 'rslora', 'adapter_model.safetensors'), path.join(dir, 'adapter_model.safetensors'));
  const out = edit(JSON.parse(fs.readFileSync(path.join(FX, 'rslora', 'adapter_config.json'), 'utf8')));
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), typeof out === 'string' ? out : JSON.stringify(out));
  return dir;
}

describe('peft adapter configs', () => {
  it("use_rslora, rank_pattern, alpha_pattern and exclude_modules give peft's logits; saved and loaded again, the same", async () => {
    const io = (await et.io.loadSafetensors(path.join(FX, 'io.safetensors'))).tensors;
    const ids = io.get('input_ids')!;
    for (const name of ['rslora', 'patterns', 'rslora_patterns']) {
      const m = await et.nn.LlamaForCausalLM.fromPretrained(BASE);
      await et.nn.loadLoraAdapter(m, path.join(FX, name));
      const want = io.get(`${name}_logits`)!;
      const got = await logits(m, ids);
      // the adapter moves the logits by ~3.7; alpha / r instead of alpha / √r moved them 1.2 off
      expect(maxAbsDiff(want, io.get('base_logits')!), name).toBeGreaterThan(1);
      expect(maxAbsDiff(got, want), name).toBeLessThan(1e-4);
      // saveLoraAdapter writes the settings back: the folder loads to the same numbers
      const dir = path.join(tmpdir(), name);
      await et.nn.saveLoraAdapter(m, dir);
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
      const orig = JSON.parse(fs.readFileSync(path.join(FX, name, 'adapter_config.json'), 'utf8'));
      for (const k of ['use_rslora', 'rank_pattern', 'alpha_pattern', 'exclude_modules', 'target_modules']) expect(cfg[k], `${name} ${k}`).toEqual(orig[k]);
      const again = await et.nn.LlamaForCausalLM.fromPretrained(BASE);
      await et.nn.loadLoraAdapter(again, dir);
      expect(maxAbsDiff(await logits(again, ids), got), name).toBe(0);
    }
  });

  it("refuses every field it would load with other numbers than peft's, naming it (ERR_FORMAT), before changing the model", async () => {
    const m = await et.nn.LlamaForCausalLM.fromPretrained(BASE);
    const cases: Array<[string, (c: Record<string, unknown>) => Record<string, unknown> | string]> = [
      ['lora_alpha', (c) => JSON.stringify(c).replace('"lora_alpha":8', '"lora_alpha":1e309')],
      ['lora_alpha', (c) => JSON.stringify(c).replace('"lora_alpha":8', '"lora_alpha":-1e400')],
      ['lora_alpha', (c) => ({ ...c, lora_alpha: 1e7 })],
      ['lora_alpha', (c) => ({ ...c, lora_alpha: '8' })],
      ['lora_alpha', (c) => ({ ...c, lora_alpha: null })],
      ['r', (c) => ({ ...c, r: 0 })],
      ['r', (c) => ({ ...c, r: 2.5 })],
      ['r', (c) => ({ ...c, r: 1e9 })],
      ['r', (c) => JSON.stringify(c).replace('"r":4', '"r":1e999')],
      ['lora_dropout', (c) => ({ ...c, lora_dropout: 2 })],
      ['use_rslora', (c) => ({ ...c, use_rslora: 'yes' })],
      ['target_modules', (c) => ({ ...c, target_modules: null })],
      ['target_modules', (c) => ({ ...c, target_modules: '(?P<x>q_proj)' })],
      ['exclude_modules', (c) => ({ ...c, exclude_modules: 5 })],
      ['rank_pattern', (c) => ({ ...c, rank_pattern: { v_proj: 0 } })],
      ['rank_pattern', (c) => JSON.stringify({ ...c, rank_pattern: { v_proj: 2 } }).replace('"v_proj":2', '"v_proj":1e309')],
      ['rank_pattern', (c) => ({ ...c, rank_pattern: [2] })],
      ['alpha_pattern', (c) => JSON.stringify({ ...c, alpha_pattern: { q_proj: 2 } }).replace('"q_proj":2', '"q_proj":1e309')],
      ['alpha_pattern', (c) => ({ ...c, alpha_pattern: { '(?P<name>q_proj)': 2 } })],
      ['use_dora', (c) => ({ ...c, use_dora: true })],
      ['bias', (c) => ({ ...c, bias: 'all' })],
      ['lora_bias', (c) => ({ ...c, lora_bias: true })],
      ['use_qalora', (c) => ({ ...c, use_qalora: true })],
      ['modules_to_save', (c) => ({ ...c, modules_to_save: ['lm_head'] })],
      ['layers_to_transform', (c) => ({ ...c, layers_to_transform: [0] })],
      ['layers_pattern', (c) => ({ ...c, layers_pattern: 'layers' })],
      ['layer_replication', (c) => ({ ...c, layer_replication: [[0, 1]] })],
      ['init_lora_weights', (c) => ({ ...c, init_lora_weights: 'pissa' })],
      ['init_lora_weights', (c) => ({ ...c, init_lora_weights: 'olora' })],
      ['loftq_config', (c) => ({ ...c, loftq_config: { loftq_bits: 4 } })],
      ['megatron_config', (c) => ({ ...c, megatron_config: { tensor_model_parallel_size: 2 } })],
      ['trainable_token_indices', (c) => ({ ...c, trainable_token_indices: [5] })],
      ['target_parameters', (c) => ({ ...c, target_parameters: ['mlp.experts.weight'] })],
      ['alora_invocation_tokens', (c) => ({ ...c, alora_invocation_tokens: [1, 2] })],
      ['eva_config', (c) => ({ ...c, eva_config: { rho: 2 } })],
      ['arrow_config', (c) => ({ ...c, arrow_config: { top_k: 3 } })],
      ['fan_in_fan_out', (c) => ({ ...c, fan_in_fan_out: 'no' })],
      ['base_model_name_or_path', (c) => ({ ...c, base_model_name_or_path: 5 })],
      ['a_future_variant', (c) => ({ ...c, a_future_variant: { scale: 2 } })],
      ['a_future_switch', (c) => ({ ...c, a_future_switch: true })],
    ];
    for (const [field, edit] of cases) {
      const e = await rejectsWith(et.nn.loadLoraAdapter(m, adapterWith(edit)), 'ERR_FORMAT');
      expect(e.message, `${field}: ${e.message}`).toMatch(new RegExp(`adapter_config\\.json'.*\\b${field}\\b`));
    }
    expect(m.namedParameters().some(([n]) => n.includes('lora_'))).toBe(false);
    // a newer peft's setting left off (null, false, empty) and the no-op values are taken
    const ok = adapterWith((c) => ({
      ...c,
      a_future_option: null,
      another_one: false,
      fan_in_fan_out: true,
      init_lora_weights: 'gaussian',
      modules_to_save: [],
      megatron_core: 'megatron.core',
    }));
    await et.nn.loadLoraAdapter(m, ok);
    const io = (await et.io.loadSafetensors(path.join(FX, 'io.safetensors'))).tensors;
    expect(maxAbsDiff(await logits(m, io.get('input_ids')!), io.get('rslora_logits')!)).toBeLessThan(1e-4);
  });

  it('applyLora itself refuses a non-finite or absurd alpha or rank and bad patterns (ERR_INVALID_ARG)', async () => {
    const m = await et.nn.LlamaForCausalLM.fromPretrained(BASE);
    const base = { r: 4, alpha: 8, targetModules: ['q_proj'] };
    for (const [opts, re] of [
      [{ ...base, alpha: Infinity }, /alpha/],
      [{ ...base, alpha: NaN }, /alpha/],
      [{ ...base, alpha: -2e6 }, /alpha/],
      [{ ...base, r: 1e6 }, /\br\b/],
      [{ ...base, useRslora: 1 }, /useRslora/],
      [{ ...base, rankPattern: { q_proj: 0 } }, /rankPattern/],
      [{ ...base, alphaPattern: { q_proj: Infinity } }, /alphaPattern/],
      [{ ...base, alphaPattern: { '(': 2 } }, /alphaPattern/],
      [{ ...base, excludeModules: [] }, /excludeModules/],
    ] as Array<[et.nn.PeftLoraOptions, RegExp]>) {
      const e = (() => {
        try {
          et.nn.applyLora(m, opts);
        } catch (err) {
          return err as et.EmotorchError;
        }
        return null;
      })();
      expect(e?.code, JSON.stringify(opts)).toBe('ERR_INVALID_ARG');
      expect(e!.message).toMatch(re);
    }
  });

  it('an adapter_config.json past 16 MiB is not read (ERR_IO naming the bound)', async () => {
    const dir = adapterWith((c) => JSON.stringify({ ...c, base_model_name_or_path: 'x'.repeat(20 * 2 ** 20) }));
    expect(fs.statSync(path.join(dir, 'adapter_config.json')).size).toBeGreaterThan(20 * 2 ** 20);
    const m = await et.nn.LlamaForCausalLM.fromPretrained(BASE);
    await rejectsWith(et.nn.loadLoraAdapter(m, dir), 'ERR_IO', /adapter_config\.json.*16777216/);
  });

  it('serve --adapter refuses an adapter whose lora_alpha is 1e309 at start, naming the field', () => {
    const model = tmpdir();
    for (const f of fs.readdirSync(path.join(FIXTURES, 'salmonn', 'llm'))) fs.copyFileSync(path.join(FIXTURES, 'salmonn', 'llm', f), path.join(model, f));
    fs.copyFileSync(path.join(FIXTURES, 'chat', 'chat_template.jinja'), path.join(model, 'chat_template.jinja'));
    const adapter = adapterWith((c) => JSON.stringify(c).replace('"lora_alpha":8', '"lora_alpha":1e309'));
    const r = spawnSync(process.execPath, [CLI, 'serve', '--model', model, '--adapter', adapter, '--port', '0'], {
      encoding: 'utf8',
      env: { ...process.env, OMP_NUM_THREADS: '1' },
      timeout: 60_000,
    });
    expect(r.signal).toBeNull();
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ERR_FORMAT: .*adapter_config\.json'.*lora_alpha.*Infinity|ERR_FORMAT: .*lora_alpha/);
  });
});
