// emotorch side of `npm run bench -- voicebox`: USDM's spoken answer from units, i.e. the token
// Voicebox's sampler (Heun, guidance 1, no reference) and BigVGAN, against the ORIGINAL decoder code
// on PyTorch's CPU path (bench/torch_worker.py's voicebox_setup: naver-ai/usdm's src/decoder from
// USDM_DECODER, its `.cuda()` patched in the worker only). The released sizes (naver-ai/xlsr-token-
// Voicebox: 24 × 1024, 346M parameters; nvidia/bigvgan_22khz_80band: 1536 channels, 112M), random
// weights, float32. n_timesteps 3 (2 Heun steps, 3 guided evaluations) so that a trial runs in
// seconds on 2 cores; USDM's inference uses 50 (49 evaluations: the Voicebox part about 16 × this).
// Printed: seconds of speech per second of compute of each side and their ratio.
import * as et from 'emotorch';

const VOICEBOX = {
  n_feats: 80,
  n_tokens: 10000,
  embedding_dim: 1280,
  hidden_size: 1024,
  intermediate_size: 4096,
  num_attention_heads: 16,
  num_hidden_layers: 24,
  convpos_width: 31,
  convpos_groups: 16,
  convpos_depth: 2,
  attention_dropout: 0,
  activation_dropout: 0.1,
  hidden_dropout: 0,
  solver: 'euler',
  sigma_min: 1e-4,
};
const BIGVGAN = {
  resblock: '1',
  upsample_rates: [4, 4, 2, 2, 2, 2],
  upsample_kernel_sizes: [8, 8, 4, 4, 4, 4],
  upsample_initial_channel: 1536,
  resblock_kernel_sizes: [3, 7, 11],
  resblock_dilation_sizes: [
    [1, 3, 5],
    [1, 3, 5],
    [1, 3, 5],
  ],
  activation: 'snakebeta',
  snake_logscale: true,
  num_mels: 80,
  sampling_rate: 22050,
  hop_size: 256,
  n_fft: 1024,
  win_size: 1024,
  fmin: 0,
  fmax: 8000,
};

const setup = async (cfg) => {
  et.manualSeed(0);
  const vb = et.nn.Voicebox.create(cfg.voicebox).eval();
  const gan = et.nn.BigVGAN.create(cfg.bigvgan).eval();
  const frames = Math.floor((cfg.seconds * 22050) / 256);
  const units = et.randint(0, cfg.voicebox.n_tokens, [1, frames], { dtype: 'int64' });
  return () =>
    et.noGrad(async () => {
      const { mel } = await vb.generate(units, { steps: cfg.steps_n, guidance: 1, seed: 0 });
      return (await gan.forward({ mel: mel.mul(2.1575).add(-5.5419) })).waveform.clamp(-1, 1);
    });
};

export const cases = {
  voicebox: {
    config: { voicebox: VOICEBOX, bigvgan: BIGVGAN, seconds: 2, steps_n: 3, warmup: 1, steps: 1, trials: 3 },
    describe: (c) => `USDM speech out: Voicebox (released size, n_timesteps ${c.steps_n}, guidance 1) + BigVGAN 22 kHz, a ${c.seconds} s answer`,
    audioSecondsPerStep: (c) => c.seconds,
    setup,
  },
  // the real-time factor of a 5 s answer (the figure), one trial
  voicebox_5s: {
    config: { voicebox: VOICEBOX, bigvgan: BIGVGAN, seconds: 5, steps_n: 3, warmup: 1, steps: 1, trials: 1 },
    describe: (c) => `USDM speech out, a ${c.seconds} s answer: Voicebox (released size, n_timesteps ${c.steps_n}, guidance 1) + BigVGAN 22 kHz`,
    audioSecondsPerStep: (c) => c.seconds,
    setup,
  },
};
