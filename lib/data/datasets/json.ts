/** Reading the JSON files the datasets are stored in. */
import { EmotorchError } from '../../errors';
import { readJsonSync, readRegularTextSync, parseJson } from '../../io/file';
import { describeValue } from './base';

/**
 * Reads a JSON list (or `{ [key]: list }`), or JSON lines for .jsonl files. Only regular files are
 * read (a FIFO or device is refused before anything is read), up to 512 MiB (V8's longest string).
 */
export function readJsonList(file: string, key?: string): unknown[] {
  if (file.endsWith('.jsonl')) {
    return readRegularTextSync(file).split('\n').map((l, i) => [l, i] as const).filter(([l]) => l.trim()).map(([l, i]) => parseJson(l, file, ` line ${i + 1}`));
  }
  const json = readJsonSync(file);
  if (key && json !== null && typeof json === 'object' && !Array.isArray(json) && Array.isArray((json as Record<string, unknown>)[key])) {
    return (json as Record<string, unknown[]>)[key];
  }
  if (!Array.isArray(json)) throw new EmotorchError(`'${file}' holds ${typeof json === 'string' ? 'a string' : describeValue(json)}, not a JSON list${key ? ` (or { "${key}": [...] })` : ''}`, 'ERR_FORMAT');
  return json;
}
