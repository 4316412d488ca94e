// `npx emotorch spectra finetune` (dist/cli/main.js, spawned) with scripts/finetune.sh's flags as
// main.py parses them, on <data_path>/<task>/{train,valid,test}.pkl: the test scores it prints equal
// those of et.systems.spectra.Spectra.finetune run with the same settings through the public API; the
// original's flag gaps (no --mode, no --transcripts) are handled and its other mistakes named.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const run = (args: string[], cwd?: string) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd, env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('emotorch spectra finetune', () => {
  it('fine-tunes as Spectra.finetune does and prints the test scores', async () => {
    const root = tmpdir();
    fs.mkdirSync(path.join(root, 'mosi'));
    for (const s of ['train', 'valid', 'test']) fs.copyFileSync(path.join(FIXTURES, 'pickle', 'spectra_samples.pkl'), path.join(root, 'mosi', `${s}.pkl`));
    const model = path.join(FIXTURES, 'spectra', 'pretrained');
    const outDir = path.join(root, 'out');
    // finetune.sh's line as written (no --mode, no --transcripts), on the tiny data
    const r = run([
      'spectra',
      'finetune',
      '--apex_level=1',
      '--batch_size=2',
      '--epochs=2',
      '--grad_acc=1',
      '--lr=2e-5',
      `--model_path=${model}`,
      '--task=mosi',
      '--data_path',
      root,
      '--audio_length',
      '0.1',
      '--dont_show',
      '--output_dir',
      outDir,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(fs.existsSync(path.join(outDir, 'log.jsonl'))).toBe(true);

    const ds = (s: string) => et.data.SpectraDataset.fromFile(path.join(root, 'mosi', `${s}.pkl`), { task: 'mosi' });
    const [train, valid, test] = [await ds('train'), await ds('valid'), await ds('test')];
    et.manualSeed(42); // as main.py (and the CLI) before the model and its new head are made
    const { trainer } = await et.systems.spectra.Spectra.finetune({
      task: 'mosi',
      model,
      train,
      eval: valid,
      collate: { audioLength: 1600, textLength: 512 },
      args: {
        output_dir: path.join(root, 'lib'),
        per_device_train_batch_size: 2,
        per_device_eval_batch_size: 2,
        num_train_epochs: 2,
        gradient_accumulation_steps: 1,
        learning_rate: 2e-5,
        weight_decay: 0.01,
        max_grad_norm: 1,
        seed: 42,
        warmup_steps: 0,
        lr_scheduler_type: 'cosine',
        disable_tqdm: true,
        report_to: 'none',
      },
    });
    const m = await trainer.evaluate(test, 'test');
    const line = r.out.split('\n').find((l) => l.startsWith('test: '))!;
    for (const k of ['MAE', 'Corr', 'Non0_acc_2', 'Mult_acc_7']) {
      const got = new RegExp(`${k} (-?[\\d.]+|NaN)`).exec(line);
      expect(got, `${k} in '${line}'`).not.toBeNull();
      const want = m[`test_${k}`] as number;
      if (Number.isNaN(want)) expect(got![1]).toBe('NaN');
      else expect(Number(got![1])).toBeCloseTo(want, 3);
    }

    // mistakes are named: a pre-training mode, an unknown task, a missing split
    expect(run(['spectra', 'finetune', '--mode', 'pretrain', `--model_path=${model}`, '--task=mosi', '--data_path', root]).code).toBe(2);
    expect(run(['spectra', 'finetune', `--model_path=${model}`, '--task=meld', '--data_path', root]).err).toMatch(/--task takes/);
    const missing = run(['spectra', 'finetune', `--model_path=${model}`, '--task=iemocap', '--data_path', root]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/ERR_IO: .*iemocap.train\.pkl' does not exist/);
  }, 300_000);
});

// AlibabaResearch/DAMO-ConvAI spectra/scripts/finetune.sh (lines 4, 6, 8, 10), each line as written
// after `python ../main.py`; only /PATH/OF/YOUR/SPECTRA/CHECKPOINT is mapped (to the tiny fixture),
// and main.py's default --data_path ./data is a folder of the fixtures' pickles in the working folder
const FINETUNE_SH = [
  '--apex_level=1 --batch_size=24 --epochs=5 --grad_acc=1 --show_inner_progress --lr=2e-5 --model_path=/PATH/OF/YOUR/SPECTRA/CHECKPOINT --task=mosi',
  '--apex_level=1 --batch_size=24 --epochs=5 --grad_acc=1 --show_inner_progress --lr=2e-5 --model_path=/PATH/OF/YOUR/SPECTRA/CHECKPOINT --task=mosei',
  '--apex_level=1 --batch_size=24 --epochs=5 --grad_acc=1 --show_inner_progress --lr=2e-5 --model_path=/PATH/OF/YOUR/SPECTRA/CHECKPOINT --task=iemocap --multi_audio --use_turn_ids',
  '--apex_level=1 --batch_size=24 --epochs=5 --grad_acc=1 --show_inner_progress --lr=2e-5 --model_path=/PATH/OF/YOUR/SPECTRA/CHECKPOINT --task=mosi',
];

describe("SPECTRA's scripts/finetune.sh, every line as written", () => {
  it('runs each line and prints its test scores; main.py flags it does not use are named on stderr, not refused', () => {
    const root = tmpdir();
    // the tiny fixture with WavLM's 320-sample frame step (its strides 5·2·2 would give 8000 frames
    // for main.py's default 10 s of audio, and attention over them tens of GB; strides shape no weight)
    const model = path.join(root, 'spectra-checkpoint');
    fs.cpSync(path.join(FIXTURES, 'spectra', 'pretrained'), model, { recursive: true });
    const audioConfig = JSON.parse(fs.readFileSync(path.join(model, 'audio_config.json'), 'utf8'));
    fs.writeFileSync(path.join(model, 'audio_config.json'), JSON.stringify({ ...audioConfig, conv_stride: [5, 8, 8] }));
    for (const [task, pkl] of [
      ['mosi', 'spectra_samples.pkl'],
      ['mosei', 'spectra_samples.pkl'],
      ['iemocap', 'spectra_indexed.pkl'],
    ]) {
      fs.mkdirSync(path.join(root, 'data', task), { recursive: true });
      for (const s of ['train', 'valid', 'test']) fs.copyFileSync(path.join(FIXTURES, 'pickle', pkl), path.join(root, 'data', task, `${s}.pkl`));
    }
    for (const line of FINETUNE_SH) {
      const argv = line.replace('/PATH/OF/YOUR/SPECTRA/CHECKPOINT', model).split(' ');
      const r = run(['spectra', 'finetune', ...argv], root);
      expect(r.code, `${line}\n${r.err}`).toBe(0);
      expect(r.out).toMatch(/^test: /m);
    }
    expect(fs.readdirSync(path.join(root, 'output')).sort()).toEqual(['spectra-iemocap', 'spectra-mosei', 'spectra-mosi']);
    // train-960.sh's pre-training flags and the launcher's --local_rank are accepted and named as not used
    const r = run(
      [
        'spectra',
        'finetune',
        `--model_path=${model}`,
        '--task=mosi',
        '--audio_path=/PATH/OF/YOUR/WAVLM',
        '--text_path=/PATH/OF/YOUR/ROBERTA',
        '--model_save_path=/x',
        '--model_name=spectra',
        '--save_interval=25',
        '--local_rank=0',
        '--epochs=1',
        '--dont_show',
      ],
      root,
    );
    expect(r.code, r.err).toBe(0);
    for (const f of ['audio_path', 'text_path', 'model_save_path', 'model_name', 'save_interval', 'local_rank'])
      expect(r.err).toMatch(new RegExp(`--${f} is accepted .* not used`));
  }, 600_000);
});
