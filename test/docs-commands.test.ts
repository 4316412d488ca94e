// Examples that cannot rot (issue 49): every `npx emotorch …` line in a shell block of README.md or
// docs/*.md names a command that exists, answers `--help`, and takes every flag the line gives it
// (placeholders such as `…`, `[optional]` brackets and `# comments` are read as the reader reads them).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import { SYSTEMS, TOP, main, parseFlags } from '../lib/cli/main';

const ROOT = path.join(__dirname, '..');
const pages = [
  'README.md',
  ...fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join('docs', f)),
];

/** The `npx emotorch …` command lines of a page's shell blocks, continuation lines joined. */
function commandLines(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)) {
    const joined = m[1].replace(/\s*\\\n\s*/g, ' ');
    for (const line of joined.split('\n')) {
      const code = line.replace(/\s+#.*$/, '').trim();
      if (/^npx emotorch\s/.test(code)) out.push(code);
    }
  }
  return out;
}

/** A line's arguments after `npx emotorch`, quotes honoured, `[`/`]` of optional parts dropped. */
function words(line: string): string[] {
  return [...line.slice('npx emotorch'.length).matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)]
    .map((m) => (m[1] ?? m[2] ?? m[3]).replace(/^\[|\]$/g, ''))
    .filter((w) => w && w !== '|' && w !== '…');
}

describe("the documentation's command lines", () => {
  const all = pages.flatMap((p) => commandLines(fs.readFileSync(path.join(ROOT, p), 'utf8')).map((line) => ({ page: p, line })));

  it('finds the command lines of the guides (the check reads them)', () => {
    expect(all.length).toBeGreaterThan(20);
    expect(commandLines('```sh\nnpx emotorch usdm sft --a 1 \\\n  --b 2   # note\nls\n```')).toEqual(['npx emotorch usdm sft --a 1 --b 2']);
    expect(words('npx emotorch salmonn train --cfg-path c.yaml [--resume] --prompt "a b"')).toEqual([
      'salmonn',
      'train',
      '--cfg-path',
      'c.yaml',
      '--resume',
      '--prompt',
      'a b',
    ]);
  });

  it('each names a command that answers --help and takes every flag the line gives it', async () => {
    const problems: string[] = [];
    for (const { page, line } of all) {
      const w = words(line);
      const top = TOP[w[0]];
      const command = top ?? SYSTEMS[w[0]]?.commands[w[1]];
      if (!command) {
        problems.push(`${page}: '${line}': no such command`);
        continue;
      }
      const head = top ? [w[0]] : [w[0], w[1]];
      let help = '';
      const code = await main(
        [...head, '--help'],
        (s) => {
          help += s;
        },
        () => {},
      );
      if (code !== 0 || !help.includes('Usage')) problems.push(`${page}: '${head.join(' ')} --help' exits ${code}`);
      try {
        parseFlags(w.slice(head.length), command.flags);
      } catch (e) {
        problems.push(`${page}: '${line}': ${(e as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });
});
