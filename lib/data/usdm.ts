/**
 * USDM (naver-ai/usdm) SFT data: the single-turn template over speech units and text, its loss
 * spans, and the `ids|labels` line files it is stored as.
 *
 * Template (REFERENCE.md):
 *   USDM_SYSTEM + "\n### User\n{user_units}<|correspond|>{user_text}\n### Agent\n"
 *               + "{agent_text}<|correspond|>{agent_units}\n" + "</s>"
 * Units are written `<|unit{N}|>`. Loss (labels ≠ −100) falls only on (1) `{user_text}\n` — the
 * user transcript after the first `<|correspond|>`, with the newline before `### Agent` — and
 * (2) `{agent_text}<|correspond|>{agent_units}`.
 *
 * @module
 */
import { readRegularFile } from '../io/file';
import { EmotorchError, invalid, checkInt, checkOptionNames } from '../errors';

/** The instruction every USDM prompt starts with (the original template's first line). */
export const USDM_SYSTEM =
  "Below is a conversation between the user and the agent. Each turn includes the user's speech and its corresponding transcript, along with the agent's response text and the corresponding speech.\n";
/** The token between speech units and their text in USDM prompts. */
export const USDM_CORRESPOND = '<|correspond|>';
/** The end of a USDM SFT example. */
export const USDM_EOS = '</s>';
/** The label that marks a position without loss. */
export const IGNORE_INDEX = -100;

/**
 * What {@link buildUsdmExample} needs from a tokenizer: text → ids, special tokens included, no
 * BOS/EOS added; synchronously, or as a Promise (as `et.data.Tokenizer`'s encode).
 */
export interface UsdmTokenizer {
  /** Text → ids, special tokens recognised, no BOS / EOS added. */
  encode(text: string): number[] | Promise<number[]>;
}

/** One turn of a USDM dialogue: speech units and their transcript. */
export interface UsdmTurn {
  /** The user's speech as unit indices (0..9999). */
  userUnits: number[];
  /** The user's transcript. */
  userText: string;
  /** The agent's response text. */
  agentText: string;
  /** The agent's speech as unit indices. */
  agentUnits: number[];
}

/** One USDM SFT example: token ids and labels (−100 where not trained). */
export interface UsdmExample {
  ids: number[];
  /** ids where the loss applies, −100 elsewhere. */
  labels: number[];
}

/** `<|unit12|><|unit7|>…` */
export function unitString(units: readonly number[]): string {
  return units.map((u) => `<|unit${u}|>`).join('');
}

function checkTurn(turn: UsdmTurn, numUnits: number): void {
  if (turn === null || typeof turn !== 'object') invalid('{ userUnits, userText, agentText, agentUnits }', 'turn', turn);
  for (const k of ['userUnits', 'agentUnits'] as const) {
    const u = turn[k];
    if (!Array.isArray(u) || !u.every((x) => Number.isInteger(x) && x >= 0 && x < numUnits)) invalid(`an array of unit indices in [0, ${numUnits})`, k, u);
  }
  for (const k of ['userText', 'agentText'] as const) if (typeof turn[k] !== 'string') invalid('a string', k, turn[k]);
}

/** The template's pieces in order, each with whether the loss applies to it. */
function segments(turn: UsdmTurn): [string, boolean][] {
  return [
    [`${USDM_SYSTEM}\n### User\n${unitString(turn.userUnits)}${USDM_CORRESPOND}`, false],
    [`${turn.userText}\n`, true],
    ['### Agent\n', false],
    [`${turn.agentText}${USDM_CORRESPOND}${unitString(turn.agentUnits)}`, true],
    [`\n${USDM_EOS}`, false],
  ];
}

/**
 * The USDM template string for one turn.
 * @param turn units and texts
 * @throws EmotorchError ERR_INVALID_ARG for a malformed turn.
 * @example
 * et.data.usdm.usdmText({ userUnits: [1, 2], userText: 'hi', agentText: 'hello', agentUnits: [3] });
 */
export function usdmText(turn: UsdmTurn, opts: { numUnits?: number } = {}): string {
  opts = checkOptionNames(opts, ['numUnits'], 'usdmText');
  checkTurn(turn, opts.numUnits ?? 10000);
  return segments(turn)
    .map(([s]) => s)
    .join('');
}

/**
 * Builds one USDM training example: the template text, its token ids, and labels that are −100
 * outside the two loss spans. Each template piece is encoded on its own and the ids concatenated,
 * so the spans are exact token boundaries.
 *
 * @param turn units and texts
 * @param tokenizer anything with `encode(text)` that returns the ids (or a Promise of them), maps
 *   `<|correspond|>`, `<|unitN|>` and `</s>` to their ids and adds no BOS/EOS itself
 * @param opts `bos`: an id to put first (label −100); `numUnits` (default 10000)
 * @returns `{ text, ids, labels }` with ids.length === labels.length; a Promise of it when encode
 *   returns Promises
 * @throws EmotorchError ERR_INVALID_ARG for a malformed turn or tokenizer, or when encode returns
 *   something other than an array of integers.
 * @example
 * const ex = et.data.usdm.buildUsdmExample(turn, tokenizer, { bos: 1 });
 * const ex2 = await et.data.usdm.buildUsdmExample(turn, { encode: (s) => tok.encode(s, { addSpecialTokens: false }) }, { bos: tok.bosTokenId });
 */
export function buildUsdmExample(
  turn: UsdmTurn,
  tokenizer: { encode(text: string): number[] },
  opts?: { bos?: number; numUnits?: number },
): UsdmExample & { text: string };
export function buildUsdmExample(
  turn: UsdmTurn,
  tokenizer: { encode(text: string): Promise<number[]> },
  opts?: { bos?: number; numUnits?: number },
): Promise<UsdmExample & { text: string }>;
export function buildUsdmExample(
  turn: UsdmTurn,
  tokenizer: UsdmTokenizer,
  opts?: { bos?: number; numUnits?: number },
): (UsdmExample & { text: string }) | Promise<UsdmExample & { text: string }>;
export function buildUsdmExample(
  turn: UsdmTurn,
  tokenizer: UsdmTokenizer,
  opts: { bos?: number; numUnits?: number } = {},
): (UsdmExample & { text: string }) | Promise<UsdmExample & { text: string }> {
  opts = checkOptionNames(opts, ['bos', 'numUnits'], 'buildUsdmExample');
  const numUnits = opts.numUnits === undefined ? 10000 : checkInt(opts.numUnits, 'numUnits', 1);
  checkTurn(turn, numUnits);
  if (!tokenizer || typeof tokenizer.encode !== 'function') invalid('an object with encode(text)', 'tokenizer', tokenizer);
  const bos = opts.bos === undefined ? undefined : checkInt(opts.bos, 'bos', 0);
  const segs = segments(turn);
  const encoded = segs.map(([s]) => tokenizer.encode(s));
  const assemble = (lists: unknown[]): UsdmExample & { text: string } => {
    const ids: number[] = bos === undefined ? [] : [bos];
    const labels: number[] = bos === undefined ? [] : [IGNORE_INDEX];
    lists.forEach((t, k) => {
      if (!Array.isArray(t) || !t.every((x) => Number.isInteger(x))) invalid('an array of integer ids from tokenizer.encode', 'tokenizer.encode result', t);
      for (const id of t) {
        ids.push(id);
        labels.push(segs[k][1] ? id : IGNORE_INDEX);
      }
    });
    return { text: segs.map(([s]) => s).join(''), ids, labels };
  };
  const async = encoded.some((t) => typeof (t as { then?: unknown } | null)?.then === 'function');
  return async ? Promise.all(encoded).then(assemble) : assemble(encoded);
}

/**
 * Parses one `ids|labels` line.
 * @param vocabSize when given, every id must be below it (the model's vocabulary)
 * @throws EmotorchError ERR_DATA naming the file and line when it is malformed, or holds an id past `vocabSize`.
 * @internal
 */
export function parseUsdmLine(line: string, file: string, index: number, vocabSize?: number): UsdmExample {
  const bad = (why: string): never => {
    throw new EmotorchError(`'${file}' item ${index} (line ${index + 1}): ${why}`, 'ERR_DATA');
  };
  const parts = line.split('|');
  if (parts.length !== 2) bad(`expected 'ids|labels' but found ${parts.length - 1} '|'`);
  const nums = (s: string, what: string): number[] => {
    const toks = s.trim().split(/\s+/).filter(Boolean);
    return toks.map((t, k) => {
      if (!/^-?\d+$/.test(t)) bad(`${what}[${k}] is ${JSON.stringify(t)}, not an integer`);
      return Number(t);
    });
  };
  const ids = nums(parts[0], 'ids');
  const labels = nums(parts[1], 'labels');
  if (ids.length === 0) bad('has no ids');
  if (ids.length !== labels.length) bad(`has ${ids.length} ids but ${labels.length} labels`);
  ids.forEach((id, k) => {
    if (id < 0) bad(`ids[${k}] is ${id}, a negative token id`);
    if (vocabSize !== undefined && id >= vocabSize) bad(`ids[${k}] is ${id}, past the model's vocabulary of ${vocabSize} tokens (ids 0 to ${vocabSize - 1})`);
    if (labels[k] !== IGNORE_INDEX && labels[k] !== id) bad(`labels[${k}] is ${labels[k]}, neither ids[${k}] (${id}) nor -100`);
  });
  return { ids, labels };
}

/** Formats an example as an `ids|labels` line (no newline). */
export function formatUsdmLine(ex: UsdmExample): string {
  return `${ex.ids.join(' ')}|${ex.labels.join(' ')}`;
}

/**
 * Reads a file of `ids|labels` lines (space-separated integers; equal counts; each label is its
 * id or −100). Blank lines are ignored.
 * @param path the file
 * @param opts `vocabSize`: the model's vocabulary; an id at or past it is refused here, naming the
 *   file and line, rather than met as an index error in the embedding
 * @throws EmotorchError ERR_IO when it cannot be read; ERR_DATA naming the file and line for the
 *   first malformed line (or id past `vocabSize`); ERR_INVALID_ARG for a bad option.
 * @example
 * const examples = await et.data.usdm.readUsdmLines('train.txt', { vocabSize: 42003 });
 */
export async function readUsdmLines(path: string, opts: { vocabSize?: number } = {}): Promise<UsdmExample[]> {
  if (typeof path !== 'string') invalid('a file path', 'path', path);
  if (!opts || typeof opts !== 'object') invalid('an options object', 'opts', opts);
  checkOptionNames(opts, ['vocabSize'], 'readUsdmLines');
  const vocabSize = opts.vocabSize === undefined ? undefined : checkInt(opts.vocabSize, 'vocabSize', 1);
  const text = (await readRegularFile(path)).toString('utf8');
  const out: UsdmExample[] = [];
  text.split('\n').forEach((l, i) => {
    if (l.trim()) out.push(parseUsdmLine(l, path, i, vocabSize));
  });
  return out;
}
