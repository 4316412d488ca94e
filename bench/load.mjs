// `npm run bench -- load [--case llama|llama7b] [--trials N] [--dtypes bfloat16,float16]`: loading a
// released-size checkpoint, emotorch (LlamaForCausalLM.fromPretrained) against transformers
// (from_pretrained), each trial a fresh process on each side, alternating. The Python side writes
// the checkpoint first (bench/load_worker.py make: random weights in transformers' layout, nothing
// downloaded) under $EMOTORCH_BENCH_DIR (default the system's temporary folder), kept for later runs.
// Per dtype: load time, peak RSS during the load (VmHWM), RSS after it, the peak after decoding
// (both sides map the file: its pages count in RSS once touched), first-token latency and greedy
// decode tokens/s, the ratios, and whether both sides decoded the same tokens.
//   llama:   a 1.1B LLaMA (TinyLlama's shape: 2048 hidden, 22 layers, 32 heads, 4 KV heads), 2.2 GB
//   llama7b: a 7B LLaMA (LLaMA-2-7B's shape), bfloat16, 13.5 GB in 4 GiB shards — opt-in
//            (`--case llama7b`): it takes minutes and most of a 24 GB machine
//   internvl8b: an InternVL2-8B-shaped chat folder (InternViT-300M, mlp1, a 7.7B InternLM2-chat-7b-
//            shaped LLM), bfloat16, 16.2 GB in 4 GiB shards — opt-in (`--case internvl8b`), emotorch
//            alone (transformers needs InternVL's remote code): load, then one answer about a picture
//   salmonn13b: the flagship on this machine (issue 58), emotorch alone — opt-in (`--case salmonn13b`):
//            the same parts with a Vicuna-13B-shaped LLaMA (5120 hidden, 40 layers, 13824 FFN), all in
//            float16 as released (30 GB of files), loaded with the YAML's `low_resource: True` (the
//            LLaMA in int8 as it is read) in bfloat16, then one greedy answer about a 30 s clip
//   salmonn: SALMONN's parts as users download them: a whole Whisper-large-v2-shaped model, a
//            BEATs-iter3-shaped `.pt` (float32, as released), the 1.1B LLaMA and a SALMONN
//            checkpoint (bert-base Q-Former, LoRA r 8); emotorch's Salmonn.fromPretrained against the
//            original models/salmonn.py's loading order on HF modules (bench/load_worker.py
//            load-salmonn), the towers in the dtype; one greedy answer about a 10 s clip (Whisper
//            pads it to 30 s, as the original): first token = audio encoding + prompt + one token
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const python = process.env.EMOTORCH_PYTHON || 'python3';
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const SHAPES = {
  llama: {
    vocab_size: 32000,
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
  },
  llama7b: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
  },
};

function runJson(cmd, argv, env = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 1 << 24, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0)
    throw new Error(`${path.basename(argv[0] ?? cmd)} failed (${r.status ?? r.signal}): ${(r.stderr || '').trim().split('\n').slice(-3).join(' | ')}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

const SALMONN = {
  whisper: {
    num_mel_bins: 80,
    d_model: 1280,
    encoder_layers: 32,
    encoder_attention_heads: 20,
    encoder_ffn_dim: 5120,
    decoder_layers: 32,
    decoder_attention_heads: 20,
    decoder_ffn_dim: 5120,
    vocab_size: 51865,
    max_source_positions: 1500,
    max_target_positions: 448,
  },
  beats: {
    input_patch_size: 16,
    embed_dim: 512,
    conv_bias: false,
    encoder_layers: 12,
    encoder_embed_dim: 768,
    encoder_ffn_embed_dim: 3072,
    encoder_attention_heads: 12,
    activation_fn: 'gelu',
    layer_norm_first: false,
    deep_norm: true,
    dropout: 0,
    attention_dropout: 0,
    activation_dropout: 0,
    encoder_layerdrop: 0,
    dropout_input: 0,
    conv_pos: 128,
    conv_pos_groups: 16,
    relative_position_embedding: true,
    num_buckets: 320,
    max_distance: 800,
    gru_rel_pos: true,
    finetuned_model: false,
  },
  llm: SHAPES.llama,
};

/** The bytes of a checkpoint folder's weight files (safetensors, .pt, .pth), sub-folders included. */
function weightBytes(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .reduce(
      (s, e) =>
        s + (e.isDirectory() ? weightBytes(path.join(dir, e.name)) : /\.(safetensors|pt|pth)$/.test(e.name) ? fs.statSync(path.join(dir, e.name)).size : 0),
      0,
    );
}

const SALMONN13B = {
  ...SALMONN,
  llm: {
    vocab_size: 32000,
    hidden_size: 5120,
    intermediate_size: 13824,
    num_hidden_layers: 40,
    num_attention_heads: 40,
    num_key_value_heads: 40,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
  },
};
const SALMONN_SIZES = { salmonn: SALMONN, salmonn13b: SALMONN13B };

export function checkpoint(name, dtype) {
  const dir = path.join(process.env.EMOTORCH_BENCH_DIR || os.tmpdir(), `emotorch-bench-${name}-${dtype}`);
  const done = path.join(dir, name in SALMONN_SIZES ? 'salmonn.pth' : 'config.json');
  if (!fs.existsSync(done)) {
    console.log(`  writing ${dir} (transformers, random weights) …`);
    if (name in SALMONN_SIZES) runJson(python, [path.join(here, 'load_worker.py'), 'make-salmonn', dir, JSON.stringify(SALMONN_SIZES[name]), dtype]);
    else runJson(python, [path.join(here, 'load_worker.py'), 'make', dir, JSON.stringify(SHAPES[name]), dtype]);
  }
  return { dir, bytes: weightBytes(dir) };
}

function loadCase(name, defaultDtypes, defaultTrials) {
  return {
    async run({ threads, opt }) {
      const trials = opt('trials', defaultTrials);
      const i = process.argv.indexOf('--dtypes');
      const dtypes = i >= 0 ? process.argv[i + 1].split(',') : defaultDtypes;
      const prompt = 16,
        nNew = name === 'llama7b' ? 4 : 16,
        seconds = 10;
      if (name === 'salmonn') {
        console.log(
          `\n[load salmonn] Whisper ${JSON.stringify(SALMONN.whisper)}, BEATs (iter3's shape), Q-Former (bert-base, 2 layers), LLaMA ${JSON.stringify(SALMONN.llm)}`,
        );
        console.log(
          `threads: ${threads} each; ${trials} alternating trials per dtype, each a fresh process; one greedy answer of ${nNew} tokens about a ${seconds} s clip`,
        );
      } else {
        console.log(`\n[load ${name}] LLaMA ${JSON.stringify(SHAPES[name])}`);
        console.log(
          `threads: ${threads} each; ${trials} alternating trials per dtype, each a fresh process; greedy decoding of ${nNew} tokens after a ${prompt}-token prompt`,
        );
      }
      const ourArgs = (dir, dtype) =>
        name === 'salmonn' ? ['salmonn', dir, dtype, String(seconds), String(nNew)] : [dir, dtype, String(prompt), String(nNew)];
      const theirArgs = (dir, dtype) =>
        name === 'salmonn' ? ['load-salmonn', dir, dtype, String(seconds), String(nNew)] : ['load', dir, dtype, String(prompt), String(nNew)];
      const them = name === 'salmonn' ? 'original' : 'transformers';
      const env = { BENCH_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
      for (const dtype of dtypes) {
        const { dir, bytes } = checkpoint(name, dtype);
        const mb = bytes / 2 ** 20;
        console.log(`${dtype}: checkpoint ${(bytes / 1e9).toFixed(2)} GB (${mb.toFixed(0)} MiB) in ${dir}`);
        const ours = [],
          theirs = [];
        for (let t = 0; t < trials; t++) {
          ours.push(runJson(process.execPath, [path.join(here, 'load_worker.mjs'), ...ourArgs(dir, dtype)], env));
          theirs.push(runJson(python, [path.join(here, 'load_worker.py'), ...theirArgs(dir, dtype)], env));
          const f = (r) =>
            `load ${(r.load_ms / 1000).toFixed(2)} s, peak ${r.peak_rss_mb.toFixed(0)} MiB, after ${r.rss_mb.toFixed(0)} MiB, first token ${r.first_token_ms.toFixed(0)} ms, ${r.tokens_per_s.toFixed(2)} tok/s, peak after decoding ${r.end_peak_rss_mb.toFixed(0)} MiB`;
          console.log(`  trial ${t + 1}: emotorch ${f(ours[t])}\n           ${them} ${f(theirs[t])}`);
        }
        const m = (rs, k) => median(rs.map((r) => r[k]));
        const row = (label, k, unit, digits, better) => {
          const a = m(ours, k),
            b = m(theirs, k);
          console.log(
            `  ${label}: emotorch ${a.toFixed(digits)} ${unit}, ${them} ${b.toFixed(digits)} ${unit}, ratio emotorch/${them} ${(a / b).toFixed(2)} (${better})`,
          );
        };
        row('load time', 'load_ms', 'ms', 0, 'lower is better');
        row('peak RSS while loading', 'peak_rss_mb', 'MiB', 0, `checkpoint ${mb.toFixed(0)} MiB; target ≤ 1.10 × it + 300 = ${(1.1 * mb + 300).toFixed(0)}`);
        row('RSS after loading', 'rss_mb', 'MiB', 0, `target ≤ 1.05 × it + 300 = ${(1.05 * mb + 300).toFixed(0)}`);
        row('peak RSS after decoding (mapped pages count once touched)', 'end_peak_rss_mb', 'MiB', 0, 'lower is better');
        row('first-token latency', 'first_token_ms', 'ms', 0, 'lower is better');
        row('greedy decode', 'tokens_per_s', 'tok/s', 2, 'higher is better');
        const same = JSON.stringify(ours[0].tokens) === JSON.stringify(theirs[0].tokens);
        console.log(`  tokens: ${same ? 'identical' : `differ (emotorch ${ours[0].tokens.join(' ')} | ${them} ${theirs[0].tokens.join(' ')})`}`);
      }
    },
  };
}

const INTERNVL8B = {
  vision: { hidden_size: 1024, intermediate_size: 4096, num_attention_heads: 16, num_hidden_layers: 24, image_size: 448, patch_size: 14 },
  llm: {
    vocab_size: 92553,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    max_position_embeddings: 32768,
  },
};

/** A proof that a model of a released size loads and answers on this machine: emotorch alone. */
function proofCase(name, dtype) {
  return {
    async run({ threads }) {
      const dir = path.join(process.env.EMOTORCH_BENCH_DIR || os.tmpdir(), `emotorch-bench-${name}-${dtype}`);
      if (!fs.existsSync(path.join(dir, 'config.json'))) {
        console.log(`  writing ${dir} (random weights in the released layout) …`);
        runJson(python, [path.join(here, 'load_worker.py'), 'make-internvl', dir, JSON.stringify(INTERNVL8B), dtype]);
      }
      const mb = weightBytes(dir) / 2 ** 20;
      const nNew = 8;
      console.log(
        `\n[load ${name}] InternViT ${JSON.stringify(INTERNVL8B.vision)}, InternLM2 ${JSON.stringify(INTERNVL8B.llm)}; ${dtype}, ${((mb * 2 ** 20) / 1e9).toFixed(2)} GB (${mb.toFixed(0)} MiB) in ${dir}`,
      );
      const r = runJson(process.execPath, [path.join(here, 'load_worker.mjs'), 'internvl', dir, dtype, String(nNew)], {
        BENCH_THREADS: String(threads),
        OMP_NUM_THREADS: String(threads),
      });
      console.log(
        `  emotorch: load ${(r.load_ms / 1000).toFixed(2)} s, peak RSS while loading ${r.peak_rss_mb.toFixed(0)} MiB, after ${r.rss_mb.toFixed(0)} MiB; ` +
          `one picture (${r.tiles} tiles, ${r.prompt_tokens} prompt tokens): first token ${(r.first_token_ms / 1000).toFixed(1)} s, ${r.tokens_per_s.toFixed(2)} tok/s over ${nNew} tokens; ` +
          `peak RSS after answering ${r.end_peak_rss_mb.toFixed(0)} MiB (target ≤ 20 GB = 19073 MiB); tokens ${r.tokens.join(' ')}`,
      );
    },
  };
}

/** SALMONN-13B's shape with `low_resource: True` on this machine: emotorch alone (the original needs CUDA for bitsandbytes). */
const salmonn13bCase = {
  async run({ threads }) {
    const t0 = performance.now();
    const { dir, bytes } = checkpoint('salmonn13b', 'float16');
    const mb = bytes / 2 ** 20;
    const seconds = 30,
      nNew = 8;
    console.log(
      `\n[load salmonn13b] Whisper-large-v2 ${JSON.stringify(SALMONN13B.whisper)}, BEATs (iter3's shape), Q-Former (bert-base, 2 layers), Vicuna-13B-shaped LLaMA ${JSON.stringify(SALMONN13B.llm)}; float16 files, ${(bytes / 1e9).toFixed(2)} GB (${mb.toFixed(0)} MiB) in ${dir} (ready after ${((performance.now() - t0) / 1000).toFixed(0)} s)`,
    );
    const r = runJson(process.execPath, [path.join(here, 'load_worker.mjs'), 'salmonn', dir, 'bfloat16', String(seconds), String(nNew), 'low_resource'], {
      BENCH_THREADS: String(threads),
      OMP_NUM_THREADS: String(threads),
    });
    console.log(
      `  emotorch, low_resource (int8 LLaMA), towers in bfloat16, ${threads} threads: load ${(r.load_ms / 1000).toFixed(1)} s, peak RSS while loading ${r.peak_rss_mb.toFixed(0)} MiB, after ${r.rss_mb.toFixed(0)} MiB; ` +
        `a ${seconds} s clip: first token ${(r.first_token_ms / 1000).toFixed(1)} s (audio encoding + prompt + one token), ${r.tokens_per_s.toFixed(2)} tok/s over ${nNew} tokens; ` +
        `peak RSS after answering ${r.end_peak_rss_mb.toFixed(0)} MiB (target ≤ 20 GB = 19073 MiB); tokens ${r.tokens.join(' ')}`,
    );
  },
};

export const cases = {
  llama: loadCase('llama', ['bfloat16', 'float16'], 3),
  salmonn: loadCase('salmonn', ['bfloat16', 'float16'], 2),
  ...(process.argv.includes('llama7b') ? { llama7b: loadCase('llama7b', ['bfloat16'], 1) } : {}),
  ...(process.argv.includes('internvl8b') ? { internvl8b: proofCase('internvl8b', 'bfloat16') } : {}),
  ...(process.argv.includes('salmonn13b') ? { salmonn13b: salmonn13bCase } : {}),
};
