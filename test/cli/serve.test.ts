// `npx emotorch serve --model <LLM folder>` (dist/cli/main.js, spawned) driven by the official
// `openai` npm package: prompts rendered by the folder's chat template as transformers'
// apply_chat_template renders them (scripts/fixtures/chat_template.py), answers equal to the
// library's own generate on those ids, streamed and not; OpenAI error objects for bad requests,
// the server alive after each; a client that goes away stops its generation; and a loopback load
// test (32 clients × 50 requests) in which nothing is dropped or mixed up, reporting p50 / p99.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import OpenAI from 'openai';
import * as et from '../../lib/index';
import { spawnSync } from 'child_process';
import { FIXTURES, spawnServer, tmpdir } from '../helpers';

interface Case {
  messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }>;
  text: string;
  ids: number[];
}
const CASES: Case[] = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'chat', 'cases.json'), 'utf8'));

let server: Awaited<ReturnType<typeof spawnServer>>;
let client: OpenAI;
let llm: et.nn.LlamaForCausalLM;
let tok: et.data.Tokenizer;
const dir = path.join(tmpdir(), 'tiny-chat');

/** The library's greedy answer to the reference prompt ids (eos = the config's), decoded as the server decodes. */
async function expected(ids: number[], maxNewTokens: number): Promise<{ text: string; tokens: number }> {
  const { newTokens } = await et.noGrad(() => llm.generate({ inputIds: et.tensor([ids], { dtype: 'int64' }) }, { maxNewTokens }));
  let row = (newTokens.toArray() as number[][])[0].map(Number);
  const e = row.indexOf(llm.config.eos_token_id as number);
  if (e >= 0) row = row.slice(0, e);
  return { text: await tok.decode(row, { skipSpecialTokens: true }), tokens: row.length };
}

beforeAll(async () => {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(path.join(FIXTURES, 'salmonn', 'llm'))) fs.copyFileSync(path.join(FIXTURES, 'salmonn', 'llm', f), path.join(dir, f));
  fs.copyFileSync(path.join(FIXTURES, 'chat', 'chat_template.jinja'), path.join(dir, 'chat_template.jinja'));
  llm = (await et.nn.LlamaForCausalLM.fromPretrained(dir)).eval();
  tok = await et.data.Tokenizer.fromFile(dir);
  server = await spawnServer(['--model', dir, '--max-queue', '64', '--max-tokens', '200', '--max-body-mb', '1']);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 180_000);
afterAll(async () => {
  if (server) expect(await server.stop()).toBe(0);
});

describe('emotorch serve (an LLM with a chat template)', () => {
  it("lists its model and answers as generate does on apply_chat_template's ids, with usage", async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['tiny-chat']);
    for (const c of CASES) {
      const want = await expected(c.ids, 6);
      const r = await client.chat.completions.create({ model: 'tiny-chat', messages: c.messages, max_tokens: 6, temperature: 0 });
      expect(r.object).toBe('chat.completion');
      expect(r.choices[0].message).toMatchObject({ role: 'assistant', content: want.text });
      expect(r.choices[0].finish_reason).toBe(want.tokens === 6 ? 'length' : 'stop');
      expect(r.usage).toEqual({ prompt_tokens: c.ids.length, completion_tokens: want.tokens, total_tokens: c.ids.length + want.tokens });
    }
  });

  it('streams server-sent events whose deltas add up to the same answer', async () => {
    for (const c of CASES) {
      const want = await expected(c.ids, 12);
      const stream = await client.chat.completions.create({
        model: 'tiny-chat',
        messages: c.messages,
        max_tokens: 12,
        temperature: 0,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '',
        chunks = 0,
        finish: string | null = null,
        usage: unknown = null;
      for await (const ch of stream) {
        if (ch.usage) usage = ch.usage;
        if (!ch.choices.length) continue;
        if (ch.choices[0].delta.content) {
          text += ch.choices[0].delta.content;
          chunks++;
        }
        finish = ch.choices[0].finish_reason ?? finish;
      }
      expect(text).toBe(want.text);
      expect(chunks).toBeGreaterThan(1); // token by token, not one piece at the end
      expect(finish).toBe(want.tokens === 12 ? 'length' : 'stop');
      expect(usage).toMatchObject({ prompt_tokens: c.ids.length, completion_tokens: want.tokens });
    }
  });

  it('honours stop: the answer ends before the first stop sequence (one that spans tokens), streamed and not', async () => {
    // the greedy answer token by token, and a stop sequence made of the end of one token and the start of the next
    const c = CASES[0];
    const { newTokens } = await et.noGrad(() => llm.generate({ inputIds: et.tensor([c.ids], { dtype: 'int64' }) }, { maxNewTokens: 24 }));
    let row = (newTokens.toArray() as number[][])[0].map(Number);
    const e = row.indexOf(llm.config.eos_token_id as number);
    if (e >= 0) row = row.slice(0, e);
    const full = await tok.decode(row, { skipSpecialTokens: true });
    let k = 0,
      stop = '';
    for (let i = 2; i < row.length - 1 && !stop; i++) {
      const before = await tok.decode(row.slice(0, i), { skipSpecialTokens: true });
      const next = await tok.decode(row.slice(0, i + 1), { skipSpecialTokens: true });
      const at = before.length - 1;
      // its first character belongs to token i − 1, the rest to token i; it occurs first there
      if (full.startsWith(before) && next.length >= at + 3 && full.indexOf(next.slice(at, at + 3)) === at) {
        stop = next.slice(at, at + 3);
        k = at;
      }
    }
    expect(stop.length).toBe(3);
    const want = full.slice(0, k);
    const r = await client.chat.completions.create({ model: 'tiny-chat', messages: c.messages, max_tokens: 24, temperature: 0, stop });
    expect(r.choices[0].message.content).toBe(want);
    expect(r.choices[0].finish_reason).toBe('stop');
    expect(r.usage!.completion_tokens).toBeLessThan(row.length); // generation ended there
    const s = await client.chat.completions.create({
      model: 'tiny-chat',
      messages: c.messages,
      max_tokens: 24,
      temperature: 0,
      stop: ['\u0000never', stop],
      stream: true,
    });
    let text = '',
      finish: string | null = null;
    for await (const ch of s) {
      text += ch.choices[0]?.delta.content ?? '';
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(want);
    expect(finish).toBe('stop');
    // a wrong type is refused by name, and the openai client's own requests pass the field check
    await expect(client.chat.completions.create({ model: 'tiny-chat', messages: c.messages, stop: 5 as never })).rejects.toMatchObject({
      status: 400,
      param: 'stop',
    });
    await expect(client.chat.completions.create({ model: 'tiny-chat', messages: c.messages, logprobs: true })).rejects.toMatchObject({
      status: 400,
      param: 'logprobs',
    });
  });

  it('answers bad requests with OpenAI error objects and stays up', async () => {
    const post = (body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) =>
      fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers, body }).then(async (r) => ({
        status: r.status,
        body: (await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } },
      }));
    const cases: Array<[string | Buffer, number, RegExp, string | null]> = [
      ['{"messages": [', 400, /not valid JSON/, null],
      ['[1, 2]', 400, /body must be a JSON object/, null],
      [JSON.stringify({ messages: [] }), 400, /non-empty array/, 'messages'],
      [JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }), 404, /model 'gpt-4o' does not exist/, 'model'],
      [
        JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }] }),
        400,
        /does not take audio/,
        'messages[0].content[0]',
      ],
      [JSON.stringify({ messages: [{ role: 'tool', content: 'x' }] }), 400, /role must be/, 'messages[0].role'],
      [JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 100000 }), 400, /max_tokens must be an integer from 1 to 200/, 'max_tokens'],
      [JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], temperature: -1 }), 400, /temperature/, 'temperature'],
      [JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], n: 3 }), 400, /one answer per request/, 'n'],
      [JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'video', video: 'x' }] }] }), 400, /type must be/, 'messages[0].content[0].type'],
    ];
    for (const [body, status, re, param] of cases) {
      const r = await post(body);
      expect(r.status, String(body).slice(0, 80)).toBe(status);
      expect(r.body.error.message).toMatch(re);
      expect(r.body.error.param).toBe(param);
      expect(typeof r.body.error.type).toBe('string');
      expect(r.body.error.code ?? '').not.toMatch(/^FST_/);
    }
    // a 1 GB body is refused from its header, before it is read
    const big = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const u = new URL(`${server.url}/v1/chat/completions`);
      const req = http.request(
        {
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': String(1 << 30) },
        },
        (res) => {
          let b = '';
          res.on('data', (d) => {
            b += d;
          });
          res.on('end', () => resolve({ status: res.statusCode!, body: b }));
        },
      );
      req.on('error', reject);
      req.write(Buffer.alloc(1 << 16, 32));
    });
    expect(big.status).toBe(413);
    // OpenAI's API has no code for these; the web framework's own (FST_ERR_CTP_BODY_TOO_LARGE) is not passed on
    expect(JSON.parse(big.body).error).toMatchObject({ type: 'invalid_request_error', code: null, message: expect.stringMatching(/--max-body-mb/) });
    // the openai client sees them as its typed errors
    await expect(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.chat.completions.create({ model: 'tiny-chat', messages: [{ role: 'user', content: 'hi' }], max_tokens: 0 })).rejects.toBeInstanceOf(
      OpenAI.BadRequestError,
    );
    const health = await (await fetch(`${server.url}/health`)).json();
    expect(health).toMatchObject({ status: 'ok', model: 'tiny-chat', running: 0, max_batch: 16, queued: 0 });
    expect((await fetch(`${server.url}/`)).headers.get('content-type')).toMatch(/text\/html/);
  });

  it('stops generating when the client goes away', async () => {
    const before = (await (await fetch(`${server.url}/health`)).json()) as { cancelled: number; served: number };
    const ac = new AbortController();
    const r = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      signal: ac.signal,
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hello there' }], max_tokens: 200, stream: true }),
    });
    const reader = r.body!.getReader();
    await reader.read(); // the first event
    ac.abort();
    let h = before;
    for (let i = 0; i < 100 && h.cancelled === before.cancelled; i++) {
      await new Promise((res) => setTimeout(res, 50));
      h = (await (await fetch(`${server.url}/health`)).json()) as typeof before;
    }
    expect(h.cancelled).toBe(before.cancelled + 1);
    expect(h.served).toBe(before.served);
    // and the server goes on answering
    const want = await expected(CASES[0].ids, 4);
    const again = await client.chat.completions.create({ model: 'tiny-chat', messages: CASES[0].messages, max_tokens: 4, temperature: 0 });
    expect(again.choices[0].message.content).toBe(want.text);
  });

  it('--dtype bfloat16 serves the weights in bfloat16, batched answers equal generate alone on that model; a bad --dtype is a usage error', async () => {
    const bad = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js'), 'serve', '--model', dir, '--dtype', 'int8'], {
      encoding: 'utf8',
    });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--dtype must be auto, float32, bfloat16 or float16, not 'int8'/);
    const half = (await et.nn.LlamaForCausalLM.fromPretrained(dir, { dtype: 'bfloat16' })).eval();
    const s = await spawnServer(['--model', dir, '--dtype', 'bfloat16', '--max-tokens', '16']);
    try {
      const cl = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const got = await Promise.all(CASES.map((c) => cl.chat.completions.create({ model: 'tiny-chat', messages: c.messages, max_tokens: 10, temperature: 0 })));
      for (const [i, c] of CASES.entries()) {
        const { newTokens } = await et.noGrad(() => half.generate({ inputIds: et.tensor([c.ids], { dtype: 'int64' }) }, { maxNewTokens: 10 }));
        let row = (newTokens.toArray() as number[][])[0].map(Number);
        const e = row.indexOf(half.config.eos_token_id as number);
        if (e >= 0) row = row.slice(0, e);
        expect(got[i].choices[0].message.content).toBe(await tok.decode(row, { skipSpecialTokens: true }));
      }
    } finally {
      expect(await s.stop()).toBe(0);
    }
  }, 120_000);

  it('keeps recent prompts in its prefix cache (reported by /health), the answers those of generate alone; --prefix-cache-mb 0 turns it off', async () => {
    const health = async (url: string) => (await (await fetch(`${url}/health`)).json()) as { prefix_cache: et.nn.PrefixCacheStats };
    const before = (await health(server.url)).prefix_cache;
    expect(before.capacity).toBe(256 * 2 ** 20);
    const c = CASES[0];
    const want = await expected(c.ids, 5);
    for (let i = 0; i < 2; i++) {
      const r = await client.chat.completions.create({ model: 'tiny-chat', messages: c.messages, max_tokens: 5, temperature: 0 });
      expect(r.choices[0].message.content).toBe(want.text);
    }
    const after = (await health(server.url)).prefix_cache;
    expect(after.lookups - before.lookups).toBe(2);
    expect(after.hits - before.hits).toBe(2); // the same prompt was served before (above), and again
    expect(after.reused - before.reused).toBe(2 * (c.ids.length - 2));
    expect(after.bytes).toBeGreaterThan(0);
    for (const size of ['-1', '1e12']) {
      const bad = spawnSync(
        process.execPath,
        [path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js'), 'serve', '--model', dir, '--prefix-cache-mb', size],
        {
          encoding: 'utf8',
        },
      );
      expect(bad.status, size).not.toBe(0);
      expect(bad.stderr, size).toMatch(/--prefix-cache-mb must be a number from 0 to this machine's memory \(\d+ MiB\)/);
    }
    const off = await spawnServer(['--model', dir, '--prefix-cache-mb', '0']);
    try {
      const cl = new OpenAI({ baseURL: `${off.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const r = await cl.chat.completions.create({ model: 'tiny-chat', messages: c.messages, max_tokens: 5, temperature: 0 });
      expect(r.choices[0].message.content).toBe(want.text);
      expect((await health(off.url)).prefix_cache).toMatchObject({ capacity: 0, lookups: 0, entries: 0 });
    } finally {
      expect(await off.stop()).toBe(0);
    }
  }, 120_000);

  it('load: 32 concurrent clients × 50 requests, none dropped or mixed up', async () => {
    // 9 distinct requests (3 conversations × 3 lengths), each client cycling through them
    const kinds = CASES.flatMap((c) => [3, 5, 8].map((n) => ({ c, n })));
    const want = await Promise.all(kinds.map(async ({ c, n }) => (await expected(c.ids, n)).text));
    const latencies: number[] = [];
    let wrong = 0,
      failed = 0,
      peak = 0,
      polling = true;
    // requests decoding at once (the server's continuous batch, --max-batch 16 by default)
    const poll = (async () => {
      while (polling) {
        peak = Math.max(peak, ((await (await fetch(`${server.url}/health`)).json()) as { running: number }).running);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 32 }, async (_, client_) => {
        const cl = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        for (let r = 0; r < 50; r++) {
          const k = (client_ * 7 + r) % kinds.length;
          const s = performance.now();
          try {
            const res = await cl.chat.completions.create({
              model: 'tiny-chat',
              messages: kinds[k].c.messages,
              max_tokens: kinds[k].n,
              temperature: 0,
              stream: r % 2 === 1,
            });
            let text = '';
            if ('choices' in res) text = res.choices[0].message.content ?? '';
            else for await (const ch of res) text += ch.choices[0]?.delta.content ?? '';
            if (text !== want[k]) wrong++;
          } catch {
            failed++;
          }
          latencies.push(performance.now() - s);
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    polling = false;
    await poll;
    latencies.sort((a, b) => a - b);
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
    console.log(
      `serve load: 1600 requests in ${secs.toFixed(1)} s (${(1600 / secs).toFixed(0)}/s), p50 ${q(0.5).toFixed(0)} ms, p99 ${q(0.99).toFixed(0)} ms, failed ${failed}, mixed up ${wrong}, at most ${peak} decoding together`,
    );
    expect(latencies.length).toBe(1600);
    expect(failed).toBe(0);
    expect(wrong).toBe(0); // batched greedy answers are the ones generate gives each alone
    expect(peak).toBeGreaterThan(1);
    expect(peak).toBeLessThanOrEqual(16);
  }, 300_000);
});
