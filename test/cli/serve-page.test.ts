// The page `emotorch serve` shows at `/`, driven in headless Chromium (Debian's `chromium`, with
// puppeteer-core): a wav uploaded, a prompt typed, the answer streamed into the page equal to
// Salmonn.generate's; and the pictures the library draws (a confusion matrix, an emotional
// trajectory) rendered by the browser. Screenshots go to test/tmp/ and are named in the output.
// Skips, saying so, where no Chromium is installed.
import { describe, it, expect } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import puppeteer from 'puppeteer-core';
import * as et from '../../lib/index';
import { confusionMatrixSvg } from '../../lib/train/plots';
import { FIXTURES, salmonnDecodeYaml, spawnServer, tmpdir, usdmToyTokenizer } from '../helpers';
import { createServer } from '../../lib/cli/serve';

const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && fs.existsSync(p));
if (!CHROMIUM) console.warn('serve-page.test.ts: skipped, no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)');
const SHOTS = path.join(__dirname, '..', 'tmp');
const WAV = path.join(FIXTURES, 'wav', 'pcm16_mono_16k.wav');

const launch = () => puppeteer.launch({ executablePath: CHROMIUM!, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });

describe.skipIf(!CHROMIUM)('the serve page in Chromium', () => {
  it('uploads a wav, sends a prompt and shows the streamed answer', async () => {
    const { file, config } = salmonnDecodeYaml(tmpdir(), { num_beams: 1, max_new_tokens: 8, min_length: 1 });
    const model = await et.systems.salmonn.Salmonn.fromPretrained({
      whisper: path.join(FIXTURES, 'whisper'),
      beats: path.join(FIXTURES, 'beats', 'beats.pt'),
      llm: path.join(FIXTURES, 'salmonn', 'llm'),
      checkpoint: path.join(FIXTURES, 'salmonn', 'salmonn_v1.pth'),
      config: config as never,
    });
    model.eval();
    const { samples } = await et.audio.readAudio(WAV, { sampleRate: 16000, channel: 0 });
    const [want] = await model.generate([samples], 'What emotion does the speaker show?');
    const server = await spawnServer(['--cfg-path', file, '--served-model-name', 'salmonn-tiny']);
    const browser = await launch();
    try {
      const page = await browser.newPage();
      await page.setViewport({ width: 900, height: 700 });
      await page.goto(server.url, { waitUntil: 'networkidle0' });
      await page.waitForFunction(() => document.getElementById('model')!.textContent!.includes('salmonn-tiny'));
      expect(await page.$eval('#audio-box', (e) => (e as HTMLElement).hidden)).toBe(false);
      expect(await page.$eval('#image-box', (e) => (e as HTMLElement).hidden)).toBe(true);
      const input = await page.$('#audio');
      await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(WAV);
      await page.type('#prompt', 'What emotion does the speaker show?');
      await page.click('#send');
      await page.waitForFunction(() => /^(done|error)/.test(document.getElementById('status')!.textContent ?? ''), { timeout: 120_000 });
      expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/^done \((stop|length)/);
      expect(await page.$eval('#answer', (e) => e.textContent)).toBe(want);
      fs.mkdirSync(SHOTS, { recursive: true });
      const shot = path.join(SHOTS, 'serve-page.png');
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`serve page screenshot: ${shot}`);
      // a request the server refuses shows its message
      await page.$eval('#prompt', (e) => {
        (e as HTMLTextAreaElement).value = '';
      });
      await page.evaluate(() => {
        (document.getElementById('audio') as HTMLInputElement).value = '';
      });
      await page.click('#send');
      await page.waitForFunction(() => /^error/.test(document.getElementById('status')!.textContent ?? ''));
      expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/exactly one input_audio/);
    } finally {
      await browser.close();
      expect(await server.stop()).toBe(0);
    }
  }, 300_000);

  it('USDM: no prompt to type; the spoken answer is asked for, its transcript shown and its WAV played', async () => {
    const dir = path.join(tmpdir(), 'usdm');
    fs.mkdirSync(dir);
    for (const f of fs.readdirSync(path.join(FIXTURES, 'usdm', 'mistral'))) fs.copyFileSync(path.join(FIXTURES, 'usdm', 'mistral', f), path.join(dir, f));
    usdmToyTokenizer(path.join(dir, 'tokenizer.json'));
    const tokenizer = await et.data.Tokenizer.fromFile(dir);
    const ids = { newline: 13, space: 28, continue: 100, correspond: 101, unit0: 102, numUnits: 57, pad: 159, bos: 1 };
    const usdm = (await et.systems.usdm.Usdm.fromPretrained(dir, { tokenIds: ids })).eval() as et.systems.usdm.Usdm;
    const units = new et.audio.UnitExtractor({
      encoder: (await et.nn.Wav2Vec2Model.fromPretrained(path.join(FIXTURES, 'wav2vec2', 'xlsr'))).eval(),
      layer: 2,
      centroids: path.join(FIXTURES, 'wav2vec2', 'centroids.npy'),
    });
    const vb = path.join(FIXTURES, 'usdm_voicebox');
    const speaker = await et.systems.usdm.UsdmSpeaker.fromPretrained(path.join(vb, 'voicebox'), path.join(vb, 'bigvgan'));
    const { samples } = await et.audio.readAudio(WAV, et.systems.usdm.USDM_AUDIO);
    const [u] = await et.noGrad(() => units.predict({ inputValues: et.tensor(samples).reshape([1, samples.length]) }));
    const codec = { encode: (t: string) => tokenizer.encode(t, { addSpecialTokens: false }), decode: (x: number[]) => tokenizer.decode(x) };
    const want = await et.noGrad(() => usdm.infer(u, codec, { maxNewTokens: 12, speaker, speak: { steps: 3 } }));
    const app = createServer(et.systems.usdm.usdmChat(usdm, { tokenizer, units, speaker, steps: 3 }, 'usdm-tiny'), { maxTokens: 12 });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    const browser = await launch();
    try {
      const page = await browser.newPage();
      await page.goto(url, { waitUntil: 'networkidle0' });
      await page.waitForFunction(() => document.getElementById('model')!.textContent!.includes('usdm-tiny'));
      expect(await page.$eval('#prompt', (e) => (e as HTMLElement).hidden)).toBe(true);
      const input = await page.$('#audio');
      await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(WAV);
      await page.click('#send');
      await page.waitForFunction(() => /^(done|error)/.test(document.getElementById('status')!.textContent ?? ''), { timeout: 120_000 });
      expect(await page.$eval('#status', (e) => e.textContent)).toMatch(/^done \((stop|length)/);
      expect(await page.$eval('#answer', (e) => e.textContent)).toBe(want.agentText);
      // the player holds the answer's WAV: its duration is the answer's
      await page.waitForFunction(() => Number.isFinite((document.getElementById('spoken') as HTMLAudioElement).duration), { timeout: 30_000 });
      const shown = await page.$eval('#spoken', (e) => ({ hidden: (e as HTMLElement).hidden, duration: (e as HTMLAudioElement).duration }));
      expect(shown.hidden).toBe(false);
      expect(shown.duration).toBeCloseTo(want.speech!.samples.length / 22050, 2);
    } finally {
      await browser.close();
      await app.close();
    }
  }, 300_000);

  it('renders the confusion-matrix and emotional-trajectory SVGs', async () => {
    const names = ['neutral', 'joy', 'anger'];
    const svgs = {
      confusion: confusionMatrixSvg(
        [
          [5, 1, 0],
          [2, 7, 1],
          [0, 1, 4],
        ],
        names,
        'confusion matrix (eval, step 10)',
      ),
      trajectory: et.systems.salmonn.salmonnTrajectorySvg('情绪序列: neutral -> joy -> joy -> anger'),
    };
    const browser = await launch();
    try {
      const page = await browser.newPage();
      for (const [name, svg] of Object.entries(svgs)) {
        await page.setContent(`<!doctype html><body style="margin:0">${svg}</body>`);
        const box = await page.$eval('svg', (e) => {
          const r = e.getBoundingClientRect();
          return { w: r.width, h: r.height, text: e.textContent };
        });
        expect(box.w).toBeGreaterThan(100);
        expect(box.h).toBeGreaterThan(100);
        for (const n of ['joy', 'anger']) expect(box.text).toContain(n);
        if (name === 'confusion') expect(box.text).toContain('7');
        const shot = path.join(SHOTS, `${name}.png`);
        fs.mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: shot });
        console.log(`${name} screenshot: ${shot}`);
      }
    } finally {
      await browser.close();
    }
  }, 120_000);
});
