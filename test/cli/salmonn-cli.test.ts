// `npx emotorch salmonn infer --cfg-path decode_config.yaml` (dist/cli/main.js, spawned): the
// original YAML layout (model paths, model and generate blocks) read as it is, one-shot (--wav /
// --prompt) and the interactive loop of cli_inference.py, answers equal to the public API's.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as et from '../../lib/index';
import { FIXTURES, salmonnDecodeYaml, tmpdir } from '../helpers';

const CLI = path.join(__dirname, '..', '..', 'dist', 'cli', 'main.js');
const run = (args: string[], input = '') => {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('emotorch salmonn infer', () => {
  it('answers as Salmonn.generate does, one-shot and in the interactive loop; names the YAML keys it does not use', async () => {
    const { file, config } = salmonnDecodeYaml(tmpdir());
    const wav = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
    const model = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'),
      config: config as never,
    });
    model.eval();
    const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000, channel: 0 });
    const [want] = await model.generate([samples], 'Describe the sound.');
    const one = run(['salmonn', 'infer', '--cfg-path', file, '--wav', wav, '--prompt', 'Describe the sound.']);
    expect(one.err).toMatch(/not used here: token\n/); // low_resource: false goes to the model, which takes it (true: the LLaMA in int8)
    expect(one.code).toBe(0);
    expect(one.out.trim()).toBe(want.trim());
    const loop = run(['salmonn', 'infer', '--cfg-path', file], `${wav}\nDescribe the sound.\n/no/such.wav\nAgain?\n`);
    expect(loop.code).toBe(0);
    expect(loop.out).toContain(`Output:\n${want}`);
    expect(loop.out).toMatch(/error: ERR_IO: .*no\/such\.wav/); // a bad path: the loop goes on to the end of the input
    expect(loop.out.match(/Your Wav Path \(single path, or comma-separated for multi-turn, or @list\.txt\):/g)!.length).toBe(3);

    // several turns as one input, as the trajectory fork's cli_inference.py: comma-separated, @list.txt, a JSON array
    const dir = path.join(FIXTURES, 'salmonn_multi_turn');
    const files = ['stereo.wav', 'c.wav', 'd.wav'].map((f) => path.join(dir, f));
    const turns = await Promise.all(files.map(async (f) => (await et.audio.readAudio(f, { sampleRate: 16000, channel: 0 })).samples));
    const [joined] = await model.generate([et.systems.salmonn.salmonnJoinTurns(turns)], 'Describe the sound.');
    const list = path.join(tmpdir(), 'list.txt');
    fs.writeFileSync(list, `${files.join('\n')}\n`);
    for (const wavs of [files.join(','), `@${list}`, JSON.stringify(files)]) {
      const multi = run(['salmonn', 'infer', '--cfg-path', file, '--wav', wavs, '--prompt', 'Describe the sound.']);
      expect(multi.code, multi.err).toBe(0);
      expect(multi.out.trim()).toBe(joined.trim());
    }
  }, 300_000);
  it("low_resource (the YAML's key, or the v1 release's --low_resource flag): answers as Salmonn.fromPretrained with the LLaMA in int8; device_8bit named as not used on the CPU", async () => {
    const { file, config } = salmonnDecodeYaml(tmpdir());
    const wav = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
    const model = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'),
      config: { ...config, low_resource: true } as never,
    });
    expect(et.nn.linearLayers(model.llama_model).filter((l) => l.format === 'int8').length).toBe(14);
    const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000, channel: 0 });
    const [want] = await model.generate([samples], 'Describe the sound.');
    const flag = run(['salmonn', 'infer', '--cfg-path', file, '--low_resource', '--device', 'cpu', '--wav', wav, '--prompt', 'Describe the sound.']);
    expect(flag.code, flag.err).toBe(0);
    expect(flag.out.trim()).toBe(want.trim());
    expect(flag.err).toMatch(/low_resource: the LLaMA's decoder Linear layers load with int8 weights/);
    const yaml = run([
      'salmonn',
      'infer',
      '--cfg-path',
      file,
      '--device',
      'cpu',
      '--options',
      'model.low_resource=True',
      'model.device_8bit=1',
      '--wav',
      wav,
      '--prompt',
      'Describe the sound.',
    ]);
    expect(yaml.code, yaml.err).toBe(0);
    expect(yaml.out.trim()).toBe(want.trim());
    expect(yaml.err).toMatch(/device_8bit 1 is a GPU index: not used on the CPU/);
    const bad = run(['salmonn', 'infer', '--cfg-path', file, '--options', 'model.low_resource=maybe', '--wav', wav, '--prompt', 'x']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/ERR_INVALID_ARG: .*config\.low_resource/);
  }, 300_000);
  it("refuses a config that is not SALMONN's YAML (1) and a half one-shot (2)", () => {
    const bad = path.join(tmpdir(), 'bad.yaml');
    fs.writeFileSync(bad, 'run:\n  seed: 1\n');
    expect(run(['salmonn', 'infer', '--cfg-path', bad, '--wav', 'a.wav', '--prompt', 'x'])).toMatchObject({ code: 1 });
    expect(run(['salmonn', 'infer', '--cfg-path', bad, '--wav', 'a.wav']).code).toBe(2);
    expect(run(['salmonn', 'infer', '--cfg-path', path.join(tmpdir(), 'none.yaml'), '--wav', 'a', '--prompt', 'b']).err).toMatch(/ERR_IO/);
  });
});

// bytedance/SALMONN (branch salmonn) configs/decode_config.yaml lines 15-58 as written; the test
// replaces only its four path placeholders with the tiny fixtures
const DECODE_CONFIG = `model:
  # paths
  llama_path: "path to llama model"
  whisper_path: "path to whisper model"
  beats_path: "path to beats model"

  ckpt: "model ckpt" # model used for decoding

  freeze_whisper: True
  freeze_beats: True

  # window-level Q-Former
  use_speech_Qformer: True
  freeze_speech_QFormer: False
  window_level_Qformer: True
  num_speech_query_token: 1
  second_per_window: 0.333333
  second_stride: 0.333333

  speech_llama_proj_model: ""
  freeze_speech_llama_proj: False

  # LoRA
  lora: True
  lora_rank: 8
  lora_alpha: 32
  lora_dropout: 0.1

  multi_prompt: True
  prompt_template: "USER: {}\\nASSISTANT:"
  prompt_path: "prompts/train_prompt.json"
  test_prompt_path: "prompts/test_prompt.json"
  max_txt_len: 300
  end_sym: "</s>"

generate:
  max_new_tokens: 200
  num_beams: 4
  do_sample: False
  min_length: 1
  temperature: 1.0
  top_p: 0.9
  repetition_penalty: 1.0
  length_penalty: 1.0
`;

describe("SALMONN's cli_inference.py line with its decode_config.yaml as written", () => {
  it("`--cfg-path configs/decode_config.yaml` answers as the API does, the Q-Former's sizes from a bert-base-uncased folder as the original reads them; --device and --options as the original", async () => {
    const cwd = tmpdir();
    const runIn = (args: string[], input = '') => {
      const r = spawnSync(process.execPath, [CLI, ...args], { input, cwd, encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' }, timeout: 240_000 });
      return { code: r.status, out: r.stdout, err: r.stderr };
    };
    const paths = {
      'path to llama model': path.join(FIXTURES, 'salmonn', 'llm'),
      'path to whisper model': path.join(FIXTURES, 'whisper'),
      'path to beats model': path.join(FIXTURES, 'beats', 'beats.pt'),
      'model ckpt': path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'),
    };
    fs.mkdirSync(path.join(cwd, 'configs'));
    fs.writeFileSync(
      path.join(cwd, 'configs', 'decode_config.yaml'),
      Object.entries(paths).reduce((t, [k, v]) => t.replace(`"${k}"`, JSON.stringify(v)), DECODE_CONFIG),
    );
    const wav = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');
    const qformer = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'salmonn', 'config.json'), 'utf8')).qformer;

    // without a bert-base-uncased folder the Q-Former is bert-base's size: the tiny checkpoint does not fit, and the error says why, briefly
    const unsized = runIn(['salmonn', 'infer', '--cfg-path', 'configs/decode_config.yaml'], `${wav}\nDescribe the sound.\n`);
    expect(unsized.code).toBe(1);
    expect(unsized.err).toMatch(/ERR_STATE_DICT: .*\d+ wrong shapes: .* and \d+ more; .*bert-base-uncased/);
    expect(unsized.err.length).toBeLessThan(2500);

    // BertConfig.from_pretrained("bert-base-uncased") reads the folder of that name in the working folder
    fs.mkdirSync(path.join(cwd, 'bert-base-uncased'));
    fs.writeFileSync(
      path.join(cwd, 'bert-base-uncased', 'config.json'),
      JSON.stringify({ model_type: 'bert', ...qformer, num_hidden_layers: 12, vocab_size: 30522 }),
    );
    const model = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: paths['path to whisper model'],
      beats: paths['path to beats model'],
      llm: paths['path to llama model'],
      checkpoint: paths['model ckpt'],
      config: { lora_dropout: 0.1, max_txt_len: 300, qformer: { ...qformer, num_hidden_layers: 2 } },
    });
    model.eval();
    const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000, channel: 0 });
    const [want] = await model.generate([samples], 'Describe the sound.', { maxNewTokens: 200, numBeams: 4 });
    const loop = runIn(['salmonn', 'infer', '--cfg-path', 'configs/decode_config.yaml'], `${wav}\nDescribe the sound.\n`);
    expect(loop.code, loop.err).toBe(0);
    expect(loop.out).toContain(`Output:\n${want}`);
    expect(loop.err).not.toMatch(/no CUDA device/); // no --device given: CUDA where there is one, else the CPU, quietly
    const cuda = runIn([
      'salmonn',
      'infer',
      '--cfg-path',
      'configs/decode_config.yaml',
      '--device',
      'cuda:0',
      '--options',
      'generate.max_new_tokens=2',
      '--wav',
      wav,
      '--prompt',
      'x',
    ]);
    expect(cuda.code, cuda.err).toBe(0);
    if (!et.cuda.isAvailable()) expect(cuda.err).toMatch(/--device cuda:0: no CUDA device is available: running on the CPU/);

    // the original's --device and --options key=value (OmegaConf's dotlist over the YAML)
    const [greedy] = await model.generate([samples], 'Describe the sound.', { maxNewTokens: 5, numBeams: 1 });
    const opts = runIn([
      'salmonn',
      'infer',
      '--cfg-path',
      'configs/decode_config.yaml',
      '--device',
      'cpu',
      '--options',
      'generate.num_beams=1',
      'generate.max_new_tokens=5',
      '--wav',
      wav,
      '--prompt',
      'Describe the sound.',
    ]);
    expect(opts.code, opts.err).toBe(0);
    expect(opts.out.trim()).toBe(greedy.trim());
    expect(runIn(['salmonn', 'infer', '--cfg-path', 'configs/decode_config.yaml', '--device', 'tpu', '--wav', wav, '--prompt', 'x'])).toMatchObject({
      code: 2,
      err: expect.stringMatching(/--device takes cpu, cuda or cuda:N/),
    });
    expect(runIn(['salmonn', 'infer', '--cfg-path', 'configs/decode_config.yaml', '--options', 'generate.num_beams', '--wav', wav, '--prompt', 'x']).code).toBe(
      2,
    );
  }, 300_000);
});

describe('salmonn infer --wav at another rate', () => {
  it('is cut to 30 s at its own rate, then resampled as SALMONN v1 (librosa res_type fft), the first channel', async () => {
    const { salmonnInput } = await import('../../lib/cli/salmonn');
    const dir = tmpdir();
    const rate = 44100,
      n = 31 * rate + 7;
    const left = Float32Array.from({ length: n }, (_, i) => 0.3 * Math.sin((2 * Math.PI * 440 * i) / rate) + 0.2 * Math.sin((2 * Math.PI * 7900 * i) / rate));
    const stereo = new Float32Array(2 * n);
    left.forEach((v, i) => {
      stereo[2 * i] = v;
      stereo[2 * i + 1] = -v;
    });
    const f = path.join(dir, 'turn.wav');
    fs.writeFileSync(f, et.audio.encodeWav(stereo, rate, { channels: 2, format: 'float32' }));
    const x = await salmonnInput(f);
    expect(x.length).toBe(30 * 16000);
    const want = et.audio.resample(left.subarray(0, 30 * rate), rate, 16000, { method: 'fft' });
    let d = 0;
    for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - want[i]));
    expect(d).toBeLessThan(1e-6);
    // not what resampling the whole clip and cutting gives (the FFT sees the clip as periodic)
    const whole = et.audio.resample(left, rate, 16000, { method: 'fft' });
    let e = 0;
    for (let i = x.length - 200; i < x.length; i++) e = Math.max(e, Math.abs(x[i] - whole[i]));
    expect(e).toBeGreaterThan(1e-3);
  }, 60_000);
});
