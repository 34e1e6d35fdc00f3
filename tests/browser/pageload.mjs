// Benchmark: how long a page takes from navigation to "joined" and to
// "serving", in Debian's headless Chromium against a native bootstrap on
// loopback. Each run starts a fresh bootstrap and opens TABS tabs in one
// browser one after the other, each with a new identity, and keeps them open,
// so that later tabs meet the earlier ones in their first lookup. Prints the
// page's steps (ms after navigation) for every tab and their medians.
//
// Usage: node tests/browser/pageload.mjs [--runs R] [--tabs N]
//          [--transport websocket|webrtc-direct] [--profile release|debug]
//          [--www DIR] [--reload]
// Needs www/pkg (scripts/build-wasm.sh) and the native-node of that profile
// (cargo build --release -p native-node). --www serves another copy of the
// page, to compare two builds of it on one machine in turn (run-to-run
// noise on a shared machine is as large as most changes). --reload reloads
// each tab once it joined, and measures the reload too. BENCHMARKS.md has
// the figures.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, chromiumPath, nativeNodeBinary, root, startNode, stopNodes } from "./nodes.mjs";

// The page's steps, and when the module's download ended ("fetched").
const STEPS = ["script", "fetched", "wasm", "start", "connected", "serving", "joined"];

const USAGE = "usage: node tests/browser/pageload.mjs [--runs R] [--tabs N] [--transport websocket|webrtc-direct] [--profile release|debug] [--www DIR] [--reload]";

function usage(message) {
  console.error(`pageload: ${message}`);
  console.error(USAGE);
  process.exit(2);
}

function positive(name, text) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 20) usage(`--${name} must be a whole number from 1 to 20, not ${text}`);
  return value;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : Math.round((sorted[middle - 1] + sorted[middle]) / 2);
}

/** The page's steps once it joined and serves (after a navigation or a reload). */
async function joined(page, label) {
  // Waits inside the page, woken by the page's own changes: Playwright's
  // selector polling would take the tab's main thread while it joins.
  const outcome = await page.evaluate(() => new Promise((resolve) => {
    const body = document.body;
    const check = () => {
      if (body.dataset.state === "failed") resolve(`failed: ${document.querySelector("#state-line").textContent}`);
      else if (body.dataset.state === "joined" && body.dataset.serving === "true") resolve("ok");
    };
    new MutationObserver(check).observe(body, { attributes: true });
    setTimeout(() => resolve(`still ${body.dataset.state}, serving ${body.dataset.serving} after 30 s`), 30000);
    check();
  }));
  if (outcome !== "ok") throw new Error(`${label} did not join and serve: ${outcome}`);
  const steps = await page.evaluate(() => {
    const module = performance.getEntriesByType("resource").find((e) => e.name.endsWith("wasm_node_bg.wasm"));
    return { ...window.nsDht.timings.steps, fetched: module && Math.round(module.responseEnd) };
  });
  return steps;
}

async function main() {
  let options;
  try {
    ({ values: options } = parseArgs({
      options: {
        runs: { type: "string", default: "3" },
        tabs: { type: "string", default: "5" },
        transport: { type: "string", default: "websocket" },
        profile: { type: "string", default: "release" },
        www: { type: "string", default: join(root, "www") },
        reload: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    usage(error.message);
  }
  if (options.help) {
    console.log(USAGE);
    return;
  }
  const runs = positive("runs", options.runs);
  const tabs = positive("tabs", options.tabs);
  if (!["websocket", "webrtc-direct"].includes(options.transport)) usage(`unknown transport ${options.transport}`);
  if (!["release", "debug"].includes(options.profile)) usage(`unknown profile ${options.profile}`);
  const binary = nativeNodeBinary(options.profile);
  if (!existsSync(binary)) usage(`${binary} is missing: build native-node (${options.profile}) first`);
  const www = options.www;
  if (!existsSync(join(www, "pkg", "wasm_node.js"))) usage(`${www}/pkg is missing: run scripts/build-wasm.sh first`);

  const data = mkdtempSync(join(tmpdir(), "ns-dht-pageload-"));
  const browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
  const rows = [];
  try {
    for (let run = 0; run < runs; run += 1) {
      const bootstrap = startNode(binary, `bootstrap-${run}`, [
        "bootstrap", "--key-file", join(data, `bootstrap-${run}.key`), "--port", "0", "--http-port", "0",
        "--www", www, "--report-interval", "0",
      ]);
      const http = await bootstrap.waitFor("the HTTP server", (l) => l.type === "http");
      // Pages are opened once the bootstrap listens for them, as a user's would be.
      const marker = options.transport === "websocket" ? "/ws" : "/webrtc-direct";
      await bootstrap.waitFor("its listener", (l) => l.type === "listening" && l.address.includes(marker));
      const url = `${http.url}?ephemeral&transport=${options.transport}`;
      const contexts = [];
      for (let tab = 0; tab < tabs; tab += 1) {
        // A browser context of its own: nothing cached, as on a first visit.
        const context = await browser.newContext();
        contexts.push(context);
        const page = await context.newPage();
        await page.goto(url);
        rows.push({ run, tab, kind: "first", steps: await joined(page, `run ${run} tab ${tab}`) });
        if (options.reload) {
          // The page's files are revalidated (304), and the tab keeps the
          // module V8 compiled for it.
          await page.reload();
          rows.push({ run, tab, kind: "reload", steps: await joined(page, `run ${run} tab ${tab}, reloaded`) });
        }
      }
      // The next run starts with no tab open and no node but its bootstrap.
      for (const context of contexts) await context.close();
      stopNodes();
    }
  } finally {
    await browser.close();
    stopNodes();
    rmSync(data, { recursive: true, force: true });
  }

  console.log(`page load over ${options.transport}, ${options.profile} bootstrap, ms after navigation`);
  console.log(["run", "tab", "visit", ...STEPS].map((h) => h.padStart(10)).join(""));
  for (const { run, tab, kind, steps } of rows) {
    console.log([run, tab, kind, ...STEPS.map((s) => steps[s] ?? "-")].map((v) => String(v).padStart(10)).join(""));
  }
  const firstVisits = rows.filter((r) => r.kind === "first");
  const summaries = [
    ["median, all tabs", firstVisits],
    ["median, first tabs", firstVisits.filter((r) => r.tab === 0)],
    ["median, later tabs", firstVisits.filter((r) => r.tab > 0)],
  ];
  if (options.reload) summaries.push(["median, reloads", rows.filter((r) => r.kind === "reload")]);
  for (const [label, selected] of summaries) {
    if (selected.length === 0) continue;
    const medians = STEPS.map((s) => median(selected.map((r) => r.steps[s]).filter((v) => v !== undefined)));
    console.log(`${label.padEnd(30)}${medians.map((v) => (Number.isNaN(v) ? "-" : String(v)).padStart(10)).join("")}`);
  }
}

main().catch((error) => {
  console.error(`pageload: ${error.message}`);
  stopNodes();
  process.exit(1);
});
