/**
 * Inputs bounded in the library (issue 43): a dataset record or a JSON-lines line of absurd length
 * is a coded error naming the file and line (the tokenizer, fed a 100 MB text, needs about 8 GB and
 * aborts the process when an allocation fails); the tokenizer refuses a text past MAX_ENCODE_CHARS
 * instead of passing it on; SALMONN's config refuses a key it does not have (it was dropped
 * silently) while the originals' configs and YAML keys still load.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { readSalmonnYaml } from '../../lib/cli/salmonn';
import { FIXTURES, rejectsWith, salmonnDecodeYaml, throwsWith, tmpdir } from '../helpers';

const MiB = 1024 * 1024;

describe('M2SE records and JSON lines of absurd length', () => {
  it(`a record with more than M2SE_MAX_RECORD_CHARS (${2 * MiB}) characters of text is ERR_DATA naming it; one at the cap is read`, () => {
    const cap = et.systems.m2se.M2SE_MAX_RECORD_CHARS;
    expect(cap).toBe(2 * MiB);
    const at = 'q'.repeat(cap - 2);
    expect(et.systems.m2se.m2seRecords([{ query: at, response: 'r', system: 's' }])[0].query.length).toBe(cap - 2);
    throwsWith(
      () =>
        et.systems.m2se.m2seRecords([
          { query: 'q', response: 'r' },
          { query: at, response: 'rr', system: 's' },
        ]),
      'ERR_DATA',
      new RegExp(`records item 1: its text .* has ${cap + 1} characters, more than the ${cap}`),
    );
    // the text of earlier turns counts too
    throwsWith(
      () =>
        et.systems.m2se.m2seRecords([
          {
            messages: [
              { role: 'user', content: at },
              { role: 'assistant', content: 'abc' },
              { role: 'user', content: 'q' },
              { role: 'assistant', content: 'r' },
            ],
          },
        ]),
      'ERR_DATA',
      /item 0/,
    );
  });

  it('in a .jsonl file the error names the file, the item and its line; a line over MAX_JSONL_LINE (64 Mi characters) is ERR_FORMAT naming the line', () => {
    const dir = tmpdir();
    const file = path.join(dir, 'train.jsonl');
    try {
      fs.writeFileSync(file, `\n${JSON.stringify({ query: 'q', response: 'r' })}\n${JSON.stringify({ query: 'q'.repeat(3 * MiB), response: 'r' })}\n`);
      throwsWith(() => et.systems.m2se.m2seRecords(file), 'ERR_DATA', /train\.jsonl' item 1 \(line 3\): its text/);
      fs.writeFileSync(file, `${JSON.stringify({ query: 'q', response: 'r' })}\n{"query": "${'q'.repeat(64 * MiB)}", "response": "r"}\n`);
      throwsWith(
        () => et.systems.m2se.m2seRecords(file),
        'ERR_FORMAT',
        new RegExp(`train\\.jsonl' line 2 has ${64 * MiB + 30} characters, more than the ${64 * MiB}`),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the tokenizer refuses texts it would run out of memory on', () => {
  it('encode / tokenize past MAX_ENCODE_CHARS, and encodeBatch past it in all, are ERR_INVALID_ARG naming the text', async () => {
    const tok = await et.data.Tokenizer.fromFile(path.join(FIXTURES, 'm2se_internvl', 'tokenizer.json'));
    const cap = et.data.MAX_ENCODE_CHARS;
    expect(cap).toBe(8 * MiB);
    const over = 'a'.repeat(cap + 1);
    await rejectsWith(tok.encode(over), 'ERR_INVALID_ARG', new RegExp(`at most ${cap} characters .* for text but received "a text of ${cap + 1} characters"`));
    await rejectsWith(tok.tokenize(over), 'ERR_INVALID_ARG', /for text/);
    await rejectsWith(tok.encodeBatch(['a', over]), 'ERR_INVALID_ARG', /for texts\[1\]/);
    const half = 'a'.repeat(cap / 2 + 1);
    await rejectsWith(tok.encodeBatch([half, half]), 'ERR_INVALID_ARG', new RegExp(`in all .* for texts but received "2 texts of ${cap + 2} characters"`));
    expect((await tok.encode('hello world', { addSpecialTokens: false })).length).toBeGreaterThan(0);
  });
});

describe("SALMONN's config: an unknown key is an error naming it", () => {
  const parts = { whisper: path.join(FIXTURES, 'whisper'), beats: path.join(FIXTURES, 'beats', 'beats.pt'), llm: path.join(FIXTURES, 'salmonn', 'llm') };
  const cfg = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'config.json'), 'utf8'));

  it('a misspelt or foreign key is ERR_INVALID_ARG naming it, before any part loads; the YAML path keys say where they go', async () => {
    const nowhere = { whisper: '/nonexistent', llm: '/nonexistent' };
    await rejectsWith(
      et.systems.salmonn.Salmonn.fromPretrained({ ...nowhere, config: { ...cfg, max_new_token: 5 } as never }),
      'ERR_INVALID_ARG',
      /for SALMONN config\.max_new_token but received "a name it does not have"/,
    );
    await rejectsWith(
      et.systems.salmonn.Salmonn.fromPretrained({ ...nowhere, config: { lora_rnak: 4 } as never }),
      'ERR_INVALID_ARG',
      /SALMONN config\.lora_rnak/,
    );
    // the YAML's path keys are where from_config loads from: one that disagrees with the option is refused, naming both
    await rejectsWith(
      et.systems.salmonn.Salmonn.fromPretrained({ ...nowhere, config: { llama_path: '/x' } as never }),
      'ERR_INVALID_ARG',
      /the path config\.llama_path names \("\/x"\).* for opts\.llm but received "\/nonexistent"/,
    );
    await rejectsWith(
      et.systems.salmonn.Salmonn.fromPretrained({ ...nowhere, config: { maxNewTokens: 5 } as never }),
      'ERR_INVALID_ARG',
      /SALMONN config\.maxNewTokens/,
    );
  });

  it("the originals' configs still load: every SALMONN_DEFAULTS key, the fixture config, and decode_config.yaml's keys through readSalmonnYaml", async () => {
    const every = { ...et.systems.salmonn.SALMONN_DEFAULTS, ...cfg, maxAudioSeconds: 30, max_audio_seconds: undefined }; // and the deprecated spelling
    const m = await et.systems.salmonn.Salmonn.fromPretrained({ ...parts, checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn.pth'), config: every });
    expect(m.config.max_audio_seconds).toBe(30);
    m.dispose();
    const { options, ignored } = readSalmonnYaml(salmonnDecodeYaml(tmpdir()).file);
    expect(ignored.sort()).toEqual(['token']); // the YAML's own keys that are not config fields, named back (low_resource goes to the model, which loads the LLaMA in int8 when true)
    const y = await et.systems.salmonn.Salmonn.fromPretrained(options);
    expect(y.config.num_beams).toBe(2);
    y.dispose();
  });
});
