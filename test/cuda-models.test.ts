// The models and systems on a CUDA device against the same references as on the CPU (HF transformers,
// the original BEATs / InternVL code, peft; fixtures from scripts/fixtures). Runs for real on a machine
// with a CUDA device and a CUDA libtorch; skipped elsewhere. Tolerances are wider than the CPU tests'
// 1e-4: cuDNN convolutions may use TF32 and the GPU reduces in another order. Each case logs its
// largest difference, so a run on a GPU reports the numbers.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../lib/index';
import { FIXTURES, tmpdir } from './helpers';
import { accuracy, Classifier, collate, ecfSplits, makeSampleData } from './train/util';

const HAS_CUDA = et.cuda.isAvailable();
const TOL = 5e-3;
const fx = (name: string) => path.join(FIXTURES, name);
const io = async (name: string, file = 'io.safetensors') => (await et.io.loadSafetensors(path.join(fx(name), file))).tensors;
const gpu = (t: et.Tensor | undefined) => t?.to({ device: 'cuda' });
const cpu = (t: et.Tensor) => t.to({ device: 'cpu', dtype: 'float64' });
/** Largest |a - b| over the rows `mask` keeps (all when no mask), a on the GPU, b on the CPU. */
function diff(label: string, a: et.Tensor, b: et.Tensor, mask?: et.Tensor): number {
  expect(a.device).toBe('cuda:0');
  expect(a.shape).toEqual(b.shape);
  let d = cpu(a)
    .sub(b.to({ dtype: 'float64' }))
    .abs();
  if (mask) d = et.where(mask.unsqueeze(-1).eq(1), d, 0);
  const v = d.max().item();
  console.log(`cuda ${label}: max |diff| ${v.toExponential(2)}`);
  return v;
}

describe.skipIf(!HAS_CUDA)('models on CUDA = their references', () => {
  it('RobertaModel', async () => {
    const m = await (await et.nn.RobertaModel.fromPretrained(fx('roberta'))).to({ device: 'cuda' });
    const t = await io('roberta');
    const out = await m.forward({
      inputIds: gpu(t.get('input_ids'))!,
      attentionMask: gpu(t.get('attention_mask')),
      tokenTypeIds: gpu(t.get('token_type_ids')),
    });
    expect(diff('roberta', out.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
  });

  it('WhisperEncoder', async () => {
    const m = await (await et.nn.WhisperEncoder.fromPretrained(fx('whisper'))).to({ device: 'cuda' });
    const t = await io('whisper');
    expect(diff('whisper', (await m.forward({ inputFeatures: gpu(t.get('input_features'))! })).lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
  });

  it('BeatsEncoder', async () => {
    const m = await (await et.nn.BeatsEncoder.fromPretrained(fx('beats'))).to({ device: 'cuda' });
    const t = await io('beats', 'inputs.safetensors');
    expect(diff('beats', (await m.forward({ inputFeatures: gpu(t.get('fbank'))! })).lastHiddenState, t.get('output')!)).toBeLessThan(TOL);
  });

  it('WavLMModel (base and large) with an attention mask', async () => {
    for (const name of ['wavlm_base', 'wavlm_large']) {
      const m = await (await et.nn.WavLMModel.fromPretrained(fx(name))).to({ device: 'cuda' });
      const t = await io(name);
      const out = await m.forward({ inputValues: gpu(t.get('input_values'))!, attentionMask: gpu(t.get('attention_mask')) });
      expect(diff(name, out.lastHiddenState, t.get('last_hidden_state')!, t.get('frame_mask'))).toBeLessThan(TOL);
    }
  });

  it('QFormer', async () => {
    const m = await (await et.nn.QFormer.fromPretrained(fx('qformer'))).to({ device: 'cuda' });
    const t = await io('qformer');
    const out = await m.forward({
      queryEmbeds: gpu(t.get('query_embeds')),
      encoderHiddenStates: gpu(t.get('encoder_hidden_states'))!,
      encoderAttentionMask: gpu(t.get('encoder_attention_mask')),
    });
    expect(diff('qformer', out.lastHiddenState, t.get('last_hidden_state')!)).toBeLessThan(TOL);
  });

  it('ClipModel', async () => {
    const m = await (await et.nn.ClipModel.fromPretrained(path.join(FIXTURES, 'clip', 'hf'))).to({ device: 'cuda' });
    const t = (await et.io.loadSafetensors(path.join(FIXTURES, 'clip', 'hf', 'io.safetensors'))).tensors;
    const out = await m.forward({ inputIds: gpu(t.get('input_ids'))!, attentionMask: gpu(t.get('attention_mask')), pixelValues: gpu(t.get('pixel_values'))! });
    expect(diff('clip logits_per_image', out.logitsPerImage!, t.get('logits_per_image')!)).toBeLessThan(TOL);
  });

  it("USDM's speech decoder: the Voicebox velocity and sampler, BigVGAN, the spoken answer = the original decoder's", async () => {
    const d = fx('usdm_voicebox');
    const t = await io('usdm_voicebox');
    const vb = await (await et.nn.Voicebox.fromPretrained(path.join(d, 'voicebox'))).to({ device: 'cuda' });
    const { velocity } = await et.noGrad(() =>
      vb.forward({
        units: gpu(t.get('velocity.units'))!,
        noisyMel: gpu(t.get('velocity.noisy'))!,
        cond: gpu(t.get('velocity.cond'))!,
        t: gpu(t.get('velocity.t'))!,
        lengths: et.tensor([20, 14], { dtype: 'int64', device: 'cuda' }),
      }),
    );
    const big = (x: et.Tensor) => x.abs().max().item();
    expect(diff('voicebox velocity', velocity, t.get('velocity')!) / big(t.get('velocity')!)).toBeLessThan(TOL);
    const { mel } = await vb.generate(gpu(t.get('noref.units')!.reshape([1, -1]))!, {
      cond: gpu(t.get('noref.cond'))!,
      steps: 7,
      noise: gpu(t.get('noref.noise'))!,
    });
    expect(diff('voicebox sampler mel', mel, t.get('noref.mel')!) / big(t.get('noref.mel')!)).toBeLessThan(TOL);
    const gan = await (await et.nn.BigVGAN.fromPretrained(path.join(d, 'bigvgan'))).to({ device: 'cuda' });
    const { waveform } = await et.noGrad(() => gan.forward({ mel: gpu(t.get('vocoder.mel'))! }));
    expect(diff('bigvgan waveform', waveform, t.get('vocoder.waveform')!) / big(t.get('vocoder.waveform')!)).toBeLessThan(TOL);
    // the whole answer on the GPU from the original's seed, and in bfloat16 / float16
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      const sp = await et.systems.usdm.UsdmSpeaker.fromPretrained(path.join(d, 'voicebox'), path.join(d, 'bigvgan'), { device: 'cuda', dtype });
      const out = await sp.speak(t.get('agent_units')!.toArray() as number[], { steps: 7, seed: 10 });
      const want = t.get('noref.waveform')!;
      const got = et.tensor(out.samples);
      const cos = got.mul(want).sum().item() / Math.sqrt(got.square().sum().item() * want.square().sum().item());
      console.log(`cuda usdm speak (${dtype}): cosine to the original ${cos.toFixed(6)}`);
      expect(cos).toBeGreaterThan(dtype === 'float32' ? 0.9999 : 0.99);
    }
  });

  it('LlamaForCausalLM: logits with left padding, full fine-tuning loss, greedy tokens as on the CPU', async () => {
    const host = await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'));
    const m = await (await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'))).to({ device: 'cuda' });
    const t = await io('llama');
    const mask = t.get('attention_mask')!;
    const { logits } = await m.forward({ inputIds: gpu(t.get('input_ids'))!, attentionMask: gpu(mask) });
    expect(diff('llama logits', logits, t.get('logits')!, mask)).toBeLessThan(TOL);
    const prompt = { inputIds: t.get('input_ids')!, attentionMask: mask };
    const want = await host.eval().generate(prompt, { maxNewTokens: 8, minNewTokens: 8 });
    const steps: number[][] = [];
    const got = await m
      .eval()
      .generate({ inputIds: gpu(prompt.inputIds)!, attentionMask: gpu(mask) }, { maxNewTokens: 8, minNewTokens: 8, onTokens: (ids) => steps.push(ids) });
    expect(got.newTokens.to({ device: 'cpu' }).toArray()).toEqual(want.newTokens.toArray());
    expect(steps.length).toBe(8);
  });

  it('quantized LLaMA (int8, q8_0, q4_0, nf4): logits = transformers on the dequantized weights; a QLoRA step = peft', async () => {
    const t = await io('quant_llama');
    for (const fmt of ['int8', 'q8_0', 'q4_0', 'nf4'] as const) {
      const m = await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'), { quantize: fmt, device: 'cuda' });
      const { logits } = await et.noGrad(() => m.forward({ inputIds: gpu(t.get('input_ids'))!, attentionMask: gpu(t.get('attention_mask')) }));
      expect(diff(`quantized ${fmt} logits`, logits, t.get(`${fmt}.logits`)!, t.get('attention_mask'))).toBeLessThan(TOL);
      const short = (await et.noGrad(() => m.forward({ inputIds: gpu(t.get('short_ids'))! }))).logits;
      expect(diff(`quantized ${fmt} short logits`, short, t.get(`${fmt}.short_logits`)!)).toBeLessThan(TOL);
    }
    const m = await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'), { quantize: 'nf4', device: 'cuda' });
    et.nn.applyLora(m, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
    const adapters = new Map([...t].filter(([k]) => k.startsWith('nf4.lora.')).map(([k, v]) => [k.slice('nf4.lora.'.length), gpu(v)!]));
    await m.loadStateDict(adapters, { strict: false });
    m.train();
    const { loss } = await m.forward({ inputIds: gpu(t.get('input_ids'))!, attentionMask: gpu(t.get('attention_mask')), labels: gpu(t.get('labels')) });
    expect(Math.abs(loss!.item() - t.get('nf4.loss')!.item())).toBeLessThan(TOL);
    await loss!.backward();
    const params = new Map(m.namedParameters());
    for (const name of adapters.keys()) expect(diff(`QLoRA grad ${name}`, params.get(name)!.grad!, t.get(`nf4.grad.${name}`)!)).toBeLessThan(TOL);
  });
  it('SALMONN training step (Q-Former + projection + LoRA LLaMA): loss and gradients = PyTorch', async () => {
    const dir = fx('salmonn_step');
    const t = await io('salmonn_step');
    const qformer = et.nn.QFormer.create(JSON.parse(fs.readFileSync(path.join(dir, 'qformer_config.json'), 'utf8')));
    await qformer.loadStateDict((await et.io.loadSafetensors(path.join(dir, 'qformer.safetensors'))).tensors);
    qformer.eval();
    const proj = et.nn.Linear.create({ in_features: 48, out_features: 64 });
    await proj.loadStateDict({ weight: t.get('proj.weight')!, bias: t.get('proj.bias')! });
    const llm = await et.nn.LlamaForCausalLM.fromPretrained(fx('llama'));
    await et.nn.loadLoraAdapter(llm, path.join(fx('llama_lora'), 'adapter'));
    for (const m of [qformer, proj, llm]) await m.to({ device: 'cuda' });
    const queryTokens = gpu(t.get('query_tokens'))!.clone().requiresGrad_();
    const { lastHiddenState: q } = await qformer.forward({
      queryEmbeds: queryTokens.expand([2, -1, -1]),
      encoderHiddenStates: gpu(t.get('encoder_hidden_states'))!,
      encoderAttentionMask: gpu(t.get('encoder_attention_mask')),
    });
    const audio = await proj.forward(q);
    const text = await llm.embed(gpu(t.get('text_ids'))!);
    const { loss } = await llm.forward({ inputsEmbeds: et.cat([audio, text], 1), attentionMask: gpu(t.get('attention_mask')), labels: gpu(t.get('labels')) });
    expect(Math.abs(loss!.item() - t.get('loss')!.item())).toBeLessThan(TOL);
    await loss!.backward();
    let worst = diff('salmonn grad query_tokens', queryTokens.grad!, t.get('grad.query_tokens')!);
    for (const [n, p] of qformer.namedParameters())
      worst = Math.max(
        worst,
        cpu(p.grad!)
          .sub(t.get(`grad.qformer.${n}`)!.to({ dtype: 'float64' }))
          .abs()
          .max()
          .item(),
      );
    for (const [n, p] of llm.namedParameters()) {
      if (!n.includes('.lora_')) continue;
      const key = `grad.lora.base_model.model.${n.replace('.default.weight', '.weight')}`;
      worst = Math.max(
        worst,
        cpu(p.grad!)
          .sub(t.get(key)!.to({ dtype: 'float64' }))
          .abs()
          .max()
          .item(),
      );
    }
    console.log(`cuda salmonn step: loss ${loss!.item()} (PyTorch ${t.get('loss')!.item()}), worst grad diff ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(TOL);
  });

  it('InternVL2 (InternLM2 and Phi-3): vision features, logits and greedy tokens', async () => {
    for (const family of ['internlm2', 'phi3']) {
      const root = path.join(FIXTURES, 'internvl_chat', family);
      const t = (await et.io.loadSafetensors(path.join(root, 'io.safetensors'))).tensors;
      const m = await (await et.systems.m2se.InternVL.fromPretrained(root, { imgContextTokenId: 127 })).to({ device: 'cuda' });
      const pixels = t.get('pixel_values')!;
      expect(diff(`internvl ${family} features`, await m.extractFeature(gpu(pixels)!), t.get('features')!)).toBeLessThan(TOL);
      const mask = t.get('attention_mask')!;
      const { logits } = await m.forward({
        inputIds: gpu(t.get('input_ids'))!,
        attentionMask: gpu(mask),
        pixelValues: gpu(pixels)!,
        imageFlags: et.ones([3, 1], { dtype: 'int64', device: 'cuda' }),
      });
      expect(diff(`internvl ${family} logits`, logits, t.get('logits')!, mask)).toBeLessThan(TOL);
      const newTokens = await m.generate(
        { inputIds: gpu(t.get('greedy_prompt'))!, pixelValues: gpu(pixels.slice(0, 2, 3))! },
        { maxNewTokens: 5, eosTokenId: [], padTokenId: 0 },
      );
      expect(newTokens.to({ device: 'cpu' }).toArray()).toEqual(t.get('greedy_new')!.toArray());
    }
  });

  it('trains with the Trainer on the GPU (fp32 and bf16 autocast) to what the CPU reaches, and saves a checkpoint', async () => {
    const dir = tmpdir();
    makeSampleData(dir);
    const data = await ecfSplits(dir);
    const asDataset = <T>(xs: T[]) => ({ length: xs.length, get: (i: number) => xs[i] });
    const run = async (device: 'cpu' | 'cuda', bf16: boolean) => {
      et.manualSeed(1);
      const model = await new Classifier(0).to({ device });
      const trainer = new et.train.Trainer({
        model,
        trainDataset: asDataset(data.train),
        evalDataset: asDataset(data.eval),
        dataCollator: collate,
        computeMetrics: accuracy,
        args: {
          output_dir: path.join(dir, `${device}-${bf16}`),
          num_train_epochs: 4,
          per_device_train_batch_size: 8,
          learning_rate: 1e-2,
          logging_steps: 5,
          eval_strategy: 'no',
          save_strategy: 'epoch',
          save_total_limit: 1,
          disable_tqdm: true,
          seed: 1,
          bf16,
        },
      });
      await trainer.train();
      expect(model.parameters()[0].device).toBe(device === 'cuda' ? 'cuda:0' : 'cpu');
      return trainer.evaluate();
    };
    const host = await run('cpu', false);
    const fp32 = await run('cuda', false);
    const bf16 = await run('cuda', true);
    console.log(`cuda trainer: eval_loss cpu ${host.eval_loss}, cuda fp32 ${fp32.eval_loss}, cuda bf16 ${bf16.eval_loss}`);
    expect(Math.abs(fp32.eval_loss - host.eval_loss)).toBeLessThan(1e-3);
    expect(Math.abs(bf16.eval_loss - host.eval_loss)).toBeLessThan(0.1 * host.eval_loss + 0.05);
    expect(fs.readdirSync(path.join(dir, 'cuda-true')).some((n) => n.startsWith('checkpoint-'))).toBe(true);
  });
});
