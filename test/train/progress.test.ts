import { describe, it, expect } from 'vitest';
import { Writable } from 'stream';
import { Progress } from '../../lib/train/progress';

/** A stream that records what is written; `tty` makes it look like an interactive terminal. */
function sink(tty: boolean) {
  const chunks: string[] = [];
  const s = new Writable({
    write(c, _e, cb) {
      chunks.push(String(c));
      cb();
    },
  }) as Writable & Record<string, unknown>;
  if (tty) Object.assign(s, { isTTY: true, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
  return { s: s as unknown as NodeJS.WritableStream & { isTTY?: boolean }, text: () => chunks.join('') };
}

describe('progress display', () => {
  it('is a bar on a TTY, plain lines otherwise or in CI, nothing when disabled', () => {
    const ci = process.env.CI;
    delete process.env.CI;
    try {
      expect(Progress.mode(false, sink(true).s)).toBe('bar');
      expect(Progress.mode(false, sink(false).s)).toBe('lines');
      process.env.CI = 'true';
      expect(Progress.mode(false, sink(true).s)).toBe('lines');
      expect(Progress.mode(true, sink(true).s)).toBe('off');
    } finally {
      if (ci === undefined) delete process.env.CI;
      else process.env.CI = ci;
    }
  });

  it('bar shows step/total, loss, lr, it/s and ETA; lines are throttled but the last one always prints', () => {
    const tty = sink(true);
    const bar = new Progress(10, 'bar', tty.s);
    bar.start(0);
    bar.update(3, { loss: 0.5, lr: 2e-5 });
    bar.stop();
    expect(tty.text()).toMatch(/3\/10 \| loss 0\.5000 \| lr 2\.00e-5 \| [\d.]+ it\/s \| ETA \S+/);

    const plain = sink(false);
    const lines = new Progress(10, 'lines', plain.s, 60_000);
    lines.start(0);
    lines.update(1, { loss: 1.25, lr: 0.001 });
    lines.update(2, { loss: 1.0 }); // within the interval: no line
    lines.update(10, { loss: 0.75 }); // the last step: a line
    lines.note('eval_loss 0.7');
    const out = plain.text().trim().split('\n');
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(/^\[emotorch\] step 1\/10 \(10%\) loss 1\.2500 lr 0\.0010 [\d.]+ it\/s ETA \S+$/);
    expect(out[1]).toMatch(/^\[emotorch\] step 10\/10 \(100%\) loss 0\.7500 /);
    expect(out[2]).toBe('[emotorch] eval_loss 0.7');
    const off = sink(false);
    const none = new Progress(10, 'off', off.s);
    none.start(0);
    none.update(5, { loss: 1 });
    none.note('x');
    none.stop();
    expect(off.text()).toBe('');
  });
});
