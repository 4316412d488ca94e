/**
 * Plots as SVG files: the learning curves written directly as SVG text, the confusion matrix and the
 * emotion timeline rendered by Apache ECharts' server-side SVG renderer (pure JavaScript; no
 * browser, canvas or DOM).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { LogRecord } from './callbacks';

type Series = { name: string; points: Array<[number, number]> };

/** An ECharts option rendered to an SVG string on a white background, without animation. */
function render(width: number, height: number, option: Record<string, unknown>): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- ECharts (large) is loaded only when a plot is drawn
  const echarts = require('echarts') as typeof import('echarts');
  const c = echarts.init(null as unknown as Parameters<typeof echarts.init>[0], null, { renderer: 'svg', ssr: true, width, height });
  c.setOption({ animation: false, backgroundColor: '#ffffff', ...option });
  const svg = c.renderToSVGString();
  c.dispose();
  return svg;
}

// ECharts' default palette, in its order
const COLORS = ['#5470c6', '#91cc75', '#fac858', '#ee6666', '#73c0de', '#3ba272', '#fc8452', '#9a60b4', '#ea7ccc'];

const escapeXml = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Round ticks covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `count` of them. @internal */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  // a span too small for round ticks at this magnitude (or none): a range around the values
  if (!(hi - lo > Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9)) {
    const mid = (lo + hi) / 2,
      pad = mid === 0 ? 1 : Math.abs(mid) * 0.1;
    [lo, hi] = [mid - pad, mid + pad];
  }
  const raw = (hi - lo) / count,
    mag = 10 ** Math.floor(Math.log10(raw)),
    f = raw / mag;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  for (let k = Math.floor(lo / step); k * step <= hi + step * 1e-9 && ticks.length < 4 * count; k++) ticks.push(Number((k * step).toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

const tickLabel = (v: number): string =>
  v === 0 ? '0' : Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3 ? v.toExponential(1).replace('.0e', 'e') : String(Number(v.toPrecision(6)));

/**
 * A learning curve as SVG, written directly (it is written at the end of every train() call and
 * after each evaluation: ECharts took about 15 ms for the two of a short run, a line chart as text
 * well under 1 ms): title, legend, axes with round ticks and grid lines, one line per series, its
 * points marked when there are fewer than 30.
 */
function chart(title: string, yName: string, series: Series[]): string {
  const W = 720,
    H = 360,
    left = 70,
    right = 30,
    top = 64,
    bottom = 50;
  // the ranges by a loop: a run logs millions of points, too many for Math.min's arguments
  const lo = [Infinity, Infinity],
    hi = [-Infinity, -Infinity];
  for (const s of series) {
    for (const p of s.points) {
      for (const d of [0, 1]) [lo[d], hi[d]] = [Math.min(lo[d], p[d]), Math.max(hi[d], p[d])];
    }
  }
  const xs = niceTicks(lo[0], hi[0]),
    ys = niceTicks(lo[1], hi[1]);
  const [x0, x1, y0, y1] = [xs[0], xs[xs.length - 1], ys[0], ys[ys.length - 1]];
  const px = (x: number) => (left + ((x - x0) / (x1 - x0)) * (W - left - right)).toFixed(1);
  const py = (y: number) => (H - bottom - ((y - y0) / (y1 - y0)) * (H - top - bottom)).toFixed(1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold" fill="#464646">${escapeXml(title)}</text>`,
  ];
  // legend: centered, a short line and the name per series (names measured at about 7 px a character)
  const widths = series.map((s) => 36 + 7 * s.name.length);
  let lx = (W - widths.reduce((a, b) => a + b, 0)) / 2;
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    out.push(
      `<path d="M${lx.toFixed(1)} 38H${(lx + 22).toFixed(1)}" stroke="${c}" stroke-width="2"/>`,
      `<text x="${(lx + 27).toFixed(1)}" y="42" fill="#333">${escapeXml(s.name)}</text>`,
    );
    lx += widths[i];
  });
  for (const y of ys) {
    out.push(
      `<path d="M${left} ${py(y)}H${W - right}" stroke="#e0e6f1"/>`,
      `<text x="${left - 8}" y="${py(y)}" dy="4" text-anchor="end" fill="#6e7079">${tickLabel(y)}</text>`,
    );
  }
  for (const x of xs) out.push(`<text x="${px(x)}" y="${H - bottom + 18}" text-anchor="middle" fill="#6e7079">${tickLabel(x)}</text>`);
  out.push(
    `<path d="M${left} ${H - bottom}H${W - right}" stroke="#6e7079"/>`,
    `<text x="${(left + W - right) / 2}" y="${H - bottom + 38}" text-anchor="middle" fill="#6e7079">step</text>`,
    `<text x="${left}" y="${top - 8}" text-anchor="middle" fill="#6e7079">${escapeXml(yName)}</text>`,
  );
  series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    out.push(
      `<path d="${pts.map((p, k) => `${k ? 'L' : 'M'}${px(p[0])} ${py(p[1])}`).join('')}" fill="none" stroke="${c}" stroke-width="2" stroke-linejoin="round"/>`,
    );
    if (pts.length < 30) for (const p of pts) out.push(`<circle cx="${px(p[0])}" cy="${py(p[1])}" r="2.5" fill="#ffffff" stroke="${c}" stroke-width="1.5"/>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

const SKIP = /(_runtime|_samples_per_second|_steps_per_second|^epoch$|^step$)/;

/**
 * Writes the learning curves of a log history into `dir`: `plot_loss.svg` (train and eval loss),
 * `plot_learning_rate.svg`, and `plot_metrics.svg` (every other eval metric) when there are any.
 * Returns the files written.
 */
export async function writePlots(dir: string, history: LogRecord[]): Promise<string[]> {
  const pick = (key: string): Array<[number, number]> =>
    history.filter((r) => typeof r[key] === 'number' && Number.isFinite(r[key])).map((r) => [r.step, r[key]]);
  const files: Array<[string, string]> = [];
  const loss = [
    { name: 'train loss', points: pick('loss') },
    { name: 'eval loss', points: pick('eval_loss') },
  ].filter((s) => s.points.length);
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
    visualMap: {
      min: 0,
      max: 1,
      dimension: 2,
      calculable: false,
      orient: 'vertical',
      right: 10,
      top: 'middle',
      text: ['row share 1', '0'],
      inRange: { color: ['#f7fbff', '#08306b'] },
    },
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
    series: [
      {
        type: 'line',
        step: 'middle',
        data: emotions.map((e, i) => [i, rows.indexOf(e)]),
        symbolSize: 10,
        label: { show: true, position: 'top', formatter: (p: { dataIndex: number }) => emotions[p.dataIndex] },
      },
    ],
  });
}
