/**
 * m2seInfer's `response` equals, character for character, what ms-swift 2.6.1's own inference
 * writes (issue 56 item 4): scripts/fixtures/m2se_swift_responses.py runs swift's
 * get_model_tokenizer_internvl (the slow remote-code InternLM2Tokenizer, `<|im_end|>` as EOS) and its
 * internvl2 template's get_generate_ids → generate_ids_to_response → post_process_generate_response
 * on 308 generated-like answers per tokenizer layout: InternVL2's (its added tokens past the
 * SentencePiece vocabulary) and one with them inside it (the issue's `" ti</quad>abradvideorad"`).
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';

describe("M2SE responses as swift 2.6.1's inference writes them (InternLM2Tokenizer, slow)", () => {
  for (const layout of ['internvl2', 'in_vocab']) {
    it(`${layout}: every answer's response, leading spaces and spaces around InternVL's tokens included`, async () => {
      const dir = path.join(FIXTURES, 'm2se_swift', layout);
      const { meta, rows } = JSON.parse(fs.readFileSync(path.join(dir, 'responses.json'), 'utf8')) as { meta: { eos_token_id: number }; rows: Array<{ ids: number[]; response: string }> };
      const tok = await et.data.Tokenizer.fromFile(dir);
      expect(tok.config.tokenizer_class).toBe('InternLM2Tokenizer');
      const imEnd = tok.tokenToId('<|im_end|>')!;
      expect(imEnd).toBe(meta.eos_token_id);
      const got: string[] = [];
      for (const r of rows) got.push(await et.systems.m2seResponse(tok, r.ids, [imEnd]));
      const bad = rows.map((r, i) => ({ ids: r.ids, want: r.response, got: got[i] })).filter((x) => x.want !== x.got);
      expect(bad.slice(0, 5)).toEqual([]);   // the first few that differ, with their ids, when any does
      expect(rows.filter((r) => r.response.startsWith(' ')).length).toBeGreaterThan(50);
    });
  }
});
