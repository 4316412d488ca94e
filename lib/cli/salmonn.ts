/** `emotorch salmonn infer`: SALMONN's cli_inference.py on its own decode_config.yaml. */
import * as fs from 'fs';
import * as readline from 'readline';
import * as YAML from 'yaml';
import * as et from '../index';
import { Command, UsageError, str } from './common';

/** The YAML's paths: read here, not config fields. */
const PATHS = ['llama_path', 'whisper_path', 'beats_path', 'ckpt'];

/**
 * The original YAML (`model:` and `generate:` blocks, configs/decode_config.yaml's layout) as
 * fromPretrained options: paths, and the fields SALMONN's config has; the rest named back.
 * @throws EmotorchError ERR_IO / ERR_FORMAT for an unreadable file or one that is not such a YAML
 */
export function readSalmonnYaml(file: string): { options: Parameters<typeof et.systems.Salmonn.fromPretrained>[0]; ignored: string[] } {
  let doc: unknown;
  try {
    doc = YAML.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ? 'ERR_IO' : 'ERR_FORMAT';
    throw new et.EmotorchError(`cannot read the SALMONN config '${file}': ${(e as Error).message.split('\n')[0]}`, code);
  }
  const y = doc as { model?: Record<string, unknown>; generate?: Record<string, unknown> } | null;
  if (!y || typeof y !== 'object' || !y.model || typeof y.model !== 'object') throw new et.EmotorchError(`'${file}' has no model: block (SALMONN's decode_config.yaml layout)`, 'ERR_FORMAT');
  const known = new Set(Object.keys(et.systems.SALMONN_DEFAULTS));
  const config: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [k, v] of [...Object.entries(y.model), ...Object.entries(y.generate ?? {})]) {
    if (known.has(k)) config[k] = v;
    else if (!PATHS.includes(k)) ignored.push(k);
  }
  const p = (k: string): string | null => {
    const v = y.model![k];
    if (v === undefined || v === null || v === '') return null;
    if (typeof v !== 'string') throw new et.EmotorchError(`'${file}': model.${k} is not a path`, 'ERR_FORMAT');
    return v;
  };
  const llm = p('llama_path'), whisper = p('whisper_path');
  if (!llm || !whisper) throw new et.EmotorchError(`'${file}': model.llama_path and model.whisper_path are required`, 'ERR_FORMAT');
  return { options: { whisper, beats: p('beats_path'), llm, checkpoint: p('ckpt'), config: config as never }, ignored };
}

export const SALMONN_INFER: Command = {
  summary: "SALMONN's cli_inference.py: load the model of a decode_config.yaml, then answer a wav and a prompt (or many, typed in turn)",
  flags: {
    cfg_path: { kind: 'string', help: 'the original YAML (--cfg-path): model paths, model and generate blocks' },
    wav: { kind: 'string', help: 'answer this file and stop (with --prompt)' },
    prompt: { kind: 'string', help: 'the instruction for --wav' },
  },
  async run(v, _pos, out) {
    const cfg = str(v, 'cfg_path');
    if (!cfg) throw new UsageError('--cfg-path is required');
    if ((v.wav === undefined) !== (v.prompt === undefined)) throw new UsageError('--wav and --prompt go together');
    const { options, ignored } = readSalmonnYaml(cfg);
    if (ignored.length) process.stderr.write(`emotorch: ${cfg}: not used here: ${ignored.join(', ')}\n`);
    const model = await et.systems.Salmonn.fromPretrained(options);
    model.eval();
    const answer = async (wav: string, prompt: string): Promise<string> => {
      const { samples } = await et.audio.readAudio(wav, { sampleRate: 16000, channel: 0 });
      return (await model.generate([samples], prompt.trim()))[0];
    };
    if (v.wav !== undefined) {
      out(await answer(str(v, 'wav')!, str(v, 'prompt')!));
      return;
    }
    // the original's loop: a wav path, a prompt, the output; until the input ends
    const rl = readline.createInterface({ input: process.stdin, terminal: false });
    const lines = rl[Symbol.asyncIterator]();
    const ask = async (q: string): Promise<string | null> => {
      out(q);
      const r = await lines.next();
      return r.done ? null : r.value;
    };
    for (;;) {
      out('=====================================');
      const wav = await ask('Your Wav Path:');
      if (wav === null) break;
      const prompt = await ask('Your Prompt:');
      if (prompt === null) break;
      try {
        out('Output:');
        out(await answer(wav.trim(), prompt));
      } catch (e) {
        if (!(e instanceof et.EmotorchError)) throw e;
        out(`error: ${e.code}: ${e.message}`);   // a bad path or file: the loop goes on
      }
    }
    rl.close();
  },
};
