// InternVL2 prompts as ms-swift 2.6.1's `internvl2` / `internvl2-phi3` templates lay them out
// (template.py L2437-2609, spelled out here by hand from swift's strings): system block, turns,
// image tokens, Frame{i} prefixes for video frames, labels on responses and their separator.
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith } from '../helpers';

async function tokenizer() {
  const tok = await et.data.Tokenizer.fromFile(path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json'));
  tok.addSpecialTokens(['<|im_start|>', '<|im_end|>', '<|user|>', '<|assistant|>', '<|system|>', '<|end|>', '<img>', '</img>', '<IMG_CONTEXT>']);
  return tok;
}

describe('internvlEncode = ms-swift InternVL2 templates', () => {
  it('internvl2: system, history, an image of 2 tiles; labels on responses and <|im_end|>', async () => {
    const tok = await tokenizer();
    const ctx = tok.tokenToId('<IMG_CONTEXT>')!;
    const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });
    const out = await et.data.internvlEncode(
      tok,
      { system: 'Be brief.', history: [['Hi', 'Hello.']], query: 'What is it?', response: 'Joy.', imageTiles: [2] },
      { template: 'internvl2', numImageToken: 4 },
    );
    const bos = (await tok.encode('')).includes(tok.bosTokenId!) ? [tok.bosTokenId!] : [];
    const p1 = await enc('<|im_start|>system\nBe brief.<|im_end|><|im_start|>user\n<img>');
    const p2 = await enc('</img>\nHi<|im_end|><|im_start|>assistant\n');
    const r1 = await enc('Hello.<|im_end|>');
    const p3 = await enc('<|im_start|>user\nWhat is it?<|im_end|><|im_start|>assistant\n');
    const r2 = await enc('Joy.<|im_end|>');
    const image = Array(8).fill(ctx);
    expect(out.inputIds).toEqual([...bos, ...p1, ...image, ...p2, ...r1, ...p3, ...r2]);
    const ig = (xs: number[]) => xs.map(() => -100);
    expect(out.labels).toEqual([...ig(bos), ...ig(p1), ...ig(image), ...ig(p2), ...r1, ...ig(p3), ...r2]);
    expect(out.tiles).toBe(2);
    expect(out.lengthBeforeImages).toBe(out.inputIds.length - 8 + 1);
  });
  it('internvl2-phi3: default system, a video as Frame{i} tiles, inference prompt without a response', async () => {
    const tok = await tokenizer();
    const ctx = tok.tokenToId('<IMG_CONTEXT>')!;
    const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });
    const out = await et.data.internvlEncode(tok, { query: 'Which emotion?', videoFrames: [2] }, { template: 'internvl2-phi3', numImageToken: 4 });
    const bos = (await tok.encode('')).includes(tok.bosTokenId!) ? [tok.bosTokenId!] : [];
    const expected = [
      ...bos,
      ...(await enc(`<|system|>\n${et.data.INTERNVL2_SYSTEM}<|end|><|user|>\nFrame1: <img>`)),
      ...Array(4).fill(ctx),
      ...(await enc('</img>\nFrame2: <img>')),
      ...Array(4).fill(ctx),
      ...(await enc('</img>\nWhich emotion?<|end|><|assistant|>\n')),
    ];
    expect(out.inputIds).toEqual(expected);
    expect(out.labels.every((l) => l === -100)).toBe(true);
  });
  it('refuses tags without media and media without a tag left', async () => {
    const tok = await tokenizer();
    await rejectsWith(
      () => et.data.internvlEncode(tok, { query: '<image><image>x', imageTiles: [1] }, { template: 'internvl2', numImageToken: 4 }),
      'ERR_INVALID_ARG',
      /imageTiles/,
    );
    await rejectsWith(() => et.data.internvlEncode(tok, { query: 'x' }, { template: 'nope' as never, numImageToken: 4 }), 'ERR_INVALID_ARG', /template/);
    const plain = await et.data.Tokenizer.fromFile(path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json'));
    await rejectsWith(() => et.data.internvlEncode(plain, { query: 'x' }, { template: 'internvl2', numImageToken: 4 }), 'ERR_INVALID_ARG', /IMG_CONTEXT/);
  });
});
