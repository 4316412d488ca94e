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
    const model = await et.systems.Salmonn.fromPretrained({ whisper: path.join(FIXTURES, 'whisper'), beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'), checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'), config: config as never });
    model.eval();
    const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000, channel: 0 });
    const [want] = await model.generate([samples], 'Describe the sound.');
    const one = run(['salmonn', 'infer', '--cfg-path', file, '--wav', wav, '--prompt', 'Describe the sound.']);
    expect(one.err).toMatch(/not used here: token, low_resource/);
    expect(one.code).toBe(0);
    expect(one.out.trim()).toBe(want.trim());
    const loop = run(['salmonn', 'infer', '--cfg-path', file], `${wav}\nDescribe the sound.\n/no/such.wav\nAgain?\n`);
    expect(loop.code).toBe(0);
    expect(loop.out).toContain(`Output:\n${want}`);
    expect(loop.out).toMatch(/error: ERR_IO: .*no\/such\.wav/);   // a bad path: the loop goes on to the end of the input
    expect(loop.out.match(/Your Wav Path:/g)!.length).toBe(3);
  }, 300_000);
  it('refuses a config that is not SALMONN\'s YAML (1) and a half one-shot (2)', () => {
    const bad = path.join(tmpdir(), 'bad.yaml');
    fs.writeFileSync(bad, 'run:\n  seed: 1\n');
    expect(run(['salmonn', 'infer', '--cfg-path', bad, '--wav', 'a.wav', '--prompt', 'x'])).toMatchObject({ code: 1 });
    expect(run(['salmonn', 'infer', '--cfg-path', bad, '--wav', 'a.wav']).code).toBe(2);
    expect(run(['salmonn', 'infer', '--cfg-path', path.join(tmpdir(), 'none.yaml'), '--wav', 'a', '--prompt', 'b']).err).toMatch(/ERR_IO/);
  });
});
