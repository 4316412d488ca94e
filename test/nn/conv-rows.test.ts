// The convolutions over time-major rows (native/kernels/conv.cc conv1d_rows: the Wav2Vec2 / WavLM
// feature encoder and the conv positions at inference): whichever implementation a kind runs on
// (oneDNN on the rows, channels-first, BLAS products over strided views), the model's outputs
// match HF's (scripts/fixtures/wav2vec2.py); the choice is timed once and kept in a file that
// later processes read. Each implementation is forced here by writing that file.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { FIXTURES, tmpdir } from '../helpers';

const script = `
const et = require(${JSON.stringify(path.join(__dirname, '..', '..', 'dist', 'index.js'))});
const path = require('path');
(async () => {
  const out = { diffs: {} };
  for (const name of ['xlsr', 'base']) {
    const dir = path.join(${JSON.stringify(path.join(FIXTURES, 'wav2vec2'))}, name);
    const m = await et.nn.Wav2Vec2Model.fromPretrained(dir);
    const t = (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;
    const y = await et.noGrad(() => m.forward({ inputValues: t.get('input_values'), attentionMask: t.get('attention_mask'), outputHiddenStates: true }));
    // the call that timed the implementations gives the bits of the kept one, as every later call
    const again = await et.noGrad(() => m.forward({ inputValues: t.get('input_values'), attentionMask: t.get('attention_mask') }));
    out.same = (out.same ?? true) && again.lastHiddenState.dataSync().every((v, i) => v === y.lastHiddenState.dataSync()[i]);
    let d = 0;
    const diff = (a, b) => { const x = a.dataSync(), r = b.dataSync(); for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - r[i])); };
    diff(y.lastHiddenState, t.get('last_hidden_state'));
    y.hiddenStates.forEach((h, i) => diff(h, t.get('hidden_states.' + i)));
    out.diffs[name] = d;
  }
  out.backends = et.cpu.convBackends();
  process.stdout.write(JSON.stringify(out));
})();`;

type Run = {
  same: boolean;
  diffs: Record<string, number>;
  backends: Array<{ kernel: number; stride: number; padding: number; groups: number; backend: string }>;
};
function run(env: Record<string, string>): Run {
  const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout);
}

describe('float32 CPU convolutions over time-major rows', () => {
  it('match HF on every implementation; the choice is timed once and kept', () => {
    const cache = tmpdir();
    const first = run({ EMOTORCH_CACHE_DIR: cache });
    for (const d of Object.values(first.diffs)) expect(d).toBeLessThan(1e-4);
    expect(first.same).toBe(true);
    // xlsr: 3 convs (layer norm, bias), base: the same 3 without bias (group norm), and the conv
    // positions (one kind: both have the same)
    expect(first.backends.length).toBe(7);
    for (const b of first.backends) expect(['onednn-rows', 'channels-first', 'blas']).toContain(b.backend);
    expect(first.backends.filter((b) => b.groups > 1 && b.padding > 0).length).toBe(1); // the conv positions
    expect(first.backends.filter((b) => b.groups > 1).every((b) => b.backend !== 'blas')).toBe(true);
    const files = fs.readdirSync(cache).filter((f) => /^conv-backends-[0-9a-f]{16}\.txt$/.test(f));
    expect(files.length).toBe(1);
    const file = path.join(cache, files[0]);
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.length).toBe(first.backends.length);
    // each implementation forced through the file (BLAS only where it applies: groups 1, no padding)
    const names = ['onednn-rows', 'channels-first', 'blas'];
    const grouped = (l: string) => Number(l.split(' ')[5]) > 1;
    for (const c of [0, 1, 2]) {
      fs.writeFileSync(file, lines.map((l) => l.replace(/\d+$/, String(c === 2 && grouped(l) ? 1 : c))).join('\n') + '\n');
      const r = run({ EMOTORCH_CACHE_DIR: cache });
      for (const d of Object.values(r.diffs)) expect(d).toBeLessThan(1e-4);
      for (const b of r.backends) expect(b.backend).toBe(names[c === 2 && b.groups > 1 ? 1 : c]);
      expect(fs.readFileSync(file, 'utf8').trim().split('\n').length).toBe(lines.length); // nothing timed again
    }
    // ATen's own path: nothing timed or written
    const aten = run({ EMOTORCH_CACHE_DIR: tmpdir(), EMOTORCH_CPU_LINEAR: 'aten' });
    expect(aten.backends).toEqual([]);
    for (const d of Object.values(aten.diffs)) expect(d).toBeLessThan(1e-4);
  });
});

// The weight-normed conv positions (native/kernels/conv.cc WeightNormCache): at inference the weight is
// computed once and kept; a change of g (loadStateDict) or of v (an optimizer step, in place) must
// show in the next call, exactly as a model loaded fresh with the changed weights computes it.
describe("the conv positions' weight norm at inference", () => {
  const dir = path.join(FIXTURES, 'wav2vec2', 'xlsr');
  const G = 'encoder.pos_conv_embed.conv.parametrizations.weight.original0';
  const V = 'encoder.pos_conv_embed.conv.parametrizations.weight.original1';

  it('is kept between calls and follows loadStateDict and an optimizer step', async () => {
    const et = await import('../../lib/index');
    const io = (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;
    const inputs = { inputValues: io.get('input_values')!, attentionMask: io.get('attention_mask')! };
    const out = async (m: InstanceType<typeof et.nn.Wav2Vec2Model>) => Array.from((await et.noGrad(() => m.forward(inputs))).lastHiddenState.dataSync());
    const param = (m: InstanceType<typeof et.nn.Wav2Vec2Model>, name: string) => new Map(m.namedParameters()).get(name)!;
    const fresh = async (sd: Record<string, InstanceType<typeof et.Tensor>>) => {
      const m = await et.nn.Wav2Vec2Model.fromPretrained(dir);
      await m.loadStateDict(sd, { strict: false });
      return out(m);
    };

    const m = await et.nn.Wav2Vec2Model.fromPretrained(dir);
    const y0 = await out(m);
    expect(await out(m)).toEqual(y0);

    const g = param(m, G).mul(0.5);
    await m.loadStateDict({ [G]: g }, { strict: false });
    const y1 = await out(m);
    expect(y1).not.toEqual(y0);
    expect(y1).toEqual(await fresh({ [G]: g }));

    // one SGD step on v (and g): the parameters change in place
    const y = await m.forward(inputs);
    const loss = y.lastHiddenState.pow(2).mean();
    await loss.backward();
    const opt = new et.optim.SGD([param(m, V), param(m, G)], { lr: 10 });
    opt.step();
    const y2 = await out(m);
    expect(y2).not.toEqual(y1);
    expect(y2).toEqual(await fresh({ [G]: param(m, G).mul(1), [V]: param(m, V).mul(1) }));
  });
});
