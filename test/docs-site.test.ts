// The documentation site (`npm run docs` → docs/site/, issue 49): the guides of docs/ and the API
// reference in one TypeDoc build, every relative link inside it landing on a file of the site, the
// home page and a guide rendered by headless Chromium (screenshots to test/tmp/, named in the
// output; skipped, saying so, without Chromium). Built here when it is not there yet (CI builds it
// before the tests).
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import puppeteer from 'puppeteer-core';

const ROOT = path.join(__dirname, '..');
const SITE = path.join(ROOT, 'docs', 'site');
const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && fs.existsSync(p));
if (!CHROMIUM) console.warn('docs-site.test.ts: the Chromium cases skip, no Chromium found (apt-get install chromium, or set CHROMIUM_PATH)');

beforeAll(() => {
  if (fs.existsSync(path.join(SITE, 'index.html'))) return;
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc')], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`npm run docs failed: ${(r.stdout + r.stderr).trim().split('\n').slice(-5).join(' | ')}`);
}, 320_000);

const html = (dir: string): string[] =>
  fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? html(path.join(dir, e.name)) : e.name.endsWith('.html') ? [path.join(dir, e.name)] : []));

describe('the documentation site', () => {
  it('holds every guide of docs/ and the API reference, and every relative link lands on a file of the site', () => {
    const guides = fs
      .readdirSync(path.join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => f.replace(/\.md$/, ''));
    expect(guides.length).toBeGreaterThan(10);
    for (const g of guides) expect(fs.existsSync(path.join(SITE, 'documents', `${g}.html`)), g).toBe(true);
    expect(fs.existsSync(path.join(SITE, 'classes', 'index.systems.salmonn.Salmonn.html'))).toBe(true);
    const broken: string[] = [];
    for (const page of html(SITE)) {
      for (const m of fs.readFileSync(page, 'utf8').matchAll(/href="([^"#?]+)[^"]*"/g)) {
        const href = m[1];
        if (/^[a-z]+:/i.test(href) || href.startsWith('//')) continue; // another site
        if (!fs.existsSync(path.resolve(path.dirname(page), decodeURIComponent(href)))) broken.push(`${path.relative(SITE, page)} → ${href}`);
      }
    }
    expect(broken.slice(0, 20)).toEqual([]);
  });

  it.skipIf(!CHROMIUM)(
    'renders the home page and a guide in Chromium, with the guides in its navigation',
    async () => {
      const browser = await puppeteer.launch({ executablePath: CHROMIUM!, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
      try {
        const page = await browser.newPage();
        await page.setViewport({ width: 1200, height: 900 });
        const shots = path.join(ROOT, 'test', 'tmp');
        fs.mkdirSync(shots, { recursive: true });
        for (const [name, file, heading] of [
          ['docs-home', 'index.html', 'emotorch'],
          ['docs-salmonn', path.join('documents', 'salmonn.html'), 'SALMONN'],
        ]) {
          await page.goto(`file://${path.join(SITE, file)}`, { waitUntil: 'load' });
          const h1 = await page.$eval('h1', (e) => e.textContent ?? '');
          expect(h1, name).toContain(heading);
          const shot = path.join(shots, `${name}.png`);
          await page.screenshot({ path: shot });
          expect(fs.statSync(shot).size, name).toBeGreaterThan(10_000);
          console.log(`${name} screenshot: ${shot}`);
        }
        const links = await page.$$eval('a', (as) => as.map((a) => a.getAttribute('href') ?? ''));
        expect(links.some((h) => h.includes('documents/usdm.html') || h.endsWith('usdm.html'))).toBe(true);
      } finally {
        await browser.close();
      }
    },
    120_000,
  );
});
