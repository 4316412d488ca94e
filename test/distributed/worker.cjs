// One rank of a distributed test: argv[2] is a JSON config { dist, out, scenario, ... }. Writes its
// result to `<out>.<RANK>.json` and exits 0, or prints the error (with its code) and exits 1.
'use strict';
const cfg = JSON.parse(process.argv[2]);
const et = require(cfg.dist);
et.setNumThreads(1);
const D = et.distributed;

async function values(t) {
  return Array.from(await t.data(), (v) => (typeof v === 'bigint' ? Number(v) : Number(v)));
}

const scenarios = {
  // Collectives over several dtypes and sizes; each rank's input is a function of (rank, i), so the
  // test computes the expected values itself.
  async collectives() {
    await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
    const r = D.rank(),
      w = D.worldSize();
    const out = { rank: r, world: w, cases: [] };
    const input = (dtype, n, salt) => {
      const v = Array.from({ length: n }, (_, i) => (((r + 1) * (i + 1) * 7 + salt * 3) % 23) - (dtype === 'uint8' || dtype === 'bool' ? 0 : 11));
      return dtype === 'bool'
        ? et.tensor(
            v.map((x) => x % 2 === 0),
            { dtype },
          )
        : et.tensor(v, { dtype });
    };
    for (const c of cfg.cases) {
      const t = input(c.dtype, c.n, c.salt ?? 0);
      let x = t;
      if (c.strided) x = t.reshape([c.n / 2, 2]).transpose(0, 1); // non-contiguous view, shape [2, n/2]
      if (process.env.DEBUG_CASES) process.stderr.write(`case ${JSON.stringify(c)}\n`);
      let got;
      if (c.op === 'broadcast') {
        await D.broadcast(x, c.src);
        got = await values(x);
      } else if (c.op === 'allGather') got = await Promise.all((await D.allGather(x)).map(values));
      else if (c.op === 'reduceScatter') got = await values(await D.reduceScatter(x, c.reduce));
      else {
        await D.allReduce(x, c.op);
        got = await values(x);
      }
      // a strided view writes through to its base
      out.cases.push({ ...c, got, base: c.strided ? await values(t) : undefined });
    }
    const b0 = Date.now();
    await D.barrier();
    out.barrierMs = Date.now() - b0;
    out.layout = D.glooLayoutReport ? D.glooLayoutReport() : null;
    await D.destroy();
    return out;
  },
};

// A small classifier composed in TypeScript-style JS: a frozen input layer (DDP leaves it out), a
// 2-layer MLP and an optional unused branch.
class Net extends et.nn.Module {
  constructor(withUnused, headOut = 5) {
    super();
    this.inp = this.registerModule('inp', et.nn.Linear.create({ in_features: 12, out_features: 16 }));
    this.inp.freeze();
    this.body = this.registerModule('body', et.nn.Mlp.create({ sizes: [16, 24, 24] }));
    this.head = this.registerModule('head', et.nn.Linear.create({ in_features: 24, out_features: headOut }));
    if (withUnused) this.spare = this.registerModule('spare', et.nn.Linear.create({ in_features: 24, out_features: 5 }));
  }
  async forward(b) {
    const h = await this.body.forward(await this.inp.forward(b.x));
    const logits = await this.head.forward(h);
    return { logits, loss: et.functional.crossEntropy(logits, b.y) };
  }
}

// The data of step s: the full batch of 8 (every rank makes the same), of which rank r takes rows
// [r*per, (r+1)*per).
function batchOf(step, n, lo, hi) {
  et.manualSeed(1000 + step);
  const x = et.randn([n, 12]);
  const y = et.randint(0, 5, [n]);
  return { x: x.slice(0, lo, hi), y: y.slice(0, lo, hi) };
}

async function flatGrads(m) {
  const out = [];
  for (const [n, p] of m.namedParameters()) out.push([n, p.grad ? Array.from(await p.grad.data()) : null]);
  return out;
}
async function flatWeights(m) {
  const out = [];
  for (const [n, p] of m.namedParameters()) out.push([n, Array.from(await p.data())]);
  return out;
}
function maxDiff(a, b) {
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i][0] !== b[i][0]) throw new Error(`name mismatch ${a[i][0]} vs ${b[i][0]}`);
    if ((a[i][1] === null) !== (b[i][1] === null)) throw new Error(`grad presence differs for ${a[i][0]}`);
    if (a[i][1] === null) continue;
    for (let k = 0; k < a[i][1].length; k++) d = Math.max(d, Math.abs(a[i][1][k] - b[i][1][k]));
  }
  return d;
}

scenarios.ddp = async function ddp() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank(),
    w = D.worldSize();
  const total = 8,
    per = total / w,
    steps = cfg.steps ?? 20;
  et.manualSeed(100 + r); // different initial weights per rank: DDP must copy rank 0's
  const model = new Net(false);
  const before = await flatWeights(model);
  const ddp = new et.nn.DistributedDataParallel(model, { bucketCapMb: cfg.bucketCapMb ?? 25 });
  await ddp.ready;
  const opt = new et.optim.AdamW(ddp.trainableParameters(), { lr: 1e-2, weightDecay: 0.01 });
  const out = { rank: r, buckets: ddp.buckets(), gradDiffs: [], accumDiff: null, wrapped: await flatWeights(model) };
  // The single-process reference (rank 0 only): same initial weights, the whole batch of 8.
  let ref = null,
    refOpt = null;
  if (r === 0) {
    et.manualSeed(100);
    ref = new Net(false);
    refOpt = new et.optim.AdamW(ref.trainableParameters(), { lr: 1e-2, weightDecay: 0.01 });
    out.initDiff = maxDiff(await flatWeights(model), await flatWeights(ref));
  }
  for (let s = 0; s < steps; s++) {
    const { loss } = await ddp.forward(batchOf(s, total, r * per, (r + 1) * per));
    await loss.backward();
    if (ref) {
      const { loss: l2 } = await ref.forward(batchOf(s, total, 0, total));
      await l2.backward();
      out.gradDiffs.push(maxDiff(await flatGrads(model), await flatGrads(ref)));
      await refOpt.step();
      refOpt.zeroGrad();
    }
    await opt.step();
    opt.zeroGrad();
  }
  out.weights = await flatWeights(model);
  if (ref) out.weightDiff = maxDiff(out.weights, await flatWeights(ref));
  // noSync: per rank two micro-batches of per/2, the first without averaging, then one synced
  // backward: the gradients are those of the whole batch of 8 (losses scaled by 1/2).
  const half = per / 2;
  await ddp.noSync(async () => {
    const { loss } = await ddp.forward(batchOf(99, total, r * per, r * per + half));
    await loss.mul(0.5).backward();
  });
  const { loss } = await ddp.forward(batchOf(99, total, r * per + half, (r + 1) * per));
  await loss.mul(0.5).backward();
  out.accumGrads = await flatGrads(model);
  if (ref) {
    // load the DDP model's current weights into ref so both see the same point
    await ref.loadStateDict(model.stateDict());
  }
  // Rank 0: the DDP model's gradients against the reference's on the whole batch of step s.
  async function refGradDiff(s) {
    if (!ref) return null;
    refOpt.zeroGrad();
    const { loss: l2 } = await ref.forward(batchOf(s, total, 0, total));
    await l2.backward();
    return maxDiff(await flatGrads(model), await flatGrads(ref));
  }
  out.accumDiff = await refGradDiff(99);
  // noSync around the forward only: its backward, run after noSync returned, still only
  // accumulates (the ranks' gradients differ); the next synced pass averages the sum.
  opt.zeroGrad();
  const o1 = await ddp.noSync(() => ddp.forward(batchOf(98, total, r * per, r * per + half)));
  await o1.loss.mul(0.5).backward();
  const local = await D.allGather(et.tensor((await flatGrads(model.head))[0][1]));
  out.deferredRankDiff = maxDiff([['w', Array.from(local[0].dataSync())]], [['w', Array.from(local[1].dataSync())]]);
  const o2 = await ddp.forward(batchOf(98, total, r * per + half, (r + 1) * per));
  await o2.loss.mul(0.5).backward();
  out.deferredAccumDiff = await refGradDiff(98);
  // A backward that fails after the gradients were bucketed and sent (a freed graph reached last):
  // the next forward/backward averages as usual.
  opt.zeroGrad();
  const leaf = et.randn([3]).requiresGrad_();
  const e = leaf.exp();
  await e.sum().backward(); // frees e's graph
  const dead = e.mean(); // created first: autograd reaches it after every parameter
  const { loss: lf } = await ddp.forward(batchOf(97, total, r * per, (r + 1) * per));
  try {
    await lf.add(dead).backward();
    out.failedBackward = 'no error';
  } catch (err) {
    out.failedBackward = err.code;
  }
  opt.zeroGrad();
  const { loss: la } = await ddp.forward(batchOf(96, total, r * per, (r + 1) * per));
  await la.backward();
  out.afterFailureDiff = await refGradDiff(96);
  out.frozenGrad = model.inp.parameters().map((p) => p.grad === null);
  out.before = before;
  await D.destroy();
  delete out.weights;
  delete out.accumGrads;
  return out;
};

// ShardedDataParallel (cfg.stage, cfg.offload, cfg.accum micro-batches, cfg.clip, cfg.model 'net'
// or 'llama') trained beside DDP (same initial weights, same data) and, on rank 0, one process on
// the whole batch; the gathered weights are compared after cfg.steps AdamW steps.
function tinyLlama() {
  return et.nn.LlamaForCausalLM.create({
    vocab_size: 61,
    hidden_size: 24,
    intermediate_size: 40,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    initializer_range: 0.2,
  });
}
function llamaBatch(step, n, lo, hi) {
  et.manualSeed(2000 + step);
  const ids = et.randint(0, 61, [n, 7]);
  return { inputIds: ids.slice(0, lo, hi), labels: ids.slice(0, lo, hi) };
}
function bytesOf(ts) {
  return ts.filter(Boolean).reduce((a, t) => a + t.numel * ({ float32: 4, float64: 8, bfloat16: 2, float16: 2, int64: 8 }[t.dtype] ?? 4), 0);
}

scenarios.zero = async function zero() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank(),
    w = D.worldSize();
  const total = 12,
    per = total / w,
    steps = cfg.steps ?? 20,
    accum = cfg.accum ?? 1;
  const llama = cfg.model === 'llama';
  const make = () => (llama ? tinyLlama() : new Net(false));
  const batch = llama ? llamaBatch : batchOf;
  const run = async (m, b, scale) => {
    const out = await m.forward(b);
    await (scale === 1 ? out.loss : out.loss.mul(scale)).backward();
  };
  et.manualSeed(100 + r); // different initial weights per rank: the wrapper must copy rank 0's
  const model = make();
  const zero = new D.ShardedDataParallel(model, { stage: cfg.stage, offload: !!cfg.offload });
  await zero.ready;
  const lr = cfg.lr ?? 1e-2;
  const opt = new et.optim.AdamW(zero.trainableParameters(), { lr, weightDecay: 0.01 });
  et.manualSeed(100 + r);
  const dmodel = make();
  const ddp = new et.nn.DistributedDataParallel(dmodel);
  await ddp.ready;
  const dopt = new et.optim.AdamW(ddp.trainableParameters(), { lr, weightDecay: 0.01 });
  let ref = null,
    refOpt = null;
  if (r === 0) {
    et.manualSeed(100);
    ref = make();
    refOpt = new et.optim.AdamW(ref.trainableParameters(), { lr, weightDecay: 0.01 });
  }
  const out = { rank: r, units: zero.units(), norms: [], ddpNorms: [] };
  const micro = per / accum;
  for (let s = 0; s < steps; s++) {
    for (let k = 0; k < accum; k++) {
      const b = batch(s, total, r * per + k * micro, r * per + (k + 1) * micro);
      await run(zero, b, 1 / accum);
      if (k < accum - 1) await ddp.noSync(() => run(ddp, b, 1 / accum));
      else await run(ddp, b, 1 / accum);
    }
    if (ref) await run(ref, batch(s, total, 0, total), 1);
    if (cfg.clip) {
      out.norms.push(await opt.clipGradNorm(cfg.clip));
      out.ddpNorms.push(await dopt.clipGradNorm(cfg.clip));
      if (ref) await refOpt.clipGradNorm(cfg.clip);
    }
    if (s === steps - 1) {
      // memory after the last backward and step (before zeroGrad): parameters, gradients, optimizer state
      await opt.step();
      await dopt.step();
      const zm = await zero.memory();
      out.zeroBytes = zm.parameters + zm.gradients + bytesOf([...opt.stateDict().tensors.values()]);
      const dp = ddp.trainableParameters();
      out.ddpBytes = bytesOf(dp) + bytesOf(dp.map((p) => p.grad)) + bytesOf([...dopt.stateDict().tensors.values()]);
    } else {
      await opt.step();
      await dopt.step();
    }
    opt.zeroGrad();
    dopt.zeroGrad();
    if (ref) {
      await refOpt.step();
      refOpt.zeroGrad();
    }
  }
  // The module used directly after the last step (not through the wrapper): its hooks bring the
  // whole parameters up to date first, so its outputs are the DDP model's.
  if (!llama) {
    const b = batchOf(77, total, r * per, (r + 1) * per);
    const a1 = await et.noGrad(() => model.forward(b));
    const a2 = await et.noGrad(() => dmodel.forward(b));
    out.directDiff = maxDiff([['l', Array.from(await a1.logits.data())]], [['l', Array.from(await a2.logits.data())]]);
  }
  const full = await zero.fullStateDict();
  out.fullKeys = [...full.keys()];
  if (r === 0) {
    const zw = [];
    for (const [n] of dmodel.namedParameters()) zw.push([n, Array.from(await full.get(n).data())]);
    out.ddpDiff = maxDiff(zw, await flatWeights(dmodel));
    out.refDiff = maxDiff(zw, await flatWeights(ref));
  }
  if (cfg.returnWhole && r === 0) {
    const whole = [];
    for (const [n, t] of full) whole.push([n, Array.from(await t.data())]);
    out.whole = whole;
  }
  // A sharded checkpoint written by these ranks; cfg.shardDir collects them for the resume test.
  if (cfg.shardDir) {
    await zero.saveShards(cfg.shardDir, { optimizer: opt });
    let sq = 0;
    for (const [k, t] of opt.stateDict().tensors) if (k.endsWith('exp_avg_sq')) sq += Number(await t.to({ dtype: 'float64' }).sum().item());
    const total = et.tensor([sq], { dtype: 'float64' });
    await D.allReduce(total, 'sum');
    out.momentSum = total.dataSync()[0];
    if (r === 0) {
      const whole = [];
      for (const [n, t] of full) whole.push([n, Array.from(await t.data())]);
      out.whole = whole;
      const st = opt.stateDict();
      out.optimizerKeys = [...st.tensors.keys()].length;
    }
  }
  // The wrapped module's parameters at stage 3: unreadable between uses, with an error (no crash).
  if (cfg.stage === 3) {
    try {
      await model.parameters()[model.parameters().length - 1].data();
      out.readFreed = 'read';
    } catch (e) {
      out.readFreed = e.code;
    }
  }
  try {
    zero.stateDict();
  } catch (e) {
    out.stateDictError = e.code;
  }
  const back = await zero.detach();
  out.detachedSame = back === model;
  await D.destroy();
  return out;
};

// Stage 3 training where rank cfg.failRank SIGKILLs itself after the forward of step cfg.failAt
// (its peers are then inside backward's collectives): the others report the error they get.
scenarios.zeroKill = async function zeroKill() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank(),
    w = D.worldSize();
  const model = new Net(false);
  const zero = new D.ShardedDataParallel(model, { stage: 3 });
  const opt = new et.optim.AdamW(zero.trainableParameters(), { lr: 1e-2 });
  const out = { rank: r, steps: 0 };
  let lastOk = Date.now();
  try {
    for (let s = 0; s < 10; s++) {
      const { loss } = await zero.forward(batchOf(s, 12, r * (12 / w), (r + 1) * (12 / w)));
      if (r === cfg.failRank && s === cfg.failAt) process.kill(process.pid, 'SIGKILL');
      await loss.backward();
      await opt.step();
      opt.zeroGrad();
      lastOk = Date.now();
      out.steps = s + 1;
    }
  } catch (e) {
    out.error = { code: e.code, message: e.message, afterMs: Date.now() - lastOk };
  }
  return out;
};

// Resumes from cfg.shardDir (written by another number of ranks): the gathered weights and the
// optimizer state (gathered as whole moments) are returned for comparison, then one more step runs.
scenarios.zeroResume = async function zeroResume() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank();
  et.manualSeed(7 + r);
  const model = cfg.model === 'llama' ? tinyLlama() : new Net(false);
  const zero = new D.ShardedDataParallel(model, { stage: cfg.stage });
  const opt = new et.optim.AdamW(zero.trainableParameters(), { lr: 1e-2, weightDecay: 0.01 });
  await zero.loadShards(cfg.shardDir, { optimizer: opt });
  const full = await zero.fullStateDict();
  const out = { rank: r };
  if (r === 0) {
    const whole = [];
    for (const [n, t] of full) whole.push([n, Array.from(await t.data())]);
    out.whole = whole;
  }
  out.optimizerKeys = [...opt.stateDict().tensors.keys()].length;
  // the moments' global sum of squares (every rank's shard: padding rows are zero)
  let sq = 0;
  for (const [k, t] of opt.stateDict().tensors) if (k.endsWith('exp_avg_sq')) sq += Number(await t.to({ dtype: 'float64' }).sum().item());
  const t = et.tensor([sq], { dtype: 'float64' });
  await D.allReduce(t, 'sum');
  out.momentSum = t.dataSync()[0];
  try {
    await zero.loadShards(cfg.shardDir + '-missing', { optimizer: opt });
  } catch (e) {
    out.missingDir = e.code;
  }
  await zero.detach();
  await D.destroy();
  return out;
};

// A parameter unused in forward: without findUnusedParameters backward names it; with it, the
// gradients still average and the unused parameter keeps no gradient.
// cfg.part 'plain': the error, after which the group is marked broken (a rank that used the
// parameter would have issued collectives this one did not); 'find': findUnusedParameters.
scenarios.unused = async function unused() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank();
  et.manualSeed(5);
  const out = { rank: r };
  if (cfg.part === 'plain') {
    const ddp = new et.nn.DistributedDataParallel(new Net(true));
    const { loss } = await ddp.forward(batchOf(0, 8, r * 4, r * 4 + 4));
    try {
      await loss.backward();
      out.plain = 'no error';
    } catch (e) {
      out.plain = { code: e.code, message: e.message };
    }
    const t0 = Date.now();
    try {
      await D.allReduce(et.ones([4]), 'sum');
      out.next = 'no error';
    } catch (e) {
      out.next = { code: e.code, message: e.message, ms: Date.now() - t0 };
    }
    ddp.detach();
    await D.destroy();
    return out;
  }
  const m = new Net(true);
  const ddp = new et.nn.DistributedDataParallel(m, { findUnusedParameters: true });
  const { loss } = await ddp.forward(batchOf(0, 8, r * 4, r * 4 + 4));
  await loss.backward();
  out.spareGrad = m.spare.parameters().map((p) => p.grad === null);
  const g = await flatGrads(m.head);
  const all = await D.allGather(et.tensor(g[0][1]));
  out.headSame = maxDiff([['w', Array.from(all[0].dataSync())]], [['w', Array.from(all[1].dataSync())]]);
  await D.destroy();
  return out;
};

// Rank 1's model has a wider head: DDP refuses it on both ranks (no Gloo abort), and the group is
// still usable.
scenarios.mismatch = async function mismatch() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank();
  const out = { rank: r };
  const ddp = new et.nn.DistributedDataParallel(new Net(false, r === 1 ? 6 : 5));
  try {
    await ddp.ready;
    out.error = 'no error';
  } catch (e) {
    out.error = { code: e.code, message: e.message };
  }
  ddp.detach();
  out.after = (await D.allReduce(et.ones([2]), 'sum')).dataSync()[0];
  await D.destroy();
  return out;
};

// The ranks call collectives that differ (shape, dtype, op, source rank, a collective against DDP's
// backward): each is refused on both ranks with ERR_DIST_MISMATCH (where Gloo would abort the
// process), and the group stays usable after each.
scenarios.collectiveMismatch = async function collectiveMismatch() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank();
  const out = { rank: r, cases: [] };
  const attempt = async (name, f) => {
    let error = null;
    try {
      await f();
    } catch (e) {
      error = { code: e.code, message: e.message };
    }
    const after = (await D.allReduce(et.ones([3]), 'sum')).dataSync()[0]; // the group still works
    out.cases.push({ name, error, after });
  };
  await attempt('shape', () => D.allReduce(r === 0 ? et.ones([2, 3]) : et.ones([3, 2]), 'sum'));
  await attempt('numel', () => D.allReduce(et.ones([r === 0 ? 1000 : 10]), 'sum'));
  await attempt('dtype', () => D.allGather(et.ones([4], { dtype: r === 0 ? 'float32' : 'float64' })));
  await attempt('op', () => (r === 0 ? D.allReduce(et.ones([4]), 'max') : D.barrier()));
  await attempt('reduce', () => D.allReduce(et.ones([4]), r === 0 ? 'sum' : 'max'));
  await attempt('src', () => D.broadcast(et.ones([4]), r));
  await attempt('same', () => D.allReduce(et.ones([2, 3]), 'sum'));
  // the same shape as a contiguous tensor on one rank and a strided view on the other
  await attempt('layout', () => D.broadcast(r === 0 ? et.ones([2, 3]) : et.ones([3, 2]).transpose(0, 1), 0));
  // Rank 0 all-reduces a loss while rank 1 goes on to DDP's backward (its first gradient bucket).
  const ddp = new et.nn.DistributedDataParallel(new Net(false));
  await ddp.ready;
  await attempt('ddp', async () => {
    const b = batchOf(0, 8, r * 4, r * 4 + 4);
    const { loss } = await ddp.forward(b);
    if (r === 0) await D.allReduce(loss.detach(), 'sum');
    else await loss.backward();
  });
  ddp.detach();
  await D.destroy();
  return out;
};

// Only rank 0 checks collectives: init refuses on both ranks.
scenarios.checksDiffer = async function checksDiffer() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000, checkCollectives: process.env.RANK === '0' });
  return {};
};

// All-reduces in a loop; rank cfg.failRank, after cfg.failAt iterations, is SIGKILLed ('kill') or
// stops calling collectives while staying alive ('hang'). The others report the error they get.
scenarios.loop = async function loop() {
  await D.init({ timeoutMs: cfg.timeoutMs ?? 20000 });
  const r = D.rank();
  const out = { rank: r, iterations: 0 };
  let lastOk = Date.now();
  try {
    for (let i = 0; i < (cfg.iterations ?? 1e9); i++) {
      if (r === cfg.failRank && i === cfg.failAt) {
        if (cfg.mode === 'kill') process.kill(process.pid, 'SIGKILL');
        if (cfg.mode === 'exit') process.exit(cfg.exitCode ?? 7);
        setInterval(() => undefined, 1000); // alive, but never reaches the next collective
        await new Promise(() => undefined);
      }
      await D.allReduce(et.ones([1000]), 'sum');
      lastOk = Date.now();
      out.iterations = i + 1;
      await new Promise((res) => setTimeout(res, 20));
    }
  } catch (e) {
    out.error = { code: e.code, message: e.message, afterMs: Date.now() - lastOk };
  }
  return out;
};

// Prints the torchrun variables it was given (for the launcher test) and a line on each stream.
scenarios.env = async function env() {
  const names = [
    'RANK',
    'LOCAL_RANK',
    'GROUP_RANK',
    'ROLE_RANK',
    'ROLE_NAME',
    'LOCAL_WORLD_SIZE',
    'WORLD_SIZE',
    'GROUP_WORLD_SIZE',
    'ROLE_WORLD_SIZE',
    'MASTER_ADDR',
    'MASTER_PORT',
    'OMP_NUM_THREADS',
    'TORCHELASTIC_ERROR_FILE',
    'TORCHELASTIC_MAX_RESTARTS',
    'TORCHELASTIC_RESTART_COUNT',
    'TORCHELASTIC_RUN_ID',
    'TORCHELASTIC_SIGNALS_TO_HANDLE',
    'TORCHELASTIC_USE_AGENT_STORE',
    'TORCH_NCCL_ASYNC_ERROR_HANDLING',
  ];
  const parent = JSON.parse(cfg.parentEnv);
  const added = {};
  for (const [k, v] of Object.entries(process.env)) if (parent[k] !== v) added[k] = v;
  process.stdout.write(`hello from stdout\n`);
  process.stderr.write(`hello from stderr\n`);
  await D.init({ timeoutMs: 20000 });
  const sum = await D.allReduce(et.tensor([D.rank() + 1]), 'sum');
  await D.destroy();
  return { added, names, sum: sum.item() };
};

// Trainer: the same run on cfg.world ranks of batch 8/world (or, without a process group, one
// process of batch 8); resumes from cfg.resume when given.
class Clf extends et.nn.Module {
  constructor() {
    super();
    this.body = this.registerModule('body', et.nn.Mlp.create({ sizes: [12, 24, 24] }));
    this.head = this.registerModule('head', et.nn.Linear.create({ in_features: 24, out_features: 4 }));
  }
  async forward(b) {
    const logits = await this.head.forward(await this.body.forward(b.x));
    return b.labels ? { loss: et.functional.crossEntropy(logits, b.labels), logits } : { logits };
  }
}
function dataset(n, seed) {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const items = Array.from({ length: n }, () => {
    const x = Array.from({ length: 12 }, rnd);
    return { x, y: (x[0] + x[1] > 0 ? 1 : 0) + (x[2] > 0 ? 2 : 0) };
  });
  return { length: n, get: (i) => items[i] };
}
scenarios.trainer = async function trainer() {
  if (cfg.distributed) await D.init({ timeoutMs: cfg.timeoutMs ?? 30000 });
  const world = cfg.distributed ? D.worldSize() : 1;
  et.manualSeed(11 + (cfg.distributed ? D.rank() : 0)); // rank 0's weights win (the Trainer wraps in DDP)
  const model = new Clf();
  // cfg.stopOnRank: a callback on that rank alone asks to stop after step 3
  const callbacks =
    cfg.stopOnRank !== undefined && (cfg.distributed ? D.rank() : 0) === cfg.stopOnRank
      ? [
          {
            onStepEnd(ctx) {
              if (ctx.state.global_step === 3) ctx.control.shouldTrainingStop = true;
            },
          },
        ]
      : [];
  const trainer = new et.train.Trainer({
    model,
    callbacks,
    trainDataset: dataset(48, 5),
    evalDataset: dataset(13, 9),
    dataCollator: (items) => ({
      x: et.tensor(items.map((i) => i.x)),
      labels: et.tensor(
        items.map((i) => i.y),
        { dtype: 'int64' },
      ),
    }),
    computeMetrics: ({ predictions, labelIds }) => ({ accuracy: predictions.argmax(-1).eq(labelIds).float().mean().item(), n: labelIds.shape[0] }),
    args: {
      output_dir: cfg.outputDir,
      max_steps: cfg.maxSteps ?? 8,
      per_device_train_batch_size: 8 / world,
      per_device_eval_batch_size: 3,
      learning_rate: 1e-2,
      warmup_steps: 2,
      logging_steps: 1,
      eval_strategy: cfg.twice ? 'no' : 'steps',
      eval_steps: 4,
      save_steps: 4,
      save_strategy: cfg.twice ? 'no' : 'steps',
      disable_tqdm: true,
      seed: 3,
      gradient_accumulation_steps: cfg.gas ?? 1,
      resume_from_checkpoint: cfg.resume ?? null,
      deepspeed: cfg.deepspeed ?? null,
    },
  });
  let first = null;
  if (cfg.twice) {
    await trainer.train();
    first = trainer.state.log_history.slice();
  }
  const out = await trainer.train();
  const logs = trainer.state.log_history;
  // After train(), the model is the user's again: a backward on rank 1 alone neither waits for
  // rank 0 nor fails.
  let alone = null;
  if (cfg.twice && cfg.distributed) {
    if (D.rank() === 1) {
      try {
        const b = { x: et.randn([3, 12]), labels: et.tensor([0, 1, 2], { dtype: 'int64' }) };
        await (await model.forward(b)).loss.backward();
        alone = 'ok';
      } catch (e) {
        alone = `${e.code} ${e.message}`;
      }
    }
    await D.barrier();
  }
  if (cfg.distributed) await D.destroy();
  return {
    logs,
    first,
    alone,
    globalStep: out.globalStep,
    stopReason: out.stopReason,
    files: require('fs').existsSync(cfg.outputDir) ? require('fs').readdirSync(cfg.outputDir).sort() : [],
    // the model is whole and the user's again after train(): its weights (rank 0 compares)
    weights: cfg.deepspeed ? await Promise.all(model.parameters().map(async (p) => Array.from(await p.data()))) : undefined,
  };
};

(async () => {
  try {
    const result = await scenarios[cfg.scenario]();
    require('fs').writeFileSync(`${cfg.out}.${process.env.RANK}.json`, JSON.stringify(result));
    process.exit(0);
  } catch (e) {
    process.stderr.write(`ERROR ${e && e.code} ${e && e.message}\n`);
    process.exit(1);
  }
})();
