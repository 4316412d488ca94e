// `npx emotorch spectra process-pretrain` (process_pretrain.sh's flags) and `spectra pretrain`
// (scripts/train-960.sh's flags), spawned from dist/cli, on a generated corpus: audio + Google
// Speech-to-Text word times → transcripts.pkl and clips; pre-training from a WavLM and a RoBERTa
// folder, one process and data-parallel under emotorch-run; what it saves loads into
// Spectra.fromPretrained. The corpus builder is checked against process_pretrain.py's rules.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir, rejectsWith } from '../helpers';
import { VOCAB, corpus, tokenizerJson, tinyEncoders } from '../spectra-helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const RUN = path.join(__dirname, '..', '..', 'dist', 'cli', 'run.js');
const env = { ...process.env, OMP_NUM_THREADS: '1' };
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

let root: string, textPath: string, audioPath: string;
beforeAll(async () => {
  root = tmpdir();
  corpus(root);
  ({ textPath, audioPath } = await tinyEncoders(root));
});

describe('emotorch spectra process-pretrain', () => {
  it("builds the corpus with process_pretrain.py's rules from process_pretrain.sh's flags", async () => {
    const out = path.join(root, 'processed');
    const r = run([
      'spectra',
      'process-pretrain',
      '--speech_dir',
      path.join(root, 'speech'),
      '--text_dir',
      path.join(root, 'text'),
      '--save_processed_speech_dir',
      out,
      '--save_processed_text_filename',
      'transcripts.pkl',
      '--hours',
      '960',
      '--max_speech_slice_length',
      '2',
      '--sample_rate',
      '16000',
      '--tokenizer',
      textPath,
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/total: \d+ audio slices/);
    const entries = (await et.io.readPickle(path.join(out, 'transcripts.pkl'))) as unknown[][];
    expect(entries.length).toBeGreaterThan(6);
    const docs = (show: string, e: number) =>
      JSON.parse(fs.readFileSync(path.join(root, 'text', show, `ep${e}.json`), 'utf8')).results[1].alternatives[0].words as Array<Record<string, string>>;
    entries.forEach((entry, i) => {
      const [npy, ids] = entry as [string, number[]];
      const words = entry.slice(2, -1) as Array<[string, number, number, number, number]>;
      const prev = entry[entry.length - 1] as number;
      expect(path.isAbsolute(npy) && fs.existsSync(npy)).toBe(true);
      expect(npy.endsWith(`${i}.npy`)).toBe(true);
      // <s> word tokens </s>; each word's one token where it says
      expect(ids[0]).toBe(0);
      expect(ids[ids.length - 1]).toBe(2);
      for (const [w, a, b] of words) expect(ids.slice(a, b)).toEqual([VOCAB[w]]);
      // clips of at most 2 s (+ 0.1 s), samples offsets in 1600-sample steps
      const clip = et.io.readNpy(npy).data;
      expect(clip.length).toBeLessThanOrEqual(2.1 * 16000);
      expect(words.every(([, , , s0, s1]) => s0 % 1600 === 0 && s1 % 1600 === 0 && s1 <= clip.length)).toBe(true);
      // linked only to the clip just before
      if (prev >= 0) expect(prev).toBe(i - 1);
    });
    expect(entries.filter((e) => (e[e.length - 1] as number) >= 0).length).toBeGreaterThan(3);
    // the first clip's words are the first words of show_a/ep0, lower-cased
    expect((entries[0].slice(2, -1) as string[][]).map((w) => w[0])).toEqual(
      docs('show_a', 0)
        .slice(0, entries[0].length - 3)
        .map((w) => w.word.toLowerCase()),
    );
  }, 120_000);

  it("process_pretrain.py's word rules: times rounded half to even, long words cut to 3 s, clips split at the limit; bad alignments are coded errors", async () => {
    const dir = tmpdir();
    corpus(dir, [
      [
        { startTime: '0.25s', endTime: '0.35s', word: 'Hello' },
        { startTime: '0.5s', endTime: '4.5s', word: 'there' },
        { startTime: '4.6s', endTime: '8.9s', word: 'How' },
        { startTime: '9.0s', endTime: '9.6s', word: 'are' },
      ],
      [{ startTime: '0.5s', endTime: '0.9s', word: 'you' }],
      [{ startTime: '0.5s', endTime: '0.9s', word: 'fine' }],
    ]);
    const tok = et.data.Tokenizer.fromJSON(tokenizerJson() as never);
    const r = await et.systems.spectra.buildSpectraPretrainCorpus({
      speechDir: path.join(dir, 'speech'),
      textDir: path.join(dir, 'text'),
      outDir: path.join(dir, 'out'),
      transcriptsName: 't.pkl',
      encode: (w) => tok.encode(w),
    });
    const e = (await et.io.readPickle(r.transcripts)) as unknown[][];
    // 'hello' 0.25 → 2 (half to even), 0.35 → 4; 'there' 0.5–4.5 s is cut to 5–35 tenths; 'How' (capitalised) keeps its end: 59–89;
    // all within 10 s of the clip's start: one clip with four words; times relative to its start (2 tenths), × 1600
    expect(e[0].slice(2, -1)).toEqual([
      ['hello', 1, 2, 0, 3 * 1600],
      ['there', 2, 3, 3 * 1600, 34 * 1600],
      ['how', 3, 4, 57 * 1600, 88 * 1600],
      ['are', 4, 5, 88 * 1600, 95 * 1600],
    ]);
    expect(e.map((x) => x[x.length - 1])).toEqual([-1, -1, -1]); // other files: not linked
    const across = await et.systems.spectra.buildSpectraPretrainCorpus({
      speechDir: path.join(dir, 'speech'),
      textDir: path.join(dir, 'text'),
      outDir: path.join(dir, 'out2'),
      transcriptsName: 't.pkl',
      encode: (w) => tok.encode(w),
      linkAcrossFiles: true,
    });
    const e2 = (await et.io.readPickle(across.transcripts)) as unknown[][];
    expect(e2.map((x) => x[x.length - 1])).toEqual([-1, 0, -1]); // the original links show_a's ep1 after ep0 (same folder, "5 s")
    // the words run past the audio
    fs.writeFileSync(
      path.join(dir, 'text', 'show_b', 'ep0.json'),
      JSON.stringify({ results: [{ alternatives: [{ words: [{ startTime: '0.5s', endTime: '30s', word: 'x' }] }] }] }),
    );
    await rejectsWith(
      et.systems.spectra.buildSpectraPretrainCorpus({
        speechDir: path.join(dir, 'speech'),
        textDir: path.join(dir, 'text'),
        outDir: path.join(dir, 'out3'),
        transcriptsName: 't.pkl',
        encode: (w) => tok.encode(w),
      }),
      'ERR_FORMAT',
      /past the end of .*show_b.*alignment does not match the audio/,
    );
    fs.writeFileSync(
      path.join(dir, 'text', 'show_b', 'ep0.json'),
      JSON.stringify({ results: [{ alternatives: [{ words: [{ startTime: 'soon', endTime: '1s', word: 'x' }] }] }] }),
    );
    await rejectsWith(
      et.systems.spectra.buildSpectraPretrainCorpus({
        speechDir: path.join(dir, 'speech'),
        textDir: path.join(dir, 'text'),
        outDir: path.join(dir, 'out4'),
        transcriptsName: 't.pkl',
        encode: (w) => tok.encode(w),
      }),
      'ERR_FORMAT',
      /word 0: a time like "1.300s"/,
    );
    fs.rmSync(path.join(dir, 'text', 'show_b', 'ep0.json'));
    await rejectsWith(
      et.systems.spectra.buildSpectraPretrainCorpus({
        speechDir: path.join(dir, 'speech'),
        textDir: path.join(dir, 'text'),
        outDir: path.join(dir, 'out5'),
        transcriptsName: 't.pkl',
        encode: (w) => tok.encode(w),
      }),
      'ERR_IO',
      /ep0\.json/,
    );
  }, 60_000);
});

describe('emotorch spectra pretrain', () => {
  it("pre-trains from --audio_path / --text_path with train-960.sh's flags and saves what Spectra loads", async () => {
    const data = path.join(root, 'processed');
    const save = path.join(root, 'runs');
    // train-960.sh's line, sizes made tiny; its save_interval 25 with 5 epochs saves nothing in the original
    const r = run([
      'spectra',
      'pretrain',
      '--apex_level=1',
      '--audio_length=2',
      `--audio_path=${audioPath}`,
      '--batch_size=4',
      '--data_path',
      data,
      '--epochs=2',
      '--grad_acc=2',
      '--lr=1e-4',
      `--model_save_path=${save}`,
      '--model_name=spectra',
      '--save_interval=25',
      `--text_path=${textPath}`,
      `--transcripts=${path.join(data, 'transcripts.pkl')}`,
      '--text_length=36',
    ]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/examples \(turns with a previous turn\)/);
    expect(r.out).toMatch(/saved: .*spectra-2/);
    const model = await et.systems.spectra.Spectra.fromPretrained(path.join(save, 'spectra-2'), { task: 'iemocap' });
    expect(model.loadInfo.skipped.length).toBe(20);
    const pre = await et.systems.spectra.SpectraForPreTraining.fromPretrained(path.join(save, 'spectra-2'));
    expect(pre.loadInfo.initialized).toEqual([]);
    // the RoBERTa body came from --text_path (its one-row token-type table is two rows here), the heads trained
    const roberta = (await et.io.loadSafetensors(path.join(FIXTURES, 'roberta', 'model.safetensors'))).tensors;
    const ours = new Map(pre.namedParameters());
    const emb = ours.get('model.text_encoder.embeddings.word_embeddings.weight')!;
    const theirs = roberta.get('embeddings.word_embeddings.weight') ?? roberta.get('roberta.embeddings.word_embeddings.weight')!;
    expect(emb.sub(theirs).abs().max().item()).toBeLessThan(0.01); // moved by 2 steps of lr 1e-4
    expect(emb.sub(theirs).abs().max().item()).toBeGreaterThan(0);
    // the logged losses are those trained on: mlm + mam + rs + span = loss at every step, also where
    // an epoch ends in a window shorter than --grad_acc (each divided by grad_acc there, as main.py)
    const log = fs
      .readFileSync(path.join(save, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.loss !== undefined);
    expect(log.length).toBeGreaterThan(1);
    for (const l of log) expect(Math.abs(l.mlm + l.mam + l.rs + l.span - l.loss)).toBeLessThan(1e-5 * l.loss);
  }, 240_000);

  it('data-parallel under emotorch-run (torch.distributed.launch --nproc_per_node): rank 0 saves once', async () => {
    const data = path.join(root, 'processed');
    const save = path.join(root, 'runs-dp');
    const r = spawnSync(
      process.execPath,
      [
        RUN,
        '--nproc-per-node',
        '2',
        CLI,
        'spectra',
        'pretrain',
        '--audio_length=2',
        `--audio_path=${audioPath}`,
        '--batch_size=2',
        '--data_path',
        data,
        '--epochs=1',
        '--grad_acc=2',
        `--model_save_path=${save}`,
        '--model_name=spectra',
        '--save_interval=1',
        `--text_path=${textPath}`,
        `--transcripts=${path.join(data, 'transcripts.pkl')}`,
        '--text_length=36',
        '--local_rank=0',
      ],
      { encoding: 'utf8', env, timeout: 240_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(save).filter((n) => n.startsWith('spectra'))).toEqual(['spectra-1']);
    // the Trainer's log beside it: the four losses each step
    const log = fs
      .readFileSync(path.join(save, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(log.some((l) => ['mlm', 'mam', 'rs', 'span'].every((k) => Number.isFinite(l[k])))).toBe(true);
    // both the loss and its components are the means over the ranks: they add up
    const steps = log.filter((x) => x.loss !== undefined);
    for (const l of steps) expect(Math.abs(l.mlm + l.mam + l.rs + l.span - l.loss)).toBeLessThan(1e-5 * l.loss);
    // windows of 2 micro-batches per rank (each backward synchronized, clipped after each): the first ends mid-epoch
    expect(steps[0].epoch).toBeLessThan(1);
    expect(r.stderr).toMatch(/--local_rank/); // accepted, named as unused
  }, 240_000);

  it('bad flags and inputs are named', async () => {
    const data = path.join(root, 'processed');
    const t = `--transcripts=${path.join(data, 'transcripts.pkl')}`;
    let r = run(['spectra', 'pretrain', t]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/give --audio_path and --text_path/);
    r = run(['spectra', 'pretrain', t, `--audio_path=${audioPath}`, `--text_path=${textPath}`, '--mode=finetune']);
    expect(r.err).toMatch(/this command pre-trains/);
    r = run(['spectra', 'pretrain', t, `--audio_path=${audioPath}`, `--text_path=${audioPath}`]);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/tokenizer|RoBERTa|config/i);
    r = run(['spectra', 'finetune', '--task=mosi', '--mode=pretrain', '--model_path=x']);
    expect(r.err).toMatch(/pre-train with npx emotorch spectra pretrain/);
    r = run(['spectra', 'pretrain', t, `--audio_path=${audioPath}`, `--text_path=${textPath}`, '--apex_level=1.5']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/--apex_level takes 0 to 3/);
    await rejectsWith(
      et.systems.spectra.SpectraPretrainDataset.fromFile(path.join(FIXTURES, 'spectra_pretrain', 'two_turns.pkl')),
      'ERR_INVALID_ARG',
      /at least 3 turns/,
    );
  }, 120_000);
});
