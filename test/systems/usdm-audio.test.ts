// et.systems.usdm.usdmSftExamples against scripts/fixtures/usdm_audio.py: the original preprocessing
// (seamless-style units: clip standardized, HF Wav2Vec2Model layer, numpy argmin; texts lower-cased;
// the template tokenized whole with BOS; the original label masking) on (user audio, transcript,
// response, response audio) pairs gives identical units and identical `ids|labels` lines.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { IDS, codec } from './usdm-toy';
import { FIXTURES, rejectsWith, tmpdir } from '../helpers';

const dir = path.join(FIXTURES, 'usdm');
const w2v = path.join(FIXTURES, 'wav2vec2');
const ref = JSON.parse(fs.readFileSync(path.join(dir, 'audio_sft.json'), 'utf8')) as {
  layer: number;
  pairs: Array<{ userText: string; agentText: string; userUnits: number[]; agentUnits: number[]; line: string }>;
};

async function setup() {
  const encoder = await et.nn.Wav2Vec2Model.fromPretrained(path.join(w2v, 'xlsr'));
  const unitExtractor = new et.audio.UnitExtractor({ encoder, layer: ref.layer, centroids: path.join(w2v, 'centroids.npy') });
  const clips = (await et.io.loadSafetensors(path.join(dir, 'audio_pairs.safetensors'))).tensors;
  const pairs = ref.pairs.map((p, i) => ({
    userText: p.userText,
    agentText: p.agentText,
    userAudio: clips.get(`user.${i}`)!.dataSync() as Float32Array,
    agentAudio: clips.get(`agent.${i}`)!.dataSync() as Float32Array,
  }));
  return { unitExtractor, pairs };
}

describe('usdmSftExamples = the original preprocessing from audio', () => {
  it('gives identical units and ids|labels lines, batched with padding', async () => {
    const { unitExtractor, pairs } = await setup();
    for (const batchSize of [4, 1]) {
      const ex = await et.systems.usdm.usdmSftExamples(pairs, { unitExtractor, codec, tokenIds: IDS, batchSize });
      expect(ex.map((e) => e.userUnits)).toEqual(ref.pairs.map((p) => p.userUnits));
      expect(ex.map((e) => e.agentUnits)).toEqual(ref.pairs.map((p) => p.agentUnits));
      expect(ex.map((e) => et.data.usdm.formatUsdmLine(e))).toEqual(ref.pairs.map((p) => p.line));
    }
  });
  it('reads WAV paths (16 kHz) like samples, and the lines feed usdm.collate', async () => {
    const { unitExtractor, pairs } = await setup();
    const d = tmpdir();
    const f = path.join(d, 'user0.wav');
    fs.writeFileSync(f, et.audio.encodeWav(pairs[0].userAudio, 16000, { format: 'float32' }));
    const [fromFile] = await et.systems.usdm.usdmSftExamples([{ ...pairs[0], userAudio: f }], { unitExtractor, codec, tokenIds: IDS });
    expect(et.data.usdm.formatUsdmLine(fromFile)).toBe(ref.pairs[0].line);
    const file = path.join(d, 'train.txt');
    fs.writeFileSync(file, (await et.systems.usdm.usdmSftExamples(pairs, { unitExtractor, codec, tokenIds: IDS })).map(et.data.usdm.formatUsdmLine).join('\n'));
    expect((await et.data.usdm.readUsdmLines(file)).map(et.data.usdm.formatUsdmLine)).toEqual(ref.pairs.map((p) => p.line));
  });
  it('rejects bad pairs and options by name', async () => {
    const { unitExtractor, pairs } = await setup();
    const o = { unitExtractor, codec, tokenIds: IDS };
    await rejectsWith(() => et.systems.usdm.usdmSftExamples([], o), 'ERR_INVALID_ARG', /pairs/);
    await rejectsWith(() => et.systems.usdm.usdmSftExamples([{ ...pairs[0], userText: 3 as never }], o), 'ERR_INVALID_ARG', /pairs\[0\]\.userText/);
    await rejectsWith(
      () => et.systems.usdm.usdmSftExamples([pairs[0], { ...pairs[1], agentAudio: [0.1] as never }], o),
      'ERR_INVALID_ARG',
      /pairs\[1\]\.agentAudio/,
    );
    await rejectsWith(
      () => et.systems.usdm.usdmSftExamples([{ ...pairs[0], agentAudio: new Float32Array(0) }], o),
      'ERR_INVALID_ARG',
      /pairs\[0\]\.agentAudio/,
    );
    await rejectsWith(() => et.systems.usdm.usdmSftExamples(pairs, { ...o, unitExtractor: {} as never }), 'ERR_INVALID_ARG', /unitExtractor/);
    await rejectsWith(() => et.systems.usdm.usdmSftExamples(pairs, { ...o, codec: {} as never }), 'ERR_INVALID_ARG', /codec/);
    await rejectsWith(() => et.systems.usdm.usdmSftExamples(pairs, { ...o, tokenIds: { ...IDS, numUnits: 20 } }), 'ERR_INVALID_ARG', /numUnits/);
    await rejectsWith(() => et.systems.usdm.usdmSftExamples(pairs, { ...o, batchSize: 0 }), 'ERR_INVALID_ARG', /batchSize/);
    await rejectsWith(() => et.systems.usdm.usdmSftExamples([{ ...pairs[0], userAudio: '/nonexistent.wav' }], o), 'ERR_IO');
    await rejectsWith(() => et.systems.usdm.usdmSftExamples(pairs, { ...o, codec: { encode: () => 'x' as never } }), 'ERR_INVALID_ARG', /codec\.encode/);
  });
});

// DailyTalk's own rate (22.05 kHz) and odd lengths: the units of the fixture that
// scripts/fixtures/usdm_dailytalk.py ran the ORIGINAL dailytalk_single_turn.py on (test/cli/usdm-cli.test.ts
// compares the lines) need both librosa's resampler (soxr HQ) and seamless's odd-length pad: each
// of the two is seen by these clips, so a regression in either fails that test.
describe('USDM units from 22.05 kHz DailyTalk clips', () => {
  it("differ with emotorch's sinc resampler or without seamless's pad, so the fixture sees both", async () => {
    const encoder = await et.nn.Wav2Vec2Model.fromPretrained(path.join(w2v, 'xlsr'));
    const centroids = path.join(w2v, 'centroids.npy');
    const seamless = new et.audio.UnitExtractor({ encoder, layer: ref.layer, centroids });
    const unpadded = new et.audio.UnitExtractor({ encoder, layer: ref.layer, centroids, seamlessPad: false });
    const data = path.join(FIXTURES, 'usdm_dailytalk', 'data');
    const files = fs.readdirSync(data).flatMap((d) => fs.readdirSync(path.join(data, d)).map((f) => path.join(data, d, f)));
    let bySinc = 0,
      byPad = 0,
      longer = 0;
    for (const f of files) {
      const wav = await et.audio.readWav(f, et.systems.usdm.USDM_AUDIO);
      expect(wav.sourceSampleRate).toBe(22050);
      const n = (await et.audio.readWav(f, { sampleRate: null })).samples.length;
      expect(wav.samples.length).toBe(Math.ceil((n * 16000) / 22050)); // librosa's fix_length
      const sinc = (await et.audio.readWav(f, { sampleRate: 16000, resample: { method: 'sinc' } })).samples;
      const one = (x: Float32Array) => ({ inputValues: et.tensor(x, { shape: [1, x.length] }) });
      const [u] = await seamless.predict(one(wav.samples));
      const [s] = await seamless.predict(one(sinc));
      const [p] = await unpadded.predict(one(wav.samples));
      if (u.join() !== s.join()) bySinc++;
      if (u.join() !== p.join()) byPad++;
      if (u.length === p.length + 1) longer++;
    }
    expect(files.length).toBe(13);
    expect(bySinc).toBeGreaterThan(0);
    expect(byPad).toBeGreaterThan(0);
    expect(longer).toBeGreaterThan(0); // the frame the pad sample adds is kept
  });
});
