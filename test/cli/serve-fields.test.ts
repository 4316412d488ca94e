// The request fields `serve` reads, in process with a backend whose tokens are pieces of text:
// `stop` (a string or up to 4) ends the answer before the first stop sequence, across token
// boundaries, streamed (no part of a stop sequence is ever sent) and not, with finish_reason
// 'stop', and generation ends there; wrong types, unknown fields and what is not implemented
// (logprobs, penalties, tools, …) are 400s naming the field, their neutral values taken; clients
// that go away mid-stream are counted as cancelled, never as failures, and refusals as rejected.
import { describe, it, expect, afterEach } from 'vitest';
import * as http from 'http';
import * as et from '../../lib/index';
import { createServer, stopCut } from '../../lib/cli/serve';
import type { ChatAdapter } from '../../lib/data/chat';

/**
 * A backend whose answer is `pieces` (the last user text split on '|'), one token each, `ms` apart:
 * it records how many it generated before its signal stopped it.
 */
function pieceBackend(ms = 2) {
  const runs: Array<{ generated: number; aborted: boolean }> = [];
  const vocab: string[] = [];
  const idOf = (p: string) => {
    let i = vocab.indexOf(p);
    if (i < 0) {
      vocab.push(p);
      i = vocab.length - 1;
    }
    return i;
  };
  const backend: ChatAdapter = {
    id: 'pieces',
    kind: 'llm',
    accepts: { audio: false, image: false },
    async answer(turns, g) {
      const ids = turns[turns.length - 1].text.split('|').map(idOf);
      const run = { generated: 0, aborted: false };
      runs.push(run);
      g.onPrompt?.(7);
      const max = Math.min(ids.length, g.maxTokens ?? ids.length);
      for (let i = 0; i < max; i++) {
        await new Promise((r) => setTimeout(r, ms));
        if (g.signal.aborted) {
          run.aborted = true;
          throw new et.EmotorchError('generate: aborted', 'ERR_ABORTED');
        }
        run.generated++;
        g.onTokens([ids[i]]);
      }
      return { tokens: ids.slice(0, max), promptTokens: 7, finish: max < ids.length ? 'length' : 'stop' };
    },
    decode: async (ids) => ids.map((i) => vocab[i]).join(''),
  };
  return { backend, runs };
}

const apps: Array<ReturnType<typeof createServer>> = [];
// keep-alive sockets of the aborted fetches are closed rather than waited for
afterEach(async () => {
  while (apps.length) {
    const a = apps.pop()!;
    a.server.closeAllConnections();
    await a.close();
  }
});

async function start(backend: ChatAdapter, limits = {}) {
  const app = createServer(backend, limits);
  apps.push(app);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const post = (body: unknown) =>
    fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { app, url, post };
}
const ask = (text: string, extra: Record<string, unknown> = {}) => ({ messages: [{ role: 'user', content: text }], ...extra });

/** A streamed answer: its deltas, finish reason and usage. */
async function streamed(r: Response): Promise<{ deltas: string[]; finish: string | null; usage: { completion_tokens: number } | null }> {
  const deltas: string[] = [];
  let finish: string | null = null,
    usage = null;
  for (const line of (await r.text()).split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    const ev = JSON.parse(line.slice(6));
    if (ev.usage) usage = ev.usage;
    if (!ev.choices?.length) continue;
    if (ev.choices[0].delta.content) deltas.push(ev.choices[0].delta.content);
    finish = ev.choices[0].finish_reason ?? finish;
  }
  return { deltas, finish, usage };
}

describe('emotorch serve: stop sequences', () => {
  it('cuts where a stop sequence begins, or holds back the tail that may begin one', () => {
    expect(stopCut('Hello world', ['lo w'])).toEqual({ end: 3, hit: true });
    expect(stopCut('ab END cd STOP', ['STOP', 'END'])).toEqual({ end: 3, hit: true }); // the first in the text, not in the list
    expect(stopCut('Hello wo', ['world'])).toEqual({ end: 6, hit: false });
    expect(stopCut('aaa', ['aab'])).toEqual({ end: 1, hit: false });
    expect(stopCut('abc', [])).toEqual({ end: 3, hit: false });
    // against the definition, on random texts and stop sequences over two letters (borders everywhere)
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const word = (n: number) => Array.from({ length: n }, () => 'ab'[rnd(2)]).join('');
    for (let t = 0; t < 3000; t++) {
      const text = word(rnd(12)),
        stops = Array.from({ length: 1 + rnd(3) }, () => word(1 + rnd(6)));
      const at = Math.min(...stops.map((x) => text.indexOf(x)).filter((i) => i >= 0));
      let held = 0;
      for (const x of stops) for (let k = 1; k < x.length; k++) if (text.endsWith(x.slice(0, k))) held = Math.max(held, k);
      expect(stopCut(text, stops), `${text} ${stops}`).toEqual(Number.isFinite(at) ? { end: at, hit: true } : { end: text.length - held, hit: false });
    }
    // a long stop sequence costs time linear in it
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) stopCut('a'.repeat(4000), ['a'.repeat(20000) + 'b']);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('ends the answer before the first stop sequence, across token boundaries, streamed and not, and stops generating', async () => {
    const { backend, runs } = pieceBackend();
    const { post } = await start(backend, { maxBatch: 1 });
    // the stop sequence '\n\nQ:' spans three tokens; nine more would follow it
    const text = 'The| answer| is| 4|.\n|\nQ|:| and| so| on| and| on| and| more|.';
    const plain = await (await post(ask(text, { stop: '\n\nQ:', max_tokens: 16 }))).json();
    expect(plain.choices[0]).toMatchObject({ message: { content: 'The answer is 4.' }, finish_reason: 'stop' });
    expect(runs[0].aborted).toBe(true);
    expect(runs[0].generated).toBeLessThan(16);
    expect(plain.usage).toEqual({ prompt_tokens: 7, completion_tokens: runs[0].generated, total_tokens: 7 + runs[0].generated });
    const s = await streamed(await post(ask(text, { stop: ['zzz', '\n\nQ:'], max_tokens: 16, stream: true, stream_options: { include_usage: true } })));
    expect(s.deltas.join('')).toBe('The answer is 4.'); // nothing of '\n\nQ:' was ever sent
    expect(s.deltas.length).toBeGreaterThan(2);
    expect(s.finish).toBe('stop');
    expect(s.usage?.completion_tokens).toBe(runs[1].generated);
    expect(runs[1].generated).toBeLessThan(16);
    // the first stop sequence in the text wins, whichever the list names first
    const two = await (await post(ask('a| END| b| STOP', { stop: ['STOP', 'END'] }))).json();
    expect(two.choices[0].message.content).toBe('a ');
  });

  it('sends a held-back tail when the stop sequence never completes, and keeps finish_reason length', async () => {
    const { backend } = pieceBackend();
    const { post } = await start(backend);
    const s = await streamed(await post(ask('x| ST|O| y| STO', { stop: ['STOP'], max_tokens: 5, stream: true })));
    expect(s.deltas.join('')).toBe('x STO y STO');
    expect(s.deltas).not.toContain(' ST'); // ' ST' and 'O' were held until ' y' showed they begin no stop sequence
    expect(s.finish).toBe('stop');
    const cut = await (await post(ask('x| ST|O| y| STO| more', { stop: ['STOP'], max_tokens: 5 }))).json();
    expect(cut.choices[0]).toMatchObject({ message: { content: 'x STO y STO' }, finish_reason: 'length' });
  });
});

describe('emotorch serve: request fields', () => {
  it('refuses wrong types, unknown fields and what it does not implement, naming the field', async () => {
    const { backend, runs } = pieceBackend();
    const { post, app } = await start(backend);
    const cases: Array<[Record<string, unknown>, string, RegExp]> = [
      [{ stop: 5 }, 'stop', /stop must be a non-empty string or an array of up to 4/],
      [{ stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', /up to 4/],
      [{ stop: '' }, 'stop', /non-empty/],
      [{ stop: ['a', 1] }, 'stop', /stop must be/],
      [{ stop: { a: 1 } }, 'stop', /stop must be/],
      [{ foo: 1 }, 'foo', /unknown field 'foo': this server takes messages, model/],
      [{ fooBar: 1, max_tokenz: 3 }, 'fooBar', /unknown fields 'fooBar', 'max_tokenz'/],
      [{ logprobs: true }, 'logprobs', /logprobs must be false \(log probabilities are not returned\), not true/],
      [{ top_logprobs: 3 }, 'top_logprobs', /top_logprobs must be absent/],
      [{ frequency_penalty: 0.5 }, 'frequency_penalty', /penalties are not implemented/],
      [{ presence_penalty: -1 }, 'presence_penalty', /penalties are not implemented/],
      [{ logit_bias: { 50: 100 } }, 'logit_bias', /logit biases/],
      [{ tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools', /tool calls are not implemented/],
      [{ response_format: { type: 'json_object' } }, 'response_format', /structured outputs/],
      [{ stream_options: { include_usage: true } }, 'stream_options', /unless stream is true/],
      [{ stream: true, stream_options: { include_usage: 'yes' } }, 'stream_options', /include_usage\?: boolean/],
      [{ n: 2 }, 'n', /one answer per request/],
      [{ modalities: ['text', 'audio'], audio: { voice: 'alloy', format: 'wav' } }, 'modalities', /answers in text only/],
      [{ modalities: ['audio'] }, 'modalities', /\['text'\] or \['text', 'audio'\]/],
      [{ audio: { voice: 'alloy', format: 'wav' } }, 'audio', /unless modalities has 'audio'/],
    ];
    for (const [extra, param, re] of cases) {
      const r = await post(ask('a|b', extra));
      const body = await r.json();
      expect(r.status, JSON.stringify(extra)).toBe(400);
      expect(body.error.param, JSON.stringify(extra)).toBe(param);
      expect(body.error.message).toMatch(re);
    }
    expect(runs.length).toBe(0); // refused before anything ran
    expect(app.stats).toMatchObject({ served: 0, failed: 0, rejected: cases.length });
    // the neutral values and the caller's own fields are taken
    const ok = await post(
      ask('a|b', {
        logprobs: false,
        top_logprobs: null,
        frequency_penalty: 0,
        presence_penalty: 0,
        logit_bias: {},
        tools: [],
        tool_choice: 'none',
        response_format: { type: 'text' },
        modalities: ['text'],
        store: false,
        user: 'u1',
        metadata: { k: 'v' },
        n: 1,
        stop: null,
        parallel_tool_calls: true,
      }),
    );
    expect(ok.status).toBe(200);
    expect((await ok.json()).choices[0].message.content).toBe('ab');
  });
});

describe('emotorch serve: clients that go away', () => {
  it('counts a disconnect at any point of a stream as cancelled, never as failed', async () => {
    const { backend } = pieceBackend(3);
    const { app, url } = await start(backend, { maxBatch: 4, maxQueue: 100 });
    const u = new URL(url);
    const long = Array.from({ length: 40 }, (_, i) => `w${i} `).join('|');
    // raw sockets destroyed after k events (or right after the body is sent, or before the first event)
    const raw = (k: number) =>
      new Promise<void>((resolve) => {
        const req = http.request(
          { host: u.hostname, port: u.port, path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' } },
          (res) => {
            let n = 0;
            res.on('data', () => {
              if (++n === k) req.destroy();
            });
            res.on('close', () => resolve());
          },
        );
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.end(JSON.stringify(ask(long, { stream: true })));
        if (k === 0) setImmediate(() => req.destroy());
      });
    // fetch aborted, or its body cancelled, after k chunks
    const viaFetch = async (k: number, cancel: boolean) => {
      const ac = new AbortController();
      try {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          signal: ac.signal,
          body: JSON.stringify(ask(long, { stream: true })),
        });
        const rd = r.body!.getReader();
        for (let i = 0; i < k; i++) if ((await rd.read()).done) break;
        if (cancel) await rd.cancel();
        else ac.abort();
      } catch {
        /* the abort */
      }
    };
    await Promise.all([...Array.from({ length: 12 }, (_, i) => raw(i * 3)), ...Array.from({ length: 12 }, (_, i) => viaFetch(i * 3, i % 2 === 0))]);
    for (let i = 0; i < 200 && app.stats.cancelled + app.stats.served < 22; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 100));
    expect(app.stats.failed).toBe(0);
    expect(app.stats.rejected).toBe(0);
    expect(app.stats.cancelled).toBeGreaterThanOrEqual(20); // the socket closed before its body was read never reaches the handler
    expect(await (await fetch(`${url}/health`)).json()).toMatchObject({ running: 0, queued: 0, failed: 0 });
  });
});
