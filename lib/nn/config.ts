/**
 * One declaration per model config (DESIGN rule 12): each field once, with its check, its default
 * (or none: required), its JSDoc and how it crosses to C++. The config's type, its defaults, its
 * checks, the object sent to the native model and the field list a test compares with the C++
 * declaration (`native/models/<model>.h`) all come from it. A model's `create` resolves a config
 * with {@link resolve}; {@link ConfiguredModule} sends {@link wireOf} it and locks it.
 * See docs/adding-a-model.md.
 */
import { invalid } from '../errors';
import { NativeModule, checkModuleOptions, lockConfig } from './module';
import type { ModuleOptions } from './module';

/**
 * The check of a config field: `int` any integer (token ids), `nonneg` an integer ≥ 0 (layer
 * counts), `posint` an integer ≥ 1 (sizes), `number` finite, `posnum` finite and > 0 (eps, rope
 * theta), `nonnegnum` finite and ≥ 0 (init std), `prob` in [0, 1], `act` an activation name,
 * `bool`, `string`, or `any` (checked by the declaration's `check`).
 */
export type Check = 'int' | 'nonneg' | 'posint' | 'number' | 'posnum' | 'nonnegnum' | 'prob' | 'bool' | 'string' | 'act' | 'any';

/**
 * How a field crosses to C++ (the `ConfigReader` getter that reads it): 'i64', 'f64', 'bool',
 * 'str', 'i64[]', 'f64[]', 'config' (a nested declaration), or 'host': TypeScript reads it, the
 * native model does not (it is not sent).
 */
export type Wire = 'i64' | 'f64' | 'bool' | 'str' | 'i64[]' | 'f64[]' | 'config' | 'host';

/** Whether a field has a default, must be given, may be left out, or is derived from others (not given). */
export type Presence = 'default' | 'required' | 'optional' | 'derived';

/** A derived or re-sent field's value, from the resolved config and the create options (`ctx`). */
type Send = (config: never, ctx: never) => unknown;

/** One field of a declaration (made by {@link f}). */
export class Field<T = unknown, P extends Presence = Presence> {
  /** The value a config that leaves the field out takes (presence 'default'). */
  readonly default?: T;
  constructor(
    readonly check: Check,
    readonly wire: Wire,
    readonly presence: P,
    d?: T,
    /** The nested declaration of a 'config' field. */
    readonly nested?: ConfigDecl,
    /** The value sent instead of the config's own (CLIP's projection_dim without a projection). */
    readonly send?: Send,
  ) {
    this.default = d;
  }
  /** The field, read by TypeScript only: not sent to the native model. */
  host(): Field<T, P> {
    return new Field(this.check, 'host', this.presence, this.default, this.nested, this.send);
  }
  /** The field, sent as `fn(config, ctx)` instead of its own value. */
  sends<C, X>(fn: (config: C, ctx: X) => unknown): Field<T, P> {
    return new Field(this.check, this.wire, this.presence, this.default, this.nested, fn as Send);
  }
  /** The field without a default: left out, it stays out of the config. */
  optional(): Field<T, 'optional'> {
    return new Field<T, 'optional'>(this.check, this.wire, 'optional', undefined, this.nested, this.send);
  }
}

interface Builder<T> {
  /** A required field (no default). */
  (): Field<T, 'required'>;
  /** A field with this default. */
  (d: T): Field<T, 'default'>;
}
const make = <T>(check: Check, wire: Wire): Builder<T> => ((...d: [T?]) => new Field<T>(check, wire, d.length ? 'default' : 'required', d[0])) as Builder<T>;

/** The field builders, one per check: `f.posint(768)` (default 768), `f.posint()` (required). */
export const f = {
  int: make<number>('int', 'i64'),
  nonneg: make<number>('nonneg', 'i64'),
  posint: make<number>('posint', 'i64'),
  number: make<number>('number', 'f64'),
  posnum: make<number>('posnum', 'f64'),
  nonnegnum: make<number>('nonnegnum', 'f64'),
  prob: make<number>('prob', 'f64'),
  bool: make<boolean>('bool', 'bool'),
  string: make<string>('string', 'str'),
  act: make<string>('act', 'str'),
  /** A list of integers (checked by the declaration's `check`). */
  ints: make<number[]>('any', 'i64[]'),
  /** A list of numbers (checked by the declaration's `check`). */
  nums: make<number[]>('any', 'f64[]'),
  /** A value of another shape, sent as `wire` (checked by the declaration's `check`). */
  any: <T>(wire: Wire, d: T): Field<T, 'default'> => new Field<T, 'default'>('any', wire, 'default', d),
  /** A nested config (CLIP's text_config): given partly, resolved by the declaration's `check`. */
  config: <D extends ConfigDecl>(nested: D): Field<ConfigOf<D>, 'default'> =>
    new Field<ConfigOf<D>, 'default'>('any', 'config', 'default', {} as ConfigOf<D>, nested),
  /** A field the native model reads that is no config field: computed from the config and the create options. */
  derived: <C, X = object>(wire: Wire, fn: (config: C, ctx: X) => unknown): Field<unknown, 'derived'> =>
    new Field<unknown, 'derived'>('any', wire, 'derived', undefined, undefined, fn as Send),
};

/** The fields of a declaration. */
export type Fields = Record<string, Field<unknown, Presence>>;

type ValueOf<X> = X extends Field<infer T, Presence> ? T : never;
type FieldsOf<D> = D extends ConfigDecl<infer F> ? F : D;
type Keys<F, P extends Presence> = { [K in keyof F]: F[K] extends Field<unknown, P> ? K : never }[keyof F];

/**
 * A resolved config of a declaration (or of its fields): every field with a value (the optional
 * ones when given), derived ones left out. A homomorphic mapping: each field's JSDoc carries over.
 */
export type ConfigOf<D> = { -readonly [K in keyof FieldsOf<D> as K extends Keys<FieldsOf<D>, 'optional' | 'derived'> ? never : K]: ValueOf<FieldsOf<D>[K]> } & {
  -readonly [K in keyof FieldsOf<D> as K extends Keys<FieldsOf<D>, 'optional'> ? K : never]?: ValueOf<FieldsOf<D>[K]>;
};

/** A config as `create` takes it: the required fields, and any others (nested configs partly). */
export type GivenOf<D> = { -readonly [K in keyof FieldsOf<D> as K extends Keys<FieldsOf<D>, 'required'> ? K : never]: ValueOf<FieldsOf<D>[K]> } & {
  -readonly [K in keyof FieldsOf<D> as K extends Keys<FieldsOf<D>, 'default' | 'optional'> ? K : never]?: GivenValue<ValueOf<FieldsOf<D>[K]>>;
};
type GivenValue<T> = T extends unknown[] ? T : T extends object ? Partial<T> : T;

/** One model config's declaration ({@link declareConfig}). */
export interface ConfigDecl<F extends Fields = Fields> {
  /** The model's name in messages: 'LLaMA' gives `LLaMA config.vocab_size`. */
  readonly name: string;
  /** The name of the locked config and of `fromPretrained`'s overrides, where it differs ('QFormer'). */
  readonly title: string;
  /** The native kind it builds ('llama', 'whisper_encoder', …). */
  readonly kind: string;
  readonly fields: F;
  /** Field names in messages without `<name> config.` (the layers': `in_features`). */
  readonly bare?: boolean;
  /** Options of `create` beyond `device` and `dtype` that shape the config (RoBERTa's `addPoolingLayer`). */
  readonly options?: readonly string[];
  /** A checkpoint's config.json as these fields (LLaMA's rope settings flattened, …). */
  readonly normalize: (raw: Record<string, unknown>) => Record<string, unknown>;
  /** Checks across fields (and completes derived values), after each field's own check. */
  check?(config: ConfigOf<F>, given: Record<string, unknown>, opts: Record<string, unknown>): void;
}

const KINDS = new Map<string, ConfigDecl>();

/**
 * Declares a model's config once and registers it under its native kind.
 * @param d name, native kind, fields (with JSDoc), and the `normalize` / `check` hooks
 * @returns the declaration
 * @throws Error when the kind is declared twice
 */
export function declareConfig<F extends Fields>(d: {
  name: string;
  title?: string;
  kind: string;
  fields: F;
  bare?: boolean;
  options?: readonly string[];
  normalize?: (raw: Record<string, unknown>) => Record<string, unknown>;
  check?: (config: ConfigOf<F>, given: Record<string, unknown>, opts: Record<string, unknown>) => void;
}): ConfigDecl<F> {
  if (KINDS.has(d.kind)) throw new Error(`config kind '${d.kind}' is declared twice`);
  const decl: ConfigDecl<F> = { ...d, title: d.title ?? d.name, normalize: d.normalize ?? ((raw) => raw) };
  KINDS.set(d.kind, decl as unknown as ConfigDecl);
  return decl;
}

/** A declaration like `base` for another native kind, with more fields (RobertaLayers' `num_layers`). */
export function extendConfig<F extends Fields, G extends Fields>(base: ConfigDecl<F>, kind: string, fields: G): ConfigDecl<F & G> {
  return declareConfig({ ...base, kind, fields: { ...base.fields, ...fields }, check: undefined });
}

/** Activation names the native layers implement (HF `ACT2FN` aliases are mapped onto them). */
export const ACTIVATIONS = ['relu', 'gelu', 'quick_gelu', 'gelu_tanh', 'tanh', 'silu', 'sigmoid', 'identity'] as const;
const ACT_ALIASES: Record<string, string> = { swish: 'silu', gelu_new: 'gelu_tanh', gelu_pytorch_tanh: 'gelu_tanh', linear: 'identity' };

const CHECK_TEXT: Record<string, string> = {
  int: 'an integer',
  nonneg: 'a non-negative integer',
  posint: 'a positive integer',
  number: 'a finite number',
  posnum: 'a positive finite number',
  nonnegnum: 'a non-negative finite number',
  prob: 'a number in [0, 1]',
  bool: 'a boolean',
  string: 'a string',
  act: `one of ${[...ACTIVATIONS, ...Object.keys(ACT_ALIASES)].map((a) => `'${a}'`).join(', ')}`,
};

function fits(check: string, v: unknown): boolean {
  const num = typeof v === 'number' && Number.isFinite(v);
  switch (check) {
    case 'int':
      return Number.isSafeInteger(v);
    case 'nonneg':
      return Number.isSafeInteger(v) && (v as number) >= 0;
    case 'posint':
      return Number.isSafeInteger(v) && (v as number) > 0;
    case 'number':
      return num;
    case 'posnum':
      return num && (v as number) > 0;
    case 'nonnegnum':
      return num && (v as number) >= 0;
    case 'prob':
      return num && (v as number) >= 0 && (v as number) <= 1;
    case 'bool':
      return typeof v === 'boolean';
    case 'string':
      return typeof v === 'string';
    case 'act':
      return typeof v === 'string' && ((ACTIVATIONS as readonly string[]).includes(v) || v in ACT_ALIASES);
    default:
      return true;
  }
}

/**
 * A given value checked against its field's check: activation aliases normalized (`swish` →
 * `silu`), arrays copied (one read from a model's locked config is a Proxy, which N-API does not
 * see as an array). @internal
 * @throws EmotorchError ERR_INVALID_ARG naming `label`
 */
export function checkValue(check: string, v: unknown, label: string): unknown {
  if (!fits(check, v)) invalid(CHECK_TEXT[check] ?? 'a value', label, v);
  return check === 'act' ? (ACT_ALIASES[v as string] ?? v) : Array.isArray(v) ? [...v] : v;
}

/**
 * A fully defaulted, checked config: each field from `given` (HF config.json names; undefined and
 * null count as not given) or its default, checked; names the declaration does not have are
 * ignored; then the declaration's `check` with the create options.
 * @throws EmotorchError ERR_INVALID_ARG naming the field
 */
export function resolve<F extends Fields>(decl: ConfigDecl<F>, given: unknown, opts: object = {}): ConfigOf<F> {
  if (!given || typeof given !== 'object' || Array.isArray(given)) invalid('a config object', `${decl.name} config`, given);
  const g = given as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, field] of Object.entries(decl.fields)) {
    const label = decl.bare ? k : `${decl.name} config.${k}`;
    const v = g[k];
    if (field.presence === 'derived') continue;
    if (v !== undefined && v !== null) out[k] = checkValue(field.check, v, label);
    else if (field.presence === 'default') out[k] = field.default;
    // a required 'any' field is the declaration's check's to name
    else if (field.presence === 'required' && field.check !== 'any') invalid(CHECK_TEXT[field.check], label, v);
  }
  decl.check?.(out as ConfigOf<F>, g, opts as Record<string, unknown>);
  return out as ConfigOf<F>;
}

/**
 * The check of each field of a config `C` (`int`, `nonneg`, `posint`, `number`, `posnum`,
 * `nonnegnum`, `prob`, `act`, `bool`, `string`, `any`): a model's comes from its declaration
 * ({@link specOf}); `resolveConfig` and `withOverrides` take one for configs that are not a
 * model's (a system's extra fields).
 */
export type ConfigSpec<C> = {
  [K in keyof C]: C[K] extends number
    ? 'int' | 'nonneg' | 'posint' | 'number' | 'posnum' | 'nonnegnum' | 'prob'
    : C[K] extends boolean
      ? 'bool'
      : C[K] extends string
        ? 'string' | 'act'
        : 'any';
};

/** Each given field's check ({@link resolve}'s), as a {@link ConfigSpec}. */
export function specOf<F extends Fields>(decl: ConfigDecl<F>): ConfigSpec<ConfigOf<F>> {
  const given = Object.entries(decl.fields).filter(([, field]) => field.presence !== 'derived');
  return Object.fromEntries(given.map(([k, field]) => [k, field.check])) as ConfigSpec<ConfigOf<F>>;
}

/** The defaults of a declaration's fields (those that have one). */
export function defaultsOf<F extends Fields>(decl: ConfigDecl<F>): ConfigOf<F> {
  return Object.fromEntries(
    Object.entries(decl.fields)
      .filter(([, field]) => field.presence === 'default')
      .map(([k, field]) => [k, field.default]),
  ) as ConfigOf<F>;
}

/** What crosses the bridge for a resolved config: its sent fields, derived ones computed (`ctx`: the create options). */
export function wireOf(decl: ConfigDecl, config: object, ctx: object = {}): Record<string, unknown> {
  const c = config as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, field] of Object.entries(decl.fields)) {
    if (field.wire === 'host') continue;
    const v = field.send ? (field.send as (config: object, ctx: object) => unknown)(c, ctx) : c[k];
    out[k] = field.wire === 'config' && v && typeof v === 'object' ? wireOf(field.nested!, v) : v;
  }
  return out;
}

/** One field as it crosses the bridge: name, wire type, the value sent by default (absent: required), nested fields. */
export interface WireField {
  name: string;
  type: Exclude<Wire, 'host'>;
  default?: unknown;
  fields?: WireField[];
}

/**
 * The fields a declaration sends, with the values `create({})` sends ({@link wireOf} of the
 * resolved defaults: derived fields and the check's completions included); a required field has
 * no default (where `create({})` fails, the declared defaults are sent).
 */
export function wireFields(decl: ConfigDecl): WireField[] {
  let config: object = defaultsOf(decl);
  try {
    config = resolve(decl, {});
  } catch {
    /* required fields (the layers', the projector's widths): the declared defaults */
  }
  const sent = wireOf(decl, config);
  return Object.entries(decl.fields)
    .filter(([, field]) => field.wire !== 'host')
    .map(([name, field]) => {
      const w: WireField = { name, type: field.wire as WireField['type'] };
      if (sent[name] !== undefined) w.default = sent[name];
      if (field.nested) w.fields = wireFields(field.nested);
      return w;
    });
}

/**
 * Every declared native kind and its declaration (registered as the model files load: import
 * `lib/index` first). For the test that compares each with its C++ field list.
 */
export function configKinds(): ReadonlyMap<string, ConfigDecl> {
  return KINDS;
}

/**
 * A native module built from a declared config: its constructor checks the create options
 * (`<Class>.create` in messages: `device`, `dtype` and the declaration's `options`), resolves the
 * config ({@link resolve}), sends {@link wireOf} it (derived fields from the options) and locks it
 * as `model.config`.
 */
export abstract class ConfiguredModule<C extends object> extends NativeModule {
  declare readonly config: C;
  protected constructor(decl: ConfigDecl, given: unknown, opts: ModuleOptions = {}) {
    const o = checkModuleOptions(opts, `${new.target.name}.create`, decl.options);
    const config = resolve(decl, given, o);
    super(decl.kind, wireOf(decl, config, o), o);
    lockConfig(this, decl.title, config);
  }
}
