import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { USDM_DS_CONFIG, tmpdir } from '../helpers';

// A DeepSpeed config read as transformers' Trainer reads it (integrations/deepspeed.py): "auto" from
// the arguments, explicit values checked against them, every key either used, named as not used,
// or refused by name.
const USDM = USDM_DS_CONFIG;
// train_sft.py's arguments (README: batch 2, accumulation 4 … on 8 GPUs)
const args = new et.train.TrainingArguments({
  output_dir: '/tmp/unused',
  per_device_train_batch_size: 2,
  gradient_accumulation_steps: 4,
  bf16: true,
  learning_rate: 2e-5,
  adam_beta1: 0.9,
  adam_beta2: 0.95,
  weight_decay: 0.01,
});
const refused = (cfg: object, re: RegExp, world = 8) => {
  let e: unknown = null;
  try {
    et.train.readDeepSpeedConfig(cfg as never, args, world);
  } catch (x) {
    e = x;
  }
  expect(e, JSON.stringify(cfg)).toBeInstanceOf(et.EmotorchError);
  expect((e as et.EmotorchError).code).toBe('ERR_INVALID_ARG');
  expect((e as Error).message).toMatch(re);
};

describe('readDeepSpeedConfig', () => {
  it("USDM's ds_config_zero3_bf16.json (from its file): stage 3 with offload, bf16, DeepSpeed's Adam from the arguments, no clipping, 16-bit weights gathered at a save", () => {
    const f = path.join(tmpdir(), 'ds_config_zero3_bf16.json');
    fs.writeFileSync(f, JSON.stringify(USDM, null, 2));
    expect(et.train.readDeepSpeedConfig(f, args, 8)).toEqual({
      stage: 3,
      offload: true,
      bf16: true,
      optimizer: { lr: 2e-5, betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.01 },
      gradientClipping: 0,
      gatherOnSave: true,
      notUsed: ['zero_optimization.offload_param.pin_memory', 'zero_optimization.offload_optimizer.pin_memory', 'zero_optimization.memory_efficient_linear'],
    });
  });

  it('explicit values equal to the arguments pass; contradicting ones are named with both values', () => {
    const ok = { ...USDM, train_micro_batch_size_per_gpu: 2, gradient_accumulation_steps: 4, train_batch_size: 64, gradient_clipping: 'auto' };
    expect(et.train.readDeepSpeedConfig(ok, args, 8).gradientClipping).toBe(1); // max_grad_norm's default
    refused({ ...USDM, train_micro_batch_size_per_gpu: 3 }, /'train_micro_batch_size_per_gpu' is 3 but args\.per_device_train_batch_size is 2/);
    refused({ ...USDM, train_batch_size: 16 }, /'train_batch_size' is 16 but world \(8\)/);
    refused({ ...USDM, bf16: { enabled: false } }, /'bf16\.enabled' is false but args\.bf16 is true/);
    refused({ ...USDM, optimizer: { type: 'AdamW', params: { lr: 1e-3 } } }, /'optimizer\.params\.lr' is 0\.001 but args\.learning_rate is 0\.00002/);
    refused({ ...USDM, optimizer: { type: 'AdamW', params: { betas: [0.9, 0.999] } } }, /'optimizer\.params\.betas' is \[0\.9,0\.999\]/);
  });

  it('what is not implemented is refused by name; unknown keys are refused; tuning keys are named as not used', () => {
    refused({ ...USDM, scheduler: { type: 'WarmupLR' } }, /'scheduler' is not implemented/);
    refused({ ...USDM, fp16: { enabled: true } }, /'fp16\.enabled' is true/);
    refused({ ...USDM, zero_optimization: { stage: 3, offload_optimizer: { device: 'nvme' } } }, /'zero_optimization\.offload_optimizer\.device' is "nvme"/);
    refused({ ...USDM, zero_optimization: { stage: 2, offload_param: { device: 'cpu' } } }, /'zero_optimization\.offload_param' needs stage 3/);
    refused({ ...USDM, zero_optimization: { stage: 4 } }, /'zero_optimization\.stage' must be 0, 1, 2 or 3/);
    refused({ ...USDM, optimizer: { type: 'Lamb', params: {} } }, /'optimizer\.type' is "Lamb"/);
    refused({ ...USDM, optimizer: { type: 'Adam', params: { adam_w_mode: false } } }, /'optimizer\.params\.adam_w_mode' is false/);
    refused({ ...USDM, zero_optimization: { stage: 3, stage3_prefetch: 1 } }, /'zero_optimization\.stage3_prefetch' is not a key emotorch reads/);
    refused({ ...USDM, optimizer: { type: 'Adam', params: { lr: 'auto', foo: 1 } } }, /'optimizer\.params\.foo' is not a key/);
    const plan = et.train.readDeepSpeedConfig(
      { fp16: { enabled: 'auto', loss_scale: 0 }, zero_optimization: { stage: 2, overlap_comm: true, reduce_bucket_size: 'auto' } },
      args,
      8,
    );
    expect(plan).toMatchObject({ stage: 2, offload: false, bf16: false, optimizer: null, gatherOnSave: true });
    expect(plan.notUsed).toEqual(['fp16.loss_scale', 'zero_optimization.overlap_comm', 'zero_optimization.reduce_bucket_size']);
  });

  it('a missing or non-JSON file is named', () => {
    const dir = tmpdir();
    expect(() => et.train.readDeepSpeedConfig(path.join(dir, 'none.json'), args, 1)).toThrow(/cannot read '.*none\.json'/);
    fs.writeFileSync(path.join(dir, 'bad.json'), '{ "zero_optimization": ');
    expect(() => et.train.readDeepSpeedConfig(path.join(dir, 'bad.json'), args, 1)).toThrow(/bad\.json/);
    expect(() => new et.train.TrainingArguments({ output_dir: dir, deepspeed: 3 as never })).toThrow(/args\.deepspeed/);
  });
});
