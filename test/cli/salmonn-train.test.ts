// `npx emotorch salmonn train --cfg-path config.yaml` (dist/cli/main.js, spawned) on the original
// training YAML's layout (model, datasets, run, run.optims) with the tiny SALMONN fixtures: the
// runner's schedule per optimizer step, log.txt as runner.py writes it, per-epoch checkpoints under
// the original key names, and --resume continuing to the same weights.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const modelCfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'config.json'), 'utf8'));
const optims = { max_epoch: 2, warmup_steps: 3, warmup_start_lr: '1e-6', init_lr: 3e-3, min_lr: 1e-5, weight_decay: 0.05, beta2: 0.999 };

/** The original config.yaml layout over the fixtures; `run` entries override. */
function configYaml(dir: string, run: Record<string, unknown> = {}): string {
  const wav = (n: string) => path.join(FIXTURES, 'wav', n);
  const items = (n: number) =>
    Array.from({ length: n }, (_, i) =>
      i % 2
        ? { path: wav('pcm32_mono_16k.wav'), text: `a question ${i}`, task: 'QA', Q: 'What do you hear?' }
        : { path: wav('pcm16_mono_16k.wav'), text: `speech number ${i}`, task: 'asr' },
    );
  fs.writeFileSync(path.join(dir, 'train.json'), JSON.stringify({ annotation: items(4) }));
  fs.writeFileSync(path.join(dir, 'valid.json'), JSON.stringify({ annotation: items(2) }));
  // prompts without <SpeechHere> are dropped, as the original's __init__
  fs.writeFileSync(path.join(dir, 'train_prompt.json'), JSON.stringify({ asr: ['<Speech><SpeechHere></Speech> Recognize the speech.', 'no speech here'] }));
  const model = {
    llama_path: path.join(FIXTURES, 'salmonn', 'llm'),
    whisper_path: path.join(FIXTURES, 'whisper'),
    beats_path: path.join(FIXTURES, 'beats', 'beats.pt'),
    ckpt: path.join(FIXTURES, 'salmonn', 'salmonn.pth'),
    ...Object.fromEntries(Object.entries(modelCfg).filter(([k]) => k !== 'qformer')),
    prompt_path: path.join(dir, 'train_prompt.json'),
    test_prompt_path: '',
  };
  const r = {
    seed: 42,
    output_dir: path.join(dir, 'out'),
    evaluate: false,
    log_freq: 1,
    epoch_based: false,
    iters_per_epoch: 2,
    accum_grad_iters: 1,
    batch_size_train: 2,
    batch_size_eval: 2,
    num_workers: 8,
    device: 'cuda',
    use_distributed: false,
    amp: true,
    world_size: 1,
    dist_url: 'env://',
    ...run,
  };
  const y = (o: Record<string, unknown>, ind: string) => Object.entries(o).map(([k, v]) => `${ind}${k}: ${JSON.stringify(v)}`);
  const lines = [
    'model:',
    ...y(model, '  '),
    '  qformer:',
    ...y(modelCfg.qformer, '    '),
    'datasets:',
    ...y({ train_ann_path: path.join(dir, 'train.json'), valid_ann_path: path.join(dir, 'valid.json'), whisper_path: model.whisper_path }, '  '),
    'run:',
    ...y(r, '  '),
    '  optims:',
    ...y(optims, '    '),
  ];
  const file = path.join(dir, 'config.yaml');
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}
const jsonl = (f: string) =>
  fs
    .readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('emotorch salmonn train', () => {
  it("trains on config.yaml with runner.py's schedule, writes log.txt and checkpoint_<epoch> / checkpoint_best, and --resume ends at the same weights", async () => {
    const dir = tmpdir();
    const cfg = configYaml(dir);
    const outDir = path.join(dir, 'out');
    const r = run(['salmonn', 'train', '--cfg-path', cfg]);
    expect(r.err).toMatch(/no CUDA device is available: training on the CPU/);
    expect(r.err).toMatch(/not used here: .*datasets\.whisper_path, run\.num_workers, run\.world_size, run\.dist_url/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/4 training and 2 validation items; 2 epochs × 2 iterations of batch 2 = 4 optimizer steps/);

    // the rate of each optimizer step: runner.py's (warm-up 3 over iterations 0-1 of epoch 0, restarting in epoch 1, then the cosine)
    const schedule = et.systems.salmonn.salmonnSchedule({ ...optims, warmup_start_lr: 1e-6, iters_per_epoch: 2 });
    const logged = jsonl(path.join(outDir, 'log.jsonl')).filter((x) => x.loss !== undefined);
    expect(logged.map((x) => x.step)).toEqual([1, 2, 3, 4]);
    // step k (1-based in the log) ran at schedule(k - 1): 1e-6, the warm-up's 1e-6 + (3e-3 - 1e-6) / 3, 1e-6 again, the cosine
    logged.forEach((x) => expect(Math.abs(x.learning_rate - schedule(x.step - 1)) / schedule(x.step - 1)).toBeLessThan(1e-6));
    expect(logged[2].learning_rate).toBe(1e-6);

    // log.txt: the config, then each epoch's train and valid stats as runner.py formats them
    const txt = fs.readFileSync(path.join(outDir, 'log.txt'), 'utf8');
    expect(txt.startsWith('{\n    "model": {')).toBe(true);
    const stats = txt
      .trim()
      .split('\n')
      .filter((l) => /^\{"(train|valid)_/.test(l))
      .map((l) => JSON.parse(l));
    expect(stats.map((s) => Object.keys(s).join())).toEqual([
      'train_lr,train_loss',
      'valid_loss,valid_agg_metrics,valid_best_epoch',
      'train_lr,train_loss',
      'valid_loss,valid_agg_metrics,valid_best_epoch',
    ]);
    expect(stats[0].train_loss).toMatch(/^\d+\.\d{3}$/);
    const mean = (e: number) =>
      [0, 1].reduce((a, i) => a + et.systems.salmonn.salmonnIterationLr({ ...optims, warmup_start_lr: 1e-6, iters_per_epoch: 2 }, e, i), 0) / 2;
    expect(stats[0].train_lr).toBe(mean(0).toFixed(3));
    expect(stats[1].valid_agg_metrics).toBeGreaterThanOrEqual(0);
    expect(stats[1].valid_agg_metrics).toBeLessThanOrEqual(1);

    // checkpoints under the original key names: they load into SALMONN
    for (const f of ['checkpoint_0', 'checkpoint_1']) expect(fs.existsSync(path.join(outDir, `${f}.safetensors`))).toBe(true);
    expect(fs.existsSync(path.join(outDir, 'checkpoint_best.safetensors'))).toBe(stats[1].valid_agg_metrics > 0 || stats[3].valid_agg_metrics > 0);
    const m = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(outDir, 'checkpoint_1.safetensors'),
      config: modelCfg,
    });
    expect(m.loadReport.loaded).toContain('speech_query_tokens');
    const final = (await et.io.loadSafetensors(path.join(outDir, 'checkpoint_1.safetensors'))).tensors;
    const m0 = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn.pth'),
      config: modelCfg,
    });
    expect(final.get('speech_llama_proj.weight')!.sub(new Map(m0.namedParameters()).get('speech_llama_proj.weight')!).abs().max().item()).toBeGreaterThan(1e-6); // it trained

    // resume: drop the last checkpoints, continue from checkpoint-2: the same final weights
    fs.rmSync(path.join(outDir, 'checkpoint-4'), { recursive: true });
    fs.rmSync(path.join(outDir, 'checkpoint_1.safetensors'));
    const again = run(['salmonn', 'train', '--cfg-path', cfg, '--resume']);
    expect(again.code).toBe(0);
    // it went on from epoch 1: log.txt gained epoch 1's two lines only (a fresh start would add epoch 0's too, and the config)
    const after = fs
      .readFileSync(path.join(outDir, 'log.txt'), 'utf8')
      .trim()
      .split('\n')
      .filter((l) => /^\{"(train|valid)_/.test(l))
      .map((l) => JSON.parse(l));
    expect(after.length).toBe(6);
    expect(after.slice(4)).toEqual(stats.slice(2)); // the same epoch-1 loss and validation as the uninterrupted run
    const resumed = (await et.io.loadSafetensors(path.join(outDir, 'checkpoint_1.safetensors'))).tensors;
    let worst = 0;
    for (const [k, t] of final) worst = Math.max(worst, resumed.get(k)!.sub(t).abs().max().item());
    expect(worst).toBeLessThan(1e-6);
  }, 300_000);

  it('refuses what it cannot run, naming the key (1), and a missing --cfg-path (2)', () => {
    const dir = tmpdir();
    expect(run(['salmonn', 'train', '--cfg-path', configYaml(dir, { evaluate: true })])).toMatchObject({ code: 1, err: expect.stringMatching(/run.evaluate/) });
    expect(run(['salmonn', 'train', '--cfg-path', configYaml(dir, { accum_grad_iters: 3 })])).toMatchObject({
      code: 1,
      err: expect.stringMatching(/accum_grad_iters/),
    });
    expect(run(['salmonn', 'train', '--cfg-path', configYaml(dir, { batch_size_train: 'eight' })])).toMatchObject({
      code: 1,
      err: expect.stringMatching(/batch_size_train must be a number/),
    });
    expect(run(['salmonn', 'train']).code).toBe(2);
  }, 120_000);

  it("train.py's --options key=value (OmegaConf's dotlist) overrides the YAML's settings", () => {
    const dir = tmpdir();
    const cfg = configYaml(dir, { iters_per_epoch: 3000 });
    const r = run([
      'salmonn',
      'train',
      '--cfg-path',
      cfg,
      '--options',
      'run.iters_per_epoch=1',
      'run.optims.max_epoch=1',
      `run.output_dir=${path.join(dir, 'o2')}`,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/1 epochs × 1 iterations of batch 2 = 1 optimizer steps/);
    expect(fs.existsSync(path.join(dir, 'o2', 'log.txt'))).toBe(true);
    expect(run(['salmonn', 'train', '--cfg-path', cfg, '--options', 'run.seed.x=1']).err).toMatch(/--options run\.seed\.x: seed is a setting, not a block/);
  }, 300_000);
});
