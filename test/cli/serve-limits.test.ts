// The server's bounds, in process with a backend whose answers the test releases by hand: the
// queue (429 past --max-queue, order kept), the per-request timeout (504 while queued or running,
// an error event mid-stream), audio and image limits and media that do not decode, all as OpenAI
// error objects, with the server answering afterwards.
import { describe, it, expect, afterEach } from 'vitest';
import * as et from '../../lib/index';
import { ApiError, createServer } from '../../lib/cli/serve';
import type { ChatAdapter, ChatGeneration, ChatTurn } from '../../lib/data/chat';

/** A backend that answers each request's text back, token by token, when the test says so (a stubborn one ignores its signal). */
function handBackend(accepts = { audio: true, image: true }, stubborn = false) {
  const pending: Array<{ turns: ChatTurn[]; g: ChatGeneration; release: () => void }> = [];
  const backend: ChatAdapter = {
    id: 'hand',
    kind: 'llm',
    accepts,
    async answer(turns, g) {
      await new Promise<void>((resolve, reject) => {
        pending.push({ turns, g, release: resolve });
        if (!stubborn) g.signal.addEventListener('abort', () => reject(new et.EmotorchError('aborted', 'ERR_ABORTED')), { once: true });
      });
      const text = turns[turns.length - 1].text;
      const ids = [...text].map((c) => c.charCodeAt(0));
      for (const id of ids) g.onTokens([id]);
      return { tokens: ids, promptTokens: 1, finish: 'stop' };
    },
    decode: async (ids) => String.fromCharCode(...ids),
  };
  return { backend, pending };
}

const apps: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  while (apps.length) await apps.pop()!.close();
});

async function start(backend: ChatAdapter, limits = {}) {
  const app = createServer(backend, limits);
  apps.push(app);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const post = (body: unknown) =>
    fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { app, url, post };
}
const user = (content: unknown) => ({ messages: [{ role: 'user', content }] });
const until = async (f: () => boolean) => {
  for (let i = 0; i < 400 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(f()).toBe(true);
};

describe('emotorch serve: limits', () => {
  it('queues in order behind the running request and answers 429 past --max-queue', async () => {
    const { backend, pending } = handBackend();
    const { post } = await start(backend, { maxQueue: 2, maxBatch: 1 });
    const first = post(user('a'));
    await until(() => pending.length === 1);
    const queued = [post(user('b')), post(user('c'))];
    await new Promise((r) => setTimeout(r, 30));
    const over = await post(user('d'));
    expect(over.status).toBe(429);
    expect((await over.json()).error).toMatchObject({ type: 'rate_limit_error', code: 'queue_full' });
    for (let i = 0; i < 3; i++) {
      await until(() => pending.length === i + 1);
      pending[i].release();
    }
    const answers = await Promise.all([first, ...queued].map(async (p) => (await (await p).json()).choices[0].message.content));
    expect(answers).toEqual(['a', 'b', 'c']);
    expect(pending.map((p) => p.turns[0].text)).toEqual(['a', 'b', 'c']);
  });

  it('runs --max-batch requests at once, the next one taking the first slot freed, 429 past --max-queue', async () => {
    const { backend, pending } = handBackend();
    const { app, post, url } = await start(backend, { maxQueue: 1, maxBatch: 2 });
    const first = [post(user('a')), post(user('b'))];
    await until(() => pending.length === 2); // both running, neither answered
    expect(pending.every((p) => p.g.batched)).toBe(true);
    const waiting = post(user('c'));
    await new Promise((r) => setTimeout(r, 30));
    expect(pending.length).toBe(2);
    expect(await (await fetch(`${url}/health`)).json()).toMatchObject({ running: 2, max_batch: 2, queued: 1 });
    const over = await post(user('d'));
    expect(over.status).toBe(429);
    pending[1].release(); // b ends: c takes its slot while a still runs
    await until(() => pending.length === 3);
    expect(pending[2].turns[0].text).toBe('c');
    pending[0].release();
    pending[2].release();
    const answers = await Promise.all([...first, waiting].map(async (p) => (await (await p).json()).choices[0].message.content));
    expect(answers).toEqual(['a', 'b', 'c']);
    expect(app.stats.served).toBe(3);
    expect(await (await fetch(`${url}/health`)).json()).toMatchObject({ running: 0, queued: 0 });
  });

  it('times out a request (504) whether it is running or waiting, and mid-stream sends an error event', async () => {
    // running: the answer stops at the time limit
    const { backend, pending } = handBackend();
    const { post, app } = await start(backend, { timeoutMs: 150 });
    const running = await post(user('x'));
    expect(running.status).toBe(504);
    expect((await running.json()).error).toMatchObject({ type: 'timeout_error', code: 'timeout' });
    // waiting: behind one that does not stop, it times out in the queue and never runs
    const hand = handBackend(undefined, true);
    const q = await start(hand.backend, { timeoutMs: 150, maxBatch: 1 });
    const first = q.post(user('x'));
    await until(() => hand.pending.length === 1);
    const waiting = await q.post(user('y'));
    expect(waiting.status).toBe(504);
    expect((await waiting.json()).error).toMatchObject({ type: 'timeout_error', code: 'timeout' });
    hand.pending[0].release();
    await first;
    expect(hand.pending.length).toBe(1);
    expect(pending.length).toBe(1);
    // streamed: the headers went out with the first token, then the time ran out
    const slow: ChatAdapter = {
      ...backend,
      async answer(_t, g) {
        g.onTokens([104]);
        await new Promise((_, rej) => g.signal.addEventListener('abort', () => rej(new et.EmotorchError('t', 'ERR_ABORTED'))));
        throw new Error('unreachable');
      },
    };
    const s = await start(slow, { timeoutMs: 150 });
    const r = await s.post({ ...user('hi'), stream: true });
    expect(r.status).toBe(200);
    const text = await r.text();
    expect(text).toMatch(/"content":"h"/);
    expect(text).toMatch(/"error":\{"message":"the request took longer/);
    expect(text.trim().endsWith('data: [DONE]')).toBe(true);
    expect(app.stats.failed).toBe(1);
  });

  it('bounds audio and images, and refuses media that do not decode, naming the part', async () => {
    const { backend, pending } = handBackend();
    const { post } = await start(backend, { maxAudioSeconds: 1, maxImages: 1 });
    const wav = (seconds: number) => et.audio.encodeWav(new Float32Array(Math.round(16000 * seconds)), 16000).toString('base64');
    const audio = (data: string, format = 'wav') => ({ type: 'input_audio', input_audio: { data, format } });
    const cases: Array<[unknown, RegExp, string]> = [
      [[audio(wav(0.7)), audio(wav(0.7))], /longer than 1 s/, 'messages[0].content[1].input_audio'],
      [[audio('not base64!')], /not valid base64/, 'messages[0].content[0].input_audio.data'],
      [[audio(Buffer.from('RIFF....WAVEjunk').toString('base64'))], /cannot be decoded as wav/, 'messages[0].content[0].input_audio.data'],
      [[audio(wav(0.1), 'ogg')], /format must be one of wav, mp3, flac/, 'messages[0].content[0].input_audio.format'],
      [[{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }], /must be a data: URL/, 'messages[0].content[0].image_url.url'],
      [[{ type: 'image_url', image_url: { url: 'data:image/tiff;base64,AAAA' } }], /image type image\/tiff/, 'messages[0].content[0].image_url.url'],
      [
        [
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
        ],
        /2 images, more than 1/,
        'messages',
      ],
    ];
    for (const [content, re, param] of cases) {
      const r = await post(user(content));
      const body = await r.json();
      expect(r.status, JSON.stringify(content).slice(0, 60)).toBe(400);
      expect(body.error.message).toMatch(re);
      expect(body.error.param).toBe(param);
    }
    if (et.audio.findFfmpeg()) {
      const r = await post(user([{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }]));
      expect((await r.json()).error.message).toMatch(/cannot be decoded as image\/png/);
    }
    // a good clip passes, decoded to 16 kHz
    const ok = post(user([audio(wav(0.5)), { type: 'text', text: 'ok' }]));
    await until(() => pending.length === 1);
    expect(pending[0].turns[0].audio[0].length).toBe(8000);
    pending[0].release();
    expect((await (await ok).json()).choices[0].message.content).toBe('ok');
  });

  it('reports an ApiError a backend throws as it is', async () => {
    const backend: ChatAdapter = {
      ...handBackend().backend,
      answer: async () => {
        throw new ApiError(400, 'SALMONN takes one clip', 'invalid_request_error', 'messages');
      },
    };
    const { post } = await start(backend);
    const r = await post(user('x'));
    expect(r.status).toBe(400);
    expect((await r.json()).error).toEqual({ message: 'SALMONN takes one clip', type: 'invalid_request_error', param: 'messages', code: null });
  });

  it("answers an adapter's ChatRequestError as a 400 naming its param and code", async () => {
    const backend: ChatAdapter = {
      ...handBackend().backend,
      answer: async () => {
        throw new et.data.ChatRequestError('the prompt has 9 tokens, more than 8', 'messages', 'context_length_exceeded');
      },
    };
    const { post } = await start(backend);
    const r = await post(user('x'));
    expect(r.status).toBe(400);
    expect((await r.json()).error).toEqual({
      message: 'the prompt has 9 tokens, more than 8',
      type: 'invalid_request_error',
      param: 'messages',
      code: 'context_length_exceeded',
    });
  });
});
