// Loading in place (issue 44, first part): fromPretrained builds a model whose parameters the
// checkpoint replaces without initializing them (no random numbers drawn, no pages written), and
// the checkpoint's tensors become the parameters (converted once to the dtype asked for), so a
// half-precision checkpoint loads in about its own size. Values are checked against the
// checkpoint file itself (read by et.io.loadSafetensors).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as et from '../../lib/index';
import { FIXTURES, maxAbsDiff, rejectsWith, tmpdir } from '../helpers';

const LLAMA = path.join(FIXTURES, 'llama');
const DIST = path.join(__dirname, '..', '..', 'dist', 'index.js');

describe('fromPretrained loads in place', () => {
  it('draws nothing from the RNG (every model kind), and strict: false still initializes what the checkpoint leaves out', async () => {
    const loads: Array<[string, () => Promise<et.nn.Module>]> = [
      ['LLaMA', () => et.nn.LlamaForCausalLM.fromPretrained(LLAMA)],
      ['Whisper', () => et.nn.WhisperEncoder.fromPretrained(path.join(FIXTURES, 'whisper'))],
      ['WavLM', () => et.nn.WavLMModel.fromPretrained(path.join(FIXTURES, 'wavlm_base'))],
      ['RoBERTa', () => et.nn.RobertaModel.fromPretrained(path.join(FIXTURES, 'roberta'))],
    ];
    for (const [name, load] of loads) {
      et.manualSeed(7);
      const want = et.randn([8]).dataSync();
      et.manualSeed(7);
      (await load()).dispose?.();
      expect(Array.from(et.randn([8]).dataSync()), name).toEqual(Array.from(want));
    }
    // a non-strict load keeps the initialization of what the checkpoint lacks (and draws it)
    const { tensors } = await et.io.loadSafetensors(path.join(LLAMA, 'model.safetensors'));
    const dir = tmpdir();
    fs.copyFileSync(path.join(LLAMA, 'config.json'), path.join(dir, 'config.json'));
    tensors.delete('lm_head.weight');
    await et.io.saveSafetensors(path.join(dir, 'model.safetensors'), tensors);
    const partial = await et.nn.LlamaForCausalLM.fromPretrained(dir, { strict: false });
    const head = partial.namedParameters().find(([n]) => n === 'lm_head.weight')![1];
    const std = head.float().std().item();
    expect(std).toBeGreaterThan(0.01); // drawn (not left as whatever memory held), as the original's init
    expect(Number.isFinite(head.abs().max().item())).toBe(true);
  });

  it('the parameters are the checkpoint tensors, in the dtype asked for (converted once), and the model generates', async () => {
    const { tensors } = await et.io.loadSafetensors(path.join(LLAMA, 'model.safetensors'));
    for (const dtype of [undefined, 'bfloat16', 'float16'] as const) {
      const m = await et.nn.LlamaForCausalLM.fromPretrained(LLAMA, dtype ? { dtype } : {});
      for (const [name, p] of m.namedParameters()) {
        expect(p.dtype, name).toBe(dtype ?? 'float32');
        const ref = tensors.get(name)!;
        expect(maxAbsDiff(p, ref.to({ dtype: dtype ?? 'float32' }))).toBe(0);
      }
      const { newTokens } = await et.noGrad(() => m.generate({ inputIds: et.tensor([[1, 5, 9]], { dtype: 'int64' }) }, { maxNewTokens: 3 }));
      expect(newTokens.shape).toEqual([1, 3]);
    }
    // dtype 'auto': the checkpoint's own (the fixture's float32; a bfloat16 copy of it)
    expect((await et.nn.LlamaForCausalLM.fromPretrained(LLAMA, { dtype: 'auto' })).parameters()[0].dtype).toBe('float32');
    const dir = tmpdir();
    fs.copyFileSync(path.join(LLAMA, 'config.json'), path.join(dir, 'config.json'));
    await et.io.saveSafetensors(
      path.join(dir, 'model.safetensors'),
      new Map([...tensors].map(([k, t]) => [k, t.to({ dtype: 'bfloat16' })] as [string, et.Tensor])),
    );
    const auto = await et.nn.LlamaForCausalLM.fromPretrained(dir, { dtype: 'auto' });
    for (const [name, p] of auto.namedParameters()) expect(maxAbsDiff(p, tensors.get(name)!.to({ dtype: 'bfloat16' })), name).toBe(0);
    expect(auto.parameters().every((p) => p.dtype === 'bfloat16')).toBe(true);
  });

  it('loadStateDict assign shares or converts the tensors; options are checked', async () => {
    const m = et.nn.LlamaForCausalLM.create({
      vocab_size: 16,
      hidden_size: 8,
      intermediate_size: 16,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      num_key_value_heads: 2,
    });
    const sd = new Map([...m.stateDict()].map(([k, t]) => [k, et.randn(t.shape)] as [string, et.Tensor]));
    await m.loadStateDict(sd, { assign: true, dtype: 'bfloat16' });
    for (const [k, p] of m.namedParameters()) {
      expect(p.dtype).toBe('bfloat16');
      expect(maxAbsDiff(p, sd.get(k)!.to({ dtype: 'bfloat16' }))).toBe(0);
      expect(p.requiresGrad).toBe(true);
    }
    await m.loadStateDict(sd, { assign: true }); // each parameter's own dtype (now bfloat16)
    expect(m.parameters()[0].dtype).toBe('bfloat16');
    await rejectsWith(m.loadStateDict(sd, { dtype: 'float16' }), 'ERR_INVALID_ARG', /dtype only with assign/);
    await rejectsWith(m.loadStateDict(sd, { assign: 'yes' as never }), 'ERR_INVALID_ARG', /assign/);
    await rejectsWith(m.loadStateDict(sd, { asign: true } as never), 'ERR_INVALID_ARG', /asign/);
  });

  it('loadSafetensors reads unaligned tensors as the file holds them; training a loaded model never writes the file; mmap is no option', async () => {
    const dir = tmpdir();
    const file = path.join(dir, 'a.safetensors');
    // an odd-length uint8 tensor first, so the float32 one after it lies unaligned in the file
    const saved = new Map([
      ['odd', et.tensor([1, 2, 3], { dtype: 'uint8' })],
      ['w', et.randn([4, 5])],
      ['h', et.randn([3]).to({ dtype: 'float16' })],
    ]);
    await et.io.saveSafetensors(file, saved);
    const bytes = fs.readFileSync(file);
    const read = (await et.io.loadSafetensors(file)).tensors;
    for (const [k, t] of saved) {
      expect(read.get(k)!.dtype, k).toBe(t.dtype);
      expect(maxAbsDiff(read.get(k)!.to({ dtype: 'float32' }), t.to({ dtype: 'float32' })), k).toBe(0);
    }
    expect(fs.readFileSync(file).equals(bytes)).toBe(true);
    // a model loaded and trained in place (SGD writes every parameter): the checkpoint file stays
    // as it was (see test/misuse/checkpoint-rewrite.test.ts for the converse: the file changed)
    const small = { vocab_size: 16, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2 };
    await et.nn.LlamaForCausalLM.create(small).save(path.join(dir, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...small, model_type: 'llama' }));
    const ckpt = fs.readFileSync(path.join(dir, 'model.safetensors'));
    const m = await et.nn.LlamaForCausalLM.fromPretrained(dir);
    m.train();
    const opt = new et.optim.SGD(m.parameters(), { lr: 0.5 });
    const ids = et.tensor([[1, 2, 3, 4]], { dtype: 'int64' });
    await (await m.forward({ inputIds: ids, labels: ids })).loss!.backward();
    await opt.step();
    expect(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(ckpt)).toBe(true);
    const again = await et.nn.LlamaForCausalLM.fromPretrained(dir);
    expect(maxAbsDiff(m.parameters()[0], again.parameters()[0])).toBeGreaterThan(0);
    // tensors never view a mapping of the file (a rewrite would change them, a truncation kill the process)
    await rejectsWith(et.io.loadSafetensors(file, { mmap: true } as never), 'ERR_INVALID_ARG', /mmap/);
  });

  it('a float16 checkpoint loads in about its own size of memory (peak RSS of a fresh process)', async () => {
    // 56 M parameters in float16 (112 MB), written here by emotorch itself; loaded by a child process
    const dir = tmpdir();
    const cfg = {
      vocab_size: 8000,
      hidden_size: 512,
      intermediate_size: 1536,
      num_hidden_layers: 16,
      num_attention_heads: 8,
      num_key_value_heads: 8,
      max_position_embeddings: 512,
    };
    const m = et.nn.LlamaForCausalLM.create(cfg, { dtype: 'float16' });
    await m.save(path.join(dir, 'model.safetensors'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'llama', torch_dtype: 'float16' }));
    const bytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
    const script = `const et = require(${JSON.stringify(DIST)});
      const fs = require('fs');
      const hwm = () => Number(/VmHWM:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
      (async () => {
        const before = hwm();
        const m = await et.nn.LlamaForCausalLM.fromPretrained(${JSON.stringify(dir)}, { dtype: 'float16' });
        console.log(JSON.stringify({ before, after: hwm(), dtype: m.parameters()[0].dtype }));
      })();`;
    const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }).trim());
    expect(out.dtype).toBe('float16');
    const grown = out.after - out.before;
    // before: a float32 model (224 MB) initialized, then the checkpoint, then the cast: ≥ 3 × its size
    expect(grown, `peak RSS grew by ${(grown / 2 ** 20).toFixed(0)} MiB for a ${(bytes / 2 ** 20).toFixed(0)} MiB checkpoint`).toBeLessThan(
      1.1 * bytes + 48 * 2 ** 20,
    );
  }, 120_000);
});

describe('sharded checkpoints and bad input', () => {
  /** The fixture LLaMA split into two shards with an index, as transformers writes a large checkpoint. */
  async function sharded(): Promise<{ dir: string; names: string[][] }> {
    const dir = tmpdir();
    fs.copyFileSync(path.join(LLAMA, 'config.json'), path.join(dir, 'config.json'));
    const { tensors } = await et.io.loadSafetensors(path.join(LLAMA, 'model.safetensors'));
    const keys = [...tensors.keys()];
    const names = [keys.slice(0, 10), keys.slice(10)];
    const map: Record<string, string> = {};
    for (const [i, part] of names.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await et.io.saveSafetensors(path.join(dir, file), new Map(part.map((k) => [k, tensors.get(k)!])));
      for (const k of part) map[k] = file;
    }
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: map }));
    return { dir, names };
  }

  it('loads shards as the single file, and refuses shards that disagree with the index, naming the file or tensor', async () => {
    const { dir, names } = await sharded();
    const one = await et.nn.LlamaForCausalLM.fromPretrained(LLAMA, { dtype: 'bfloat16' });
    const two = await et.nn.LlamaForCausalLM.fromPretrained(dir, { dtype: 'bfloat16' });
    for (const [[n, a], [, b]] of one.namedParameters().map((p, i) => [p, two.namedParameters()[i]] as const)) expect(maxAbsDiff(a, b), n).toBe(0);
    const index = path.join(dir, 'model.safetensors.index.json');
    const map = JSON.parse(fs.readFileSync(index, 'utf8'));
    // the index lists a tensor no shard has
    fs.writeFileSync(index, JSON.stringify({ weight_map: { ...map.weight_map, 'model.extra.weight': 'model-00001-of-00002.safetensors' } }));
    await rejectsWith(et.nn.LlamaForCausalLM.fromPretrained(dir), 'ERR_FORMAT', /lists tensors its shards lack: model\.extra\.weight/);
    // the index names a shard that is not there
    fs.writeFileSync(index, JSON.stringify({ weight_map: { ...map.weight_map, [names[1][0]]: 'model-00003-of-00002.safetensors' } }));
    await rejectsWith(et.nn.LlamaForCausalLM.fromPretrained(dir), 'ERR_IO', /model-00003-of-00002\.safetensors/);
    // a shard cut short
    fs.writeFileSync(index, JSON.stringify(map));
    const shard = path.join(dir, 'model-00002-of-00002.safetensors');
    fs.truncateSync(shard, fs.statSync(shard).size - 100);
    await rejectsWith(et.nn.LlamaForCausalLM.fromPretrained(dir), 'ERR_FORMAT', /model-00002-of-00002\.safetensors/);
  });

  it('a device or dtype that cannot be had is a coded error before anything is loaded', async () => {
    if (!et.cuda.isAvailable()) await rejectsWith(et.nn.LlamaForCausalLM.fromPretrained(LLAMA, { device: 'cuda' }), 'ERR_NO_CUDA');
    await rejectsWith(et.nn.LlamaForCausalLM.fromPretrained(LLAMA, { dtype: 'int8' as never }), 'ERR_INVALID_ARG', /dtype/);
  });
});

describe('not enough memory', () => {
  it('a checkpoint larger than the memory available is ERR_OUT_OF_MEMORY before a byte of its data is read, in any dtype', async () => {
    // A LLaMA-7B-shaped bfloat16 checkpoint with enough layers that its own bytes are 1.5 × the
    // memory available now: a sparse file (a header, then a hole: no disk used, all zeros). The tensors
    // are read into memory of their own (no view of the file), so even dtype 'auto' cannot load it.
    const avail = Number(/MemAvailable:\s+(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024;
    const [H, I, V] = [4096, 11008, 32000];
    const perLayer = (4 * H * H + 3 * H * I + 2 * H) * 4;
    const layers = Math.ceil((3 * avail) / perLayer); // bfloat16: 1.5 × the memory available
    const shapes: Array<[string, number[]]> = [
      ['model.embed_tokens.weight', [V, H]],
      ['model.norm.weight', [H]],
      ['lm_head.weight', [V, H]],
    ];
    for (let l = 0; l < layers; l++) {
      const p = `model.layers.${l}.`;
      for (const k of ['q', 'k', 'v', 'o']) shapes.push([`${p}self_attn.${k}_proj.weight`, [H, H]]);
      shapes.push([`${p}mlp.gate_proj.weight`, [I, H]], [`${p}mlp.up_proj.weight`, [I, H]], [`${p}mlp.down_proj.weight`, [H, I]]);
      shapes.push([`${p}input_layernorm.weight`, [H]], [`${p}post_attention_layernorm.weight`, [H]]);
    }
    const header: Record<string, unknown> = {};
    let off = 0;
    for (const [k, s] of shapes) {
      const n = s.reduce((a, b) => a * b, 1) * 2;
      header[k] = { dtype: 'BF16', shape: s, data_offsets: [off, off + n] };
      off += n;
    }
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - (json.length % 8)) % 8);
    const dir = tmpdir();
    const file = path.join(dir, 'model.safetensors');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json)]));
    fs.truncateSync(file, 8 + json.length + off);
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        model_type: 'llama',
        vocab_size: V,
        hidden_size: H,
        intermediate_size: I,
        num_hidden_layers: layers,
        num_attention_heads: 32,
        num_key_value_heads: 32,
      }),
    );
    for (const opts of [{}, { dtype: 'auto' as const }]) {
      const t0 = Date.now();
      const e = await rejectsWith(
        et.nn.LlamaForCausalLM.fromPretrained(dir, opts),
        'ERR_OUT_OF_MEMORY',
        /reads [\d.]+ GiB of tensors into memory and the machine has [\d.]+ GiB available/,
      );
      expect(Date.now() - t0, e.message).toBeLessThan(10_000);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }, 120_000);
});
