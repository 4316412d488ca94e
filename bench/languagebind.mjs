// `npm run bench -- languagebind`: LanguageBind's video side in emotorch against the Python
// original's computation (bench/languagebind_worker.py), one process each, taking turns:
//   forward  the video tower (ViT-L/14 shape: 1024 hidden, 16 heads, 4096 inner, patch 14, 224²,
//            gelu, temporal attention over 8 frames, 768 projection) cut to LB_LAYERS (4) layers,
//            batch 2 × 8 frames, float32, eval, no grad; the same weights on both sides (Python
//            builds them and saves them as safetensors, emotorch loads them) and the outputs
//            checked before timing.
//   train    one training step: the same tower with LoRA (r 16, alpha 16, dropout 0) on
//            temporal_attn.{q,k,v,out}_proj (LanguageBind's video LoRA targets; peft's
//            get_peft_model on the encoder in Python) + Linear(768, 7, bias=False) on the
//            L2-normalised projection, cross-entropy on 2 labels, backward, AdamW on the adapters
//            and the head. Same initial adapters on both sides; the losses are compared step by step.
//   decode   8 frames (LanguageBind's np.linspace(0, n − 1, 8) indices) of generated 10 s and 3 s
//            640×360 25 fps h264 + aac clips: et.vision.readVideoFrames (FFmpeg's libraries in the
//            process; the ffmpeg executables' figures beside) against PyAV (decord, the original's
//            reader, is not installable here). Frames are checked equal to PyAV's first.
// Prints one table: case, emotorch ms, Python ms, ratio emotorch/Python (median of the trials).
// Order: decode, forward, train.
// The first call of each side is the check (outputs, losses, frames) and serves as its warm-up.
// Environment (defaults in brackets): LB_CASES [forward,train,decode], LB_LAYERS [4], LB_BATCH [2],
// LB_FRAMES [8], LB_IMAGE [224], LB_WARMUP [0] (warm-up calls beyond the check), LB_RUNS [2]
// (forward trials), LB_TRAIN_RUNS [1], LB_DECODE_RUNS [10], LB_ATTN [eager] (the Python side's
// attention: eager, as the original's copy of CLIPAttention, or sdpa), EMOTORCH_PYTHON (the Python
// with torch, transformers, peft, av). The defaults take about 3 minutes on 2 busy cores; raise
// LB_RUNS / LB_TRAIN_RUNS for steadier medians. LB_FLOOR [1]: after the float32 train steps, one more
// step on each side under its op profiler for the product floor (floor.mjs); 0 leaves it out.
// LB_OPS [0]: 1 prints that step's op self times side by side (with --bf16 too).
// Threads: run.mjs's --threads (default: the machine's cores), the same on both sides.
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { fileURLToPath } from 'url';
import * as et from 'emotorch';
import { printOps, products, productFloor } from './floor.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
const env = (k, d) => (process.env[k] === undefined || process.env[k] === '' ? d : process.env[k]);
const int = (k, d) => Number.parseInt(env(k, String(d)), 10);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const now = () => process.hrtime.bigint();
const msSince = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** The Python side of one case: started once, one JSON line per request. */
function worker(caseName, cfg) {
  const py = spawn(env('EMOTORCH_PYTHON', 'python3'), [path.join(here, 'languagebind_worker.py'), caseName, JSON.stringify(cfg)], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const queue = [],
    waiting = [];
  readline.createInterface({ input: py.stdout }).on('line', (l) => (waiting.length ? waiting.shift().resolve(l) : queue.push(l)));
  py.on('exit', (code) => waiting.splice(0).forEach((w) => w.reject(new Error(`the Python worker (${caseName}) exited (${code})`))));
  const next = async () => JSON.parse(await new Promise((resolve, reject) => (queue.length ? resolve(queue.shift()) : waiting.push({ resolve, reject }))));
  return {
    next,
    trial: (arg = '') => {
      py.stdin.write(`trial ${arg}\n`);
      return next();
    },
    profile: () => {
      py.stdin.write('profile\n');
      return next();
    },
    end: () => py.stdin.end(),
  };
}

async function load(file) {
  return (await et.io.loadSafetensors(file)).tensors;
}
function maxDiff(a, b) {
  const d = a.sub(b).abs();
  const m = d.max().item();
  d.dispose();
  return m;
}
function dispose(...ts) {
  for (const t of ts) if (t && !t.isDisposed) t.dispose();
}

function towerConfig() {
  return {
    hidden_size: 1024,
    intermediate_size: 4096,
    num_hidden_layers: int('LB_LAYERS', 4),
    num_attention_heads: 16,
    image_size: int('LB_IMAGE', 224),
    patch_size: 14,
    hidden_act: 'gelu',
    add_time_attn: true,
    num_frames: int('LB_FRAMES', 8),
    tube_size: 0,
    projection_dim: 768,
  };
}

function describeTower(t, batch) {
  return (
    `ViT-L/14 shape × ${t.num_hidden_layers} layers (hidden ${t.hidden_size}, ${t.num_attention_heads} heads, inner ${t.intermediate_size}, ${t.hidden_act}, temporal attention), ` +
    `batch ${batch} × ${t.num_frames} frames × ${t.image_size}², projection ${t.projection_dim}, float32`
  );
}

const rows = [];
// The machine's speed drifts (shared cores): each pair of back-to-back calls is also compared on its
// own, and the median of those ratios printed beside the ratio of the medians.
function row(name, ours, theirs, note = '') {
  const pairs = ours.map((o, i) => o / theirs[i]);
  const pairNote = `pairs ${pairs.map((r) => r.toFixed(2)).join(' ')}`;
  rows.push({ name, ours: median(ours), theirs: median(theirs), note: note ? `${note}; ${pairNote}` : pairNote });
  console.log(
    `  median: emotorch ${median(ours).toFixed(1)} ms, Python ${median(theirs).toFixed(1)} ms, ratio ${(median(ours) / median(theirs)).toFixed(3)} (median of the pairs' ratios ${median(pairs).toFixed(3)})`,
  );
}

async function forwardCase(common) {
  const tower = towerConfig(),
    batch = int('LB_BATCH', 2),
    warmup = int('LB_WARMUP', 0),
    runs = int('LB_RUNS', 2);
  console.log(`\n[forward] video tower forward, eval, no grad: ${describeTower(tower, batch)}`);
  const py = worker('forward', { ...common, tower, batch });
  const ready = await py.next();
  const model = et.nn.ClipVisionModel.create(tower, { withProjection: true }).eval();
  const report = await model.loadStateDict(await load(path.join(common.dir, 'forward_weights.safetensors')), { strict: true });
  if (report.missing.length || report.unexpected.length) throw new Error(`forward weights: missing ${report.missing}, unexpected ${report.unexpected}`);
  const io = await load(path.join(common.dir, 'forward_io.safetensors'));
  const pixelValues = io.get('pixel_values');
  const run = () => et.noGrad(() => model.forward({ pixelValues }));
  const out = await run();
  const diffs = {
    lastHiddenState: maxDiff(out.lastHiddenState, io.get('last_hidden_state')),
    poolerOutput: maxDiff(out.poolerOutput, io.get('pooler_output')),
    imageEmbeds: maxDiff(out.imageEmbeds, io.get('image_embeds')),
  };
  const worst = Math.max(...Object.values(diffs));
  console.log(
    `  max |emotorch − Python|: ${Object.entries(diffs)
      .map(([k, v]) => `${k} ${v.toExponential(2)}`)
      .join(', ')} (${worst <= 1e-4 ? 'agree' : 'DIFFER'} at 1e-4)`,
  );
  dispose(out.lastHiddenState, out.poolerOutput, out.imageEmbeds);
  if (!(worst <= 1e-3)) throw new Error(`the towers disagree (max difference ${worst}); not timing them`);
  console.log(
    `  warm-up: that call (Python: its reference forward)${warmup ? ` + ${warmup}` : ''}; ${runs} alternating runs each; Python: torch ${ready.torch}, ${ready.threads} threads, attention ${common.attn}`,
  );
  for (let i = 0; i < warmup; i++) {
    const o = await run();
    dispose(o.lastHiddenState, o.poolerOutput, o.imageEmbeds);
    await py.trial();
  }
  const ours = [],
    theirs = [];
  for (let i = 0; i < runs; i++) {
    const t0 = now();
    const o = await run();
    ours.push(msSince(t0));
    dispose(o.lastHiddenState, o.poolerOutput, o.imageEmbeds);
    theirs.push((await py.trial()).ms);
    console.log(`  run ${i + 1}: emotorch ${ours[i].toFixed(1)} ms, Python ${theirs[i].toFixed(1)} ms`);
  }
  py.end();
  row(`tower forward (${tower.num_hidden_layers} layers, ${batch}×${tower.num_frames}×${tower.image_size}²)`, ours, theirs);
  model.dispose?.();
  return worst;
}

/** `npm run bench -- languagebind --bf16`: the train case's forward under bfloat16 autocast. */
const BF16 = process.argv.includes('--bf16');

async function trainCase(common) {
  const tower = towerConfig(),
    batch = int('LB_BATCH', 2),
    warmup = 1 + int('LB_WARMUP', 0),
    runs = int('LB_TRAIN_RUNS', 1);
  const lora = { r: 16, alpha: 16, dropout: 0, targets: ['temporal_attn.q_proj', 'temporal_attn.k_proj', 'temporal_attn.v_proj', 'temporal_attn.out_proj'] };
  const classes = 7,
    labels = Array.from({ length: batch }, (_, i) => (3 * i + 1) % classes),
    lr = 1e-3,
    weightDecay = 0.01;
  console.log(
    `\n[train] one LoRA training step: ${describeTower(tower, batch)}; LoRA r ${lora.r}, alpha ${lora.alpha} on temporal_attn.{q,k,v,out}_proj; ` +
      `Linear(${tower.projection_dim}, ${classes}, bias=False) on the L2-normalised embedding; cross-entropy, backward, AdamW (lr ${lr}, weight decay ${weightDecay})`,
  );
  if (BF16) console.log('  --bf16: the forward under bfloat16 autocast on both sides (parameters float32), the loss in float32');
  const py = worker('train', { ...common, tower, batch, lora, classes, labels, lr, weight_decay: weightDecay, bf16: BF16 });
  const ready = await py.next();
  const model = et.nn.ClipVisionModel.create(tower, { withProjection: true });
  // applyLora matches full layer names or last components ('q_proj' alone would hit self_attn too).
  const targets = [];
  for (let i = 0; i < tower.num_hidden_layers; i++) for (const t of lora.targets) targets.push(`vision_model.encoder.layers.${i}.${t}`);
  et.nn.applyLora(model, { r: lora.r, alpha: lora.alpha, dropout: lora.dropout, targetModules: targets });
  const report = await model.loadStateDict(await load(path.join(common.dir, 'train_weights.safetensors')), { strict: true });
  if (report.missing.length || report.unexpected.length) throw new Error(`train weights: missing ${report.missing}, unexpected ${report.unexpected}`);
  const head = et.nn.Linear.create({ in_features: tower.projection_dim, out_features: classes, bias: false });
  await head.loadStateDict(await load(path.join(common.dir, 'train_head.safetensors')), { strict: true });
  model.train();
  head.train();
  const params = [...model.trainableParameters(), ...head.parameters()];
  const trainable = params.reduce((a, p) => a + p.numel, 0);
  if (trainable !== ready.trainable) throw new Error(`trainable parameters: emotorch ${trainable}, Python ${ready.trainable}`);
  const opt = new et.optim.AdamW(params, { lr, weightDecay });
  const io = await load(path.join(common.dir, 'train_io.safetensors'));
  const pixelValues = io.get('pixel_values'),
    y = io.get('labels');
  // --bf16: the forward (tower, normalisation, head) under bfloat16 autocast, the loss in float32,
  // as the Python side's torch.autocast('cpu', dtype=torch.bfloat16)
  const forward = async () => {
    const o = await model.forward({ pixelValues });
    const n = o.imageEmbeds.norm(2, -1, true);
    const e = o.imageEmbeds.div(n);
    return { o, n, e, logits: await head.forward(e) };
  };
  async function step() {
    const { o, n, e, logits: raw } = BF16 ? await et.autocast({ device: 'cpu', dtype: 'bfloat16' }, forward) : await forward();
    const logits = raw.dtype === 'float32' ? raw : raw.to({ dtype: 'float32' });
    const loss = et.functional.crossEntropy(logits, y);
    await loss.backward();
    await opt.step();
    opt.zeroGrad();
    const v = loss.item();
    dispose(o.lastHiddenState, o.poolerOutput, o.imageEmbeds, n, e, raw, logits, loss);
    return v;
  }
  console.log(
    `  ${ready.lora_layers} LoRA layers, ${trainable} trainable parameters on both sides; ${warmup} warm-up + ${runs} alternating steps each; Python: torch ${ready.torch}, peft`,
  );
  const losses = [];
  for (let i = 0; i < warmup; i++) {
    const t0 = now();
    const l = await step();
    const t = msSince(t0);
    const r = await py.trial();
    losses.push([l, r.loss]);
    console.log(`  warm-up step ${i + 1}: emotorch ${t.toFixed(1)} ms (loss ${l.toFixed(6)}), Python ${r.ms.toFixed(1)} ms (loss ${r.loss.toFixed(6)})`);
  }
  const ours = [],
    theirs = [];
  for (let i = 0; i < runs; i++) {
    const t0 = now();
    const l = await step();
    ours.push(msSince(t0));
    const r = await py.trial();
    theirs.push(r.ms);
    losses.push([l, r.loss]);
    console.log(`  step ${i + 1}: emotorch ${ours[i].toFixed(1)} ms (loss ${l.toFixed(6)}), Python ${theirs[i].toFixed(1)} ms (loss ${r.loss.toFixed(6)})`);
  }
  // float32: the product floor (floor.mjs) from one more step on each side under its op profiler;
  // LB_OPS=1 (float32 or --bf16): the ops' self time of that step side by side
  const opsTable = env('LB_OPS', '0') === '1';
  if ((!BF16 && env('LB_FLOOR', '1') !== '0') || opsTable) {
    const profiledStep = async (recordShapes) => {
      await et.profiler.start({ recordShapes });
      await step();
      return et.profiler.stop();
    };
    const timed = (await profiledStep(false)).keyAverages().map((o) => ({ name: o.name, calls: o.calls, self_ms: o.selfMs }));
    const shaped = (await profiledStep(true)).keyAverages({ groupByShapes: true }).map((o) => ({ name: o.name, shapes: o.shapes, calls: o.calls }));
    const prof = await py.profile();
    if (opsTable) printOps(timed, prof.ops, 1, 20);
    if (!BF16) productFloor(products(timed, shaped, 1), products(prof.ops, prof.shaped, 1), median(theirs), median(ours), common.threads);
  }
  py.end();
  const lossDiff = Math.max(...losses.map(([a, b]) => Math.abs(a - b)));
  console.log(
    `  losses over ${losses.length} steps: emotorch ${losses[0][0].toFixed(6)} → ${losses.at(-1)[0].toFixed(6)}, Python ${losses[0][1].toFixed(6)} → ${losses.at(-1)[1].toFixed(6)}; max |difference| ${lossDiff.toExponential(2)}`,
  );
  row(`LoRA train step (${tower.num_hidden_layers} layers, ${batch}×${tower.num_frames}×${tower.image_size}²)`, ours, theirs);
  return lossDiff;
}

async function decodeCase(common) {
  const numFrames = 8,
    runs = int('LB_DECODE_RUNS', 10),
    warmup = int('LB_WARMUP', 0);
  console.log(
    `\n[decode] ${numFrames} frames by index (LanguageBind's np.linspace(0, n − 1, ${numFrames})) of generated 640×360 25 fps h264 + aac clips (x264's defaults: B-frames, keyframes 250 apart), rgb24`,
  );
  console.log(
    "  decord (LanguageBind's reader) is not installable here: the Python side is PyAV (HF's read_video_pyav: decode from the start, keep the wanted frames)",
  );
  console.log(
    `  emotorch reads through ${et.vision.libavAvailable() ? "FFmpeg's libraries in the process (backend 'auto')" : "the ffmpeg executables (FFmpeg's libraries not found)"}; the executables' figures are shown beside it`,
  );
  let worst = 0;
  for (const seconds of [10, 3]) {
    const file = path.join(common.dir, `clip${seconds}.mp4`);
    execFileSync('ffmpeg', [
      '-nostdin',
      '-v',
      'error',
      '-y',
      '-f',
      'lavfi',
      '-i',
      'testsrc2=size=640x360:rate=25',
      '-f',
      'lavfi',
      '-i',
      'sine=frequency=440:sample_rate=44100',
      '-t',
      String(seconds),
      '-c:v',
      'libx264',
      '-pix_fmt',
      'yuv420p',
      '-c:a',
      'aac',
      '-threads',
      String(common.threads),
      file,
    ]);
    const py = worker('decode', { ...common, file, num_frames: numFrames });
    const ready = await py.next();
    const read = (backend = 'auto') => et.vision.readVideoFrames(file, { numFrames, backend });
    const first = await read();
    if (first.indices.join() !== ready.indices.join())
      throw new Error(`frame indices: emotorch ${first.indices} (of ${first.frameCount}), PyAV ${ready.indices} (of ${ready.frame_count})`);
    const theirsFrames = (await load(path.join(common.dir, 'decode_frames.safetensors'))).get('frames').to({ dtype: 'float32' });
    const cli = await read('ffmpeg');
    let frameDiff = 0;
    for (const r of [first, cli]) {
      const oursFrames = r.frames.permute([1, 2, 3, 0]).to({ dtype: 'float32' }); // (3, T, H, W) → (T, H, W, 3)
      const d = oursFrames.sub(theirsFrames).abs();
      const diff = d.max().item(),
        differing = d.gt(0).float().mean().item();
      console.log(
        `  ${seconds} s clip, ${r.backend}: frames ${r.indices.join(', ')} of ${r.frameCount}; max |emotorch − PyAV| ${diff} (of 255) on ${(100 * differing).toFixed(2)} % of the values; PyAV ${ready.pyav}`,
      );
      frameDiff = Math.max(frameDiff, diff);
      dispose(d, oursFrames, r.frames);
    }
    dispose(theirsFrames);
    await py.trial('auto'); // the default reader ran in the worker's setup
    for (let i = 0; i < warmup; i++) {
      dispose((await read()).frames);
      dispose((await read('ffmpeg')).frames);
      await py.trial('default');
      await py.trial('auto');
    }
    const ours = [],
      oursCli = [],
      pyDefault = [],
      pyAuto = [];
    for (let i = 0; i < runs; i++) {
      let t0 = now();
      dispose((await read()).frames);
      ours.push(msSince(t0));
      t0 = now();
      dispose((await read('ffmpeg')).frames);
      oursCli.push(msSince(t0));
      pyDefault.push((await py.trial('default')).ms);
      pyAuto.push((await py.trial('auto')).ms);
    }
    py.end();
    const fps = (ms) => (numFrames / (median(ms) / 1000)).toFixed(0);
    console.log(
      `  ${seconds} s clip, ${runs} alternating reads each (emotorch's process: ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB resident): emotorch ${fps(ours)} frames/s ` +
        `(executables ${fps(oursCli)}), PyAV (default threading) ${fps(pyDefault)} frames/s, PyAV (thread_type AUTO, ${common.threads} threads) ${fps(pyAuto)} frames/s`,
    );
    row(`decode ${numFrames} frames, ${seconds} s clip vs PyAV default`, ours, pyDefault, `${fps(ours)} vs ${fps(pyDefault)} frames/s`);
    row(`decode ${numFrames} frames, ${seconds} s clip vs PyAV AUTO threads`, ours, pyAuto, `${fps(ours)} vs ${fps(pyAuto)} frames/s`);
    row(`  (ffmpeg executables, ${seconds} s clip vs PyAV default)`, oursCli, pyDefault, `${fps(oursCli)} vs ${fps(pyDefault)} frames/s`);
    worst = Math.max(worst, frameDiff);
  }
  return worst;
}

function cpuName() {
  try {
    return fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? os.cpus()[0]?.model ?? '?';
  } catch {
    return os.cpus()[0]?.model ?? '?';
  }
}

export const cases = {
  languagebind: {
    async run({ threads }) {
      const t0 = now();
      const which = env('LB_CASES', 'forward,train,decode')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-bench-lb-'));
      const common = { dir, threads, seed: 0, attn: env('LB_ATTN', 'eager') };
      console.log(
        `\n[languagebind] emotorch ${et.versions.emotorch} on libtorch ${et.versions.libtorch}; ${cpuName()}, ${threads} threads each side` +
          `; ONEDNN_MAX_CPU_ISA=${process.env.ONEDNN_MAX_CPU_ISA ?? '(unset)'}; EMOTORCH_CPU_LINEAR=${process.env.EMOTORCH_CPU_LINEAR ?? '(unset)'}`,
      );
      if (process.env.ONEDNN_MAX_CPU_ISA)
        console.log(
          "ONEDNN_MAX_CPU_ISA caps oneDNN: emotorch's float32 linear layers and both sides' patch-embedding conv; Python's float32 matmuls run on MKL, which it does not affect",
        );
      console.log(
        `et.systems.semeval.LanguageBindClassifier: ${et.systems?.LanguageBindClassifier ? 'present (the train case still builds the step from et.nn pieces)' : 'not in this build'}`,
      );
      const checks = {};
      try {
        // decode first: ffmpeg is spawned by fork, which costs more from a process that holds the
        // trained tower's gigabytes (590 ms → 1300 ms per read with 4 GiB resident).
        if (which.includes('decode')) checks.decode = await decodeCase(common);
        if (which.includes('forward')) checks.forward = await forwardCase(common);
        if (which.includes('train')) checks.train = await trainCase(common);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
      const w = Math.max(44, ...rows.map((r) => r.name.length));
      console.log(`\nLanguageBind: emotorch vs Python (median ms; ratio = emotorch / Python, < 1 is faster), ${threads} threads`);
      console.log(`${'case'.padEnd(w)}  ${'ours ms'.padStart(10)}  ${'python ms'.padStart(10)}  ${'ratio'.padStart(6)}`);
      for (const r of rows) {
        if (r.skipped) console.log(`${r.name.padEnd(w)}  ${'skipped:'.padStart(10)}  ${r.skipped}`);
        else
          console.log(
            `${r.name.padEnd(w)}  ${r.ours.toFixed(1).padStart(10)}  ${r.theirs.toFixed(1).padStart(10)}  ${(r.ours / r.theirs).toFixed(3).padStart(6)}${r.note ? `   ${r.note}` : ''}`,
          );
      }
      const fmt = (v) => (typeof v === 'number' ? v.toExponential(2) : String(v));
      if ('forward' in checks) console.log(`max |ours − python| of the tower outputs: ${fmt(checks.forward)}`);
      if ('train' in checks) console.log(`max |ours − python| of the step losses: ${fmt(checks.train)}`);
      if ('decode' in checks && checks.decode !== undefined) console.log(`max |ours − PyAV| of the decoded frames: ${checks.decode} (uint8)`);
      console.log(`total ${(msSince(t0) / 1000).toFixed(0)} s`);
    },
  },
};
