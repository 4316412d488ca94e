/**
 * Every file reader's errors: a malformed file is refused with a coded EmotorchError whose message
 * names the file and never quotes its content (README: "messages never quote the file's content").
 * Each row writes a few corrupt files that hold a marker string and reads them the way a user would.
 * (Dataset readers' per-record messages may show a short field value or a path the record names;
 * those are about the user's records, not a file's structure, and are not covered here.)
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { tmpdir } from '../helpers';

const MARK = 'QUOTEDCONTENT';
const dir = tmpdir();

interface ReaderRow {
  name: string;
  file: string;
  contents: (string | Buffer)[];
  read(file: string): unknown;
}

const json = [`not json ${MARK}`, `{"x": ${MARK}}`, `["${MARK}"`, `{"${MARK}": [1, 2, {"${MARK}": "${MARK}"}]}`, `"${MARK}"`];
/** Writes a file beside `f` (for readers of two files). */
const beside = (f: string, name: string, text: string): void => fs.writeFileSync(path.join(path.dirname(f), name), text);
const CLIP_VOCAB = '{"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}';
const le64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const READERS: ReaderRow[] = [
  {
    name: 'Tokenizer.fromFile (tokenizer.json)',
    file: 'tokenizer.json',
    contents: [...json, `{"model": {"type": "${MARK}"}}`, `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": "${MARK}"}}`],
    read: (f) => et.data.Tokenizer.fromFile(f),
  },
  { name: 'Tokenizer.fromFileSync (tokenizer.json)', file: 'tokenizer.json', contents: json, read: (f) => et.data.Tokenizer.fromFileSync(f) },
  {
    name: 'Tokenizer.fromFile (vocab.json)',
    file: 'vocab.json',
    contents: [...json, `{"${MARK}": -1}`, `{"a": 0, "${MARK}": 0}`, `{"${MARK}": 0}`],
    read: (f) => {
      beside(f, 'merges.txt', '#version: 0.2\n');
      return et.data.Tokenizer.fromFile(f);
    },
  },
  {
    name: 'Tokenizer.fromFile (merges.txt)',
    file: 'merges.txt',
    contents: [MARK, `a ${MARK}`, `${MARK} b`, `a b ${MARK}`, `a b\n\n${MARK} x`],
    read: (f) => {
      beside(f, 'vocab.json', CLIP_VOCAB);
      return et.data.Tokenizer.fromFile(path.dirname(f));
    },
  },
  {
    name: 'Tokenizer.fromFile (tokenizer.model)',
    file: 'tokenizer.model',
    contents: [MARK, Buffer.concat([Buffer.from([0x0a, 0x20, 0x0a, 0x1e]), Buffer.from(MARK.repeat(3))])],
    read: (f) => et.data.Tokenizer.fromFile(f),
  },
  { name: 'SalmonnDataset.fromFile', file: 'salmonn.json', contents: json, read: (f) => et.data.SalmonnDataset.fromFile(f) },
  { name: 'SwiftDataset.fromFile', file: 'swift.json', contents: json, read: (f) => et.data.SwiftDataset.fromFile(f) },
  {
    name: 'safetensors',
    file: 'x.safetensors',
    contents: [
      Buffer.concat([le64(MARK.length + 2), Buffer.from(`{${MARK}`), Buffer.from('}')]),
      Buffer.concat([le64(30), Buffer.from(`{"${MARK}": {"dtype": "${MARK}"}}`.slice(0, 30))]),
    ],
    read: (f) => et.io.loadSafetensors(f),
  },
  {
    name: 'npy',
    file: 'x.npy',
    contents: [Buffer.concat([Buffer.from('\x93NUMPY\x01\x00'), Buffer.from([40, 0]), Buffer.from(`{'descr': '${MARK}', 'x': 1}`.padEnd(40))])],
    read: (f) => et.io.readNpy(f),
  },
  // (a pickle's refused class is named on purpose: `pickle references os.system` is the point of the message)
  {
    name: 'pickle',
    file: 'x.pkl',
    contents: [Buffer.from(MARK), Buffer.from(`\x80\x04X\x05\x00\x00\x00${MARK}`, 'latin1')],
    read: (f) => et.data.readPickle(f),
  },
];

describe.each(READERS)('$name', (row) => {
  it('refuses malformed files with a coded error that names the file and quotes none of it', async () => {
    for (const [i, content] of row.contents.entries()) {
      const sub = fs.mkdtempSync(path.join(dir, 'r'));
      const f = path.join(sub, row.file);
      fs.writeFileSync(f, content);
      let err: unknown;
      try {
        await row.read(f);
      } catch (e) {
        err = e;
      }
      expect(err, `content ${i}`).toBeInstanceOf(et.EmotorchError);
      const e = err as et.EmotorchError;
      expect(e.code, `content ${i}: ${e.message}`).toMatch(/^ERR_(FORMAT|IO|INVALID_ARG)$/);
      expect(e.message, `content ${i}`).not.toContain(MARK);
    }
  });
});
