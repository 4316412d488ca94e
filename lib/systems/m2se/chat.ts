/**
 * M2SE's chat adapters, as `swift deploy` serves its models and `emotorch serve --model` / `--ckpt_dir`
 * answers with them: InternVL2 (a conversation with images, in ms-swift's template) and a
 * LLaMA-family LLM (messages rendered by its chat template).
 */
import { Template } from '@huggingface/jinja';
import { Tensor, cat, noGrad, tensor } from '../../tensor';
import { DecodeBatch } from '../../nn/llama';
import type { LlamaForCausalLM } from '../../nn/llama';
import type { InternVL } from '../../nn/internvl';
import { INTERNVL_TEMPLATES, internvlEncode } from '../../data/internvl';
import type { Tokenizer } from '../../data/tokenizer';
import { ChatAdapter, ChatRequestError, checkChatPrompt, chatDecoder, chatSampling, cutAtStop } from '../../data/chat';
import { internvlTiles } from '../../vision/internvl';
import { internvlTemplateOf } from './internvl';

/**
 * A LLaMA-family LLM on text as a chat server answers with it: the messages rendered by its chat
 * template (add_generation_prompt), tokenized without special tokens.
 * @param llm the loaded LLM (in eval mode)
 * @param tokenizer its tokenizer
 * @param template its Jinja chat template (as `tokenizer.apply_chat_template` renders it)
 * @param id the name the server lists it under
 * @returns the adapter `createServer` takes
 * @example
 * const chat = et.systems.m2se.llmChat(llm.eval(), tokenizer, template, 'llama-3.1-8b-instruct');
 */
export function llmChat(llm: LlamaForCausalLM, tokenizer: Tokenizer, template: string, id: string): ChatAdapter {
  const tpl = new Template(template);
  const eosCfg = llm.config.eos_token_id as number | number[];
  const stops = [...new Set([...(Array.isArray(eosCfg) ? eosCfg : [eosCfg]), tokenizer.eosTokenId].filter((x): x is number => Number.isInteger(x)))];
  const batch = new DecodeBatch(llm);
  return {
    id,
    kind: 'llm',
    accepts: { audio: false, image: false },
    prefixCacheStats: () => llm.prefixCacheStats(),
    async answer(turns, g) {
      let prompt: string;
      try {
        prompt = tpl.render({
          messages: turns.map((t) => ({ role: t.role, content: t.text })),
          add_generation_prompt: true,
          bos_token: tokenizer.bosToken ?? '',
          eos_token: tokenizer.eosToken ?? '',
          pad_token: tokenizer.padToken ?? '',
          unk_token: tokenizer.unkToken ?? '',
        });
      } catch (e) {
        // the template's raise_exception('…') lands here too
        throw new ChatRequestError(`the chat template refuses these messages: ${(e as Error).message}`, 'messages');
      }
      const ids = await tokenizer.encode(prompt, { addSpecialTokens: false });
      if (!ids.length) throw new ChatRequestError('the messages render to an empty prompt', 'messages');
      checkChatPrompt(ids.length, g);
      g.onPrompt?.(ids.length);
      const maxNewTokens = g.maxTokens ?? Math.min(g.limit, llm.config.max_position_embeddings - ids.length);
      if (maxNewTokens < 1 || ids.length + maxNewTokens > llm.config.max_position_embeddings)
        throw new ChatRequestError(
          `the prompt (${ids.length} tokens) and max_tokens (${maxNewTokens}) pass the model's ${llm.config.max_position_embeddings} positions`,
          'max_tokens',
          'context_length_exceeded',
        );
      const inputIds = tensor([ids], { dtype: 'int64' });
      const { newTokens } = await noGrad(() =>
        llm.generate(
          { inputIds },
          { maxNewTokens, eosTokenId: stops, ...chatSampling(g), onTokens: g.onTokens, signal: g.signal, ...(g.batched ? { batch } : {}) },
        ),
      );
      const tokens = cutAtStop((newTokens.toArray() as number[][])[0].map(Number), stops);
      inputIds.dispose();
      newTokens.dispose();
      return { tokens, promptTokens: ids.length, finish: tokens.length >= maxNewTokens ? 'length' : 'stop' };
    },
    decode: chatDecoder(tokenizer, stops),
  };
}

/**
 * InternVL2 as a chat server answers with it: a conversation (system, history, images as dynamic
 * tiles) in ms-swift's template, as `swift infer` prompts it.
 * @param model the loaded InternVL2 (in eval mode)
 * @param tokenizer its tokenizer
 * @param id the name the server lists it under
 * @returns the adapter `createServer` takes (each image in at most 12 tiles, as InternVL2's preprocessing)
 * @example
 * const chat = et.systems.m2se.internvlChat(ivl.eval(), tokenizer, 'InternVL2-8B');
 */
export function internvlChat(model: InternVL, tokenizer: Tokenizer, id: string): ChatAdapter {
  const template = internvlTemplateOf(model);
  const sep = tokenizer.tokenToId(INTERNVL_TEMPLATES[template].sep);
  const stops = [...new Set([sep, tokenizer.eosTokenId].filter((x): x is number => x !== undefined))];
  const side = model.config.force_image_size ?? model.vision_model.config.image_size;
  const batch = new DecodeBatch(model.language_model);
  return {
    id,
    kind: 'internvl',
    accepts: { audio: false, image: true },
    async answer(turns, g) {
      const system = turns[0]?.role === 'system' ? turns[0].text : undefined;
      const rest = system === undefined ? turns : turns.slice(1);
      if (rest.some((t, i) => t.role !== (i % 2 ? 'assistant' : 'user')) || rest.length % 2 !== 1) {
        throw new ChatRequestError(
          `InternVL2 takes an optional system message, then user and assistant messages in turn, ending with a user message; this request has ${turns.map((t) => t.role).join(', ')}`,
          'messages',
        );
      }
      const tiles: Tensor[] = [];
      const imageTiles: number[] = [];
      for (const t of rest)
        for (const img of t.images) {
          const { pixelValues } = internvlTiles(img, { imageSize: side, maxNum: 12 });
          tiles.push(pixelValues);
          imageTiles.push(pixelValues.shape[0]);
        }
      const history = [];
      for (let i = 0; i + 1 < rest.length; i += 2) history.push([rest[i].text, rest[i + 1].text] as [string, string]);
      const enc = await internvlEncode(
        tokenizer,
        { system, history, query: rest[rest.length - 1].text, imageTiles },
        { template, numImageToken: model.numImageToken },
      );
      checkChatPrompt(enc.inputIds.length, g);
      g.onPrompt?.(enc.inputIds.length);
      const inputIds = tensor([enc.inputIds], { dtype: 'int64' });
      const pixelValues = tiles.length ? cat(tiles, 0) : null;
      const maxNewTokens = g.maxTokens ?? g.limit;
      const newTokens = await noGrad(() =>
        model.generate(
          { inputIds, pixelValues },
          { maxNewTokens, eosTokenId: stops, ...chatSampling(g), onTokens: g.onTokens, signal: g.signal, ...(g.batched ? { batch } : {}) },
        ),
      );
      const tokens = cutAtStop((newTokens.toArray() as number[][])[0].map(Number), stops);
      inputIds.dispose();
      newTokens.dispose();
      pixelValues?.dispose();
      for (const t of tiles) t.dispose();
      return { tokens, promptTokens: enc.inputIds.length, finish: tokens.length >= maxNewTokens ? 'length' : 'stop' };
    },
    decode: chatDecoder(tokenizer, stops),
  };
}
