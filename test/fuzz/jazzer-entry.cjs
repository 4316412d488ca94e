'use strict';
// Jazzer.js entry: one exported function per format (`jazzer test/fuzz/jazzer-entry.cjs -f <format>`),
// over the built library (dist/, which Jazzer instruments for coverage). An input passes when the
// target returns, or throws an EmotorchError with a code; any other throw is reported as a finding.
// Run through scripts/fuzz.mjs (`npm run fuzz -- <format>`), which builds dist/ first.
const path = require('path');
const { FORMATS, makeTargets, isCoded } = require('./targets.cjs');

const et = require(path.resolve(__dirname, '..', '..', 'dist', 'index.js'));
const targets = makeTargets(et);
process.on('exit', () => targets.cleanup());

const swallowCoded = (e) => {
  if (!isCoded(et, e)) throw e;
};

const entry = (format) => (data) => {
  let r;
  try {
    r = targets[format](data);
  } catch (e) {
    return swallowCoded(e);
  }
  if (r && typeof r.then === 'function') return r.then(() => undefined, swallowCoded);
  return undefined;
};

// Jazzer.js imports this file as an ES module: the names must be visible statically.
exports.pickle = entry('pickle');
exports.safetensors = entry('safetensors');
exports.torchfile = entry('torchfile');
exports.wav = entry('wav');
exports.wav16k = entry('wav16k');
exports.salmonn = entry('salmonn');
exports.trajectory = entry('trajectory');
exports.ecf = entry('ecf');
exports.swift = entry('swift');
exports.tokenizer = entry('tokenizer');
exports.sentencepiece = entry('sentencepiece');
exports.tokens = entry('tokens');
exports.npy = entry('npy');
exports.w2v_checkpoint = entry('w2v_checkpoint');
exports.speech_decoder = entry('speech_decoder');
exports.image = entry('image');
exports.video = entry('video');
exports.audio = entry('audio');
for (const f of FORMATS) if (typeof exports[f] !== 'function') throw new Error(`jazzer-entry.cjs does not export '${f}'`);
