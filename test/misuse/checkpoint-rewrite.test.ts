// A checkpoint changed under a loaded model (issue 56): fromPretrained's tensors own their bytes
// (read with pread into their own storage, never a view of a mapping of the file), so a file
// overwritten in place with other weights (as `cp`, `dd conv=notrunc` or Python's open('wb') do
// it), or cut short mid-copy, changes nothing loaded and cannot kill the process with SIGBUS. The
// loaded model runs in a child process (a library script, then `emotorch serve`), so a SIGBUS
// fails the test instead of killing vitest; a later load of the changed file is a coded error.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, spawnServer, tmpdir } from '../helpers';

const DIST = path.join(__dirname, '..', '..', 'dist', 'index.js');

/** A copy of a fixture model folder, and a checkpoint of the same shapes with other weights (each tensor × 2 + 0.5). */
async function folderAndOther(fixture: string): Promise<{ dir: string; other: string }> {
  const dir = path.join(tmpdir(), path.basename(fixture));
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(fixture))
    if (f !== 'io.safetensors' && fs.statSync(path.join(fixture, f)).isFile()) fs.copyFileSync(path.join(fixture, f), path.join(dir, f));
  const { tensors } = await et.io.loadSafetensors(path.join(dir, 'model.safetensors'));
  const other = path.join(tmpdir(), 'other.safetensors');
  await et.io.saveSafetensors(other, new Map([...tensors].map(([k, t]) => [k, t.mul(2).add(0.5)] as [string, et.Tensor])));
  return { dir, other };
}

describe('a checkpoint rewritten under a loaded model', () => {
  it('fromPretrained: overwritten in place, scribbled over, truncated, emptied: the same logits, no crash; a new load is a coded error', async () => {
    const { dir, other } = await folderAndOther(path.join(FIXTURES, 'llama'));
    const file = path.join(dir, 'model.safetensors');
    const script = `const et = require(${JSON.stringify(DIST)});
      const fs = require('fs');
      (async () => {
        const file = ${JSON.stringify(file)}, dir = ${JSON.stringify(dir)};
        const ids = et.tensor([[1, 5, 9, 13, 2, 7]], { dtype: 'int64' });
        const logits = async (m) => Array.from((await et.noGrad(() => m.forward({ inputIds: ids }))).logits.dataSync());
        const m = await et.nn.LlamaForCausalLM.fromPretrained(dir);   // float32 as the file: its tensors are the parameters
        const out = { loaded: await logits(m) };
        // cp / open('wb'): truncated to 0, then the other weights written
        fs.writeFileSync(file, fs.readFileSync(${JSON.stringify(other)}));
        out.rewritten = await logits(m);
        out.reloaded = await logits(await et.nn.LlamaForCausalLM.fromPretrained(dir));
        // dd conv=notrunc: the data section overwritten without a change of size
        const fd = fs.openSync(file, 'r+');
        fs.writeSync(fd, Buffer.alloc(fs.statSync(file).size - 4096, 0x41), 0, undefined, 4096);
        fs.closeSync(fd);
        out.scribbled = await logits(m);
        // a copy caught midway: the file shorter than the model
        fs.truncateSync(file, 4096);
        out.truncated = await logits(m);
        fs.truncateSync(file, 0);
        out.emptied = await logits(m);
        await et.nn.LlamaForCausalLM.fromPretrained(dir).then(() => { out.loadError = 'none'; }, (e) => { out.loadError = e.code; });
        console.log(JSON.stringify(out));
      })().catch((e) => { console.error(e); process.exit(3); });`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 120_000 });
    expect(r.signal, `the child died of ${r.signal}: ${r.stderr}`).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number[] | string>;
    const loaded = out.loaded as number[];
    expect(loaded.every(Number.isFinite)).toBe(true);
    for (const k of ['rewritten', 'scribbled', 'truncated', 'emptied']) expect(out[k], k).toEqual(loaded);
    // the rewrite did reach the file: a fresh load of it gives other logits
    const reloaded = out.reloaded as number[];
    expect(Math.max(...reloaded.map((v, i) => Math.abs(v - loaded[i])))).toBeGreaterThan(0.1);
    expect(out.loadError).toBe('ERR_FORMAT');
  }, 120_000);

  it('a file modified while it is read is ERR_IO, and one changed since its header was read too', async () => {
    const { dir } = await folderAndOther(path.join(FIXTURES, 'llama'));
    const file = path.join(dir, 'model.safetensors');
    const header = et.io.readSafetensorsHeader(file);
    // the header read, then the file grows (a writer appending): the read refuses the file
    fs.appendFileSync(file, Buffer.alloc(8));
    const list = [...header.entries].map(([n, e]) => [n, e.dtype, e.shape, e.begin, e.end] as [string, string, number[], number, number]);
    const { binding } = await import('../../lib/native');
    await expect(binding.readSafetensors(file, header.dataStart, list, header.fileSize)).rejects.toMatchObject({
      code: 'ERR_IO',
      message: expect.stringMatching(/changed after its header was read/),
    });
  });

  it('emotorch serve answers the same after its checkpoint is overwritten and truncated, and exits cleanly', async () => {
    const { dir, other } = await folderAndOther(path.join(FIXTURES, 'salmonn', 'llm'));
    fs.copyFileSync(path.join(FIXTURES, 'chat', 'chat_template.jinja'), path.join(dir, 'chat_template.jinja'));
    const file = path.join(dir, 'model.safetensors');
    const server = await spawnServer(['--model', dir, '--max-tokens', '16']);
    const ask = async (): Promise<{ status: number; content: unknown }> => {
      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: path.basename(dir), messages: [{ role: 'user', content: 'hello there' }], max_tokens: 8, temperature: 0 }),
      });
      const body = (await res.json()) as { choices?: Array<{ message: { content: string } }> };
      return { status: res.status, content: body.choices?.[0]?.message.content };
    };
    try {
      const first = await ask();
      expect(first.status).toBe(200);
      fs.writeFileSync(file, fs.readFileSync(other));
      expect(await ask()).toEqual(first);
      fs.truncateSync(file, 1000);
      expect(await ask()).toEqual(first);
    } finally {
      expect(await server.stop(), server.stderr()).toBe(0);
    }
  }, 180_000);
});
