/** USDM `ids|labels` line files as a dataset. */
import * as fs from 'fs';
import { EmotorchError, invalid } from '../../errors';
import { parseUsdmLine, UsdmExample } from '../usdm';
import { BaseDataset, DatasetOptions, checkDatasetOptions } from './base';

/**
 * A USDM line file as a dataset of `{ ids, labels }`; item indices are 0-based line numbers.
 * @example
 * const ds = await et.data.UsdmDataset.fromFile('train.txt', { skipBad: true });
 */
export class UsdmDataset extends BaseDataset<UsdmExample, UsdmExample> {
  private constructor(file: string) {
    super(file);
  }

  /**
   * Reads and validates every line.
   * @throws EmotorchError ERR_IO when the file cannot be read; ERR_DATA naming the file and line
   *   for a malformed line (unless skipBad).
   */
  static async fromFile(file: string, opts: DatasetOptions = {}): Promise<UsdmDataset> {
    if (typeof file !== 'string') invalid('a file path', 'path', file);
    checkDatasetOptions(opts, []);
    let text: string;
    try {
      text = await fs.promises.readFile(file, 'utf8');
    } catch (e) {
      throw new EmotorchError(`cannot read '${file}': ${(e as Error).message}`, 'ERR_IO');
    }
    const ds = new UsdmDataset(file);
    text.split('\n').forEach((l, i) => { if (l.trim()) ds.add(i, !!opts.skipBad, () => parseUsdmLine(l, file, i)); });
    return ds;
  }

  protected load(r: UsdmExample): UsdmExample {
    return { ids: [...r.ids], labels: [...r.labels] };
  }
}
