/**
 * The naming rule (DESIGN rule 11), checked on the source: snake_case only in objects that
 * mirror a file (listed below by type name), camelCase everywhere else, never both in one object
 * (a member marked `@deprecated`, an old spelling kept for one release, is not counted);
 * and the helpers that keep a renamed name working for one release.
 */
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import ts from 'typescript';
import * as et from '../../lib/index';
import { checkOptionNames, renameDeprecated, withDeprecatedAlias } from '../../lib/errors';
import { throwsWith } from '../helpers';

const LIB = path.join(__dirname, '..', '..', 'lib');

/**
 * Types whose field names mirror a file or an original's own names, so snake_case (or the
 * original's spelling) is right: model configs (config.json), tokenizer files, TrainingArguments,
 * trainer_state.json, torch's GradScaler state, the originals' metric dicts and data files,
 * SPECTRA's argparse arguments, ffprobe's JSON; `parsed` / `given` are local views of JSON files.
 */
const MIRRORS = new Set([
  'AddedTokenJSON',
  'TokenizerConfig',
  'TokenizerJSON',
  'EcacConversation',
  'MmsaResult',
  'MmsaSimsResult',
  'BeatsConfig',
  'EmbeddingConfig',
  'LayerNormConfig',
  'LinearConfig',
  'LlamaConfig',
  'QFormerConfig',
  'RobertaConfig',
  'Wav2Vec2Config',
  'WavLMConfig',
  'WhisperConfig',
  'SalmonnConfig',
  'SalmonnConfigInput' /* the YAML's model block as from_config reads it */,
  'TokenizerJsonFields',
  'ConcatContextConfig',
  'SpectraAudioConfig',
  'SpectraConfig',
  'SpectraConfigInput',
  'SpectraTextConfig',
  'GradScalerState',
  'ResolvedTrainingArguments',
  'TrainingArgumentsInit',
  'TrainerState',
  'lr_scheduler_kwargs',
  'parsed',
  'given',
  'ProbeJson',
  'StreamJson',
  'PacketJson',
  'ClipTextConfig',
  'ClipVisionConfig',
  'ClipConfig',
  'ClipResolvedConfig',
  'LanguageBindScores',
  'InternVisionConfig',
  'InternVLConfig',
  // the bridge's native config: InternVLChatConfig's downsample_ratio / ps_version and the two widths, read by name in C++
  'InternVLProjectorConfig',
  // emotorch serve: the OpenAI chat request's JSON, and tokenizer_config.json's chat_template
  'OpenAiContentPart',
  'OpenAiAudioOut',
  'OpenAiStreamOptions',
  'TokenizerConfigJson',
  'SalmonnOptimsOptions',
  // generation_config.json's names, as generate's native side reads them
  'NativeGeneration',
]);

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

interface Shape {
  owner: string;
  chain: string[];
  where: string;
  snake: string[];
  camel: string[];
}

/** Every interface and object type literal in lib/, with its snake_case and camelCase member names. */
function shapes(): Shape[] {
  const out: Shape[] = [];
  for (const f of files(LIB)) {
    const src = ts.createSourceFile(f, fs.readFileSync(f, 'utf8'), ts.ScriptTarget.Latest, true);
    const visit = (n: ts.Node): void => {
      const members = ts.isInterfaceDeclaration(n) || ts.isTypeLiteralNode(n) ? n.members : null;
      if (members) {
        // a deprecated spelling is the old name on purpose (kept for one release), not a new one
        const names = members
          .filter((m) => m.name && !ts.getJSDocTags(m).some((t) => t.tagName.text === 'deprecated'))
          .map((m) => m.name!.getText(src).replace(/['"]/g, ''));
        // the names of the declarations it sits in, innermost first (a nested literal belongs to its type)
        const chain: string[] = [];
        for (let p: ts.Node | undefined = n; p; p = p.parent) {
          const named =
            ts.isInterfaceDeclaration(p) ||
            ts.isTypeAliasDeclaration(p) ||
            ts.isVariableDeclaration(p) ||
            ts.isPropertySignature(p) ||
            ts.isPropertyDeclaration(p) ||
            ts.isParameter(p) ||
            ts.isMethodDeclaration(p) ||
            ts.isFunctionDeclaration(p);
          if (named && (p as ts.NamedDeclaration).name) chain.push((p as ts.NamedDeclaration).name!.getText(src));
        }
        out.push({
          owner: chain[0] ?? '?',
          chain,
          where: `${path.relative(LIB, f)}:${src.getLineAndCharacterOfPosition(n.getStart()).line + 1}`,
          snake: names.filter((x) => /^_?[a-z][a-z0-9]*(_[a-z0-9]+)+$/i.test(x) && /[a-z]/.test(x)),
          camel: names.filter((x) => /^[a-z]+[A-Z]/.test(x)),
        });
      }
      ts.forEachChild(n, visit);
    };
    visit(src);
  }
  return out;
}

describe('naming rule (rule 11) on lib/', () => {
  const all = shapes();

  it('snake_case names only in types that mirror a file', () => {
    const bad = all.filter((s) => s.snake.length && !s.chain.some((n) => MIRRORS.has(n))).map((s) => `${s.owner} (${s.where}): ${s.snake.join(', ')}`);
    expect(bad, 'camelCase these, or add the type to MIRRORS when its names mirror a file').toEqual([]);
  });

  it('no type mixes snake_case and camelCase', () => {
    const mixed = all.filter((s) => s.snake.length && s.camel.length).map((s) => `${s.owner} (${s.where})`);
    expect(mixed).toEqual([]);
  });
});

describe('deprecated spellings', () => {
  it('checkOptionNames accepts a deprecated name and hands it back under the current one', () => {
    const o = checkOptionNames({ maxNewTokens: 3, old_name: true } as Record<string, unknown>, ['maxNewTokens', 'newName'], 'f', { old_name: 'newName' });
    expect(o).toEqual({ maxNewTokens: 3, newName: true });
    const same = { newName: 1 };
    expect(checkOptionNames(same, ['newName'], 'f', { old_name: 'newName' })).toBe(same);
    throwsWith(
      () => checkOptionNames({ old_name: 1, newName: 2 }, ['newName'], 'f', { old_name: 'newName' }),
      'ERR_INVALID_ARG',
      /newName or its deprecated spelling old_name, not both for f/,
    );
    // the message lists the current names only
    throwsWith(
      () => checkOptionNames({ bogus: 1 }, ['newName'], 'f', { old_name: 'newName' }),
      'ERR_INVALID_ARG',
      /^Expected one of newName for an option of f but received "bogus"$/,
    );
  });

  it('renameDeprecated ignores undefined and null old values', () => {
    const x = { a: 1, old: undefined, older: null };
    expect(renameDeprecated(x, { old: 'a', older: 'a' }, 'x')).toBe(x);
  });

  it('withDeprecatedAlias reads the current field and stays out of keys, spreads and JSON', () => {
    const t = et.zeros([1]);
    const o = withDeprecatedAlias({ attentionMask: t }, 'frameMask', 'attentionMask');
    expect(o.frameMask).toBe(t);
    expect(Object.keys(o)).toEqual(['attentionMask']);
    expect(Object.keys({ ...o })).toEqual(['attentionMask']);
  });
});
