/**
 * USDM's chat adapter: how `emotorch serve --model <a USDM folder>` answers a request with it (the
 * Streamlit demo's turn: the user's speech → units → the three stages → the agent's text, and its
 * speech when the request asks for audio).
 */
import { ChatAdapter, ChatRequestError, chatDecoder, checkChatPrompt } from '../../data/chat';
import type { Tokenizer } from '../../data/tokenizer';
import type { UnitExtractor } from '../../audio/units';
import { noGrad, tensor } from '../../tensor';
import { invalid, checkOptionNames } from '../../errors';
import { Usdm, UsdmSpeaker } from './model';
import type { UsdmReference } from './model';
import { USDM_AUDIO } from './data';
import { VOICEBOX_MAX_STEPS } from '../../nn/voicebox';

/** What {@link usdmChat} needs besides the model. */
export interface UsdmChatOptions {
  /** The model's tokenizer. */
  tokenizer: Tokenizer;
  /** The user's speech → units (seamless's xlsr2_1b_v2 at layer 35 + kmeans_10k as the originals). */
  units: UnitExtractor;
  /** Speaks the answer when a request asks for audio; without it the adapter answers in text only. */
  speaker?: UsdmSpeaker;
  /** The voice of every spoken answer (the demo's reference upload); default: the Voicebox's own, unprompted. */
  reference?: UsdmReference;
  /** The Voicebox's flow steps (the demo's reverse_step, 15 there; default 50 as inference.py). */
  steps?: number;
  /** Classifier-free guidance (gradient_scale; default 1). */
  guidance?: number;
}

/**
 * USDM as a chat server answers with it: one user message of one `input_audio` part and no text
 * (the template hears speech only), its units read as the originals do (16 kHz by soxr HQ, the
 * channels averaged as librosa.to_mono), then the three stages of `Usdm.infer` with the request's
 * sampling (temperature 0 or none: greedy as inference.py); with `modalities: ['text', 'audio']`
 * and a speaker, the agent's units are spoken. A streamed answer comes in one piece at its end:
 * the original keeps the last line of stage two's text, which only the stage's end settles.
 * @param model a loaded USDM (in eval mode)
 * @param opts the tokenizer, the unit extractor, and optionally the speaker and its settings
 * @param id the name the server lists it under
 * @returns the adapter `createServer` takes
 * @example
 * const chat = et.systems.usdm.usdmChat(usdm.eval() as et.systems.usdm.Usdm, { tokenizer, units, speaker }, 'USDM-DailyTalk');
 */
export function usdmChat(model: Usdm, opts: UsdmChatOptions, id: string): ChatAdapter {
  if (!(model instanceof Usdm)) invalid('an et.systems.usdm.Usdm', 'model', model);
  checkOptionNames(opts, ['tokenizer', 'units', 'speaker', 'reference', 'steps', 'guidance'], 'usdmChat options');
  if (opts.speaker !== undefined && !(opts.speaker instanceof UsdmSpeaker)) invalid('an et.systems.usdm.UsdmSpeaker', 'opts.speaker', opts.speaker);
  if (opts.reference !== undefined && !opts.speaker) invalid('absent without opts.speaker', 'opts.reference', '(given)');
  // checked here, not at the first request that asks for speech
  const maxSteps = 2 * VOICEBOX_MAX_STEPS - 1;
  if (opts.steps !== undefined && (!Number.isInteger(opts.steps) || opts.steps < 1 || opts.steps > maxSteps))
    invalid(`an integer from 1 to ${maxSteps}`, 'opts.steps', opts.steps);
  if (opts.guidance !== undefined && !(Number.isFinite(opts.guidance) && opts.guidance >= 0 && opts.guidance <= 100))
    invalid('a number from 0 to 100', 'opts.guidance', opts.guidance);
  const { tokenizer, units, speaker } = opts;
  const I = model.tokenIds;
  const codec = { encode: (t: string) => tokenizer.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tokenizer.decode(x) };
  const decodeIds = chatDecoder(tokenizer, [I.correspond]);
  return {
    id,
    kind: 'usdm',
    accepts: { audio: true, image: false, text: false },
    prefixCacheStats: () => model.llm.prefixCacheStats(),
    speaks: !!speaker,
    audioRead: { channel: 'mix', resample: USDM_AUDIO.resample },
    async answer(turns, g) {
      if (turns.length !== 1 || turns[0].role !== 'user')
        throw new ChatRequestError(
          `USDM answers one user message (its speech; the template is single-turn); this request has ${turns.map((t) => t.role).join(', ')}`,
          'messages',
        );
      const [t] = turns;
      if (t.audio.length !== 1) throw new ChatRequestError(`USDM takes exactly one input_audio part; the message has ${t.audio.length}`, 'messages');
      if (t.text.trim()) throw new ChatRequestError("USDM hears speech only: its template has no place for the user's text parts", 'messages');
      if (g.audio && !speaker) throw new ChatRequestError('this server has no speaker for USDM (--voicebox, --vocoder): it answers in text only', 'modalities');
      const samples = t.audio[0];
      const [userUnits] = await noGrad(() => units.predict({ inputValues: tensor(samples).reshape([1, samples.length]) }));
      if (!userUnits.length) throw new ChatRequestError('the audio is too short for one unit (20 ms at 16 kHz)', 'messages');
      const agentIds: number[] = [];
      const sampled = g.temperature !== undefined && g.temperature > 0;
      const r = await noGrad(() =>
        model.infer(userUnits, codec, {
          maxNewTokens: g.maxTokens ?? g.limit,
          ...(sampled
            ? { temperature: g.temperature, ...(g.topP !== undefined ? { topP: g.topP } : {}), ...(g.seed !== undefined ? { seed: g.seed } : {}) }
            : {}),
          onPrompt: (n) => {
            checkChatPrompt(n, g);
            g.onPrompt?.(n);
          },
          // stage two's tokens are not streamed: the original keeps the last line of its text, which only its end settles
          onTokens: (stage, ids) => {
            if (stage === 'agent') agentIds.push(...ids);
          },
          signal: g.signal,
          ...(g.audio && speaker
            ? {
                speaker,
                speak: {
                  ...(opts.reference ? { reference: opts.reference } : {}),
                  ...(opts.steps !== undefined ? { steps: opts.steps } : {}),
                  ...(opts.guidance !== undefined ? { guidance: opts.guidance } : {}),
                  ...(g.seed !== undefined ? { seed: g.seed } : {}),
                },
              }
            : {}),
        }),
      );
      const n = r.generatedTokens;
      return {
        tokens: agentIds.filter((x) => x !== I.correspond),
        promptTokens: r.promptTokens,
        finish: r.truncated ? 'length' : 'stop',
        text: r.agentText,
        completionTokens: n.user + n.agent + n.units,
        ...(r.speech ? { speech: r.speech } : {}),
      };
    },
    decode: decodeIds,
  };
}
