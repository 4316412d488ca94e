// `npx emotorch m2se sft | infer | score` (dist/cli/main.js, spawned as a user runs it) on the tiny
// InternVL2 fixture: swift's flags, its output layout, the exit statuses (0 done, 1 runtime error
// with the coded message and no stack trace, 2 usage), and compute_result's numbers.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { findFfmpeg } from '../../lib/audio/ffmpeg';
import { FIXTURES, maxAbsDiff, spawnServer, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const FX = path.join(FIXTURES, 'm2se_internvl');
const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('emotorch CLI: usage and errors', () => {
  it('prints usage (0 with --help, 2 without a command) and refuses unknown systems, commands and flags with 2', () => {
    expect(run('--help')).toMatchObject({ code: 0 });
    expect(run('--help').out).toMatch(/m2se/);
    expect(run().code).toBe(2);
    expect(run('m2se', '--help').out).toMatch(/sft .*infer|sft[\s\S]*infer[\s\S]*score/);
    expect(run('m2se', 'sft', '--help').out).toMatch(/--gradient_checkpointing \[true\|false\][\s\S]*--acc_strategy/);
    expect(run('salmonnn', 'x')).toMatchObject({ code: 2 });
    const bad = run('m2se', 'score', 'x.jsonl', '--task', 'emotion', '--bogus', '1');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/unknown flag --bogus/);
    expect(run('m2se', 'sft', '--num_train_epochs', 'two').err).toMatch(/--num_train_epochs takes a number, not 'two'/);
    expect(run('m2se', 'sft', '--gradient_checkpointing', 'yes').err).toMatch(/takes true or false/);
  });
  it('a missing file is a runtime error (1) with its code and no stack trace', () => {
    const r = run('m2se', 'score', path.join(tmpdir(), 'none.jsonl'), '--task', 'emotion');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ERR_IO/);
    expect(r.err).not.toMatch(/\n\s+at /);
    const dir = tmpdir();
    fs.writeFileSync(path.join(dir, 'config.json'), '{ not json');
    const bad = run('m2se', 'infer', '--model', dir, '--val_dataset', path.join(FX, 'records.json'));
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/ERR_FORMAT: the model config: .*config\.json. is not JSON/);
    expect(bad.err).not.toMatch(/\n\s+at /);
  });
});

describe('emotorch m2se score = et.metrics.m2seComputeResult', () => {
  it("prints compute_result's numbers for each task, and the whole result with --json", () => {
    const dir = tmpdir();
    const file = path.join(dir, 'infer.jsonl');
    const rows = [
      ['Joy.', 'Joy.'],
      ['Anger.', 'Joy.'],
      ['Fear.', 'Fear.'],
      ['Neutral.', 'Sadness.'],
    ];
    fs.writeFileSync(file, rows.map(([response, label]) => JSON.stringify({ query: 'q', response, label })).join('\n'));
    const want = et.metrics.m2seComputeResult(file, 'emotion');
    const r = run('m2se', 'score', file, '--task', 'emotion');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`accuracy ${want.accuracy.toFixed(4)} (2 of 4`);
    expect(r.out).toContain(`weighted F1 ${want.weightedF1.toFixed(4)}`);
    expect(JSON.parse(run('m2se', 'score', file, '--task', 'emotion', '--json').out)).toEqual(JSON.parse(JSON.stringify(want)));
    const pairs = path.join(dir, 'pairs.jsonl');
    fs.writeFileSync(
      pairs,
      [JSON.stringify({ response: '3_joy,2', label: '3_joy,2;3_joy,3' }), JSON.stringify({ response: '2_anger,1', label: '2_anger,2' })].join('\n'),
    );
    const p = et.metrics.m2seComputeResult(pairs, 'pairs');
    expect(run('m2se', 'score', pairs, '--task', 'pairs').out).toContain(`F1 ${p.micro.f1.toFixed(4)}`);
  });
});

describe.skipIf(findFfmpeg() === null)('emotorch m2se sft / infer on a tiny InternVL2', () => {
  it("trains with swift's flags into swift's layout (a peft checkpoint), stage 2 from it, and answers with it", () => {
    const out = tmpdir();
    const common = ['--model', path.join(FX, 'internlm2'), '--tokenizer', path.join(FX, 'tokenizer.json'), '--model_type', 'internvl2-8b'];
    const s1 = run(
      'm2se',
      'sft',
      ...common,
      '--dataset',
      path.join(FX, 'records.json'),
      '--sft_type',
      'lora',
      '--num_train_epochs',
      '2',
      '--max_steps',
      '2',
      '--max_length',
      '2048',
      '--gradient_checkpointing',
      'true',
      '--batch_size',
      '1',
      '--gradient_accumulation_steps',
      '1',
      '--acc_strategy',
      'sentence',
      '--logging_steps',
      '1',
      '--output_dir',
      out,
    );
    expect(s1.err).not.toMatch(/\n\s+at /);
    expect(s1.code).toBe(0);
    const ckpt = /last_model_checkpoint: (.*)/.exec(s1.out)![1].trim();
    expect(path.relative(out, ckpt)).toMatch(/^internvl2-8b[/\\]v0-\d{8}-\d{6}[/\\]checkpoint-2$/);
    for (const f of ['adapter_config.json', 'adapter_model.safetensors', 'sft_args.json']) expect(fs.existsSync(path.join(ckpt, f))).toBe(true);
    const cfg = JSON.parse(fs.readFileSync(path.join(ckpt, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 32, target_modules: et.systems.m2se.INTERNVL_LORA_TARGETS });
    const log = fs
      .readFileSync(path.join(path.dirname(ckpt), 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((x) => 'loss' in x && 'learning_rate' in x);
    expect(log.length).toBe(2);
    expect(log.every((x) => x.acc === 0 || x.acc === 1)).toBe(true);

    // stage 2 from the stage-1 checkpoint: a second version folder
    const s2 = run(
      'm2se',
      'sft',
      ...common,
      '--dataset',
      path.join(FX, 'records.json'),
      '--max_steps',
      '1',
      '--resume_from_checkpoint',
      ckpt,
      '--output_dir',
      out,
    );
    expect(s2.code).toBe(0);
    expect(/last_model_checkpoint: (.*)/.exec(s2.out)![1]).toMatch(/v1-\d{8}-\d{6}[/\\]checkpoint-1$/);

    const inf = run(
      'm2se',
      'infer',
      '--ckpt_dir',
      ckpt,
      '--tokenizer',
      path.join(FX, 'tokenizer.json'),
      '--val_dataset',
      path.join(FX, 'records.json'),
      '--max_new_tokens',
      '3',
    );
    expect(inf.code).toBe(0);
    const jsonl = /-> (.*\.jsonl)/.exec(inf.out)![1];
    expect(path.dirname(jsonl)).toBe(path.join(ckpt, 'infer_result'));
    const lines = fs
      .readFileSync(jsonl, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.label)).toEqual(['Joy.', 'Negative.', '2_joy,2']);
    expect(lines[0].images).toEqual(['face.png']);
  }, 300_000);
});

// liaolea/EmoVerse first_stage.sh, second_stage.sh and test.sh as written after `swift sft` /
// `swift infer`, run in a working folder where the names they use are the fixtures: the tiny
// InternVL2-4B-shaped (Phi-3) folder as InternVL2-4B_model_path, records.json as each data file,
// and the checkpoints the stages write as first_model_ckpt and emoverse-4b
const FIRST_STAGE = [
  '--model_type',
  'internvl2-4b',
  '--model_id_or_path',
  'InternVL2-4B_model_path',
  '--dataset',
  'emt_data_first.json',
  '--sft_type',
  'lora',
  '--output_dir',
  'output',
  '--system',
  'You are an sentiment and emotion analysis expert.',
  '--num_train_epochs',
  '2',
  '--max_length',
  '2048',
  '--gradient_checkpointing',
  'true',
  '--batch_size',
  '1',
  '--gradient_accumulation_steps',
  '8',
  '--eval_steps',
  '1000',
  '--save_steps',
  '500',
  '--save_total_limit',
  '3',
  '--logging_steps',
  '10',
  '--acc_strategy',
  'sentence',
];
const SECOND_STAGE = FIRST_STAGE.map((a) => (a === 'InternVL2-4B_model_path' ? 'first_model_ckpt' : a === 'emt_data_first.json' ? 'emt_data_second.json' : a));
const TEST_SH = [
  '--model_type',
  'internvl2-4b',
  '--model_id_or_path',
  'emoverse-4b',
  '--system',
  'You are an sentiment and emotion analysis expert.',
  '--val_dataset',
  'sentiment_test_non_neg.json',
  '--max_length',
  '2048',
];

describe.skipIf(findFfmpeg() === null)("EmoVerse's first_stage.sh, second_stage.sh and test.sh as written", () => {
  it("runs the three lines: swift flags it does not use are named, stage 2 starts from stage 1's checkpoint, test.sh answers with stage 2's; export merges it", async () => {
    const cwd = tmpdir();
    const runIn = (...args: string[]) => {
      const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd, env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const model = path.join(cwd, 'InternVL2-4B_model_path');
    fs.cpSync(path.join(FX, 'phi3'), model, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(FX, f), path.join(model, f));
    for (const f of ['emt_data_first.json', 'emt_data_second.json', 'sentiment_test_non_neg.json'])
      fs.copyFileSync(path.join(FX, 'records.json'), path.join(cwd, f));
    for (const f of ['face.png', 'clip.mkv']) fs.copyFileSync(path.join(FX, f), path.join(cwd, f));

    const s1 = runIn('m2se', 'sft', ...FIRST_STAGE);
    expect(s1.code, s1.err).toBe(0);
    for (const f of ['eval_steps', 'save_steps', 'save_total_limit']) expect(s1.err).toMatch(new RegExp(`--${f} is accepted .* not used`));
    const ckpt1 = path.resolve(cwd, /last_model_checkpoint: (.*)/.exec(s1.out)![1].trim());
    expect(path.relative(cwd, ckpt1)).toMatch(/^output[/\\]internvl2-4b[/\\]v0-\d{8}-\d{6}[/\\]checkpoint-\d+$/);
    fs.symlinkSync(ckpt1, path.join(cwd, 'first_model_ckpt'));

    const s2 = runIn('m2se', 'sft', ...SECOND_STAGE);
    expect(s2.code, s2.err).toBe(0);
    const ckpt2 = path.resolve(cwd, /last_model_checkpoint: (.*)/.exec(s2.out)![1].trim());
    expect(ckpt2).toMatch(/v1-\d{8}-\d{6}[/\\]checkpoint-\d+$/);
    // stage 2 trained on from stage 1's adapter: its adapter differs from stage 1's and from a fresh one
    const a1 = fs.readFileSync(path.join(ckpt1, 'adapter_model.safetensors'));
    const a2 = fs.readFileSync(path.join(ckpt2, 'adapter_model.safetensors'));
    expect(a2.equals(a1)).toBe(false);
    fs.symlinkSync(ckpt2, path.join(cwd, 'emoverse-4b'));

    const t = runIn('m2se', 'infer', ...TEST_SH);
    expect(t.code, t.err).toBe(0);
    const jsonl = /-> (.*\.jsonl)/.exec(t.out)![1];
    expect(fs.realpathSync(path.resolve(cwd, path.dirname(jsonl)))).toBe(fs.realpathSync(path.join(ckpt2, 'infer_result')));
    const lines = fs
      .readFileSync(path.resolve(cwd, jsonl), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.label)).toEqual(['Joy.', 'Negative.', '2_joy,2']);
    expect(lines.every((l) => typeof l.response === 'string')).toBe(true);

    // swift export --ckpt_dir emoverse-4b --merge_lora true: a folder in the base's layout, answering as the checkpoint does
    const ex = runIn('m2se', 'export', '--ckpt_dir', 'emoverse-4b', '--merge_lora', 'true');
    expect(ex.code, ex.err).toBe(0);
    const merged = path.join(cwd, 'emoverse-4b-merged');
    const header = (f: string) => Object.fromEntries([...et.io.readSafetensorsHeader(f).entries].map(([k, e]) => [k, `${e.dtype} [${e.shape}]`]));
    expect(header(path.join(merged, 'model.safetensors'))).toEqual(header(path.join(model, 'model.safetensors')));
    for (const f of ['config.json', 'tokenizer.json']) expect(fs.readFileSync(path.join(merged, f))).toEqual(fs.readFileSync(path.join(model, f)));
    // every adapted weight is peft's merge, W + lora_alpha / r · B·A, of the checkpoint's adapter
    const adapter = (await et.io.loadSafetensors(path.join(ckpt2, 'adapter_model.safetensors'))).tensors;
    const acfg = JSON.parse(fs.readFileSync(path.join(ckpt2, 'adapter_config.json'), 'utf8'));
    const baseW = (await et.io.loadSafetensors(path.join(model, 'model.safetensors'))).tensors;
    const mergedW = (await et.io.loadSafetensors(path.join(merged, 'model.safetensors'))).tensors;
    const targets = [...adapter.keys()].filter((k) => k.endsWith('.lora_A.weight')).map((k) => k.slice('base_model.model.'.length, -'.lora_A.weight'.length));
    expect(targets.length).toBeGreaterThan(0);
    let moved = 0;
    for (const t of targets) {
      const A = adapter.get(`base_model.model.${t}.lora_A.weight`)!,
        B = adapter.get(`base_model.model.${t}.lora_B.weight`)!;
      const want = baseW.get(`${t}.weight`)!.add(B.matmul(A).mul(acfg.lora_alpha / acfg.r));
      expect(maxAbsDiff(mergedW.get(`${t}.weight`)!, want), t).toBeLessThan(1e-6);
      moved = Math.max(moved, maxAbsDiff(mergedW.get(`${t}.weight`)!, baseW.get(`${t}.weight`)!));
    }
    expect(moved).toBeGreaterThan(0); // the adapters trained: the merge changed the weights
    const m = runIn('m2se', 'infer', '--model', 'emoverse-4b-merged', '--val_dataset', 'sentiment_test_non_neg.json', '--result_dir', 'merged-results');
    expect(m.code, m.err).toBe(0);
    const mergedLines = fs
      .readFileSync(path.resolve(cwd, /-> (.*\.jsonl)/.exec(m.out)![1]), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(mergedLines.map((l) => l.response)).toEqual(lines.map((l) => l.response));
    // serving the fine-tune: its checkpoint on the base (swift deploy --ckpt_dir), the adapter merged, and the exported folder answer alike
    const ask = async (args: string[]) => {
      const server = await spawnServer(args);
      try {
        const r = await fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            messages: [{ role: 'user', content: 'Which emotion does this sentence show? I lost my keys again.' }],
            max_tokens: 6,
            temperature: 0,
          }),
        });
        expect(r.status).toBe(200);
        return ((await r.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content;
      } finally {
        expect(await server.stop()).toBe(0);
      }
    };
    const viaCkpt = await ask(['--ckpt_dir', path.join(cwd, 'emoverse-4b')]);
    expect(await ask(['--model', model, '--adapter', path.join(cwd, 'emoverse-4b'), '--merge_lora', 'true'])).toBe(viaCkpt);
    expect(await ask(['--model', merged])).toBe(viaCkpt);
    expect(runIn('m2se', 'export', '--ckpt_dir', 'emoverse-4b', '--merge_lora', 'true')).toMatchObject({ code: 1, err: expect.stringMatching(/exists/) });
    expect(runIn('m2se', 'export', '--ckpt_dir', 'emoverse-4b').code).toBe(2);
  }, 600_000);

  it('a --ckpt_dir that does not exist is named as missing (1), not a usage error about --model', () => {
    const r = run('m2se', 'infer', '--ckpt_dir', '/nonexistent/checkpoint-84', '--val_dataset', path.join(FX, 'records.json'));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ERR_IO: --ckpt_dir '\/nonexistent\/checkpoint-84' does not exist/);
  });
});
