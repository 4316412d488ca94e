/**
 * m2seInfer's `response` equals, character for character, what ms-swift 2.6.1's own inference
 * writes, and stops where swift's generation stops (issue 56 item 4):
 * scripts/fixtures/m2se_swift_responses.py runs swift's get_model_tokenizer for each model type
 * (its get_model_tokenizer_internvl: the slow tokenizer, `use_fast=False`, and swift's EOS) and its
 * template's StopWordsCriteria (template.suffix[-1] in the decoded last 20 new tokens) with the EOS
 * stop, then get_generate_ids → generate_ids_to_response → post_process_generate_response, on 312
 * generated-like token streams per tokenizer layout: InternVL2-8B's InternLM2Tokenizer (`internvl2`)
 * and a variant with InternVL's tokens inside its vocabulary (`in_vocab`, the issue's
 * `" ti</quad>abradvideorad"`), InternVL2-4B's Phi-3 LlamaTokenizer (`phi3`, legacy=False) and
 * InternVL2-1B's Qwen2Tokenizer (`qwen2`, byte-level BPE).
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';
import { internvlStop } from '../../lib/systems/m2se/recipe';

interface Fixture {
  meta: { tokenizer: string; template: string; eos_token: string; eos_token_id: number; suffix: string[]; stop_words: string[] };
  rows: Array<{ ids: number[]; stop: number; response: string }>;
}

const LAYOUTS = { internvl2: 'internvl2', in_vocab: 'internvl2', phi3: 'internvl2-phi3', qwen2: 'internvl2' } as const;

describe("M2SE responses as swift 2.6.1's inference writes them (its slow tokenizers, its stop)", () => {
  for (const [layout, template] of Object.entries(LAYOUTS)) {
    it(`${layout}: where generation stops, and every answer's response to the character`, async () => {
      const dir = path.join(FIXTURES, 'm2se_swift', layout);
      const { meta, rows } = JSON.parse(fs.readFileSync(path.join(dir, 'responses.json'), 'utf8')) as Fixture;
      const tok = await et.data.Tokenizer.fromFile(dir);
      expect(tok.config.tokenizer_class).toBe(meta.tokenizer);
      expect(meta.template).toBe(template);
      // swift's EOS and its one stop word are the template's separator, as m2seInfer takes them
      const sep = internvlStop(tok, template);
      expect(sep).toEqual({ ends: [meta.eos_token_id], suffix: meta.suffix[meta.suffix.length - 1] });
      expect(meta.stop_words).toEqual([sep.suffix]);
      const got: string[] = [];
      for (const r of rows) got.push(await et.systems.m2se.m2seResponse(tok, r.ids, sep.ends, false, sep.suffix));
      const bad = rows.map((r, i) => ({ ids: r.ids, want: r.response, got: got[i] })).filter((x) => x.want !== x.got);
      expect(bad.slice(0, 5).map((x) => JSON.stringify(x))).toEqual([]); // the first few that differ, with their ids, when any does
      // the fixture holds streams swift cuts before their last token, by the EOS and by the stop word's text
      expect(rows.filter((r) => r.stop < r.ids.length).length).toBeGreaterThan(20);
      expect(rows.some((r) => !r.ids.slice(0, r.stop).includes(meta.eos_token_id) && r.stop < r.ids.length)).toBe(true);
    });
  }
});

describe('m2seResponse refuses bad arguments', () => {
  it('names the argument', async () => {
    const tok = await et.data.Tokenizer.fromFile(path.join(FIXTURES, 'm2se_swift', 'phi3'));
    const call = (...a: unknown[]): Promise<string> => (et.systems.m2se.m2seResponse as (...x: unknown[]) => Promise<string>)(...a);
    await expect(call({}, [1], [2])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/tokenizer/) });
    await expect(call(tok, [1, -1], [2])).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/for tokens/) });
    await expect(call(tok, [1], 'x')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/for ends/) });
    await expect(call(tok, [1], [2], 'yes')).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/for trim/) });
    await expect(call(tok, [1], [2], false, 7)).rejects.toMatchObject({ code: 'ERR_INVALID_ARG', message: expect.stringMatching(/for suffix/) });
  });
});
