/** Shared pieces of the Trainer tests: a small classifier over the sample data's ECF embeddings. */
import * as path from 'path';
import * as fs from 'fs';
import { spawnSync } from 'child_process';
import * as et from '../../lib/index';

export const SAMPLE_SCRIPT = path.join(__dirname, '..', '..', 'scripts', 'make-sample-data.mjs');

/** Writes the sample data into `dir` (once per folder). */
export function makeSampleData(dir: string, perClass = 12): void {
  if (fs.existsSync(path.join(dir, 'ecf.json'))) return;
  const r = spawnSync(process.execPath, [SAMPLE_SCRIPT, dir, '--per-class', String(perClass), '--seed', '3'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
}

export interface Item {
  features: Float32Array;
  label: number;
}

/** Items of the ECF sample set with their 32-dim text+audio embeddings, split 3:1 into train and eval. */
export async function ecfSplits(dir: string): Promise<{ train: Item[]; eval: Item[] }> {
  const ds = await et.data.EcfDataset.fromFile(path.join(dir, 'ecf.json'), {
    features: { files: { text: 'ecf_text.safetensors', audio: 'ecf_audio.safetensors' } },
  });
  const items: Item[] = [];
  for await (const u of ds) if (u.label >= 0) items.push({ features: u.features!, label: u.label });
  return { train: items.filter((_, i) => i % 4 !== 0), eval: items.filter((_, i) => i % 4 === 0) };
}

export const collate = (items: Item[]) => ({
  features: et.tensor(Float32Array.from(items.flatMap((x) => [...x.features])), { shape: [items.length, items[0].features.length] }),
  labels: et.data.stackNumbers(
    items.map((x) => x.label),
    { dtype: 'int64' },
  ),
});

/** An MLP classifier with dropout: forward({ features, labels? }) -> { logits, loss? }. */
export class Classifier extends et.nn.Module {
  mlp: et.nn.Mlp;
  constructor(dropout = 0.1, sizes = [32, 48, 7]) {
    super();
    this.mlp = this.registerModule('mlp', et.nn.Mlp.create({ sizes, dropout }));
  }
  async forward(b: { features: et.Tensor; labels?: et.Tensor }): Promise<{ logits: et.Tensor; loss?: et.Tensor }> {
    const logits = await this.mlp.forward(b.features);
    return b.labels ? { logits, loss: et.functional.crossEntropy(logits, b.labels) } : { logits };
  }
}

export const accuracy = ({ predictions, labelIds }: et.train.EvalPrediction) => ({
  accuracy: predictions.argmax(-1).eq(labelIds!).float().mean().item(),
});

export function readJsonl(file: string): Array<Record<string, number>> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}
