// The M2SE recipe with SALMONN: records with audio train and answer through its audio path (WAV
// natively, the audio of video containers through ffmpeg when it is on PATH), records without
// audio through its LLaMA with its template; images and video frames are counted. A tiny random
// SALMONN (Whisper and LLaMA made with create, no BEATs) on generated WAVs.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir, rejectsWith } from '../helpers';

const TOK = path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json');
const FFMPEG = et.audio.findFfmpeg();
const Q = 'What emotion does the speaker show? Answer with one word.';

async function tinySalmonn(): Promise<et.systems.salmonn.Salmonn> {
  et.manualSeed(3);
  const tokenizer = await et.data.Tokenizer.fromFile(TOK);
  const whisper = et.nn.WhisperEncoder.create({ d_model: 32, encoder_layers: 1, encoder_attention_heads: 2, encoder_ffn_dim: 64 });
  const llm = et.nn.LlamaForCausalLM.create({
    vocab_size: 1500,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 512,
    initializer_range: 0.15,
  });
  const m = new et.systems.salmonn.Salmonn(
    { whisper, beats: null, llm, tokenizer },
    {
      // initializer_range 0.3: with 0.1 the random Q-Former passed the two clips on as tokens ~5 %
      // apart and whether 70 steps separated them hinged on the CPU's kernels (AVX2 vs AVX-512);
      // at 0.3 they start ~30 % apart and the answers separate by a wide loss margin on every path
      qformer: {
        hidden_size: 32,
        num_attention_heads: 2,
        intermediate_size: 64,
        num_hidden_layers: 1,
        initializer_range: 0.3,
        hidden_dropout_prob: 0,
        attention_probs_dropout_prob: 0,
      },
      lora_rank: 8,
      lora_alpha: 16,
      lora_dropout: 0,
      max_txt_len: 16,
      num_beams: 1,
    },
  );
  // a random LLaMA knows no words: its output layer learns too (as examples/salmonn.mjs)
  for (const [n, p] of m.llama_model.namedParameters()) if (n === 'lm_head.weight') p.requiresGrad = true;
  return m;
}

const tone = (hz: number, seconds: number, sr: number, amp = 0.5): Float32Array =>
  Float32Array.from({ length: Math.round(seconds * sr) }, (_, i) => amp * Math.sin((2 * Math.PI * hz * i) / sr));
const noise = (seconds: number, sr: number): Float32Array => {
  et.manualSeed(9);
  return et
    .randn([Math.round(seconds * sr)])
    .mul(0.3)
    .dataSync() as Float32Array;
};

let dir: string;
beforeAll(() => {
  dir = tmpdir();
  fs.writeFileSync(path.join(dir, 'calm.wav'), et.audio.encodeWav(tone(220, 0.6, 16000), 16000));
  fs.writeFileSync(path.join(dir, 'loud.wav'), et.audio.encodeWav(noise(0.8, 16000), 16000));
  // stereo at 22.05 kHz: channel 0 is a tone, channel 1 silence
  const st = tone(330, 0.5, 22050);
  fs.writeFileSync(
    path.join(dir, 'stereo.wav'),
    et.audio.encodeWav(
      Float32Array.from({ length: st.length * 2 }, (_, i) => (i % 2 ? 0 : st[i >> 1])),
      22050,
      { channels: 2 },
    ),
  );
});

describe('M2SE with SALMONN', () => {
  it('builds SALMONN prompts and targets, reads and joins audio (channel 0, 0.1 s apart), reports unused media, and checks files first', async () => {
    const m = await tinySalmonn();
    const recs = et.systems.m2se.m2seRecords([
      { query: `<audio>${Q}`, response: 'Joy.', audios: ['calm.wav'] },
      { query: Q, response: 'Anger.', audios: ['loud.wav', 'stereo.wav'], images: ['face.png'] },
      { query: 'Is this positive or negative? I love it.', response: 'Positive.' },
    ]);
    const { items, tooLong } = await et.systems.m2se.m2seSalmonnItems(recs, m, { mediaRoot: dir });
    expect(tooLong).toBe(0);
    expect(items.map((x) => x.prompt)).toEqual([
      `USER: <Speech><SpeechHere></Speech> ${Q}\nASSISTANT:`,
      `USER: <Speech><SpeechHere></Speech> ${Q}\nASSISTANT:`,
      'USER: Is this positive or negative? I love it.\nASSISTANT:',
    ]);
    expect(items[1].audio).toEqual([path.join(dir, 'loud.wav'), path.join(dir, 'stereo.wav')]);
    const joy = await m.tokenizer.encode('Joy.</s>', { addSpecialTokens: false });
    expect(items[0].labels).toEqual([-100, ...joy]);
    // without audio: [BOS, prompt, target + </s>] with −100 over BOS and prompt
    const p = await m.tokenizer.encode(items[2].prompt, { addSpecialTokens: false });
    const t = await m.tokenizer.encode('Positive.</s>', { addSpecialTokens: false });
    expect(items[2].ids).toEqual([1, ...p, ...t]);
    expect(items[2].labels).toEqual([...Array(p.length + 1).fill(-100), ...t]);

    const joined = await et.systems.m2se.m2seAudio(items[1].audio);
    const a = (await et.audio.readWav(path.join(dir, 'loud.wav'))).samples;
    const b = (await et.audio.readWav(path.join(dir, 'stereo.wav'), { channel: 0 })).samples;
    expect(joined.length).toBe(a.length + 1600 + b.length);
    expect(Array.from(joined.subarray(0, a.length))).toEqual(Array.from(a));
    expect(joined.subarray(a.length, a.length + 1600).every((v) => v === 0)).toBe(true);
    expect(Array.from(joined.subarray(a.length + 1600))).toEqual(Array.from(b));

    await rejectsWith(
      () => et.systems.m2se.m2seSalmonnItems(et.systems.m2se.m2seRecords([{ query: 'q', response: 'r', audios: ['nope.wav'] }]), m, { mediaRoot: dir }),
      'ERR_IO',
      /nope\.wav' does not exist/,
    );
    await rejectsWith(
      () =>
        et.systems.m2se.m2seSalmonnItems(
          et.systems.m2se.m2seRecords([
            {
              messages: [
                { role: 'user', content: 'a' },
                { role: 'assistant', content: 'b' },
                { role: 'user', content: 'c' },
                { role: 'assistant', content: 'd' },
              ],
              audios: ['calm.wav'],
            },
          ]),
          m,
          { mediaRoot: dir },
        ),
      'ERR_FORMAT',
      /one turn/,
    );
    // a missing file is found before anything trains
    const out = path.join(dir, 'never');
    await rejectsWith(
      () =>
        et.systems.m2se.m2seStages({
          model: m,
          outputDir: out,
          stages: [
            { datasets: [[{ query: 'q', response: 'r', audios: ['calm.wav'] }]] },
            { datasets: [[{ query: 'q', response: 'r', audios: ['gone.wav'] }]] },
          ],
          mediaRoot: dir,
        }),
      'ERR_IO',
      /gone\.wav/,
    );
    expect(fs.existsSync(out)).toBe(false);
  });

  it("trains on the audio: the loss is SALMONN's over audio records plus the LLaMA's over text records, and two clips with one query learn two answers", async () => {
    const m = await tinySalmonn();
    const data = [
      { query: Q, response: 'Joy.', audios: ['calm.wav'] },
      { query: Q, response: 'Anger.', audios: ['loud.wav'], images: ['face.png'] },
      { query: 'Is this positive or negative? I love it.', response: 'Positive.' },
    ];
    const file = path.join(dir, 'train.json');
    fs.writeFileSync(file, JSON.stringify(data));
    // the loss of the first step (one batch of all three) before any update, computed here by hand
    const { items } = await et.systems.m2se.m2seSalmonnItems(et.systems.m2se.m2seRecords(data), m, { mediaRoot: dir });
    m.train();
    const count = (l: number[]): number => l.slice(1).filter((v) => v !== -100).length;
    const s = await et.noGrad(async () =>
      m.forward({
        audio: [await et.systems.m2se.m2seAudio(items[0].audio), await et.systems.m2se.m2seAudio(items[1].audio)],
        prompt: [items[0].prompt, items[1].prompt],
        target: ['Joy.', 'Anger.'],
      }),
    );
    const tx = await et.noGrad(() => m.llama_model.forward(et.systems.m2se.m2seCollate([{ ids: items[2].ids!, labels: items[2].labels }])));
    const nS = count(items[0].labels) + count(items[1].labels);
    const nT = count(items[2].labels);
    const want = (s.loss!.item() * nS + tx.loss!.item() * nT) / (nS + nT);
    const args = {
      per_device_train_batch_size: 3,
      gradient_accumulation_steps: 1,
      learning_rate: 0,
      warmup_ratio: 0,
      lr_scheduler_type: 'constant' as const,
      save_strategy: 'no' as const,
      max_steps: 1,
    };
    const [first] = await et.systems.m2se.m2seStages({ model: m, outputDir: path.join(dir, 'probe'), stages: [{ datasets: [file], args }] });
    expect(Math.abs(first.trainingLoss - want)).toBeLessThan(1e-4);
    expect(first.unusedMedia).toEqual({ records: 1, images: 1, videos: 0, audios: 0 });
    expect(first.audio).toEqual({ records: 2, audios: 2, videos: 0 });

    // two stages: stage 1 learns the two clips (same query, different answers), stage 2 continues
    const fit = {
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: 1,
      learning_rate: 1e-2,
      warmup_ratio: 0,
      lr_scheduler_type: 'constant' as const,
      save_strategy: 'no' as const,
    };
    const res = await et.systems.m2se.m2seStages({
      model: m,
      outputDir: path.join(dir, 'run'),
      stages: [
        { datasets: [data.slice(0, 2)], args: { ...fit, num_train_epochs: 60 } },
        { datasets: [file], args: { ...fit, num_train_epochs: 10, per_device_train_batch_size: 3 } },
      ],
      mediaRoot: dir,
    });
    expect(res.map((r) => r.globalStep)).toEqual([60, 10]);
    expect(res[1].trainingLoss).toBeLessThan(first.trainingLoss / 4);
    const jsonl = path.join(dir, 'infer.jsonl');
    const inf = await et.systems.m2se.m2seInfer({ model: m, dataset: file, outFile: jsonl, maxNewTokens: 6 });
    expect(inf.audio).toEqual({ records: 2, audios: 2, videos: 0 });
    const lines = fs
      .readFileSync(jsonl, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.response)).toEqual(['Joy.', 'Anger.', 'Positive.']);
    expect(lines[1].images).toEqual(['face.png']);
    // the answer for an audio record is SALMONN's greedy answer for that clip
    // with margin: each clip's own answer is far likelier than the other clip's (measured on an
    // AVX2-only EPYC, oneDNN's and ATen's GEMM: own ≈ 0.06-0.07, swapped ≈ 0.5-0.6 per token)
    m.eval();
    for (const [k, own, other] of [
      [0, 'Joy.', 'Anger.'],
      [1, 'Anger.', 'Joy.'],
    ] as const) {
      const clip = await et.systems.m2se.m2seAudio(items[k].audio);
      const lossFor = async (target: string) => (await et.noGrad(() => m.forward({ audio: [clip], prompt: [items[k].prompt], target: [target] }))).loss!.item();
      expect(await lossFor(own)).toBeLessThan((await lossFor(other)) / 3);
    }
    const [direct] = await m.generate([(await et.audio.readWav(path.join(dir, 'loud.wav'))).samples], Q, { numBeams: 1, maxNewTokens: 6 });
    expect(direct).toBe('Anger.');
  }, 60000);

  it('names the file and says ffmpeg is missing when a video or non-WAV audio needs it and PATH has none', async () => {
    const m = await tinySalmonn();
    const empty = path.join(dir, 'empty-bin');
    fs.mkdirSync(empty, { recursive: true });
    // an MP4's first box (ftyp) and nothing else: a container ffmpeg would be run on
    fs.writeFileSync(path.join(dir, 'clip.mp4'), Buffer.concat([Buffer.from([0, 0, 0, 16]), Buffer.from('ftypisom\0\0\0\0', 'latin1')]));
    const saved = process.env.PATH;
    process.env.PATH = empty;
    try {
      expect(et.audio.findFfmpeg()).toBe(null);
      await rejectsWith(() => et.audio.readAudio(path.join(dir, 'clip.mp4')), 'ERR_IO', /clip\.mp4'.*ffmpeg .*is not on PATH/);
      const out = path.join(dir, 'no-ffmpeg');
      await rejectsWith(
        () =>
          et.systems.m2se.m2seStages({
            model: m,
            outputDir: out,
            mediaRoot: dir,
            stages: [{ datasets: [[{ query: Q, response: 'Joy.', videos: ['clip.mp4'] }]] }],
          }),
        'ERR_IO',
        /clip\.mp4'.*ffmpeg .*is not on PATH/,
      );
      await rejectsWith(
        () =>
          et.systems.m2se.m2seInfer({
            model: m,
            outFile: path.join(out, 'x.jsonl'),
            mediaRoot: dir,
            dataset: [{ query: Q, response: 'Joy.', audios: ['clip.mp4'] }],
          }),
        'ERR_IO',
        /ffmpeg/,
      );
      expect(fs.existsSync(out)).toBe(false);
      // WAV needs no ffmpeg
      expect((await et.audio.readAudio(path.join(dir, 'calm.wav'))).samples.length).toBe(9600);
    } finally {
      process.env.PATH = saved;
    }
  });

  it.skipIf(!FFMPEG)(
    'reads the audio track of video containers through ffmpeg (identical to the WAV it was muxed from) and counts their frames as unused',
    async () => {
      const run = (args: string[]): void => {
        execFileSync(FFMPEG!, ['-nostdin', '-v', 'error', '-y', ...args]);
      };
      const mkv = path.join(dir, 'clip.mkv');
      run(['-f', 'lavfi', '-i', 'color=c=red:s=16x16:r=5:d=1', '-i', path.join(dir, 'stereo.wav'), '-c:v', 'mjpeg', '-c:a', 'copy', '-shortest', mkv]);
      const viaFfmpeg = await et.audio.readAudio(mkv, { channel: 0 });
      const wav = await et.audio.readWav(path.join(dir, 'stereo.wav'), { channel: 0 });
      expect(viaFfmpeg.sourceSampleRate).toBe(22050);
      expect(viaFfmpeg.channels).toBe(2);
      expect(Array.from(viaFfmpeg.samples)).toEqual(Array.from(wav.samples));
      // a lossy mp4 (AAC) decodes too
      const mp4 = path.join(dir, 'talk.mp4');
      run([
        '-f',
        'lavfi',
        '-i',
        'color=c=blue:s=16x16:r=5:d=1',
        '-f',
        'lavfi',
        '-i',
        'sine=frequency=300:sample_rate=44100:duration=1',
        '-c:v',
        'mpeg4',
        '-c:a',
        'aac',
        '-shortest',
        mp4,
      ]);
      const aac = await et.audio.readAudio(mp4);
      expect(Math.abs(aac.duration - 1)).toBeLessThan(0.1);
      // a video without sound is a format error naming it
      const mute = path.join(dir, 'mute.mkv');
      run(['-f', 'lavfi', '-i', 'color=c=green:s=16x16:r=5:d=1', '-c:v', 'mjpeg', mute]);
      await rejectsWith(() => et.audio.readAudio(mute), 'ERR_FORMAT', /mute\.mkv/);

      const m = await tinySalmonn();
      const recs = [
        { query: `<video>${Q}`, response: 'Joy.', videos: ['clip.mkv'] }, // audio from the video
        { query: Q, response: 'Anger.', audios: ['talk.mp4'], videos: ['clip.mkv'] }, // an audio path with a video extension
      ];
      const { items } = await et.systems.m2se.m2seSalmonnItems(et.systems.m2se.m2seRecords(recs), m, { mediaRoot: dir });
      expect(items.map((x) => x.audio)).toEqual([[mkv], [mp4]]);
      expect(items[0].prompt).toBe(`USER: <Speech><SpeechHere></Speech> ${Q}\nASSISTANT:`);
      const [r] = await et.systems.m2se.m2seStages({
        model: m,
        outputDir: path.join(dir, 'video'),
        mediaRoot: dir,
        stages: [{ datasets: [recs], args: { per_device_train_batch_size: 2, gradient_accumulation_steps: 1, max_steps: 1, save_strategy: 'no' } }],
      });
      expect(r.audio).toEqual({ records: 2, audios: 1, videos: 1 });
      expect(r.unusedMedia).toEqual({ records: 2, images: 0, videos: 2, audios: 0 });
      expect(Number.isFinite(r.trainingLoss)).toBe(true);
    },
    30000,
  );
});
