/**
 * A training run's log files on rank 0: `log.jsonl` (one record a line, written in order behind
 * the training loop; the first failed write is kept and thrown by the next write or flush) and,
 * when asked, TensorBoard's scalars under HF's tags.
 */
import * as fs from 'fs';
import * as path from 'path';
import { TensorBoardWriter } from './tensorboard';
import type { LogRecord } from './callbacks';

/** The log files of one run (see the file's comment); nothing is written before `open`. */
export class RunLog {
  private tb: TensorBoardWriter | null = null;
  private file: fs.promises.FileHandle | null = null;
  private writes: Promise<void> = Promise.resolve();
  private error: unknown = null;

  /** Rewrites `outputDir/log.jsonl` from `history` and opens it to append; a TensorBoard writer in `tensorboardDir` (null: none). */
  async open(outputDir: string, history: LogRecord[], tensorboardDir: string | null): Promise<void> {
    const lines = history.map((r) => `${JSON.stringify(r)}\n`).join('');
    await fs.promises.writeFile(path.join(outputDir, 'log.jsonl'), lines);
    this.tb = tensorboardDir !== null ? new TensorBoardWriter(tensorboardDir) : null;
    this.file = await fs.promises.open(path.join(outputDir, 'log.jsonl'), 'a');
  }

  /** Forgets a failed write of an earlier run. */
  clearError(): void {
    this.error = null;
  }

  /** Writes a record (`rec`, as log_history holds it) to log.jsonl, and `logs`' numbers but the epoch to TensorBoard at `step`. */
  async write(rec: LogRecord, logs: LogRecord, step: number): Promise<void> {
    this.append(`${JSON.stringify(rec)}\n`);
    if (this.tb) {
      for (const [k, v] of Object.entries(logs)) {
        if (typeof v !== 'number' || k === 'epoch') continue;
        const tag = k.startsWith('eval_') ? `eval/${k.slice(5)}` : `train/${k}`; // HF's TensorBoardCallback tags
        this.tb.addScalar(tag, v, step);
      }
      await this.tb.flush();
    }
  }

  /** Queues a log.jsonl line (the step does not wait for the disk); a failed write is thrown by the next log or flush. */
  private append(line: string): void {
    if (this.error) throw this.error;
    const fh = this.file;
    if (!fh) return;
    this.writes = this.writes
      .then(() => fh.write(line))
      .then(
        () => undefined,
        (e) => {
          this.error ??= e;
        },
      );
  }

  /** Waits for the queued lines; throws the first failed write. */
  async flush(): Promise<void> {
    await this.writes;
    if (this.error) throw this.error;
  }

  /** Closes TensorBoard, waits for the queued lines and closes log.jsonl (their failures are not thrown). */
  async close(): Promise<void> {
    await this.tb?.close().catch(() => undefined);
    this.tb = null;
    await this.writes;
    await this.file?.close().catch(() => undefined);
    this.file = null;
  }
}
