/** Reading the JSON files the datasets are stored in. */
import * as fs from 'fs';
import { EmotorchError } from '../../errors';
import { describeValue } from './base';

/** Reads a JSON list (or `{ [key]: list }`), or JSON lines for .jsonl files. */
export function readJsonList(file: string, key?: string): unknown[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new EmotorchError(`cannot read '${file}': ${(e as Error).message}`, 'ERR_IO');
  }
  if (file.endsWith('.jsonl')) {
    return text.split('\n').map((l, i) => [l, i] as const).filter(([l]) => l.trim()).map(([l, i]) => {
      try {
        return JSON.parse(l) as unknown;
      } catch (e) {
        throw new EmotorchError(`'${file}' line ${i + 1} is not JSON: ${(e as Error).message}`, 'ERR_FORMAT');
      }
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new EmotorchError(`'${file}' is not JSON: ${(e as Error).message}`, 'ERR_FORMAT');
  }
  if (key && json !== null && typeof json === 'object' && !Array.isArray(json) && Array.isArray((json as Record<string, unknown>)[key])) {
    return (json as Record<string, unknown[]>)[key];
  }
  if (!Array.isArray(json)) throw new EmotorchError(`'${file}' holds ${describeValue(json)}, not a JSON list${key ? ` (or { "${key}": [...] })` : ''}`, 'ERR_FORMAT');
  return json;
}
