import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { rejectsWith, throwsWith, tmpdir } from '../helpers';

const { usdm } = et.data;

/** A tiny tokenizer: special tokens get ids ≥ 100000, every other character its code point. */
class FakeTokenizer {
  private special = new Map<string, number>([
    ['<|correspond|>', 100001],
    ['</s>', 2],
  ]);
  encode(text: string): number[] {
    const ids: number[] = [];
    let i = 0;
    while (i < text.length) {
      const m = /^<\|unit(\d+)\|>/.exec(text.slice(i));
      if (m) {
        ids.push(200000 + Number(m[1]));
        i += m[0].length;
        continue;
      }
      const s = [...this.special.keys()].find((k) => text.startsWith(k, i));
      if (s) {
        ids.push(this.special.get(s)!);
        i += s.length;
        continue;
      }
      const cp = text.codePointAt(i)!;
      ids.push(cp);
      i += cp > 0xffff ? 2 : 1;
    }
    return ids;
  }
  decode(ids: number[]): string {
    const inv = new Map([...this.special.entries()].map(([k, v]) => [v, k]));
    return ids.map((id) => (id >= 200000 ? `<|unit${id - 200000}|>` : (inv.get(id) ?? String.fromCodePoint(id)))).join('');
  }
}

/** The contiguous runs of labels ≠ −100, decoded. */
function spans(ids: number[], labels: number[], tok: FakeTokenizer): string[] {
  const out: string[] = [];
  let run: number[] = [];
  labels.forEach((l, k) => {
    if (l !== -100) {
      expect(l).toBe(ids[k]);
      run.push(l);
    } else if (run.length) {
      out.push(tok.decode(run));
      run = [];
    }
  });
  if (run.length) out.push(tok.decode(run));
  return out;
}

const turn = { userUnits: [5, 17, 9999], userText: 'I lost my keys…', agentText: "Oh no, let's look together.", agentUnits: [0, 42] };

describe('USDM', () => {
  it('builds exactly the reference template', () => {
    const ex = usdm.buildUsdmExample(turn, new FakeTokenizer());
    expect(ex.text).toBe(
      "Below is a conversation between the user and the agent. Each turn includes the user's speech and its corresponding transcript, along with the agent's response text and the corresponding speech.\n" +
        '\n### User\n<|unit5|><|unit17|><|unit9999|><|correspond|>I lost my keys…\n### Agent\n' +
        "Oh no, let's look together.<|correspond|><|unit0|><|unit42|>\n</s>",
    );
    expect(usdm.usdmText(turn)).toBe(ex.text);
  });

  it('puts the loss only on the user transcript (with its newline) and the agent text, correspond and units', () => {
    const tok = new FakeTokenizer();
    const ex = usdm.buildUsdmExample(turn, tok, { bos: 1 });
    expect(ex.ids.length).toBe(ex.labels.length);
    expect(ex.ids[0]).toBe(1);
    expect(ex.labels[0]).toBe(-100);
    expect(tok.decode(ex.ids.slice(1))).toBe(ex.text);
    expect(spans(ex.ids, ex.labels, tok)).toEqual(['I lost my keys…\n', "Oh no, let's look together.<|correspond|><|unit0|><|unit42|>"]);
    // and the ids of </s> and the user's units carry no loss
    expect(ex.labels[ex.labels.length - 1]).toBe(-100);
    expect(ex.labels[ex.ids.indexOf(200005)]).toBe(-100);
  });

  it('takes a tokenizer whose encode returns Promises (as et.data.Tokenizer) and then returns a Promise', async () => {
    const tok = new FakeTokenizer();
    const sync = usdm.buildUsdmExample(turn, tok, { bos: 1 });
    const pending = usdm.buildUsdmExample(turn, { encode: async (s: string) => tok.encode(s) }, { bos: 1 });
    expect(pending).toBeInstanceOf(Promise);
    expect(await pending).toEqual(sync);
    await rejectsWith(usdm.buildUsdmExample(turn, { encode: async () => ['a'] } as never) as never, 'ERR_INVALID_ARG', /tokenizer\.encode result/);
  });

  it('round-trips ids|labels lines and validates them with file and line named', async () => {
    const dir = tmpdir();
    const ex = usdm.buildUsdmExample(turn, new FakeTokenizer());
    const f = path.join(dir, 'train.txt');
    fs.writeFileSync(f, `${usdm.formatUsdmLine(ex)}\n\n1 2 3|-100 2 3\n`);
    const lines = await usdm.readUsdmLines(f);
    expect(lines).toEqual([
      { ids: ex.ids, labels: ex.labels },
      { ids: [1, 2, 3], labels: [-100, 2, 3] },
    ]);

    const bad = path.join(dir, 'bad.txt');
    fs.writeFileSync(bad, '1 2|-100 2\n1 2 3|-100 2\n1 x|1 -100\n1 2|1 5\n1 2 3\n');
    await rejectsWith(usdm.readUsdmLines(bad), 'ERR_DATA', /bad\.txt' item 1 \(line 2\): has 3 ids but 2 labels/);
    const ds = await et.data.UsdmDataset.fromFile(bad, { skipBad: true });
    expect(ds.length).toBe(1);
    expect(ds.skippedItems.map((s) => s.reason)).toEqual([
      expect.stringMatching(/line 2\): has 3 ids but 2 labels/),
      expect.stringMatching(/line 3\): ids\[1\] is "x", not an integer/),
      expect.stringMatching(/line 4\): labels\[1\] is 5, neither ids\[1\] \(2\) nor -100/),
      expect.stringMatching(/line 5\): expected 'ids\|labels' but found 0 '\|'/),
    ]);
    expect(await ds.get(0)).toEqual({ ids: [1, 2], labels: [-100, 2] });
    await rejectsWith(et.data.UsdmDataset.fromFile(bad), 'ERR_DATA', /item 1 \(line 2\)/);
    // an id past the model's vocabulary is named by file and line (usdm sft passes its model's)
    const far = path.join(dir, 'far.txt');
    fs.writeFileSync(far, '1 2|-100 2\n\n1 49|1 49\n1 50 3|-100 50 3\n');
    expect((await usdm.readUsdmLines(far, { vocabSize: 51 })).length).toBe(3);
    await rejectsWith(
      usdm.readUsdmLines(far, { vocabSize: 50 }),
      'ERR_DATA',
      /far\.txt' item 3 \(line 4\): ids\[1\] is 50, past the model's vocabulary of 50 tokens \(ids 0 to 49\)/,
    );
    await rejectsWith(usdm.readUsdmLines(far, { vocabSize: 0 }), 'ERR_INVALID_ARG', /vocabSize/);
    await rejectsWith(usdm.readUsdmLines(far, { vocabsize: 50 } as never), 'ERR_INVALID_ARG', /vocabsize/);
  });

  it('validates turns and tokenizers', () => {
    throwsWith(
      () => usdm.buildUsdmExample({ ...turn, userUnits: [10000] }, new FakeTokenizer()),
      'ERR_INVALID_ARG',
      /unit indices in \[0, 10000\) for userUnits/,
    );
    throwsWith(() => usdm.buildUsdmExample(turn, {} as never), 'ERR_INVALID_ARG', /for tokenizer/);
    throwsWith(() => usdm.buildUsdmExample(turn, { encode: () => ['a'] } as never), 'ERR_INVALID_ARG', /tokenizer\.encode result/);
  });
});
