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
import { FIXTURES, salmonnDecodeYaml, spawnServer, tmpdir } from '../helpers';

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
