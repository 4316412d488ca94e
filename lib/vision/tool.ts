/**
 * Running ffmpeg and ffprobe as child processes with bounds: a wall-clock limit (the process is
 * killed, never waited on forever), a cap on what it may write to stdout (killed when it writes
 * more), and the last lines of stderr kept for the error message. Nothing else runs them.
 * @internal
 */
import { spawn } from 'child_process';
import * as path from 'path';
import { EmotorchError } from '../errors';
import { findFfmpeg, findFfprobe } from '../audio/ffmpeg';

/** Default limit for one ffmpeg / ffprobe run, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 120_000;

export interface RunOptions {
  /** The file the run reads (named in error messages). */
  file: string;
  /** What the run is for, in words ('read the frames of'), for error messages. */
  what: string;
  /** Kill the process when its stdout passes this many bytes. */
  maxBytes: number;
  timeoutMs: number;
}

/**
 * A user's path as an ffmpeg / ffprobe input: `file:` + the absolute path, so that a name that
 * starts with '-' is not read as an option and one with ':' ("concat:…", "http://…") not as a
 * protocol.
 */
export function inputArg(file: string): string {
  return `file:${path.resolve(file)}`;
}

/** The ffmpeg / ffprobe executables, or an ERR_IO error naming the file and the missing tool. */
export function tools(file: string, what: string): { ffmpeg: string; ffprobe: string } {
  const ffmpeg = findFfmpeg();
  const ffprobe = findFfprobe();
  if (!ffmpeg || !ffprobe) {
    const missing = [!ffmpeg && 'ffmpeg', !ffprobe && 'ffprobe'].filter(Boolean).join(' and ');
    throw new EmotorchError(`cannot ${what} '${file}': ${missing} (which emotorch runs to decode video and images) ${ffmpeg || ffprobe ? 'is' : 'are'} not on PATH; install ffmpeg (e.g. apt-get install ffmpeg, which brings ffprobe)`, 'ERR_IO');
  }
  return { ffmpeg, ffprobe };
}

/**
 * Runs `exe args` and resolves with its stdout when it exits with status 0.
 * @throws EmotorchError ERR_FORMAT naming the file when it fails (with ffmpeg's last stderr
 *   lines) or writes more than `maxBytes`; ERR_IO when it cannot start or passes `timeoutMs`.
 */
export async function runTool(exe: string, args: string[], o: RunOptions): Promise<Buffer> {
  return (await runToolPipes(exe, args, o, 0))[0];
}

/**
 * As {@link runTool}, with `extra` more output pipes (file descriptors 3, 4, …; ffmpeg writes to
 * them as `pipe:3`, `pipe:4`, …): resolves with [stdout, pipe 3, pipe 4, …]; `maxBytes` bounds each.
 */
export function runToolPipes(exe: string, args: string[], o: RunOptions, extra: number): Promise<Buffer[]> {
  return new Promise<Buffer[]>((resolve, reject) => {
    const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe', ...Array<'pipe'>(extra).fill('pipe')], windowsHide: true });
    const outs = [1, ...Array.from({ length: extra }, (_, k) => 3 + k)];
    const chunks: Buffer[][] = outs.map(() => []);
    const bytes = outs.map(() => 0);
    let stderr = '';
    let failure: EmotorchError | null = null;
    const fail = (e: EmotorchError): void => {
      if (!failure) failure = e;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => fail(new EmotorchError(`cannot ${o.what} '${o.file}': ${shortName(exe)} ran longer than ${o.timeoutMs} ms and was stopped (raise timeoutMs for very long files)`, 'ERR_IO')), o.timeoutMs);
    outs.forEach((fd, k) => {
      const stream = child.stdio[fd] as NodeJS.ReadableStream;
      stream.on('data', (c: Buffer) => {
        if (failure) return;
        bytes[k] += c.length;
        if (bytes[k] > o.maxBytes) {
          fail(new EmotorchError(`cannot ${o.what} '${o.file}': ${shortName(exe)} wrote more than the ${o.maxBytes} bytes expected (the file's metadata does not describe its content)`, 'ERR_FORMAT'));
          return;
        }
        chunks[k].push(c);
      });
    });
    child.stderr!.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString('utf8')).slice(-4096);
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new EmotorchError(`cannot ${o.what} '${o.file}': ${shortName(exe)} could not be started: ${e.message}`, 'ERR_IO'));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (failure) return reject(failure);
      if (code === 0) return resolve(chunks.map((c, k) => Buffer.concat(c, bytes[k])));
      // The tool's own last words, as printable ASCII and briefly (never file content at length).
      const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean).slice(-2).join('; ').replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
      reject(new EmotorchError(`cannot ${o.what} '${o.file}': ${shortName(exe)} failed (${signal ? `signal ${signal}` : `exit status ${code}`})${lines ? `: ${lines}` : ''}`, 'ERR_FORMAT'));
    });
  });
}

function shortName(exe: string): string {
  return /ffprobe/i.test(exe.split(/[\\/]/).pop() ?? '') ? 'ffprobe' : 'ffmpeg';
}
