/**
 * Training progress on the terminal: a cli-progress bar on a TTY (step/total, loss, lr, it/s,
 * ETA), plain lines at most every few seconds otherwise (pipes, CI logs).
 */
import type { SingleBar } from 'cli-progress';

export interface ProgressStats {
  loss?: number;
  lr?: number;
}

const fmtTime = (s: number) => {
  if (!Number.isFinite(s)) return '?';
  const h = Math.floor(s / 3600),
    m = Math.floor((s % 3600) / 60),
    sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
};
const fmtNum = (v: number | undefined, digits = 4) =>
  v === undefined || !Number.isFinite(v) ? '-' : Math.abs(v) < 1e-3 && v !== 0 ? v.toExponential(2) : v.toFixed(digits);

/** @internal One progress display for one train() call. */
export class Progress {
  private bar: SingleBar | null = null;
  private t0 = 0;
  private first = 0;
  private lastLine = 0;
  private stats: ProgressStats = {};
  constructor(
    private readonly total: number,
    private readonly mode: 'bar' | 'lines' | 'off',
    private readonly stream: NodeJS.WritableStream = process.stderr,
    private readonly every = 5000,
  ) {}

  /** 'bar' on an interactive terminal outside CI, 'lines' otherwise, 'off' when disabled. */
  static mode(disabled: boolean, stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): 'bar' | 'lines' | 'off' {
    if (disabled) return 'off';
    return stream.isTTY && !process.env.CI ? 'bar' : 'lines';
  }

  start(step: number): void {
    this.t0 = Date.now();
    this.first = step;
    if (this.mode !== 'bar') return;
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded only when a bar is drawn
    const cp = require('cli-progress') as typeof import('cli-progress');
    this.bar = new cp.SingleBar(
      {
        format: 'train |{bar}| {value}/{total} | loss {loss} | lr {lr} | {speed} it/s | ETA {eta_s}',
        stream: this.stream as NodeJS.WriteStream,
        hideCursor: true,
        barsize: 30,
        etaBuffer: 50,
      },
      cp.Presets.shades_classic,
    );
    this.bar.start(this.total, step, { loss: '-', lr: '-', speed: '-', eta_s: '?' });
  }

  private rates(step: number): { speed: number; eta: number } {
    const dt = (Date.now() - this.t0) / 1000;
    const speed = dt > 0 ? (step - this.first) / dt : 0;
    return { speed, eta: speed > 0 ? (this.total - step) / speed : Infinity };
  }

  update(step: number, stats: ProgressStats = {}): void {
    this.stats = { ...this.stats, ...stats };
    const { speed, eta } = this.rates(step);
    if (this.mode === 'bar' && this.bar) {
      this.bar.update(step, { loss: fmtNum(this.stats.loss), lr: fmtNum(this.stats.lr), speed: speed.toFixed(2), eta_s: fmtTime(eta) });
    } else if (this.mode === 'lines') {
      const now = Date.now();
      if (now - this.lastLine < this.every && step < this.total) return;
      this.lastLine = now;
      const pct = ((100 * step) / this.total).toFixed(0);
      this.stream.write(
        `[emotorch] step ${step}/${this.total} (${pct}%) loss ${fmtNum(this.stats.loss)} lr ${fmtNum(this.stats.lr)} ${speed.toFixed(2)} it/s ETA ${fmtTime(eta)}\n`,
      );
    }
  }

  /** A one-off message (evaluation results) without breaking the bar. */
  note(text: string): void {
    if (this.mode === 'off') return;
    if (this.bar) {
      this.stream.write('\r\x1b[2K');
      this.stream.write(`${text}\n`);
      this.bar.render();
    } else this.stream.write(`[emotorch] ${text}\n`);
  }

  stop(): void {
    if (this.bar) this.bar.stop();
    this.bar = null;
  }
}
