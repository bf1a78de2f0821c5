// Drive OHIF v3 (served by Orthanc) in headless Chromium and screenshot MarrowMap's outputs.
// Called by run.sh; see README.md. Needs playwright-core (path given with --playwright) and a
// system Chromium (--chromium); never downloads a browser.
//
// node shoot.mjs --base URL --prefix /ohif --inventory inv.json --out DIR --report FILE \
//                --chromium /usr/bin/chromium --playwright /path/to/node_modules/playwright-core
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    args[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['base', 'prefix', 'inventory', 'out', 'report', 'chromium', 'playwright']) {
    if (!args[k]) throw new Error(`missing --${k}`);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const require = createRequire(import.meta.url);
const { chromium } = require(path.resolve(args.playwright));
const inv = JSON.parse(fs.readFileSync(args.inventory, 'utf8'));
const VIEWPORT = { width: 1600, height: 900 };
let srDrawn = false;
const report = { study_uid: inv.study_uid, shots: [], problems: [], notes: [], console_errors: [] };

const THUMB = '[data-cy="study-browser-thumbnail"], [data-cy="study-browser-thumbnail-no-image"]';

function problem(text) {
  report.problems.push(text);
  console.error(`shoot: PROBLEM ${text}`);
}

async function settle(page, ms = 1500) {
  await page.waitForLoadState('networkidle', { timeout: 20000 }).catch(() => {});
  await page.waitForTimeout(ms);
}

async function overlayText(page, corner) {
  const loc = page.locator(`[data-cy="viewport-overlay-${corner}"]`).first();
  return (await loc.count()) ? (await loc.innerText()).replace(/\s+/g, ' ').trim() : '';
}

/** SVG text drawn by cornerstone tools over the viewport (SR annotations, labels). */
async function annotationText(page) {
  return page.$$eval('[data-cy="viewport-pane"] svg text', els =>
    els.map(e => (e.textContent || '').trim()).filter(Boolean));
}

/** Text of everything drawn right of the viewport grid (the right side panel). */
async function rightPanelText(page) {
  return page.evaluate(() => {
    const grid = document.querySelector('[data-cy="viewport-grid"]');
    if (!grid) return '';
    const right = grid.getBoundingClientRect().right;
    const out = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const text = walker.currentNode.textContent.trim();
      const r = text && walker.currentNode.parentElement.getBoundingClientRect();
      if (text && r.width > 0 && r.height > 0 && r.left >= right - 1) out.push(text);
    }
    return out.join(' | ');
  });
}

/** Segment labels from the segmentation panel text ("... | 1 | Right femoral head | 2 | ..."). */
function segmentLabels(panelText) {
  const parts = panelText.split(' | ');
  const labels = [];
  for (let i = 0; i + 1 < parts.length; i++) {
    if (/^\d+$/.test(parts[i]) && !/^\d+$/.test(parts[i + 1])) labels.push(parts[i + 1]);
  }
  return labels;
}

async function waitForAnnotations(page, timeoutMs) {
  for (let waited = 0; waited < timeoutMs; waited += 500) {
    const labels = await annotationText(page);
    if (labels.length) return labels;
    await page.waitForTimeout(500);
  }
  return [];
}

async function openViewer(context) {
  const page = await context.newPage();
  page.on('console', m => {
    const text = m.text();
    if ((m.type() === 'error' && !/android-chrome|favicon|Failed to load resource/.test(text))
        || /Error Boundary/.test(text)) {
      report.console_errors.push(text.slice(0, 600));
    }
  });
  page.on('pageerror', e => report.console_errors.push(`pageerror: ${e.message.slice(0, 600)}`));
  // ServeFolders only serves files, so the app is loaded from index.html and routed client-side
  // to /viewer, exactly as a click on the study list does.
  await page.goto(`${args.base}${args.prefix}/index.html`);
  await page.waitForFunction(() => !!window.services, null, { timeout: 60000 });
  await page.evaluate(([prefix, uid]) => {
    window.history.pushState(null, '', `${prefix}/viewer?StudyInstanceUIDs=${uid}`);
    window.dispatchEvent(new PopStateEvent('popstate'));
  }, [args.prefix, inv.study_uid]);
  await page.locator(THUMB).first().waitFor({ timeout: 60000 });
  await settle(page, 2000);
  const skip = page.getByText('Skip all', { exact: true });
  if (await skip.count()) await skip.first().click();
  return page;
}

async function openSeries(page, series) {
  let thumb = page.locator(THUMB, { hasText: series.description });
  if (series.number !== null && (await thumb.count()) > 1) {
    thumb = thumb.filter({ hasText: `S:${series.number}` });
  }
  if (!(await thumb.count())) {
    throw new Error(`no thumbnail for series ${series.number} "${series.description}"`);
  }
  await thumb.first().dblclick();
  await settle(page, 2500);
}

/** Position "k/N" shown bottom-right of the viewport (1-based k), or null. */
async function imagePosition(page) {
  const m = (await overlayText(page, 'bottom-right')).match(/\((\d+)\/(\d+)\)/);
  return m ? { k: Number(m[1]), n: Number(m[2]) } : null;
}

async function goToImage(page, index0) {
  const pane = page.locator('[data-cy="viewport-pane"]').first();
  const box = await pane.boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < 200; i++) {
    const pos = await imagePosition(page);
    if (!pos || pos.k - 1 === index0) break;
    await page.mouse.wheel(0, pos.k - 1 < index0 ? 120 : -120);
    await page.waitForTimeout(150);
  }
  await settle(page, 1000);
}

async function shot(page, name, info) {
  const file = path.join(args.out, name);
  await page.screenshot({ path: file });
  report.shots.push({ file, ...info });
  console.error(`shoot: wrote ${file}`);
}

async function shootSc(context, series, name) {
  const page = await openViewer(context);
  try {
    await openSeries(page, series);
    if (series.instance_count > 1) await goToImage(page, series.best_index);
    const topLeft = await overlayText(page, 'top-left');
    const pos = await imagePosition(page);
    const shown = topLeft.includes(series.description);
    if (!shown) problem(`${name}: viewport does not show "${series.description}" (overlay: "${topLeft}")`);
    await shot(page, name, {
      what: 'secondary capture', series: series.description, shown, overlay_top_left: topLeft,
      image: pos, colour_pixels_in_image: series.best_colour_pixels,
    });
  } finally {
    await page.close();
  }
}

async function shootSeg(context, seg) {
  const page = await openViewer(context);
  try {
    await openSeries(page, seg);
    const yes = page.locator('[data-cy="yes-hydrate-btn"]');
    let hydrated = false;
    try {
      await yes.first().waitFor({ timeout: 20000 });
      await yes.first().click();
      hydrated = true;
    } catch {
      const load = page.getByRole('button', { name: 'LOAD', exact: true });
      if (await load.count()) {
        await load.first().click();
        hydrated = true;
      }
    }
    if (!hydrated) problem('ohif_seg_stir.png: no "open this Segmentation?" prompt nor LOAD button');
    await settle(page, 3000);
    const panel = page.locator('[data-cy="panelSegmentation-btn"]');
    if (!/Segmentations/.test(await rightPanelText(page)) && (await panel.count())) {
      await panel.first().click();
      await settle(page, 1500);
    }
    let segPanel = await rightPanelText(page);
    if (!/Segmentations/.test(segPanel)) problem('ohif_seg_stir.png: the segmentation panel does not list the SEG');
    // Clicking a segment row makes OHIF jump to the slice through that segment's centre:
    // prefer the oedema segment so the screenshot shows the finding, not an empty slice.
    const labels = segmentLabels(segPanel);
    const target = labels.find(l => /BME|oedema|edema/i.test(l)) || labels[0];
    if (target) {
      const row = page.getByText(target, { exact: true });
      if (await row.count()) {
        await row.first().click();
        await settle(page, 2000);
        await page.mouse.move(5, VIEWPORT.height - 5);
        segPanel = await rightPanelText(page);
      }
    }
    const topLeft = await overlayText(page, 'top-left');
    const source = inv.seg_source ? inv.seg_source.description : '';
    const onSource = !!source && topLeft.includes(source);
    if (!onSource) problem(`ohif_seg_stir.png: viewport does not show the SEG's source series "${source}" (overlay: "${topLeft}")`);
    await shot(page, 'ohif_seg_stir.png', {
      what: 'SEG over its source series', series: seg.description, source_series: source, hydrated, on_source: onSource,
      overlay_top_left: topLeft, image: await imagePosition(page), segments: labels, jumped_to_segment: target || null,
      segmentation_panel: segPanel.slice(0, 1500),
    });
  } finally {
    await page.close();
  }
}

/** The Parametric Map over its source series (OHIF's PMAP viewport), then the same slice with the map
 * switched off: the source series alone in that viewport, after "Reset" (OHIF 3.13.2 otherwise keeps
 * the map's colour map and window on the source series). */
async function shootPmap(context, pmap) {
  const page = await openViewer(context);
  try {
    await openSeries(page, pmap);
    await page.getByText('Loading Parametric Map', { exact: false }).first()
      .waitFor({ state: 'detached', timeout: 60000 }).catch(() => {});
    await settle(page, 3000);
    await goToImage(page, inv.pmap_best_index);
    await page.mouse.move(5, VIEWPORT.height - 5);
    const topLeft = await overlayText(page, 'top-left');
    const source = inv.seg_source ? inv.seg_source.description : '';
    const onSource = !!source && topLeft.includes(source);
    if (!onSource) problem(`ohif_pmap_stir.png: the map is not shown over "${source}" (overlay: "${topLeft}")`);
    await shot(page, 'ohif_pmap_stir.png', {
      what: 'Parametric Map over its source series (OHIF PMAP viewport)', series: pmap.description,
      on_source: onSource, overlay_top_left: topLeft, image: await imagePosition(page),
      window: await overlayText(page, 'bottom-left'),
    });
    if (inv.seg_source) {
      await openSeries(page, inv.seg_source);  // the same viewport without the map: switched off
      await page.locator('[data-cy="Reset-btn"]').first().click();
      await settle(page, 2000);
      await goToImage(page, inv.pmap_best_index);
      await page.mouse.move(5, VIEWPORT.height - 5);
      await shot(page, 'ohif_pmap_off.png', {
        what: 'the same slice with the map switched off (source series alone)', series: inv.seg_source.description,
        overlay_top_left: await overlayText(page, 'top-left'), image: await imagePosition(page),
      });
    }
  } finally {
    await page.close();
  }
}

/** The Key Object Selection series in the study browser, with the tooltip OHIF gives it. */
async function shootKos(context, kos) {
  const page = await openViewer(context);
  try {
    const thumb = page.locator(THUMB, { hasText: kos.description.slice(0, 20) });
    const listed = (await thumb.count()) > 0;
    if (!listed) problem(`ohif_kos.png: no "${kos.description}" entry in the study browser`);
    let tooltip = '';
    if (listed) {
      const warning = thumb.first().locator('svg').last();
      await warning.hover().catch(() => thumb.first().hover());
      await page.waitForTimeout(1000);
      const tip = page.locator('[role="tooltip"], [data-radix-popper-content-wrapper]');
      tooltip = (await tip.count()) ? (await tip.first().innerText()).replace(/\s+/g, ' ').trim() : '';
    }
    await shot(page, 'ohif_kos.png', {
      what: 'Key Object Selection in the study browser', series: kos.description, listed, tooltip,
    });
  } finally {
    await page.close();
  }
}

/** The SR viewport steps through its measurement groups with the arrows top right (fresh page:
 * on the first page the arrow would dismiss OHIF's "track measurements?" prompt). */
async function shootSrNext(context, sr, direction = 'right') {
  const page = await openViewer(context);
  try {
    await openSeries(page, sr);
    await waitForAnnotations(page, 15000);
    const next = page.locator(`[data-cy="viewport-action-arrows-${direction}"]`);
    if (!(await next.count())) return;
    await next.first().click();
    await settle(page, 2000);
    const right = direction === 'right';
    await shot(page, right ? 'ohif_sr_next.png' : 'ohif_sr_prev.png', {
      what: right ? 'SR viewport, next measurement group' : 'SR viewport, previous (wraps to the last) measurement group',
      series: sr.description,
      image: await imagePosition(page), annotation_text: await annotationText(page),
    });
  } finally {
    await page.close();
  }
}

async function shootSr(context, sr) {
  const page = await openViewer(context);
  try {
    await openSeries(page, sr);
    const labels = await waitForAnnotations(page, 15000);
    const info = {
      what: 'SR displayed on its source image (read-only SR viewport)', series: sr.description,
      overlay_top_left: await overlayText(page, 'top-left'), image: await imagePosition(page),
      annotation_text: labels,
    };
    const errors = report.console_errors.filter(e => /Error Boundary|pageerror/.test(e));
    if (errors.length) info.viewer_error = errors;
    await shot(page, 'ohif_sr.png', info);
    srDrawn = labels.length > 0;
    const badge = page.locator('[data-cy^="ModalityLoadBadge"]').first();
    let badgeTooltip = '';
    if (await badge.count()) {
      await badge.hover();
      await page.waitForTimeout(800);
      const tip = page.locator('[role="tooltip"], [data-radix-popper-content-wrapper]');
      badgeTooltip = (await tip.count()) ? (await tip.first().innerText()).split('\n')[0].trim() : '';
      await page.mouse.move(5, VIEWPORT.height - 5);
      await page.waitForTimeout(800);
    }
    info.badge_tooltip = badgeTooltip;
    if (!labels.length) {
      const why = info.viewer_error && info.viewer_error.length ? `; OHIF error: ${info.viewer_error[0].split('\n')[0]}` : '';
      problem(`ohif_sr.png: the SR viewport draws no measurement text (badge: "${badgeTooltip}")${why}`);
    }

    const yes = page.locator('[data-cy="yes-hydrate-btn"]');
    const offered = await yes.first().waitFor({ timeout: 8000 }).then(() => true, () => false);
    if (!offered) {
      // not a display problem: OHIF offers tracking only for SRs written by its own tools (see README)
      report.notes.push(`ohif_sr_tracked.png: not taken, OHIF offers no "track measurements" prompt for the SR (badge: "${badgeTooltip}")`);
      return;
    }
    await yes.first().click();
    await settle(page, 3000);
    const tracked = page.locator('[data-cy="trackedMeasurements-btn"]');
    if (await tracked.count()) {
      await tracked.first().click();
      await settle(page, 1500);
    }
    const panel = await rightPanelText(page);
    const m = panel.match(/Measurements \((\d+)\)/);
    const count = m ? Number(m[1]) : 0;
    if (!count) problem(`ohif_sr_tracked.png: measurement panel is empty after loading the SR ("${panel.slice(0, 200)}")`);
    await shot(page, 'ohif_sr_tracked.png', {
      what: 'SR loaded into the measurement panel', series: sr.description, measurement_count: count,
      measurement_panel: panel.slice(0, 1500), annotation_text: await annotationText(page),
    });
  } finally {
    await page.close();
  }
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'marrowmap-chromium-'));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: args.chromium,
  headless: true,
  viewport: VIEWPORT,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
try {
  const steps = [];
  if (inv.sc_overlays.length) steps.push(() => shootSc(context, inv.sc_overlays[0], 'ohif_sc_overlay.png'));
  else problem('no secondary-capture overlay series in the study');
  if (inv.sc_summary.length) steps.push(() => shootSc(context, inv.sc_summary[0], 'ohif_sc_summary.png'));
  if (inv.seg.length) steps.push(() => shootSeg(context, inv.seg[0]));
  else problem('no SEG series in the study');
  if (inv.pmap.length) steps.push(() => shootPmap(context, inv.pmap[0]));
  else problem('no Parametric Map series in the study');
  if (inv.kos.length) steps.push(() => shootKos(context, inv.kos[0]));
  else problem('no Key Object Selection series in the study');
  if (inv.sr.length) {
    steps.push(() => shootSr(context, inv.sr[0]));
    steps.push(() => (srDrawn ? shootSrNext(context, inv.sr[0]) : null));
    steps.push(() => (srDrawn ? shootSrNext(context, inv.sr[0], 'left') : null));
  }
  else problem('no SR series in the study');
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      problem(`step failed: ${err.message.split('\n')[0]}`);
    }
  }
} finally {
  await context.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
}
fs.writeFileSync(args.report, JSON.stringify(report, null, 1));
console.error(`shoot: report ${args.report}; ${report.problems.length} problem(s)`);
process.exit(report.problems.length ? 1 : 0);
