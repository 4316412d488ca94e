// `emotorch serve` on the speech and vision systems, with the official openai client:
// SALMONN from its decode_config.yaml taking an input_audio part (answers equal to
// Salmonn.generate on the decoded clip, streamed or not; one clip per request), and InternVL2
// taking image_url data URLs with a system message and history (answers equal to the library's
// own pipeline: internvlTiles → internvlEncode in ms-swift's template → InternVL.generate).
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import OpenAI from 'openai';
import * as et from '../../lib/index';
import { FIXTURES, salmonnDecodeYaml, spawnServer, tmpdir } from '../helpers';

const WAV = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');

describe('emotorch serve --cfg-path decode_config.yaml (SALMONN)', () => {
  it('answers an input_audio message as Salmonn.generate does, streamed (greedy) and not (its YAML beams)', async () => {
    const dir = tmpdir();
    const { file, config } = salmonnDecodeYaml(dir, { num_beams: 2, max_new_tokens: 6, min_length: 1 });
    const model = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'),
      config: config as never,
    });
    model.eval();
    const { samples } = await et.audio.readAudio(WAV, { sampleRate: 16000, channel: 0 });
    const [beams] = await model.generate([samples], 'Describe the sound.');
    const [greedy] = await model.generate([samples], 'Describe the sound.', { numBeams: 1, doSample: false, maxNewTokens: 10 });
    const server = await spawnServer(['--cfg-path', file, '--served-model-name', 'salmonn-tiny']);
    try {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const content: OpenAI.Chat.ChatCompletionContentPart[] = [
        { type: 'input_audio', input_audio: { data: fs.readFileSync(WAV).toString('base64'), format: 'wav' } },
        { type: 'text', text: 'Describe the sound.' },
      ];
      const r = await client.chat.completions.create({ model: 'salmonn-tiny', messages: [{ role: 'user', content }] });
      expect(r.choices[0].message.content).toBe(beams);
      expect(r.usage!.prompt_tokens).toBeGreaterThan(8);
      // temperature 0 asks for greedy decoding, which streams token by token
      const stream = await client.chat.completions.create({
        model: 'salmonn-tiny',
        messages: [{ role: 'user', content }],
        temperature: 0,
        max_tokens: 10,
        stream: true,
      });
      let text = '';
      for await (const ch of stream) text += ch.choices[0]?.delta.content ?? '';
      expect(text).toBe(greedy);
      // one clip and one user message
      await expect(client.chat.completions.create({ model: 'salmonn-tiny', messages: [{ role: 'user', content: 'no audio' }] })).rejects.toThrow(
        /exactly one input_audio/,
      );
      await expect(
        client.chat.completions.create({
          model: 'salmonn-tiny',
          messages: [
            { role: 'system', content: 's' },
            { role: 'user', content },
          ],
        }),
      ).rejects.toThrow(/one user message/);
      await expect(
        client.chat.completions.create({
          model: 'salmonn-tiny',
          messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }],
        }),
      ).rejects.toThrow(/does not take images/);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 300_000);
});

describe.skipIf(!et.audio.findFfmpeg())('emotorch serve --model <InternVL2 folder>', () => {
  it('answers image_url messages with a system message and history as the library pipeline does', async () => {
    const root = path.join(FIXTURES, 'm2se_internvl');
    const tok = await et.data.Tokenizer.fromFile(root);
    const model = (await et.systems.m2se.InternVL.fromPretrained(path.join(root, 'internlm2'), { imgContextTokenId: tok.tokenToId('<IMG_CONTEXT>') })).eval();
    const png = path.join(root, 'face.png');
    const { pixelValues } = et.vision.internvlTiles(await et.vision.readImage(png), {
      imageSize: model.config.force_image_size ?? model.vision_model.config.image_size,
      maxNum: 12,
    });
    const conv = {
      system: 'You judge what people feel.',
      history: [['Hello', 'Hi.']] as Array<[string, string]>,
      query: 'What emotion does the face show?',
      imageTiles: [pixelValues.shape[0]],
    };
    const enc = await et.systems.m2se.internvlEncode(tok, conv, { template: et.systems.m2se.internvlTemplateOf(model), numImageToken: model.numImageToken });
    const stops = [tok.tokenToId('<|im_end|>')!, tok.eosTokenId!];
    const out = await et.noGrad(() =>
      model.generate({ inputIds: et.tensor([enc.inputIds], { dtype: 'int64' }), pixelValues }, { maxNewTokens: 6, eosTokenId: stops }),
    );
    let ids = (out.toArray() as number[][])[0].map(Number);
    const e = ids.findIndex((t) => stops.includes(t));
    if (e >= 0) ids = ids.slice(0, e);
    const want = await tok.decode(ids, { skipSpecialTokens: true });

    const server = await spawnServer(['--model', path.join(root, 'internlm2'), '--tokenizer', root]);
    try {
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const url = `data:image/png;base64,${fs.readFileSync(png).toString('base64')}`;
      const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [
        { role: 'system', content: conv.system },
        { role: 'user', content: 'Hello' },
        { role: 'assistant', content: 'Hi.' },
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url } },
            { type: 'text', text: conv.query },
          ],
        },
      ];
      const r = await client.chat.completions.create({ model: 'internlm2', messages, max_tokens: 6, temperature: 0 });
      expect(r.choices[0].message.content).toBe(want);
      expect(r.usage!.prompt_tokens).toBe(enc.inputIds.length);
      await expect(client.chat.completions.create({ model: 'internlm2', messages: [{ role: 'assistant', content: 'x' }] })).rejects.toThrow(
        /ending with a user message/,
      );
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 300_000);
});
