// One side of one trial of `npm run bench -- quant` (bench/quant.mjs), a fresh process each, so its
// peak RSS is its own:
//   node bench/quant_worker.mjs OUT emotorch DIR QUANT IDS NEW THREADS [logits]
//       et.nn.LlamaForCausalLM.fromPretrained(DIR, { dtype: 'bfloat16' }), with `quantize: QUANT`
//       unless QUANT is bfloat16 (with BENCH_QUANT_HEAD=1 the LM head quantized too, after the load)
//   node bench/quant_worker.mjs OUT llama.cpp FILE - IDS NEW THREADS [logits]
//       node-llama-cpp's prebuilt CPU llama.cpp (no GPU, never built here) on a GGUF file
// Each side: load (timed), a warm-up answer (the prompt and 4 tokens, not timed), then one greedy
// answer of NEW tokens after the prompt IDS (token ids, comma-separated), decoded with an
// end-of-sequence token taken as any other: first-token time = the prompt's pass and the first token; tokens/s over the NEW − 1
// tokens after it. Peak RSS = VmHWM after that answer (the load's peak included). With `logits`,
// then (after the peak is read) the last prompt position's logits, float, one per vocabulary id.
// Writes its figures (or {"error": message} where the side cannot run) as JSON to the file OUT.
import * as fs from 'fs';

const [outFile, side, file, quant, ids, newArg, threadsArg, wantLogits] = process.argv.slice(2);
const prompt = ids.split(',').map(Number);
const P = prompt.length,
  N = Number(newArg),
  threads = Number(threadsArg);
const status = (field) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
// the CPU time every process spent (/proc/stat's busy jiffies, 100 a second) and this one's: what
// the others took while the answer was timed, in cores (a neighbour's work slows both sides' threads)
const busySeconds = () => {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) / 100; // user nice system irq softirq steal
};
const ownSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const cpuMark = () => ({ busy: busySeconds(), own: ownSeconds(), at: performance.now() });

async function emotorch() {
  const et = await import('emotorch');
  et.setNumThreads(threads);
  const t0 = performance.now();
  const model = await et.nn.LlamaForCausalLM.fromPretrained(file, { dtype: 'bfloat16', ...(quant === 'bfloat16' ? {} : { quantize: quant }) });
  if (quant !== 'bfloat16' && process.env.BENCH_QUANT_HEAD === '1') await et.nn.quantize(model, quant, { layers: ['lm_head'] });
  const loadMs = performance.now() - t0;
  const inputIds = et.tensor(prompt, { dtype: 'int64' }).reshape([1, P]);
  const answer = async (n, stamps) =>
    et.noGrad(() => model.generate({ inputIds }, { maxNewTokens: n, minNewTokens: n, onTokens: stamps ? () => stamps.push(performance.now()) : undefined }));
  await answer(4);
  const stamps = [];
  const w = cpuMark();
  const t1 = performance.now();
  const { newTokens } = await answer(N, stamps);
  const out = timing(loadMs, t1, stamps, newTokens.toArray()[0].map(Number), w);
  if (wantLogits) {
    const { logits } = await et.noGrad(() => model.forward({ inputIds }));
    out.logits = Array.from(
      logits
        .select(1, P - 1)
        .float()
        .toArray()[0],
    );
  }
  out.version = `emotorch ${et.versions.emotorch} on libtorch ${et.versions.libtorch} (ATen ${et.versions.cpuCapability})`;
  return out;
}

async function llamaCpp() {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp').catch((e) => {
    throw new Error(`node-llama-cpp is not installed (npm install --no-save node-llama-cpp@3.22.1): ${e.message}`);
  });
  // the prebuilt binary of the npm package: never a build from source, never a download
  const llama = await getLlama({ gpu: false, build: 'never', skipDownload: true, maxThreads: threads, logLevel: LlamaLogLevel.error });
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const context = await model.createContext({ contextSize: P + N + 16, threads: { ideal: threads, min: threads }, sequences: 1 });
  const loadMs = performance.now() - t0;
  const seq = context.getSequence();
  const answer = async (n, stamps) => {
    await seq.clearHistory();
    const tokens = [];
    for await (const token of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      stamps?.push(performance.now());
      tokens.push(token);
      if (tokens.length === n) break;
    }
    return tokens;
  };
  await answer(4);
  const stamps = [];
  const w = cpuMark();
  const t1 = performance.now();
  const tokens = await answer(N, stamps);
  const out = timing(loadMs, t1, stamps, tokens, w);
  if (wantLogits) {
    await seq.clearHistory();
    const res = await seq.controlledEvaluate(prompt.map((t, i) => (i === P - 1 ? [t, { generateNext: { logits: true } }] : t)));
    const map = res[P - 1].next.logits;
    const logits = new Array(map.size);
    for (const [id, v] of map) logits[id] = v;
    out.logits = logits;
  }
  // which of the prebuilt package's CPU kernel sets ggml chose for this CPU
  const cpuLib = fs
    .readFileSync('/proc/self/maps', 'utf8')
    .match(/libggml-cpu-[\w-]+\.so/g)
    ?.filter((v, i, a) => a.indexOf(v) === i);
  const pkg = JSON.parse(fs.readFileSync(new URL('../node_modules/node-llama-cpp/package.json', import.meta.url), 'utf8'));
  const rel = JSON.parse(fs.readFileSync(new URL('../node_modules/node-llama-cpp/llama/binariesGithubRelease.json', import.meta.url), 'utf8'));
  out.version = `node-llama-cpp ${pkg.version}, llama.cpp ${rel.release} (${llama.buildType} binary, ${cpuLib?.join(', ') ?? 'CPU'}; flash attention ${context.flashAttention ? 'on' : 'off'})`;
  return out;
}

function timing(loadMs, t1, stamps, tokens, w) {
  if (stamps.length !== N) throw new Error(`${stamps.length} tokens streamed, ${N} asked`);
  const e = cpuMark();
  return {
    others_cores: Math.max(0, e.busy - w.busy - (e.own - w.own)) / ((e.at - w.at) / 1000),
    load_ms: loadMs,
    first_token_ms: stamps[0] - t1,
    tokens_per_s: (N - 1) / ((stamps[N - 1] - stamps[0]) / 1000),
    peak_rss_mb: status('VmHWM'),
    tokens,
  };
}

// `node bench/quant_worker.mjs OUT qlora DIR QUANT TOKENS STEPS THREADS`: training steps of LoRA r 8
// over the base (QUANT bfloat16, or quantized: QLoRA); the median step time, the last loss, peak RSS.
async function qlora() {
  const et = await import('emotorch');
  const [tokens, steps] = [Number(ids), Number(newArg)];
  et.setNumThreads(threads);
  et.manualSeed(0);
  const model = await et.nn.LlamaForCausalLM.fromPretrained(file, { dtype: 'bfloat16', ...(quant === 'bfloat16' ? {} : { quantize: quant }) });
  et.nn.applyLora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  model.train();
  const opt = new et.optim.AdamW(model.trainableParameters(), { lr: 1e-4 });
  const inputIds = et.tensor([Array.from({ length: tokens }, (_, i) => 300 + ((i * 7919 + 13) % 30000))], { dtype: 'int64' });
  const times = [];
  let loss = NaN;
  for (let s = 0; s <= steps; ++s) {
    const t0 = performance.now();
    const out = await model.forward({ inputIds, labels: inputIds });
    await out.loss.backward();
    await opt.step();
    opt.zeroGrad();
    loss = out.loss.item();
    if (s > 0) times.push((performance.now() - t0) / 1000);
  }
  const sorted = [...times].sort((a, b) => a - b);
  return { step_s: sorted[Math.floor(sorted.length / 2)], steps: times, loss, peak_rss_mb: status('VmHWM') };
}

let out;
try {
  out = side === 'emotorch' ? await emotorch() : side === 'qlora' ? await qlora() : await llamaCpp();
} catch (e) {
  // the bench prints a row that cannot run as "not available: <message>"
  out = { error: `${e?.code ? `${e.code}: ` : ''}${e?.message ?? e}` };
}
fs.writeFileSync(outFile, JSON.stringify(out));
process.exit(0);
