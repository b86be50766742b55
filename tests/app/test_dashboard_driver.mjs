// Drives the dashboard of `market serve` in headless Chromium for tests/test_dashboard_browser.py.
//
//   node tests/test_dashboard_driver.mjs URL SCREENSHOT TIMEOUT_S
//
// Uses playwright-core (npm, pinned in package-lock.json) with Debian's /usr/bin/chromium: no browser
// download.  Prints one JSON line per change of what the page shows ({"event":"state", ...}); when a
// line "finish BLOCK" arrives on stdin it waits until the page has drawn block >= BLOCK, saves a
// full-page screenshot to SCREENSHOT and prints {"event":"done", ...}.  When the first round shows
// as settled it also saves SCREENSHOT with "-live" before ".png" (the page mid-run).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, screenshot, timeoutS = "120"] = process.argv.slice(2);
const deadline = Date.now() + Number(timeoutS) * 1000;
const emit = (obj) => process.stdout.write(JSON.stringify({ t: Date.now(), ...obj }) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let finishBlock = null;
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  const m = String(chunk).match(/finish (\d+)/);
  if (m) finishBlock = Number(m[1]);
});

const userDataDir = mkdtempSync(join(tmpdir(), "dashboard-chromium-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let code = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => emit({ event: "pageerror", text: String(e) }));
  page.on("console", (m) => { if (m.type() === "error") emit({ event: "console", text: m.text() }); });
  page.on("requestfailed", (r) => emit({ event: "requestfailed", url: r.url() }));
  await page.goto(url, { waitUntil: "load" });
  emit({ event: "ready" });

  const look = () => page.evaluate(() => {
    const q = (sel) => document.querySelectorAll(sel).length;
    const text = (sel) => (document.querySelector(sel) || {}).textContent || null;
    return {
      task: (document.getElementById("task-title") || { dataset: {} }).dataset.task || null,
      name: (text("#task-name") || "").trim() || null,
      rows: q("#rounds-table tbody tr[data-round]"),
      settled: q('#rounds-table tbody tr[data-settled="true"]'),
      points: q("#accuracy-chart circle.point"),
      bars: q("#contrib-chart rect.bar"),
      bar_rounds: new Set([...document.querySelectorAll("#contrib-chart rect.bar")].map((r) => r.dataset.round)).size,
      outlier_badges: q("#rounds-table .b-outlier"),
      accuracy: [...document.querySelectorAll("#rounds-table td.acc")].map((td) => td.textContent),
      credited: text("#card-credited .v"),
      withdrawn: text("#card-withdrawn .v"),
      live: (document.getElementById("live") || {}).className || "",
      block: Number(document.body.dataset.block || -1),
      loaded_at: window.dashboardLoadedAt,
    };
  });

  let last = "", shotLive = false;
  for (;;) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the finish line on stdin");
    const s = await look();
    const { block, ...shown } = s;
    const key = JSON.stringify(shown);
    if (key !== last) { emit({ event: "state", ...s }); last = key; }
    if (!shotLive && s.settled === 1) {  // the page mid-run, next to the final screenshot
      shotLive = true;
      await page.screenshot({ path: screenshot.replace(/\.png$/, "-live.png"), fullPage: true });
    }
    if (finishBlock !== null && s.block >= finishBlock) {
      await sleep(300);  // let the last redraw settle
      await page.screenshot({ path: screenshot, fullPage: true });
      emit({ event: "done", ...(await look()) });
      break;
    }
    await sleep(100);
  }
} catch (err) {
  emit({ event: "error", text: String(err && err.stack || err) });
  code = 1;
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(code);
