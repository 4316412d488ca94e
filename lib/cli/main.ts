#!/usr/bin/env node
/**
 * `emotorch <system> <command> [flags]`: the originals' command lines over the public API.
 *
 *   npx emotorch m2se sft --model InternVL2-4B/ --dataset emt_data_first.json --num_train_epochs 2 …
 *   npx emotorch m2se infer --ckpt_dir output/internvl2-4b/v0-…/checkpoint-84 --val_dataset meld_test_data.json
 *   npx emotorch m2se export --ckpt_dir output/internvl2-4b/v0-…/checkpoint-84 --merge_lora true
 *   npx emotorch m2se score output/…/infer_result/20261123-101500.jsonl --task emotion
 *
 *   npx emotorch salmonn infer --cfg-path configs/decode_config.yaml [--wav a.wav --prompt '…']
 *   npx emotorch salmonn train --cfg-path configs/config.yaml [--resume]
 *
 *   npx emotorch spectra process-pretrain --speech_dir SPEECH --text_dir TEXT --save_processed_speech_dir OUT --save_processed_text_filename transcripts.pkl --hours 960
 *   npx emotorch spectra pretrain --audio_path=wavlm-base-plus --text_path=roberta-base --transcripts=OUT/transcripts.pkl --batch_size=24 --epochs=5 --grad_acc=4 --model_save_path=runs --model_name=spectra --save_interval=25
 *   npx emotorch spectra finetune --apex_level=1 --batch_size=24 --epochs=5 --grad_acc=1 --lr=2e-5 --model_path=SPECTRA-base --task=iemocap --multi_audio --use_turn_ids
 *
 *   npx emotorch usdm preprocess | sft | extend-vocab … (the USDM READMEs' lines)
 *   npx emotorch usdm infer --model USDM-DailyTalk/ --xlsr xlsr2_1b_v2.pt --kmeans kmeans_10k.npy --input_path a.wav
 *
 *   npx emotorch semeval train --train_file ecf_train.json --eval_file ecf_dev.json --features text=text.safetensors video=video.safetensors
 *   npx emotorch semeval predict --model_dir output --test_file ecf_test.json --features text=… video=…
 *
 *   npx emotorch serve --cfg-path configs/decode_config.yaml | --model InternVL2-8B/ [--port 8000]
 *
 * Flags keep the original tool's names (ms-swift 2.x's for M2SE, cli_inference.py's for SALMONN). Exit status: 0 done, 1 a
 * runtime error (its code and message on stderr, no stack trace), 2 a usage error.
 */
import * as et from '../index';
import { Command, UsageError, parseFlags } from './common';
import { M2SE_EXPORT, M2SE_INFER, M2SE_SCORE, M2SE_SFT } from './m2se';
import { SALMONN_INFER, SALMONN_TRAIN } from './salmonn';
import { SERVE } from './serve';
import { SEMEVAL_PREDICT, SEMEVAL_TRAIN } from './semeval';
import { USDM_EXTEND_VOCAB, USDM_INFER, USDM_PREPROCESS, USDM_SFT } from './usdm';
import { SPECTRA_FINETUNE, SPECTRA_PRETRAIN, SPECTRA_PROCESS_PRETRAIN } from './spectra';

export { UsageError, parseFlags } from './common';

export const SYSTEMS: Record<string, { summary: string; commands: Record<string, Command> }> = {
  m2se: {
    summary: 'M2SE / EmoVerse: ms-swift SFT and inference, compute_result',
    commands: { sft: M2SE_SFT, infer: M2SE_INFER, export: M2SE_EXPORT, score: M2SE_SCORE },
  },
  salmonn: {
    summary: 'SALMONN: cli_inference.py on its decode_config.yaml, train.py on its config.yaml',
    commands: { infer: SALMONN_INFER, train: SALMONN_TRAIN },
  },
  spectra: {
    summary: "SPECTRA: main.py's pre-training and fine-tuning with scripts/train-960.sh's and finetune.sh's flags",
    commands: { finetune: SPECTRA_FINETUNE, pretrain: SPECTRA_PRETRAIN, 'process-pretrain': SPECTRA_PROCESS_PRETRAIN },
  },
  usdm: {
    summary: "USDM: dailytalk_single_turn.py's preprocessing, train_sft.py's fine-tuning, inference.py's three greedy stages from speech or units",
    commands: { preprocess: USDM_PREPROCESS, 'extend-vocab': USDM_EXTEND_VOCAB, sft: USDM_SFT, infer: USDM_INFER },
  },
  semeval: {
    summary: "SemEval-2024 Task 3: the seed's embedding classifier and the Subtask 2 submission file",
    commands: { train: SEMEVAL_TRAIN, predict: SEMEVAL_PREDICT },
  },
};

/** Commands that belong to no one system. */
export const TOP: Record<string, Command> = { serve: SERVE };

function usage(system?: string, command?: string): string {
  if (system && (command || TOP[system])) {
    const c = TOP[system] ?? SYSTEMS[system].commands[command!];
    const rows = Object.entries(c.flags).map(
      ([n, f]) =>
        `  --${n}${f.kind === 'list' ? ' <v…>' : f.kind === 'bool' ? ' [true|false]' : ' <v>'}`.padEnd(36) +
        (f.unused ? 'not used: ' : '') +
        f.help +
        (f.default !== undefined ? ` (default ${f.default})` : ''),
    );
    const name = TOP[system] ? system : `${system} ${command}`;
    return `Usage: emotorch ${name}${c.args ? ` ${c.args}` : ''} [flags]\n\n${c.summary}\n\n${rows.join('\n')}\n`;
  }
  if (system) {
    return `Usage: emotorch ${system} <command> [flags]\n\n${SYSTEMS[system].summary}\n\n${Object.entries(SYSTEMS[system].commands)
      .map(([n, c]) => `  ${n.padEnd(Math.max(8, ...Object.keys(SYSTEMS[system].commands).map((k) => k.length + 2)))}${c.summary}`)
      .join('\n')}\n\nemotorch ${system} <command> --help for its flags.\n`;
  }
  return `Usage: emotorch <system> <command> [flags]\n       emotorch serve [flags]\n\n${Object.entries(SYSTEMS)
    .map(([n, s]) => `  ${n.padEnd(8)}${s.summary}`)
    .join('\n')}\n\n${Object.entries(TOP)
    .map(([n, c]) => `  ${n.padEnd(8)}${c.summary}`)
    .join('\n')}\n\nemotorch <system> --help for its commands. Exit status: 0 done, 1 error, 2 usage.\n`;
}

/**
 * Runs one command line; returns the exit status (0 done, 1 runtime error, 2 usage).
 * @param argv the arguments after the program name
 */
export async function main(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(`${s}\n`),
  err: (s: string) => void = (s) => process.stderr.write(`${s}\n`),
): Promise<number> {
  const [system, command, ...rest] = argv;
  const help = (a: string | undefined) => a === '--help' || a === '-h';
  if (!system || help(system)) {
    (system ? out : err)(usage());
    return system ? 0 : 2;
  }
  if (TOP[system]) return runCommand(system, TOP[system], argv.slice(1), usage(system), out, err);
  if (!SYSTEMS[system]) {
    err(`emotorch: unknown system '${system}'\n\n${usage()}`);
    return 2;
  }
  if (!command || help(command)) {
    (command ? out : err)(usage(system));
    return command ? 0 : 2;
  }
  const c = SYSTEMS[system].commands[command];
  if (!c) {
    err(`emotorch: unknown command '${system} ${command}'\n\n${usage(system)}`);
    return 2;
  }
  return runCommand(`${system} ${command}`, c, rest, usage(system, command), out, err);
}

async function runCommand(name: string, c: Command, rest: string[], help: string, out: (s: string) => void, err: (s: string) => void): Promise<number> {
  if (rest.some((a) => a === '--help' || a === '-h')) {
    out(help);
    return 0;
  }
  try {
    const { values, positionals } = parseFlags(rest, c.flags);
    if (positionals.length && !c.args) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    for (const [n, f] of Object.entries(c.flags))
      if (f.unused && values[n] !== undefined) err(`emotorch ${name}: --${n} is accepted as the original's command lines have it and not used: ${f.help}`);
    await c.run(values, positionals, out);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      err(`emotorch ${name}: ${e.message}\n(emotorch ${name} --help lists the flags)`);
      return 2;
    }
    if (e instanceof et.EmotorchError) {
      err(`emotorch ${name}: ${e.code}: ${e.message}`);
      return 1;
    }
    // a file system failure that reached here uncoded (EACCES, ENOSPC, …): the message names the path, a stack adds nothing
    const sys = e as NodeJS.ErrnoException;
    if (sys instanceof Error && typeof sys.syscall === 'string' && typeof sys.code === 'string') {
      err(`emotorch ${name}: ERR_IO: ${sys.message}`);
      return 1;
    }
    err(`emotorch ${name}: ${(e as Error)?.stack ?? String(e)}`);
    return 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
