// Browser check of the built papercode site (driven by tests/site/test_site.py).
//
// usage: node site/browser_check.mjs CONFIG.json
//   CONFIG: {"base": "http://127.0.0.1:PORT/", "pages": ["index.html", ...],
//            "screenshots": "/abs/dir", "executable": "/usr/bin/chromium"}
//
// Visits every page in headless Chromium, blocks (and records) every request that leaves the server's
// host, waits for MathJax, plotly and the widget manager, then probes them: math typeset, a plotly
// slider changes the drawn traces, widgets render and respond (a slider's readout follows a drag, an
// anywidget counter counts a click). Writes one screenshot per page and prints one JSON report on stdout.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const base = new URL(cfg.base);
const WAIT_MS = cfg.wait_ms ?? 10000;
const userDataDir = mkdtempSync(join(tmpdir(), "papercode-chromium-"));
const external = [];

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: cfg.executable,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1280, height: 900 },
  serviceWorkers: "block",
});

// Everything the pages ask for must come from the site's own server.
const isLocal = (u) => {
  const url = new URL(u);
  if (["data:", "blob:", "about:"].includes(url.protocol)) return true;
  return url.hostname === base.hostname && url.port === base.port;
};
await context.route("**/*", (route) => {
  const u = route.request().url();
  if (isLocal(u)) return route.continue();
  external.push(u);
  return route.abort("blockedbyclient");
});
await context.routeWebSocket(/.*/, (ws) => { external.push(ws.url()); ws.close(); });

// The drawn state of a plotly figure: the markup of its first SVG, which holds the data layers (a
// hidden trace is not drawn at all); the slider, titles and hover labels live in the later SVGs.
const plotSignature = (el) => el.querySelector("svg.main-svg")?.innerHTML ?? "";

async function waitFor(page, fn, arg) {
  try { await page.waitForFunction(fn, arg, { timeout: WAIT_MS }); return true; } catch { return false; }
}

async function checkMath(page) {
  await page.evaluate(async () => { if (window.MathJax?.startup?.promise) await window.MathJax.startup.promise; });
  return page.evaluate(() => {
    const els = [...document.querySelectorAll(".math")];
    const untypeset = els.filter((e) => !e.querySelector("mjx-container")).map((e) => e.textContent.trim().slice(0, 100));
    const root = document.querySelector("main") || document.body;
    const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .papercode-plotly, .widget-subarea";
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => (n.parentElement?.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
    });
    const raw = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const t = n.textContent;
      if (/\\\(|\\\[|\$\$|\$[^$\s][^$]*\$/.test(t)) raw.push(t.trim().slice(0, 120));
    }
    // TeX that MathJax could not parse (undefined macro, unbalanced braces) is drawn as an error box
    const tex_errors = [...document.querySelectorAll("mjx-merror")].map((e) => e.getAttribute("data-mjx-error") || e.textContent);
    return { elements: els.length, typeset: document.querySelectorAll("mjx-container").length, untypeset, raw, tex_errors };
  });
}

async function checkPlotly(page) {
  const n = await page.locator("div.papercode-plotly").count();
  if (n === 0) return [];
  await waitFor(page, (k) => document.querySelectorAll("div.papercode-plotly .main-svg").length >= k, n);
  const figs = [];
  for (let i = 0; i < n; i++) {
    const box = page.locator("div.papercode-plotly").nth(i);
    const fig = { index: i, rendered: (await box.locator(".main-svg").count()) > 0, sliders: [] };
    const rails = box.locator(".slider-container .slider-rail-touch-rect");
    const nr = await rails.count();
    for (let s = 0; s < nr; s++) {
      const rail = rails.nth(s);
      await rail.scrollIntoViewIfNeeded();
      const before = await box.evaluate(plotSignature);
      // the slider's current-value label ("t = 0.0") is the text directly under its group
      const label = () => box.locator(".slider-container").nth(s).evaluate(
        (c) => c.querySelector(".slider-group > text.slider-label")?.textContent ?? null);
      const labelBefore = await label();
      const bb = await rail.boundingBox();
      // click at the far end of the rail: plotly moves the slider to its last step
      await page.mouse.click(bb.x + bb.width * 0.97, bb.y + bb.height / 2);
      const changed = await waitFor(page, ([sig, i]) =>
        sig !== (document.querySelectorAll("div.papercode-plotly")[i].querySelector("svg.main-svg")?.innerHTML ?? ""),
        [before, i]);
      fig.sliders.push({ changed, label_before: labelBefore, label_after: await label() });
    }
    figs.push(fig);
  }
  return figs;
}

async function checkWidgets(page) {
  const views = await page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count();
  const res = { views, rendered: 0, sliders: [], counters: [] };
  if (views === 0) return res;
  await waitFor(page, (k) => [...document.querySelectorAll(".widget-subarea")].filter((e) => e.children.length).length >= k, views);
  res.rendered = await page.evaluate(() => [...document.querySelectorAll(".widget-subarea")].filter((e) => e.children.length).length);
  // sliders: drag the handle to the right; the readout must follow
  const sliders = page.locator(".widget-subarea .widget-slider:not(.widget-vslider)");
  const ns = Math.min(await sliders.count(), 3);
  for (let i = 0; i < ns; i++) {
    const sl = sliders.nth(i);
    const readout = sl.locator(".widget-readout");
    const handle = sl.locator(".noUi-handle").first();
    if ((await handle.count()) === 0 || (await sl.locator(".noUi-target[disabled]").count())) continue;
    await handle.scrollIntoViewIfNeeded();
    const before = (await readout.textContent())?.trim();
    const hb = await handle.boundingBox();
    const track = await sl.locator(".noUi-target").first().boundingBox();
    await page.mouse.move(hb.x + hb.width / 2, hb.y + hb.height / 2);
    await page.mouse.down();
    await page.mouse.move(track.x + track.width * 0.9, hb.y + hb.height / 2, { steps: 8 });
    await page.mouse.up();
    await page.waitForTimeout(100);
    const after = (await readout.textContent())?.trim();
    res.sliders.push({ before, after, changed: before !== after });
  }
  // the anywidget example of nbs/00_core/lab/40_site.ipynb: a button that counts its clicks
  const counters = page.locator("button.papercode-counter");
  for (let i = 0; i < (await counters.count()); i++) {
    const b = counters.nth(i);
    await b.scrollIntoViewIfNeeded();
    const before = (await b.textContent())?.trim();
    await b.click();
    await page.waitForTimeout(100);
    const after = (await b.textContent())?.trim();
    res.counters.push({ before, after, changed: before !== after });
  }
  return res;
}

const pages = [];
for (const path of cfg.pages) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const rec = { path, status: null, errors: [], console_errors: [], failed: [], bad_status: [], external: [] };
  const ext0 = external.length;
  page.on("pageerror", (e) => rec.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") rec.console_errors.push(m.text()); });
  page.on("requestfailed", (r) => { if (isLocal(r.url())) rec.failed.push(`${r.url()} (${r.failure()?.errorText})`); });
  page.on("response", (r) => { if (r.status() >= 400) rec.bad_status.push(`${r.status()} ${r.url()}`); });
  const t0 = Date.now();
  try {
    const resp = await page.goto(new URL(path, base).href, { waitUntil: "load", timeout: 30000 });
    rec.status = resp ? resp.status() : null;
    rec.math = await checkMath(page);
    rec.plotly = await checkPlotly(page);
    rec.widgets = await checkWidgets(page);
    const shot = join(cfg.screenshots, path.replace(/\.html$/, ".png").replaceAll("/", "__"));
    mkdirSync(dirname(shot), { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: shot, fullPage: cfg.full_page ?? false });
    rec.screenshot = shot;
  } catch (e) {
    rec.errors.push(`check failed: ${e.message.split("\n")[0]}`);
  }
  rec.external = external.slice(ext0);
  rec.seconds = (Date.now() - t0) / 1000;
  pages.push(rec);
  await page.close();
}
await context.close();
rmSync(userDataDir, { recursive: true, force: true });
process.stdout.write(JSON.stringify({ pages, external }, null, 1) + "\n");
