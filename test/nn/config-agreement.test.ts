import { describe, it, expect, afterEach } from 'vitest';
import * as et from '../../lib/index';
import { binding, NativeConfigField } from '../../lib/native';
import { WireField, configKinds, wireFields } from '../../lib/nn/config';

// Each config is declared once per language: a TypeScript declaration (lib/nn/config.ts's
// declareConfig) and a C++ field list (native/config.h's ET_CONFIG). This test holds the two
// together for every kind the native side registers: the same field names, the same wire types,
// the same defaults (the values `create({})` sends; a field TypeScript requires has none to
// compare). A field added, renamed, retyped or given another default on one side only fails here.

/** JS value of a C++ default: floats printed with 17 digits compare as numbers. */
const same = (a: unknown, b: unknown): boolean =>
  Array.isArray(a) && Array.isArray(b)
    ? a.length === b.length && a.every((x, i) => same(x, b[i]))
    : typeof a === 'number' && typeof b === 'number'
      ? a === b || Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(a))
      : a === b;

function disagreements(kind: string, ts: WireField[], native: NativeConfigField[]): string[] {
  const out: string[] = [];
  const cpp = new Map(native.map((f) => [f.name, f]));
  const mine = new Map(ts.map((f) => [f.name, f]));
  for (const n of cpp.keys()) if (!mine.has(n)) out.push(`${kind}.${n}: declared in C++ only`);
  for (const [n, f] of mine) {
    const c = cpp.get(n);
    if (!c) {
      out.push(`${kind}.${n}: declared in TypeScript only (sent, never read)`);
      continue;
    }
    if (c.type !== f.type) out.push(`${kind}.${n}: type ${f.type} in TypeScript, ${c.type} in C++`);
    else if (f.type === 'config') out.push(...disagreements(`${kind}.${n}`, f.fields ?? [], c.fields ?? []));
    else if ('default' in f && !same(f.default, JSON.parse(c.default)))
      out.push(`${kind}.${n}: default ${JSON.stringify(f.default)} in TypeScript, ${c.default} in C++`);
  }
  return out;
}

/** The wire type of a JS value sent in a config. */
const wireOfValue = (v: unknown): string =>
  typeof v === 'boolean'
    ? 'bool'
    : typeof v === 'string'
      ? 'str'
      : typeof v === 'number'
        ? Number.isInteger(v)
          ? 'i64|f64'
          : 'f64'
        : Array.isArray(v)
          ? v.every((x) => Number.isInteger(x))
            ? 'i64[]|f64[]'
            : 'f64[]'
          : typeof v;

describe('one config declaration per language, and the two agree', () => {
  const native = binding.modelKinds();
  const declared = configKinds();

  it('the native side registers every kind TypeScript declares, and describes each', () => {
    for (const kind of declared.keys()) expect(Object.keys(native), kind).toContain(kind);
    expect(Object.keys(native).length).toBeGreaterThanOrEqual(19);
    for (const [kind, fields] of Object.entries(native)) {
      expect(fields.length, kind).toBeGreaterThan(0);
      for (const f of fields) expect(['i64', 'f64', 'bool', 'str', 'i64[]', 'f64[]', 'config'], `${kind}.${f.name}`).toContain(f.type);
    }
  });

  for (const kind of Object.keys(binding.modelKinds())) {
    const decl = configKinds().get(kind);
    if (!decl) continue;
    it(`${kind}: each field's name, type and default agree`, () => {
      expect(disagreements(kind, wireFields(decl), native[kind])).toEqual([]);
    });
  }

  // The kinds whose config lib/systems or lib/audio builds (SPECTRA's audio encoder, the unit
  // extractor): what their classes send has exactly the C++ fields, each of its wire type.
  const sent: Array<[string, Record<string, unknown>]> = [];
  const create = binding.createModule;
  afterEach(() => {
    binding.createModule = create;
  });
  it('kinds built outside lib/nn send exactly the C++ fields, each of its type', async () => {
    binding.createModule = ((kind: string, config: Record<string, unknown>, ...rest: unknown[]) => {
      sent.push([kind, config]);
      return (create as (...a: unknown[]) => unknown)(kind, config, ...rest);
    }) as typeof create;
    const tiny = {
      hidden_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 32,
      conv_dim: [8, 8],
      conv_kernel: [10, 3],
      conv_stride: [5, 2],
      num_conv_pos_embeddings: 4,
      num_conv_pos_embedding_groups: 2,
    };
    const spectra = et.systems.spectra.Spectra.create({
      audio: tiny,
      text: { vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 40 },
      num_class: 1,
    } as never);
    const encoder = et.nn.Wav2Vec2Model.create(tiny);
    const extractor = new et.audio.UnitExtractor({ encoder, layer: 1, centroids: et.randn([5, 16]) });
    const outside = Object.keys(native).filter((k) => !declared.has(k));
    expect(outside.sort()).toEqual(['kmeans_units', 'spectra_audio']);
    for (const kind of outside) {
      const config = sent.find(([k]) => k === kind)?.[1];
      expect(config, `${kind} was built`).toBeDefined();
      const cpp = native[kind];
      expect(
        Object.keys(config!).filter((k) => !cpp.some((f) => f.name === k)),
        `${kind}: sent, never read`,
      ).toEqual([]);
      for (const f of cpp) {
        expect(config!, `${kind}.${f.name}`).toHaveProperty(f.name);
        expect(wireOfValue(config![f.name]).split('|'), `${kind}.${f.name}`).toContain(f.type);
      }
    }
    spectra.dispose();
    extractor.dispose();
  });

  it('the comparison sees a disagreement (self-check)', () => {
    const decl = configKinds().get('whisper_encoder')!;
    const cpp = native.whisper_encoder.map((f) => (f.name === 'd_model' ? { ...f, default: '1024' } : f));
    expect(disagreements('whisper_encoder', wireFields(decl), cpp)).toEqual(['whisper_encoder.d_model: default 1280 in TypeScript, 1024 in C++']);
    expect(
      disagreements(
        'whisper_encoder',
        wireFields(decl),
        cpp.filter((f) => f.name !== 'dropout'),
      ),
    ).toContain('whisper_encoder.dropout: declared in TypeScript only (sent, never read)');
    expect(disagreements('whisper_encoder', wireFields(decl), [...cpp, { name: 'extra', type: 'i64', default: '0' }])).toContain(
      'whisper_encoder.extra: declared in C++ only',
    );
  });
});
