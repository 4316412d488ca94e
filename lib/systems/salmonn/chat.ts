/** SALMONN's chat adapter: how `emotorch serve --cfg-path` answers a request with it. */
import { DecodeBatch } from '../../nn/llama';
import { ChatAdapter, ChatRequestError, chatDecoder, chatSampling } from '../../data/chat';
import type { Salmonn } from './model';

/**
 * SALMONN as a chat server answers with it: one user message with one audio clip and its
 * instruction (the original's cli_inference.py turn); a request's temperature asks for one
 * sequence (streamed), without one the YAML's beams decode.
 * @param model a loaded SALMONN (in eval mode)
 * @param id the name the server lists it under
 * @returns the adapter `createServer` takes
 * @example
 * const chat = et.systems.salmonn.salmonnChat((await et.systems.salmonn.Salmonn.fromPretrained(options)).eval(), 'salmonn-7b');
 */
export function salmonnChat(model: Salmonn, id: string): ChatAdapter {
  const eos = model.ids.eos;
  const batch = new DecodeBatch(model.llama_model);
  return {
    id,
    kind: 'salmonn',
    accepts: { audio: true, image: false },
    async answer(turns, g) {
      if (turns.length !== 1 || turns[0].role !== 'user')
        throw new ChatRequestError(
          `SALMONN answers one user message (an audio clip and its instruction); this request has ${turns.map((t) => t.role).join(', ')}`,
          'messages',
        );
      const [t] = turns;
      if (t.audio.length !== 1) throw new ChatRequestError(`SALMONN takes exactly one input_audio part; the message has ${t.audio.length}`, 'messages');
      if (!t.text.trim()) throw new ChatRequestError('the message has no text part (the instruction)', 'messages');
      let promptTokens = 0;
      const beams = model.config.num_beams;
      const s = chatSampling(g);
      const maxNewTokens = g.maxTokens ?? Math.min(model.config.max_new_tokens, g.limit); // the YAML's generate block
      const [tokens] = await model.generateTokens([t.audio[0]], t.text.trim(), {
        // a request's temperature asks for one sequence (0 greedy, above sampled), which streams; without one, the YAML's beams
        // its YAML's beams decode alone; one sequence joins the batch
        maxNewTokens,
        ...s,
        ...(g.temperature !== undefined ? { numBeams: 1 } : {}),
        signal: g.signal,
        ...(g.batched ? { batch } : {}),
        ...(beams === 1 || g.temperature !== undefined ? { onTokens: g.onTokens } : {}),
        onPromptLength: (n) => {
          promptTokens = n;
          g.onPrompt?.(n);
        },
      });
      return { tokens, promptTokens, finish: tokens.length >= maxNewTokens ? 'length' : 'stop' };
    },
    decode: chatDecoder(model.tokenizer, [eos]),
  };
}
