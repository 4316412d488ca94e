// `npx emotorch semeval train | predict` (dist/cli/main.js, spawned) on the sample ECF data:
// the seed's classifier trained from embedding files, the model folder it leaves, and the
// Subtask 2 submission file, equal to what the library's own forward and selfCausePairs give,
// scored when the file has gold emotions; usage errors name what is wrong.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { tmpdir } from '../helpers';
import { makeSampleData } from '../train/util';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const run = (args: string[], cwd?: string) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd, env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('emotorch semeval', () => {
  it('trains the seed classifier, then writes the submission the library would write', async () => {
    const dir = tmpdir();
    makeSampleData(dir, 12);
    const convs = JSON.parse(fs.readFileSync(path.join(dir, 'ecf.json'), 'utf8')) as Array<Record<string, unknown>>;
    const write = (name: string, xs: unknown[]) => {
      fs.writeFileSync(path.join(dir, name), JSON.stringify(xs));
      return path.join(dir, name);
    };
    const trainFile = write(
      'train.json',
      convs.filter((_, i) => i % 4 !== 0),
    );
    const devFile = write(
      'dev.json',
      convs.filter((_, i) => i % 4 === 0),
    );
    // a test file as released: no emotions, no pairs
    const testFile = write(
      'test.json',
      convs
        .filter((_, i) => i % 4 === 0)
        .map((c) => ({
          conversation_ID: c.conversation_ID,
          conversation: (c.conversation as Array<Record<string, unknown>>).map(({ emotion: _e, ...u }) => u),
        })),
    );
    const feats = ['--features', `text=${path.join(dir, 'ecf_text.safetensors')}`, `audio=${path.join(dir, 'ecf_audio.safetensors')}`];
    const out = path.join(dir, 'out');
    const t = run([
      'semeval',
      'train',
      '--train_file',
      trainFile,
      '--eval_file',
      devFile,
      ...feats,
      '--output_dir',
      out,
      '--learning_rate',
      '5e-2',
      '--gradient_accumulation_steps',
      '1',
      '--num_train_epochs',
      '8',
    ]);
    expect(t.code, t.err).toBe(0);
    const m = /eval: macro F1 ([\d.]+), weighted F1 ([\d.]+)/.exec(t.out)!;
    expect(Number(m[2])).toBeGreaterThan(0.5); // class-dependent embeddings: chance is about 0.14
    expect(JSON.parse(fs.readFileSync(path.join(out, 'semeval_config.json'), 'utf8')).modalities).toEqual({ text: 16, audio: 16 });
    expect(fs.readdirSync(out).some((f) => f.startsWith('checkpoint-'))).toBe(true);

    const sub = path.join(dir, 'Subtask_2_pred.json');
    const p = run(['semeval', 'predict', '--model_dir', out, '--test_file', testFile, ...feats, '--output_file', sub]);
    expect(p.code, p.err).toBe(0);
    expect(p.out).not.toMatch(/gold labels/);
    // the library on the same model and file
    const model = et.systems.semeval.ConcatFusionClassifier.create({ modalities: { text: 16, audio: 16 } });
    await model.load(path.join(out, 'model.safetensors'));
    model.eval();
    const ds = await et.data.EcfDataset.fromFile(testFile, {
      features: { files: { text: path.join(dir, 'ecf_text.safetensors'), audio: path.join(dir, 'ecf_audio.safetensors') } },
    });
    const items = await Promise.all([...Array(ds.length).keys()].map((i) => ds.get(i)));
    const { logits } = await et.noGrad(() => model.forward(et.systems.semeval.ConcatFusionClassifier.collate(items)));
    const pred = Array.from(logits.argmax(-1).dataSync(), Number);
    expect(JSON.parse(fs.readFileSync(sub, 'utf8'))).toEqual(et.metrics.ecfSubmission(items, et.systems.semeval.selfCausePairs(items, pred)));
    // with gold emotions in the file, the scores too
    const g = run(['semeval', 'predict', '--model_dir', out, '--test_file', devFile, ...feats, '--output_file', path.join(dir, 'dev_pred.json')]);
    expect(g.code, g.err).toBe(0);
    expect(g.out).toMatch(/gold labels in the file: macro F1 [\d.]+, weighted F1 [\d.]+; Subtask 2 w-avg F1 [\d.]+/);

    // mistakes
    expect(
      run(['semeval', 'predict', '--model_dir', out, '--test_file', testFile, '--features', `audio=${path.join(dir, 'ecf_audio.safetensors')}`]),
    ).toMatchObject({ code: 2 });
    expect(run(['semeval', 'train', '--train_file', trainFile]).err).toMatch(/--features is required/);
    expect(run(['semeval', 'train', '--train_file', trainFile, '--features', 'text']).code).toBe(2);
    const missing = run(['semeval', 'predict', '--model_dir', dir, '--test_file', testFile, ...feats]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/ERR_IO: .*not a 'semeval train' output/);
  }, 300_000);
});
