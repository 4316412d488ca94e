// et.systems.LanguageBind (the binding wrapper) and LanguageBindClassifier (the SemEval team's
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
    const lb = await et.systems.LanguageBind.fromPretrained({ video: fx('lb_video'), audio: fx('lb_audio') });
    expect(lb.modalities).toEqual(['video', 'audio']);
    const v = await io('lb_video'), a = await io('lb_audio');
    const out = await lb.forward({ video: v.get('pixel_values')!, audio: a.get('pixel_values')!, inputIds: a.get('input_ids')!, attentionMask: a.get('attention_mask')! });
    expect(maxAbsDiff(out.video!, v.get('video')!)).toBeLessThan(TOL);
    expect(maxAbsDiff(out.audio!, a.get('audio')!)).toBeLessThan(TOL);
    expect(maxAbsDiff(out.language!, a.get('language')!)).toBeLessThan(TOL);
    // use_temp=False: unit vectors
    const plain = await et.systems.LanguageBind.fromPretrained({ video: fx('lb_video') }, { useTemp: false });
    const u = (await plain.forward({ video: v.get('pixel_values')! })).video!;
    expect(maxAbsDiff(u.mul(Math.exp(1.3)), v.get('video')!)).toBeLessThan(TOL);
    await rejectsWith(() => plain.forward({ audio: a.get('pixel_values')! }), 'ERR_INVALID_ARG', /video/);
    await rejectsWith(() => et.systems.LanguageBind.fromPretrained({ depth: fx('lb_video') } as never), 'ERR_INVALID_ARG', /depth/);
  });

  it('the classifier concatenates video, audio, language into Linear(d·3, 7, bias=False) with cross-entropy', async () => {
    const lb = await et.systems.LanguageBind.fromPretrained({ video: fx('lb_video'), audio: fx('lb_audio') });
    const model = et.systems.LanguageBindClassifier.create({ modalities: ['video', 'audio', 'language'], binder: lb });
    expect(model.classifier.config).toMatchObject({ in_features: 72, out_features: 7, bias: false });
    const v = await io('lb_video'), a = await io('lb_audio');
    const labels = et.tensor([3, 0], { dtype: 'int64' });
    const { loss, logits } = await model.forward({ video: v.get('pixel_values')!, audio: a.get('pixel_values')!, inputIds: a.get('input_ids')!, attentionMask: a.get('attention_mask')!, labels });
    const ref = et.cat([v.get('video')!, a.get('audio')!, a.get('language')!], -1).matmul(model.classifier.parameters()[0].transpose(0, 1));
    expect(maxAbsDiff(logits, ref)).toBeLessThan(1e-3);
    const refLoss = et.functional.crossEntropy(ref, labels).item();
    expect(Math.abs(loss!.item() - refLoss)).toBeLessThan(1e-4);
    // on cached features alone
    const head = et.systems.LanguageBindClassifier.create({ modalities: ['video', 'audio', 'language'], embedDim: 24 });
    await head.loadStateDict(new Map([['classifier.weight', model.classifier.parameters()[0]]]));
    const cached = await head.forward({ features: et.cat([v.get('video')!, a.get('audio')!, a.get('language')!], -1), labels });
    expect(maxAbsDiff(cached.logits, ref)).toBeLessThan(1e-5);
    await rejectsWith(() => head.forward({ video: v.get('pixel_values')! }), 'ERR_INVALID_ARG', /no towers/);
    await rejectsWith(() => model.forward({ video: v.get('pixel_values')!, audio: a.get('pixel_values')! }), 'ERR_INVALID_ARG', /inputIds/);
    await rejectsWith(() => head.forward({ features: et.zeros([2, 10]) }), 'ERR_INVALID_ARG', /72/);
    throwsWith(() => et.systems.LanguageBindClassifier.create({ modalities: ['video', 'video'] as never }), 'ERR_INVALID_ARG', /distinct/);
    throwsWith(() => et.systems.LanguageBindClassifier.create({ modalities: ['image'], binder: lb }), 'ERR_INVALID_ARG', /tower/);
  });

  it('with LoRA kept on a LoRA-tuned release, the adapters and the head train end to end', async () => {
    const lb = await et.systems.LanguageBind.fromPretrained({ video: fx('lb_video_lora') }, { lora: 'keep' });
    const model = et.systems.LanguageBindClassifier.create({ modalities: ['video', 'language'], binder: lb });
    const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
    expect(trainable.filter((n) => n.includes('.lora_')).length).toBe(16);
    expect(trainable).toContain('classifier.weight');
    lb.language.freeze();
    const v = await io('lb_video');
    const { loss } = await model.forward({ video: v.get('pixel_values')!, inputIds: v.get('input_ids')!, attentionMask: v.get('attention_mask')!, labels: et.tensor([1, 5], { dtype: 'int64' }) });
    await loss!.backward();
    const lora = model.namedParameters().filter(([n]) => n.includes('lora_B'));
    expect(lora.every(([, p]) => p.grad !== null && p.grad.abs().max().item() > 0)).toBe(true);
  });
});
