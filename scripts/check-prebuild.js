#!/usr/bin/env node
'use strict';
// `prepublishOnly`: the published package must carry the prebuilt addon of this platform, or
// every user without one compiles libtorch bindings for half an hour (`npm pack` alone is not
// checked: packing a checkout for a look works without it).
const fs = require('fs');
const path = require('path');

const dir = path.join(__dirname, '..', 'prebuilds', `${process.platform}-${process.arch}`);
const found = fs.existsSync(dir) && fs.readdirSync(dir).some((f) => f.endsWith('.node'));
if (!found) {
  console.error(`emotorch: no prebuilt addon in ${path.relative(process.cwd(), dir) || dir}: run \`npm run build:prebuild\` before publishing (users would otherwise compile it on install)`);
  process.exit(1);
}
