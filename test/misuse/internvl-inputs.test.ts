/**
 * InternVL's inputs under attack (issue 43 point 5): every bad conversation field, option, size or
 * grid bound of `internvlEncode`, `internvlTiles`, `internvlTileCount`, `internvlGrids` and
 * `findClosestAspectRatio` is an ERR_INVALID_ARG whose message names the field, and the sizes are
 * bounded (`numImageToken: 1e9` used to abort the process with a V8 heap OOM, `imageSize: 1e6`,
 * `internvlGrids(1, 1e6)` and `imageTiles: [1e7]` to hang). Valid calls keep their results.
 */
import { describe, it, expect } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith, throwsWith } from '../helpers';

async function tokenizer() {
  const tok = await et.data.Tokenizer.fromFile(path.join(FIXTURES, 'tokenizers', 'llama', 'tokenizer.json'));
  tok.addSpecialTokens(['<|im_start|>', '<|im_end|>', '<|user|>', '<|assistant|>', '<|system|>', '<|end|>', '<img>', '</img>', '<IMG_CONTEXT>']);
  return tok;
}

const OPTS = { template: 'internvl2' as const, numImageToken: 4 };
/** The regular expression of a field name, dots and brackets escaped. */
const named = (field: string) => new RegExp(field.replace(/[.[\]]/g, '\\$&'));

describe('internvlEncode refuses bad conversations and options, naming the field', () => {
  it('imageTiles: not an array, or a count that is not an integer in [1, 65]', async () => {
    const tok = await tokenizer();
    for (const bad of [[0], [-1], [1.5], [NaN], [Infinity], [1e7], [66], ['2'], [null]]) {
      await rejectsWith(
        () => et.systems.m2se.internvlEncode(tok, { query: 'x', imageTiles: bad as number[] }, OPTS),
        'ERR_INVALID_ARG',
        named('conversation.imageTiles[0]'),
      );
    }
    await rejectsWith(
      () => et.systems.m2se.internvlEncode(tok, { query: '<image><image>x', imageTiles: [1, 0] }, OPTS),
      'ERR_INVALID_ARG',
      named('conversation.imageTiles[1]'),
    );
    for (const bad of ['2', 2, {}, null]) {
      await rejectsWith(
        () => et.systems.m2se.internvlEncode(tok, { query: 'x', imageTiles: bad as never }, OPTS),
        'ERR_INVALID_ARG',
        /conversation\.imageTiles/,
      );
    }
  });

  it('videoFrames: not an array, or a count that is not an integer in [1, 4096]', async () => {
    const tok = await tokenizer();
    for (const bad of [[0], [-3], [2.5], [NaN], [4097], ['8']]) {
      await rejectsWith(
        () => et.systems.m2se.internvlEncode(tok, { query: 'x', videoFrames: bad as number[] }, OPTS),
        'ERR_INVALID_ARG',
        named('conversation.videoFrames[0]'),
      );
    }
    await rejectsWith(
      () => et.systems.m2se.internvlEncode(tok, { query: 'x', videoFrames: '8' as never }, OPTS),
      'ERR_INVALID_ARG',
      /conversation\.videoFrames/,
    );
  });

  it('numImageToken: an integer in [1, 4096] (1e9 used to run the heap out)', async () => {
    const tok = await tokenizer();
    for (const bad of [0, -4, NaN, 1e9, 4097, 1.5, Infinity, '256', undefined, null]) {
      await rejectsWith(
        () => et.systems.m2se.internvlEncode(tok, { query: '<image>x', imageTiles: [2] }, { template: 'internvl2', numImageToken: bad as number }),
        'ERR_INVALID_ARG',
        /numImageToken/,
      );
    }
  });

  it("the prompt's image tokens are bounded (2^20): many images, long videos, a long list stops early", async () => {
    const tok = await tokenizer();
    await rejectsWith(
      () => et.systems.m2se.internvlEncode(tok, { query: 'x', imageTiles: Array(300).fill(65) }, { template: 'internvl2', numImageToken: 4096 }),
      'ERR_INVALID_ARG',
      /conversation\.imageTiles/,
    );
    await rejectsWith(
      () => et.systems.m2se.internvlEncode(tok, { query: 'x', videoFrames: [4096, 4096] }, { template: 'internvl2', numImageToken: 256 }),
      'ERR_INVALID_ARG',
      /conversation\.videoFrames/,
    );
    await rejectsWith(
      () => et.systems.m2se.internvlEncode(tok, { query: 'x', imageTiles: [65], videoFrames: [4096] }, { template: 'internvl2', numImageToken: 256 }),
      'ERR_INVALID_ARG',
      /conversation\.imageTiles and conversation\.videoFrames/,
    );
    const t0 = Date.now();
    await rejectsWith(
      () => et.systems.m2se.internvlEncode(tok, { query: 'x', imageTiles: Array(1e6).fill(65) }, { template: 'internvl2', numImageToken: 256 }),
      'ERR_INVALID_ARG',
      /conversation\.imageTiles/,
    );
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('history: an array of [query, response] string pairs ("x" and [null] used to throw a TypeError)', async () => {
    const tok = await tokenizer();
    for (const bad of [[[1, 2]], [['a']], [null], [['a', 'b', 'c']], [['a', null]], ['ab'], [{ 0: 'a', 1: 'b' }]]) {
      await rejectsWith(
        () => et.systems.m2se.internvlEncode(tok, { query: 'x', history: bad as never }, OPTS),
        'ERR_INVALID_ARG',
        named('conversation.history[0]'),
      );
    }
    await rejectsWith(
      () =>
        et.systems.m2se.internvlEncode(
          tok,
          {
            query: 'x',
            history: [
              ['a', 'b'],
              [1, 2],
            ] as never,
          },
          OPTS,
        ),
      'ERR_INVALID_ARG',
      named('conversation.history[1]'),
    );
    for (const bad of ['x', null, 5, {}]) {
      await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x', history: bad as never }, OPTS), 'ERR_INVALID_ARG', /conversation\.history/);
    }
  });

  it("unknown conversation fields and the other fields' types", async () => {
    const tok = await tokenizer();
    for (const field of ['images', 'image_tiles', 'video_frames', 'bogus', 'messages']) {
      const e = await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x', [field]: [1] } as never, OPTS), 'ERR_INVALID_ARG', /conversation/);
      expect(e.message).toContain(`but received "${field}"`);
    }
    for (const bad of [undefined, null, 'x', 5, [], ['x']]) {
      await rejectsWith(() => et.systems.m2se.internvlEncode(tok, bad as never, OPTS), 'ERR_INVALID_ARG', /conversation/);
    }
    for (const bad of [undefined, null, 5, ['x']]) {
      await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: bad } as never, OPTS), 'ERR_INVALID_ARG', /conversation\.query/);
    }
    await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x', response: 5 } as never, OPTS), 'ERR_INVALID_ARG', /conversation\.response/);
    await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x', response: null } as never, OPTS), 'ERR_INVALID_ARG', /conversation\.response/);
    await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x', system: 5 } as never, OPTS), 'ERR_INVALID_ARG', /conversation\.system/);
  });

  it('unknown option names, a missing options object, a template that is not one, a non-tokenizer', async () => {
    const tok = await tokenizer();
    for (const name of ['num_image_token', 'bogus', 'maxNum']) {
      const e = await rejectsWith(
        () => et.systems.m2se.internvlEncode(tok, { query: 'x' }, { ...OPTS, [name]: 1 } as never),
        'ERR_INVALID_ARG',
        /internvlEncode options/,
      );
      expect(e.message).toContain(`but received "${name}"`);
    }
    for (const bad of [undefined, null, 'internvl2', [1]]) {
      await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x' }, bad as never), 'ERR_INVALID_ARG', /internvlEncode options/);
    }
    for (const bad of ['toString', '__proto__', 'constructor', 'nope', undefined, 2]) {
      await rejectsWith(() => et.systems.m2se.internvlEncode(tok, { query: 'x' }, { template: bad as never, numImageToken: 4 }), 'ERR_INVALID_ARG', /template/);
    }
    for (const bad of [null, undefined, {}, 'tok']) {
      await rejectsWith(() => et.systems.m2se.internvlEncode(bad as never, { query: 'x' }, OPTS), 'ERR_INVALID_ARG', /tokenizer/);
    }
  });

  it('valid calls still encode: the largest image, a video, null system, history', async () => {
    const tok = await tokenizer();
    const ctx = tok.tokenToId('<IMG_CONTEXT>')!;
    const big = await et.systems.m2se.internvlEncode(tok, { query: '<image>Which emotion?', imageTiles: [65] }, { template: 'internvl2', numImageToken: 256 });
    expect(big.tiles).toBe(65);
    expect(big.inputIds.filter((x) => x === ctx).length).toBe(65 * 256);
    expect(big.labels.length).toBe(big.inputIds.length);
    const max = await et.systems.m2se.internvlEncode(tok, { query: 'x', imageTiles: [1] }, { template: 'internvl2', numImageToken: 4096 });
    expect(max.inputIds.filter((x) => x === ctx).length).toBe(4096);
    const vid = await et.systems.m2se.internvlEncode(
      tok,
      { system: null, history: [['Hi', 'Hello.']], query: 'x', response: 'y', videoFrames: [3], imageTiles: [] },
      { template: 'internvl2-phi3', numImageToken: 2 },
    );
    expect(vid.tiles).toBe(3);
    expect(vid.order).toEqual([{ kind: 'video', index: 0 }]);
    expect(vid.inputIds.filter((x) => x === ctx).length).toBe(6);
  });
});

/** The implementations before issue 43, to check valid calls are unchanged. */
function oldGrids(minNum: number, maxNum: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 1; i <= maxNum; i++) for (let j = 1; j <= maxNum; j++) if (i * j >= minNum && i * j <= maxNum) out.push([i, j]);
  return out.sort((a, b) => a[0] * a[1] - b[0] * b[1] || a[0] - b[0]);
}
function oldClosest(aspect: number, ratios: ReadonlyArray<[number, number]>, width: number, height: number, imageSize: number): [number, number] {
  let bestDiff = Infinity;
  let best: [number, number] = [1, 1];
  const area = width * height;
  for (const r of ratios) {
    const diff = Math.abs(aspect - r[0] / r[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = r;
    } else if (diff === bestDiff && area > 0.5 * imageSize * imageSize * r[0] * r[1]) best = r;
  }
  return best;
}

describe('InternVL tiling refuses bad sizes and bounds, naming the argument', () => {
  const img = () => et.zeros([3, 4, 4], { dtype: 'uint8' });

  it('internvlTiles / internvlTileCount: imageSize an integer in [1, 4096] (1e6 used to hang)', () => {
    for (const bad of [1e6, 0, -448, 1.5, NaN, 4097, Infinity, '448', null]) {
      throwsWith(() => et.vision.internvlTiles(img(), { imageSize: bad as number }), 'ERR_INVALID_ARG', /imageSize/);
      throwsWith(() => et.vision.internvlTileCount(640, 480, { imageSize: bad as number }), 'ERR_INVALID_ARG', /imageSize/);
    }
    // the grid's pixels are bounded too: maxNum × imageSize² ≤ 4096²
    throwsWith(() => et.vision.internvlTiles(img(), { imageSize: 4096 }), 'ERR_INVALID_ARG', /imageSize and maxNum/);
    throwsWith(() => et.vision.internvlTileCount(640, 480, { imageSize: 1024, maxNum: 64 }), 'ERR_INVALID_ARG', /imageSize and maxNum/);
    expect(et.vision.internvlTileCount(640, 480, { imageSize: 4096, maxNum: 1 })).toBe(1);
    expect(et.vision.internvlTileCount(640, 480, { imageSize: 448, maxNum: 64 })).toBeLessThanOrEqual(65);
  });

  it('internvlTiles / internvlTileCount: minNum and maxNum integers with 1 ≤ minNum ≤ maxNum ≤ 64', () => {
    for (const bad of [0, -1, 1.5, NaN, 65, '1']) {
      throwsWith(() => et.vision.internvlTiles(img(), { minNum: bad as number, maxNum: 64 }), 'ERR_INVALID_ARG', /minNum/);
      throwsWith(() => et.vision.internvlTileCount(8, 8, { minNum: bad as number }), 'ERR_INVALID_ARG', /minNum/);
    }
    for (const bad of [0, -1, 2.5, NaN, 65, 1e6, '6']) {
      throwsWith(() => et.vision.internvlTiles(img(), { maxNum: bad as number }), 'ERR_INVALID_ARG', /maxNum/);
      throwsWith(() => et.vision.internvlTileCount(8, 8, { maxNum: bad as number }), 'ERR_INVALID_ARG', /maxNum/);
    }
    const e = throwsWith(() => et.vision.internvlTiles(img(), { minNum: 6, maxNum: 3 }), 'ERR_INVALID_ARG', /maxNum/);
    expect(e.message).toMatch(/minNum \(6\)/);
    throwsWith(() => et.vision.internvlTiles(img(), { useThumbnail: 'yes' as never }), 'ERR_INVALID_ARG', /useThumbnail/);
  });

  it('internvlGrids: bad bounds refused, 1e6 no longer quadratic; valid bounds give the same grids as before', () => {
    const t0 = Date.now();
    throwsWith(() => et.vision.internvlGrids(1, 1e6), 'ERR_INVALID_ARG', /maxNum/);
    expect(Date.now() - t0).toBeLessThan(100);
    for (const [lo, hi, field] of [
      [0, 6, 'minNum'],
      [-1, 6, 'minNum'],
      [1.5, 6, 'minNum'],
      [NaN, 6, 'minNum'],
      [65, 70, 'minNum'],
      ['1', 6, 'minNum'],
      [1, 0, 'maxNum'],
      [1, 6.5, 'maxNum'],
      [1, NaN, 'maxNum'],
      [1, 65, 'maxNum'],
      [1, Infinity, 'maxNum'],
      [5, 3, 'maxNum'],
      [1, '6', 'maxNum'],
    ] as Array<[number, number, string]>) {
      throwsWith(() => et.vision.internvlGrids(lo, hi), 'ERR_INVALID_ARG', new RegExp(field));
    }
    for (let hi = 1; hi <= 64; hi++)
      for (const lo of new Set([1, Math.min(2, hi), Math.ceil(hi / 2), hi])) expect(et.vision.internvlGrids(lo, hi), `${lo}, ${hi}`).toEqual(oldGrids(lo, hi));
  });

  it('findClosestAspectRatio: no ratios, a NaN or non-positive aspect, bad grids, sizes refused; valid calls unchanged', () => {
    const grids = et.vision.internvlGrids(1, 12);
    throwsWith(() => et.vision.findClosestAspectRatio(1, [], 448, 448, 448), 'ERR_INVALID_ARG', /ratios/);
    throwsWith(() => et.vision.findClosestAspectRatio(1, null as never, 448, 448, 448), 'ERR_INVALID_ARG', /ratios/);
    for (const bad of [NaN, 0, -1, Infinity, '1'])
      throwsWith(() => et.vision.findClosestAspectRatio(bad as number, grids, 448, 448, 448), 'ERR_INVALID_ARG', /aspect/);
    for (const bad of [[0, 1], [1, -1], [1.5, 1], [NaN, 1], [1], [1, 2, 3], null, [8, 9]]) {
      throwsWith(() => et.vision.findClosestAspectRatio(1, [[1, 1], bad as never], 448, 448, 448), 'ERR_INVALID_ARG', /ratios\[1\]/);
    }
    for (const bad of [0, -5, 1.5, NaN]) {
      throwsWith(() => et.vision.findClosestAspectRatio(1, grids, bad, 448, 448), 'ERR_INVALID_ARG', /width/);
      throwsWith(() => et.vision.findClosestAspectRatio(1, grids, 448, bad, 448), 'ERR_INVALID_ARG', /height/);
    }
    for (const bad of [0, 1e6, 1.5, NaN]) throwsWith(() => et.vision.findClosestAspectRatio(1, grids, 448, 448, bad), 'ERR_INVALID_ARG', /imageSize/);
    for (const max of [1, 6, 12, 64]) {
      const g = et.vision.internvlGrids(1, max);
      for (const [w, h] of [
        [1, 1],
        [448, 448],
        [700, 700],
        [896, 448],
        [1280, 720],
        [720, 1280],
        [1, 65535],
        [65535, 1],
        [333, 999],
        [1000, 10],
      ]) {
        for (const size of [28, 224, 448])
          expect(et.vision.findClosestAspectRatio(w / h, g, w, h, size), `${w}×${h} ${size} ${max}`).toEqual(oldClosest(w / h, g, w, h, size));
      }
    }
  });

  it('valid tiling is unchanged: counts, grids and tile shapes', () => {
    expect(et.vision.internvlTileCount(1280, 720, { maxNum: 12 })).toBe(9);
    expect(et.vision.internvlTileCount(448, 448)).toBe(1);
    const { pixelValues, grid } = et.vision.internvlTiles(et.zeros([3, 8, 16], { dtype: 'uint8' }), { imageSize: 14, maxNum: 6 });
    expect(grid).toEqual([2, 1]);
    expect(pixelValues.shape).toEqual([3, 3, 14, 14]);
    pixelValues.dispose();
  });
});
