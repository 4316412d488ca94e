/**
 * Audio from any file: WAV is decoded by emotorch itself; other audio and the audio track of video
 * containers (mp4, mkv, avi, …) are decoded by the `ffmpeg` program found on PATH into float WAV
 * at the file's own rate and channels, streamed through a pipe (no temporary file), which emotorch
 * then reads like any WAV (same channel pick and resampler). Nothing but the decoding is left to
 * ffmpeg, and ffmpeg reads only the named file (see lib/io/media.ts).
 */
import { EmotorchError, invalid } from '../errors';
import { notAFile } from '../io/file';
import { findFfmpeg, mediaInput, runTool, sniffMedia } from '../io/media';
import { MAX_SAMPLE_RATE } from './resample';
import { checkOptions, decodeWav, readWav, Wav, WavOptions } from './wav';

export { findFfmpeg, findFfprobe } from '../io/media';

/** The error for a file that needs ffmpeg when none is on PATH. */
export function ffmpegMissing(file: string): EmotorchError {
  return new EmotorchError(
    `cannot read the audio of '${file}': it is not a WAV file, and ffmpeg (which emotorch uses for other audio and for the audio track of video files) is not on PATH; install ffmpeg (e.g. apt-get install ffmpeg) or convert the file to WAV`,
    'ERR_IO',
  );
}

/** The most bytes of decoded audio one readAudio call takes from ffmpeg (2 GiB). */
const MAX_DECODED_BYTES = 2 ** 31;
/** The most channels a decoded stream may have. */
const MAX_CHANNELS = 64;

/**
 * The byte limit of ffmpeg's float WAV output, from its header (fmt first, as ffmpeg writes it):
 * `seconds` of the stream's rate and channels, plus the header; at most 2 GiB.
 */
function decodedLimit(head: Buffer, seconds: number): number {
  const ok = head.toString('latin1', 0, 4) === 'RIFF' && head.toString('latin1', 8, 16) === 'WAVEfmt ';
  const channels = ok ? head.readUInt16LE(22) : 0;
  const rate = ok ? head.readUInt32LE(24) : 0;
  if (!ok || channels < 1 || channels > MAX_CHANNELS || rate < 1 || rate > MAX_SAMPLE_RATE) return 0;
  return Math.min(MAX_DECODED_BYTES, 4096 + Math.ceil(seconds * rate) * channels * 4);
}

/**
 * Reads the audio of a file as mono float32 at the wanted rate: WAV natively (as
 * {@link readWav}), anything else (MP3, FLAC, Ogg, ADTS AAC, the audio track of MP4 / M4A / MOV,
 * Matroska / WebM and AVI) through `ffmpeg` on PATH, which only decodes the first audio stream;
 * channel choice and resampling are emotorch's, as for a WAV. The container is named from the
 * file's own bytes, not its extension, and ffmpeg is let open that one file only: a playlist,
 * manifest or concat script is refused whatever it is called.
 * @param file the audio or video file
 * @param opts as {@link readWav}: sampleRate (default 16000), channel ('mix' or an index),
 *   maxSeconds (default an hour: ffmpeg stops there, and a longer file is refused), timeoutMs
 *   (default 120000: ffmpeg is killed after it)
 * @throws EmotorchError ERR_IO when the file is missing or unreadable, needs ffmpeg and none is
 *   on PATH (the message names the file and says so), or ffmpeg runs past `timeoutMs`; ERR_FORMAT
 *   naming the file when it is none of the formats above, ffmpeg cannot decode it (no audio
 *   stream, corrupt), it lasts longer than `maxSeconds` or decodes to more than 2 GiB, or the WAV
 *   is malformed.
 * @example
 * const { samples } = await et.audio.readAudio('dia1_utt3.mp4', { sampleRate: 16000 });
 */
export async function readAudio(file: string, opts: WavOptions = {}): Promise<Wav> {
  if (typeof file !== 'string' || !file) invalid('a file path', 'file', file);
  const o = checkOptions(opts);
  const what = 'read the audio of';
  const why = notAFile(file);
  if (why) throw new EmotorchError(`cannot read audio: '${file}' ${why}`, 'ERR_IO');
  const format = sniffMedia(file, 'audio', what);
  if (format === 'wav') return readWav(file, opts);
  const ffmpeg = findFfmpeg();
  if (!ffmpeg) throw ffmpegMissing(file);
  // A second past the limit is decoded, so that a file longer than maxSeconds is told from one as long.
  const seconds = o.maxSeconds + 1;
  const limit = Number.isFinite(seconds) ? ['-t', String(seconds)] : [];
  const raw = await runTool(
    ffmpeg,
    ['-nostdin', '-hide_banner', '-v', 'error', ...mediaInput(file, format), ...limit, '-map', '0:a:0', '-vn', '-c:a', 'pcm_f32le', '-f', 'wav', 'pipe:1'],
    { file, what, timeoutMs: o.timeoutMs, maxBytes: (head) => decodedLimit(head, seconds) },
  );
  try {
    return decodeWav(raw, { ...opts, timeoutMs: undefined }, file);
  } catch (e) {
    if (e instanceof EmotorchError && e.code === 'ERR_FORMAT' && !/maxSeconds/.test(e.message)) {
      throw new EmotorchError(`the audio ffmpeg decoded from '${file}' is unreadable: ${e.message}`, 'ERR_FORMAT');
    }
    throw e;
  }
}
