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
  console.error(
    `emotorch: no prebuilt addon in ${path.relative(process.cwd(), dir) || dir}: run \`npm run build:prebuild\` before publishing (users would otherwise compile it on install)`,
  );
  process.exit(1);
}

// ...and it must carry the in-process video reader (built where FFmpeg's headers were installed):
// users without the headers get it only from the prebuild.
const { builtWithoutVideoReader } = require('./install');
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.node'))) {
  if (builtWithoutVideoReader(path.join(dir, f))) {
    console.error(
      `emotorch: the prebuilt addon ${f} was built without FFmpeg's development headers (no in-process video reader): install libavformat-dev libavcodec-dev libswscale-dev and run \`npm run build:prebuild\` again`,
    );
    process.exit(1);
  }
}
