// `npm run bench -- ddp`: data-parallel training of a RoBERTa-base shaped classifier (batch 8 of
// 64 tokens, AdamW, dropout on) on this machine's cores, four ways: one process with 2 threads
// vs 2 processes of 1 thread with DDP (Gloo over loopback), in emotorch (bench/ddp_worker.mjs,
// launched by emotorch-run) and in PyTorch (bench/ddp_torch.py, launched by torchrun). Prints
// steps/s of each and the ratios. Every configuration runs alone (they would share the cores).
import { spawn } from 'child_process';
import * as path from 'path';
import { fileURLToPath } from 'url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const python = process.env.EMOTORCH_PYTHON || 'python3';
const robertaBase = {
  vocab_size: 50265,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  max_position_embeddings: 514,
  type_vocab_size: 1,
  pad_token_id: 1,
};

function run(cmd, args, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.replace(/^\[rank0\]: /, '').startsWith('RESULT '));
      if (code !== 0 || !line) reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')} … exited with ${code}\n${out}`));
      else resolve(JSON.parse(line.replace(/^\[rank0\]: /, '').slice(7)));
    });
  });
}

export const cases = {
  ddp: {
    async run({ opt }) {
      const base = { model: robertaBase, labels: 4, batch: 8, tokens: opt('tokens', 64), warmup: opt('warmup', 2), steps: opt('steps', 6) };
      const procs = 2;
      const ws = path.join(here, 'ddp_worker.mjs'),
        pt = path.join(here, 'ddp_torch.py');
      const launcher = path.join(root, 'dist', 'cli', 'run.js');
      console.log(
        `\n[ddp] RoBERTa-base shaped classifier (${base.model.num_hidden_layers} layers, hidden ${base.model.hidden_size}, vocab ${base.model.vocab_size}), batch ${base.batch} x ${base.tokens} tokens, AdamW, dropout on`,
      );
      console.log(
        `${base.warmup} warm-up + ${base.steps} timed steps per configuration (median step time); 1 process x ${procs} threads vs ${procs} processes x 1 thread (DDP, Gloo, 127.0.0.1)`,
      );
      const configs = [
        ['emotorch 1 x 2 threads', () => run(process.execPath, [ws, JSON.stringify({ ...base, threads: procs })], { OMP_NUM_THREADS: String(procs) })],
        [
          'emotorch 2 x 1 thread DDP',
          () =>
            run(
              process.execPath,
              [launcher, '--nproc-per-node', String(procs), '--master-port', String(opt('port', 29531)), ws, JSON.stringify({ ...base, threads: 1 })],
              { EMOTORCH_DIST_CHECKS: '1' },
            ),
        ],
        // The same without the check that the ranks call the same collectives (one small all-gather per collective).
        [
          'emotorch DDP, checks off',
          () =>
            run(
              process.execPath,
              [launcher, '--nproc-per-node', String(procs), '--master-port', String(opt('port', 29531) + 2), ws, JSON.stringify({ ...base, threads: 1 })],
              { EMOTORCH_DIST_CHECKS: '0' },
            ),
        ],
        ['PyTorch 1 x 2 threads', () => run(python, [pt, JSON.stringify({ ...base, threads: procs })], { OMP_NUM_THREADS: String(procs) })],
        [
          'PyTorch 2 x 1 thread DDP',
          () =>
            run(
              python,
              [
                '-m',
                'torch.distributed.run',
                '--nproc-per-node',
                String(procs),
                '--master-port',
                String(opt('port', 29531) + 1),
                pt,
                JSON.stringify({ ...base, threads: 1 }),
              ],
              { OMP_NUM_THREADS: '1' },
            ),
        ],
      ];
      const res = {};
      for (const [name, f] of configs) {
        const r = await f();
        res[name] = r.ms_per_step;
        console.log(
          `  ${name.padEnd(28)} ${r.ms_per_step.toFixed(0)} ms/step  ${(1000 / r.ms_per_step).toFixed(3)} steps/s   (steps: ${r.all.map((x) => x.toFixed(0)).join(' ')})`,
        );
      }
      const sps = (k) => 1000 / res[k];
      console.log(
        `DDP speed-up over 1 process x ${procs} threads: emotorch ${(sps('emotorch 2 x 1 thread DDP') / sps('emotorch 1 x 2 threads')).toFixed(2)}x, PyTorch ${(sps('PyTorch 2 x 1 thread DDP') / sps('PyTorch 1 x 2 threads')).toFixed(2)}x`,
      );
      console.log(
        `collective checks (EMOTORCH_DIST_CHECKS, on by default): ${((res['emotorch 2 x 1 thread DDP'] / res['emotorch DDP, checks off'] - 1) * 100).toFixed(1)} % of the DDP step time`,
      );
      console.log(
        `emotorch/PyTorch steps/s: 1 x ${procs} threads ${(sps('emotorch 1 x 2 threads') / sps('PyTorch 1 x 2 threads')).toFixed(2)}, ${procs} x 1 thread DDP ${(sps('emotorch 2 x 1 thread DDP') / sps('PyTorch 2 x 1 thread DDP')).toFixed(2)}`,
      );
    },
  },
};
