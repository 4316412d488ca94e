/**
 * The op profiler: libtorch's own (Kineto, CPU activity), the one `torch.profiler.profile(
 * activities=[ProfilerActivity.CPU])` runs in Python, so a step's breakdown here and in PyTorch can
 * be read side by side (`npm run bench -- … --ops` prints both).
 * @module
 */
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import { profilerStart, profilerStop } from '../runtime';

/** One op call as the profiler recorded it. */
export interface ProfileEvent {
  /** The op's name, as torch.profiler names it (`aten::addmm`, `mkldnn::_linear_pointwise`, …). */
  name: string;
  /** Its input shapes (`[[4, 768], [768, 768]]`), when `recordShapes` was on; else ''. */
  shapes: string;
  /** When it started (ns, on the profiler's clock). */
  startNs: number;
  /** How long it ran (ns), the ops it called included. */
  durationNs: number;
  /** The id of the thread that called it. */
  thread: number;
  /** Its own time: the duration less that of the ops it called (ns). */
  selfNs: number;
}

/** The calls of one op name (and shapes, when grouped by them), added up. */
export interface OpStats {
  /** The op's name. */
  name: string;
  /** The shapes these calls had, when grouped by shapes; else ''. */
  shapes: string;
  /** How many calls were added up. */
  calls: number;
  /** Time in the op itself, in milliseconds (torch.profiler's "Self CPU"). */
  selfMs: number;
  /** Time in the op and the ops it called, in milliseconds ("CPU total"). */
  totalMs: number;
}

/** Options of {@link ProfileResult.keyAverages} and {@link ProfileResult.table}. */
export interface KeyAverageOptions {
  /** Group by input shapes too (needs `recordShapes`; torch's `group_by_input_shape`). Default false. */
  groupByShapes?: boolean;
}

/** Options of {@link ProfileResult.table}. */
export interface TableOptions extends KeyAverageOptions {
  /** 'self' (default) or 'total'. */
  sortBy?: 'self' | 'total';
  /** The most rows (default 20). */
  rowLimit?: number;
}

/** What {@link stop} returns: the op calls, and their sums as torch.profiler's key_averages. */
export class ProfileResult {
  /** Every op call, in start order. */
  readonly events: readonly ProfileEvent[];

  /** @internal */
  constructor(events: ProfileEvent[]) {
    this.events = events;
  }

  /** The sum of the top-level ops' time: torch.profiler's "Self CPU time total" (ms). */
  get totalMs(): number {
    return this.events.reduce((s, e) => s + e.selfNs, 0) / 1e6;
  }

  /**
   * Calls, self and total time per op name (and shapes), largest self time first.
   */
  keyAverages(opts: KeyAverageOptions = {}): OpStats[] {
    checkOptionNames(opts, ['groupByShapes'], 'keyAverages options');
    const by = new Map<string, OpStats>();
    for (const e of this.events) {
      const shapes = opts.groupByShapes ? e.shapes : '';
      const key = `${e.name}\u0000${shapes}`;
      let s = by.get(key);
      if (!s) by.set(key, (s = { name: e.name, shapes, calls: 0, selfMs: 0, totalMs: 0 }));
      s.calls++;
      s.selfMs += e.selfNs / 1e6;
      s.totalMs += e.durationNs / 1e6;
    }
    return [...by.values()].sort((a, b) => b.selfMs - a.selfMs);
  }

  /** The sums as a text table, like torch.profiler's `key_averages().table()`. */
  table(opts: TableOptions = {}): string {
    checkOptionNames(opts, ['groupByShapes', 'sortBy', 'rowLimit'], 'table options');
    const sortBy = opts.sortBy ?? 'self';
    if (sortBy !== 'self' && sortBy !== 'total') invalid("'self' or 'total'", 'sortBy', sortBy);
    const limit = opts.rowLimit ?? 20;
    if (!Number.isInteger(limit) || limit < 1) invalid('a positive integer', 'rowLimit', limit);
    const rows = this.keyAverages({ groupByShapes: opts.groupByShapes }).sort((a, b) => (sortBy === 'self' ? b.selfMs - a.selfMs : b.totalMs - a.totalMs));
    const total = this.totalMs || 1;
    const w = Math.max(4, ...rows.slice(0, limit).map((r) => r.name.length));
    const head = `${'Name'.padStart(w)}  ${'Self ms'.padStart(10)}  ${'Self %'.padStart(7)}  ${'Total ms'.padStart(10)}  ${'Calls'.padStart(7)}${opts.groupByShapes ? '  Input shapes' : ''}`;
    const lines = rows
      .slice(0, limit)
      .map(
        (r) =>
          `${r.name.padStart(w)}  ${r.selfMs.toFixed(3).padStart(10)}  ${((100 * r.selfMs) / total).toFixed(2).padStart(6)}%  ${r.totalMs.toFixed(3).padStart(10)}  ${String(r.calls).padStart(7)}${opts.groupByShapes ? `  ${r.shapes}` : ''}`,
      );
    const rule = '-'.repeat(head.length);
    return [rule, head, rule, ...lines, rule, `Self CPU time total: ${this.totalMs.toFixed(3)} ms`].join('\n');
  }
}

/** Options of {@link start}. */
export interface ProfilerStartOptions {
  /** Record each op's input shapes (torch's `record_shapes`). Default false. */
  recordShapes?: boolean;
}

/** Options of {@link stop}. */
export interface ProfilerStopOptions {
  /** Also write the chrome trace (chrome://tracing, Perfetto) to this file, as torch's `export_chrome_trace`. */
  tracePath?: string;
}

/**
 * Starts recording every op that heavy calls run (forward, backward, optimizer steps, features),
 * from the calls made after this one. One profile at a time.
 * @throws EmotorchError ERR_PROFILER_STATE when it is already running; ERR_INVALID_ARG for a bad option
 * @example
 * await et.profiler.start();
 * await step();
 * console.log((await et.profiler.stop()).table({ rowLimit: 15 }));
 */
export async function start(opts: ProfilerStartOptions = {}): Promise<void> {
  if (!opts || typeof opts !== 'object') invalid('an object { recordShapes? }', 'profiler start options', opts);
  checkOptionNames(opts, ['recordShapes'], 'profiler start options');
  if (opts.recordShapes !== undefined && typeof opts.recordShapes !== 'boolean') invalid('a boolean', 'recordShapes', opts.recordShapes);
  await profilerStart(opts.recordShapes ?? false);
}

/**
 * Stops the profiler once the calls made before this one have run, and returns what it recorded.
 * @throws EmotorchError ERR_PROFILER_STATE when it is not running; ERR_IO when `tracePath` cannot be
 *   written (the profiler is stopped all the same); ERR_INVALID_ARG for a bad option
 */
export async function stop(opts: ProfilerStopOptions = {}): Promise<ProfileResult> {
  if (!opts || typeof opts !== 'object') invalid('an object { tracePath? }', 'profiler stop options', opts);
  checkOptionNames(opts, ['tracePath'], 'profiler stop options');
  let trace = '';
  if (opts.tracePath !== undefined) {
    if (typeof opts.tracePath !== 'string' || !opts.tracePath) invalid('a file path', 'tracePath', opts.tracePath);
    trace = path.resolve(opts.tracePath);
    try {
      fs.writeFileSync(trace, ''); // libtorch only logs a trace it cannot write: find out here
    } catch (e) {
      await profilerStop(''); // stop anyway, so the profiler is not left running
      throw new EmotorchError(`cannot write the profiler trace to ${trace}: ${(e as Error).message}`, 'ERR_IO');
    }
  }
  const raw = await profilerStop(trace);
  return new ProfileResult(withSelfTime(raw));
}

/**
 * Runs `fn` under the profiler and returns its value with the profile.
 * @example
 * const { profile } = await et.profiler.profile(() => model.forward(batch));
 * console.log(profile.table());
 */
export async function profile<T>(
  fn: () => Promise<T> | T,
  opts: ProfilerStartOptions & ProfilerStopOptions = {},
): Promise<{ value: T; profile: ProfileResult }> {
  if (typeof fn !== 'function') invalid('a function', 'fn', fn);
  checkOptionNames(opts, ['recordShapes', 'tracePath'], 'profile options');
  const { tracePath, ...startOpts } = opts ?? {};
  await start(startOpts);
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    await profilerStop('').catch(() => undefined);
    throw e;
  }
  return { value, profile: await stop(tracePath === undefined ? {} : { tracePath }) };
}

/** Self time of each event: its duration less its direct children's, nesting found per thread. */
function withSelfTime(raw: { names: string[]; shapes: string[]; start: Float64Array; duration: Float64Array; thread: Float64Array }): ProfileEvent[] {
  const events: ProfileEvent[] = raw.names.map((name, i) => ({
    name,
    shapes: raw.shapes[i],
    startNs: raw.start[i],
    durationNs: raw.duration[i],
    thread: raw.thread[i],
    selfNs: raw.duration[i],
  }));
  // start order; a parent before the child that starts with it (the longer first)
  events.sort((a, b) => a.startNs - b.startNs || b.durationNs - a.durationNs);
  const open = new Map<number, ProfileEvent[]>();
  for (const e of events) {
    let stack = open.get(e.thread);
    if (!stack) open.set(e.thread, (stack = []));
    while (stack.length && stack[stack.length - 1].startNs + stack[stack.length - 1].durationNs <= e.startNs) stack.pop();
    const parent = stack[stack.length - 1];
    if (parent) parent.selfNs -= e.durationNs;
    stack.push(e);
  }
  for (const e of events) if (e.selfNs < 0) e.selfNs = 0; // clock rounding
  return events;
}
