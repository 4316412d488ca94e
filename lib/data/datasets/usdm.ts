/** USDM `ids|labels` line files as a dataset. */
import { constants } from 'buffer';
import { invalid } from '../../errors';
import { readRegularFile } from '../../io/file';
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
   * @throws EmotorchError ERR_IO when the file cannot be read, is not a regular file or is over
   *   512 MiB; ERR_DATA naming the file and line
   *   for a malformed line (unless skipBad).
   */
  static async fromFile(file: string, opts: DatasetOptions = {}): Promise<UsdmDataset> {
    if (typeof file !== 'string') invalid('a file path', 'path', file);
    checkDatasetOptions(opts, []);
    const text = (await readRegularFile(file, constants.MAX_STRING_LENGTH)).toString('utf8');
    const ds = new UsdmDataset(file);
    text.split('\n').forEach((l, i) => {
      if (l.trim()) ds.add(i, !!opts.skipBad, () => parseUsdmLine(l, file, i));
    });
    return ds;
  }

  protected load(r: UsdmExample): UsdmExample {
    return { ids: [...r.ids], labels: [...r.labels] };
  }
}
