// fromPretrained(dir, { config }) lays validated overrides over the checkpoint's config (HF's
// from_pretrained(dir, **kwargs)); a model's config is read-only afterwards: writing it throws a
// coded error in strict and sloppy code alike (it used to be accepted and silently ignored).
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith } from '../helpers';

type Loader = (o?: { config?: Record<string, unknown> }) => Promise<et.nn.Module & { config: Record<string, unknown> }>;
const f = (...p: string[]) => path.join(FIXTURES, ...p);
const CASES: Array<[string, Loader, Record<string, unknown>]> = [
  ['LLaMA', (o) => et.nn.LlamaForCausalLM.fromPretrained(f('llama'), o as never) as never, { rms_norm_eps: 1e-3 }],
  ['Whisper', (o) => et.nn.WhisperEncoder.fromPretrained(f('whisper'), o as never) as never, { dropout: 0.25 }],
  ['Whisper (OpenAI names)', (o) => et.nn.WhisperEncoder.fromPretrained(f('whisper', 'openai.safetensors'), o as never) as never, { dropout: 0.25 }],
  ['BEATs .pt', (o) => et.nn.BeatsEncoder.fromPretrained(f('beats', 'beats.pt'), o as never) as never, { dropout: 0.25 }],
  ['WavLM', (o) => et.nn.WavLMModel.fromPretrained(f('wavlm_base'), o as never) as never, { layer_norm_eps: 1e-3 }],
  ['RoBERTa', (o) => et.nn.RobertaModel.fromPretrained(f('roberta'), o as never) as never, { layer_norm_eps: 1e-3 }],
  ['QFormer', (o) => et.nn.QFormer.fromPretrained(f('qformer'), o as never) as never, { layer_norm_eps: 1e-3 }],
  ['Wav2Vec2', (o) => et.nn.Wav2Vec2Model.fromPretrained(f('wav2vec2', 'base'), o as never) as never, { layer_norm_eps: 1e-3 }],
];

describe('fromPretrained(dir, { config }) and read-only configs', () => {
  for (const [name, load, override] of CASES) {
    it(`${name}: overrides a field, refuses unknown names and bad values, and its config cannot be written`, async () => {
      const [k, v] = Object.entries(override)[0];
      const plain = await load();
      expect(plain.config[k]).not.toBe(v);
      const m = await load({ config: override });
      expect(m.config[k]).toBe(v);
      // every other field as the checkpoint has it
      for (const [key, val] of Object.entries(plain.config)) if (key !== k) expect(m.config[key]).toEqual(val);
      await rejectsWith(() => load({ config: { no_such_field: 1 } }), 'ERR_INVALID_ARG', /opts\.config\.no_such_field/);
      await rejectsWith(() => load({ config: { [k]: 'many' } }), 'ERR_INVALID_ARG', new RegExp(`config\\.${k}`));
      await rejectsWith(async () => load({ config: 5 as never }), 'ERR_INVALID_ARG', /opts\.config/);
      // strict code (this module), sloppy code (a Function body), the whole object, and deletes
      const before = JSON.stringify(m.config);
      for (const write of [
        () => {
          m.config[k] = 0.5;
        },
        new Function('m', 'k', 'm.config[k] = 0.5;') as (m: unknown, k: string) => void,
        new Function('m', 'm.config = {};') as (m: unknown) => void,
        () => {
          delete m.config[k];
        },
      ]) {
        let err: unknown;
        try {
          write(m, k);
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(et.EmotorchError);
        expect((err as et.EmotorchError).code).toBe('ERR_INVALID_ARG');
        expect((err as Error).message).toMatch(/read-only/);
      }
      expect(JSON.stringify(m.config)).toBe(before);
    });
  }

  it('the override reaches the math: LLaMA with another rms_norm_eps gives other logits', async () => {
    const io = (await et.io.loadSafetensors(f('llama', 'io.safetensors'))).tensors;
    const ids = io.get('input_ids')!;
    const a = await et.nn.LlamaForCausalLM.fromPretrained(f('llama'));
    const b = await et.nn.LlamaForCausalLM.fromPretrained(f('llama'), { config: { rms_norm_eps: 0.5 } });
    const la = (await et.noGrad(() => a.forward({ inputIds: ids }))).logits;
    const lb = (await et.noGrad(() => b.forward({ inputIds: ids }))).logits;
    expect(maxAbsDiff(la, lb)).toBeGreaterThan(1e-3);
  });

  it("SPECTRA: the checkpoint's audio config field has_audio_cls can be turned off without editing its JSON", async () => {
    const dir = f('spectra', 'finetuned');
    const m = await et.systems.spectra.Spectra.fromPretrained(dir, { config: { audio: { has_audio_cls: false } } });
    expect(m.config.audio.has_audio_cls).toBe(false);
    expect((await et.systems.spectra.Spectra.fromPretrained(dir)).config.audio.has_audio_cls).toBe(true);
    await rejectsWith(
      () => et.systems.spectra.Spectra.fromPretrained(dir, { config: { audio: { hass_audio_cls: false } } as never }),
      'ERR_INVALID_ARG',
      /opts\.config\.hass_audio_cls/,
    );
    await rejectsWith(() => et.systems.spectra.Spectra.fromPretrained(dir, { config: { vision: {} } as never }), 'ERR_INVALID_ARG', /opts\.config/);
    expect(() => {
      (m.config.audio as { has_audio_cls: boolean }).has_audio_cls = true;
    }).toThrow(/read-only/);
  });
});
