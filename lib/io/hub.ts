/**
 * Models by name: a Hugging Face repo id (`org/name`) resolved to a folder of the hub cache that
 * Python's huggingface_hub keeps (`models--org--name/{blobs,refs,snapshots}`), downloading the
 * files a model needs over the hub's HTTP API when they are missing. Files Python downloaded are
 * used as they are; files downloaded here are laid out as Python lays them out (blob names are the
 * ETags, `refs/<revision>` holds the commit, snapshot entries are relative symlinks into `blobs/`).
 *
 * @module
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EmotorchError, checkInt, checkOptionNames, invalid } from '../errors';
import { tryLockFile, unlockFile } from '../runtime';
import { readRegularTextSync } from './file';

/** Options of {@link hubSnapshot} and {@link resolvePretrainedPath}. */
export interface HubOptions {
  /** Branch, tag or commit. Default 'main'. */
  revision?: string;
  /** The hub cache folder. Default {@link hubCacheDir}: HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** An access token for gated and private repos; false sends none. Default HF_TOKEN, else the token file huggingface_hub writes (HF_TOKEN_PATH, HF_HOME/token). */
  token?: string | false;
  /** Never use the network (as HF_HUB_OFFLINE=1, the default when that is set): the cache only. */
  localFilesOnly?: boolean;
  /** The hub's address. Default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /**
   * Which of the repo's files to fetch, as globs on their paths (`*` within a folder name, `**`
   * across folders). Default: the top-level files a model loads: `*.json`, the weights (safetensors
   * when the repo has them, else `.bin` / `.pt` / `.pth`), `tokenizer.model`, `*.txt`, `*.jinja`.
   */
  allowPatterns?: string[];
  /** A progress bar on stderr while downloading. Default: when stderr is a terminal. */
  progress?: boolean;
  /** Files downloaded at once. Default 4. */
  concurrency?: number;
  /** Attempts per file when a connection breaks or stalls mid-file (each resumes where the last stopped). Default 5, as huggingface_hub. */
  retries?: number;
  /**
   * The most milliseconds one metadata request may take from start to end (the model info, a
   * file's HEAD: connecting, redirects, headers and the whole body). A hub that answers slower (a
   * body trickled a byte at a time) is ERR_HUB_NETWORK. Default HF_HUB_ETAG_TIMEOUT seconds, else
   * 10 s, as huggingface_hub.
   */
  timeoutMs?: number;
  /**
   * The longest a download may go without receiving a byte: then it is retried from where it
   * stopped. Default HF_HUB_DOWNLOAD_TIMEOUT seconds, else 10 s, as huggingface_hub.
   */
  readTimeoutMs?: number;
  /**
   * The most milliseconds the download of one file may take, all its attempts together. Default
   * 21 600 000 (6 hours: 14 GB at 650 kB/s).
   */
  downloadTimeoutMs?: number;
}

const DEFAULT_ENDPOINT = 'https://huggingface.co';
/** huggingface_hub's DEFAULT_ETAG_TIMEOUT and DEFAULT_DOWNLOAD_TIMEOUT: 10 s each. */
const HUB_DEFAULT_TIMEOUT_S = 10;
/** A timeout of huggingface_hub's environment (seconds, as it reads them) in milliseconds. */
function envTimeoutMs(name: 'HF_HUB_ETAG_TIMEOUT' | 'HF_HUB_DOWNLOAD_TIMEOUT'): number {
  const v = process.env[name];
  if (v === undefined || v.trim() === '') return HUB_DEFAULT_TIMEOUT_S * 1000;
  const sec = Number(v);
  if (!(sec > 0) || !Number.isFinite(sec))
    throw new EmotorchError(`${name}=${JSON.stringify(v)}: huggingface_hub reads a number of seconds there`, 'ERR_INVALID_ARG');
  return Math.min(Math.max(1, Math.round(sec * 1000)), 2 ** 31 - 1);
}
/** {@link HubOptions.downloadTimeoutMs}'s default. */
const DEFAULT_DOWNLOAD_TIMEOUT_MS = 6 * 3600_000;
/** The largest model-info answer read (a repo with 100 000 files lists them in about 10 MB). */
const MAX_INFO_BYTES = 64 * 1024 * 1024;
/** The most of an error answer's body read for its message. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const COMMIT = /^[0-9a-f]{40}$/;
/** huggingface_hub's rule for an `org/name` id: letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 characters. */
const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;

/** The hub cache folder as huggingface_hub picks it: HF_HUB_CACHE, else HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  return path.join(hfHome(env), 'hub');
}

function hfHome(env: NodeJS.ProcessEnv): string {
  if (env.HF_HOME) return env.HF_HOME;
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'huggingface');
}

/** True for an `org/name` repo id (not a path that exists: callers check the path first). */
export function isRepoId(s: unknown): s is string {
  return typeof s === 'string' && REPO_ID.test(s) && !s.includes('--') && !s.includes('..');
}

/** The token to send: the option, HF_TOKEN, or the token file. */
function findToken(opt: string | false | undefined): string | null {
  if (opt === false) return null;
  if (typeof opt === 'string' && opt) return opt;
  const env = process.env;
  if (env.HF_TOKEN) return env.HF_TOKEN;
  if (env.HUGGING_FACE_HUB_TOKEN) return env.HUGGING_FACE_HUB_TOKEN;
  try {
    const t = readRegularTextSync(env.HF_TOKEN_PATH || path.join(hfHome(env), 'token'), 64 * 1024).trim(); // a regular file only: never a FIFO that blocks
    return t || null;
  } catch {
    return null;
  }
}

const offlineEnv = () => ['1', 'ON', 'YES', 'TRUE'].includes((process.env.HF_HUB_OFFLINE ?? '').toUpperCase());

function repoDir(cacheDir: string, id: string): string {
  return path.join(cacheDir, `models--${id.replace('/', '--')}`);
}

/**
 * The cached snapshot folder of a repo at a revision, when the cache has one: a commit names its
 * snapshot, a branch or tag is read from `refs/<revision>`. Null when nothing is cached.
 */
export function cachedSnapshot(id: string, opts: { revision?: string; cacheDir?: string } = {}): string | null {
  opts = checkOptionNames(opts, ['revision', 'cacheDir'], 'cachedSnapshot options');
  const dir = repoDir(opts.cacheDir ?? hubCacheDir(), id);
  const rev = opts.revision ?? 'main';
  let commit = COMMIT.test(rev) ? rev : null;
  if (!commit) {
    try {
      commit = readRegularTextSync(path.join(dir, 'refs', rev), 4096).trim();
    } catch {
      return null;
    }
    if (!COMMIT.test(commit)) return null; // a ref holds a commit id, nothing that could name another folder
  }
  const snap = path.join(dir, 'snapshots', commit);
  return fs.existsSync(snap) ? snap : null;
}

/** A glob on a repo path: `*` within a name, `**` across folders, `?` one character. */
function globToRegExp(g: string): RegExp {
  let re = '';
  for (let i = 0; i < g.length; i++) {
    const c = g[i];
    if (c === '*' && g[i + 1] === '*') {
      re += '.*';
      i++;
      if (g[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The files a model loads, from a repo's file list (see HubOptions.allowPatterns). */
export function modelFiles(names: readonly string[]): string[] {
  const top = names.filter((n) => !n.includes('/'));
  const keep = top.filter((n) => /\.(json|safetensors|bin|pt|pth|txt|jinja|tiktoken)$/i.test(n) || n === 'tokenizer.model' || /\.model$/.test(n));
  const hasSafetensors = keep.some((n) => n.endsWith('.safetensors'));
  return keep.filter((n) => !hasSafetensors || !(/\.(bin|pt|pth)$/i.test(n) || n === 'pytorch_model.bin.index.json'));
}

/** An error of the hub: the code says what kind, the message names the repo and what was tried. */
function hubError(msg: string, code: 'ERR_HUB_NOT_FOUND' | 'ERR_HUB_AUTH' | 'ERR_HUB_NETWORK' | 'ERR_HUB_INTEGRITY' | 'ERR_IO'): EmotorchError {
  return new EmotorchError(msg, code);
}

interface Ctx {
  id: string;
  endpoint: string;
  token: string | null;
  cacheDir: string;
  retries: number;
  timeoutMs: number;
  readTimeoutMs: number;
  downloadTimeoutMs: number;
}

/**
 * Stops a request (its connection, redirects and body) when a limit passes, and says which: an
 * overall deadline, a time without progress, or another Limit it follows (a file's deadline over
 * each attempt).
 */
class Limit {
  private readonly ctrl = new AbortController();
  private readonly timers: NodeJS.Timeout[] = [];
  private idleTimer: NodeJS.Timeout | null = null;
  private unfollow: (() => void) | null = null;
  /** The limit that stopped it (`timeoutMs = 60000 ms`), or null. */
  why: string | null = null;

  get signal(): AbortSignal {
    return this.ctrl.signal;
  }

  /** Stops it `ms` from now. */
  deadline(ms: number, why: string): this {
    const t = setTimeout(() => this.abort(why), ms);
    t.unref();
    this.timers.push(t);
    return this;
  }

  /** Stops it when `ms` pass without {@link progress}. */
  idle(ms: number, why: string): this {
    this.idleTimer = setTimeout(() => this.abort(why), ms);
    this.idleTimer.unref();
    return this;
  }

  /** Bytes arrived: the idle time starts again. */
  progress(): void {
    this.idleTimer?.refresh();
  }

  /** Stops it too when `other` stops. */
  follow(other: Limit): this {
    if (other.why) {
      this.abort(other.why);
      return this;
    }
    const onAbort = () => this.abort(other.why ?? 'aborted');
    other.signal.addEventListener('abort', onAbort, { once: true });
    this.unfollow = () => other.signal.removeEventListener('abort', onAbort);
    return this;
  }

  abort(why: string): void {
    if (this.why) return;
    this.why = why;
    this.ctrl.abort(new Error(`past ${why}`));
  }

  clear(): void {
    for (const t of this.timers) clearTimeout(t);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.unfollow?.();
  }
}

/** The coded error of a request a {@link Limit} stopped. */
function limitError(ctx: Ctx, url: string, what: string, limit: Limit): EmotorchError {
  return hubError(`the hub at ${new URL(url).origin} did not answer ${what} in time: stopped at ${limit.why}`, 'ERR_HUB_NETWORK');
}

/**
 * A response's body, at most `maxBytes` of it (the rest refused, or with `cut` left unread).
 * @throws EmotorchError ERR_HUB_NETWORK when the limit stops it, the connection breaks, or (without `cut`) it is larger
 */
async function readBody(ctx: Ctx, res: Response, url: string, what: string, limit: Limit, maxBytes: number, cut = false): Promise<Buffer> {
  const parts: Buffer[] = [];
  let n = 0;
  try {
    if (!res.body) return Buffer.alloc(0);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      limit.progress();
      if (n + chunk.length > maxBytes) {
        if (!cut) throw hubError(`the hub's answer for ${what} is larger than ${maxBytes} bytes: not read`, 'ERR_HUB_NETWORK');
        parts.push(Buffer.from(chunk.subarray(0, maxBytes - n)));
        n = maxBytes;
        break; // leaving the loop cancels the rest of the body
      }
      parts.push(Buffer.from(chunk));
      n += chunk.length;
    }
  } catch (e) {
    if (e instanceof EmotorchError) throw e;
    if (limit.why) throw limitError(ctx, url, what, limit);
    throw hubError(`the hub's answer for ${what} broke off after ${n} bytes: ${(e as Error).message}`, 'ERR_HUB_NETWORK');
  }
  return Buffer.concat(parts, n);
}

/**
 * One request; redirects followed by hand so the token never goes to another host (a CDN).
 * `follow`: true (default) follows every redirect; 'hub' only those that stay on the hub's host
 * (a renamed repo's 307), as huggingface_hub reads a file's metadata off the CDN redirect itself.
 */
async function request(
  ctx: Ctx,
  url: string,
  limit: Limit,
  init: { method?: string; headers?: Record<string, string>; follow?: true | 'hub' } = {},
): Promise<Response> {
  let u = url;
  for (let hop = 0; hop < 10; hop++) {
    const headers: Record<string, string> = { 'user-agent': 'emotorch', ...init.headers };
    if (ctx.token && new URL(u).origin === new URL(ctx.endpoint).origin) headers.authorization = `Bearer ${ctx.token}`;
    let res: Response;
    try {
      res = await fetch(u, { method: init.method ?? 'GET', headers, redirect: 'manual', signal: limit.signal });
    } catch (e) {
      if (limit.why) throw limitError(ctx, u, `${init.method ?? 'GET'} ${new URL(u).pathname} for '${ctx.id}'`, limit);
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw hubError(
        `the hub at ${new URL(u).origin} cannot be reached for '${ctx.id}': ${cause?.code ?? cause?.message ?? (e as Error).message}`,
        'ERR_HUB_NETWORK',
      );
    }
    const loc = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && loc) {
      const next = new URL(loc, u);
      if (init.follow === 'hub' && next.hostname !== new URL(ctx.endpoint).hostname) return res;
      await res.body?.cancel();
      u = next.toString();
      continue;
    }
    return res;
  }
  throw hubError(`too many redirects fetching ${url} for '${ctx.id}'`, 'ERR_HUB_NETWORK');
}

/** The errors that say the revision does not exist (the one refusal the cache does not answer, as huggingface_hub). */
const REVISION_NOT_FOUND = new WeakSet<Error>();

/** Throws the coded error a failed hub response means (as huggingface_hub's hf_raise_for_status). */
async function raiseFor(ctx: Ctx, res: Response, what: string, limit: Limit): Promise<void> {
  if (res.ok || (res.status >= 300 && res.status < 400)) return;
  const errorCode = res.headers.get('x-error-code') ?? '';
  let body = '';
  try {
    body = (await readBody(ctx, res, res.url || ctx.endpoint, what, limit, MAX_ERROR_BODY_BYTES, true)).toString('utf8').slice(0, 300);
  } catch {
    /* no body, or not in time */
  }
  const detail = body ? `: ${body.replace(/\s+/g, ' ')}` : '';
  // the hub answers an unknown repo without a token with 401 RepoNotFound (a private one looks the
  // same): huggingface_hub's RepositoryNotFoundError, not an access problem
  if (errorCode === 'RepoNotFound') {
    throw hubError(
      `${what}: no repo '${ctx.id}' on ${ctx.endpoint} (HTTP ${res.status}${errorCode ? ` ${errorCode}` : ''}): check the id${ctx.token ? '' : '; a private repo answers the same without a token (set HF_TOKEN or log in with `hf auth login`)'}`,
      'ERR_HUB_NOT_FOUND',
    );
  }
  if (res.status === 401 || res.status === 403 || errorCode === 'GatedRepo') {
    throw hubError(
      `'${ctx.id}' needs access (HTTP ${res.status}${errorCode ? ` ${errorCode}` : ''}) for ${what}: it is gated or private; ` +
        `${ctx.token ? 'the token sent was refused' : 'no token was found: set HF_TOKEN or log in with `hf auth login`'}${detail}`,
      'ERR_HUB_AUTH',
    );
  }
  if (res.status === 404) {
    const kind = errorCode === 'RevisionNotFound' ? 'revision' : errorCode === 'EntryNotFound' ? 'file' : 'repo, revision or file';
    const e = hubError(`${what}: no such ${kind} on ${ctx.endpoint} (HTTP 404${errorCode ? ` ${errorCode}` : ''})`, 'ERR_HUB_NOT_FOUND');
    if (kind === 'revision') REVISION_NOT_FOUND.add(e);
    throw e;
  }
  throw hubError(`${what}: HTTP ${res.status} from ${ctx.endpoint}${detail}`, 'ERR_HUB_NETWORK');
}

/**
 * The blob id a file's HEAD answer names, as huggingface_hub reads it (`X-Linked-Etag`, else
 * `ETag`; a weak `W/` prefix and the quotes taken off) and as the hub's format defines it: a git
 * blob id (sha1, 40 lowercase hex digits) or, for an LFS file, its sha256 (64). It names the blob's
 * file in the cache, so anything else (`..`, `.`, a path, an empty or made-up value) is refused.
 * @throws EmotorchError ERR_HUB_NETWORK when there is none; ERR_HUB_INTEGRITY naming the header and
 *   its value when it is not a blob id
 */
function blobEtag(ctx: Ctx, head: Response, file: string): string {
  const linked = head.headers.get('x-linked-etag') || null; // huggingface_hub: `x-linked-etag or etag`
  const header = linked !== null ? 'X-Linked-Etag' : 'ETag';
  const raw = linked ?? head.headers.get('etag');
  if (!raw) throw hubError(`the hub sent no ETag for '${file}' of '${ctx.id}' (cannot name its blob)`, 'ERR_HUB_NETWORK');
  const etag = raw.replace(/^W\//, '').replace(/^"|"$/g, '');
  if (!/^(?:[0-9a-f]{40}|[0-9a-f]{64})$/.test(etag)) {
    throw hubError(
      `the hub's ${header} header for '${file}' of '${ctx.id}' is ${JSON.stringify(raw.slice(0, 200))}, not a blob id (a git sha1 of 40 hex digits, or an LFS file's sha256 of 64): refused, nothing written`,
      'ERR_HUB_INTEGRITY',
    );
  }
  return etag;
}

/** Creates or replaces the snapshot entry: a relative symlink into blobs/ (a copy where links are refused). */
function linkSnapshot(blob: string, entry: string): void {
  fs.mkdirSync(path.dirname(entry), { recursive: true });
  try {
    fs.unlinkSync(entry);
  } catch {
    /* not there */
  }
  try {
    fs.symlinkSync(path.relative(path.dirname(entry), blob), entry);
  } catch {
    fs.copyFileSync(blob, entry);
  }
}

/**
 * Holds huggingface_hub's lock of a blob while `fn` runs: `.locks/<repo folder>/<etag>.lock`, an
 * exclusive flock as Python's filelock takes it (any huggingface_hub version, other emotorch
 * processes). The kernel releases a dead holder's lock: nothing is judged stale.
 */
async function withLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | (fs.constants.O_NOFOLLOW ?? 0), 0o664);
  } catch (e) {
    throw hubError(`cannot open the lock ${file}: ${(e as Error).message}`, 'ERR_IO');
  }
  try {
    const t0 = Date.now();
    while (!tryLockFile(fd)) {
      if (Date.now() - t0 > 3_600_000) throw hubError(`waited an hour for the lock ${file} (another download of this file holds it)`, 'ERR_IO');
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      return await fn();
    } finally {
      unlockFile(fd);
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface Progress {
  add(n: number): void;
  total(n: number): void;
  stop(): void;
  done(file: string, bytes: number, ms: number): void;
}

function progressBar(enabled: boolean, id: string): Progress {
  if (!enabled) return { add() {}, total() {}, stop() {}, done() {} };
  if (!process.stderr.isTTY) {
    // no terminal to redraw a bar on: a line per file when it is done, as tqdm leaves in a log
    return {
      add() {},
      total() {},
      stop() {},
      done(file, bytes, ms) {
        const mb = bytes / 1e6;
        process.stderr.write(`${id}: ${file}: 100% ${mb.toFixed(1)} MB in ${(ms / 1000).toFixed(1)} s (${(mb / Math.max(ms / 1000, 1e-3)).toFixed(1)} MB/s)\n`);
      },
    };
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when a bar is drawn
  const cp = require('cli-progress') as typeof import('cli-progress');
  const bar = new cp.SingleBar(
    { format: `downloading ${id} |{bar}| {percentage}% {mb}/{totalMb} MB`, stream: process.stderr, hideCursor: false },
    cp.Presets.shades_classic,
  );
  let value = 0,
    total = 0,
    started = false;
  const mb = (n: number) => (n / 1e6).toFixed(1);
  return {
    total(n) {
      total += n;
      if (!started) {
        bar.start(total, value, { mb: mb(value), totalMb: mb(total) });
        started = true;
      } else bar.setTotal(total);
    },
    add(n) {
      value += n;
      if (started) bar.update(value, { mb: mb(value), totalMb: mb(total) });
    },
    stop() {
      if (started) bar.stop();
    },
    done() {},
  };
}

/** Downloads one file of a commit into blobs/ (resuming an `.incomplete`, sha256-checked for LFS files) and links it into the snapshot. */
async function fetchFile(ctx: Ctx, commit: string, file: string, bar: Progress): Promise<void> {
  const dir = repoDir(ctx.cacheDir, ctx.id);
  const entry = path.join(dir, 'snapshots', commit, ...file.split('/'));
  if (fs.existsSync(entry)) return;
  const url = `${ctx.endpoint}/${ctx.id}/resolve/${commit}/${file.split('/').map(encodeURIComponent).join('/')}`;
  const limit = new Limit().deadline(ctx.timeoutMs, `timeoutMs = ${ctx.timeoutMs} ms`);
  let head: Response;
  try {
    head = await request(ctx, url, limit, { method: 'HEAD', headers: { 'accept-encoding': 'identity' }, follow: 'hub' });
    await raiseFor(ctx, head, `'${file}' of '${ctx.id}' at ${commit}`, limit);
  } finally {
    limit.clear();
  }
  const etag = blobEtag(ctx, head, file);
  const isRedirect = head.status >= 300 && head.status < 400;
  const sizeHeader = head.headers.get('x-linked-size') ?? (isRedirect ? null : head.headers.get('content-length'));
  const size = sizeHeader === null ? null : Number(sizeHeader);
  const location = isRedirect && head.headers.get('location') ? new URL(head.headers.get('location')!, head.url || url).toString() : head.url || url;
  const blob = path.join(dir, 'blobs', etag);
  const t0 = Date.now();
  await withLock(path.join(ctx.cacheDir, '.locks', path.basename(dir), `${etag}.lock`), async () => {
    // another process (huggingface_hub, emotorch) may have made it while this one waited
    if (!fs.existsSync(blob)) {
      await download(ctx, location, blob, etag, size, file, bar);
      bar.done(file, fs.statSync(blob).size, Date.now() - t0);
    }
  });
  linkSnapshot(blob, entry);
}

async function download(ctx: Ctx, url: string, blob: string, etag: string, size: number | null, file: string, bar: Progress): Promise<void> {
  fs.mkdirSync(path.dirname(blob), { recursive: true });
  const part = `${blob}.incomplete`;
  const lfs = /^[0-9a-f]{64}$/.test(etag); // an LFS file's ETag is its sha256; a small file's is its git blob id
  if (size !== null) bar.total(size);
  let lastError: EmotorchError | null = null;
  let shown = 0; // this file's bytes on the bar
  const whole = new Limit().deadline(ctx.downloadTimeoutMs, `downloadTimeoutMs = ${ctx.downloadTimeoutMs} ms`);
  try {
    for (let attempt = 0; attempt < ctx.retries; attempt++) {
      const limit = new Limit().follow(whole).idle(ctx.readTimeoutMs, `readTimeoutMs = ${ctx.readTimeoutMs} ms without a byte`);
      try {
        const r = await downloadAttempt(ctx, url, part, size, file, bar, limit, shown);
        shown = r.shown;
        // the file as it lies on disk, whole, is what must match its ETag (an LFS file's sha256, a
        // small file's git blob id), checked before it becomes the blob
        if (r.error === null) r.error = await verify(ctx, part, etag, lfs, file, limit);
        if (r.error === null) {
          fs.renameSync(part, blob); // a blob appears whole or not at all
          return;
        }
        lastError = r.error;
        if (whole.why) throw lastError; // the file's own deadline: no retry
      } finally {
        limit.clear();
      }
    }
  } finally {
    whole.clear();
  }
  throw lastError!;
}

/**
 * One attempt at a file: resumes a `.incomplete` part with a Range request, appends what arrives.
 * @returns `error` null when the part is whole (and, for LFS files, its sha256 is the ETag); else
 *   the error to retry on
 * @throws EmotorchError for what no retry mends (a refusal of the hub, a disk that cannot be written)
 */
/**
 * Checks a downloaded file, whole, against its ETag: an LFS file's is its sha256, another's its git
 * blob id (sha1 of `blob <size>\0` and the bytes). A mismatch removes it.
 * @returns null when it matches, else the ERR_HUB_INTEGRITY error to retry on
 */
async function verify(ctx: Ctx, part: string, etag: string, lfs: boolean, file: string, limit: Limit): Promise<EmotorchError | null> {
  const hash = crypto.createHash(lfs ? 'sha256' : 'sha1');
  if (!lfs) hash.update(`blob ${fs.statSync(part).size}\0`);
  for await (const chunk of fs.createReadStream(part)) {
    hash.update(chunk as Buffer);
    limit.progress();
  } // a long hash is not a silent hub
  const got = hash.digest('hex');
  if (got === etag) return null;
  fs.rmSync(part, { force: true });
  return hubError(
    `'${file}' of '${ctx.id}' arrived as a file whose ${lfs ? 'sha256' : 'git blob id'} is ${got}, not the ${etag} the hub announced: discarded`,
    'ERR_HUB_INTEGRITY',
  );
}

async function downloadAttempt(
  ctx: Ctx,
  url: string,
  part: string,
  size: number | null,
  file: string,
  bar: Progress,
  limit: Limit,
  shownBefore: number,
): Promise<{ error: EmotorchError | null; shown: number }> {
  let shown = shownBefore;
  let have = 0;
  try {
    have = fs.statSync(part).size;
  } catch {
    /* nothing yet */
  }
  if (size !== null && have > size) {
    fs.truncateSync(part, 0);
    have = 0;
  }
  let res: Response;
  try {
    res = await request(ctx, url, limit, { headers: { 'accept-encoding': 'identity', ...(have > 0 ? { range: `bytes=${have}-` } : {}) } });
  } catch (e) {
    if (limit.why && e instanceof EmotorchError) return { error: e, shown }; // no answer in time: retried
    throw e;
  }
  await raiseFor(ctx, res, `'${file}' of '${ctx.id}'`, limit);
  if (have > 0 && res.status !== 206) {
    fs.truncateSync(part, 0);
    have = 0;
  } // the server sent it whole
  bar.add(have - shown);
  shown = have;
  let fd: number;
  try {
    fd = fs.openSync(part, have > 0 ? 'a' : 'w');
  } catch (e) {
    throw hubError(`cannot write ${part}: ${(e as Error).message}`, 'ERR_IO');
  }
  let got = have;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      limit.progress();
      try {
        fs.writeSync(fd, chunk);
      } catch (e) {
        throw hubError(
          `cannot write ${part} (${(e as NodeJS.ErrnoException).code ?? 'error'}: ${(e as Error).message}); the part written stays as .incomplete and resumes on the next try`,
          'ERR_IO',
        );
      }
      got += chunk.length;
      shown += chunk.length;
      bar.add(chunk.length);
    }
  } catch (e) {
    fs.closeSync(fd);
    if (e instanceof EmotorchError && e.code === 'ERR_IO') throw e;
    const why = limit.why ? `stopped at ${limit.why}` : (e as Error).message;
    return { error: hubError(`the download of '${file}' of '${ctx.id}' broke off after ${got} bytes: ${why}`, 'ERR_HUB_NETWORK'), shown };
  }
  fs.closeSync(fd);
  if (size !== null && got !== size) {
    return { error: hubError(`the download of '${file}' of '${ctx.id}' ended after ${got} of ${size} bytes`, 'ERR_HUB_NETWORK'), shown };
  }
  return { error: null, shown };
}

function checkTimeout(v: unknown, name: string): number {
  // setTimeout's longest delay is 2^31 − 1 ms (24.8 days); a longer one would fire at once
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) invalid(`a whole number of milliseconds from 1 to ${2 ** 31 - 1}`, name, v);
  return v;
}

/** Runs `fn` on each item with at most `n` at once; the first failure rejects after the others settle. */
async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (next < items.length && failure === null) {
      const x = items[next++];
      try {
        await fn(x);
      } catch (e) {
        failure ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  if (failure !== null) throw failure;
}

/** The names a hub options object may have. */
const HUB_OPTIONS = [
  'revision',
  'cacheDir',
  'token',
  'localFilesOnly',
  'endpoint',
  'allowPatterns',
  'progress',
  'concurrency',
  'retries',
  'timeoutMs',
  'readTimeoutMs',
  'downloadTimeoutMs',
];

/**
 * The local folder of a hub repo at a revision with the files a model needs (or `allowPatterns`'):
 * from the cache when it has them (no download), downloading what is missing otherwise. Offline
 * (`localFilesOnly`, HF_HUB_OFFLINE=1) and when the hub cannot be reached, the cached snapshot of
 * the revision is used.
 * @throws EmotorchError ERR_INVALID_ARG for an id that is not `org/name`; ERR_HUB_NOT_FOUND for an
 *   unknown repo, revision or file; ERR_HUB_AUTH for a gated or private repo without a working
 *   token; ERR_HUB_NETWORK when the hub is unreachable and nothing is cached (the message names
 *   the endpoint and the cache folder tried) or a download keeps breaking off; ERR_HUB_INTEGRITY
 *   for a file whose sha256 is not the announced one; ERR_IO when the cache cannot be written
 * @example
 * const dir = await et.hub.hubSnapshot('openai/whisper-large-v2');
 * const whisper = await et.nn.WhisperEncoder.fromPretrained('openai/whisper-large-v2');   // the same, inside
 */
export async function hubSnapshot(id: string, opts: HubOptions = {}): Promise<string> {
  if (!isRepoId(id)) invalid("a Hugging Face repo id 'org/name'", 'repo id', id);
  if (!opts || typeof opts !== 'object') invalid('an options object', 'hub options', opts);
  checkOptionNames(opts, HUB_OPTIONS, 'hub options');
  for (const k of ['localFilesOnly', 'progress'] as const) if (opts[k] !== undefined && typeof opts[k] !== 'boolean') invalid('a boolean', k, opts[k]);
  if (opts.cacheDir !== undefined && (typeof opts.cacheDir !== 'string' || !opts.cacheDir)) invalid('a folder path', 'cacheDir', opts.cacheDir);
  if (opts.token !== undefined && opts.token !== false && typeof opts.token !== 'string') invalid('a token string or false', 'token', opts.token);
  if (opts.endpoint !== undefined && (typeof opts.endpoint !== 'string' || !/^https?:\/\/[^\s/]+/.test(opts.endpoint)))
    invalid('an http(s) URL', 'endpoint', opts.endpoint);
  const revision = opts.revision ?? 'main';
  if (typeof revision !== 'string' || !revision || revision.includes('..')) invalid('a branch, tag or commit', 'revision', opts.revision);
  const cacheDir = opts.cacheDir ?? hubCacheDir();
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const ctx: Ctx = {
    id,
    endpoint,
    token: findToken(opts.token),
    cacheDir,
    retries: checkInt(opts.retries ?? 5, 'retries', 1),
    timeoutMs: checkTimeout(opts.timeoutMs ?? envTimeoutMs('HF_HUB_ETAG_TIMEOUT'), 'timeoutMs'),
    readTimeoutMs: checkTimeout(opts.readTimeoutMs ?? envTimeoutMs('HF_HUB_DOWNLOAD_TIMEOUT'), 'readTimeoutMs'),
    downloadTimeoutMs: checkTimeout(opts.downloadTimeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS, 'downloadTimeoutMs'),
  };
  const concurrency = checkInt(opts.concurrency ?? 4, 'concurrency', 1);
  const cached = () => cachedSnapshot(id, { revision, cacheDir });
  if (opts.localFilesOnly ?? offlineEnv()) {
    const snap = cached();
    if (snap) return snap;
    throw hubError(
      `'${id}' (revision ${revision}) is not in the hub cache ${repoDir(cacheDir, id)} and downloads are off (${opts.localFilesOnly ? 'localFilesOnly' : 'HF_HUB_OFFLINE'})`,
      'ERR_HUB_NOT_FOUND',
    );
  }
  // a commit is immutable: its cached snapshot is the answer, with no request (as huggingface_hub)
  if (COMMIT.test(revision)) {
    const snap = cached();
    if (snap) return snap;
  }
  let info: { sha?: unknown; siblings?: Array<{ rfilename?: unknown }> };
  const limit = new Limit().deadline(ctx.timeoutMs, `timeoutMs = ${ctx.timeoutMs} ms`);
  try {
    const url = `${endpoint}/api/models/${id}/revision/${encodeURIComponent(revision)}`;
    const what = `'${id}' at revision '${revision}'`;
    const res = await request(ctx, url, limit);
    await raiseFor(ctx, res, what, limit);
    info = JSON.parse((await readBody(ctx, res, url, `the model info of ${what}`, limit, MAX_INFO_BYTES)).toString('utf8')) as typeof info;
    if (info === null || typeof info !== 'object') throw new SyntaxError('not an object');
  } catch (e) {
    // as huggingface_hub: when the hub cannot be reached or refuses (a private repo without its
    // token, a server error), the cache answers; a revision it says does not exist is not looked up
    if (e instanceof EmotorchError && ['ERR_HUB_NETWORK', 'ERR_HUB_AUTH', 'ERR_HUB_NOT_FOUND'].includes(e.code) && !REVISION_NOT_FOUND.has(e)) {
      const snap = cached();
      if (snap) return snap;
      if (e.code === 'ERR_HUB_NETWORK')
        throw hubError(`${e.message}; and the hub cache has no '${id}' at revision ${revision} (looked in ${repoDir(cacheDir, id)})`, 'ERR_HUB_NETWORK');
    }
    if (e instanceof SyntaxError) throw hubError(`the hub's answer for '${id}' is not JSON`, 'ERR_HUB_NETWORK');
    throw e;
  } finally {
    limit.clear();
  }
  const commit = typeof info.sha === 'string' && COMMIT.test(info.sha) ? info.sha : null;
  if (!commit || !Array.isArray(info.siblings)) throw hubError(`the hub's answer for '${id}' at '${revision}' has no commit or file list`, 'ERR_HUB_NETWORK');
  const names = info.siblings.map((s) => s?.rfilename).filter((n): n is string => typeof n === 'string' && !n.split('/').includes('..'));
  let files: string[];
  if (opts.allowPatterns) {
    if (!Array.isArray(opts.allowPatterns) || opts.allowPatterns.some((p) => typeof p !== 'string'))
      invalid('a list of glob strings', 'allowPatterns', opts.allowPatterns);
    const res = opts.allowPatterns.map(globToRegExp);
    files = names.filter((n) => res.some((r) => r.test(n)));
  } else files = modelFiles(names);
  const bar = progressBar(opts.progress ?? !!process.stderr.isTTY, id);
  try {
    await pool(files, concurrency, (f) => fetchFile(ctx, commit, f, bar));
  } finally {
    bar.stop();
  }
  const dir = repoDir(cacheDir, id);
  const snap = path.join(dir, 'snapshots', commit);
  fs.mkdirSync(snap, { recursive: true });
  if (revision !== commit) {
    fs.mkdirSync(path.dirname(path.join(dir, 'refs', revision)), { recursive: true });
    fs.writeFileSync(path.join(dir, 'refs', revision), commit);
  }
  return snap;
}

/**
 * What every `fromPretrained` calls on its path argument: an existing file or folder is used as it
 * is; an `org/name` repo id becomes its hub snapshot folder ({@link hubSnapshot}); anything else is
 * an error naming both readings.
 * @throws EmotorchError ERR_IO for a path that does not exist and is not a repo id; the errors of {@link hubSnapshot}
 */
export async function resolvePretrainedPath(pathOrId: string, opts: HubOptions = {}): Promise<string> {
  if (typeof pathOrId !== 'string' || !pathOrId) invalid('a local path or a Hugging Face repo id', 'path', pathOrId);
  checkOptionNames(opts, HUB_OPTIONS, 'hub options');
  if (fs.existsSync(pathOrId)) return pathOrId;
  if (!isRepoId(pathOrId)) throw new EmotorchError(`'${pathOrId}' is neither an existing file or folder nor a Hugging Face repo id 'org/name'`, 'ERR_IO');
  return hubSnapshot(pathOrId, opts);
}
