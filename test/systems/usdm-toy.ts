/**
 * The toy character tokenizer of scripts/fixtures/usdm_toy.py, for the USDM tests: ids laid out
 * like USDM's Mistral (13 "\n", 28 "▁", 100 <|continue|>, 101 <|correspond|>, 102.. units, 159 <pad>).
 * encode adds no BOS.
 */
export const IDS = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };
const SPECIAL: Record<string, number> = { '<|continue|>': 100, '<|correspond|>': 101, '</s>': 2, '<s>': 1, '<pad>': 159 };

function charId(c: string): number {
  if (c === ' ') return 28;
  if (c === '\n') return 13;
  if (c >= 'a' && c <= 'z') return 30 + c.charCodeAt(0) - 97;
  if (c >= 'A' && c <= 'Z') return 60 + c.charCodeAt(0) - 65;
  return ({ '#': 56, '.': 57, ',': 58, "'": 59 } as Record<string, number>)[c] ?? 3;
}

export const codec = {
  encode(text: string): number[] {
    const ids: number[] = [];
    for (let i = 0; i < text.length;) {
      const m = /^<\|unit(\d+)\|>/.exec(text.slice(i));
      if (m) {
        ids.push(102 + Number(m[1]));
        i += m[0].length;
        continue;
      }
      const s = Object.keys(SPECIAL).find((k) => text.startsWith(k, i));
      if (s) {
        ids.push(SPECIAL[s]);
        i += s.length;
        continue;
      }
      ids.push(charId(text[i]));
      i += 1;
    }
    return ids;
  },
  decode(ids: number[]): string {
    const inv: Record<number, string> = { 28: ' ', 13: '\n', 56: '#', 57: '.', 58: ',', 59: "'", 3: '?', 0: '<unk>' };
    for (const [k, v] of Object.entries(SPECIAL)) inv[v] = k;
    for (let k = 0; k < 26; k++) {
      inv[30 + k] = String.fromCharCode(97 + k);
      inv[60 + k] = String.fromCharCode(65 + k);
    }
    return ids.map((i) => (i >= 102 && i < 159 ? `<|unit${i - 102}|>` : (inv[i] ?? '~'))).join('');
  },
};
