/** USDM's recipe: the Trainer arguments of the original's SFT. */

/** The original's SFT hyperparameters (`train_sft.py`), as Trainer arguments. */
export const USDM_SFT_ARGS = {
  learning_rate: 2e-5,
  lr_scheduler_type: 'cosine',
  warmup_ratio: 0.03,
  adam_beta1: 0.9,
  adam_beta2: 0.95,
  weight_decay: 0.01,
  per_device_train_batch_size: 2,
  gradient_accumulation_steps: 4,
  bf16: true,
  max_input_length: 1024,
} as const;
