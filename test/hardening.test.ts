// Regression tests for the hardening findings on tensors, optimizers, saves, threads and configs
// (issue 7: findings 1-7, 12, 14, 16). Each failed (crashed, hung or was silently wrong) before
// its fix. Crash-prone cases run in a child process so a regression is reported, not fatal.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as et from '../lib/index';
import { rejectsWith, throwsWith, tmpdir } from './helpers';

const DIST = path.join(__dirname, '..', 'dist', 'index.js');

/** Runs `code` (CommonJS, with `et` bound to the built package) in a fresh node process. */
function child(code: string, timeout = 60_000) {
  const r = spawnSync(process.execPath, ['-e', `const et = require(${JSON.stringify(DIST)});\n${code}`], { encoding: 'utf8', timeout });
  return { status: r.status, signal: r.signal, out: `${r.stdout}${r.stderr}` };
}

describe('finding 1: the grad setter checks what it is given', () => {
  it('rejects a grad of another shape, dtype or kind', () => {
    const p = et.zeros([1000]).requiresGrad_();
    throwsWith(
      () => {
        p.grad = et.ones([1]);
      },
      'ERR_INVALID_ARG',
      /grad has shape \[1\] but the tensor has shape \[1000\]/,
    );
    throwsWith(
      () => {
        p.grad = et.ones([1000], { dtype: 'float64' });
      },
      'ERR_INVALID_ARG',
      /dtype float64/,
    );
    throwsWith(
      () => {
        p.grad = 3 as unknown as et.Tensor;
      },
      'ERR_INVALID_ARG',
      /grad/,
    );
    expect(p.grad).toBeNull();
  });
  it('stores an expanded (stride-0) grad as its own copy, so AdamW updates correctly', async () => {
    const a = et.zeros([4096]).requiresGrad_();
    const b = et.zeros([4096]).requiresGrad_();
    a.grad = et.ones([1]).expand([4096]);
    b.grad = et.ones([4096]);
    await new et.optim.AdamW([a], { lr: 0.1 }).step();
    await new et.optim.AdamW([b], { lr: 0.1 }).step();
    expect(a.sub(b).abs().max().item()).toBe(0);
    expect(b.mean().item()).toBeCloseTo(-0.1, 5);
  });
  it('clipGradNorm and SGD no longer see a smaller grad to broadcast', async () => {
    const p = et.zeros([8]).requiresGrad_();
    expect(() => {
      p.grad = et.ones([1]);
    }).toThrow();
    p.grad = et.ones([8]);
    expect(await et.optim.clipGradNorm([p], 1)).toBeCloseTo(Math.sqrt(8), 4);
  });
});

describe('finding 2: views as parameters', () => {
  it('AdamW updates a sliced parameter in place without touching the rest of its base', async () => {
    const base = et.zeros([4, 4]);
    const p = base.slice(1, 0, 2).requiresGrad_(); // (4, 2), strides (4, 1): not contiguous
    p.grad = et.ones([4, 2]);
    await new et.optim.AdamW([p], { lr: 0.5, weightDecay: 0 }).step();
    const rows = base.toArray() as number[][];
    for (const r of rows) {
      expect(r[0]).toBeCloseTo(-0.5, 5);
      expect(r[1]).toBeCloseTo(-0.5, 5);
      expect(r[2]).toBe(0);
      expect(r[3]).toBe(0);
    }
  });
  it('refuses an expanded parameter whose elements share memory', async () => {
    const p = et.zeros([1]).expand([64]).requiresGrad_();
    p.grad = et.ones([64]);
    await rejectsWith(new et.optim.AdamW([p], { lr: 0.1 }).step(), 'ERR_TORCH', /overlap/);
  });
  it('registerParameter gives a view a contiguous tensor of its own', async () => {
    class M extends et.nn.Module {
      async forward() {
        return null;
      }
    }
    const base = et.zeros([4, 4]);
    const m = new M();
    const p = m.registerParameter('w', base.slice(1, 1, 3));
    p.grad = et.ones([4, 2]);
    await new et.optim.AdamW(m.parameters(), { lr: 0.5 }).step();
    expect(base.abs().sum().item()).toBe(0);
    expect(p.mean().item()).toBeCloseTo(-0.5, 5);
  });
});

describe('finding 3: a worker thread terminated while a call is pending', () => {
  it('leaves the process alive', () => {
    const r = child(`
      const { Worker } = require('worker_threads');
      const w = new Worker(\`
        const et = require(\${JSON.stringify(${JSON.stringify(DIST)})});
        const { parentPort } = require('worker_threads');
        const m = et.nn.Mlp.create({ sizes: [512, 2048, 2048, 512] });
        const x = et.randn([512, 512]);
        for (let i = 0; i < 16; i++) m.forward(x).catch(() => {});
        for (let i = 0; i < 8; i++) et.randn([1024, 1024]).data().catch(() => {});
        parentPort.postMessage('busy');
      \`, { eval: true });
      w.on('message', async () => { await w.terminate(); setTimeout(() => { console.log('alive'); }, 1500); });
    `);
    expect(r.signal).toBeNull();
    expect(r.out).not.toMatch(/terminate called/);
    expect(r.out).toContain('alive');
    expect(r.status).toBe(0);
  });
});

describe('finding 4: thread counts are bounded', () => {
  it('rejects absurd counts and accepts sane ones', () => {
    const before = et.getNumThreads();
    for (const n of [100000, 30000, 2 ** 31 - 1, 0, -1, 1.5]) throwsWith(() => et.setNumThreads(n), 'ERR_INVALID_ARG', /threads/);
    et.setNumThreads(1);
    expect(et.getNumThreads()).toBe(1);
    et.setNumThreads(before);
  });
});

describe('finding 5: loaded safetensors own their bytes', () => {
  it('survive the file being truncated and rewritten in place (no SIGBUS, no changed data)', async () => {
    const file = path.join(tmpdir(), 'w.safetensors');
    await et.io.saveSafetensors(file, { w: et.arange(0, 50000, 1, { dtype: 'float64' }) });
    const { tensors } = await et.io.loadSafetensors(file);
    fs.truncateSync(file, 0);
    fs.writeFileSync(file, Buffer.alloc(1 << 20, 0x7f));
    const w = tensors.get('w')!;
    expect(w.sum().item()).toBe((49999 * 50000) / 2);
    expect((w.dataSync() as Float64Array)[49999]).toBe(49999);
  });
});

describe('findings 6 and 7: saves', () => {
  it('concurrent saves to one path never mix and the last call wins', async () => {
    const file = path.join(tmpdir(), 'm.safetensors');
    const n = 12;
    await Promise.all(Array.from({ length: n }, (_, i) => et.io.saveSafetensors(file, { a: et.full([20000], i), b: et.full([20000], i) })));
    const { tensors } = await et.io.loadSafetensors(file);
    expect(tensors.get('a')!.min().item()).toBe(n - 1);
    expect(tensors.get('b')!.max().item()).toBe(n - 1);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['m.safetensors']);
  });
  it("removes temporaries left by a killed save, never a live writer's", async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'm.safetensors');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
    fs.writeFileSync(`${file}.tmp-${dead}`, 'left by an old version');
    fs.writeFileSync(`${file}.tmp-${dead}-3-77`, 'left by a killed save');
    fs.writeFileSync(`${file}.tmp-${process.pid}-999-1`, 'a save in flight');
    await et.io.saveSafetensors(file, { a: et.ones([3]) });
    expect(fs.readdirSync(dir).sort()).toEqual(['m.safetensors', `m.safetensors.tmp-${process.pid}-999-1`]);
  });
  it('a save killed mid-write leaves the previous file intact and its temporary is collected later', () => {
    const dir = tmpdir();
    const file = path.join(dir, 'big.safetensors');
    const r = child(`
      (async () => {
        await et.io.saveSafetensors(${JSON.stringify(file)}, { a: et.full([16], 1) });
        setTimeout(() => process.kill(process.pid, 'SIGKILL'), 150);
        for (;;) await et.io.saveSafetensors(${JSON.stringify(file)}, { a: et.randn([60000000]) });
      })();
    `);
    expect(r.signal).toBe('SIGKILL');
    const child2 = child(`
      (async () => {
        const { tensors } = await et.io.loadSafetensors(${JSON.stringify(file)});
        const a = tensors.get('a');
        if (a.numel !== 16 && a.numel !== 60000000) throw new Error('damaged');
        await et.io.saveSafetensors(${JSON.stringify(file)}, { a: et.ones([2]) });
        console.log(require('fs').readdirSync(${JSON.stringify(dir)}).join(','));
      })().catch((e) => { console.error(e); process.exit(1); });
    `);
    expect(child2.status).toBe(0);
    expect(child2.out.trim()).toBe('big.safetensors');
  });
});

describe('finding 12: every config field is checked at create()', () => {
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['negative encoder_layers', () => et.nn.WhisperEncoder.create({ encoder_layers: -2 }), /Whisper config\.encoder_layers/],
    ['unknown activation', () => et.nn.WhisperEncoder.create({ activation_function: 'foo' }), /Whisper config\.activation_function/],
    ['negative num_hidden_layers', () => et.nn.LlamaForCausalLM.create({ num_hidden_layers: -1 }), /LLaMA config\.num_hidden_layers/],
    ['negative head_dim', () => et.nn.LlamaForCausalLM.create({ head_dim: -8 }), /LLaMA config\.head_dim/],
    ['zero rms_norm_eps', () => et.nn.LlamaForCausalLM.create({ rms_norm_eps: 0 }), /LLaMA config\.rms_norm_eps/],
    [
      'non-dividing conv groups',
      () => et.nn.WavLMModel.create({ hidden_size: 48, num_attention_heads: 4, num_conv_pos_embedding_groups: 5 }),
      /num_conv_pos_embedding_groups/,
    ],
    ['negative num_query_tokens', () => et.nn.QFormer.create({ num_query_tokens: -1 }), /Q-Former config\.num_query_tokens/],
    ['NaN dropout', () => et.nn.RobertaModel.create({ hidden_dropout_prob: NaN }), /RoBERTa config\.hidden_dropout_prob/],
    ['negative BEATs layers', () => et.nn.BeatsEncoder.create({ encoder_layers: -1 }), /BEATs config\.encoder_layers/],
    ['BEATs activation', () => et.nn.BeatsEncoder.create({ activation_fn: 'nope' }), /BEATs config\.activation_fn/],
    ['an array as config', () => et.nn.RobertaModel.create([] as never), /RoBERTa config/],
  ];
  for (const [name, make, re] of cases)
    it(name, () => {
      throwsWith(make, 'ERR_INVALID_ARG', re);
    });
  it('maps HF activation aliases', () => {
    const m = et.nn.RobertaModel.create({
      vocab_size: 10,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      hidden_act: 'gelu_new',
    });
    expect(m.config.hidden_act).toBe('gelu_tanh');
  });
});

describe('finding 14: uncoded errors', () => {
  it('toArray/dataSync of a tensor too large for JS say so', async () => {
    const big = et.zeros([1]).expand([2 ** 27]);
    throwsWith(() => big.toArray(), 'ERR_INVALID_ARG', /too many.*data\(\)/);
    const huge = et.zeros([1]).expand([2 ** 51]);
    throwsWith(() => huge.dataSync(), 'ERR_INVALID_ARG', /ArrayBuffer/);
    await rejectsWith(() => huge.data(), 'ERR_INVALID_ARG', /ArrayBuffer/);
  });
  it('a tensor over a SharedArrayBuffer is copied in', () => {
    const shared = new Float32Array(new SharedArrayBuffer(16));
    shared.set([1, 2, 3, 4]);
    expect(et.tensor(shared).toArray()).toEqual([1, 2, 3, 4]);
  });
  it('noGrad and autocast without a function', () => {
    throwsWith(() => et.noGrad(5 as never), 'ERR_INVALID_ARG', /function/);
    throwsWith(() => et.autocast({ device: 'cpu' }, 5 as never), 'ERR_INVALID_ARG', /function/);
  });
  it('running out of memory has its own code', () => {
    throwsWith(() => et.zeros([2 ** 40]), 'ERR_OUT_OF_MEMORY', /allocate/);
  });
});

describe('finding 16: empty inputs, one rule for every model', () => {
  const roberta = () =>
    et.nn.RobertaModel.create({
      vocab_size: 20,
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      max_position_embeddings: 16,
    });
  const llama = () =>
    et.nn.LlamaForCausalLM.create({
      vocab_size: 20,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
    });
  it('an empty batch gives empty outputs', async () => {
    const r = await roberta().forward({ inputIds: et.zeros([0, 5], { dtype: 'int64' }) });
    expect(r.lastHiddenState.shape).toEqual([0, 5, 8]);
    expect(r.poolerOutput!.shape).toEqual([0, 8]);
    expect((await llama().forward({ inputIds: et.zeros([0, 3], { dtype: 'int64' }) })).logits.shape).toEqual([0, 3, 20]);
    const w = et.nn.WhisperEncoder.create({
      num_mel_bins: 4,
      d_model: 8,
      encoder_layers: 1,
      encoder_attention_heads: 2,
      encoder_ffn_dim: 16,
      max_source_positions: 8,
    });
    expect((await w.forward({ inputFeatures: et.zeros([0, 4, 9]) })).lastHiddenState.shape).toEqual([0, 5, 8]);
    const q = et.nn.QFormer.create({
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      encoder_hidden_size: 6,
      num_query_tokens: 3,
    });
    expect((await q.forward({ encoderHiddenStates: et.zeros([0, 4, 6]) })).lastHiddenState.shape).toEqual([0, 3, 8]);
  });
  it('an empty sequence is an error', async () => {
    await rejectsWith(() => roberta().forward({ inputIds: et.zeros([2, 0], { dtype: 'int64' }) }), 'ERR_INVALID_ARG', /non-empty sequence/);
    await rejectsWith(() => llama().forward({ inputIds: et.zeros([1, 0], { dtype: 'int64' }) }), 'ERR_INVALID_ARG', /non-empty sequence/);
    const q = et.nn.QFormer.create({
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      encoder_hidden_size: 6,
      num_query_tokens: 3,
    });
    await rejectsWith(() => q.forward({ encoderHiddenStates: et.zeros([1, 0, 6]) }), 'ERR_INVALID_ARG', /non-empty sequence/);
  });
});

describe('one forward convention', () => {
  it('named inputs in, named outputs out; the one-tensor shortcut is the same call', async () => {
    et.manualSeed(1);
    const w = et.nn.WhisperEncoder.create({
      num_mel_bins: 4,
      d_model: 8,
      encoder_layers: 1,
      encoder_attention_heads: 2,
      encoder_ffn_dim: 16,
      max_source_positions: 8,
    }).eval();
    const x = et.randn([2, 4, 10]);
    const a = (await w.forward({ inputFeatures: x })).lastHiddenState;
    const b = (await w.forward(x)).lastHiddenState;
    expect(a.sub(b).abs().max().item()).toBe(0);
    await rejectsWith(() => w.forward([x] as never), 'ERR_INVALID_ARG', /inputs object/);
    const q = et.nn.QFormer.create({
      hidden_size: 8,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 16,
      encoder_hidden_size: 6,
      num_query_tokens: 1,
    });
    await rejectsWith(() => q.forward(et.zeros([1, 2, 6]) as never), 'ERR_INVALID_ARG', /inputs object/);
  });
  it('LLaMA with labels returns the mean token loss, or the sum over numItemsInBatch', async () => {
    et.manualSeed(2);
    const m = et.nn.LlamaForCausalLM.create({
      vocab_size: 20,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 1,
    });
    const inputIds = et.tensor(
      [
        [1, 4, 5, 6],
        [1, 7, 8, 9],
      ],
      { dtype: 'int64' },
    );
    const labels = et.tensor(
      [
        [-100, -100, 5, 6],
        [-100, 7, 8, 9],
      ],
      { dtype: 'int64' },
    );
    const { logits, loss } = await m.forward({ inputIds, labels });
    // the same loss from the per-token log-probabilities, by hand
    const lp = logits.logSoftmax(-1).toArray() as number[][][];
    const lab = labels.toArray() as number[][];
    let sum = 0,
      n = 0;
    for (let b = 0; b < 2; b++)
      for (let t = 0; t < 3; t++)
        if (lab[b][t + 1] !== -100) {
          sum -= lp[b][t][lab[b][t + 1]];
          n++;
        }
    expect(loss!.item()).toBeCloseTo(sum / n, 5);
    const { loss: scaled } = await m.forward({ inputIds, labels, numItemsInBatch: 10 });
    expect(scaled!.item()).toBeCloseTo(sum / 10, 5);
    await rejectsWith(() => m.forward({ inputIds, labels: et.zeros([2, 3], { dtype: 'int64' }) }), 'ERR_INVALID_ARG', /labels/);
  });
});
