// et.systems.semeval.LanguageBind (the binding wrapper) and LanguageBindClassifier (the SemEval team's
// VideoAudioTextClassif) on the LanguageBind-shaped fixtures of scripts/fixtures/clip.py.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, throwsWith } from '../helpers';

const fx = (name: string) => path.join(FIXTURES, 'clip', name);
const io = async (name: string) => (await et.io.loadSafetensors(path.join(fx(name), 'io.safetensors'))).tensors;
const TOL = 4e-4;

describe('LanguageBind wrapper', () => {
  it('gives video, audio and language embeddings equal to the original wrapper, the language tower from the last folder', async () => {
    const lb = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video'), audio: fx('lb_audio') });
    expect(lb.modalities).toEqual(['video', 'audio']);
    const v = await io('lb_video'),
      a = await io('lb_audio');
    const out = await lb.forward({
      video: v.get('pixel_values')!,
      audio: a.get('pixel_values')!,
      inputIds: a.get('input_ids')!,
      attentionMask: a.get('attention_mask')!,
    });
    expect(maxAbsDiff(out.video!, v.get('video')!)).toBeLessThan(TOL);
    expect(maxAbsDiff(out.audio!, a.get('audio')!)).toBeLessThan(TOL);
    expect(maxAbsDiff(out.language!, a.get('language')!)).toBeLessThan(TOL);
    // use_temp=False: unit vectors
    const plain = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video') }, { useTemp: false });
    const u = (await plain.forward({ video: v.get('pixel_values')! })).video!;
    expect(maxAbsDiff(u.mul(Math.exp(1.3)), v.get('video')!)).toBeLessThan(TOL);
    await rejectsWith(() => plain.forward({ audio: a.get('pixel_values')! }), 'ERR_INVALID_ARG', /video/);
    await plain.to({ dtype: 'float64' }); // own parameters are replaced: the scale read is the moved one
    expect(plain.logitScale('video').dtype).toBe('float64');
    expect(maxAbsDiff((await plain.forward({ video: v.get('pixel_values')!.to({ dtype: 'float64' }) })).video!.to({ dtype: 'float32' }), u)).toBeLessThan(1e-5);
    await rejectsWith(() => et.systems.semeval.LanguageBind.fromPretrained({ depth: fx('lb_video') } as never), 'ERR_INVALID_ARG', /depth/);
  });

  it('the classifier concatenates video, audio, language into Linear(d·3, 7, bias=False) with cross-entropy', async () => {
    const lb = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video'), audio: fx('lb_audio') });
    const model = et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'audio', 'language'], binder: lb });
    expect(model.classifier.config).toMatchObject({ in_features: 72, out_features: 7, bias: false });
    const v = await io('lb_video'),
      a = await io('lb_audio');
    const labels = et.tensor([3, 0], { dtype: 'int64' });
    const { loss, logits } = await model.forward({
      video: v.get('pixel_values')!,
      audio: a.get('pixel_values')!,
      inputIds: a.get('input_ids')!,
      attentionMask: a.get('attention_mask')!,
      labels,
    });
    const ref = et.cat([v.get('video')!, a.get('audio')!, a.get('language')!], -1).matmul(model.classifier.parameters()[0].transpose(0, 1));
    expect(maxAbsDiff(logits, ref)).toBeLessThan(1e-3);
    const refLoss = et.functional.crossEntropy(ref, labels).item();
    expect(Math.abs(loss!.item() - refLoss)).toBeLessThan(1e-4);
    // on cached features alone
    const head = et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'audio', 'language'], embedDim: 24 });
    await head.loadStateDict(new Map([['classifier.weight', model.classifier.parameters()[0]]]));
    const cached = await head.forward({ features: et.cat([v.get('video')!, a.get('audio')!, a.get('language')!], -1), labels });
    expect(maxAbsDiff(cached.logits, ref)).toBeLessThan(1e-5);
    await rejectsWith(() => head.forward({ video: v.get('pixel_values')! }), 'ERR_INVALID_ARG', /no towers/);
    await rejectsWith(() => model.forward({ video: v.get('pixel_values')!, audio: a.get('pixel_values')! }), 'ERR_INVALID_ARG', /inputIds/);
    await rejectsWith(() => head.forward({ features: et.zeros([2, 10]) }), 'ERR_INVALID_ARG', /72/);
    throwsWith(() => et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'video'] as never }), 'ERR_INVALID_ARG', /distinct/);
    throwsWith(() => et.systems.semeval.LanguageBindClassifier.create({ modalities: ['image'], binder: lb }), 'ERR_INVALID_ARG', /tower/);
  });

  it('with LoRA kept on a LoRA-tuned release, the adapters and the head train end to end', async () => {
    const lb = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video_lora') }, { lora: 'keep' });
    const model = et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'language'], binder: lb });
    const trainable = model
      .namedParameters()
      .filter(([, p]) => p.requiresGrad)
      .map(([n]) => n);
    expect(trainable.filter((n) => n.includes('.lora_')).length).toBe(16);
    expect(trainable).toContain('classifier.weight');
    // the towers' logit_scale is no parameter, as the original wrapper (a plain dict) holds it: never trained, even after unfreeze
    expect(trainable.some((n) => n.includes('logit_scale'))).toBe(false);
    expect(lb.namedBuffers().map(([n]) => n)).toEqual(['video_logit_scale']);
    const ft = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video') });
    ft.unfreeze();
    expect(ft.logitScale('video').requiresGrad).toBe(false);
    expect(ft.trainableParameters().length).toBe(ft.parameters().length);
    expect(ft.stateDict().has('video_logit_scale')).toBe(true);
    lb.language.freeze();
    const v = await io('lb_video');
    const { loss } = await model.forward({
      video: v.get('pixel_values')!,
      inputIds: v.get('input_ids')!,
      attentionMask: v.get('attention_mask')!,
      labels: et.tensor([1, 5], { dtype: 'int64' }),
    });
    await loss!.backward();
    const lora = model.namedParameters().filter(([n]) => n.includes('lora_B'));
    expect(lora.every(([, p]) => p.grad !== null && p.grad.abs().max().item() > 0)).toBe(true);
  });

  it("lora: 'convert_to_lora' trains what the original's convert_to_lora leaves trainable: peft wraps vision_model.encoder only", async () => {
    const orig = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video_lora') }, { lora: 'convert_to_lora' });
    const keep = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video_lora') }, { lora: 'keep' });
    const trainableOf = (m: et.nn.Module) =>
      m
        .namedParameters()
        .filter(([n, p]) => p.requiresGrad && n.startsWith('video.'))
        .map(([n]) => n)
        .sort();
    const all = orig
      .namedParameters()
      .map(([n]) => n)
      .filter((n) => n.startsWith('video.'));
    // get_peft_model(vision_model.encoder, …) freezes the encoder's own tensors; the rest of the tower keeps requires_grad
    const want = all.filter((n) => /\.lora_[AB]\./.test(n) || !n.startsWith('video.vision_model.encoder.')).sort();
    expect(trainableOf(orig)).toEqual(want);
    expect(want.filter((n) => !/\.lora_[AB]\./.test(n))).toEqual([
      'video.vision_model.embeddings.class_embedding',
      'video.vision_model.embeddings.patch_embedding.weight',
      'video.vision_model.embeddings.position_embedding.weight',
      'video.vision_model.post_layernorm.bias',
      'video.vision_model.post_layernorm.weight',
      'video.vision_model.pre_layrnorm.bias',
      'video.vision_model.pre_layrnorm.weight',
      'video.visual_projection.weight',
    ]);
    expect(trainableOf(keep)).toEqual(want.filter((n) => /\.lora_[AB]\./.test(n)));
    // the weights are the same either way
    const v = await io('lb_video');
    const a = (await et.noGrad(() => orig.forward({ video: v.get('pixel_values')! }))).video!;
    const b = (await et.noGrad(() => keep.forward({ video: v.get('pixel_values')! }))).video!;
    expect(maxAbsDiff(a, b)).toBe(0);
    await rejectsWith(
      () => et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video_lora') }, { lora: 'peft' as never }),
      'ERR_INVALID_ARG',
      /convert_to_lora/,
    );
  });
});

describe('LanguageBind ECF data (clips made by ffmpeg)', () => {
  const hasFfmpeg = !!et.audio.findFfmpeg();
  it.skipIf(!hasFfmpeg)('collates clips and caches embeddings readable by EcfDataset, in the team label order', async () => {
    const { execFileSync } = await import('child_process');
    const fs = await import('fs');
    const { tmpdir } = await import('../helpers');
    const dir = tmpdir();
    const convs = [
      {
        conversation_ID: 7,
        conversation: [
          { utterance_ID: 1, text: 'hi', speaker: 'A', emotion: 'joy', video_name: 'dia7utt1.mp4' },
          { utterance_ID: 2, text: 'oh no', speaker: 'B', emotion: 'fear', video_name: 'dia7utt2.mp4' },
        ],
        'emotion-cause_pairs': [],
      },
    ];
    fs.writeFileSync(path.join(dir, 'ecf.json'), JSON.stringify(convs));
    for (const [u, c] of [
      [1, 'red'],
      [2, 'blue'],
    ]) {
      execFileSync('ffmpeg', [
        '-v',
        'error',
        '-f',
        'lavfi',
        '-i',
        `color=c=${c}:s=40x30:r=5:d=1`,
        '-f',
        'lavfi',
        '-i',
        'sine=frequency=440:duration=1',
        '-shortest',
        '-c:v',
        'libx264',
        '-preset',
        'ultrafast',
        '-pix_fmt',
        'yuv420p',
        '-c:a',
        'aac',
        '-y',
        path.join(dir, `dia7utt${u}.mp4`),
      ]);
    }
    const ds0 = await et.data.EcfDataset.fromFile(path.join(dir, 'ecf.json'));
    const items = [await ds0.get(0), await ds0.get(1)];
    const opts = {
      videoDir: dir,
      modalities: ['video', 'audio'] as et.systems.semeval.LanguageBindKey[],
      video: { numFrames: 4, size: 12 },
      audio: { numMelBins: 8, targetLength: 20, chunks: 'first' as const },
    };
    const batch = await et.systems.semeval.languageBindCollate(items, opts);
    expect(batch.video!.shape).toEqual([2, 3, 4, 12, 12]);
    expect(batch.audio!.shape).toEqual([2, 3, 8, 20]);
    expect(Array.from(batch.labels!.dataSync(), Number)).toEqual([4, 1]); // joy, fear in surprise, fear, sadness, neutral, joy, …
    const lb = await et.systems.semeval.LanguageBind.fromPretrained({ video: fx('lb_video'), audio: fx('lb_audio') });
    const direct = await lb.forward({ video: batch.video, audio: batch.audio });
    const files = await et.systems.semeval.languageBindEmbeddings(lb, items, { ...opts, outDir: path.join(dir, 'cache'), batchSize: 1 });
    const mtime = fs.statSync(files.video).mtimeMs;
    expect(await et.systems.semeval.languageBindEmbeddings(lb, items, { ...opts, outDir: path.join(dir, 'cache') })).toEqual(files);
    expect(fs.statSync(files.video).mtimeMs).toBe(mtime); // reused, not recomputed
    const ds = await et.data.EcfDataset.fromFile(path.join(dir, 'ecf.json'), { features: { files, order: ['video', 'audio'] } });
    const cached = et.systems.semeval.languageBindCachedCollate([await ds.get(0), await ds.get(1)]);
    expect(maxAbsDiff(cached.features!, et.cat([direct.video!, direct.audio!], -1))).toBeLessThan(1e-5);
    const head = et.systems.semeval.LanguageBindClassifier.create({ modalities: ['video', 'audio'], embedDim: 24 });
    expect((await head.forward(cached)).loss!.item()).toBeGreaterThan(0);
    fs.rmSync(path.join(dir, 'dia7utt2.mp4'));
    await rejectsWith(() => et.systems.semeval.languageBindCollate(items, opts), 'ERR_IO', /dia7utt2\.mp4/);
  });
});
