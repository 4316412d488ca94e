// The integer kernels of quantized Linear layers on AVX2 (kernels/quant.cc Int8Avx2, GgufAvx2 and
// q4_0's interleaved q4_group_avx2: CPUs without AVX-512 VNNI), checked in child processes capped at
// AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2, as the AVX2 bench profile runs), the same
// on any x86-64 CPU:
// (a) quant-rows.test.ts whole under the cap: each row of R rows equals the row alone, and every
//     output is within the stated bound of the float64 product of the rows as the format's library
//     quantizes them and the dequantized weight (decoding rows, prompts of up to 80 rows, int8's
//     1641);
// (b) int8's, q8_0's and q4_0's outputs there equal, bit for bit, the AVX-512 VNNI kernels' in this
//     process where this CPU has AVX-512 VNNI (their integer sums are the same and exact, and the
//     float steps after them the same), for 1, 3, 5, 16 and 40 rows (q8_0: 24, the most it takes
//     through them with VNNI), rows with int8's outliers among them, and 42 outputs (two groups of 16
//     of int8's and q4_0's interleaved layouts and 10 rows after them): the integer kernels ran,
//     where the float kernels they replace would round differently. On a CPU without AVX-512 both
//     processes run the AVX2 kernels; on one with AVX-512 but not VNNI this process runs float
//     kernels, and (b) is left out, saying so;
// (c) nf4 weights dequantized there (float32 and bfloat16: a prompt's pass past 8 rows, a training
//     step) equal, bit for bit, this process's, which on a CPU with AVX-512 are the ones
//     quant-formats.test.ts checks against bitsandbytes' definition.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as et from '../../lib/index';
import { quantizeLayer } from '../../lib/nn/quant';
import { cpuFlags } from '../helpers';

const ROOT = path.join(__dirname, '..', '..');
const CAPPED = (): NodeJS.ProcessEnv => {
  const env = { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };
  delete env.EMOTORCH_CPU_LINEAR;
  delete env.VITEST;
  delete env.VITEST_POOL_ID;
  delete env.VITEST_WORKER_ID;
  return env;
};

/** The products' outputs as float32 bits (base64), for layers and rows made from a fixed sequence (no RNG of ATen's, whose vector code differs between ISAs). */
async function products(lib: typeof et, quantizeInto: typeof quantizeLayer): Promise<Record<string, string>> {
  let s = 12345;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const fill = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => next() * scale);
  const out: Record<string, string> = {};
  for (const [format, inn, rows] of [
    ['int8', 160, [1, 3, 5, 16, 40]],
    ['int8', 97, [1, 3, 5, 16, 40]],
    ['q8_0', 160, [1, 3, 5, 16, 24]],
    ['q4_0', 160, [1, 3, 5, 16, 40]],
  ] as const) {
    const OUT = 42;
    const mlp = await lib.nn.Mlp.create({ sizes: [inn, OUT], bias: false });
    const w = lib.tensor(fill(OUT * inn, 0.1), { shape: [OUT, inn] });
    await quantizeInto(mlp, lib.nn.linearLayers(mlp)[0], format, w, 'weight');
    for (const R of rows)
      for (const dtype of ['float32', 'bfloat16'] as const) {
        // int8's outliers (|x| ≥ 6, summed in float after the integer products) in most rows
        const xs = fill(R * inn, 4);
        for (let e = 5; e < xs.length; e += 53) xs[e] = e % 2 ? 7.25 : -9.5;
        const x = lib.tensor(xs, { shape: [R, inn] }).to({ dtype });
        const y = (await lib.noGrad(() => mlp.forward(x))).to({ dtype: 'float32' }).contiguous();
        const a = (await y.data()) as Float32Array;
        out[`${format} in ${inn} R ${R} ${dtype}`] = Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
      }
  }
  return out;
}

const CHILD = `
const et = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
const { quantizeLayer } = require(${JSON.stringify(path.join(ROOT, 'dist', 'nn', 'quant.js'))});
(async () => {
  et.setNumThreads(2);
  const products = ${products.toString()};
  console.log(JSON.stringify(await products(et, quantizeLayer)));
})().catch((e) => { console.error(e); process.exit(1); });
`;

/**
 * nf4 weights dequantized (nn.dequantizeWeight, float32 and bfloat16; on AVX2 its own loop, on
 * AVX-512 the one quant-formats.test.ts checks against bitsandbytes' definition) as float32 bits,
 * for weights made from a fixed sequence: rows of 1, 3 and 300 blocks, some elements 1000 times
 * the others (blocks of large absmax next to small ones).
 */
async function nf4Dequantized(lib: typeof et): Promise<Record<string, string>> {
  let s = 777;
  const next = (): number => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const out: Record<string, string> = {};
  for (const [rows, inn] of [
    [5, 64],
    [3, 192],
    [2, 19200],
  ]) {
    const w = lib.tensor(
      Float32Array.from({ length: rows * inn }, (_, i) => next() * (i % 97 === 0 ? 1000 : 1)),
      { shape: [rows, inn] },
    );
    const q = await lib.nn.quantizeWeight(w, 'nf4');
    for (const dtype of ['float32', 'bfloat16'] as const) {
      const d = (await lib.nn.dequantizeWeight(q, dtype)).to({ dtype: 'float32' }).contiguous();
      const a = (await d.data()) as Float32Array;
      out[`${rows} x ${inn} ${dtype}`] = Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
    }
  }
  return out;
}

const DEQUANT_CHILD = `
const et = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
(async () => {
  const nf4Dequantized = ${nf4Dequantized.toString()};
  console.log(JSON.stringify(await nf4Dequantized(et)));
})().catch((e) => { console.error(e); process.exit(1); });
`;

/** A child script's last line of output (a JSON record) when run under the AVX2 cap; it must exit 0. */
function cappedChild(code: string): Record<string, string> {
  const r = spawnSync(process.execPath, ['-e', code], { cwd: ROOT, env: CAPPED(), encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, string>;
}

/** What this process's kernels are: AVX-512 VNNI's integer ones, AVX2's, or float ones (AVX-512 without VNNI). */
function ownKernels(): 'vnni' | 'avx2' | 'float' | 'unknown' {
  const flags = cpuFlags();
  if (flags.length === 0) return 'unknown';
  const avx512 = ['avx512f', 'avx512bw', 'avx512vl'].every((f) => flags.includes(f));
  if (avx512) return flags.includes('avx512_vnni') ? 'vnni' : 'float';
  return ['avx2', 'fma', 'f16c'].every((f) => flags.includes(f)) ? 'avx2' : 'float';
}

/** The capped child's results (`n` of them) are this process's, key for key, bit for bit. */
function expectSameBits(capped: Record<string, string>, here: Record<string, string>, n: number, what: string): void {
  expect(Object.keys(capped)).toHaveLength(n);
  expect(
    Object.keys(here).filter((k) => capped[k] !== here[k]),
    what,
  ).toEqual([]);
}

describe('quantized row products on AVX2 (the integer kernels)', () => {
  it('quant-rows.test.ts passes under the AVX2 cap', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/nn/quant-rows.test.ts'], {
      cwd: ROOT,
      env: CAPPED(),
      encoding: 'utf8',
      timeout: 300_000,
    });
    expect(r.status, `${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`).toBe(0);
    expect(r.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toMatch(/Tests\s+\d+ passed \(\d+\)/);
  }, 320_000);

  it("int8's, q8_0's and q4_0's outputs equal the AVX-512 VNNI kernels' bit for bit", async (ctx) => {
    const own = ownKernels();
    if (own === 'float' || own === 'unknown') {
      console.log(`[quant-rows-avx2] (b) left out: this CPU's own kernels are not integer ones (${own})`);
      ctx.skip();
    }
    expectSameBits(cappedChild(CHILD), await products(et, quantizeLayer), 40, 'the products whose bits differ');
  }, 150_000);

  it("nf4's dequantized weights (float32 and bfloat16) under the AVX2 cap equal this process's bit for bit", async () => {
    expectSameBits(cappedChild(DEQUANT_CHILD), await nf4Dequantized(et), 6, 'the weights whose bits differ');
  }, 150_000);
});
