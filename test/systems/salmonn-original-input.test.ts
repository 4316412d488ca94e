/**
 * SALMONN's inputs as the originals take them (issue 56 item 4):
 * - the YAML's `model:` block as `SALMONN.from_config` reads it: every key it reads (listed from
 *   its source by scripts/fixtures/salmonn_yaml_keys.py) and decode_config.yaml's block as written
 *   are taken by `new Salmonn(parts, config)` (used, or named in SALMONN_YAML_KEYS as not used);
 *   only unknown keys are refused;
 * - the trajectory fork's multi-turn input, equal sample for sample to its own
 *   `prepare_multi_sample` run on the same wavs (scripts/fixtures/salmonn_multi_turn.py).
 */
import { describe, it, expect, beforeAll } from 'vitest';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { salmonnInput, salmonnWavPaths } from '../../lib/cli/salmonn';
import { FIXTURES, rejectsWith, throwsWith, tmpdir } from '../helpers';

const ORIGINAL = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'from_config.json'), 'utf8')) as {
  from_config: Record<string, unknown>;
  decode_config: { model: Record<string, unknown>; generate: Record<string, unknown> };
};
const TINY = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'config.json'), 'utf8'));
const PARTS = { whisper: path.join(FIXTURES, 'whisper'), beats: path.join(FIXTURES, 'beats', 'beats.pt'), llm: path.join(FIXTURES, 'salmonn', 'llm') };

describe("SALMONN's YAML model block as the original's from_config reads it", () => {
  let parts: { whisper: et.nn.WhisperEncoder; beats: et.nn.BeatsEncoder; llm: et.nn.LlamaForCausalLM; tokenizer: et.data.Tokenizer };
  beforeAll(async () => {
    parts = {
      whisper: await et.nn.WhisperEncoder.fromPretrained(PARTS.whisper),
      beats: await et.nn.BeatsEncoder.fromPretrained(PARTS.beats),
      llm: await et.nn.LlamaForCausalLM.fromPretrained(PARTS.llm),
      tokenizer: await et.data.Tokenizer.fromFile(PARTS.llm),
    };
  });
  const fresh = () => ({ ...parts, llm: parts.llm });

  it('every key from_config reads is a config field or named in SALMONN_YAML_KEYS', () => {
    const keys = Object.keys(ORIGINAL.from_config);
    expect(keys.length).toBe(25);
    const unplaced = keys.filter((k) => !(k in et.systems.salmonn.SALMONN_DEFAULTS) && !(k in et.systems.salmonn.SALMONN_YAML_KEYS));
    expect(unplaced).toEqual([]);
    // and the runner's test_prompt_path, which decode_config.yaml's model block carries too
    expect(Object.keys(ORIGINAL.decode_config.model).filter((k) => !keys.includes(k))).toEqual(['test_prompt_path']);
    expect(et.systems.salmonn.SALMONN_YAML_KEYS.test_prompt_path).toMatch(/not used/);
  });

  it("`new Salmonn(parts, yaml.model)` takes decode_config.yaml's model block as written (and its generate block)", async () => {
    const llm = await et.nn.LlamaForCausalLM.fromPretrained(PARTS.llm);
    const m = new et.systems.salmonn.Salmonn({ ...parts, llm }, {
      ...ORIGINAL.decode_config.model,
      ...ORIGINAL.decode_config.generate,
      qformer: TINY.qformer,
    } as never);
    expect(m.config.lora_rank).toBe(8);
    expect(m.config.num_beams).toBe(4);
    expect(Object.keys(m.config)).not.toContain('llama_path'); // taken, not a field
  });

  it("every key at from_config's own default is taken (prompt_template aside: its default '' has no {} for the prompt)", async () => {
    const llm = await et.nn.LlamaForCausalLM.fromPretrained(PARTS.llm);
    const { prompt_template: _t, ...defaults } = ORIGINAL.from_config;
    const m = new et.systems.salmonn.Salmonn({ ...parts, llm }, { ...defaults, qformer: TINY.qformer } as never);
    expect(m.config.max_txt_len).toBe(128);
    expect(() => new et.systems.salmonn.Salmonn(fresh(), { prompt_template: '' })).toThrow(/prompt_template/);
  });

  it('an unknown key is still refused; the keys emotorch does not implement are refused when set, not ignored', () => {
    throwsWith(
      () => new et.systems.salmonn.Salmonn(fresh(), { llama_pth: 'x' } as never),
      'ERR_INVALID_ARG',
      /SALMONN config\.llama_pth but received "a name it does not have"/,
    );
    // low_resource true over a float LLaMA would be the key ignored (fromPretrained loads the LLaMA in int8 for it)
    throwsWith(() => new et.systems.salmonn.Salmonn(fresh(), { low_resource: true }), 'ERR_INVALID_ARG', /config\.low_resource true.*parts\.llm/);
    throwsWith(() => new et.systems.salmonn.Salmonn(fresh(), { low_resource: 'True' as never }), 'ERR_INVALID_ARG', /config\.low_resource/);
    throwsWith(() => new et.systems.salmonn.Salmonn(fresh(), { speech_llama_proj_model: 'proj.pth' }), 'ERR_INVALID_ARG', /config\.speech_llama_proj_model/);
    throwsWith(() => new et.systems.salmonn.Salmonn(fresh(), { device_8bit: -1 }), 'ERR_INVALID_ARG', /device_8bit/);
    throwsWith(() => new et.systems.salmonn.Salmonn(fresh(), { prompt_path: 3 } as never), 'ERR_INVALID_ARG', /config\.prompt_path/);
  });

  it("fromPretrained loads from the config's paths as from_config does; a path given twice differently is refused", async () => {
    const m = await et.systems.salmonn.Salmonn.fromPretrained({
      config: { ...TINY, llama_path: PARTS.llm, whisper_path: PARTS.whisper, beats_path: PARTS.beats, ckpt: path.join(FIXTURES, 'salmonn', 'salmonn.pth') },
    } as never);
    const ref = await et.systems.salmonn.Salmonn.fromPretrained({ ...PARTS, checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn.pth'), config: TINY });
    const w = new Float32Array(16000).map((_, i) => Math.sin(i / 7) * 0.3);
    expect(await m.generate([w], 'Describe.', { maxNewTokens: 3, numBeams: 1 })).toEqual(
      await ref.generate([w], 'Describe.', { maxNewTokens: 3, numBeams: 1 }),
    );
    await rejectsWith(
      et.systems.salmonn.Salmonn.fromPretrained({ ...PARTS, config: { ...TINY, whisper_path: '/elsewhere' } } as never),
      'ERR_INVALID_ARG',
      /opts\.whisper/,
    );
  }, 60_000);
});

type Case = { files: string[]; length?: number; sha256?: string; samples?: number[]; windows?: Array<{ start: number; samples: number[] }>; error?: string };
const DIR = path.join(FIXTURES, 'salmonn_multi_turn');
const CASES = JSON.parse(fs.readFileSync(path.join(DIR, 'expected.json'), 'utf8')) as Record<string, Case>;

async function joined(files: string[]): Promise<Float32Array> {
  const turns = await Promise.all(files.map(async (f) => (await et.audio.readAudio(path.join(DIR, f), { sampleRate: 16000, channel: 0 })).samples));
  return et.systems.salmonn.salmonnJoinTurns(turns);
}

function expectEqual(x: Float32Array, c: Case, name: string): void {
  expect(x.length, name).toBe(c.length);
  for (const w of c.windows!) expect([...x.subarray(w.start, w.start + w.samples.length)], `${name} at ${w.start}`).toEqual(w.samples.map(Math.fround));
  if (c.samples) expect([...x], name).toEqual(c.samples.map(Math.fround));
  expect(
    createHash('sha256')
      .update(Buffer.from(x.buffer, x.byteOffset, x.byteLength))
      .digest('hex'),
    name,
  ).toBe(c.sha256);
}

describe("the trajectory fork's multi-turn input equals its prepare_multi_sample", () => {
  for (const [name, c] of Object.entries(CASES)) {
    if (c.error) continue;
    it(`${name}: ${c.files.join(', ')}`, async () => {
      expectEqual(await joined(c.files), c, name);
    });
  }

  it("through the command line's --wav forms: comma-separated, @list.txt (blank lines and spaces dropped), a JSON array", async () => {
    const c = CASES.three;
    const abs = c.files.map((f) => path.join(DIR, f));
    expectEqual(await salmonnInput(abs.join(' , ')), c, 'comma');
    expectEqual(await salmonnInput(JSON.stringify(abs)), c, 'json');
    const list = path.join(tmpdir(), 'list.txt');
    fs.writeFileSync(
      list,
      fs
        .readFileSync(path.join(DIR, 'list.txt'), 'utf8')
        .split('\n')
        .map((l) => (l.trim() ? l.replace(l.trim(), path.join(DIR, l.trim())) : l))
        .join('\n'),
    );
    expect(salmonnWavPaths(`@${list}`)).toEqual(abs);
    expectEqual(await salmonnInput(`@${list}`), c, '@list');
    // one path stays one clip (the fork's prepare_one_sample path), not joined
    const one = await salmonnInput(path.join(DIR, 'one.wav'));
    expect(one.length).toBe(5000);
    throwsWith(() => salmonnWavPaths(' , '), 'ERR_INVALID_ARG', /no wav path/);
    throwsWith(() => salmonnWavPaths('[1, 2]'), 'ERR_FORMAT', /JSON array of paths/);
  });

  it('44.1 and 48 kHz: the fork refuses them (its feature extractor is 16 kHz only); emotorch resamples each turn to 16 kHz first', async () => {
    for (const rate of [44100, 48000]) {
      const c = CASES[`rate_${rate}`];
      expect(c.error).toMatch(new RegExp(`sampled with 16000 and not ${rate}`));
      const x = await joined(c.files);
      const lens = await Promise.all(c.files.map(async (f) => (await et.audio.readAudio(path.join(DIR, f), { sampleRate: 16000 })).samples.length));
      expect(x.length).toBe(Math.max(16000, lens[0] + lens[1] + 3200));
      expect(x.subarray(lens[0], lens[0] + 1600).every((v) => v === 0)).toBe(true);
    }
  });

  it('refuses what is not a list of waveforms', () => {
    throwsWith(() => et.systems.salmonn.salmonnJoinTurns([]), 'ERR_INVALID_ARG', /turns/);
    throwsWith(() => et.systems.salmonn.salmonnJoinTurns([[0.1, 0.2]] as never), 'ERR_INVALID_ARG', /turns/);
  });
});
