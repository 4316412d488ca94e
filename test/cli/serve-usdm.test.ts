// `emotorch serve --model <a USDM folder>` with the official openai client: the user's speech →
// units (the tiny XLS-R fixture) → Usdm.infer's three stages → the agent's text; with
// modalities ['text', 'audio'], the agent's units spoken by the tiny Voicebox + BigVGAN (OpenAI's
// message.audio, streamed and not). Every answer is compared with the library's own pipeline run
// here (Usdm.infer, UsdmSpeaker.speak) on the same clip; what USDM cannot take is refused by name.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import OpenAI from 'openai';
import * as et from '../../lib/index';
import { createServer } from '../../lib/cli/serve';
import { FIXTURES, maxAbsDiff, spawnServer, tmpdir, usdmToyTokenizer } from '../helpers';

const WAV = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
const XLSR = path.join(FIXTURES, 'wav2vec2', 'xlsr'),
  KMEANS = path.join(FIXTURES, 'wav2vec2', 'centroids.npy');
const VB = path.join(FIXTURES, 'usdm_voicebox', 'voicebox'),
  GAN = path.join(FIXTURES, 'usdm_voicebox', 'bigvgan');
const IDS = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };

/** The tiny USDM fixture with the toy tokenizer beside it: a folder serve --model takes. */
function usdmFolder(): string {
  const dir = path.join(tmpdir(), 'usdm-tiny');
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(path.join(FIXTURES, 'usdm', 'mistral'))) fs.copyFileSync(path.join(FIXTURES, 'usdm', 'mistral', f), path.join(dir, f));
  usdmToyTokenizer(path.join(dir, 'tokenizer.json'));
  return dir;
}

const audioPart = (): OpenAI.Chat.ChatCompletionContentPart => ({
  type: 'input_audio',
  input_audio: { data: fs.readFileSync(WAV).toString('base64'), format: 'wav' },
});

describe('emotorch serve --model <USDM>', () => {
  it('answers speech with the agent text as Usdm.infer, and speaks it as UsdmSpeaker.speak when asked (openai client, streamed and not)', async () => {
    const dir = usdmFolder();
    // the library's own pipeline on the same clip
    const tok = await et.data.Tokenizer.fromFile(dir);
    const usdm = (await et.systems.usdm.Usdm.fromPretrained(dir, { tokenIds: IDS })).eval() as et.systems.usdm.Usdm;
    const ux = new et.audio.UnitExtractor({ encoder: (await et.nn.Wav2Vec2Model.fromPretrained(XLSR)).eval(), layer: 2, centroids: KMEANS });
    const { samples } = await et.audio.readAudio(WAV, et.systems.usdm.USDM_AUDIO);
    const [units] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
    const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const want = await et.noGrad(() => usdm.infer(units, codec, { maxNewTokens: 12 }));
    expect(want.agentUnits.length).toBeGreaterThan(0);
    const speaker = await et.systems.usdm.UsdmSpeaker.fromPretrained(VB, GAN);
    const spoken = await et.noGrad(() => speaker.speak(want.agentUnits, { steps: 3, seed: 7 }));

    const server = await spawnServer([
      '--model',
      dir,
      '--xlsr',
      XLSR,
      '--kmeans',
      KMEANS,
      '--layer',
      '2',
      '--voicebox',
      VB,
      '--vocoder',
      GAN,
      '--flow-steps',
      '3',
      '--served-model-name',
      'usdm-tiny',
    ]);
    try {
      const health = await (await fetch(`${server.url}/health`)).json();
      expect(health).toMatchObject({ kind: 'usdm', accepts: { audio: true, image: false, text: false }, speaks: true });
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: [audioPart()] }];
      // text only: the agent's text
      const t = await client.chat.completions.create({ model: 'usdm-tiny', messages, max_tokens: 12 });
      expect(t.choices[0].message.content).toBe(want.agentText);
      const ts = await client.chat.completions.create({ model: 'usdm-tiny', messages, max_tokens: 12, stream: true });
      let streamed = '';
      for await (const ch of ts) streamed += ch.choices[0]?.delta.content ?? '';
      expect(streamed).toBe(want.agentText);
      const g = want.generatedTokens;
      expect(t.usage).toMatchObject({ prompt_tokens: want.promptTokens, completion_tokens: g.user + g.agent + g.units });
      // spoken: message.audio as OpenAI's (content null, the transcript beside the WAV)
      const askSpoken = {
        model: 'usdm-tiny',
        messages,
        max_tokens: 12,
        seed: 7,
        modalities: ['text', 'audio'] as Array<'text' | 'audio'>,
        audio: { voice: 'alloy' as const, format: 'wav' as const },
      };
      const a = await client.chat.completions.create(askSpoken);
      const m = a.choices[0].message;
      expect(m.content).toBeNull();
      expect(m.audio!.transcript).toBe(want.agentText);
      expect(m.audio!.id).toMatch(/^audio_/);
      const wav = et.audio.decodeWav(Buffer.from(m.audio!.data, 'base64'), { sampleRate: null });
      expect(wav.sampleRate).toBe(22050);
      expect(wav.samples.length).toBe(spoken.samples.length);
      expect(maxAbsDiff(et.tensor(wav.samples), et.tensor(spoken.samples))).toBeLessThan(2 / 32767); // 16-bit PCM of the same samples
      // streamed: the transcript in audio deltas, then the WAV
      const stream = await client.chat.completions.create({ ...askSpoken, stream: true });
      let transcript = '',
        data = '',
        content = '';
      for await (const ch of stream) {
        const d = ch.choices[0]?.delta as { content?: string | null; audio?: { transcript?: string; data?: string } } | undefined;
        content += d?.content ?? '';
        transcript += d?.audio?.transcript ?? '';
        data += d?.audio?.data ?? '';
      }
      expect(content).toBe('');
      expect(transcript).toBe(want.agentText);
      expect(data).toBe(m.audio!.data);
      // what USDM cannot take, by name
      const refused = async (body: Record<string, unknown>, param: string, re: RegExp) => {
        const r = await fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        const e = await r.json();
        expect(r.status, JSON.stringify(e)).toBe(400);
        expect(e.error.param).toBe(param);
        expect(e.error.message).toMatch(re);
      };
      await refused({ messages: [{ role: 'user', content: [audioPart(), { type: 'text', text: 'hi' }] }] }, 'messages', /speech only/);
      await refused({ messages: [{ role: 'user', content: 'hi' }] }, 'messages', /exactly one input_audio/);
      await refused({ messages: [{ role: 'system', content: 's' }, ...messages] }, 'messages', /one user message/);
      await refused({ messages, modalities: ['text', 'audio'], audio: { voice: 'x', format: 'mp3' } }, 'audio.format', /'wav'/);
      await refused({ messages, modalities: ['text', 'audio'] }, 'audio', /voice, format/);
      await refused({ messages, modalities: ['audio'] }, 'modalities', /\['text', 'audio'\]/);
      await refused({ messages, audio: { voice: 'x', format: 'wav' } }, 'audio', /unless modalities/);
    } finally {
      await server.stop();
    }
  }, 300_000);

  it('without a speaker it answers in text only and refuses audio by name; non-USDM models refuse the USDM flags', async () => {
    const dir = usdmFolder();
    const tok = await et.data.Tokenizer.fromFile(dir);
    const usdm = (await et.systems.usdm.Usdm.fromPretrained(dir, { tokenIds: IDS })).eval() as et.systems.usdm.Usdm;
    const ux = new et.audio.UnitExtractor({ encoder: (await et.nn.Wav2Vec2Model.fromPretrained(XLSR)).eval(), layer: 2, centroids: KMEANS });
    const app = createServer(et.systems.usdm.usdmChat(usdm, { tokenizer: tok, units: ux }, 'usdm-tiny'), { maxBatch: 1 });
    try {
      const r = await app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: { messages: [{ role: 'user', content: [audioPart()] }], modalities: ['text', 'audio'], audio: { voice: 'x', format: 'wav' } },
      });
      expect(r.statusCode).toBe(400);
      expect(r.json().error).toMatchObject({ param: 'modalities', code: 'unsupported_value' });
      expect((await app.inject({ method: 'GET', url: '/health' })).json()).toMatchObject({ speaks: false });
      // sampled: the request's seed gives the same answer twice
      const ask = () =>
        app.inject({
          method: 'POST',
          url: '/v1/chat/completions',
          payload: { messages: [{ role: 'user', content: [audioPart()] }], temperature: 1.5, seed: 3, max_tokens: 8 },
        });
      const [x, y] = [await ask(), await ask()];
      expect(x.statusCode, x.body).toBe(200);
      expect(x.json().choices[0].message.content).toBe(y.json().choices[0].message.content);
      // and it is Usdm.infer's sampled answer with that seed
      const { samples } = await et.audio.readAudio(WAV, et.systems.usdm.USDM_AUDIO);
      const [units] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
      const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (z: number[]) => tok.decode(z) };
      const sampled = await et.noGrad(() => usdm.infer(units, codec, { maxNewTokens: 8, temperature: 1.5, seed: 3 }));
      expect(x.json().choices[0].message.content).toBe(sampled.agentText);
      // DailyTalk's rate in stereo: the channels averaged and soxr HQ to 16 kHz, as the originals read it
      const stereo = path.join(FIXTURES, 'wav', 'pcm16_stereo_22k.wav');
      const at16 = await et.audio.readAudio(stereo, et.systems.usdm.USDM_AUDIO);
      const [u22] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(at16.samples).reshape([1, at16.samples.length]) }));
      const want22 = await et.noGrad(() => usdm.infer(u22, codec, { maxNewTokens: 8 }));
      const r22 = await app.inject({
        method: 'POST',
        url: '/v1/chat/completions',
        payload: {
          messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: fs.readFileSync(stereo).toString('base64'), format: 'wav' } }] }],
          max_tokens: 8,
        },
      });
      expect(r22.statusCode, r22.body).toBe(200);
      expect(r22.json().choices[0].message.content).toBe(want22.agentText);
      expect(r22.json().usage.prompt_tokens).toBe(want22.promptTokens);
    } finally {
      await app.close();
    }
    // the USDM flags on a model that is not USDM (its tokenizer has no <|correspond|>)
    const llm = usdmFolder();
    const tj = path.join(llm, 'tokenizer.json');
    fs.writeFileSync(tj, fs.readFileSync(tj, 'utf8').replace('<|correspond|>', '<|other|>'));
    const { spawnSync } = await import('child_process');
    const cli = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
    const bad = spawnSync(process.execPath, [cli, 'serve', '--model', llm, '--voicebox', VB, '--port', '0'], { encoding: 'utf8', timeout: 120_000 });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--voicebox is for a USDM model/);
  }, 300_000);
});
