/** Reading the JSON files the datasets are stored in. */
import { EmotorchError } from '../../errors';
import { readJsonSync, readRegularTextSync, parseJson } from '../../io/file';
import { describeValue } from './base';

/**
 * The longest line of a JSON-lines file, in characters (64 Mi): one record per line, and no
 * dataset's record comes near it (a record's text is tokenized whole, and a tokenizer fed a line of
 * hundreds of MB runs out of memory); a longer line is refused naming the file and the line.
 */
export const MAX_JSONL_LINE = 64 * 1024 * 1024;

/**
 * Reads a JSON list (or `{ [key]: list }`), or JSON lines for .jsonl files. Only regular files are
 * read (a FIFO or device is refused before anything is read), up to 512 MiB (V8's longest string);
 * a JSON-lines line has at most {@link MAX_JSONL_LINE} characters.
 * @param lines when given, receives each item's line number (1-based) in a .jsonl file, so a
 *   caller's errors can name the line
 * @throws EmotorchError ERR_IO for an unreadable file; ERR_FORMAT naming the file (and line) for
 *   one that is not JSON, not a list, or has a line longer than {@link MAX_JSONL_LINE}
 */
export function readJsonList(file: string, key?: string, lines?: number[]): unknown[] {
  if (file.endsWith('.jsonl')) {
    const text = readRegularTextSync(file);
    const out: unknown[] = [];
    let line = 0;
    for (let at = 0; at <= text.length; line++) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      if (end - at > MAX_JSONL_LINE)
        throw new EmotorchError(
          `'${file}' line ${line + 1} has ${end - at} characters, more than the ${MAX_JSONL_LINE} a JSON-lines record may have`,
          'ERR_FORMAT',
        );
      const l = text.slice(at, end);
      at = end + 1;
      if (!l.trim()) continue;
      out.push(parseJson(l, file, ` line ${line + 1}`));
      lines?.push(line + 1);
    }
    return out;
  }
  const json = readJsonSync(file);
  if (key && json !== null && typeof json === 'object' && !Array.isArray(json) && Array.isArray((json as Record<string, unknown>)[key])) {
    return (json as Record<string, unknown[]>)[key];
  }
  if (!Array.isArray(json))
    throw new EmotorchError(
      `'${file}' holds ${typeof json === 'string' ? 'a string' : describeValue(json)}, not a JSON list${key ? ` (or { "${key}": [...] })` : ''}`,
      'ERR_FORMAT',
    );
  return json;
}
