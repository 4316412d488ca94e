// `npm run bench -- zero`: one full fine-tuning step of a LLaMA on 2 ranks (Gloo over 127.0.0.1,
// one thread each) at ZeRO stages 1, 2 and 3: emotorch's ShardedDataParallel (bench/zero_worker.mjs,
// launched by emotorch-run) beside PyTorch's own sharding on the same shapes (bench/zero_torch.py,
// launched by torchrun: ZeroRedundancyOptimizer + DDP for stage 1, FSDP SHARD_GRAD_OP / FULL_SHARD
// for 2 / 3). Both in bfloat16 with float32 master weights and reduction, AdamW, one batch of
// `--tokens` token ids per rank. Prints the median step time, each rank's peak RSS and the ratios.
// `--size tinyllama` (default: TinyLlama-1.1B's shapes), `medium` (~250M) or `small` (a quick check);
// `--stages 3` (at 1.1B on a 24 GB machine only stage 3 fits 2 ranks, on either side).
import { spawn } from 'child_process';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const python = process.env.EMOTORCH_PYTHON || 'python3';
const SIZES = {
  tinyllama: {
    vocab_size: 32000,
    hidden_size: 2048,
    intermediate_size: 5632,
    num_hidden_layers: 22,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
  },
  // about 250M parameters: every stage fits 2 ranks on a 24 GB machine (1.1B's stage 1 does not, on either side)
  medium: {
    vocab_size: 32000,
    hidden_size: 1024,
    intermediate_size: 2816,
    num_hidden_layers: 16,
    num_attention_heads: 16,
    num_key_value_heads: 4,
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-5,
  },
  small: {
    vocab_size: 4000,
    hidden_size: 512,
    intermediate_size: 1408,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 2,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
  },
};

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.on('exit', (code) => {
      // the ranks share the pipe: their lines can interleave
      const rows = [...out.matchAll(/RESULT (\{[^}]*\})/g)].map((m) => JSON.parse(m[1]));
      if (code !== 0 || rows.length < 2) reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')} … exited with ${code}\n${out}`));
      else resolve(rows.sort((a, b) => a.rank - b.rank));
    });
  });
}

const gib = (b) => (b / 2 ** 30).toFixed(2);
/** A string flag of the command line (run.mjs's opt reads numbers). */
const sopt = (k, d) => {
  const i = process.argv.indexOf(`--${k}`);
  return i >= 0 ? process.argv[i + 1] : d;
};

export const cases = {
  zero: {
    async run({ opt }) {
      const size = sopt('size', 'tinyllama');
      const model = SIZES[size];
      if (!model) throw new Error(`--size takes ${Object.keys(SIZES).join(' or ')}`);
      const stages = sopt('stages', '1,2,3').split(',').map(Number);
      const base = { model, batch: 1, tokens: opt('tokens', 128), warmup: opt('warmup', 1), steps: opt('steps', 2), threads: 1 };
      const launcher = path.join(root, 'dist', 'cli', 'run.js');
      let port = opt('port', 29561);
      console.log(
        `\n[zero] LLaMA ${size} (${model.num_hidden_layers} layers, hidden ${model.hidden_size}, vocab ${model.vocab_size}), batch 1 x ${base.tokens} tokens per rank, 2 ranks x 1 thread (Gloo, 127.0.0.1), bfloat16 + float32 masters, AdamW`,
      );
      console.log(
        `${base.warmup} warm-up + ${base.steps} timed steps per run (median); EMOTORCH_DIST_CHECKS=${process.env.EMOTORCH_DIST_CHECKS ?? '1 (default)'}`,
      );
      console.log('| stage | emotorch ms/step | PyTorch ms/step | time ratio | emotorch peak RSS / rank (GiB) | PyTorch peak RSS / rank (GiB) |');
      console.log('|---|---|---|---|---|---|');
      for (const stage of stages) {
        const cfg = JSON.stringify({ ...base, stage });
        const ours = await run(
          process.execPath,
          [launcher, '--nproc-per-node', '2', '--master-port', String(port++), path.join(here, 'zero_worker.mjs'), cfg],
          {
            OMP_NUM_THREADS: '1',
          },
        );
        const theirs = await run(
          python,
          ['-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port', String(port++), path.join(here, 'zero_torch.py'), cfg],
          {
            OMP_NUM_THREADS: '1',
          },
        );
        const o = ours[0].ms_per_step,
          t = theirs[0].ms_per_step;
        const torchName = stage === 1 ? 'ZeroRedundancyOptimizer' : stage === 2 ? 'FSDP SHARD_GRAD_OP' : 'FSDP FULL_SHARD';
        console.log(
          `| ${stage} (vs ${torchName}) | ${o.toFixed(0)} | ${t.toFixed(0)} | **${(o / t).toFixed(3)}** | ${ours.map((r) => gib(r.peak_rss)).join(' / ')} | ${theirs.map((r) => gib(r.peak_rss)).join(' / ')} |`,
        );
      }
    },
  },
};
