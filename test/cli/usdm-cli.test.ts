// `npx emotorch usdm infer` (dist/cli/main.js, spawned) on the tiny USDM fixture (a random Mistral
// with USDM's id layout) and a tokenizer.json laid out the same way: from units and from a wav
// (units read by et.audio.UnitExtractor over the tiny XLS-R fixture), the JSON equal to
// Usdm.infer's through the public API; usage errors for what the original needs and emotorch lacks.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const run = (args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

/** A character tokenizer.json with USDM's layout on the fixture's 160 ids ("\n" 13, "▁" 28, <|continue|> 100, <|correspond|> 101, 57 units from 102, <pad> 159). */
function toyTokenizer(file: string): void {
  const chars: Record<number, string> = { 13: '\n', 28: '▁', 56: '#', 57: '.', 58: ',', 59: "'" };
  for (let k = 0; k < 26; k++) { chars[30 + k] = String.fromCharCode(97 + k); chars[60 + k] = String.fromCharCode(65 + k); }
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let i = 3; i < 100; i++) vocab[chars[i] ?? `[${i}]`] = i;
  const special = [[0, '<unk>'], [1, '<s>'], [2, '</s>'], [100, '<|continue|>'], [101, '<|correspond|>'], ...Array.from({ length: 57 }, (_, u) => [102 + u, `<|unit${u}|>`]), [159, '<pad>']] as Array<[number, string]>;
  fs.writeFileSync(file, JSON.stringify({
    version: '1.0', truncation: null, padding: null, pre_tokenizer: null, post_processor: null,
    added_tokens: special.map(([id, content]) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'Fuse' }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  }));
  fs.writeFileSync(path.join(path.dirname(file), 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', pad_token: '<pad>' }));
}

describe('emotorch usdm infer', () => {
  it('answers units and a wav as Usdm.infer does, and writes the JSON', async () => {
    const dir = tmpdir();
    const tokFile = path.join(dir, 'tokenizer.json');
    toyTokenizer(tokFile);
    const model = path.join(FIXTURES, 'usdm', 'mistral');
    const tok = await et.data.Tokenizer.fromFile(tokFile);
    const ids = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };
    const usdm = await et.systems.Usdm.fromPretrained(model, { tokenIds: ids });
    const codec = { encode: (t: string) => tok.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tok.decode(x) };
    const want = async (units: number[]) => {
      const r = await et.noGrad(() => usdm.infer(units, codec, { maxNewTokens: 12 }));
      return { user_units: units, user_text: r.userText, agent_text: r.agentText, agent_units: r.agentUnits };
    };

    const outFile = path.join(dir, 'out', 'answer.json');
    const a = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17 50 2 9', '--max_new_tokens', '12', '--output_path', outFile]);
    expect(a.code, a.err).toBe(0);
    expect(JSON.parse(a.out)).toEqual(await want([3, 3, 17, 50, 2, 9]));
    expect(JSON.parse(fs.readFileSync(outFile, 'utf8'))).toEqual(JSON.parse(a.out));

    // from speech: the tiny XLS-R fixture read at layer 2 with its 57-or-fewer centroids
    const xlsr = path.join(FIXTURES, 'wav2vec2', 'xlsr'), kmeans = path.join(FIXTURES, 'wav2vec2', 'centroids.npy');
    const wav = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
    const ux = new et.audio.UnitExtractor({ encoder: (await et.nn.Wav2Vec2Model.fromPretrained(xlsr)).eval(), layer: 2, centroids: kmeans });
    const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000 });
    const [units] = await et.noGrad(() => ux.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
    const b = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--input_path', wav, '--xlsr', xlsr, '--kmeans', kmeans, '--layer', '2', '--max_new_tokens', '12']);
    expect(b.code, b.err).toBe(0);
    expect(JSON.parse(b.out)).toEqual(await want(units));

    // usage: one input, no speech decoder; bad units
    expect(run(['usdm', 'infer', '--model', model, '--units', '1', '--input_path', wav]).code).toBe(2);
    expect(run(['usdm', 'infer', '--model', model, '--units', '1', '--reference_path', wav]).err).toMatch(/Voicebox/);
    expect(run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '1 x']).code).toBe(2);
    const big = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '99']);
    expect(big.code).toBe(1);
    expect(big.err).toMatch(/ERR_INVALID_ARG: .*userUnits/);
  }, 300_000);

  it("--max_new_tokens is at most the model's context (256 here): 1e12 or 257 is ERR_INVALID_ARG naming it; an --output_path that is a folder is refused before the work", () => {
    const dir = tmpdir();
    const tokFile = path.join(dir, 'tokenizer.json');
    toyTokenizer(tokFile);
    const model = path.join(FIXTURES, 'usdm', 'mistral');
    for (const n of ['1e12', '257']) {
      const r = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17', '--max_new_tokens', n]);
      expect(r.err).toMatch(new RegExp(`ERR_INVALID_ARG: Expected a positive integer of at most 256 \\(the model's context length, max_position_embeddings\\) for --max_new_tokens but received ${Number(n)}`));
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(r.code).toBe(1);
    }
    const folder = run(['usdm', 'infer', '--model', model, '--tokenizer', tokFile, '--units', '3 3 17', '--output_path', dir]);
    expect(folder.err).toMatch(/ERR_INVALID_ARG: --output_path '.*' is not a regular file \(it is a folder\)/);
    expect(folder.code).toBe(1);
  }, 120_000);
});
