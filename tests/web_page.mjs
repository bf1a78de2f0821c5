// The web status page in headless Chromium (Debian's, driven by playwright-core; never downloads a browser).
// Called by tests/test_web_page.py:
//
//   node web_page.mjs --base http://127.0.0.1:PORT --job JOB_ID --out DIR \
//                     --chromium /usr/bin/chromium --playwright /path/to/node_modules/playwright-core
//
// Loads the overview, checks the job's row (state, summary thumbnail decoded by the browser),
// screenshots it, opens the job, presses Resend, screenshots the result and prints what it saw as JSON.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const args = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
for (const k of ['base', 'job', 'out', 'chromium', 'playwright']) {
  if (!args[k]) throw new Error(`missing --${k}`);
}
const { chromium } = createRequire(import.meta.url)(path.resolve(args.playwright));
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'marrowmap-web-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: args.chromium,
  headless: true,
  viewport: { width: 1400, height: 760 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = { errors: [] };
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  await page.goto(`${args.base}/`);
  const row = page.locator(`tr.job[data-job="${args.job}"]`);
  await row.waitFor({ timeout: 15000 });
  seen.row_state = await row.getAttribute('data-state');
  const thumb = row.locator('img.thumb');
  await thumb.waitFor({ timeout: 15000 });
  await page.waitForFunction((img) => img.complete, await thumb.elementHandle(), { timeout: 15000 });
  seen.thumb_natural = await thumb.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
  seen.health = await page.locator('.health').innerText();
  await page.screenshot({ path: path.join(args.out, 'web_status.png') });

  await row.locator('a', { hasText: 'details' }).click();
  await page.locator('#resend').waitFor({ timeout: 15000 });
  await Promise.all([page.waitForURL(/message=/, { timeout: 15000 }), page.locator('#resend').click()]);
  seen.after_resend_state = await page.locator('#state').innerText();
  seen.message = await page.locator('.message').innerText();
  seen.history = await page.locator('section').last().innerText();
  await page.screenshot({ path: path.join(args.out, 'web_job_resend.png'), fullPage: true });
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
console.log(JSON.stringify(seen));
