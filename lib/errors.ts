/**
 * Every `code` an {@link EmotorchError} can carry, each with what it means: the one documented
 * list (docs/errors.md is kept equal to it by test/misuse/error-codes.test.ts, which also
 * fails when lib/ or native/ uses a code missing here). Programs branch on `code`; the message is
 * for people.
 */
export const ERROR_CODES = {
  ERR_INVALID_ARG: 'a bad argument or option: the message names it, what was expected and what was received',
  ERR_DISPOSED: 'a tensor or module used after dispose()',
  ERR_IO: 'a file or folder that cannot be read or written (missing, not a regular file, too large, no ffmpeg)',
  ERR_FORMAT: 'a file that is corrupt, truncated or in an unsupported format; the message names the file, never quotes it',
  ERR_DATA: 'a dataset item that is malformed (the message names the file and the item); skipBad datasets skip these',
  ERR_STATE_DICT: 'missing, unexpected or wrong-shape state dict keys, each named (with both shapes)',
  ERR_NO_CUDA: 'a CUDA device was asked for where CUDA is not available, or one that does not exist',
  ERR_OUT_OF_MEMORY: 'libtorch (CPU or CUDA), or the in-process video reader, could not allocate memory',
  ERR_TORCH: 'any other libtorch error (c10::Error), its message without the C++ backtrace',
  ERR_INDEX: 'a libtorch IndexError (an index out of range inside a native op)',
  ERR_VALUE: 'a libtorch ValueError',
  ERR_TYPE: 'a libtorch TypeError (a dtype an op does not support)',
  ERR_NOT_IMPLEMENTED: 'a libtorch NotImplementedError (an op without a kernel for this dtype or device)',
  ERR_NATIVE: 'a native failure that is not a libtorch error (a std::exception)',
  ERR_NATIVE_LOAD: 'the native addon or libtorch could not be loaded; the message lists possible solutions',
  ERR_DIST: 'a distributed (c10d) failure without a more precise code',
  ERR_DIST_ENV: 'a missing or malformed launcher variable (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), named',
  ERR_DIST_INIT: 'the process group could not be set up: the rendezvous store was unreachable or ranks never joined (named)',
  ERR_DIST_STATE: 'a distributed call before et.distributed.init(), after destroy(), or init() twice',
  ERR_DIST_BACKEND: "a backend this build does not have ('nccl' without an NCCL build of libtorch)",
  ERR_DIST_ABI: "libtorch's ProcessGroupGloo does not have the layout emotorch was built for: rebuild against this libtorch",
  ERR_DIST_PEER: 'a collective failed or timed out because of another rank, which the message names',
  ERR_DIST_TIMEOUT: 'a collective passed timeoutMs with no single rank to blame',
  ERR_DIST_BROKEN: 'the process group failed earlier and cannot be used again (the first failure is named)',
  ERR_DIST_MISMATCH:
    "the ranks called different collectives (op, shape, dtype or source rank; each rank's call is named); nothing was sent and the group stays usable",
  ERR_DIST_UNUSED: 'DistributedDataParallel: parameters that received no gradient in a backward pass (named)',
  ERR_PROFILER_STATE: 'et.profiler.start() while it runs, or stop() when it does not',
  ERR_ABORTED: "a call stopped by its AbortSignal (generate's `signal`): a client that went away, a request past its time",
  ERR_HUB_NOT_FOUND:
    'a Hugging Face repo, revision or file that the hub does not have (HTTP 404, or 401 RepoNotFound for a repo asked without a token), or that is not cached while downloads are off (HF_HUB_OFFLINE)',
  ERR_HUB_AUTH: 'a gated or private Hugging Face repo (HTTP 401 / 403): no token was found (HF_TOKEN, the token file) or the hub refused it',
  ERR_HUB_NETWORK:
    'the Hugging Face hub could not be reached and the cache has no copy (the endpoint and cache folder tried are named), or a download kept breaking off',
  ERR_HUB_INTEGRITY:
    'a downloaded file whose hash is not the one the hub announced (it is discarded, never kept as a blob), or an ETag that is no blob id (a git sha1 or an LFS sha256)',
} as const;

/** A stable error code: a key of {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The one error class emotorch throws, from TypeScript validation and from native code alike.
 * `code` is stable and meant for programs (one of {@link ERROR_CODES}, exported as
 * `et.errorCodes`); `message` is meant for people (no C++ backtrace).
 */
export class EmotorchError extends Error {
  readonly code: ErrorCode;
  constructor(message: string, code: ErrorCode = 'ERR_TORCH') {
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
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    invalid(min === 0 ? 'a non-negative integer' : min === 1 ? 'a positive integer' : 'an integer', name, v);
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
 * Deprecated spellings of names (old → current). An old spelling stays accepted for one release
 * after a rename (DESIGN rule 11), mapped onto the current name where options and inputs are
 * checked, and marked `@deprecated` in the JSDoc of the type that still declares it.
 */
export type Renames = Readonly<Record<string, string>>;

/**
 * Checks an options argument is an object (or undefined) whose names are all known: a misspelt
 * or foreign name (snake_case for a camelCase option, an option of another call) is an
 * ERR_INVALID_ARG naming it, never ignored. Names in `deprecated` are accepted too and come back
 * under their current names.
 * @param deprecated old spelling → current name (the current name must be in `known`)
 * @returns the options (`{}` for undefined; a copy when a deprecated spelling was mapped)
 */
export function checkOptionNames<T extends object>(opts: T | undefined, known: readonly string[], name: string, deprecated: Renames = {}): T {
  if (opts === undefined) return {} as T;
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) invalid('an options object', name, opts);
  for (const k of Object.keys(opts)) {
    if (!known.includes(k) && !Object.prototype.hasOwnProperty.call(deprecated, k)) invalid(`one of ${known.join(', ')}`, `an option of ${name}`, k);
  }
  return renameDeprecated(opts, deprecated, name);
}

/**
 * Maps the deprecated spellings given in `obj` (options, named inputs, a config) onto their
 * current names: a copy of `obj` with each old name moved to its new one, or `obj` itself when
 * none is given (undefined and null count as not given; so does a non-enumerable property: the
 * deprecated alias {@link withDeprecatedAlias} puts on an output, which may come back as an input).
 * @throws EmotorchError ERR_INVALID_ARG when a name is given in both spellings.
 */
export function renameDeprecated<T extends object>(obj: T, deprecated: Renames, name: string): T {
  let out: Record<string, unknown> | null = null;
  const o = obj as Record<string, unknown>;
  for (const [old, now] of Object.entries(deprecated)) {
    if (!Object.prototype.propertyIsEnumerable.call(o, old) || o[old] === undefined || o[old] === null) continue;
    if (o[now] !== undefined && o[now] !== null) invalid(`${now} or its deprecated spelling ${old}, not both`, name, `both ${now} and ${old}`);
    out ??= { ...o };
    out[now] = out[old];
    delete out[old];
  }
  return (out ?? obj) as T;
}

/**
 * Adds `old` to an output object as a deprecated, read-only and non-enumerable alias of its
 * `now` field, so code written against the old name keeps working for one release while
 * `Object.keys`, `for…in`, spreads and disposal loops see each tensor once, under `now`.
 * @returns `obj`
 */
export function withDeprecatedAlias<T extends object, Old extends string, Now extends keyof T & string>(
  obj: T,
  old: Old,
  now: Now,
): T & { readonly [K in Old]: T[Now] } {
  Object.defineProperty(obj, old, { get: () => obj[now], enumerable: false, configurable: true });
  return obj as T & { readonly [K in Old]: T[Now] };
}
