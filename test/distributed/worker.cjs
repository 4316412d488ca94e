// One rank of a distributed test: argv[2] is a JSON config { dist, scenario, ... }. Prints
// `RESULT <json>` and exits 0, or prints the error (with its code) and exits 1.
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
    const r = D.rank(), w = D.worldSize();
    const out = { rank: r, world: w, cases: [] };
    const input = (dtype, n, salt) => {
      const v = Array.from({ length: n }, (_, i) => ((r + 1) * (i + 1) * 7 + salt * 3) % 23 - (dtype === 'uint8' || dtype === 'bool' ? 0 : 11));
      return dtype === 'bool' ? et.tensor(v.map((x) => x % 2 === 0), { dtype }) : et.tensor(v, { dtype });
    };
    for (const c of cfg.cases) {
      const t = input(c.dtype, c.n, c.salt ?? 0);
      let x = t;
      if (c.strided) x = t.reshape([c.n / 2, 2]).transpose(0, 1);  // non-contiguous view, shape [2, n/2]
      let got;
      if (c.op === 'broadcast') { await D.broadcast(x, c.src); got = await values(x); }
      else if (c.op === 'allGather') got = await Promise.all((await D.allGather(x)).map(values));
      else if (c.op === 'reduceScatter') got = await values(await D.reduceScatter(x, c.reduce));
      else { await D.allReduce(x, c.op); got = await values(x); }
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

(async () => {
  try {
    const result = await scenarios[cfg.scenario]();
    process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
    process.exit(0);
  } catch (e) {
    process.stderr.write(`ERROR ${e && e.code} ${e && e.message}\n`);
    process.exit(1);
  }
})();
