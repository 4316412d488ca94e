/**
 * A model's forward on a collated batch as the Trainer runs it, in training and in evaluation
 * alike: on the model's device (read once per run), under autocast for bf16/fp16, the loss from
 * `forward(batch).loss` or the user's computeLoss, and the label tokens a token loss is
 * normalized by.
 */
import { Tensor, autocast } from '../tensor';
import { EmotorchError } from '../errors';
import type { Module } from '../nn/module';
import type { TrainingArguments } from './args';
import type { Batch, TrainerOptions } from './trainer-options';

/** Moves every tensor in a batch to `device` (objects and arrays are walked, other values kept). */
export function toDevice(v: unknown, device: string): unknown {
  if (v instanceof Tensor) return v.device === device ? v : v.to({ device: device as never });
  if (Array.isArray(v)) return v.map((x) => toDevice(x, device));
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toDevice(x, device)]));
  }
  return v;
}

/** What a forward returns, read as a loss and the named outputs beside it. */
export interface LossOutputs {
  loss: Tensor;
  outputs: Record<string, unknown>;
}

/** The forward of one Trainer's model under its arguments (see the file's comment). */
export class Forward {
  private deviceOfRun: string | null = null;

  constructor(
    private readonly model: Module,
    private readonly args: TrainingArguments,
    /** The Trainer's options (their computeLoss is read at each call). */
    private readonly opts: Pick<TrainerOptions, 'computeLoss'>,
  ) {}

  /** Forgets the device read, so that the next run reads it again. */
  reset(): void {
    this.deviceOfRun = null;
  }

  /** The model's device, read once per train()/evaluate()/predict() (parameters() wraps every parameter anew). */
  get device(): string {
    if (this.args.use_cpu) return 'cpu';
    this.deviceOfRun ??= this.model.parameters()[0]?.device ?? 'cpu';
    return this.deviceOfRun;
  }

  /** Runs `fn` under autocast when bf16/fp16. */
  amp<R>(fn: () => R): R {
    if (!this.args.bf16 && !this.args.fp16) return fn();
    const dev = this.device.startsWith('cuda') ? 'cuda' : 'cpu';
    return autocast({ device: dev, dtype: this.args.bf16 ? 'bfloat16' : 'float16' }, fn);
  }

  /** The batch's labels (the first of args.label_names), or null. */
  labelsOf(batch: Batch): Tensor | null {
    const l = batch[this.args.label_names[0]];
    return l instanceof Tensor ? l : null;
  }

  /** Label tokens (`labels[:, 1:] != -100`) of token-label batches; null for other labels. */
  countTokens(batch: Batch): number | null {
    const l = this.labelsOf(batch);
    if (!l || l.ndim < 2 || !['int64', 'int32'].includes(l.dtype)) return null;
    return l
      .slice(l.ndim - 1, 1)
      .ne(-100)
      .sum()
      .item();
  }

  /** The loss of `model` (default: the Trainer's model) on a batch, with the forward's outputs. */
  async lossOf(batch: Batch, numItemsInBatch?: number, model: Module = this.model): Promise<LossOutputs> {
    const inputs = numItemsInBatch === undefined ? batch : { ...batch, numItemsInBatch };
    const out = this.opts.computeLoss
      ? await this.amp(() => this.opts.computeLoss!(model, batch, numItemsInBatch === undefined ? {} : { numItemsInBatch }))
      : await this.amp(() => model.forward(inputs));
    const loss = out instanceof Tensor ? out : (out as { loss?: unknown })?.loss;
    if (!(loss instanceof Tensor)) {
      throw new EmotorchError(
        `${this.opts.computeLoss ? 'computeLoss' : 'model.forward(batch)'} returned no loss: the batch needs labels (args.label_names: ${this.args.label_names.join(', ')}) or give computeLoss`,
        'ERR_INVALID_ARG',
      );
    }
    return { loss, outputs: out instanceof Tensor ? { loss } : (out as Record<string, unknown>) };
  }
}
