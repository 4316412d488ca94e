/**
 * Audio from any file: WAV is decoded by emotorch itself; other audio and the audio track of video
 * containers (mp4, mkv, avi, …) are decoded by the `ffmpeg` program found on PATH into a float WAV
 * at the file's own rate and channels, which emotorch then reads like any WAV (same channel pick
 * and resampler). Nothing but the decoding is left to ffmpeg.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFile } from 'child_process';
import { EmotorchError, invalid } from '../errors';
import { notAFile } from '../io/file';
import { readWav, Wav, WavOptions } from './wav';

/** An executable named `name` (plus `.exe` on Windows) on PATH as `PATH` is now, or null. */
function findOnPath(name: string): string | null {
  const names = process.platform === 'win32' ? [`${name}.exe`, name] : [name];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const n of names) {
      const p = path.join(dir, n);
      try {
        if (fs.statSync(p).isFile()) { fs.accessSync(p, fs.constants.X_OK); return p; }
      } catch { /* not here */ }
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

/** The error for a file that needs ffmpeg when none is on PATH. */
export function ffmpegMissing(file: string): EmotorchError {
  return new EmotorchError(`cannot read the audio of '${file}': it is not a WAV file, and ffmpeg (which emotorch uses for other audio and for the audio track of video files) is not on PATH; install ffmpeg (e.g. apt-get install ffmpeg) or convert the file to WAV`, 'ERR_IO');
}

/**
 * Reads the audio of a file as mono float32 at the wanted rate: `.wav` natively (as
 * {@link readWav}), anything else (mp3, flac, m4a, the audio track of mp4/mkv/avi/… video) through
 * `ffmpeg` on PATH, which only decodes the first audio stream; channel choice and resampling are
 * emotorch's, as for a WAV.
 * @param file the audio or video file
 * @param opts as {@link readWav}: sampleRate (default 16000), channel ('mix' or an index)
 * @throws EmotorchError ERR_IO when the file is missing or unreadable, or needs ffmpeg and none is
 *   on PATH (the message names the file and says so); ERR_FORMAT naming the file when ffmpeg cannot
 *   decode it (no audio stream, corrupt) or the WAV is malformed.
 * @example
 * const { samples } = await et.audio.readAudio('dia1_utt3.mp4', { sampleRate: 16000 });
 */
export async function readAudio(file: string, opts: WavOptions = {}): Promise<Wav> {
  if (typeof file !== 'string' || !file) invalid('a file path', 'file', file);
  const why = notAFile(file);
  if (why) throw new EmotorchError(`cannot read audio: '${file}' ${why}`, 'ERR_IO');
  if (path.extname(file).toLowerCase() === '.wav') return readWav(file, opts);
  const ffmpeg = findFfmpeg();
  if (!ffmpeg) throw ffmpegMissing(file);
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'emotorch-ffmpeg-'));
  const out = path.join(dir, 'audio.wav');
  try {
    await new Promise<void>((resolve, reject) => {
      // `file:` + the absolute path: a name starting with '-' is not an option, one with ':' not a protocol
      execFile(ffmpeg, ['-nostdin', '-hide_banner', '-v', 'error', '-i', `file:${path.resolve(file)}`, '-map', '0:a:0', '-vn', '-c:a', 'pcm_f32le', '-f', 'wav', '-y', out],
        { maxBuffer: 1 << 20, windowsHide: true }, (err, _stdout, stderr) => {
          if (!err) return resolve();
          const msg = String(stderr).trim().split('\n').filter(Boolean).slice(-2).join('; ') || err.message;
          reject(new EmotorchError(`ffmpeg cannot decode the audio of '${file}': ${msg}`, 'ERR_FORMAT'));
        });
    });
    const wav = await readWav(out, opts);
    return wav;
  } catch (e) {
    if (e instanceof EmotorchError && e.code === 'ERR_FORMAT' && !e.message.startsWith('ffmpeg')) {
      throw new EmotorchError(`the audio ffmpeg decoded from '${file}' is unreadable: ${e.message}`, 'ERR_FORMAT');
    }
    throw e;
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}
