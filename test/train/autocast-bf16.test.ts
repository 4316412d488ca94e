// bfloat16 autocast on the CPU (et.autocast; the Trainer's bf16) against PyTorch's
// torch.autocast("cpu", dtype=torch.bfloat16) on the same tiny models and inputs
// (scripts/fixtures/autocast_bf16.py): LLaMA logits, loss and an embedding gradient (backward
// outside autocast), the Whisper encoder, SPECTRA's 4-class history case, and RoBERTa and WavLM in
// training with attention dropout (the same masks from the same seed). Each output is within
// bfloat16's error of PyTorch's bfloat16 output, and differs from the float32 output by more than
// float32 noise (the products did run in bfloat16).
import { describe, it, expect, beforeAll } from 'vitest';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES } from '../helpers';

let io: Map<string, et.Tensor>;
beforeAll(async () => {
  io = (await et.io.loadSafetensors(path.join(FIXTURES, 'autocast_bf16', 'io.safetensors'))).tensors;
});

const bf16 = <T>(fn: () => T): T => et.autocast({ device: 'cpu', dtype: 'bfloat16' }, fn);
const maxAbs = (t: et.Tensor) => t.abs().max().item();

/**
 * Within `tol` of PyTorch's bfloat16 result (relative to its largest value), and away from the
 * float32 one; `keep` (rows) leaves out the outputs at padding, which nothing reads.
 */
function check(got: et.Tensor, name: string, tol: number, keep?: et.Tensor): void {
  let want = io.get(name)!,
    fp32 = io.get(`${name}_fp32`)!;
  let g = got.float();
  if (keep) [g, want, fp32] = [g, want, fp32].map((t) => t.index(keep));
  expect(g.shape, name).toEqual(want.shape);
  expect(g.numel, name).toBeGreaterThan(0);
  const top = maxAbs(want);
  const diff = maxAbs(g.sub(want));
  expect(diff, `${name}: max |ours − PyTorch bf16| ${diff} (max ${top})`).toBeLessThanOrEqual(tol * top);
  // bfloat16's error is ~1e-2 relative: float32 noise is 1e-6
  expect(maxAbs(g.sub(fp32)), `${name}: no different from float32`).toBeGreaterThan(1e-5 * top);
}

describe('bfloat16 autocast on the CPU = PyTorch CPU autocast', () => {
  it('LLaMA: logits, loss, and the embedding gradient of a backward outside autocast', async () => {
    const m = await et.nn.LlamaForCausalLM.fromPretrained(path.join(FIXTURES, 'llama'));
    m.eval();
    const inputIds = io.get('llama.input_ids')!,
      attentionMask = io.get('llama.attention_mask')!;
    const labels = io.get('llama.labels')!; // none scored from a padding position
    const out = await bf16(() => m.forward({ inputIds, attentionMask, labels }));
    check(out.logits, 'llama.logits', 3e-2, attentionMask.ne(0));
    check(out.loss!.reshape([1]), 'llama.loss', 3e-3);
    await out.loss!.backward();
    const grad = m.namedParameters().find(([n]) => n === 'model.embed_tokens.weight')![1].grad!;
    check(grad, 'llama.embed_grad', 3e-2);
    // the parameters stayed float32
    expect(m.parameters().every((p) => p.dtype === 'float32')).toBe(true);
  });

  it('Whisper encoder', async () => {
    const enc = await et.nn.WhisperEncoder.fromPretrained(path.join(FIXTURES, 'whisper'));
    const x = (await et.io.loadSafetensors(path.join(FIXTURES, 'whisper', 'io.safetensors'))).tensors.get('input_features')!;
    const { lastHiddenState } = await bf16(() => et.noGrad(() => enc.forward({ inputFeatures: x })));
    check(lastHiddenState, 'whisper.last_hidden_state', 3e-2);
  });

  it("SPECTRA's 4-class history case", async () => {
    const m = await et.systems.spectra.Spectra.fromPretrained(path.join(FIXTURES, 'spectra', 'finetuned'));
    const s = (await et.io.loadSafetensors(path.join(FIXTURES, 'spectra', 'io.safetensors'))).tensors;
    const g = (k: string) => s.get(`history.${k}`)!;
    const out = await bf16(() =>
      et.noGrad(() =>
        m.forward({
          inputValues: g('input_values'),
          audioAttentionMask: g('audio_attention_mask'),
          inputIds: g('input_ids'),
          attentionMask: g('attention_mask'),
          tokenTypeIds: g('token_type_ids'),
          labels: g('labels'),
        }),
      ),
    );
    check(out.logits, 'spectra.logits', 3e-2);
    check(out.loss!.reshape([1]), 'spectra.loss', 3e-3);
  });

  // attention dropout in training (the scores in bfloat16, as HF's eager attention computes them)
  const dropoutCases: [string, string, string, string][] = [
    ['roberta', 'attention_probs_dropout_prob', 'encoder.layer.0.attention.self.query.weight', 'attention_mask'],
    ['wavlm', 'attention_dropout', 'encoder.layers.0.attention.q_proj.weight', 'frame_mask'],
  ];
  // The WavLM is autocast_bf16/wavlm/, sized so that the attention's products reduce over multiples
  // of 32 (head size 32, 160 frames): PyTorch's bfloat16 and float32 outputs agree to ~1 % there on
  // every CPU kind, where the tiny wavlm_base's (heads of 12, 199 frames) moved by 4.0 on AMX (see
  // scripts/fixtures/autocast_bf16.py).
  for (const [name, option, weight, keepName] of dropoutCases) {
    it(`${name} in training with attention dropout: the output and a gradient`, async () => {
      const dir = path.join(FIXTURES, name === 'roberta' ? 'roberta' : path.join('autocast_bf16', 'wavlm'));
      const t = (await et.io.loadSafetensors(path.join(dir, 'io.safetensors'))).tensors;
      const m =
        name === 'roberta'
          ? await et.nn.RobertaModel.fromPretrained(dir, { config: { [option]: 0.3 } })
          : await et.nn.WavLMModel.fromPretrained(dir, { config: { [option]: 0.3 } });
      m.train();
      const run = async () =>
        (name === 'roberta'
          ? await (m as et.nn.RobertaModel).forward({
              inputIds: t.get('input_ids')!,
              attentionMask: t.get('attention_mask'),
              tokenTypeIds: t.get('token_type_ids'),
            })
          : await (m as et.nn.WavLMModel).forward({ inputValues: t.get('input_values')!, attentionMask: t.get('attention_mask') })
        ).lastHiddenState;
      const keep = t.get(keepName)!;
      et.manualSeed(77); // scripts/fixtures/attention_dropout.py's SEED
      const h = await bf16(run);
      check(h, `dropout.${name}.last_hidden_state`, 3e-2, keep.ne(0));
      await h.float().mul(keep.unsqueeze(-1).float()).square().sum().backward();
      const grad = (n: string) => m.namedParameters().find(([k]) => k === n)![1].grad!;
      check(grad(weight), `dropout.${name}.q_grad`, 3e-2);
      if (name === 'wavlm') {
        // the convolutions after the first run channels-last in bfloat16
        check(grad('feature_extractor.conv_layers.1.conv.weight'), 'dropout.wavlm.conv1_grad', 3e-2);
        check(grad('feature_extractor.conv_layers.2.conv.weight'), 'dropout.wavlm.conv2_grad', 3e-2);
      }
    });
  }
});
