/**
 * Opening the files a user names, safely: only regular files are read (a directory, FIFO, socket
 * or device such as /dev/zero is refused before a byte is read, and a FIFO's open never blocks),
 * whole-file reads have a size limit, and JSON errors name the position, not the text.
 */
import * as fs from 'fs';
import { constants as bufferConstants } from 'buffer';
import { EmotorchError } from '../errors';

/** The most bytes one Buffer can hold here (4 GiB on 64-bit Node 20). */
export const MAX_BUFFER = bufferConstants.MAX_LENGTH;

// O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer (which
// would hold a libuv worker, or the JS thread for sync calls, forever). No effect on regular files.
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

function kind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function ioError(path: string, e: unknown): EmotorchError {
  if (e instanceof EmotorchError) return e;
  return new EmotorchError(`cannot read '${path}': ${(e as Error).message}`, 'ERR_IO');
}

function checkStat(path: string, st: fs.Stats, maxBytes: number): number {
  if (!st.isFile()) throw new EmotorchError(`cannot read '${path}': it is ${kind(st)}, not a regular file`, 'ERR_IO');
  if (st.size > maxBytes)
    throw new EmotorchError(`cannot read '${path}': it has ${st.size} bytes, more than the ${maxBytes} read into memory at once`, 'ERR_IO');
  return st.size;
}

/**
 * Why a path cannot be read as a data file ('does not exist', 'is a directory, not a regular
 * file', …), or null when it is a regular file (symlinks followed). Opens nothing.
 * @param p the path
 * @example
 * const why = et.io.notAFile(p); if (why) console.error(`${p} ${why}`);
 */
export function notAFile(p: string): string | null {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return 'does not exist';
  }
  if (st.isFile()) return null;
  return `is ${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'a socket or other special file'}, not a regular file`;
}

/**
 * Opens a regular file for reading (symlinks followed) and returns its descriptor and size.
 * The caller closes the descriptor.
 * @throws EmotorchError ERR_IO when it cannot be opened, is not a regular file, or is larger than
 *   `maxBytes`.
 */
export function openRegularSync(path: string, maxBytes = Number.MAX_SAFE_INTEGER): { fd: number; size: number } {
  let fd: number;
  try {
    fd = fs.openSync(path, OPEN_FLAGS);
  } catch (e) {
    throw ioError(path, e);
  }
  try {
    return { fd, size: checkStat(path, fs.fstatSync(fd), maxBytes) };
  } catch (e) {
    fs.closeSync(fd);
    throw ioError(path, e);
  }
}

/**
 * Throws unless `path` is a regular file (symlinks followed) of at most `maxBytes`; opens nothing.
 * @throws EmotorchError ERR_IO as {@link openRegularSync}.
 */
export async function checkRegularFile(path: string, maxBytes = Number.MAX_SAFE_INTEGER): Promise<number> {
  let st: fs.Stats;
  try {
    st = await fs.promises.stat(path);
  } catch (e) {
    throw ioError(path, e);
  }
  return checkStat(path, st, maxBytes);
}

/**
 * Reads a whole regular file into one Buffer (past fs.readFile's 2 GiB limit, up to `maxBytes`
 * and at most {@link MAX_BUFFER}).
 * @throws EmotorchError ERR_IO when it cannot be read, is not a regular file or is too large.
 */
export async function readRegularFile(path: string, maxBytes = MAX_BUFFER): Promise<Buffer> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(path, OPEN_FLAGS);
  } catch (e) {
    throw ioError(path, e);
  }
  try {
    const size = checkStat(path, await fh.stat(), Math.min(maxBytes, MAX_BUFFER));
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const { bytesRead } = await fh.read(buf, off, Math.min(size - off, 1 << 30), off);
      if (bytesRead === 0) break; // the file shrank while being read
      off += bytesRead;
    }
    return off === size ? buf : buf.subarray(0, off);
  } catch (e) {
    throw ioError(path, e);
  } finally {
    await fh.close();
  }
}

/**
 * Reads a regular text file (UTF-8) synchronously, up to V8's longest string, as every emotorch
 * reader reads files: a directory, FIFO, socket or device (/dev/zero) is refused before a byte is
 * read, and a FIFO's open never blocks.
 * @param path the file
 * @param maxBytes refuse larger files (default: V8's longest string, 512 MiB)
 * @throws EmotorchError ERR_IO when it cannot be read, is not a regular file or is too large.
 * @example
 * const yaml = et.io.readRegularTextSync('decode_config.yaml', 16 << 20);
 */
export function readRegularTextSync(path: string, maxBytes = bufferConstants.MAX_STRING_LENGTH): string {
  const { fd, size } = openRegularSync(path, Math.min(maxBytes, bufferConstants.MAX_STRING_LENGTH));
  try {
    const buf = Buffer.allocUnsafe(size);
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.toString('utf8', 0, off);
  } catch (e) {
    throw ioError(path, e);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Parses JSON text; a syntax error names the file (and `where`, e.g. a line) and the position but
 * never quotes the text (V8's messages include a snippet of it).
 * @throws EmotorchError ERR_FORMAT
 */
export function parseJson(text: string, file: string, where = ''): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const msg = (e as Error).message;
    const at = /position (\d+)/.exec(msg);
    const why = at ? `a syntax error at character ${at[1]}` : /end of JSON/i.test(msg) ? 'it ends too early' : 'a syntax error';
    throw new EmotorchError(`'${file}'${where} is not JSON (${why})`, 'ERR_FORMAT');
  }
}

/** Config-like JSON files (config.json, shard indexes, adapter configs) are small: anything larger is not one. */
export const MAX_JSON = 64 * 1024 * 1024;

/**
 * Reads and parses a JSON file: the one JSON-file reader (regular files only, at most `maxBytes`,
 * a syntax error named by position without quoting the text).
 * @param path the file
 * @param maxBytes refuse larger files (default: V8's longest string)
 * @throws EmotorchError ERR_IO as {@link readRegularTextSync}; ERR_FORMAT when it is not JSON (named by the syntax error's position, never quoting the text).
 * @example
 * const cfg = et.io.readJsonSync('config.json', 16 << 20);
 */
export function readJsonSync(path: string, maxBytes?: number): unknown {
  return parseJson(readRegularTextSync(path, maxBytes), path);
}

/**
 * {@link readJsonSync} on the thread pool, up to V8's longest string.
 * @throws EmotorchError ERR_IO as {@link readRegularFile}; ERR_FORMAT as {@link parseJson}.
 */
export async function readJson(path: string, maxBytes: number = bufferConstants.MAX_STRING_LENGTH): Promise<unknown> {
  const buf = await readRegularFile(path, Math.min(maxBytes, bufferConstants.MAX_STRING_LENGTH));
  return parseJson(buf.toString('utf8'), path);
}

/**
 * A JSON file that must hold an object (a config), of at most `maxBytes` ({@link MAX_JSON} unless given).
 * @param what what it should be, for the message: `'<path>' is not <what>: not a JSON object`
 * @param maxBytes refuse larger files
 * @throws EmotorchError ERR_IO / ERR_FORMAT as {@link readJsonSync}; ERR_FORMAT when not an object.
 */
export function readJsonObjectSync(path: string, what: string, maxBytes: number = MAX_JSON): Record<string, unknown> {
  const c = readJsonSync(path, maxBytes);
  if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new EmotorchError(`'${path}' is not ${what}: not a JSON object`, 'ERR_FORMAT');
  return c as Record<string, unknown>;
}
