/**
 * Which files a tokenizer path means and which kind reads them: a `tokenizer.json` (./json, or
 * ./clip when its config names a CLIP class), a SentencePiece `.model` (./sentencepiece), or
 * CLIP's `vocab.json` + `merges.txt` (./clip); a folder is read through its tokenizer.json, else
 * its tokenizer.model, else its vocab.json. The HF config files beside it are read too: always
 * tokenizer_config.json, and for a `.model`, a vocab.json or a CLIP tokenizer.json also
 * special_tokens_map.json and added_tokens.json. Every file is read as a regular file, bounded.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EmotorchError } from '../../errors';
import { openRegularSync, parseJson, readRegularFile, readRegularTextSync } from '../../io/file';
import { ConfigFiles, TokenizerSpec, isObject } from './common';
import { sentencePieceSpec } from './sentencepiece';
import { checkClipVocab, clipJSONSpec, clipSpec, isClipClass, parseMerges, parseVocabJson } from './clip';

/** The largest config file read (tokenizer_config.json, special_tokens_map.json, added_tokens.json). */
const MAX_CONFIG = 256 * 1024 * 1024;

/** A tokenizer's files as read: the main file's bytes, and the texts of the files beside it (null: absent or not needed). */
export interface TokenizerFiles {
  /** The main file's path (tokenizer.json, .model or vocab.json). */
  file: string;
  data: Buffer;
  config: string | null;
  specialMap: string | null;
  added: string | null;
  merges: string | null;
}

/** A SentencePiece model file (read as a ModelProto, not as JSON). */
function isModelFile(file: string): boolean {
  return file.endsWith('.model');
}

/** A BPE vocabulary with its merges.txt beside it (CLIP's released form). */
function isVocabFile(file: string): boolean {
  return path.basename(file) === 'vocab.json';
}

/** Whether a tokenizer_config.json text names a CLIP tokenizer class (false when it does not parse: reported later). */
function configNamesClip(text: string | null): boolean {
  if (text === null) return false;
  try {
    const v = JSON.parse(text) as unknown;
    return isObject(v) && isClipClass(v.tokenizer_class);
  } catch {
    return false;
  }
}

/** The file to read: `file`, or in a folder its tokenizer.json, else its tokenizer.model, else its vocab.json. */
function resolve(file: string): string {
  let isDir = false;
  try {
    isDir = fs.statSync(file).isDirectory();
  } catch {
    // reported by the read
  }
  if (!isDir) return file;
  const json = path.join(file, 'tokenizer.json');
  if (fs.existsSync(json)) return json;
  for (const name of ['tokenizer.model', 'vocab.json']) if (fs.existsSync(path.join(file, name))) return path.join(file, name);
  return json;
}

/** Which files beside `target` are read: the special-token maps (.model, vocab.json, a CLIP tokenizer.json) and merges.txt (vocab.json). */
function needs(target: string, config: string | null): { maps: boolean; merges: boolean } {
  const vocab = isVocabFile(target);
  return { maps: vocab || isModelFile(target) || configNamesClip(config), merges: vocab };
}

/** The merges.txt beside a vocab.json; ERR_IO when there is none. */
function mergesFile(vocabFile: string): string {
  const f = path.join(path.dirname(vocabFile), 'merges.txt');
  if (!fs.existsSync(f)) throw new EmotorchError(`'${f}' is missing: a vocab.json tokenizer ('${vocabFile}') needs its merges.txt beside it`, 'ERR_IO');
  return f;
}

/**
 * Reads a tokenizer's files (see the file's comment).
 * @param file the tokenizer.json, .model or vocab.json file, or a folder that holds one
 * @throws EmotorchError ERR_IO when a file cannot be read or is not a regular file, or a
 *   vocab.json has no merges.txt beside it.
 */
export async function readTokenizerFiles(file: string): Promise<TokenizerFiles> {
  const target = resolve(file);
  const dir = path.dirname(target);
  const optional = async (name: string): Promise<string | null> => {
    const f = path.join(dir, name);
    if (!fs.existsSync(f)) return null;
    return (await readRegularFile(f, MAX_CONFIG)).toString('utf8');
  };
  const data = await readRegularFile(target);
  const config = await optional('tokenizer_config.json');
  const need = needs(target, config);
  const files: TokenizerFiles = { file: target, data, config, specialMap: null, added: null, merges: null };
  if (need.maps) {
    files.specialMap = await optional('special_tokens_map.json');
    files.added = await optional('added_tokens.json');
  }
  if (need.merges) files.merges = (await readRegularFile(mergesFile(target))).toString('utf8');
  return files;
}

/**
 * {@link readTokenizerFiles}, synchronously.
 * @param file the tokenizer.json, .model or vocab.json file, or a folder that holds one
 * @throws EmotorchError as readTokenizerFiles.
 */
export function readTokenizerFilesSync(file: string): TokenizerFiles {
  const target = resolve(file);
  const dir = path.dirname(target);
  const optional = (name: string): string | null => {
    const f = path.join(dir, name);
    return fs.existsSync(f) ? readRegularTextSync(f, MAX_CONFIG) : null;
  };
  const data = readWholeSync(target);
  const config = optional('tokenizer_config.json');
  const need = needs(target, config);
  return {
    file: target,
    data,
    config,
    specialMap: need.maps ? optional('special_tokens_map.json') : null,
    added: need.maps ? optional('added_tokens.json') : null,
    merges: need.merges ? readRegularTextSync(mergesFile(target)) : null,
  };
}

/** A regular file's bytes, read synchronously. */
function readWholeSync(target: string): Buffer {
  let data: Buffer;
  const { fd, size } = openRegularSync(target);
  try {
    data = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, data, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    data = data.subarray(0, off);
  } catch (e) {
    throw new EmotorchError(`cannot read '${target}': ${(e as Error).message}`, 'ERR_IO');
  } finally {
    fs.closeSync(fd);
  }
  return data;
}

/**
 * What a tokenizer's files hold, read by their kind: a `.model` by ./sentencepiece, a vocab.json
 * by ./clip, a tokenizer.json as it is (by ./clip when its config names a CLIP class).
 * @param files the files as read
 * @returns the spec the Tokenizer class makes its tokenizer from
 * @throws EmotorchError ERR_FORMAT (naming the file, never quoting it) when a file is not valid
 *   JSON (or not a SentencePiece model), not an object, a merges.txt line is not a merge of two
 *   vocab.json tokens, or the kind's reader refuses it.
 */
export function tokenizerSpec(files: TokenizerFiles): TokenizerSpec {
  const { data, file } = files;
  const dir = path.dirname(file);
  const parse = (s: string, f: string, what: string): Record<string, unknown> => {
    const v = parseJson(s, f);
    if (!isObject(v)) throw new EmotorchError(`'${f}' is not ${what} (expected a JSON object)`, 'ERR_FORMAT');
    return v;
  };
  const configFile = path.join(dir, 'tokenizer_config.json');
  const config = files.config === null ? {} : parse(files.config, configFile, 'a tokenizer_config.json');
  const maps = (): ConfigFiles => ({
    config,
    specialMap: files.specialMap === null ? {} : parse(files.specialMap, path.join(dir, 'special_tokens_map.json'), 'a special_tokens_map.json'),
    added: files.added === null ? {} : parse(files.added, path.join(dir, 'added_tokens.json'), 'an added_tokens.json'),
  });
  if (isModelFile(file)) return sentencePieceSpec(data, file, maps());
  const source = `'${file}'`;
  const name = (f: string): string => `'${path.join(dir, f)}'`;
  const text = data.toString('utf8');
  if (isVocabFile(file)) {
    const vocab = parseVocabJson(text, file);
    checkClipVocab(vocab, config.tokenizer_class, source, configFile);
    const merges = parseMerges(files.merges ?? '', path.join(dir, 'merges.txt'), vocab);
    return clipSpec(vocab, merges, [], source, name, maps());
  }
  const json = parse(text, file, 'a tokenizer.json');
  if (!isObject(json.model)) throw new EmotorchError(`'${file}' is not a tokenizer.json (it has no "model" object)`, 'ERR_FORMAT');
  if (isClipClass(config.tokenizer_class)) return clipJSONSpec(json, source, name, maps());
  return { json, text, config, source, clip: false };
}
