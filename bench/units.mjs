// emotorch side of `npm run bench -- units`: USDM's speech units, i.e. an XLS-R-shaped encoder up to
// the unit layer and the nearest of 10 000 k-means centroids per frame (et.audio.UnitExtractor:
// clip standardization, Wav2Vec2 layers, squared-L2 argmin in native code), against the Python
// reference in bench/torch_worker.py: HF Wav2Vec2Model (default attention) + numpy argmin of
// ‖x‖² − 2x·c + ‖c‖². Both sides use the same random-weight configuration, float32, no grad.
// XLS-R 1B width (seamless's xlsr2_1b_v2: 512-channel layer-normed convs, 1280 hidden, 16 heads,
// 5120 inner) with the first `layer` layers only, so that it runs on a CPU in seconds; the real
// USDM extractor runs 35 of these layers.
import * as et from 'emotorch';

const xlsr1bWidth = { ...et.nn.WAV2VEC2_XLSR2_1B_V2, mask_time_prob: 0 };

export const cases = {
  units: {
    config: { config: xlsr1bWidth, layer: 4, units: 10000, batch: 4, seconds: 4, warmup: 1, steps: 1, trials: 5 },
    describe: (c) =>
      `unit extraction: XLS-R 1B width (1280 × ${c.layer} layers, unit layer ${c.layer}) + k-means ${c.units} centroids, ${c.batch} clips × ${c.seconds} s`,
    audioSecondsPerStep: (c) => c.batch * c.seconds,
    async setup(cfg) {
      et.manualSeed(0);
      const encoder = et.nn.Wav2Vec2Model.create({ ...cfg.config, num_hidden_layers: cfg.layer });
      encoder.eval();
      const ux = new et.audio.UnitExtractor({ encoder, layer: cfg.layer, centroids: et.randn([cfg.units, cfg.config.hidden_size]) });
      const wave = et.randn([cfg.batch, cfg.seconds * 16000]).mul(0.1);
      return () => et.noGrad(() => ux.forward(wave));
    },
  },
};
