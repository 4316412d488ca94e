// `npm run bench -- internvl`: one M2SE LoRA SFT step of InternVL2-4B's shapes in emotorch against
// InternVL's original remote code + peft in Python (bench/internvl_worker.py), one process each,
// taking turns:
//   InternViT-300M's shape (1024 hidden, 16 heads, 4096 inner, patch 14, 448², LayerNorm, qkv bias)
//   cut to IVL_VIT_LAYERS (4) layers, frozen; pixel_shuffle 0.5 + mlp1; Phi-3-mini's shape (3072
//   hidden, 32 heads, 8192 inner, vocabulary 32064, su RoPE) cut to IVL_LLM_LAYERS (4) layers;
//   IVL_TILES (6: 2 tiles of a picture + 4 video frames) × 256 image tokens + IVL_TEXT (512) text
//   tokens, the loss on the last 32; LoRA r 8, alpha 32 on ms-swift's default targets (every Linear
//   of the LLM and mlp1); AdamW. The same weights, LoRA adapters and inputs on both sides (Python
//   builds them), the losses compared step by step. IVL_GC=1 turns gradient checkpointing on on
//   both sides (ms-swift's default; off here: it trades time for memory the same way on both).
// Needs INTERNVL_SRC (a folder holding InternVL's internvl_chat/internvl, see
// scripts/fixtures/internvl2.py) and EMOTORCH_PYTHON with torch, transformers, peft.
// IVL_WARMUP [1] warm-up steps each, IVL_RUNS [2] timed steps each.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const int = (k, d) => Number.parseInt(env(k, String(d)), 10);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const msSince = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
function peakRssKb() {
  try {
    return Number(fs.readFileSync('/proc/self/status', 'utf8').match(/VmHWM:\s*(\d+)/)[1]);
  } catch {
    return null;
  }
}

function worker(cfg) {
  const py = spawn(env('EMOTORCH_PYTHON', 'python3'), [path.join(here, 'internvl_worker.py'), JSON.stringify(cfg)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const queue = [],
    waiting = [];
  readline.createInterface({ input: py.stdout }).on('line', (l) => (waiting.length ? waiting.shift().resolve(l) : queue.push(l)));
  py.on('exit', (code) => waiting.splice(0).forEach((w) => w.reject(new Error(`the Python worker exited (${code})`))));
  const next = async () => JSON.parse(await new Promise((resolve, reject) => (queue.length ? resolve(queue.shift()) : waiting.push({ resolve, reject }))));
  return {
    next,
    trial: () => {
      py.stdin.write('trial\n');
      return next();
    },
    end: () => py.stdin.end(),
  };
}

export const cases = {
  internvl: {
    async run({ threads }) {
      if (!process.env.INTERNVL_SRC) {
        console.log("\n[internvl] skipped: set INTERNVL_SRC to a folder holding InternVL's internvl_chat/internvl (see scripts/fixtures/internvl2.py)");
        return;
      }
      const half = 3072 / 32 / 2;
      const cfg = {
        threads,
        seed: 0,
        dir: fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-bench-ivl-')),
        img_context: 32063,
        vision: {
          hidden_size: 1024,
          intermediate_size: 4096,
          num_hidden_layers: int('IVL_VIT_LAYERS', 4),
          num_attention_heads: 16,
          num_channels: 3,
          patch_size: 14,
          image_size: 448,
          qkv_bias: true,
          qk_normalization: false,
          norm_type: 'layer_norm',
          hidden_act: 'gelu',
          layer_norm_eps: 1e-6,
          drop_path_rate: 0,
          initializer_factor: 1,
        },
        llm: {
          vocab_size: 32064,
          hidden_size: 3072,
          intermediate_size: 8192,
          num_hidden_layers: int('IVL_LLM_LAYERS', 4),
          num_attention_heads: 32,
          num_key_value_heads: 32,
          max_position_embeddings: 131072,
          original_max_position_embeddings: 4096,
          rope_theta: 10000.0,
          rms_norm_eps: 1e-5,
          sliding_window: 262144,
          rope_scaling: {
            type: 'su',
            short_factor: Array.from({ length: half }, (_, i) => 1 + i / 100),
            long_factor: Array.from({ length: half }, (_, i) => 1 + i / 4),
          },
          bos_token_id: 1,
          eos_token_id: 32000,
          pad_token_id: 32000,
          tie_word_embeddings: false,
        },
        tiles: int('IVL_TILES', 6),
        tokens_per_tile: 256,
        text_tokens: int('IVL_TEXT', 512),
        label_tokens: 32,
        lora_regex: et.systems.m2se.INTERNVL_LORA_TARGETS,
        gradient_checkpointing: env('IVL_GC', '0') === '1',
      };
      const warmup = int('IVL_WARMUP', 1),
        runs = int('IVL_RUNS', 2);
      console.log(
        `\n[internvl] one M2SE LoRA SFT step: InternViT-300M shape × ${cfg.vision.num_hidden_layers} layers (frozen) + mlp1 + Phi-3-mini shape × ${cfg.llm.num_hidden_layers} layers; ` +
          `${cfg.tiles} tiles × 256 + ${cfg.text_tokens} text tokens; LoRA r 8 alpha 32 on swift's targets; AdamW; float32; gradient checkpointing ${cfg.gradient_checkpointing ? 'on' : 'off'}; ${threads} threads each`,
      );
      const py = worker(cfg);
      try {
        const ready = await py.next();
        const model = await et.systems.m2se.InternVL.fromPretrained(cfg.dir, { imgContextTokenId: cfg.img_context });
        et.nn.applyLora(model, { r: 8, alpha: 32, dropout: 0, targetModules: cfg.lora_regex });
        const lora = (await et.io.loadSafetensors(path.join(cfg.dir, 'lora.safetensors'))).tensors;
        await model.loadStateDict(lora, { strict: false });
        const trainable = model.trainableParameters();
        const n = trainable.reduce((a, p) => a + p.numel, 0);
        if (n !== ready.trainable) throw new Error(`trainable parameters: emotorch ${n}, Python ${ready.trainable}`);
        if (cfg.gradient_checkpointing) model.setGradientCheckpointing(true);
        model.train();
        const io = (await et.io.loadSafetensors(path.join(cfg.dir, 'inputs.safetensors'))).tensors;
        const inputs = { inputIds: io.get('input_ids'), labels: io.get('labels'), pixelValues: io.get('pixel_values') };
        const opt = new et.optim.AdamW(trainable, { lr: 1e-4, weightDecay: 0.1 });
        const step = async () => {
          const out = await model.forward(inputs);
          await out.loss.backward();
          await opt.step();
          opt.zeroGrad();
          const v = out.loss.item();
          out.logits.dispose();
          out.loss.dispose();
          return v;
        };
        console.log(
          `  ${ready.lora_layers} LoRA layers, ${n} trainable parameters on both sides; sequence ${ready.seq}; ${warmup} warm-up + ${runs} timed steps each; Python: torch ${ready.torch}, peft, remote code`,
        );
        const ours = [],
          theirs = [],
          losses = [];
        for (let i = 0; i < warmup + runs; i++) {
          const t0 = process.hrtime.bigint();
          const l = await step();
          const t = msSince(t0);
          const r = await py.trial();
          losses.push([l, r.loss]);
          console.log(
            `  ${i < warmup ? 'warm-up' : 'step'} ${i + 1}: emotorch ${t.toFixed(0)} ms (loss ${l.toFixed(6)}), Python ${r.ms.toFixed(0)} ms (loss ${r.loss.toFixed(6)})`,
          );
          if (i >= warmup) {
            ours.push(t);
            theirs.push(r.ms);
            cfg.pyPeak = r.peak_rss_kb;
          }
        }
        const d = Math.max(...losses.map(([a, b]) => Math.abs(a - b)));
        console.log(`  max |loss emotorch − Python| over ${losses.length} steps: ${d.toExponential(2)}`);
        console.log(`median: emotorch ${median(ours).toFixed(0)} ms/step, Python ${median(theirs).toFixed(0)} ms/step`);
        console.log(`ratio emotorch/Python (time): ${(median(ours) / median(theirs)).toFixed(3)}`);
        const ourPeak = peakRssKb();
        if (ourPeak && cfg.pyPeak)
          console.log(
            `peak RSS: emotorch ${(ourPeak / 1024).toFixed(0)} MiB, Python ${(cfg.pyPeak / 1024).toFixed(0)} MiB (ratio ${(ourPeak / cfg.pyPeak).toFixed(2)})`,
          );
      } finally {
        py.end();
        fs.rmSync(cfg.dir, { recursive: true, force: true });
      }
    },
  },
};
