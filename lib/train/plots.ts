/**
 * Learning-curve plots as SVG files, rendered by Apache ECharts' server-side SVG renderer (pure
 * JavaScript; no browser, canvas or DOM).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { LogRecord } from './callbacks';

type Series = { name: string; points: Array<[number, number]> };

/** An ECharts option rendered to an SVG string on a white background, without animation. */
function render(width: number, height: number, option: Record<string, unknown>): string {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const echarts = require('echarts') as typeof import('echarts');
  const c = echarts.init(null as unknown as Parameters<typeof echarts.init>[0], null, { renderer: 'svg', ssr: true, width, height });
  c.setOption({ animation: false, backgroundColor: '#ffffff', ...option });
  const svg = c.renderToSVGString();
  c.dispose();
  return svg;
}

function chart(title: string, yName: string, series: Series[], logY = false): string {
  return render(720, 360, {
    title: { text: title, left: 'center', textStyle: { fontSize: 14 } },
    legend: { top: 26 },
    grid: { left: 70, right: 30, top: 64, bottom: 50 },
    xAxis: { type: 'value', name: 'step', nameLocation: 'middle', nameGap: 28, minInterval: 1 },
    yAxis: { type: logY ? 'log' : 'value', name: yName, scale: true },
    series: series.map((s) => ({ name: s.name, type: 'line', data: s.points, showSymbol: s.points.length < 30, symbolSize: 5 })),
  });
}

const SKIP = /(_runtime|_samples_per_second|_steps_per_second|^epoch$|^step$)/;

/**
 * Writes the learning curves of a log history into `dir`: `plot_loss.svg` (train and eval loss),
 * `plot_learning_rate.svg`, and `plot_metrics.svg` (every other eval metric) when there are any.
 * Returns the files written.
 */
export async function writePlots(dir: string, history: LogRecord[]): Promise<string[]> {
  const pick = (key: string): Array<[number, number]> => history.filter((r) => typeof r[key] === 'number' && Number.isFinite(r[key])).map((r) => [r.step, r[key]]);
  const files: Array<[string, string]> = [];
  const loss = [{ name: 'train loss', points: pick('loss') }, { name: 'eval loss', points: pick('eval_loss') }].filter((s) => s.points.length);
  if (loss.length) files.push(['plot_loss.svg', chart('Loss', 'loss', loss)]);
  const lr = pick('learning_rate');
  if (lr.length) files.push(['plot_learning_rate.svg', chart('Learning rate', 'lr', [{ name: 'learning rate', points: lr }])]);
  const metricKeys = [...new Set(history.flatMap((r) => Object.keys(r)))].filter((k) => k.startsWith('eval_') && k !== 'eval_loss' && !SKIP.test(k)).sort();
  const metrics = metricKeys.map((k) => ({ name: k.slice(5), points: pick(k) })).filter((s) => s.points.length);
  if (metrics.length) files.push(['plot_metrics.svg', chart('Evaluation metrics', 'value', metrics)]);
  const out: string[] = [];
  for (const [name, svg] of files) {
    const p = path.join(dir, name);
    const tmp = `${p}.tmp-${process.pid}`;
    await fs.promises.writeFile(tmp, svg);
    await fs.promises.rename(tmp, p);
    out.push(p);
  }
  return out;
}

/**
 * A confusion matrix as an SVG heatmap (rows: true class, columns: predicted), each cell's count
 * written in it; the colour scale is the row's share, so rare classes read as well as common ones.
 * @param matrix matrix[i][j]: samples of true class i predicted as j
 * @param names the classes' names, in matrix order
 */
export function confusionMatrixSvg(matrix: number[][], names: string[], title: string): string {
  const n = names.length;
  const side = Math.max(360, Math.min(1200, 120 + 48 * n));
  const data: Array<[number, number, number, number]> = [];
  matrix.forEach((row, i) => {
    const total = row.reduce((x, y) => x + y, 0) || 1;
    row.forEach((v, j) => data.push([j, n - 1 - i, v / total, v]));
  });
  return render(side + 80, side, {
    title: { text: title, left: 'center', textStyle: { fontSize: 14 } },
    grid: { left: 110, right: 90, top: 50, bottom: 70 },
    xAxis: { type: 'category', data: names, name: 'predicted', nameLocation: 'middle', nameGap: 45, axisLabel: { rotate: n > 6 ? 45 : 0 } },
    yAxis: { type: 'category', data: [...names].reverse(), name: 'true', nameLocation: 'middle', nameGap: 90 },
    visualMap: { min: 0, max: 1, dimension: 2, calculable: false, orient: 'vertical', right: 10, top: 'middle', text: ['row share 1', '0'], inRange: { color: ['#f7fbff', '#08306b'] } },
    series: [{ type: 'heatmap', data, label: { show: true, formatter: (p: { value: number[] }) => String(p.value[3]) }, emphasis: { disabled: true } }],
  });
}

/**
 * A per-turn emotion timeline as SVG: turn 1 … n along x, each distinct emotion a row (in order of
 * first appearance), the turns joined by a step line with the emotion written at each point.
 * @param emotions one per turn
 * @param title the chart's title
 */
export function emotionTimelineSvg(emotions: readonly string[], title: string): string {
  const rows = [...new Set(emotions)];
  return render(Math.max(480, 140 + 90 * emotions.length), 120 + 40 * rows.length, {
    title: { text: title, left: 'center', textStyle: { fontSize: 14 } },
    grid: { left: 110, right: 40, top: 50, bottom: 50 },
    xAxis: { type: 'category', data: emotions.map((_, i) => `turn ${i + 1}`), boundaryGap: true },
    yAxis: { type: 'category', data: rows, boundaryGap: true },
    series: [{ type: 'line', step: 'middle', data: emotions.map((e, i) => [i, rows.indexOf(e)]), symbolSize: 10, label: { show: true, position: 'top', formatter: (p: { dataIndex: number }) => emotions[p.dataIndex] } }],
  });
}
