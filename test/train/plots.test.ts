import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { niceTicks, writePlots } from '../../lib/train/plots';
import { tmpdir } from '../helpers';

describe('learning-curve plots', () => {
  it('puts round ticks around the data', () => {
    expect(niceTicks(0.13, 2.57)).toEqual([0, 0.5, 1, 1.5, 2, 2.5, 3]);
    expect(niceTicks(1, 40)).toEqual([0, 10, 20, 30, 40]);
    expect(niceTicks(2.5e-6, 5e-5)).toEqual([0, 1e-5, 2e-5, 3e-5, 4e-5, 5e-5]);
    expect(niceTicks(-0.3, 0.2)).toEqual([-0.3, -0.2, -0.1, 0, 0.1, 0.2]);
    // one value: a range around it
    const one = niceTicks(5, 5);
    expect(one[0]).toBeLessThan(5);
    expect(one[one.length - 1]).toBeGreaterThan(5);
    // a span far below the values' magnitude: treated as one value, not thousands of ticks
    const flat = niceTicks(1e6, 1e6 + 1e-7);
    expect(flat.length).toBeLessThan(20);
    expect(flat[0]).toBeLessThan(1e6);
    const zero = niceTicks(0, 0);
    expect(zero[0]).toBeLessThan(0);
    expect(zero[zero.length - 1]).toBeGreaterThan(0);
  });

  it('draws each series from the axes it labels, escapes names, marks few points', async () => {
    const dir = tmpdir();
    const files = await writePlots(dir, [
      { step: 0, loss: 0 },
      { step: 10, loss: 1, learning_rate: 1e-3 },
      { step: 10, 'eval_a<b&c': 0.5, eval_runtime: 2 },
    ]);
    expect(files.map((f) => path.basename(f))).toEqual(['plot_loss.svg', 'plot_learning_rate.svg', 'plot_metrics.svg']);
    const loss = fs.readFileSync(files[0], 'utf8');
    expect(loss.startsWith('<svg') && loss.trimEnd().endsWith('</svg>')).toBe(true);
    // ticks 0 … 10 and 0 … 1: the line runs from the plot's bottom-left corner to its top-right one
    expect(loss).toContain('d="M70.0 310.0L690.0 64.0"');
    expect(loss.match(/<circle /g)!.length).toBe(2);
    const metrics = fs.readFileSync(files[2], 'utf8');
    expect(metrics).toContain('a&lt;b&amp;c');
    expect(metrics).not.toContain('runtime');
    // one point: a range around it, the point in the middle
    expect(fs.readFileSync(files[1], 'utf8')).toMatch(/<circle cx="380\.0" cy="187\.0"/);
  });

  it('draws a long run, without marks', async () => {
    // more points than a spread into Math.min takes
    const n = 300000;
    const history = Array.from({ length: n }, (_, i) => ({ step: i + 1, loss: 3 / (1 + i / 500), learning_rate: 1e-4 * (1 - i / n) }));
    const dir = tmpdir();
    const files = await writePlots(dir, history);
    const loss = fs.readFileSync(files[0], 'utf8');
    expect(loss).not.toContain('<circle');
    const line = loss.match(/d="(M[^"]*)" fill="none"/)![1];
    expect(line.split('L').length).toBe(n);
  });
});
