/**
 * Running ffmpeg and ffprobe on a user's file, so that they read that file and nothing else, within
 * bounds:
 * - the container is told to ffmpeg (`-f`), never guessed by it: this module reads the file's first
 *   bytes and names one demuxer from a whitelist of single-file containers ({@link sniffMedia}); a
 *   file that is none of them (an HLS playlist, a DASH manifest, an ffconcat script, an SDP file, a
 *   text file naming an image sequence, whatever its extension) is refused before any tool runs;
 * - every input also carries `-protocol_whitelist file` and `-format_whitelist <that demuxer>`, so no
 *   demuxer can open another protocol or hand the input to another demuxer, and the name is given as
 *   `file:` + the absolute path (a name starting with '-' is not an option, one with ':' no protocol);
 * - every run has a wall-clock limit (the child is killed, never waited on forever), a cap on what
 *   it may write (killed when it writes more), and children still running when this process exits
 *   are killed with it.
 * Nothing else in emotorch starts ffmpeg or ffprobe. @internal
 */
import * as fs from 'fs';
import * as path from 'path';
import { spawn, ChildProcess } from 'child_process';
import { EmotorchError } from '../errors';
import { openRegularSync } from './file';

/** Default limit for one ffmpeg / ffprobe run, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 120_000;

/** An executable named `name` (plus `.exe` on Windows) on PATH as `PATH` is now, or null. */
function findOnPath(name: string): string | null {
  const names = process.platform === 'win32' ? [`${name}.exe`, name] : [name];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const n of names) {
      const p = path.join(dir, n);
      try {
        if (fs.statSync(p).isFile()) {
          fs.accessSync(p, fs.constants.X_OK);
          return p;
        }
      } catch {
        /* not here */
      }
    }
  }
  return null;
}

/**
 * The `ffmpeg` executable on PATH (as `PATH` is now), or null when there is none.
 * @example
 * if (!et.audio.findFfmpeg()) console.log('install ffmpeg to read video files');
 */
export function findFfmpeg(): string | null {
  return findOnPath('ffmpeg');
}

/**
 * The `ffprobe` executable on PATH (as `PATH` is now; it ships with ffmpeg), or null when there is
 * none. `et.vision` reads video metadata and frame timestamps with it.
 * @example
 * if (!et.audio.findFfprobe()) console.log('install ffmpeg (with ffprobe) to read video files');
 */
export function findFfprobe(): string | null {
  return findOnPath('ffprobe');
}

/** The ffmpeg / ffprobe executables, or an ERR_IO error naming the file and the missing tool. */
export function tools(file: string, what: string): { ffmpeg: string; ffprobe: string } {
  const ffmpeg = findFfmpeg();
  const ffprobe = findFfprobe();
  if (!ffmpeg || !ffprobe) {
    const missing = [!ffmpeg && 'ffmpeg', !ffprobe && 'ffprobe'].filter(Boolean).join(' and ');
    throw new EmotorchError(
      `cannot ${what} '${file}': ${missing} (which emotorch runs to decode video and images) ${ffmpeg || ffprobe ? 'is' : 'are'} not on PATH; install ffmpeg (e.g. apt-get install ffmpeg, which brings ffprobe)`,
      'ERR_IO',
    );
  }
  return { ffmpeg, ffprobe };
}

/**
 * The single-file containers each reader hands to ffmpeg, by ffmpeg's demuxer name. Images: the
 * one-picture `*_pipe` demuxers (never `image2`, which expands `%d` patterns and globs) and GIF.
 * Video: ISO BMFF / QuickTime (mp4, mov, m4v, 3gp), Matroska / WebM, AVI and raw YUV4MPEG. Audio: WAV, MP3, FLAC,
 * Ogg, raw ADTS AAC, and the audio track of the video containers (m4a is ISO BMFF).
 */
export const MEDIA_FORMATS = {
  image: ['png_pipe', 'jpeg_pipe', 'gif', 'webp_pipe', 'bmp_pipe', 'tiff_pipe'],
  video: ['mov', 'matroska', 'avi', 'yuv4mpegpipe'],
  audio: ['wav', 'mp3', 'flac', 'ogg', 'aac', 'mov', 'matroska', 'avi'],
} as const;

/** What a reader takes: 'image', 'video' or 'audio'. */
export type MediaKind = keyof typeof MEDIA_FORMATS;

/** The containers' names for people, by demuxer. */
const FORMAT_NAMES: Record<string, string> = {
  png_pipe: 'PNG',
  jpeg_pipe: 'JPEG',
  gif: 'GIF',
  webp_pipe: 'WebP',
  bmp_pipe: 'BMP',
  tiff_pipe: 'TIFF',
  mov: 'MP4/QuickTime',
  matroska: 'Matroska/WebM',
  avi: 'AVI',
  yuv4mpegpipe: 'YUV4MPEG',
  wav: 'WAV',
  mp3: 'MP3',
  flac: 'FLAC',
  ogg: 'Ogg',
  aac: 'ADTS AAC',
};

/** ISO BMFF / QuickTime top-level boxes a file may start with. */
const MOV_BOXES = new Set(['ftyp', 'moov', 'mdat', 'free', 'skip', 'wide', 'pnot']);

/**
 * The demuxer for a file's first bytes, or null when they are no container ffmpeg is let open.
 * `head` holds at least the first 16 bytes the file has. An ID3v2 tag is skipped by the caller.
 */
function sniffHead(b: Buffer): string | null {
  const ascii = (s: number, e: number) => b.toString('latin1', s, e);
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png_pipe';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg_pipe';
  if (b.length >= 6 && (ascii(0, 6) === 'GIF87a' || ascii(0, 6) === 'GIF89a')) return 'gif';
  if (b.length >= 12 && (ascii(0, 4) === 'RIFF' || ascii(0, 4) === 'RF64')) {
    const form = ascii(8, 12);
    if (form === 'WEBP' && ascii(0, 4) === 'RIFF') return 'webp_pipe';
    if (form === 'WAVE') return 'wav';
    if (form === 'AVI ' || form === 'AVIX') return 'avi';
    return null;
  }
  if (b.length >= 14 && ascii(0, 2) === 'BM' && b.readUInt32LE(10) >= 26) return 'bmp_pipe';
  if (b.length >= 4 && (ascii(0, 4) === 'II*\0' || ascii(0, 4) === 'MM\0*')) return 'tiff_pipe';
  if (b.length >= 8 && MOV_BOXES.has(ascii(4, 8))) return 'mov';
  if (b.length >= 4 && b.readUInt32BE(0) === 0x1a45dfa3) return 'matroska';
  if (b.length >= 10 && ascii(0, 10) === 'YUV4MPEG2 ') return 'yuv4mpegpipe';
  if (b.length >= 4 && ascii(0, 4) === 'fLaC') return 'flac';
  if (b.length >= 4 && ascii(0, 4) === 'OggS') return 'ogg';
  if (b.length >= 2 && b[0] === 0xff) {
    if ((b[1] & 0xf6) === 0xf0) return 'aac'; // ADTS: sync, layer 00
    if ((b[1] & 0xe0) === 0xe0 && (b[1] & 0x06) !== 0) return 'mp3'; // MPEG audio frame sync, layer I–III
  }
  return null;
}

/**
 * Names the container of a file from its first bytes: one of `MEDIA_FORMATS[kind]`. With `openFd`
 * (the file opened by the caller, who closes it) those bytes are read from that descriptor.
 * @throws EmotorchError ERR_IO when the file cannot be read; ERR_FORMAT naming the file when its
 *   bytes are no container this kind of reader takes (a playlist, manifest or script included).
 */
export function sniffMedia(file: string, kind: MediaKind, what: string, openFd?: number): string {
  const fd = openFd ?? openRegularSync(file).fd;
  let fmt: string | null;
  try {
    const read = (pos: number, n: number): Buffer => {
      const b = Buffer.alloc(n);
      return b.subarray(0, fs.readSync(fd, b, 0, n, pos));
    };
    const head = read(0, 16);
    // An ID3v2 tag (MP3, sometimes FLAC or ADTS): its size is four 7-bit bytes after the flags.
    if (head.length >= 10 && head.toString('latin1', 0, 3) === 'ID3' && head.subarray(6, 10).every((x) => x < 0x80)) {
      const size = 10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]) + (head[5] & 0x10 ? 10 : 0);
      const after = sniffHead(read(size, 16));
      fmt = after === 'flac' || after === 'aac' ? after : 'mp3';
    } else {
      fmt = sniffHead(head);
    }
  } catch (e) {
    throw new EmotorchError(`cannot ${what} '${file}': ${(e as Error).message}`, 'ERR_IO');
  } finally {
    if (openFd === undefined) fs.closeSync(fd);
  }
  const allowed: readonly string[] = MEDIA_FORMATS[kind];
  if (!fmt || !allowed.includes(fmt)) {
    const names = [...new Set(allowed.map((f) => FORMAT_NAMES[f]))].join(', ');
    throw new EmotorchError(
      `cannot ${what} '${file}': ${fmt ? `it is ${FORMAT_NAMES[fmt]}, not` : 'its content is not'} one of the ${kind} formats read here (${names})`,
      'ERR_FORMAT',
    );
  }
  return fmt;
}

/**
 * The input arguments of ffmpeg / ffprobe for a user's file of container `format` (from
 * {@link sniffMedia}): the file protocol only, that demuxer only, the absolute path as a `file:` URL.
 * `before` goes between the whitelists and `-i` (input options such as `-ss`).
 */
export function mediaInput(file: string, format: string, before: string[] = []): string[] {
  return ['-protocol_whitelist', 'file', '-format_whitelist', format, '-f', format, ...before, '-i', `file:${path.resolve(file)}`];
}

export interface RunOptions {
  /** The file the run reads (named in error messages). */
  file: string;
  /** What the run is for, in words ('read the frames of'), for error messages. */
  what: string;
  /**
   * Kill the process when its stdout passes this many bytes; or a function of the first 64 bytes
   * written (a header) that gives the limit.
   */
  maxBytes: number | ((head: Buffer) => number);
  timeoutMs: number;
  /**
   * Takes each output's bytes as they arrive (output 0 is stdout, 1 is pipe 3, …) instead of
   * keeping them: the run then resolves with empty buffers, and memory holds no more than the sink
   * keeps. `maxBytes` still bounds each output.
   */
  sink?: (output: number, chunk: Buffer) => void;
}

/** The ffmpeg / ffprobe processes still running, killed when this process exits. */
const live = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('close', () => live.delete(child));
}

/** How many ffmpeg / ffprobe children are running now (tests). @internal */
export function liveChildren(): number {
  return live.size;
}

/**
 * Runs `exe args` and resolves with its stdout when it exits with status 0.
 * @throws EmotorchError ERR_FORMAT naming the file when it fails (with ffmpeg's last stderr
 *   lines) or writes more than `maxBytes`; ERR_OUT_OF_MEMORY when it failed for want of memory
 *   (its messages say "Cannot allocate memory", FFmpeg's ENOMEM); ERR_IO when it cannot start or
 *   passes `timeoutMs`.
 */
export async function runTool(exe: string, args: string[], o: RunOptions): Promise<Buffer> {
  return (await runToolPipes(exe, args, o, 0))[0];
}

const HEAD = 64;

/**
 * As {@link runTool}, with `extra` more output pipes (file descriptors 3, 4, …; ffmpeg writes to
 * them as `pipe:3`, `pipe:4`, …): resolves with [stdout, pipe 3, pipe 4, …]; `maxBytes` bounds each.
 */
export function runToolPipes(exe: string, args: string[], o: RunOptions, extra: number): Promise<Buffer[]> {
  return new Promise<Buffer[]>((resolve, reject) => {
    const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe', ...Array<'pipe'>(extra).fill('pipe')], windowsHide: true });
    track(child);
    const outs = [1, ...Array.from({ length: extra }, (_, k) => 3 + k)];
    const chunks: Buffer[][] = outs.map(() => []);
    const bytes = outs.map(() => 0);
    const limits: (number | null)[] = outs.map(() => (typeof o.maxBytes === 'number' ? o.maxBytes : null));
    let stderr = '';
    let settled = false;
    const settle = (e: EmotorchError | null, value?: Buffer[]): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (e) reject(e);
      else resolve(value!);
    };
    // A failure settles at once: the child is killed and its pipes closed, without waiting for
    // them to end (a grandchild, such as a wrapper's, may hold them open).
    const fail = (e: EmotorchError): void => {
      if (settled) return;
      settle(e);
      child.kill('SIGKILL');
      for (const fd of [...outs, 2]) (child.stdio[fd] as (NodeJS.ReadableStream & { destroy(): void }) | null)?.destroy();
    };
    const timer = setTimeout(
      () =>
        fail(
          new EmotorchError(
            `cannot ${o.what} '${o.file}': ${shortName(exe)} ran longer than ${o.timeoutMs} ms and was stopped (raise timeoutMs for very long files)`,
            'ERR_IO',
          ),
        ),
      o.timeoutMs,
    );
    const tooMuch = (limit: number) =>
      fail(
        new EmotorchError(
          `cannot ${o.what} '${o.file}': ${shortName(exe)} wrote more than the ${limit} bytes expected (the file's metadata does not describe its content, or it decodes to more than the bounds allow)`,
          'ERR_FORMAT',
        ),
      );
    outs.forEach((fd, k) => {
      const stream = child.stdio[fd] as NodeJS.ReadableStream;
      stream.on('error', () => {
        /* destroyed after a failure */
      });
      stream.on('data', (c: Buffer) => {
        if (settled) return;
        bytes[k] += c.length;
        if (o.sink && (limits[k] === null || bytes[k] <= (limits[k] as number))) {
          try {
            o.sink(k, c);
          } catch (e) {
            fail(e instanceof EmotorchError ? e : new EmotorchError(`cannot ${o.what} '${o.file}': ${(e as Error).message}`, 'ERR_FORMAT'));
            return;
          }
        } else {
          chunks[k].push(c);
        }
        let limit = limits[k];
        if (limit === null) {
          if (bytes[k] < HEAD) return;
          const head = Buffer.concat(chunks[k]).subarray(0, HEAD);
          limit = limits[k] = (o.maxBytes as (h: Buffer) => number)(head);
        }
        if (bytes[k] > limit) tooMuch(limit);
      });
    });
    child.stderr!.on('error', () => {
      /* destroyed after a failure */
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString('utf8')).slice(-4096);
    });
    child.on('error', (e) => {
      settle(new EmotorchError(`cannot ${o.what} '${o.file}': ${shortName(exe)} could not be started: ${e.message}`, 'ERR_IO'));
    });
    child.on('close', (code, signal) => {
      if (settled) return;
      if (code === 0)
        return settle(
          null,
          chunks.map((c) => Buffer.concat(c)),
        );
      // The tool's own last words, as printable ASCII and briefly (never file content at length).
      const lines = stderr
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .slice(-2)
        .join('; ')
        .replace(/[^\x20-\x7e]/g, '?')
        .slice(0, 300);
      const code2 = outOfMemory(stderr) ? 'ERR_OUT_OF_MEMORY' : 'ERR_FORMAT';
      settle(
        new EmotorchError(
          `cannot ${o.what} '${o.file}': ${shortName(exe)} failed (${signal ? `signal ${signal}` : `exit status ${code}`})${lines ? `: ${lines}` : ''}`,
          code2,
        ),
      );
    });
  });
}

/**
 * Whether ffmpeg's messages say that decoding ran out of memory: ENOMEM from its decoder or filters
 * ("Error while decoding stream …: Cannot allocate memory", "Error while filtering: …"), or a
 * decoder's picture buffer not allocated ("get_buffer() failed", which FFmpeg then reports as
 * damage) unless the message before it refused the picture for its size; the raw output's packet
 * or encoder not allocated. ENOMEM while opening the
 * file is a header declaring an absurd size, the file's fault (as the in-process reader judges).
 */
function outOfMemory(stderr: string): boolean {
  const lines = stderr.split('\n');
  return lines.some(
    (l, i) =>
      /^(Error while (filtering|decoding stream [^:]*|processing the decoded data[^:]*)|Failed to inject frame into filter network): Cannot allocate memory/.test(
        l.trim(),
      ) ||
      /Failed to allocate packet of size|get_encode_buffer\(\) failed|ff_frame_thread_encoder_init failed/.test(l) ||
      (/get_buffer\(\) failed/.test(l) && !/exceeds|invalid/i.test(lines[i - 1] ?? '')),
  );
}

function shortName(exe: string): string {
  return /ffprobe/i.test(exe.split(/[\\/]/).pop() ?? '') ? 'ffprobe' : 'ffmpeg';
}
