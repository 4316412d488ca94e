// Models by name through the Hugging Face cache (et.hub, every fromPretrained): a loopback hub
// (test/hub/server.ts) answering as the real one answers huggingface_hub; the cache layout Python
// uses (blobs named by ETag, refs/<revision>, relative snapshot symlinks); revisions, offline
// mode, gated repos, 404s, an unreachable hub, a cut connection resumed by Range, a corrupted
// file, a full disk, two downloads of one file at once; and Python's huggingface_hub reading what
// emotorch downloaded and the other way round (skipped, saying so, where it is not installed).
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';
import { LoopbackHub, startHub } from './server';
import { loadChatModel } from '../../lib/cli/common';
import { tryLockFile } from '../../lib/runtime';

const read = (f: string) => fs.readFileSync(path.join(FIXTURES, f));
const C1 = crypto.createHash('sha1').update('one').digest('hex');
const C2 = crypto.createHash('sha1').update('two').digest('hex');
const whisperFiles = () => ({
  'config.json': read('whisper/config.json'),
  'model.safetensors': read('whisper/model.safetensors'),
  'pytorch_model.bin': Buffer.from('not needed: the repo has safetensors'),
  'flax_model.msgpack': Buffer.from('not needed'),
  'README.md': Buffer.from('# tiny whisper'),
  'onnx/encoder.onnx': Buffer.from('not needed'),
});
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** A python3 with huggingface_hub: EMOTORCH_HUB_PYTHON, CI's .ci/pyhub, the reference venv, python3. */
function hubPython(): string | null {
  const candidates = [
    process.env.EMOTORCH_HUB_PYTHON,
    path.join(__dirname, '..', '..', '.ci', 'pyhub', 'bin', 'python'),
    '/root/refvenv/bin/python',
    'python3',
  ];
  for (const py of candidates) {
    if (!py) continue;
    const r = spawnSync(py, ['-c', 'import huggingface_hub'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return null;
}

/** Runs Python without blocking this process: the loopback hub it talks to lives here. */
function pyRun(py: string, code: string, env: NodeJS.ProcessEnv): Promise<{ status: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(py, ['-c', code], { env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

let hub: LoopbackHub;
beforeAll(async () => {
  hub = await startHub(
    {
      'tiny/whisper': {
        commits: {
          [C1]: whisperFiles(),
          [C2]: {
            ...whisperFiles(),
            'config.json': Buffer.from(read('whisper/config.json').toString().replace('"encoder_layers"', '"extra_field": 1, "encoder_layers"')),
          },
        },
        refs: { main: C1, v2: C2 },
      },
      'tiny/llm': {
        commits: {
          [C1]: Object.fromEntries(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'].map((f) => [f, read(`salmonn/llm/${f}`)])),
        },
      },
      'tiny/sharded-llama': {
        commits: { [C1]: Object.fromEntries(fs.readdirSync(path.join(FIXTURES, 'pytorch_bin', 'sharded')).map((f) => [f, read(`pytorch_bin/sharded/${f}`)])) },
      },
      'tiny/gated-llama': {
        commits: {
          [C1]: {
            'tokenizer.json': read('tokenizers/llama/tokenizer.json'),
            'tokenizer_config.json': Buffer.from('{}'),
            'model.safetensors': read('whisper/model.safetensors'),
          },
        },
        token: 'hf_secret',
      },
    },
    {},
    { 'tiny/old-whisper': 'tiny/whisper' },
  );
});
afterAll(async () => {
  await hub?.close();
});
const opts = (cacheDir: string, extra: Partial<et.hub.HubOptions> = {}): et.hub.HubOptions => ({ endpoint: hub.url, cacheDir, progress: false, ...extra });

describe('et.hub: repo ids through the Hugging Face cache', () => {
  it("downloads only what a model loads, in huggingface_hub's layout, and loads it; the second time nothing is downloaded", async () => {
    const cache = tmpdir();
    hub.log.length = 0;
    const m = await et.nn.WhisperEncoder.fromPretrained('tiny/whisper', { hub: opts(cache) });
    const local = await et.nn.WhisperEncoder.fromPretrained(path.join(FIXTURES, 'whisper'));
    for (const [k, t] of local.stateDict()) expect(maxAbsDiff(m.stateDict().get(k)!, t)).toBe(0);
    const repo = path.join(cache, 'models--tiny--whisper');
    expect(fs.readFileSync(path.join(repo, 'refs', 'main'), 'utf8')).toBe(C1);
    const snap = path.join(repo, 'snapshots', C1);
    expect(fs.readdirSync(snap).sort()).toEqual(['config.json', 'model.safetensors']); // not .bin, .msgpack, README, onnx/
    const link = fs.readlinkSync(path.join(snap, 'model.safetensors'));
    expect(link).toBe(`../../blobs/${sha256(read('whisper/model.safetensors'))}`); // LFS: the blob is named by its sha256
    const gitSha = crypto
      .createHash('sha1')
      .update(Buffer.concat([Buffer.from(`blob ${read('whisper/config.json').length}\0`), read('whisper/config.json')]))
      .digest('hex');
    expect(fs.readlinkSync(path.join(snap, 'config.json'))).toBe(`../../blobs/${gitSha}`); // a small file: its git blob id
    expect(fs.readdirSync(path.join(repo, 'blobs')).every((b) => !b.endsWith('.incomplete'))).toBe(true);
    expect(hub.log.filter((l) => l.startsWith('GET /cdn/')).length).toBe(1);

    hub.log.length = 0;
    await et.nn.WhisperEncoder.fromPretrained('tiny/whisper', { hub: opts(cache) });
    expect(hub.log).toEqual(['GET /api/models/tiny/whisper/revision/main']); // the commit is checked; no file moves
    hub.log.length = 0;
    expect(await et.hub.hubSnapshot('tiny/whisper', opts(cache, { localFilesOnly: true }))).toBe(snap);
    const prev = process.env.HF_HUB_OFFLINE;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      expect(await et.hub.resolvePretrainedPath('tiny/whisper', opts(cache))).toBe(snap);
    } finally {
      if (prev === undefined) delete process.env.HF_HUB_OFFLINE;
      else process.env.HF_HUB_OFFLINE = prev;
    }
    expect(hub.log).toEqual([]); // offline: no request at all
  });

  it('downloads a sharded checkpoint (its index and every shard) and loads it as the local folder', async () => {
    const cache = tmpdir();
    hub.log.length = 0;
    const m = await et.nn.LlamaForCausalLM.fromPretrained('tiny/sharded-llama', { hub: opts(cache, { concurrency: 4 }) });
    const local = await et.nn.LlamaForCausalLM.fromPretrained(path.join(FIXTURES, 'pytorch_bin', 'sharded'));
    expect(m.stateDict().size).toBe(local.stateDict().size);
    for (const [k, t] of local.stateDict()) expect(maxAbsDiff(m.stateDict().get(k)!, t)).toBe(0);
    const snap = path.join(cache, 'models--tiny--sharded-llama', 'snapshots', C1);
    const shards = fs.readdirSync(snap).filter((f) => /^model-\d{5}-of-00014\.safetensors$/.test(f));
    expect(shards.length).toBe(14);
    expect(fs.existsSync(path.join(snap, 'model.safetensors.index.json'))).toBe(true);
    expect(fs.existsSync(path.join(snap, 'README.md'))).toBe(false);
    expect(hub.log.filter((l) => l.startsWith('GET /cdn/')).length).toBe(14); // each shard once, from the CDN
  });

  it('takes a branch, tag or commit as revision; an unknown one is ERR_HUB_NOT_FOUND naming it', async () => {
    const cache = tmpdir();
    const v2 = await et.hub.hubSnapshot('tiny/whisper', opts(cache, { revision: 'v2' }));
    expect(path.basename(v2)).toBe(C2);
    expect(fs.readFileSync(path.join(cache, 'models--tiny--whisper', 'refs', 'v2'), 'utf8')).toBe(C2);
    await expect(et.nn.WhisperEncoder.fromPretrained('tiny/whisper', { revision: C2, hub: opts(cache) })).resolves.toBeTruthy();
    expect(JSON.parse(fs.readFileSync(path.join(v2, 'config.json'), 'utf8')).extra_field).toBe(1);
    expect(path.basename(await et.hub.hubSnapshot('tiny/whisper', opts(cache, { revision: C1 })))).toBe(C1);
    // the same bytes at both commits: one blob
    expect(fs.readdirSync(path.join(cache, 'models--tiny--whisper', 'blobs')).length).toBe(3);
    await rejectsWith(et.hub.hubSnapshot('tiny/whisper', opts(cache, { revision: 'no-such-branch' })), 'ERR_HUB_NOT_FOUND', /no-such-branch.*no such revision/);
    // a system's shared hub options carry the revision to every repo id (tiny/llm has no v2: refused, naming it)
    await rejectsWith(
      et.systems.salmonn.Salmonn.fromPretrained({ whisper: 'tiny/whisper', llm: 'tiny/llm', hub: opts(cache, { revision: 'v2' }) }),
      'ERR_HUB_NOT_FOUND',
      /'tiny\/llm' at revision 'v2'.*no such revision/,
    );
    // misspelt or mistyped hub options are named
    await rejectsWith(et.hub.hubSnapshot('tiny/whisper', opts(cache, { revison: 'v2' } as never)), 'ERR_INVALID_ARG', /revison/);
    await rejectsWith(et.hub.hubSnapshot('tiny/whisper', opts(cache, { localFilesOnly: 'yes' } as never)), 'ERR_INVALID_ARG', /localFilesOnly/);
    await rejectsWith(et.hub.hubSnapshot('tiny/whisper', opts(cache, { endpoint: 'huggingface.co' })), 'ERR_INVALID_ARG', /endpoint/);
    // a mistyped repo without a token: the hub's 401 RepoNotFound is huggingface_hub's RepositoryNotFoundError, not an access problem
    await rejectsWith(
      et.hub.hubSnapshot('tiny/none', opts(cache, { token: false })),
      'ERR_HUB_NOT_FOUND',
      /no repo 'tiny\/none' .*HTTP 401 RepoNotFound.*check the id; a private repo answers the same without a token/,
    );
    await rejectsWith(et.hub.hubSnapshot('tiny/none', opts(cache, { token: 'hf_x' })), 'ERR_HUB_NOT_FOUND', /no repo 'tiny\/none' .*HTTP 404 RepoNotFound/);
    // a renamed repo: the hub answers the old id with relative 307s to the new one, followed on the hub's host
    const renamed = await et.hub.hubSnapshot('tiny/old-whisper', opts(cache));
    expect(renamed).toBe(path.join(cache, 'models--tiny--old-whisper', 'snapshots', C1));
    expect(fs.readdirSync(renamed).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  it('sends the token to a gated repo (HF_TOKEN, the token file or the option), and says what is missing without one', async () => {
    const cache = tmpdir();
    const home = tmpdir();
    const saved = { HF_TOKEN: process.env.HF_TOKEN, HF_HOME: process.env.HF_HOME };
    delete process.env.HF_TOKEN;
    process.env.HF_HOME = home; // no token file there
    try {
      await rejectsWith(
        et.data.Tokenizer.fromFile('tiny/gated-llama', { hub: opts(cache) }),
        'ERR_HUB_AUTH',
        /gated or private.*no token was found: set HF_TOKEN/,
      );
      await rejectsWith(et.hub.hubSnapshot('tiny/gated-llama', opts(cache, { token: 'wrong' })), 'ERR_HUB_AUTH', /the token sent was refused/);
      fs.writeFileSync(path.join(home, 'token'), 'hf_secret\n'); // what `hf auth login` writes
      const tok = await et.data.Tokenizer.fromFile('tiny/gated-llama', { hub: opts(cache) });
      expect(tok.vocabSize).toBeGreaterThan(100);
      fs.rmSync(path.join(home, 'token'));
      process.env.HF_TOKEN = 'hf_secret';
      hub.log.length = 0;
      expect(await et.hub.hubSnapshot('tiny/gated-llama', opts(tmpdir()))).toMatch(new RegExp(`snapshots/${C1}$`));
      // the token goes to the hub, never to the CDN the weights are redirected to
      expect(hub.log.filter((l) => l.includes('/resolve/')).every((l) => l.endsWith('+token'))).toBe(true);
      expect(hub.log.filter((l) => l.startsWith('GET /cdn/'))).toEqual([`GET /cdn/${sha256(read('whisper/model.safetensors'))}`]);
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });

  it('uses the cache when the hub cannot be reached, and names the endpoint and cache folder when it has nothing', async () => {
    const cache = tmpdir();
    const snap = await et.hub.hubSnapshot('tiny/whisper', opts(cache));
    const down = { endpoint: 'http://127.0.0.1:9', cacheDir: cache, progress: false }; // nothing listens on port 9
    expect(await et.hub.hubSnapshot('tiny/whisper', down)).toBe(snap);
    await rejectsWith(et.hub.hubSnapshot('tiny/other', down), 'ERR_HUB_NETWORK', /127\.0\.0\.1:9 cannot be reached.*models--tiny--other/);
    await rejectsWith(et.hub.hubSnapshot('tiny/other', { ...down, localFilesOnly: true }), 'ERR_HUB_NOT_FOUND', /not in the hub cache.*localFilesOnly/);
    await rejectsWith(et.nn.WhisperEncoder.fromPretrained('not a repo id!'), 'ERR_IO', /neither an existing file or folder nor a Hugging Face repo id/);
    await rejectsWith(et.hub.hubSnapshot('a/b/c', down), 'ERR_INVALID_ARG', /org\/name/);
    await rejectsWith(et.hub.hubSnapshot('org/../x', down), 'ERR_INVALID_ARG', /org\/name/);
  });

  it('resumes a download cut mid-file with a Range request; discards a file whose sha256 is wrong; leaves no blob when the disk is full', async () => {
    const weights = read('whisper/model.safetensors');
    const faulty = await startHub({ 'tiny/whisper': { commits: { [C1]: whisperFiles() } } }, { cut: ['model.safetensors'], slowMs: 1 });
    try {
      const cache = tmpdir();
      const snap = await et.hub.hubSnapshot('tiny/whisper', { endpoint: faulty.url, cacheDir: cache, progress: false });
      expect(faulty.log.filter((l) => l.startsWith('GET /cdn/'))).toEqual([
        `GET /cdn/${sha256(weights)}`,
        `GET /cdn/${sha256(weights)} bytes=${weights.length >> 1}-`,
      ]);
      expect(sha256(fs.readFileSync(path.join(snap, 'model.safetensors')))).toBe(sha256(weights));
    } finally {
      await faulty.close();
    }
    const bad = await startHub({ 'tiny/whisper': { commits: { [C1]: whisperFiles() } } }, { corrupt: ['model.safetensors'] });
    try {
      const cache = tmpdir();
      await rejectsWith(
        et.hub.hubSnapshot('tiny/whisper', { endpoint: bad.url, cacheDir: cache, progress: false, retries: 2 }),
        'ERR_HUB_INTEGRITY',
        /sha256 is [0-9a-f]{64}, not the [0-9a-f]{64}/,
      );
      const blobs = fs.readdirSync(path.join(cache, 'models--tiny--whisper', 'blobs'));
      expect(blobs.some((b) => b.startsWith(sha256(weights)))).toBe(false); // neither a blob nor a part of it
      expect(bad.log.filter((l) => l.startsWith('GET /cdn/')).length).toBe(2); // fetched again once, then given up
    } finally {
      await bad.close();
    }
    // a hostile hub's ETags: only a blob id (git sha1, LFS sha256) names a blob; anything else is
    // refused naming the header and its value, and the cache stays as it was
    const cfg = read('whisper/config.json');
    const cfgSha1 = crypto
      .createHash('sha1')
      .update(Buffer.concat([Buffer.from(`blob ${cfg.length}\0`), cfg]))
      .digest('hex');
    const forged: Array<[string, string, 'etag' | undefined, string]> = [
      ['config.json', '..', undefined, 'ETag'],
      ['config.json', '.', undefined, 'ETag'],
      ['config.json', '".."', undefined, 'ETag'],
      ['config.json', 'W/"."', undefined, 'ETag'],
      ['config.json', '"../../outside"', undefined, 'ETag'],
      ['config.json', '""', undefined, 'ETag'],
      ['config.json', `"${cfgSha1.slice(1)}"`, undefined, 'ETag'],
      ['config.json', `"${cfgSha1.toUpperCase()}"`, undefined, 'ETag'],
      ['config.json', `"${cfgSha1}/.."`, undefined, 'ETag'],
      ['config.json', `"${cfgSha1} "`, undefined, 'ETag'],
      ['model.safetensors', '".."', undefined, 'X-Linked-Etag'],
      ['model.safetensors', '.', 'etag', 'ETag'],
    ];
    for (const [file, value, header, named] of forged) {
      const hostile = await startHub(
        { 'tiny/whisper': { commits: { [C1]: whisperFiles() } } },
        { etags: { [file]: value }, ...(header ? { etagHeader: header } : {}) },
      );
      try {
        const cache = tmpdir();
        const e = await rejectsWith(et.hub.hubSnapshot('tiny/whisper', { endpoint: hostile.url, cacheDir: cache, progress: false }), 'ERR_HUB_INTEGRITY');
        expect(e.message).toContain(`the hub's ${named} header for '${file}' of 'tiny/whisper' is ${JSON.stringify(value)}, not a blob id`);
        const repo = path.join(cache, 'models--tiny--whisper');
        expect(fs.statSync(repo).isDirectory()).toBe(true); // never replaced by a file
        const blobs = path.join(repo, 'blobs');
        for (const b of fs.existsSync(blobs) ? fs.readdirSync(blobs) : []) expect(b, value).toMatch(/^[0-9a-f]{40}$|^[0-9a-f]{64}$/);
        expect(fs.readdirSync(cache).sort()).toEqual(['.locks', 'models--tiny--whisper'].filter((d) => fs.existsSync(path.join(cache, d))));
        // the same cache, the hub honest again: the snapshot comes whole
        const snap = await et.hub.hubSnapshot('tiny/whisper', opts(cache));
        expect(fs.readFileSync(path.join(snap, 'config.json'))).toEqual(cfg);
      } finally {
        await hostile.close();
      }
    }
    // the forms huggingface_hub takes off are taken off: a weak ETag, no quotes
    for (const value of [`W/"${cfgSha1}"`, cfgSha1]) {
      const weak = await startHub({ 'tiny/whisper': { commits: { [C1]: whisperFiles() } } }, { etags: { 'config.json': value } });
      try {
        const cache = tmpdir();
        const snap = await et.hub.hubSnapshot('tiny/whisper', { endpoint: weak.url, cacheDir: cache, progress: false });
        expect(fs.readlinkSync(path.join(snap, 'config.json'))).toBe(path.join('..', '..', 'blobs', cfgSha1));
      } finally {
        await weak.close();
      }
    }
    // a full disk: the part file is /dev/full, where every write fails with ENOSPC
    if (fs.existsSync('/dev/full')) {
      const cache = tmpdir();
      const blobs = path.join(cache, 'models--tiny--whisper', 'blobs');
      fs.mkdirSync(blobs, { recursive: true });
      fs.symlinkSync('/dev/full', path.join(blobs, `${sha256(weights)}.incomplete`));
      await rejectsWith(et.hub.hubSnapshot('tiny/whisper', opts(cache)), 'ERR_IO', /ENOSPC/);
      expect(fs.existsSync(path.join(blobs, sha256(weights)))).toBe(false);
      expect(fs.existsSync(path.join(cache, 'models--tiny--whisper', 'snapshots', C1, 'model.safetensors'))).toBe(false);
    }
  });

  it('lets two downloads of one repo run at once (a lock per blob): both end with the same intact files', async () => {
    const cache = tmpdir();
    const [a, b] = await Promise.all([et.hub.hubSnapshot('tiny/whisper', opts(cache)), et.hub.hubSnapshot('tiny/whisper', opts(cache))]);
    expect(a).toBe(b);
    expect(sha256(fs.readFileSync(path.join(a, 'model.safetensors')))).toBe(sha256(read('whisper/model.safetensors')));
    // huggingface_hub's lock files, released (they stay, as filelock leaves them): each can be taken at once
    const locks = fs.readdirSync(path.join(cache, '.locks', 'models--tiny--whisper'));
    expect(locks.sort()).toEqual(
      fs
        .readdirSync(path.join(cache, 'models--tiny--whisper', 'blobs'))
        .map((b) => `${b}.lock`)
        .sort(),
    );
    for (const l of locks) {
      const fd = fs.openSync(path.join(cache, '.locks', 'models--tiny--whisper', l), 'r+');
      expect(tryLockFile(fd)).toBe(true);
      fs.closeSync(fd);
    }
  });

  it('two processes fetching one repo at once: the lock lets one download each file, the other waits and links it', async () => {
    const slow = await startHub({ 'tiny/whisper': { commits: { [C1]: whisperFiles() } } }, { slowMs: 20 });
    try {
      const cache = tmpdir();
      const dist = path.join(__dirname, '..', '..', 'dist', 'index.js');
      const code = `require(${JSON.stringify(dist)}).hub.hubSnapshot('tiny/whisper', { endpoint: ${JSON.stringify(slow.url)}, cacheDir: ${JSON.stringify(cache)}, progress: false }).then((p) => console.log(p), (e) => { console.error(e.code, e.message); process.exit(1); })`;
      const child = () =>
        new Promise<{ code: number; out: string; err: string }>((resolve) => {
          execFile(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 120_000 }, (err, out, errOut) =>
            resolve({ code: err ? 1 : 0, out: out.trim(), err: errOut }),
          );
        });
      const [a, b] = await Promise.all([child(), child()]);
      expect([a.err, b.err]).toEqual(['', '']);
      expect(a.out).toBe(b.out);
      expect(sha256(fs.readFileSync(path.join(a.out, 'model.safetensors')))).toBe(sha256(read('whisper/model.safetensors')));
      expect(slow.log.filter((l) => l.startsWith('GET /cdn/')).length).toBe(1); // downloaded once
    } finally {
      await slow.close();
    }
  });

  it("resolves the CLI's --model the same way (HF_ENDPOINT, HF_HUB_CACHE from the environment)", async () => {
    const saved = { HF_ENDPOINT: process.env.HF_ENDPOINT, HF_HUB_CACHE: process.env.HF_HUB_CACHE };
    process.env.HF_ENDPOINT = hub.url;
    process.env.HF_HUB_CACHE = tmpdir();
    try {
      const { model, tokenizer } = await loadChatModel('tiny/llm');
      expect(model).toBeInstanceOf(et.nn.LlamaForCausalLM);
      expect(tokenizer.vocabSize).toBeGreaterThan(100);
      expect(fs.existsSync(path.join(process.env.HF_HUB_CACHE, 'models--tiny--llm', 'refs', 'main'))).toBe(true);
    } finally {
      for (const [k, v] of Object.entries(saved))
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
  });

  const py = hubPython();
  it.skipIf(!py)("shares the cache with Python's huggingface_hub both ways", async () => {
    // Python downloads (from the loopback hub), emotorch reads without a download
    const cacheA = tmpdir();
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: cacheA, HF_HUB_DISABLE_PROGRESS_BARS: '1', HF_HUB_DISABLE_TELEMETRY: '1', HF_TOKEN: '' };
    const dl = await pyRun(py!, "import huggingface_hub as h; print(h.snapshot_download('tiny/whisper', allow_patterns=['*.json', '*.safetensors']))", env);
    expect(dl.stderr).toBe('');
    expect(dl.status).toBe(0);
    hub.log.length = 0;
    const snap = await et.hub.hubSnapshot('tiny/whisper', opts(cacheA));
    expect(snap).toBe(dl.stdout.trim());
    expect(hub.log.filter((l) => !l.startsWith('GET /api/'))).toEqual([]);
    await et.nn.WhisperEncoder.fromPretrained('tiny/whisper', { hub: opts(cacheA, { localFilesOnly: true }) });
    // emotorch downloads, Python reads with local_files_only
    const cacheB = tmpdir();
    const ours = await et.hub.hubSnapshot('tiny/whisper', opts(cacheB));
    const check = await pyRun(
      py!,
      [
        'import hashlib, huggingface_hub as h',
        "p = h.snapshot_download('tiny/whisper', local_files_only=True)",
        "f = h.hf_hub_download('tiny/whisper', 'model.safetensors', local_files_only=True)",
        "print(p); print(hashlib.sha256(open(f, 'rb').read()).hexdigest())",
      ].join('\n'),
      { ...env, HF_HUB_CACHE: cacheB, HF_HUB_OFFLINE: '1' },
    );
    expect(check.stderr).toBe('');
    expect(check.stdout.trim().split('\n')).toEqual([ours, sha256(read('whisper/model.safetensors'))]);
  });
  if (!py) it('(huggingface_hub is not installed for any python3 here: the Python interop case is skipped)', () => {});
});

/**
 * A hub that answers too slowly (issue 43): `trickle` sends the model info one byte a second;
 * `slowFile` sends a file's body one byte every 50 ms (never idle, never done in time); `silentFile`
 * sends a file's headers and then nothing. Every socket and timer is dropped on close.
 */
async function slowHub(mode: 'trickle' | 'slowFile' | 'silentFile'): Promise<{ url: string; log: string[]; close(): Promise<void> }> {
  const http = await import('http');
  const body = Buffer.from('{"model_type": "x", "pad": "' + 'p'.repeat(1000) + '"}');
  const etag = crypto
    .createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${body.length}\0`), body]))
    .digest('hex');
  const info = Buffer.from(JSON.stringify({ id: 'tiny/slow', sha: C1, siblings: [{ rfilename: 'config.json' }] }));
  const timers = new Set<NodeJS.Timeout>();
  const log: string[] = [];
  const drip = (res: import('http').ServerResponse, data: Buffer, everyMs: number) => {
    let i = 0;
    const t = setInterval(() => {
      if (i >= data.length || res.destroyed) {
        clearInterval(t);
        timers.delete(t);
        res.end();
        return;
      }
      res.write(data.subarray(i, ++i));
    }, everyMs);
    timers.add(t);
  };
  const server = http.createServer((req, res) => {
    log.push(`${req.method} ${req.url}`);
    if (req.url!.startsWith('/api/models/')) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(info.length) });
      if (mode === 'trickle') drip(res, info, 1000);
      else res.end(info);
      return;
    }
    res.writeHead(200, { etag: `"${etag}"`, 'x-repo-commit': C1, 'content-length': String(body.length), 'content-type': 'application/octet-stream' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (mode === 'slowFile') drip(res, body, 50);
    else if (mode === 'trickle') res.end(body);
    else res.flushHeaders(); // silentFile: headers, then nothing
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as import('net').AddressInfo).port}`,
    log,
    close: () =>
      new Promise<void>((r) => {
        for (const t of timers) clearInterval(t);
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('et.hub beside huggingface_hub on one cache', () => {
  const py = hubPython();
  const weights = read('whisper/model.safetensors');
  const etag = sha256(weights); // an LFS file's ETag: its blob's name and its lock's

  /**
   * Another downloader of the 0.x protocol in a child process: it takes huggingface_hub's lock of
   * the weights' blob (Python's filelock when a python3 has it, else the same flock from Node),
   * appends the file to `blobs/<etag>.incomplete` in two halves `holdMs` apart, renames it to the
   * blob and only then lets go. Resolves once the lock is held.
   */
  async function foreignWriter(cache: string, holdMs: number): Promise<{ done: Promise<number | null> }> {
    const lock = path.join(cache, '.locks', 'models--tiny--whisper', `${etag}.lock`);
    const blobs = path.join(cache, 'models--tiny--whisper', 'blobs');
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.mkdirSync(blobs, { recursive: true });
    const src = path.join(tmpdir(), 'weights.bin');
    fs.writeFileSync(src, weights);
    const { spawn } = await import('child_process');
    const child = py
      ? spawn(
          py,
          [
            '-c',
            [
              'import os, sys, time, filelock',
              `lock, blobs, src, etag, hold = ${JSON.stringify(lock)}, ${JSON.stringify(blobs)}, ${JSON.stringify(src)}, ${JSON.stringify(etag)}, ${holdMs / 1000}`,
              'data = open(src, "rb").read()',
              'with filelock.FileLock(lock):',
              '    print("held", flush=True)',
              '    part = os.path.join(blobs, etag + ".incomplete")',
              '    with open(part, "ab") as f: f.write(data[: len(data) // 2])',
              '    time.sleep(hold)',
              '    with open(part, "ab") as f: f.write(data[len(data) // 2 :])',
              '    os.replace(part, os.path.join(blobs, etag))',
            ].join('\n'),
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        )
      : spawn(
          process.execPath,
          [
            '-e',
            [
              `const fs = require('fs'), path = require('path'), { tryLockFile } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'runtime.js'))});`,
              `const [lock, blobs, src, etag, hold] = [${JSON.stringify(lock)}, ${JSON.stringify(blobs)}, ${JSON.stringify(src)}, ${JSON.stringify(etag)}, ${holdMs}];`,
              "const fd = fs.openSync(lock, 'a+'); while (!tryLockFile(fd)) {}",
              "console.log('held'); const data = fs.readFileSync(src), part = path.join(blobs, etag + '.incomplete');",
              'fs.appendFileSync(part, data.subarray(0, data.length >> 1));',
              'setTimeout(() => { fs.appendFileSync(part, data.subarray(data.length >> 1)); fs.renameSync(part, path.join(blobs, etag)); fs.closeSync(fd); }, hold);',
            ].join('\n'),
          ],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', (d) => {
        if (String(d).includes('held')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`the writer exited (${code}) before it held the lock`)));
    });
    return { done: new Promise((resolve) => child.on('exit', (code) => resolve(code))) };
  }

  it(`waits on huggingface_hub's lock of a blob (${py ? "Python's filelock" : 'flock from Node: no python3 has filelock here'}) and uses the blob the holder wrote, never its part file`, async () => {
    const cache = tmpdir();
    const writer = await foreignWriter(cache, 1500);
    hub.log.length = 0;
    const t0 = Date.now();
    const snap = await et.hub.hubSnapshot('tiny/whisper', opts(cache));
    expect(Date.now() - t0).toBeGreaterThan(1000); // it waited for the holder
    expect(await writer.done).toBe(0);
    expect(sha256(fs.readFileSync(path.join(snap, 'model.safetensors')))).toBe(etag);
    expect(hub.log.filter((l) => l.includes(`/cdn/${etag}`))).toEqual([]); // the weights were not downloaded again
    expect(hub.log.filter((l) => l.startsWith('GET /cdn/') || l.startsWith('GET /tiny/')).length).toBeGreaterThan(0); // config.json was
  });

  it("checks the whole file as it lies on disk before it becomes a blob: a foreign part file's bytes are caught, discarded, and the file fetched again", async () => {
    const cache = tmpdir();
    const blobs = path.join(cache, 'models--tiny--whisper', 'blobs');
    fs.mkdirSync(blobs, { recursive: true });
    // half a file of other bytes where the download resumes (what two writers appending to one part leave)
    fs.writeFileSync(path.join(blobs, `${etag}.incomplete`), Buffer.alloc(weights.length >> 1, 7));
    hub.log.length = 0;
    const snap = await et.hub.hubSnapshot('tiny/whisper', opts(cache));
    expect(sha256(fs.readFileSync(path.join(snap, 'model.safetensors')))).toBe(etag);
    expect(hub.log.filter((l) => l.startsWith(`GET /cdn/${etag}`))).toEqual([`GET /cdn/${etag} bytes=${weights.length >> 1}-`, `GET /cdn/${etag}`]);
    // a small file is checked too: its ETag is its git blob id
    const config = read('whisper/config.json');
    const gitId = crypto
      .createHash('sha1')
      .update(Buffer.concat([Buffer.from(`blob ${config.length}\0`), config]))
      .digest('hex');
    expect(fs.existsSync(path.join(blobs, gitId))).toBe(true);
  });

  it.skipIf(!py)('downloads beside a running huggingface_hub into one cache: each blob fetched once, both snapshots whole', async () => {
    const slow = await startHub({ 'tiny/whisper': { commits: { [C1]: whisperFiles() } } }, { slowMs: 30 });
    try {
      const cache = tmpdir();
      const env = {
        ...process.env,
        HF_ENDPOINT: slow.url,
        HF_HUB_CACHE: cache,
        HF_HUB_DISABLE_PROGRESS_BARS: '1',
        HF_HUB_DISABLE_TELEMETRY: '1',
        HF_TOKEN: '',
      };
      const [pyRes, ours] = await Promise.all([
        pyRun(py!, "import huggingface_hub as h; print(h.snapshot_download('tiny/whisper', allow_patterns=['*.json', '*.safetensors']))", env),
        et.hub.hubSnapshot('tiny/whisper', { endpoint: slow.url, cacheDir: cache, progress: false }),
      ]);
      expect(pyRes.status, pyRes.stderr).toBe(0);
      expect(pyRes.stdout.trim()).toBe(ours);
      expect(sha256(fs.readFileSync(path.join(ours, 'model.safetensors')))).toBe(etag);
      expect(slow.log.filter((l) => l.startsWith(`GET /cdn/${etag}`)).length).toBe(1);
    } finally {
      await slow.close();
    }
  });

  it("takes huggingface_hub's timeouts from its environment: HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT (seconds)", async () => {
    const saved = { e: process.env.HF_HUB_ETAG_TIMEOUT, d: process.env.HF_HUB_DOWNLOAD_TIMEOUT };
    const trickle = await slowHub('trickle');
    const silent = await slowHub('silentFile');
    try {
      process.env.HF_HUB_ETAG_TIMEOUT = '0.5';
      let t0 = Date.now();
      await rejectsWith(
        et.hub.hubSnapshot('tiny/slow', { endpoint: trickle.url, cacheDir: tmpdir(), progress: false }),
        'ERR_HUB_NETWORK',
        /timeoutMs = 500 ms/,
      );
      expect(Date.now() - t0).toBeLessThan(5000);
      process.env.HF_HUB_DOWNLOAD_TIMEOUT = '0.3';
      t0 = Date.now();
      await rejectsWith(
        et.hub.hubSnapshot('tiny/slow', { endpoint: silent.url, cacheDir: tmpdir(), progress: false, retries: 2 }),
        'ERR_HUB_NETWORK',
        /readTimeoutMs = 300 ms without a byte/,
      );
      expect(Date.now() - t0).toBeLessThan(5000);
      process.env.HF_HUB_DOWNLOAD_TIMEOUT = 'soon';
      await rejectsWith(
        et.hub.hubSnapshot('tiny/slow', { endpoint: silent.url, cacheDir: tmpdir(), progress: false }),
        'ERR_INVALID_ARG',
        /HF_HUB_DOWNLOAD_TIMEOUT="soon"/,
      );
    } finally {
      for (const [k, v] of [
        ['HF_HUB_ETAG_TIMEOUT', saved.e],
        ['HF_HUB_DOWNLOAD_TIMEOUT', saved.d],
      ] as const)
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      await trickle.close();
      await silent.close();
    }
  });

  it('progress without a terminal: one line per file downloaded, on stderr', async () => {
    const cache = tmpdir();
    const dist = path.join(__dirname, '..', '..', 'dist', 'index.js');
    const code = `require(${JSON.stringify(dist)}).hub.hubSnapshot('tiny/whisper', { endpoint: ${JSON.stringify(hub.url)}, cacheDir: ${JSON.stringify(cache)}, progress: true }).then(() => {}, (e) => { console.error(e.code, e.message); process.exit(1); })`;
    const r = await new Promise<{ err: string; status: number }>((resolve) =>
      execFile(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60_000 }, (e, _o, err) => resolve({ err, status: e ? 1 : 0 })),
    );
    expect(r.status, r.err).toBe(0);
    const lines = r.err.trim().split('\n');
    expect(lines.length).toBe(2); // config.json and model.safetensors
    for (const f of ['config.json', 'model.safetensors'])
      expect(
        lines.some((l) => new RegExp(`^tiny/whisper: ${f.replace('.', '\\.')}: 100% [\\d.]+ MB in [\\d.]+ s`).test(l)),
        f,
      ).toBe(true);
  });

  it('the cache answers before the hub where Python would: a pinned commit (no request at all), a private repo whose token is gone', async () => {
    const cache = tmpdir();
    await et.hub.hubSnapshot('tiny/whisper', opts(cache, { revision: C1 }));
    hub.log.length = 0;
    expect(path.basename(await et.hub.hubSnapshot('tiny/whisper', opts(cache, { revision: C1 })))).toBe(C1);
    expect(hub.log).toEqual([]);
    const priv = await startHub({ 'tiny/private': { commits: { [C1]: { 'config.json': read('whisper/config.json') } }, token: 'hf_secret', private: true } });
    try {
      const snap = await et.hub.hubSnapshot('tiny/private', { endpoint: priv.url, cacheDir: cache, progress: false, token: 'hf_secret' });
      expect(await et.hub.hubSnapshot('tiny/private', { endpoint: priv.url, cacheDir: cache, progress: false, token: false })).toBe(snap);
      // not cached: the refusal stands, as huggingface_hub's RepositoryNotFoundError
      await rejectsWith(
        et.hub.hubSnapshot('tiny/private', { endpoint: priv.url, cacheDir: tmpdir(), progress: false, token: false }),
        'ERR_HUB_NOT_FOUND',
        /no repo 'tiny\/private'/,
      );
      // a revision the hub says does not exist is not answered from the cache
      await rejectsWith(
        et.hub.hubSnapshot('tiny/private', { endpoint: priv.url, cacheDir: cache, progress: false, token: 'hf_secret', revision: 'nope' }),
        'ERR_HUB_NOT_FOUND',
        /no such revision/,
      );
    } finally {
      await priv.close();
    }
  });
});

describe('et.hub: every request has a deadline', () => {
  it('a model info sent one byte a second is ERR_HUB_NETWORK at timeoutMs (it hung before), and the cache answers when it has the snapshot', async () => {
    const slow = await slowHub('trickle');
    try {
      const cache = tmpdir();
      const t0 = Date.now();
      await rejectsWith(
        et.hub.hubSnapshot('tiny/slow', { endpoint: slow.url, cacheDir: cache, progress: false, timeoutMs: 1500 }),
        'ERR_HUB_NETWORK',
        /did not answer the model info of 'tiny\/slow' at revision 'main' in time: stopped at timeoutMs = 1500 ms; and the hub cache has no 'tiny\/slow'/,
      );
      const took = Date.now() - t0;
      expect(took).toBeGreaterThanOrEqual(1400);
      expect(took).toBeLessThan(10_000);
      // as when the hub is unreachable: a cached snapshot of the revision answers
      const snap = path.join(cache, 'models--tiny--slow', 'snapshots', C1);
      fs.mkdirSync(snap, { recursive: true });
      fs.mkdirSync(path.join(cache, 'models--tiny--slow', 'refs'));
      fs.writeFileSync(path.join(cache, 'models--tiny--slow', 'refs', 'main'), C1);
      expect(await et.hub.hubSnapshot('tiny/slow', { endpoint: slow.url, cacheDir: cache, progress: false, timeoutMs: 500 })).toBe(snap);
    } finally {
      await slow.close();
    }
  });

  it('a file whose bytes keep coming but too slowly stops at downloadTimeoutMs, without retries; one whose bytes stop is retried, then ERR_HUB_NETWORK', async () => {
    const slow = await slowHub('slowFile');
    try {
      const t0 = Date.now();
      await rejectsWith(
        et.hub.hubSnapshot('tiny/slow', { endpoint: slow.url, cacheDir: tmpdir(), progress: false, timeoutMs: 1000, downloadTimeoutMs: 2000 }),
        'ERR_HUB_NETWORK',
        /download of 'config\.json' of 'tiny\/slow' broke off after \d+ bytes: stopped at downloadTimeoutMs = 2000 ms/,
      );
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(slow.log.filter((l) => l.startsWith('GET /tiny/slow/resolve/')).length).toBe(1); // the file's deadline is not retried
    } finally {
      await slow.close();
    }
    const silent = await slowHub('silentFile');
    try {
      const t0 = Date.now();
      await rejectsWith(
        et.hub.hubSnapshot('tiny/slow', { endpoint: silent.url, cacheDir: tmpdir(), progress: false, readTimeoutMs: 400, retries: 2 }),
        'ERR_HUB_NETWORK',
        /broke off after 0 bytes: stopped at readTimeoutMs = 400 ms without a byte/,
      );
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(silent.log.filter((l) => l.startsWith('GET /tiny/slow/resolve/')).length).toBe(2); // each attempt
    } finally {
      await silent.close();
    }
  });

  it('timeoutMs and downloadTimeoutMs must be whole milliseconds (ERR_INVALID_ARG naming them)', async () => {
    for (const [k, v] of [
      ['timeoutMs', 0],
      ['timeoutMs', 1.5],
      ['timeoutMs', '100'],
      ['readTimeoutMs', 0],
      ['downloadTimeoutMs', -1],
      ['downloadTimeoutMs', 2 ** 31],
    ] as const) {
      await rejectsWith(
        et.hub.hubSnapshot('tiny/whisper', { endpoint: 'http://127.0.0.1:9', cacheDir: tmpdir(), [k]: v } as never),
        'ERR_INVALID_ARG',
        new RegExp(`for ${k}`),
      );
    }
  });
});
