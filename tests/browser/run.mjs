// Browser tests against a real native-node network on 127.0.0.1.
//
// 1. Starts a native bootstrap (serving www/ over HTTP), a native listener,
//    and has a native client write a record.
// 2. Runs wasm-node's tests in headless Chromium (`wasm-pack test --headless
//    --chrome`), told where that network is through the environment.
// 3. Opens the page itself in Debian's Chromium (playwright-core, no browser
//    download), over WebSocket and over WebRTC-direct: waits until it shows it
//    joined, puts a record through its form and reads the native record
//    through it, checks from a native node that the page's record is there;
//    then opens two tabs of one browser on a second bootstrap that relays for
//    two: each gets its own peer id and serves through the relay, a native
//    lookup reaches one through it, a third tab is refused (relay-full), the
//    two chat through the relay both ways, one closes and leaves the routing
//    tables, and a reload keeps the peer id.
//    Screenshots go to tests/artifacts/.
//
// Usage: node tests/browser/run.mjs   (scripts/test.sh builds what it needs)
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import {
  CHROMIUM_ARGS, chromiumPath, nativeNodeBinary, nativeNodeEnv, root, startNode as startBinary, stopNodes,
} from "./nodes.mjs";

const nativeNode = nativeNodeBinary("debug");
const artifacts = join(root, "tests", "artifacts");
const run = `${process.pid}`;
// libp2p-webrtc-websys 0.5 lets the browser call a data channel's event
// handler after the stream it belongs to was dropped, which throws this from
// the callback (rust-libp2p issue #6551, fix pending in PR #6558). The node is
// unaffected; the test counts these and fails on any other page error.
const KNOWN_UPSTREAM_ERROR = "closure invoked recursively or after being dropped";
let knownUpstreamErrors = 0;

function fail(message) {
  console.error(`browser tests: ${message}`);
  stopNodes();
  process.exit(1);
}

/** Starts `native-node --json ARGS` (the debug build). */
function startNode(name, args) {
  return startBinary(nativeNode, name, args);
}

function nativeClient(args) {
  const result = spawnSync(nativeNode, ["client", ...args], {
    env: nativeNodeEnv(),
    encoding: "utf8",
    timeout: 60000,
  });
  return result;
}

async function main() {
  if (!existsSync(nativeNode)) fail(`${nativeNode} is missing: run cargo build -p native-node first`);
  if (!existsSync(join(root, "www", "pkg", "wasm_node.js"))) fail("www/pkg is missing: run scripts/build-wasm.sh first");
  const data = mkdtempSync(join(tmpdir(), "ns-dht-browser-"));
  mkdirSync(artifacts, { recursive: true });

  // 1. The native side.
  const bootstrap = startNode("bootstrap", [
    "bootstrap", "--key-file", join(data, "bootstrap.key"), "--port", "0", "--http-port", "0",
    "--www", join(root, "www"), "--report-interval", "0",
  ]);
  const started = await bootstrap.waitFor("start-up", (l) => l.type === "started");
  const http = await bootstrap.waitFor("the HTTP server", (l) => l.type === "http");
  const tcp = started.addresses.find((a) => a.includes("/tcp/") && !a.includes("/ws"));
  const browserAddresses = started.addresses.filter((a) => a.includes("/ws/") || a.includes("/webrtc-direct/"));
  if (browserAddresses.length < 2) fail(`the bootstrap offers no WebSocket and WebRTC addresses: ${started.addresses}`);

  const namespace = `browser-test-${run}`;
  const listener = startNode("listener", ["listener", "--namespace", namespace, "--bootstrap", tcp]);
  const listenerId = (await listener.waitFor("start-up", (l) => l.type === "started")).peerId;
  await listener.waitFor("its registration", (l) => l.type === "registered");

  const nativeValue = "written by a native node";
  const put = nativeClient(["--json", "--bootstrap", tcp, "put", `native-record-${run}`, nativeValue]);
  if (put.status !== 0) fail(`the native client could not write: ${put.stderr}`);
  // The signed record's key: /ns-dht/m/<the client's peer id>/native-record-<run>.
  const nativeKey = JSON.parse(put.stdout).stored.key.text;

  // 2. wasm-node's tests in headless Chromium.
  const wasmTests = spawnSync("wasm-pack", ["test", "--headless", "--chrome", join(root, "wasm-node")], {
    stdio: "inherit",
    env: {
      ...process.env,
      CHROMEDRIVER: process.env.CHROMEDRIVER ?? "/usr/bin/chromedriver",
      // The runner's default of 20 s is for the whole run, not per test.
      WASM_BINDGEN_TEST_TIMEOUT: process.env.WASM_BINDGEN_TEST_TIMEOUT ?? "180",
      NS_DHT_TEST_BOOTSTRAP: browserAddresses.join(","),
      NS_DHT_TEST_HTTP: http.url,
      NS_DHT_TEST_NATIVE_KEY: nativeKey,
      NS_DHT_TEST_NATIVE_VALUE: nativeValue,
      NS_DHT_TEST_NAMESPACE: namespace,
      NS_DHT_TEST_LISTENER: listenerId,
    },
  });
  if (wasmTests.status !== 0) fail(`wasm-pack test failed (status ${wasmTests.status})`);

  // 3. The page, end to end.
  const browser = await chromium.launch({ executablePath: chromiumPath, args: CHROMIUM_ARGS });
  try {
    for (const transport of ["websocket", "webrtc-direct"]) {
      const context = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
      const page = await context.newPage();
      const errors = [];
      page.on("pageerror", (e) => {
        if (e.message === KNOWN_UPSTREAM_ERROR && e.stack?.includes("RTCDataChannel")) knownUpstreamErrors += 1;
        else errors.push(e.message);
      });
      await page.goto(`${http.url}?ephemeral&transport=${transport}`);
      await page.waitForSelector('body[data-state="joined"]', { timeout: 30000 }).catch(async () => {
        fail(`the page did not join over ${transport}: ${await page.textContent("#state-line")}`);
      });
      const shown = await page.textContent("#transport");
      if (shown !== transport) fail(`the page says it joined over ${shown}, not ${transport}`);

      await page.fill("#get-key", nativeKey);
      await page.click("#get-form button");
      await page.waitForFunction(() => document.querySelector("#op-result").textContent.startsWith('"/ns-dht/m/'));
      const got = await page.textContent("#op-result");
      if (!got.includes(nativeValue) || !got.includes("signed by")) fail(`the page read ${got}`);

      const name = `page-record-${transport}-${run}`;
      const value = `put through the page over ${transport}`;
      const peerId = await page.textContent("#peer-id");
      const key = `/ns-dht/m/${peerId}/${name}`;
      await page.fill("#put-name", name);
      await page.fill("#put-value", value);
      await page.click("#put-form button");
      await page.waitForFunction(
        () => /^(stored|put failed)/.test(document.querySelector("#op-result").textContent),
        null,
        { timeout: 30000 },
      );
      const stored = await page.textContent("#op-result");
      if (!stored.includes(`stored "${key}"`)) fail(`unexpected put result: ${stored}`);
      await page.waitForFunction((k) => [...document.querySelectorAll("#records td")].some((td) => td.textContent === k), key);

      const timings = await page.evaluate(() => window.nsDht.timings);
      console.log(`page over ${transport}: joined ${timings.joinedMs.toFixed(0)} ms after navigation, first get answered ${timings.firstGetMs.toFixed(0)} ms after navigation`);
      console.log(`  steps (ms after navigation): ${JSON.stringify(timings.steps)}`);
      await page.screenshot({ path: join(artifacts, `page-${transport}.png`), fullPage: true });

      const check = nativeClient(["--bootstrap", tcp, "get", key]);
      if (check.status !== 0 || check.stdout !== value) fail(`a native node reads ${JSON.stringify(check.stdout)} for ${key}: ${check.stderr}`);
      if (errors.length) fail(`the page threw: ${errors.join("; ")}`);
      await context.close();
    }

    // Two tabs of one browser are two nodes: each takes its own identity
    // slot (a Web Lock) and serves through the bootstrap relay; a reload
    // keeps the peer id.
    // A bootstrap of their own: tabs joining the first one after the tests
    // above once timed out their first lookup, likely because circuits
    // beyond the relay's 10 at once to one tab hung for 60 s then
    // (BENCHMARKS.md).
    // It relays for two tabs only, so that a third is refused.
    const second = startNode("bootstrap-2", [
      "bootstrap", "--key-file", join(data, "bootstrap-2.key"), "--port", "0", "--http-port", "0",
      "--www", join(root, "www"), "--report-interval", "0", "--relay-max-reservations", "2",
    ]);
    const secondStarted = await second.waitFor("start-up", (l) => l.type === "started");
    const secondTcp = secondStarted.addresses.find((a) => a.includes("/tcp/") && !a.includes("/ws"));
    const secondHttp = await second.waitFor("the HTTP server", (l) => l.type === "http");
    const context = await browser.newContext({ viewport: { width: 1200, height: 1000 } });
    const errors = [];
    const tabs = [];
    for (let i = 0; i < 2; i += 1) {
      const page = await context.newPage();
      page.on("pageerror", (e) => {
        if (e.message === KNOWN_UPSTREAM_ERROR && e.stack?.includes("RTCDataChannel")) knownUpstreamErrors += 1;
        else errors.push(e.message);
      });
      // The default transports: a serving tab reaches its relay over
      // WebSocket (over WebRTC-direct the relay may never identify it).
      await page.goto(secondHttp.url);
      await page.waitForSelector('body[data-state="joined"]', { timeout: 30000 }).catch(async () => {
        fail(`tab ${i} did not join: ${await page.textContent("#state-line")}`);
      });
      await page.waitForSelector('body[data-serving="true"]', { timeout: 30000 }).catch(async () => {
        fail(`tab ${i} does not serve: ${await page.textContent("#serving")}`);
      });
      tabs.push({ page, peerId: await page.textContent("#peer-id") });
    }
    if (tabs[0].peerId === tabs[1].peerId) fail(`two tabs share the peer id ${tabs[0].peerId}`);
    for (const [i, tab] of tabs.entries()) {
      const serving = await tab.page.textContent("#serving");
      if (!serving.startsWith(`serving through relay /p2p/${secondStarted.peerId}`)) fail(`tab ${i} says: ${serving}`);
      const steps = await tab.page.evaluate(() => window.nsDht.timings.steps);
      console.log(`tab ${i}: joined ${steps.joined} ms, serving ${steps.serving} ms after navigation`);
      await tab.page.screenshot({ path: join(artifacts, `tab-${i}-serving.png`), fullPage: true });
    }
    // A native lookup of a tab's id asks the tab itself, through the relay:
    // only peers that answered are in its result.
    const lookup = nativeClient(["--json", "--bootstrap", secondTcp, "closest", "--peer", tabs[1].peerId]);
    const answered = lookup.status === 0 ? JSON.parse(lookup.stdout).peers : [];
    const tabEntry = answered.find((p) => p.peerId === tabs[1].peerId);
    if (!tabEntry) fail(`a native lookup does not reach tab 1 (status ${lookup.status}): ${lookup.stdout} ${lookup.stderr}`);
    if (!tabEntry.addresses.every((a) => a.includes("/p2p-circuit"))) fail(`tab 1 is known at non-circuit addresses: ${tabEntry.addresses}`);

    // The relay holds two reservations: a third tab joins but stays a
    // client, and says why.
    const third = await context.newPage();
    await third.goto(secondHttp.url);
    await third.waitForSelector('body[data-state="joined"]', { timeout: 30000 }).catch(async () => {
      fail(`the third tab did not join: ${await third.textContent("#state-line")}`);
    });
    await third.waitForFunction(() => document.querySelector("#serving").textContent.includes("relay-full"), null, { timeout: 30000 })
      .catch(async () => fail(`the third tab does not say the relay is full: ${await third.textContent("#serving")}`));
    if (await third.getAttribute("body", "data-serving") === "true") fail("the third tab serves although the relay is full");
    await third.screenshot({ path: join(artifacts, "tab-2-relay-full.png"), fullPage: true });
    await third.close();

    // The two tabs chat: each links to the other through the relay, and a
    // message typed in one appears in the other.
    const room = `room-${run}`;
    for (const tab of tabs) {
      await tab.page.fill("#ns-name", room);
      await tab.page.click('#ns-form button[value="chat"]');
    }
    for (const [i, tab] of tabs.entries()) {
      await tab.page.waitForSelector('body[data-chat-linked="1"]', { timeout: 30000 }).catch(async () => {
        fail(`tab ${i} did not link to the other: ${await tab.page.textContent("#chat-members")}`);
      });
    }
    for (const [from, to] of [[0, 1], [1, 0]]) {
      const text = `hello from tab ${from}`;
      await tabs[from].page.fill("#chat-text", text);
      await tabs[from].page.click("#chat-form button");
      await tabs[to].page.waitForFunction(
        (t) => [...document.querySelectorAll("#chat-log li span")].some((s) => s.textContent === t),
        text,
        { timeout: 15000 },
      ).catch(async () => fail(`tab ${to} did not get "${text}": ${await tabs[to].page.textContent("#chat-log")}`));
    }
    for (const [i, tab] of tabs.entries()) {
      await tab.page.screenshot({ path: join(artifacts, `tab-${i}-chat.png`), fullPage: true });
    }

    // A closed tab leaves the routing tables: its relay's at once, the other
    // tab's (whose link to it broke) once the relay answers "no
    // reservation" to its check.
    const closedId = tabs[1].peerId;
    const routesTo = (peer) => tabs[0].page.evaluate(async (peer) => {
      const table = await window.nsDht.node.routingTable();
      return table.buckets.some((b) => b.entries.some((e) => e.peerId === peer));
    }, peer);
    const before = Date.now();
    while (!(await routesTo(closedId))) {
      if (Date.now() - before > 10000) fail("tab 0 never had tab 1 in its routing table");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await tabs[1].page.close();
    await second.waitFor("the relay drops the closed tab", (l) =>
      l.type === "routing-removed" && l.peer === closedId && l.reason.code === "reservation-ended");
    const closedAt = Date.now();
    while (await routesTo(closedId)) {
      if (Date.now() - closedAt > 20000) fail(`tab 0 still routes to the closed tab after 20 s`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    console.log(`tab 0 dropped the closed tab ${Date.now() - closedAt} ms after its relay did`);

    await tabs[0].page.reload();
    await tabs[0].page.waitForSelector('body[data-state="joined"]', { timeout: 30000 });
    const reloaded = await tabs[0].page.textContent("#peer-id");
    if (reloaded !== tabs[0].peerId) fail(`a reload changed the peer id: ${tabs[0].peerId} then ${reloaded}`);
    if (errors.length) fail(`the page threw: ${errors.join("; ")}`);
    await context.close();
  } finally {
    await browser.close();
  }
  console.log(`browser tests passed; screenshots in ${artifacts}`);
  if (knownUpstreamErrors) console.log(`(${knownUpstreamErrors} known libp2p-webrtc-websys callback errors, rust-libp2p#6551)`);
  stopNodes();
  rmSync(data, { recursive: true, force: true });
}

main().catch((error) => fail(error.stack ?? String(error)));
