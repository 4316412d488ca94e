/**
 * A minimal TensorBoard event-file writer: scalar summaries in TFRecord framing (the format
 * `tensorboard` and `tf.summary` read), written with Node's fs only.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EmotorchError, checkInt, invalid } from '../errors';

let CRC_TABLE: Uint32Array | null = null;
/** CRC-32C (Castagnoli), as TFRecord framing uses. */
export function crc32c(buf: Uint8Array): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < buf.length; i++) crc = CRC_TABLE[(crc ^ buf[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
const masked = (crc: number) => ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;

function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  if (v < 0n) v += 1n << 64n;
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const lenField = (tag: number, bytes: Uint8Array) => Buffer.concat([Buffer.from([tag, ...varint(bytes.length)]), bytes]);

function event(wallTime: number, step: number, body: Buffer): Buffer {
  const wt = Buffer.alloc(9);
  wt[0] = 0x09; // field 1, fixed64: wall_time (double)
  wt.writeDoubleLE(wallTime, 1);
  return Buffer.concat([wt, Buffer.from([0x10, ...varint(step)]), body]); // field 2, varint: step
}

function record(data: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.writeBigUInt64LE(BigInt(data.length), 0);
  head.writeUInt32LE(masked(crc32c(head.subarray(0, 8))), 8);
  const tail = Buffer.alloc(4);
  tail.writeUInt32LE(masked(crc32c(data)), 0);
  return Buffer.concat([head, data, tail]);
}

/**
 * Writes scalars to `<logDir>/events.out.tfevents.<time>.<host>.<pid>` for TensorBoard.
 * Writes are queued and appended in order; `flush()` waits for them.
 * @example
 * const tb = new et.train.TensorBoardWriter('runs/exp1');
 * tb.addScalar('train/loss', 0.42, 10);
 * await tb.close();
 */
export class TensorBoardWriter {
  readonly file: string;
  private chain: Promise<void>;
  private pending: Buffer[] = [];
  private closed = false;

  /** @throws EmotorchError ERR_IO when the folder cannot be created. */
  constructor(logDir: string) {
    if (typeof logDir !== 'string' || !logDir) invalid('a folder path', 'logDir', logDir);
    try {
      fs.mkdirSync(logDir, { recursive: true });
    } catch (e) {
      throw new EmotorchError(`cannot create TensorBoard folder '${logDir}': ${(e as Error).message}`, 'ERR_IO');
    }
    const now = Date.now() / 1000;
    this.file = path.join(logDir, `events.out.tfevents.${Math.floor(now)}.${os.hostname()}.${process.pid}.${Math.floor(Math.random() * 1e6)}`);
    const version = event(now, 0, lenField(0x1a, Buffer.from('brain.Event:2'))); // field 3: file_version
    this.chain = fs.promises.writeFile(this.file, record(version)).catch((e) => {
      throw new EmotorchError(`cannot write '${this.file}': ${e.message}`, 'ERR_IO');
    });
  }

  /**
   * Queues one scalar (`tag`, `value` at `step`).
   * @throws EmotorchError ERR_INVALID_ARG for a bad tag, value or step, or after close().
   */
  addScalar(tag: string, value: number, step: number, wallTime = Date.now() / 1000): void {
    if (this.closed) throw new EmotorchError('TensorBoardWriter is closed', 'ERR_INVALID_ARG');
    if (typeof tag !== 'string' || !tag) invalid('a non-empty tag', 'tag', tag);
    if (typeof value !== 'number') invalid('a number', 'value', value);
    checkInt(step, 'step', 0);
    const sv = Buffer.alloc(5);
    sv[0] = 0x15; // Summary.Value field 2, fixed32: simple_value
    sv.writeFloatLE(value, 1);
    const val = Buffer.concat([lenField(0x0a, Buffer.from(tag, 'utf8')), sv]); // field 1: tag
    const summary = lenField(0x0a, val); // Summary field 1: value
    this.pending.push(record(event(wallTime, step, lenField(0x2a, summary)))); // Event field 5: summary
  }

  /** Appends what is queued; resolves when it is on disk (in the OS's hands). */
  flush(): Promise<void> {
    if (this.pending.length) {
      const data = Buffer.concat(this.pending);
      this.pending = [];
      this.chain = this.chain
        .then(() => fs.promises.appendFile(this.file, data))
        .catch((e) => {
          throw new EmotorchError(`cannot write '${this.file}': ${e.message}`, 'ERR_IO');
        });
    }
    return this.chain;
  }

  /** Flushes and stops accepting scalars. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }
}
