'use strict';
// Child process of the corpus replay: runs one format's target over the files named on the
// command line, one after another, and reports each on stdout as a line
//   @@fuzz {"start": file}                      before the file is run
//   @@fuzz {"file", "outcome": "ok" | "coded" | "finding", "code"?, "message"?, "error"?, "ms"}
// A crash or hang kills only this process; the parent (replay-runner.cjs) attributes it to the
// last file started and goes on with the rest in a new child.
//   node -r ./test/fuzz/register-ts.cjs test/fuzz/replay.cjs <format> <file>...
const fs = require('fs');
const path = require('path');
const { makeTargets, isCoded } = require('./targets.cjs');

const et = require(path.resolve(__dirname, '..', '..', 'lib', 'index.ts'));
const [format, ...files] = process.argv.slice(2);
const report = (o) => process.stdout.write(`@@fuzz ${JSON.stringify(o)}\n`);

async function main() {
  const targets = makeTargets(et);
  if (typeof targets[format] !== 'function') throw new Error(`unknown format '${format}'`);
  try {
    for (const file of files) {
      const data = fs.readFileSync(file);
      report({ start: file });
      const t0 = performance.now();
      try {
        await targets[format](data);
        report({ file, outcome: 'ok', ms: performance.now() - t0 });
      } catch (e) {
        if (isCoded(et, e)) report({ file, outcome: 'coded', code: e.code, message: String(e.message).slice(0, 500), ms: performance.now() - t0 });
        else
          report({
            file,
            outcome: 'finding',
            error: e && e.stack ? String(e.stack).split('\n').slice(0, 6).join('\n') : String(e),
            ms: performance.now() - t0,
          });
      }
    }
  } finally {
    targets.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`replay harness failed: ${e && e.stack ? e.stack : e}\n`);
    process.exit(70);
  },
);
