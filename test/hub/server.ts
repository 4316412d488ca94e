// A loopback Hugging Face hub for the tests: repos of in-memory files answered as the hub answers
// huggingface_hub (model info with the commit and file list; `resolve` URLs with X-Repo-Commit and
// ETag, LFS files as a 302 to a CDN-like path with X-Linked-Etag / X-Linked-Size; Range on the
// CDN; 401 for a gated repo without the token; 404 with X-Error-Code). Faults on request: a
// connection cut halfway through a file's first download, wrong bytes for a file, a slow body,
// forged ETags.
import * as crypto from 'crypto';
import * as http from 'http';
import type { AddressInfo } from 'net';

export interface HubRepo {
  /** path → content, per commit (the first commit is `main`'s unless `refs` says otherwise). */
  commits: Record<string, Record<string, Buffer>>;
  /** branch or tag → commit; default { main: the first commit }. */
  refs?: Record<string, string>;
  /** Needs `Authorization: Bearer <token>`. */
  token?: string;
  /** With `token`: private rather than gated (without the token the hub denies it exists: 401 RepoNotFound). */
  private?: boolean;
}

export interface HubFaults {
  /** Cut the connection after half the bytes on the first CDN download of these files. */
  cut?: string[];
  /** Serve these files' bytes corrupted (one byte flipped) on the CDN. */
  corrupt?: string[];
  /** Send the body in 16 KiB pieces with this many ms between them. */
  slowMs?: number;
  /**
   * A hostile hub's ETags: file → the header value sent in place of the real one (X-Linked-Etag for
   * an LFS file, ETag for another); with `header: 'etag'`, an LFS file's X-Linked-Etag is left out
   * and the value goes in its ETag.
   */
  etags?: Record<string, string>;
  etagHeader?: 'etag';
}

export interface LoopbackHub {
  url: string;
  /** 'METHOD path [range] [+token]' of every request, in order. */
  log: string[];
  close(): Promise<void>;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) =>
  crypto
    .createHash('sha1')
    .update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b]))
    .digest('hex');
const isLfs = (f: string) => /\.(safetensors|bin|pt|pth|model)$/.test(f);

/** Renamed repos: old id → new id (the hub answers the old one with a 307 to the new path). */
export type HubRenames = Record<string, string>;

export async function startHub(repos: Record<string, HubRepo>, faults: HubFaults = {}, renames: HubRenames = {}): Promise<LoopbackHub> {
  const log: string[] = [];
  const cdn = new Map<string, { file: string; data: Buffer }>();
  for (const r of Object.values(repos))
    for (const files of Object.values(r.commits)) for (const [f, d] of Object.entries(files)) if (isLfs(f)) cdn.set(sha256(d), { file: f, data: d });
  const cutDone = new Set<string>();
  const server = http.createServer(async (req, res) => {
    const u = new URL(req.url!, 'http://x');
    log.push(`${req.method} ${decodeURIComponent(u.pathname)}${req.headers.range ? ` ${req.headers.range}` : ''}${req.headers.authorization ? ' +token' : ''}`);
    const fail = (status: number, code: string | null, msg: string) => {
      res.writeHead(status, { 'content-type': 'application/json', ...(code ? { 'x-error-code': code } : {}) });
      res.end(JSON.stringify({ error: msg }));
    };
    const repoOf = (org: string, name: string): HubRepo | null => {
      const r = repos[`${org}/${name}`];
      // as the hub: an unknown repo asked without a token is 401 RepoNotFound (a private one looks the same), with one 404
      if (!r) {
        fail(req.headers.authorization ? 404 : 401, 'RepoNotFound', 'Repository not found');
        return null;
      }
      if (r.token && req.headers.authorization !== `Bearer ${r.token}`) {
        if (r.private) fail(401, 'RepoNotFound', 'Repository not found');
        else fail(401, 'GatedRepo', 'Access to this model is restricted');
        return null;
      }
      return r;
    };
    const commitOf = (r: HubRepo, rev: string): string | null => {
      const refs = r.refs ?? { main: Object.keys(r.commits)[0] };
      const c = r.commits[rev] ? rev : refs[rev];
      if (!c) {
        fail(404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
        return null;
      }
      return c;
    };
    for (const [from, to] of Object.entries(renames)) {
      for (const prefix of [`/api/models/${from}/`, `/${from}/`]) {
        if (u.pathname.startsWith(prefix)) {
          res.writeHead(307, { location: prefix.replace(from, to) + u.pathname.slice(prefix.length) + u.search }); // relative, as the hub sends it
          res.end();
          return;
        }
      }
    }
    let m = /^\/api\/models\/([^/]+)\/([^/]+)\/revision\/(.+)$/.exec(u.pathname);
    if (m && req.method === 'GET') {
      const r = repoOf(m[1], m[2]);
      if (!r) return;
      const c = commitOf(r, decodeURIComponent(m[3]));
      if (!c) return;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: `${m[1]}/${m[2]}`,
          modelId: `${m[1]}/${m[2]}`,
          sha: c,
          private: false,
          gated: r.token ? 'auto' : false,
          tags: [],
          siblings: Object.keys(r.commits[c]).map((rfilename) => ({ rfilename })),
        }),
      );
      return;
    }
    // huggingface_hub 1.x+ lists a snapshot's files with the tree API (one page here)
    m = /^\/api\/models\/([^/]+)\/([^/]+)\/tree\/([^/]+)\/?$/.exec(u.pathname);
    if (m && req.method === 'GET') {
      const r = repoOf(m[1], m[2]);
      if (!r) return;
      const c = commitOf(r, decodeURIComponent(m[3]));
      if (!c) return;
      const entries: unknown[] = [];
      const dirs = new Set<string>();
      for (const [f, d] of Object.entries(r.commits[c])) {
        f.split('/')
          .slice(0, -1)
          .forEach((_, i, parts) => dirs.add(parts.slice(0, i + 1).join('/')));
        entries.push({
          type: 'file',
          oid: gitSha1(d),
          size: d.length,
          path: f,
          ...(isLfs(f) ? { lfs: { oid: sha256(d), size: d.length, pointerSize: 134 } } : {}),
        });
      }
      for (const dpath of dirs) entries.push({ type: 'directory', oid: gitSha1(Buffer.from(dpath)), size: 0, path: dpath });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(entries));
      return;
    }
    m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(u.pathname);
    if (m && (req.method === 'GET' || req.method === 'HEAD')) {
      const r = repoOf(m[1], m[2]);
      if (!r) return;
      const c = commitOf(r, decodeURIComponent(m[3]));
      if (!c) return;
      const file = decodeURIComponent(m[4]);
      const data = r.commits[c][file];
      if (!data) {
        fail(404, 'EntryNotFound', `${file} does not exist`);
        return;
      }
      const forged = faults.etags?.[file];
      if (isLfs(file)) {
        const sha = sha256(data);
        const linked = forged === undefined ? { 'x-linked-etag': `"${sha}"` } : faults.etagHeader === 'etag' ? {} : { 'x-linked-etag': forged };
        res.writeHead(302, {
          location: `http://localhost:${cdnPort}/cdn/${sha}`,
          'x-repo-commit': c,
          ...linked,
          'x-linked-size': String(data.length),
          etag: forged !== undefined && faults.etagHeader === 'etag' ? forged : `"${gitSha1(data)}"`,
          'content-length': '0',
        });
        res.end();
        return;
      }
      res.writeHead(200, {
        'x-repo-commit': c,
        etag: forged ?? `"${gitSha1(data)}"`,
        'content-length': String(data.length),
        'content-type': 'application/octet-stream',
      });
      res.end(req.method === 'HEAD' ? undefined : data);
      return;
    }
    m = /^\/cdn\/([0-9a-f]{64})$/.exec(u.pathname);
    if (m && (req.method === 'GET' || req.method === 'HEAD')) {
      const obj = cdn.get(m[1]);
      if (!obj) {
        fail(404, null, 'no such object');
        return;
      }
      let data = obj.data;
      if (faults.corrupt?.includes(obj.file)) {
        data = Buffer.from(data);
        data[data.length >> 1] ^= 0xff;
      }
      let start = 0;
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range) start = Number(range[1]);
      const body = data.subarray(start);
      res.writeHead(range ? 206 : 200, {
        'content-length': String(body.length),
        etag: `"${m[1]}"`,
        'accept-ranges': 'bytes',
        ...(range ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      if (faults.cut?.includes(obj.file) && !range && !cutDone.has(obj.file)) {
        cutDone.add(obj.file);
        res.write(body.subarray(0, body.length >> 1), () => res.socket?.destroy());
        return;
      }
      if (faults.slowMs) {
        for (let i = 0; i < body.length; i += 16384) {
          res.write(body.subarray(i, i + 16384));
          await new Promise((r) => setTimeout(r, faults.slowMs));
        }
        res.end();
        return;
      }
      res.end(body);
      return;
    }
    fail(404, null, 'not found');
  });
  // the CDN is another host (localhost, another port), as cdn-lfs.hf.co is for huggingface.co: clients
  // neither follow the hub's redirect to it when reading metadata nor send it the token
  const cdnServer = http.createServer((req, res) => server.emit('request', req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  await new Promise<void>((r) => cdnServer.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const cdnPort = (cdnServer.address() as AddressInfo).port;
  const closeOne = (x: http.Server) =>
    new Promise<void>((r) => {
      x.closeAllConnections?.();
      x.close(() => r());
    });
  return {
    url: `http://127.0.0.1:${port}`,
    log,
    close: async () => {
      await Promise.all([closeOne(server), closeOne(cdnServer)]);
    },
  };
}
