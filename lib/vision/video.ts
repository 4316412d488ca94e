/**
 * Video metadata and exact frames by index: inside the process through FFmpeg's libraries
 * (libavformat, libavcodec, libswscale, opened by the addon at first use) where they are installed,
 * else through `ffprobe` and `ffmpeg` child processes. Both give the same frames, byte for byte:
 * the in-process reader converts and turns them as the executable's `scale=W:H,format=rgb24` after
 * its autorotate does, with the same libraries (test/vision/video-backends.test.ts).
 *
 * Frames are numbered as decord numbers them (LanguageBind's decoder): the video stream's packets
 * sorted by presentation time, so `frameCount` is the stream's packet count (decord's
 * `len(VideoReader)`, which reads every packet when it opens a file) and frame i is the i-th frame
 * in display order. Demuxing every packet reads the file but decodes nothing: it is what decord
 * does too, and costs a small fraction of decoding (see {@link readVideoFrames} for timings).
 * Frames come back as ffmpeg's rgb24 (swscale's YUV → RGB, as decord's filter graph and PyAV's
 * `to_ndarray('rgb24')`), rotated upright when the stream says it is rotated (as decord).
 */
import { EmotorchError, checkInt, checkNumber, checkOptionNames, invalid } from '../errors';
import * as fs from 'fs';
import { notAFile, openRegularSync } from '../io/file';
import { Tensor, zeros } from '../tensor';
import { DEFAULT_TIMEOUT_MS, mediaInput, runTool, runToolPipes, sniffMedia, tools } from '../io/media';
import { closeVideoReader, NativeVideo, openVideoReader, placeVideoFrame, readVideoReader, videoReaderUnavailable } from '../runtime';

/**
 * The largest frame decoded by default, in pixels (width · height): 8192 · 8192 (192 MiB of
 * rgb24). Larger frames are refused from the header, before decoding (`maxPixels` changes it).
 * @example
 * await et.vision.readVideoFrames('8k.mp4', { maxPixels: 2 * et.vision.MAX_FRAME_PIXELS });
 */
export const MAX_FRAME_PIXELS = 8192 * 8192;
/** The most bytes of rgb24 frames one call decodes into memory (2 GiB). */
const MAX_OUTPUT_BYTES = 2 ** 31;
/** The most frames one call reads. */
const MAX_FRAMES = 4096;
/** ffprobe's JSON for one file, and its packet listing (≈ 20 bytes a packet: 6.7 M packets). */
const MAX_PROBE_BYTES = 4 << 20;
const MAX_PACKET_BYTES = 128 << 20;
/**
 * Starting an ffmpeg process and seeking costs about as much as decoding this many small frames:
 * the cost model that picks one sequential pass or one seek per frame.
 */
const SEEK_OVERHEAD_FRAMES = 20;
/** Frames read by one seeking ffmpeg run (one input and one output pipe each), at most. */
const SEEK_GROUP = 16;
/**
 * What the seeking ffmpeg runs may hold at once: each input is a decoder with its reference
 * pictures, counted as 4 frames of rgb24 (8 pictures of 4:2:0) an input; large frames get fewer
 * inputs a run and fewer runs at once (one run of one input from 4096 · 4096 / 2 pixels).
 */
const SEEK_BUDGET_BYTES = 512 * 2 ** 20;
/**
 * The decoder's threads, for both readers: slice threads only, one per core. Frame threads would
 * hold a picture each (gigabytes at 8192²) and make a damaged stream's concealed frames depend on
 * the threads' timing (native/media/video.cc sets the same).
 */
const DECODER = ['-thread_type', 'slice'];
/** The raw rgb24 output: one encoder thread (more would each hold a frame-sized packet). */
const RAW_OUT = ['-threads', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24'];

/** What {@link probeVideo} reports. */
export interface VideoInfo {
  /** Frame width and height as decoded (after the stream's rotation, as decord). */
  width: number;
  height: number;
  /** Frames as decord's `len(VideoReader)`: the video stream's packets. */
  frameCount: number;
  /** The stream's average frame rate (frames per second; 0 when the file does not say). */
  fps: number;
  /** The file's duration in seconds (the container's, else the stream's; 0 when neither says). */
  durationSeconds: number;
  /** Whether the file has an audio stream. */
  hasAudio: boolean;
  /** The video codec's ffmpeg name ('h264', 'mpeg4', 'vp9', …). */
  codec: string;
}

/**
 * Which decoder reads a video: 'auto' (default) FFmpeg's libraries inside the process where they
 * are installed ({@link libavAvailable}), else the `ffmpeg` / `ffprobe` executables; 'libav' or
 * 'ffmpeg' to insist on one. Frames are the same either way.
 */
export type VideoBackend = 'auto' | 'libav' | 'ffmpeg';

/** Options of {@link probeVideo}. */
export interface ProbeVideoOptions {
  /** Stop after this many milliseconds (default 120000). */
  timeoutMs?: number;
  /** 'auto' (default), 'libav' or 'ffmpeg': see {@link VideoBackend}. */
  backend?: VideoBackend;
}

/** Options of {@link readVideoFrames}. */
export interface ReadVideoFramesOptions {
  /** Frames spread evenly over the video, as `np.linspace(0, n − 1, numFrames).astype(int)` (default 8). */
  numFrames?: number;
  /**
   * Exact frame indices to read instead (0 ≤ i < frameCount; repeats allowed), or a function of
   * the frame count that gives them (a sampler such as `internvlFrameIndices`, without a second
   * probe of the file).
   */
  indices?: readonly number[] | ((frameCount: number) => readonly number[]);
  /**
   * 'auto' (default) picks by a cost model from the keyframe positions: one sequential pass up to
   * the last wanted frame ('scan'), or an accurate seek per distinct frame ('seek', which
   * decodes only from the keyframe before each). Both give the same frames.
   */
  decode?: 'auto' | 'scan' | 'seek';
  /** Refuse frames of more pixels than this before decoding (default 8192 · 8192). */
  maxPixels?: number;
  /** Stop reading the header, or decoding (each ffmpeg / ffprobe run), after this many milliseconds (default 120000). */
  timeoutMs?: number;
  /** 'auto' (default), 'libav' or 'ffmpeg': see {@link VideoBackend}. */
  backend?: VideoBackend;
}

/** What {@link readVideoFrames} returns. */
export interface VideoFrames {
  /** uint8 RGB frames, shape [3, T, height, width] (LanguageBind's (C, T, H, W)). */
  frames: Tensor;
  /** The frame index of each of the T frames. */
  indices: number[];
  /** As {@link VideoInfo.frameCount}. */
  frameCount: number;
  width: number;
  height: number;
  /** As {@link VideoInfo.fps}. */
  fps: number;
  /** How the frames were decoded: one pass from the start ('scan') or from the keyframe before each ('seek'). */
  decode: 'scan' | 'seek';
  /** Which decoder read them: FFmpeg's libraries in the process, or the ffmpeg executable. */
  backend: 'libav' | 'ffmpeg';
}

/** ffprobe's JSON (`-of json`): its own snake_case names. */
interface StreamJson {
  index?: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  time_base?: string;
  duration?: string;
  disposition?: { attached_pic?: number };
  tags?: { rotate?: string };
  side_data_list?: { rotation?: number; displaymatrix?: string }[];
}

interface ProbeJson {
  streams?: StreamJson[];
  format?: { duration?: string; start_time?: string };
}

/** A video stream as ffprobe describes it, and its frames' timestamps. */
interface Probed {
  info: VideoInfo;
  /** The stream's absolute index in the file (for `-map 0:<index>`). */
  stream: number;
  /** Presentation times in seconds, ascending, one per frame (NaN when the file has none). */
  times: Float64Array;
  /** Whether frame i (in display order) is a keyframe. */
  key: Uint8Array;
  /** Whether every packet had a presentation timestamp (not just a decode one). */
  ptsEverywhere: boolean;
  /** The container's start time in seconds (ffmpeg's `-ss` counts from it). */
  start: number;
  /** The container's demuxer, from the file's own bytes (the one ffmpeg is let use). */
  format: string;
}

function rate(s: string | undefined): number {
  if (!s) return 0;
  const [a, b] = s.split('/').map(Number);
  const r = b === undefined ? a : a / b;
  return Number.isFinite(r) && r > 0 ? r : 0;
}

function num(s: string | number | undefined): number {
  const v = typeof s === 'number' ? s : s === undefined ? NaN : Number(s);
  return Number.isFinite(v) ? v : NaN;
}

function bad(file: string, why: string): never {
  throw new EmotorchError(`cannot read the video '${file}': ${why}`, 'ERR_FORMAT');
}

function checkFile(file: unknown, what: string): string {
  if (typeof file !== 'string' || !file) invalid('a file path', 'file', file);
  const why = notAFile(file);
  if (why) throw new EmotorchError(`cannot ${what} '${file}': it ${why}`, 'ERR_IO');
  return file;
}

interface PacketJson {
  stream_index?: number;
  pts?: number;
  dts?: number;
  flags?: string;
}

const STREAM_ENTRIES =
  'stream=index,codec_type,codec_name,width,height,avg_frame_rate,r_frame_rate,time_base,duration:stream_disposition=attached_pic' +
  ':stream_tags=rotate:stream_side_data=rotation,displaymatrix:format=duration,start_time';

/** C's round(): halves away from zero. */
function roundAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/**
 * The clockwise turn ffmpeg's autorotate gives a stream, in [0, 360), as its `get_rotation`
 * (fftools) computes it: the display matrix's angle (`av_display_rotation_get`, from the nine
 * 16.16 / 2.30 numbers ffprobe prints), negated and ROUNDED to a whole degree, then wrapped. ffprobe's
 * own `rotation` is that angle truncated (−89 for −89.99), so it is not used where the matrix is
 * printed; the `rotate` tag of older ffmpeg versions is the fallback.
 */
function autorotateDegrees(displaymatrix: string | undefined, rotateTag?: string): number {
  let theta = 0;
  const m = (displaymatrix ?? '')
    .split('\n')
    .map((l) => l.replace(/^\s*[0-9a-fA-F]+:/, '').trim())
    .filter(Boolean)
    .flatMap((l) => l.split(/\s+/).map(Number));
  if (m.length === 9 && m.every(Number.isFinite)) {
    const fp = (x: number) => x / 65536;
    const s0 = Math.hypot(fp(m[0]), fp(m[3])),
      s1 = Math.hypot(fp(m[1]), fp(m[4]));
    const angle = s0 === 0 || s1 === 0 ? NaN : -((Math.atan2(fp(m[1]) / s1, fp(m[0]) / s0) * 180) / Math.PI);
    theta = Number.isNaN(angle) ? 0 : -roundAway(angle);
  } else if (rotateTag !== undefined && Number.isFinite(Number(rotateTag))) {
    theta = Number(rotateTag);
  }
  theta -= 360 * Math.floor(theta / 360 + 0.9 / 360);
  return theta;
}

/**
 * Whether ffmpeg's autorotate transposes this stream's pictures (`transpose` for a turn within
 * 1° of 90 or 270, as fftools/ffmpeg_filter.c decides; other angles keep the width and height:
 * 180 is two flips, any other angle the `rotate` filter at the same size).
 */
function quarterTurn(v: StreamJson): boolean {
  const d = v.side_data_list?.find((x) => x && typeof x.displaymatrix === 'string');
  const theta = autorotateDegrees(
    d?.displaymatrix,
    d ? undefined : (v.tags?.rotate ?? v.side_data_list?.find((x) => x && x.rotation !== undefined)?.rotation?.toString()),
  );
  return Math.abs(theta - 90) < 1 || Math.abs(theta - 270) < 1;
}

/**
 * The stream header and every packet's timestamp (demuxing only). With `withAudio` (probeVideo)
 * two ffprobe runs: the header of every stream, then the chosen stream's packets. Without it
 * (readVideoFrames, which needs no audio) one run over the video streams (header and packets in
 * one JSON): an ffprobe start costs about 0.12 s (its 200-odd shared libraries), a third of a
 * short clip's read. @internal
 */
async function probe(file: string, what: string, timeoutMs: number, maxPixels = MAX_FRAME_PIXELS, withAudio = true): Promise<Probed> {
  const format = sniffMedia(file, 'video', what);
  const { ffprobe } = tools(file, what);
  const run = { file, what, timeoutMs };
  const input = mediaInput(file, format);
  const parse = (buf: Buffer): ProbeJson & { packets?: PacketJson[] } => {
    try {
      return JSON.parse(buf.toString('utf8'));
    } catch {
      bad(file, 'ffprobe did not describe it');
    }
  };
  let json: ProbeJson & { packets?: PacketJson[] };
  if (withAudio) {
    json = parse(await runTool(ffprobe, ['-v', 'error', '-show_entries', STREAM_ENTRIES, '-of', 'json', ...input], { ...run, maxBytes: MAX_PROBE_BYTES }));
  } else {
    try {
      json = parse(
        await runTool(
          ffprobe,
          ['-v', 'error', '-select_streams', 'v', '-show_entries', `${STREAM_ENTRIES}:packet=stream_index,pts,dts,flags`, '-of', 'json=c=1', ...input],
          { ...run, maxBytes: MAX_PACKET_BYTES },
        ),
      );
    } catch (e) {
      // JSON takes about 60 bytes a packet (2 M packets fit): longer files take the two runs, whose
      // packet listing is CSV (about 20 bytes a packet)
      if (e instanceof EmotorchError && /wrote more than/.test(e.message)) return probe(file, what, timeoutMs, maxPixels, true);
      throw e;
    }
  }
  const streams = Array.isArray(json.streams) ? json.streams : [];
  const v = streams.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
  if (!v || typeof v.index !== 'number')
    bad(file, streams.some((s) => s.codec_type === 'video') ? 'its only video stream is a cover picture' : 'it has no video stream');
  let width = Number(v.width),
    height = Number(v.height);
  if (!(Number.isInteger(width) && width > 0 && Number.isInteger(height) && height > 0))
    bad(file, `its video stream has no frame size (width ${v.width}, height ${v.height})`);
  if (width * height > maxPixels) bad(file, `its frames are ${width}×${height} (${width * height} pixels), more than the ${maxPixels} decoded (maxPixels)`);
  if (quarterTurn(v)) [width, height] = [height, width];

  // Every packet of the stream, demuxed (not decoded): decord's frame table.
  const tb = rate(v.time_base);
  const rows: [number, boolean][] = [];
  let ptsEverywhere = true;
  const add = (pts: number | string | undefined, dts: number | string | undefined, flags: string | undefined) => {
    if (pts === undefined || pts === 'N/A' || pts === '') ptsEverywhere = false;
    const t = num(pts === undefined || pts === 'N/A' ? dts : pts);
    rows.push([tb > 0 ? t * tb : NaN, (flags ?? '').includes('K')]);
  };
  if (withAudio) {
    const listing = await runTool(
      ffprobe,
      ['-v', 'error', '-select_streams', String(v.index), '-show_entries', 'packet=pts,dts,flags', '-of', 'csv=p=0', ...input],
      { ...run, maxBytes: MAX_PACKET_BYTES },
    );
    for (const line of listing.toString('latin1').split('\n')) {
      if (!line) continue;
      const [pts, dts, flags] = line.split(',');
      add(pts, dts, flags);
    }
  } else {
    for (const pk of Array.isArray(json.packets) ? json.packets : []) if (pk && pk.stream_index === v.index) add(pk.pts, pk.dts, pk.flags);
  }
  const timed = rows.every((r) => Number.isFinite(r[0]));
  if (timed) rows.sort((a, b) => a[0] - b[0]);
  const times = Float64Array.from(rows, (r) => (timed ? r[0] : NaN));
  const key = Uint8Array.from(rows, (r) => (r[1] ? 1 : 0));
  const duration = num(json.format?.duration);
  const start = num(json.format?.start_time);
  const info: VideoInfo = {
    width,
    height,
    frameCount: rows.length,
    fps: rate(v.avg_frame_rate) || rate(v.r_frame_rate),
    durationSeconds: Number.isFinite(duration) ? duration : Number.isFinite(num(v.duration)) ? num(v.duration) : 0,
    hasAudio: streams.some((s) => s.codec_type === 'audio'),
    codec: String(v.codec_name ?? 'unknown'),
  };
  return { info, stream: v.index, times, key, ptsEverywhere, start: Number.isFinite(start) ? start : 0, format };
}

function timeoutOf(v: unknown): number {
  return v === undefined ? DEFAULT_TIMEOUT_MS : checkNumber(v, 'timeoutMs', 1);
}

/**
 * Describes a video file (through FFmpeg's libraries in the process, else `ffprobe`; the same
 * answer): frame size, frame count (as decord's `len(VideoReader)`: the video stream's packets,
 * all demuxed, none decoded), average frame rate, duration and whether it has audio. The first
 * video stream that is not a cover picture is the one described.
 * @param file a video file (mp4, mkv, avi, webm, mov, …)
 * @throws EmotorchError ERR_IO when the file is missing or not a regular file, the executables are
 *   needed and not on PATH, or reading runs past `timeoutMs`; ERR_FORMAT naming the file when it is
 *   not a video FFmpeg can read or has no video stream.
 * @example
 * const { width, height, frameCount, fps } = await et.vision.probeVideo('dia1_utt3.mp4');
 */
export async function probeVideo(file: string, opts: ProbeVideoOptions = {}): Promise<VideoInfo> {
  const o = checkOptionNames(opts, ['timeoutMs', 'backend'], 'probeVideo options');
  const what = 'probe the video';
  checkFile(file, what);
  const timeoutMs = timeoutOf(o.timeoutMs);
  const lib = await openLibav(file, what, backendOf(o.backend), Number.MAX_SAFE_INTEGER, timeoutMs, true);
  if (!lib) return (await probe(file, what, timeoutMs, Infinity)).info;
  closeVideoReader(lib.handle);
  return infoOf(lib);
}

/**
 * Whether FFmpeg's libraries decode video inside this process here (emotorch built with their
 * headers, and libavformat / libavcodec / libswscale of the same major versions installed). When
 * not, video is read through the `ffmpeg` and `ffprobe` executables, with the same frames, slower
 * (each read starts two processes).
 * @example
 * if (!et.vision.libavAvailable()) console.log('install libavformat, libavcodec and libswscale for faster video reads');
 */
export function libavAvailable(): boolean {
  return videoReaderUnavailable() === null;
}

function backendOf(v: unknown): VideoBackend {
  if (v === undefined) return 'auto';
  if (v !== 'auto' && v !== 'libav' && v !== 'ffmpeg') invalid("'auto', 'libav' or 'ffmpeg'", 'backend', v);
  return v;
}

function infoOf(v: NativeVideo): VideoInfo {
  return { width: v.width, height: v.height, frameCount: v.frameCount, fps: v.fps, durationSeconds: v.duration, hasAudio: v.hasAudio, codec: v.codec };
}

/** The in-process reader's errors (which give the reason only) with the file and the task named. */
async function named<T>(file: string, what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof EmotorchError) throw new EmotorchError(`cannot ${what} '${file}': ${e.message}`, e.code);
    throw e;
  }
}

/**
 * The file opened by the in-process reader (its header and packet table read), or null where the
 * executables are to read it ('ffmpeg' asked for; 'auto' without the libraries, or for a file whose
 * frames only the executable makes: a picture turned by an odd angle). The file is opened here
 * once; its container is sniffed from that descriptor and the reader reads a duplicate of it.
 */
async function openLibav(
  file: string,
  what: string,
  backend: VideoBackend,
  maxPixels: number,
  timeoutMs: number,
  probeOnly = false,
): Promise<NativeVideo | null> {
  if (backend === 'ffmpeg') return null;
  const why = videoReaderUnavailable();
  if (why !== null) {
    if (backend === 'libav') throw new EmotorchError(`cannot ${what} '${file}' with backend 'libav': ${why}`, 'ERR_IO');
    return null;
  }
  const { fd } = openRegularSync(file);
  let v: NativeVideo;
  try {
    const format = sniffMedia(file, 'video', what, fd);
    v = await named(file, what, openVideoReader(fd, format, maxPixels, timeoutMs));
  } finally {
    fs.closeSync(fd);
  }
  if (v.needsCli && !probeOnly) {
    closeVideoReader(v.handle);
    if (backend === 'libav') bad(file, `${v.needsCli}: only the ffmpeg executable reads it here (backend 'ffmpeg' or 'auto')`);
    return null;
  }
  return v;
}

/**
 * `np.linspace(0, n − 1, num).astype(int)`: `num` frame indices spread evenly over `n` frames,
 * the first and the last included, computed with numpy's float64 arithmetic (i · step, floored;
 * the last set to n − 1). With n < num, indices repeat (a 1-frame video gives `num` zeros).
 * @throws EmotorchError ERR_INVALID_ARG unless n ≥ 1 and num ≥ 1 are integers.
 * @example
 * et.vision.linspaceIndices(100, 8);   // [0, 14, 28, 42, 56, 70, 84, 99]
 */
export function linspaceIndices(n: number, num: number): number[] {
  checkInt(n, 'n', 1);
  checkInt(num, 'num', 1);
  if (num === 1) return [0];
  const step = (n - 1) / (num - 1);
  const out = Array.from({ length: num }, (_, i) => Math.floor(i * step));
  out[num - 1] = n - 1;
  return out;
}

/**
 * The `select` filter expression true exactly on the frames `sorted` (ascending, distinct):
 * consecutive runs as `between(n,a,b)`, the terms summed as a balanced tree (ffmpeg's expression
 * evaluator runs out of memory on a long flat sum: its depth stays log2(terms) here).
 */
function selectExpr(sorted: readonly number[]): string {
  const terms: string[] = [];
  for (let k = 0; k < sorted.length;) {
    let e = k;
    while (e + 1 < sorted.length && sorted[e + 1] === sorted[e] + 1) e++;
    terms.push(e === k ? `eq(n\\,${sorted[k]})` : `between(n\\,${sorted[k]}\\,${sorted[e]})`);
    k = e + 1;
  }
  const sum = (lo: number, hi: number): string => (hi - lo === 1 ? terms[lo] : `(${sum(lo, (lo + hi) >> 1)})+(${sum((lo + hi) >> 1, hi)})`);
  return sum(0, terms.length);
}

/** ffmpeg's spelling of "no frame-rate conversion" (-fps_mode from 5.1, -vsync before). */
let passthrough: string[] = ['-fps_mode', 'passthrough'];

/**
 * Reads exact frames of a video by index as uint8 RGB, shape [3, T, H, W]: by default LanguageBind's
 * `numFrames` (8) frames at `np.linspace(0, frameCount − 1, numFrames).astype(int)`, as its decord
 * backend reads them (`VideoReader.get_batch` of those indices).
 *
 * Decoding stops at the last wanted frame, by one pass from the start ('scan') or by seeking
 * ('seek'); 'auto' picks the same way for both readers, from the keyframe table: seeking when every
 * frame has its own presentation time and it decodes fewer frames (so a damaged file, or one whose
 * timestamps mislead, gives the same frames through either reader). In the process (FFmpeg's
 * libraries, `backend` 'auto' where {@link libavAvailable}): one demux pass reads the frame table,
 * then one decoder goes forward, when seeking jumping to the keyframe before a wanted frame only
 * where a keyframe lies between and skipping packets that are neither wanted nor referred to.
 * Through the executables: either one ffmpeg pass from the start selecting the wanted frames
 * (`-vf select`), or, per distinct frame, an ffmpeg input that seeks to the keyframe before it
 * (ffmpeg's accurate `-ss`, aimed half a frame before the frame's own timestamp so rounding cannot
 * skip it; up to 16 such inputs per ffmpeg run, fewer for large frames, each writing its frame to
 * its own pipe). Both give the same bytes. Every frame is checked against the size the stream
 * declares before anything is decoded.
 *
 * Memory: the output (3 · T · H · W bytes, at most 2 GiB) and about one frame more. Each frame is
 * placed into the output as it is decoded (or as the ffmpeg pipe delivers it), never all held
 * first; decoders run slice threads only (frame threads would hold a picture per thread), in the
 * process and in the executable (`-thread_type slice`). Reading 8 frames of 4096 · 4096 (384 MiB
 * out) grows the process by about that (test/misuse/video-memory.test.ts).
 *
 * Cost: the demux of every packet (58 ms in the process, 0.7 s through ffprobe, for the 36 000
 * packets of a 10-hour 1 fps file) plus at most one keyframe interval of decoding per wanted
 * frame, however long the file: 8 frames of that file took 82 ms in the process, 0.8 s through the
 * executables (a full decode 2.3 s; test/vision/bad-input.test.ts on 2 cores). Frames equal
 * decord's numbering and PyAV's rgb24 pixels bit for bit on the fixtures (h264 4:2:0 and 4:4:4
 * with B-frames, MPEG-4 in AVI).
 * @param file a video file
 * @param opts numFrames (8) or indices (a list, or a function of the frame count), decode ('auto'), maxPixels, timeoutMs, backend ('auto')
 * @throws EmotorchError ERR_IO when the file is missing, the executables are needed and not on
 *   PATH, 'libav' is asked for where the libraries are missing, or reading passes `timeoutMs`;
 *   ERR_FORMAT naming the file when it is corrupt, has no video stream or no frames, declares
 *   frames larger than `maxPixels`, or a wanted frame cannot be decoded; ERR_INVALID_ARG for bad
 *   options or an index out of range.
 * @example
 * const { frames, indices } = await et.vision.readVideoFrames('clip.mp4');   // uint8 [3, 8, H, W]
 */
export async function readVideoFrames(file: string, opts: ReadVideoFramesOptions = {}): Promise<VideoFrames> {
  const o = checkOptionNames(opts, ['numFrames', 'indices', 'decode', 'maxPixels', 'timeoutMs', 'backend'], 'readVideoFrames options');
  const what = 'read the frames of';
  checkFile(file, what);
  const numFrames = o.numFrames === undefined ? 8 : checkInt(o.numFrames, 'numFrames', 1);
  if (numFrames > MAX_FRAMES) invalid(`at most ${MAX_FRAMES} frames`, 'numFrames', numFrames);
  const checkIndices = (list: unknown): readonly number[] => {
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_FRAMES) invalid(`an array of 1 to ${MAX_FRAMES} frame indices`, 'indices', list);
    list.forEach((v, i) => checkInt(v, `indices[${i}]`, 0));
    return list as readonly number[];
  };
  if (o.indices !== undefined) {
    if (o.numFrames !== undefined) invalid('numFrames or indices, not both', 'readVideoFrames options', 'both');
    if (typeof o.indices !== 'function') checkIndices(o.indices);
  }
  const decode = o.decode ?? 'auto';
  if (!['auto', 'scan', 'seek'].includes(decode)) invalid("'auto', 'scan' or 'seek'", 'decode', decode);
  const maxPixels = o.maxPixels === undefined ? MAX_FRAME_PIXELS : checkInt(o.maxPixels, 'maxPixels', 1);
  const timeoutMs = timeoutOf(o.timeoutMs);
  const backend = backendOf(o.backend);

  const lib = await openLibav(file, what, backend, maxPixels, timeoutMs);
  if (lib) {
    try {
      return await readLibav(file, what, lib, o.indices, numFrames, checkIndices, decode, timeoutMs);
    } finally {
      closeVideoReader(lib.handle);
    }
  }
  const p = await probe(file, what, timeoutMs, maxPixels, false);
  const { width, height, frameCount: n } = p.info;
  if (n === 0) bad(file, 'its video stream has no frames');
  const given = typeof o.indices === 'function' ? checkIndices(o.indices(n)) : o.indices;
  const { indices, wanted, slots, frameBytes } = chooseFrames(file, n, width, height, given, numFrames);
  const useSeek = seekOrScan(file, decode, p.times, p.key, p.ptsEverywhere, wanted);

  const { ffmpeg } = tools(file, what);
  // Each frame goes into its places in the output as its last byte arrives: memory holds the
  // output and at most one frame a pipe (never the whole stream, nor a second copy of it).
  const frames = zeros([3, indices.length, height, width], { dtype: 'uint8' });
  const placed = new Uint8Array(wanted.length);
  /** Frames under way, by pipe: which wanted frame, and its bytes so far. */
  const partial = new Map<string, { k: number; buf: Buffer; got: number }>();
  const take = (pipe: string, chunk: Buffer, k: () => number) => {
    for (let off = 0; off < chunk.length;) {
      let cur = partial.get(pipe);
      if (!cur) partial.set(pipe, (cur = { k: k(), buf: Buffer.allocUnsafe(frameBytes), got: 0 }));
      const len = Math.min(frameBytes - cur.got, chunk.length - off);
      chunk.copy(cur.buf, cur.got, off, off + len);
      cur.got += len;
      off += len;
      if (cur.got === frameBytes) {
        if (cur.k >= 0 && cur.k < wanted.length) {
          placeVideoFrame(frames, cur.buf, slots, cur.k);
          placed[cur.k] = 1;
        }
        partial.delete(pipe);
      }
    }
  };
  try {
    const run = { file, what, timeoutMs };
    const base = ['-nostdin', '-hide_banner', '-v', 'error'];
    // decord's filter graph: scale to the declared size, rgb24 (a no-op resize for a normal stream).
    const scale = `scale=${width}:${height},format=rgb24`;
    if (useSeek) {
      // One ffmpeg run per group of frames: one input per frame, each seeked (-ss before -i), each
      // mapped to one output of one frame written to its own pipe (fd 3, 4, …). Large frames make
      // smaller groups and fewer runs at once (SEEK_BUDGET_BYTES).
      const inputs = Math.max(1, Math.min(2 * SEEK_GROUP, Math.floor(SEEK_BUDGET_BYTES / (4 * frameBytes))));
      const workers = inputs >= 2 ? 2 : 1;
      const group = Math.max(1, Math.min(SEEK_GROUP, Math.floor(inputs / workers)));
      const seekGroup = async (first: number, count: number): Promise<void> => {
        const args: string[] = [],
          outputs: string[] = [];
        for (let k = 0; k < count; k++) {
          const i = wanted[first + k];
          // Aim between frame i − 1 and frame i: the first frame at or after it is frame i.
          args.push(...mediaInput(file, p.format, [...DECODER, ...(i > 0 ? ['-ss', ((p.times[i - 1] + p.times[i]) / 2 - p.start).toFixed(6)] : [])]));
          outputs.push('-map', `${k}:${p.stream}`, '-an', '-sn', '-dn', '-vf', scale, '-frames:v', '1', ...RAW_OUT, `pipe:${3 + k}`);
        }
        // output j > 0 is pipe 2 + j, frame first + j − 1; stdout carries nothing
        await runToolPipes(
          ffmpeg,
          [...base, ...args, ...outputs],
          { ...run, maxBytes: frameBytes, sink: (j, c) => take(`${first}:${j}`, c, () => (j > 0 ? first + j - 1 : -1)) },
          count,
        );
        for (let k = 0; k < count; k++) if (!placed[first + k]) bad(file, `frame ${wanted[first + k]} of its ${n} frames could not be decoded`);
      };
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < wanted.length) {
          const first = next;
          next += group;
          try {
            await seekGroup(first, Math.min(group, wanted.length - first));
          } catch (e) {
            next = wanted.length; // start no more runs
            throw e;
          }
        }
      };
      await Promise.all(Array.from({ length: workers }, worker));
    } else {
      const select = `select='${selectExpr(wanted)}',${scale}`;
      let count = 0;
      const args = (fps: string[]) => [
        ...base,
        ...mediaInput(file, p.format, DECODER),
        '-map',
        `0:${p.stream}`,
        '-an',
        '-sn',
        '-dn',
        '-vf',
        select,
        ...fps,
        '-frames:v',
        String(wanted.length),
        ...RAW_OUT,
        'pipe:1',
      ];
      const once = (fps: string[]) => {
        count = 0;
        partial.clear();
        return runTool(ffmpeg, args(fps), { ...run, maxBytes: wanted.length * frameBytes, sink: (j, c) => take('scan', c, () => count++) });
      };
      try {
        await once(passthrough);
      } catch (e) {
        if (!(e instanceof EmotorchError && /fps_mode/.test(e.message) && passthrough[0] === '-fps_mode')) throw e;
        passthrough = ['-vsync', 'passthrough'];
        await once(passthrough);
      }
      const whole = placed.reduce((a, b) => a + b, 0);
      if (whole < wanted.length) {
        bad(file, `only ${whole} of the ${wanted.length} wanted frames (indices up to ${wanted[wanted.length - 1]} of its ${n}) could be decoded`);
      }
    }
  } catch (e) {
    frames.dispose();
    throw e;
  }
  return { frames, indices, frameCount: n, width, height, fps: p.info.fps, decode: useSeek ? 'seek' : 'scan', backend: 'ffmpeg' };
}

/**
 * The indices asked for (checked against the frame count), the distinct ones ascending, where each
 * of the T output frames comes from (`slots[t]`, an index into `wanted`), and the output bound: T
 * frames of rgb24 at most MAX_OUTPUT_BYTES.
 */
function chooseFrames(file: string, n: number, width: number, height: number, given: readonly number[] | undefined, numFrames: number) {
  const indices = given ? [...given] : linspaceIndices(n, numFrames);
  const over = indices.find((i) => i >= n);
  if (over !== undefined) invalid(`frame indices below the video's ${n} frames`, 'indices', over);
  const frameBytes = width * height * 3;
  const wanted = [...new Set(indices)].sort((a, b) => a - b);
  if (indices.length * frameBytes > MAX_OUTPUT_BYTES)
    bad(file, `${indices.length} frames of ${width}×${height} need ${indices.length * frameBytes} bytes, more than the ${MAX_OUTPUT_BYTES} decoded at once`);
  const pos = new Map(wanted.map((v, j) => [v, j] as [number, number]));
  const slots = indices.map((i) => pos.get(i) as number);
  return { indices, wanted, slots, frameBytes };
}

/**
 * Whether every frame has its own presentation timestamp (frames can then be found by seeking).
 * Packets with only a decode timestamp (MPEG-4 with B-frames in AVI) do not count: the decoder's
 * frames come out with other times than those packets had.
 */
function isSeekable(times: Float64Array, ptsEverywhere: boolean): boolean {
  return ptsEverywhere && times.length > 0 && Number.isFinite(times[0]) && times.every((t, i) => i === 0 || t > times[i - 1]);
}

/**
 * Seek (true) or one pass from the start (false), the same rule for both readers, from the frame
 * table both read alike: so that a damaged file, or one whose timestamps mislead (where a seek can
 * land elsewhere than a pass counts), gives the same frames through either. 'auto' seeks only when
 * the frames have distinct presentation times and seeking decodes at most half the frames of one
 * pass, counting SEEK_OVERHEAD_FRAMES a wanted frame: a clip of a few seconds is read in one pass
 * (the way both readers agree on even where the file is damaged), a frame deep in a long file from
 * the keyframe before it.
 */
function seekOrScan(file: string, decode: string, times: Float64Array, key: Uint8Array, ptsEverywhere: boolean, wanted: readonly number[]): boolean {
  const seekable = isSeekable(times, ptsEverywhere);
  if (decode === 'seek' && !seekable) bad(file, "its frames have no distinct presentation timestamps to seek to (use decode: 'scan')");
  if (decode !== 'auto') return decode === 'seek';
  if (!seekable) return false;
  let lastKey = 0,
    k = 0,
    seekCost = 0;
  for (const i of wanted) {
    for (; k <= i; k++) if (key[k]) lastKey = k;
    seekCost += i - lastKey + 1 + SEEK_OVERHEAD_FRAMES;
  }
  return 2 * seekCost < wanted[wanted.length - 1] + 1;
}

/** readVideoFrames through the in-process reader: each frame into its places as it is decoded. */
async function readLibav(
  file: string,
  what: string,
  v: NativeVideo,
  given: ReadVideoFramesOptions['indices'],
  numFrames: number,
  checkIndices: (list: unknown) => readonly number[],
  decode: string,
  timeoutMs: number,
): Promise<VideoFrames> {
  const { width, height, frameCount: n } = v;
  if (n === 0) bad(file, 'its video stream has no frames');
  const list = typeof given === 'function' ? checkIndices(given(n)) : given;
  const { indices, wanted, slots } = chooseFrames(file, n, width, height, list, numFrames);
  const seek = seekOrScan(file, decode, v.times, v.keys, v.ptsEverywhere, wanted);
  const frames = await named(file, what, readVideoReader(v.handle, wanted, slots, seek, timeoutMs));
  return { frames, indices, frameCount: n, width, height, fps: v.fps, decode: seek ? 'seek' : 'scan', backend: 'libav' };
}
