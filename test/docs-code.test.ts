// Examples that cannot rot (issue 49): every JavaScript / TypeScript code block of README.md and
// docs/*.md is either run here or marked as not runnable here, with the reason. The marker is an
// HTML comment on the line before the block (invisible on the page):
//   <!-- doctest: NAME -->        run with the setup NAME below: the variables the block assumes,
//                                 and its model / data paths mapped onto fixture folders
//   <!-- not run: REASON -->      e.g. real weights of many GB, the network, a second process
// A block runs as the body of an async function (TypeScript types stripped, `import` lines given
// by the setup), in a fresh temporary working folder. A block that throws fails here.
import { describe, it, expect, beforeAll } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as ts from 'typescript';
import * as et from '../lib/index';
import { FIXTURES, tmpdir } from './helpers';
import { corpus, tinyEncoders, tokenizerJson } from './spectra-helpers';

const ROOT = path.join(__dirname, '..');
const pages = [
  'README.md',
  ...fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join('docs', f)),
];

interface Block {
  page: string;
  line: number;
  lang: string;
  code: string;
  marker: { run: string } | { skip: string } | null;
}

/** The JS / TS blocks of a page with the marker before each. */
function codeBlocks(page: string, text: string): Block[] {
  const lines = text.split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(ts|js|typescript|javascript|mjs)\s*$/.exec(lines[i]);
    if (!open) {
      if (/^```/.test(lines[i])) {
        i++;
        while (i < lines.length && !/^```\s*$/.test(lines[i])) i++;
      } // other fences: skip their bodies
      continue;
    }
    const start = i;
    let j = i + 1;
    while (j < lines.length && !/^```\s*$/.test(lines[j])) j++;
    const prev = lines[start - 1] ?? '';
    const run = /^<!--\s*doctest:\s*([\w-]+)\s*-->$/.exec(prev);
    const skip = /^<!--\s*not run:\s*(.+?)\s*-->$/.exec(prev);
    out.push({
      page,
      line: start + 1,
      lang: open[1],
      code: lines.slice(start + 1, j).join('\n'),
      marker: run ? { run: run[1] } : skip ? { skip: skip[1] } : null,
    });
    i = j;
  }
  return out;
}

/** What a setup gives a block: variables it assumes, and text replacements (paths onto fixtures). */
interface Setup {
  vars?: Record<string, unknown>;
  map?: Array<[string, string]>;
}

let sample = ''; // scripts/make-sample-data.mjs output
const q = (p: string) => `'${p.replace(/\\/g, '\\\\')}'`;

/** A tiny SPECTRA with the sample data's vocabulary, saved as SPECTRA-base is published. */
async function tinySpectraFolder(dir: string): Promise<string> {
  const m = et.systems.spectra.Spectra.create({
    num_class: 6,
    audio: {
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 64,
      conv_dim: [32, 32, 32, 32, 32, 32, 32],
      num_conv_pos_embeddings: 16,
      num_conv_pos_embedding_groups: 4,
      num_buckets: 32,
      max_bucket_distance: 64,
      max_length: 12000,
    },
    text: {
      vocab_size: 256,
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 64,
      max_position_embeddings: 130,
      max_length: 64,
    },
  });
  await m.savePretrained(dir);
  m.dispose();
  return dir;
}

const SETUPS: Record<string, (dir: string) => Promise<Setup>> = {
  // SPECTRA-base → a tiny SPECTRA; iemocap/*.pkl → the generated IEMOCAP-style sample data
  async spectra(dir) {
    const base = await tinySpectraFolder(path.join(dir, 'SPECTRA-base'));
    const file = path.join(sample, 'spectra_iemocap.pkl');
    const ds = await et.data.SpectraDataset.fromFile(file, { task: 'iemocap' });
    const items = await Promise.all([0, 1, 2].map((i) => ds.get(i)));
    return {
      vars: { items, valid: ds, test: ds },
      map: [
        ["'SPECTRA-base/'", q(base)],
        ["'iemocap/train.pkl'", q(file)],
        ["device: 'cuda'", "device: 'cpu'"],
      ],
    };
  },
  // wavlm-base-plus / roberta-base → tiny encoders; OUT/transcripts.pkl → a generated corpus; SPECTRA-base → the pre-training fixture
  async 'spectra-pretrain'(dir) {
    const { textPath, audioPath } = await tinyEncoders(dir);
    corpus(dir);
    const tok = et.data.Tokenizer.fromJSON(tokenizerJson() as never);
    const c = await et.systems.spectra.buildSpectraPretrainCorpus({
      speechDir: path.join(dir, 'speech'),
      textDir: path.join(dir, 'text'),
      outDir: path.join(dir, 'OUT'),
      transcriptsName: 'transcripts.pkl',
      maxSliceSeconds: 2,
      encode: (w) => tok.encode(w),
    });
    return {
      map: [
        ["'wavlm-base-plus/'", q(audioPath)],
        ["'roberta-base/'", q(textPath)],
        ["'OUT/transcripts.pkl'", q(c.transcripts)],
        ["'SPECTRA-base/'", q(path.join(FIXTURES, 'spectra_pretrain_model', 'pretrained'))],
        ["device: 'cuda'", "device: 'cpu'"],
        // one epoch of main.py's five (each saved): the loop and its save, in a fifth of the time
        ['saveInterval: 1 })', 'saveInterval: 1, args: { num_train_epochs: 1 } })'],
      ],
    };
  },
  // self-contained
  async plain() {
    return {};
  },
  // the Trainer guide: its item list filled with 64 random items of 32 features and 7 classes
  async training() {
    return {
      map: [
        [
          'const items = [/* { features: Float32Array(32), label } … */];',
          'const items = Array.from({ length: 64 }, (_, i) => ({ features: Float32Array.from({ length: 32 }, () => Math.random()), label: i % 7 }));',
        ],
      ],
    };
  },
  // the metrics guide: predictions and labels of a 6-class task, ECAC conversations, a swift infer file
  async metrics(dir) {
    const labels = et.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3], { dtype: 'int64' });
    const logits = et.randn([10, 6]);
    const preds = [0, 1, 2, 3, 4, 0, 0, 1, 2, 2];
    const conv = (pairs: string[][]) => [{ conversation_ID: 1, 'emotion-cause_pairs': pairs }];
    const infer = path.join(dir, 'infer_result.jsonl');
    fs.writeFileSync(infer, ['{"response": "joy_1, 1", "label": "joy_1, 1"}', '{"response": "anger_2, 1", "label": "sadness_2, 2"}'].join('\n'));
    return {
      vars: {
        logits,
        labels,
        preds,
        targetNames: ['neutral', 'joy', 'sadness', 'anger', 'surprise', 'fear'],
        batches: [
          { preds: preds.slice(0, 5), labels: [0, 1, 2, 3, 4] },
          { preds: preds.slice(5), labels: [5, 0, 1, 2, 3] },
        ],
        predConversations: conv([
          ['2_joy', '2'],
          ['3_anger', '1'],
        ]),
        goldConversations: conv([
          ['2_joy', '2'],
          ['3_sadness', '3'],
        ]),
        generations: ['neutral, happy, sad', 'neutral, sad, sad'],
      },
      map: [
        ["'infer_result.jsonl'", q(infer)],
        ["[['neutral', 'happy', 'sad'], …]", "[['neutral', 'happy', 'sad'], ['neutral', 'happy', 'sad']]"],
      ],
    };
  },
  // the profiler: one step of a small model
  async profiler() {
    const m = et.nn.Mlp.create({ sizes: [64, 128, 7] });
    const x = et.randn([8, 64]);
    return {
      vars: {
        step: async () => {
          const y = await m.forward(x);
          await y.sum().backward();
        },
      },
    };
  },
  // file readers: each kind of file from the fixtures
  async files() {
    return {
      map: [
        ["'model.safetensors'", q(path.join(FIXTURES, 'roberta', 'model.safetensors'))],
        ["'pytorch_model.bin'", q(path.join(FIXTURES, 'spectra', 'pretrained', 'pytorch_model.bin'))],
        ["'train.pkl'", q(path.join(FIXTURES, 'pickle', 'spectra_samples.pkl'))],
        ["'a.wav'", q(path.join(FIXTURES, 'wav', 'float64_mono.wav'))],
      ],
    };
  },
};

/** The block as the body of an async function: imports dropped (the setup gives `et`), types stripped. */
function compile(code: string): string {
  const body = code.replace(/^import .* from ['"][^'"]+['"];?\s*$/gm, '');
  return ts
    .transpileModule(body, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext }, reportDiagnostics: false })
    .outputText.replace(/^export \{\};\s*$/m, '');
}

const all = pages.flatMap((p) => codeBlocks(p, fs.readFileSync(path.join(ROOT, p), 'utf8')));

beforeAll(() => {
  sample = path.join(os.tmpdir(), 'emotorch-docs-sample-data');
  if (!fs.existsSync(path.join(sample, 'spectra_iemocap.pkl')))
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'make-sample-data.mjs'), sample], { stdio: 'ignore' });
});

describe("the documentation's code blocks", () => {
  it('finds the blocks, and each is marked: run here (a known setup) or not run, with the reason', () => {
    expect(all.length).toBeGreaterThan(20);
    const unmarked = all.filter((b) => !b.marker).map((b) => `${b.page}:${b.line}`);
    expect(unmarked, 'blocks without a <!-- doctest: … --> or <!-- not run: … --> line before them').toEqual([]);
    for (const b of all) {
      if (b.marker && 'skip' in b.marker) expect(b.marker.skip.length, `${b.page}:${b.line}: say why it is not run`).toBeGreaterThan(20);
      if (b.marker && 'run' in b.marker) expect(Object.keys(SETUPS), `${b.page}:${b.line}`).toContain(b.marker.run);
    }
    expect(codeBlocks('x.md', 'a\n<!-- not run: needs the 13B checkpoint -->\n```ts\nfoo();\n```\n```sh\nls\n```\n```js\nbar();\n```')).toEqual([
      { page: 'x.md', line: 3, lang: 'ts', code: 'foo();', marker: { skip: 'needs the 13B checkpoint' } },
      { page: 'x.md', line: 9, lang: 'js', code: 'bar();', marker: null },
    ]);
  });

  const runnable = all.filter((b) => b.marker && 'run' in b.marker);
  for (const b of runnable) {
    it(`${b.page}:${b.line} runs (${(b.marker as { run: string }).run})`, async () => {
      const dir = tmpdir();
      const cwd = process.cwd();
      const setup = await SETUPS[(b.marker as { run: string }).run](dir);
      let code = b.code;
      for (const [from, to] of setup.map ?? []) {
        expect(code.includes(from), `${b.page}:${b.line}: the setup maps ${from}, which the block no longer has`).toBe(true);
        code = code.split(from).join(to);
      }
      const vars = { et, fs, path, console: { ...console, log: () => {} }, ...setup.vars };
      const fn = new Function(...Object.keys(vars), `return (async () => {\n${compile(code)}\n})();`);
      process.chdir(dir);
      try {
        await fn(...Object.values(vars));
      } finally {
        process.chdir(cwd);
      }
    }, 300_000);
  }
});
