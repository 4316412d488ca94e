// USDM building blocks. Token bans in generate against HF generate(bad_words_ids=...) on a tiny
// random Mistral (scripts/fixtures/usdm_generate.py): identical tokens, greedy and beam.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, rejectsWith } from '../helpers';

const dir = path.join(FIXTURES, 'usdm');
const gen = JSON.parse(fs.readFileSync(path.join(dir, 'generate.json'), 'utf8')) as {
  prompts: number[][];
  attention_mask: number[][];
  cases: Array<{ name: string; options: Record<string, unknown>; tokens: number[][] }>;
};

describe('generate with bannedTokenRanges / allowedTokenRanges = HF bad_words_ids', () => {
  for (const c of gen.cases) {
    it(`${c.name}: identical tokens`, async () => {
      const m = await et.nn.LlamaForCausalLM.fromPretrained(path.join(dir, 'mistral'));
      const inputIds = et.tensor(gen.prompts, { dtype: 'int64' });
      const attentionMask = et.tensor(gen.attention_mask, { dtype: 'int64' });
      // the fixture keeps HF's generate() names; emotorch's options are their camelCase
      const options = Object.fromEntries(Object.entries(c.options).map(([k, v]) => [k.replace(/_([a-z])/g, (_, x: string) => x.toUpperCase()), v]));
      const { newTokens } = await m.generate({ inputIds, attentionMask }, { ...options, padTokenId: 0 });
      expect(newTokens.toArray()).toEqual(c.tokens);
    });
  }
  it('rejects ranges outside the vocabulary or that ban everything', async () => {
    const m = await et.nn.LlamaForCausalLM.fromPretrained(path.join(dir, 'mistral'));
    const inputIds = et.tensor([[1, 5]], { dtype: 'int64' });
    await rejectsWith(() => m.generate({ inputIds }, { bannedTokenRanges: [[0, 161]] }), 'ERR_INVALID_ARG', /bannedTokenRanges\[0\]/);
    await rejectsWith(() => m.generate({ inputIds }, { bannedTokenRanges: [[5, 3]] }), 'ERR_INVALID_ARG', /bannedTokenRanges\[0\]/);
    await rejectsWith(() => m.generate({ inputIds }, { allowedTokenRanges: 7 as never }), 'ERR_INVALID_ARG', /allowedTokenRanges/);
    await rejectsWith(
      () =>
        m.generate(
          { inputIds },
          {
            bannedTokenRanges: [
              [0, 100],
              [100, 160],
            ],
          },
        ),
      'ERR_INVALID_ARG',
      /at least one id/,
    );
    await rejectsWith(() => m.generate({ inputIds }, { allowedTokenRanges: [[3, 9]], bannedTokenRanges: [[0, 10]] }), 'ERR_INVALID_ARG', /at least one id/);
  });
});
