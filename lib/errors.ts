/**
 * The one error class emotorch throws, from TypeScript validation and from native code alike.
 * `code` is stable and meant for programs; `message` is meant for people (no C++ backtrace).
 *
 * Codes: ERR_INVALID_ARG (a bad option or argument), ERR_DISPOSED (use after dispose),
 * ERR_TORCH / ERR_INDEX / ERR_VALUE / ERR_TYPE / ERR_NOT_IMPLEMENTED (raised by libtorch),
 * ERR_OUT_OF_MEMORY, ERR_NO_CUDA, ERR_IO (file read or write), ERR_FORMAT (a corrupt or
 * unsupported file), ERR_STATE_DICT (missing, unexpected or wrong-shape keys), ERR_NATIVE.
 */
export class EmotorchError extends Error {
  readonly code: string;
  constructor(message: string, code = 'ERR_TORCH') {
    super(message);
    this.name = 'EmotorchError';
    this.code = code;
  }
}

/** Formats a value for an error message, briefly. */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || v === undefined || typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return v.length > 8 ? `[${v.slice(0, 8).map(show).join(', ')}, …] (length ${v.length})` : `[${v.map(show).join(', ')}]`;
  const name = (v as object).constructor?.name;
  return name && name !== 'Object' ? `a ${name}` : 'an object';
}

/** Throws `Expected <what> for <name> but received <value>` (ERR_INVALID_ARG). */
export function invalid(what: string, name: string, value: unknown): never {
  throw new EmotorchError(`Expected ${what} for ${name} but received ${show(value)}`, 'ERR_INVALID_ARG');
}

export function checkInt(v: unknown, name: string, min = -Infinity): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) invalid(min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : 'an integer', name, v);
  return v;
}

export function checkNumber(v: unknown, name: string, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number' || Number.isNaN(v) || v < min || v > max) {
    const range = min === -Infinity && max === Infinity ? 'a number' : `a number in [${min}, ${max}]`;
    invalid(range, name, v);
  }
  return v;
}

/**
 * Checks an options argument is an object (or undefined) whose names are all known: a misspelt
 * or foreign name (snake_case for a camelCase option, an option of another call) is an
 * ERR_INVALID_ARG naming it, never ignored.
 * @returns the options (`{}` for undefined)
 */
export function checkOptionNames<T extends object>(opts: T | undefined, known: readonly string[], name: string): T {
  if (opts === undefined) return {} as T;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) invalid('an options object', name, opts);
  for (const k of Object.keys(opts)) if (!known.includes(k)) invalid(`one of ${known.join(', ')}`, `an option of ${name}`, k);
  return opts;
}
