// 8-bit and 4-bit weights on a tiny random LLaMA (no downloads, a few seconds on a CPU):
//   1. a float checkpoint written as transformers lays one out (config.json + model.safetensors);
//   2. loaded with `quantize` in each format, quantized as the file is read: the layers' formats, the
//      bytes they keep, greedy tokens and the logits' cosine against the float model;
//   3. QLoRA: LoRA adapters trained over the nf4 weights (one AdamW step);
//   4. the int8 model saved in bitsandbytes' layout (what transformers + bitsandbytes read) and loaded back.
// With a real checkpoint: LlamaForCausalLM.fromPretrained('vicuna-13b/', { dtype: 'bfloat16', quantize: 'int8' }).
//   npm run example:quantized
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as et from 'emotorch';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'emotorch-quantized-'));
et.manualSeed(0);
const float = et.nn.LlamaForCausalLM.create({
  vocab_size: 320,
  hidden_size: 256,
  intermediate_size: 704,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  initializer_range: 0.05,
}).eval();
const dir = path.join(root, 'llama');
await float.savePretrained(dir);
console.log(`1. a float32 LLaMA in ${dir}: ${fs.readdirSync(dir).join(', ')}`);

const inputIds = et.tensor([[1, 17, 42, 99, 5, 230, 61]], { dtype: 'int64' });
const greedy = async (m) => (await et.noGrad(() => m.generate({ inputIds }, { maxNewTokens: 8 }))).newTokens.toArray()[0].map(Number);
const lastLogits = async (m) => (await et.noGrad(() => m.forward({ inputIds }))).logits.select(1, 6).flatten();
const cosine = (a, b) => a.mul(b).sum().item() / Math.sqrt(a.mul(a).sum().item() * b.mul(b).sum().item());
const want = await greedy(float);
const ref = await lastLogits(float);
console.log(`   float32: tokens ${want.join(' ')}`);

console.log('2. loaded quantized (the LM head stays in float, as transformers leaves it):');
for (const format of et.nn.QUANT_FORMATS) {
  const m = await et.nn.LlamaForCausalLM.fromPretrained(dir, { quantize: format });
  const layers = et.nn.linearLayers(m).filter((l) => l.format === format);
  const weights = layers.reduce((s, l) => s + l.out * l.in, 0);
  const tokens = await greedy(m);
  const same = tokens.findIndex((t, i) => t !== want[i]);
  console.log(
    `   ${format.padEnd(5)} ${layers.length} layers, ${((weights * et.nn.QUANT_BYTES_PER_WEIGHT[format]) / 1024).toFixed(0)} KiB ` +
      `(float32 ${((weights * 4) / 1024).toFixed(0)} KiB); logits' cosine to float ${cosine(await lastLogits(m), ref).toFixed(5)}; ` +
      `tokens ${tokens.join(' ')} (${same < 0 ? 'all' : `the first ${same}`} as the float model's)`,
  );
}

console.log('3. QLoRA: LoRA r 8 over the nf4 weights');
const qlora = await et.nn.LlamaForCausalLM.fromPretrained(dir, { quantize: 'nf4' });
et.nn.applyLora(qlora, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
qlora.train();
const opt = new et.optim.AdamW(qlora.trainableParameters(), { lr: 1e-3 });
for (let step = 0; step < 3; step++) {
  const { loss } = await qlora.forward({ inputIds, labels: inputIds });
  await loss.backward();
  await opt.step();
  opt.zeroGrad();
  console.log(`   step ${step + 1}: loss ${loss.item().toFixed(4)} (${qlora.trainableParameters().length} adapter tensors train)`);
}

console.log("4. int8 saved in bitsandbytes' layout and read back");
const int8 = await et.nn.LlamaForCausalLM.fromPretrained(dir, { quantize: 'int8' });
const saved = path.join(root, 'llama-int8');
await int8.savePretrained(saved);
const config = JSON.parse(fs.readFileSync(path.join(saved, 'config.json'), 'utf8'));
const back = await et.nn.LlamaForCausalLM.fromPretrained(saved);
const again = await greedy(back);
console.log(
  `   quantization_config ${JSON.stringify(config.quantization_config)}; read back: ` +
    `${et.nn.linearLayers(back).filter((l) => l.format === 'int8').length} int8 layers, tokens ${JSON.stringify(again) === JSON.stringify(await greedy(int8)) ? 'the same' : 'DIFFERENT'}`,
);
fs.rmSync(root, { recursive: true, force: true });
