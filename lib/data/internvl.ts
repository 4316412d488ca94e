/**
 * InternVL2's prompts as ms-swift 2.6.1 builds them for training and inference (`template.py`:
 * `internvl2` for the InternLM2 / Qwen2 models, `internvl2-phi3` for InternVL2-4B): the system
 * block, history turns, `<image>` / `<video>` tags (missing tags prepended to the first query,
 * videos as `Frame{i}: ` + one tile per frame), each image as `<img>` + `<IMG_CONTEXT>` ×
 * numImageToken × tiles + `</img>\n`, and labels on every response and the separator after it.
 */
import { EmotorchError, checkOptionNames, invalid } from '../errors';
import type { Tokenizer } from './tokenizer';
import { INTERNVL_MAX_TILES_PER_IMAGE } from '../vision/internvl';

/** The most `<IMG_CONTEXT>` tokens per tile (`numImageToken`): InternVL2 uses 256 (448 px tiles, patch 14, downsample 0.5). */
const INTERNVL_MAX_IMAGE_TOKEN = 4096;
/** The most frames of one video (`videoFrames`): as many as `internvlFrameIndices` samples (4096 segments). */
const INTERNVL_MAX_VIDEO_FRAMES = 4096;
/**
 * The most image tokens of one prompt (tiles of every image and frame × numImageToken): 2²⁰, eight
 * times the longest context of InternVL2's LLMs (Phi-3's 128 Ki), 8 MB of ids.
 */
const INTERNVL_MAX_PROMPT_IMAGE_TOKENS = 2 ** 20;

const CONVERSATION_FIELDS = ['system', 'history', 'query', 'response', 'imageTiles', 'videoFrames'];

/** ms-swift's `Internvl2Template.system` (both templates' default system text). */
export const INTERNVL2_SYSTEM = '你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。';

/** One chat template's strings: `user` + query + `assistant`, then the response and `sep`. */
export interface InternVLTemplate {
  user: string;
  assistant: string;
  /** After each response (chat_sep between turns, suffix after the last: the same string here). */
  sep: string;
  systemStart: string;
  systemEnd: string;
}

/** ms-swift 2.6.1's InternVL2 templates (template.py L2437-2445, L2594-2609), no newline after the separators. */
export const INTERNVL_TEMPLATES: Readonly<Record<'internvl2' | 'internvl2-phi3', InternVLTemplate>> = {
  internvl2: {
    user: '<|im_start|>user\n',
    assistant: '<|im_end|><|im_start|>assistant\n',
    sep: '<|im_end|>',
    systemStart: '<|im_start|>system\n',
    systemEnd: '<|im_end|>',
  },
  'internvl2-phi3': { user: '<|user|>\n', assistant: '<|end|><|assistant|>\n', sep: '<|end|>', systemStart: '<|system|>\n', systemEnd: '<|end|>' },
};

/** One conversation to encode. */
export interface InternVLConversation {
  /** undefined: the template's default system; '' or null: no system block (swift's `--system ''`). */
  system?: string | null;
  /** Earlier [query, response] turns, each a pair of strings (their responses are trained on too, as swift does). */
  history?: Array<[string, string]>;
  query: string;
  /** The target; omitted at inference (the prompt ends after the assistant header). */
  response?: string;
  /** Tiles of each image, in order (thumbnail included): integers in [1, 65], what internvlTiles can make of a picture. */
  imageTiles?: number[];
  /** Frames of each video (one tile each): integers in [1, 4096]. */
  videoFrames?: number[];
}

/** A conversation encoded by `internvlEncode`: ids, labels and how its media fill the prompt. */
export interface InternVLEncoded {
  inputIds: number[];
  /** −100 except on the responses and the separator after each. */
  labels: number[];
  /** Tokens counting each image and frame as one, what swift compares with max_length ('delete' drops longer records). */
  lengthBeforeImages: number;
  /** Tiles in all (images' and videos' frames). */
  tiles: number;
  /** The images and videos in the order their tags come in the prompt (the order of their tiles): kind and index in imageTiles / videoFrames. */
  order: Array<{ kind: 'image' | 'video'; index: number }>;
}

type Seg = { text: string; train: boolean } | { tiles: number };

/**
 * Encodes a conversation as ms-swift's InternVL2 templates do: text runs of the same kind
 * tokenized separately (prompt runs, response runs), BOS first when the tokenizer adds one to an
 * empty string (InternLM2, Phi-3), the image context tokens between `<img>` and `</img>\n`.
 * @param tok a tokenizer that knows the template's special tokens and `<img>`, `</img>`, `<IMG_CONTEXT>`
 * @param conv the conversation: only the fields of {@link InternVLConversation}; imageTiles
 *   integers in [1, 65] (a 64-tile grid and its thumbnail), videoFrames integers in [1, 4096]
 * @param opts `template`, and `numImageToken`, an integer in [1, 4096] (InternVL2: 256); the
 *   prompt's image tokens (all tiles × numImageToken) may not exceed 2²⁰
 * @throws EmotorchError ERR_INVALID_ARG naming the field: an unknown field or option, a field of
 *   the wrong type, a size out of those bounds, a tag without media, media without a tag left to
 *   fill, or a tokenizer without a special token
 */
export async function internvlEncode(
  tok: Tokenizer,
  conv: InternVLConversation,
  opts: { template: keyof typeof INTERNVL_TEMPLATES; numImageToken: number },
): Promise<InternVLEncoded> {
  if (!tok || typeof tok !== 'object' || typeof tok.tokenToId !== 'function' || typeof tok.encode !== 'function')
    invalid('an et.data.Tokenizer', 'tokenizer', tok);
  if (opts === undefined || opts === null) invalid('an options object { template, numImageToken }', 'internvlEncode options', opts);
  checkOptionNames(opts, ['template', 'numImageToken'], 'internvlEncode options');
  if (typeof opts.template !== 'string' || !Object.prototype.hasOwnProperty.call(INTERNVL_TEMPLATES, opts.template)) {
    invalid(
      Object.keys(INTERNVL_TEMPLATES)
        .map((k) => `'${k}'`)
        .join(' or '),
      'template',
      opts.template,
    );
  }
  const t = INTERNVL_TEMPLATES[opts.template];
  const per = opts.numImageToken;
  if (typeof per !== 'number' || !Number.isInteger(per) || per < 1 || per > INTERNVL_MAX_IMAGE_TOKEN)
    invalid(`an integer in [1, ${INTERNVL_MAX_IMAGE_TOKEN}]`, 'numImageToken', per);
  checkConversation(conv, per);
  const ctx = tok.tokenToId('<IMG_CONTEXT>');
  if (ctx === undefined) throw new EmotorchError("InternVL: the tokenizer has no '<IMG_CONTEXT>' token", 'ERR_INVALID_ARG');
  const images = [...(conv.imageTiles ?? [])];
  const videos = [...(conv.videoFrames ?? [])];
  const history = (conv.history ?? []).map(([q, r]) => [q, r] as [string, string]);
  // add_default_tags: missing tags go in front of the first query (videos first, then images in front of them).
  const first = history.length ? history[0][0] : conv.query;
  const all = [...history.map(([q]) => q), conv.query].join('');
  const count = (s: string, tag: string) => s.split(tag).length - 1;
  const missing = (n: number, tag: string) => tag.repeat(Math.max(0, n - count(all, tag)));
  const firstTagged = missing(images.length, '<image>') + missing(videos.length, '<video>') + first;
  if (history.length) history[0][0] = firstTagged;
  const query = history.length ? conv.query : firstTagged;

  const segs: Seg[] = [];
  const text = (s: string, train: boolean) => {
    if (s) segs.push({ text: s, train });
  };
  let tiles = 0;
  const order: InternVLEncoded['order'] = [];
  const media = (s: string) => {
    // <video> → Frame{i}: <img>…</img>\n per frame (1 tile each); <image> → <img>…</img>\n
    for (const part of s.split(/(<image>|<video>)/)) {
      if (part === '<image>') {
        const n = images.shift();
        if (n === undefined) invalid('as many images as <image> tags', 'conversation.imageTiles', conv.imageTiles ?? []);
        order.push({ kind: 'image', index: (conv.imageTiles ?? []).length - images.length - 1 });
        text('<img>', false);
        segs.push({ tiles: n! });
        text('</img>\n', false);
        tiles += n!;
      } else if (part === '<video>') {
        const n = videos.shift();
        if (n === undefined) invalid('as many videos as <video> tags', 'conversation.videoFrames', conv.videoFrames ?? []);
        order.push({ kind: 'video', index: (conv.videoFrames ?? []).length - videos.length - 1 });
        for (let i = 0; i < n!; i++) {
          text(`Frame${i + 1}: <img>`, false);
          segs.push({ tiles: 1 });
          text('</img>\n', false);
        }
        tiles += n!;
      } else text(part, false);
    }
  };
  const system = conv.system === undefined ? INTERNVL2_SYSTEM : conv.system;
  if (system) text(t.systemStart + system + t.systemEnd, false);
  for (const [q, r] of history) {
    text(t.user, false);
    media(q);
    text(t.assistant, false);
    text(r + t.sep, true);
  }
  text(t.user, false);
  media(query);
  text(t.assistant, false);
  if (conv.response !== undefined) text(conv.response + t.sep, true);

  // Adjacent runs of the same kind are joined and tokenized as one string (_simplify_context_list).
  const inputIds: number[] = [],
    labels: number[] = [];
  let lengthBeforeImages = 0;
  const bos = tok.bosTokenId;
  if (bos !== undefined && (await tok.encode('')).includes(bos)) {
    inputIds.push(bos);
    labels.push(-100);
    lengthBeforeImages++;
  }
  for (let i = 0; i < segs.length;) {
    const s = segs[i];
    if ('tiles' in s) {
      const n = s.tiles * per;
      for (let k = 0; k < n; k++) {
        inputIds.push(ctx);
        labels.push(-100);
      }
      lengthBeforeImages++;
      i++;
      continue;
    }
    let joined = '';
    let j = i;
    for (; j < segs.length && !('tiles' in segs[j]) && (segs[j] as { train: boolean }).train === s.train; j++) joined += (segs[j] as { text: string }).text;
    const ids = await tok.encode(joined, { addSpecialTokens: false });
    // a loop, not push(...ids): a spread of a long prompt's ids passes V8's argument limit
    for (const id of ids) {
      inputIds.push(id);
      labels.push(s.train ? id : -100);
    }
    lengthBeforeImages += ids.length;
    i = j;
  }
  if (images.length || videos.length)
    invalid('a <image> / <video> tag for every image and video', 'conversation', `${images.length} images and ${videos.length} videos left over`);
  return { inputIds, labels, lengthBeforeImages, tiles, order };
}

/** Checks a conversation's fields (names, types, sizes) and that its image tokens stay within INTERNVL_MAX_PROMPT_IMAGE_TOKENS. */
function checkConversation(conv: InternVLConversation, numImageToken: number): void {
  if (!conv || typeof conv !== 'object' || Array.isArray(conv)) invalid('a conversation object { query, … }', 'conversation', conv);
  for (const k of Object.keys(conv)) if (!CONVERSATION_FIELDS.includes(k)) invalid(`one of ${CONVERSATION_FIELDS.join(', ')}`, 'a field of conversation', k);
  if (typeof conv.query !== 'string') invalid('a string', 'conversation.query', conv.query);
  if (conv.response !== undefined && typeof conv.response !== 'string') invalid('a string (or undefined)', 'conversation.response', conv.response);
  if (conv.system !== undefined && conv.system !== null && typeof conv.system !== 'string')
    invalid('a string, null or undefined', 'conversation.system', conv.system);
  if (conv.history !== undefined) {
    if (!Array.isArray(conv.history)) invalid('an array of [query, response] pairs of strings', 'conversation.history', conv.history);
    for (let i = 0; i < conv.history.length; i++) {
      const h: unknown = conv.history[i];
      if (!Array.isArray(h) || h.length !== 2 || typeof h[0] !== 'string' || typeof h[1] !== 'string')
        invalid('a [query, response] pair of strings', `conversation.history[${i}]`, h);
    }
  }
  // Each count bounded, and the running total of tiles so that a long list stops as soon as the prompt would be too long.
  const maxTiles = Math.floor(INTERNVL_MAX_PROMPT_IMAGE_TOKENS / numImageToken);
  let tiles = 0;
  const counts = (v: unknown, field: string, max: number, what: string) => {
    if (v === undefined) return;
    if (!Array.isArray(v)) invalid(`an array of ${what}`, `conversation.${field}`, v);
    for (let i = 0; i < v.length; i++) {
      const n: unknown = v[i];
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) invalid(`an integer in [1, ${max}]`, `conversation.${field}[${i}]`, n);
      tiles += n;
      if (tiles > maxTiles) {
        invalid(
          `at most ${INTERNVL_MAX_PROMPT_IMAGE_TOKENS} image tokens in a prompt (${maxTiles} tiles of ${numImageToken} tokens)`,
          `conversation.imageTiles and conversation.videoFrames`,
          `more than ${maxTiles} tiles`,
        );
      }
    }
  };
  counts(conv.imageTiles, 'imageTiles', INTERNVL_MAX_TILES_PER_IMAGE, 'tile counts');
  counts(conv.videoFrames, 'videoFrames', INTERNVL_MAX_VIDEO_FRAMES, 'frame counts');
}
