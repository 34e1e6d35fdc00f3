// The page: starts a DHT node in this tab (wasm-node) and shows what it does.
// Everything shown comes from the node; nothing here is simulated.
import init, { DhtNode } from "./pkg/wasm_node.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const MAX_EVENTS = 60;

// Milliseconds since navigation started, exposed for tests and benchmarks.
window.nsDht = { timings: {}, node: null };

function setState(state, detail = "") {
  document.body.dataset.state = state;
  $("state").textContent = state;
  $("state-detail").textContent = detail;
}

// Each joining step, and when it was first reached (ms after navigation
// started), so that the time to "joined" can be taken apart.
function step(name) {
  const item = document.querySelector(`[data-step="${name}"]`);
  if (item) item.classList.add("done");
  window.nsDht.timings.steps ??= {};
  window.nsDht.timings.steps[name] ??= Math.round(performance.now());
}

function short(peerId) {
  return peerId.length > 16 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId;
}

// Keys and values arrive as { text } when they are UTF-8, { base64 } otherwise.
function shown(data) {
  if (data.text !== undefined) return data.text;
  return `${atob(data.base64).length} bytes (not text)`;
}

// One field of an event, for the log: peer ids shortened, keys shown, errors by code.
function describe(value) {
  if (Array.isArray(value)) return `${value.length} addresses`;
  if (value && typeof value === "object") {
    if ("code" in value) return `${value.code} (${value.message})`;
    return shown(value);
  }
  if (typeof value === "string" && value.startsWith("12D3")) return short(value);
  return value;
}

// The local time as hh:mm:ss. Not toLocaleTimeString: its first call loads
// the browser's locale data, which took 20-40 ms of the main thread while
// the tab was joining (a CPU profile of the page load).
function clock() {
  const now = new Date();
  return [now.getHours(), now.getMinutes(), now.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

function logEvent(event) {
  const item = document.createElement("li");
  const { type, ...rest } = event;
  const detail = Object.entries(rest)
    .map(([k, v]) => `${k}=${describe(v)}`)
    .join(" ");
  item.innerHTML = "<time></time> <b></b> <span></span>";
  item.querySelector("time").textContent = clock();
  item.querySelector("b").textContent = type;
  item.querySelector("span").textContent = detail;
  const log = $("event-log");
  log.prepend(item);
  while (log.children.length > MAX_EVENTS) log.lastChild.remove();
}

let routingPeers = new Set();
let refreshQueued = false;

function onEvent(event) {
  logEvent(event);
  switch (event.type) {
    case "peer-connected":
      step("connected");
      break;
    case "routing-updated":
      routingPeers.add(event.peer);
      $("routing-count").textContent = routingPeers.size;
      step("routing");
      break;
    case "routing-removed":
      // A closed tab or an unreachable peer.
      routingPeers.delete(event.peer);
      $("routing-count").textContent = routingPeers.size;
      break;
    case "bootstrapped":
      step("joined");
      break;
    case "message-received":
      chatLine(short(event.from), shown(event.data));
      break;
    case "namespace-linked":
    case "namespace-link-lost":
      if (chat.namespace) refreshChat().catch((e) => console.warn("chat refresh failed", e));
      break;
    case "relay-reserved":
    case "relay-reservation-lost":
    case "serving-changed":
      showServing(event);
      break;
  }
  queueRefresh();
}

// Whether this tab answers DHT requests, and why (not).
function showServing(event) {
  const node = window.nsDht.node;
  const serving = node ? node.serving : event.type === "relay-reserved";
  const relays = node ? node.relays : [event.relay];
  document.body.dataset.serving = String(serving);
  if (serving) {
    step("serving");
    $("serving").textContent = `serving through relay ${relays.map((r) => `/p2p/${r}`).join(" and ")}: other nodes dial this tab through it, route lookups to it and store records here`;
  } else if (event?.type === "relay-reservation-lost") {
    // A relay that said no at once refused; any other loss ended a reservation.
    const refused = ["relay-full", "relay-refused", "relay-unsupported"].includes(event.reason.code);
    const what = refused ? "was refused" : "ended";
    $("serving").textContent = `client only: the reservation on ${short(event.relay)} ${what} (${event.reason.code}: ${event.reason.message}); trying again`;
  } else {
    $("serving").textContent = "client only: waiting for a relay reservation";
  }
}

function queueRefresh() {
  if (refreshQueued || !window.nsDht.node) return;
  refreshQueued = true;
  setTimeout(() => {
    refreshQueued = false;
    refresh().catch((e) => console.warn("refresh failed", e));
  }, 250);
}

function drawBuckets(table) {
  const svg = $("buckets");
  const buckets = table.buckets;
  const rowHeight = 22, labelWidth = 90, dot = 14, gap = 4;
  const widest = Math.max(1, ...buckets.map((b) => b.entries.length));
  const width = labelWidth + widest * (dot + gap) + 20;
  const height = Math.max(1, buckets.length) * rowHeight + 8;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  if (buckets.length === 0) {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", 4); text.setAttribute("y", 16);
    text.textContent = "empty";
    svg.append(text);
  }
  [...buckets].sort((a, b) => b.index - a.index).forEach((bucket, row) => {
    const y = row * rowHeight + 4;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4); label.setAttribute("y", y + dot - 2);
    label.textContent = `bucket ${bucket.index}`;
    svg.append(label);
    bucket.entries.forEach((entry, i) => {
      const circle = document.createElementNS(ns, "circle");
      circle.setAttribute("cx", labelWidth + i * (dot + gap) + dot / 2);
      circle.setAttribute("cy", y + dot / 2);
      circle.setAttribute("r", dot / 2 - 1);
      circle.setAttribute("class", entry.connected ? "peer connected" : "peer");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${entry.peerId}\n${entry.addresses.join("\n")}`;
      circle.append(title);
      svg.append(circle);
    });
  });
  const total = buckets.reduce((n, b) => n + b.entries.length, 0);
  $("routing-summary").textContent = `${total} peers in ${buckets.length} buckets`;
}

function drawRecords(records) {
  const body = $("records");
  body.replaceChildren();
  for (const record of records) {
    const row = body.insertRow();
    row.insertCell().textContent = shown(record.key);
    row.insertCell().textContent = shown(record.value);
    row.insertCell().textContent = record.owner ? short(record.owner) : "– (by content)";
    row.insertCell().textContent = record.seq ?? "–";
    row.insertCell().textContent = record.forOthers ? "others" : "this tab";
    row.insertCell().textContent = record.expiresInMs == null ? "never" : `${Math.round(record.expiresInMs / 3600000)} h`;
  }
  $("records-empty").hidden = records.length > 0;
  const forOthers = records.filter((r) => r.forOthers).length;
  $("records-summary").textContent = `${records.length} held, ${forOthers} for others`;
}

async function refresh() {
  const node = window.nsDht.node;
  const [table, records] = await Promise.all([node.routingTable(), node.records()]);
  drawBuckets(table);
  drawRecords(records);
  $("transport").textContent = node.transport ?? "disconnected";
  $("bootstrap-address").textContent = node.bootstrapAddress ?? "–";
}

// The chat: one namespace this tab registered in, linked to every member.
const chat = { namespace: null, members: [], linked: new Set() };

function chatLine(who, text) {
  const item = document.createElement("li");
  item.innerHTML = "<time></time> <b></b> <span></span>";
  item.querySelector("time").textContent = clock();
  item.querySelector("b").textContent = who;
  item.querySelector("span").textContent = text;
  $("chat-log").append(item);
}

// Discovers the namespace's members, links to those not linked yet, and
// shows each with its link state.
async function refreshChat() {
  const node = window.nsDht.node;
  const [members, links] = await Promise.all([node.discover(chat.namespace), node.links()]);
  chat.linked = new Set(links.filter((l) => l.namespace === chat.namespace).map((l) => l.peerId));
  for (const member of members) {
    if (!chat.linked.has(member.peerId)) {
      node.link(chat.namespace, member.peerId, member.addresses).catch((error) => {
        console.warn(`link to ${member.peerId} failed`, error.code, error.message);
      });
    }
  }
  const known = new Map(members.map((m) => [m.peerId, m]));
  for (const peerId of chat.linked) if (!known.has(peerId)) known.set(peerId, { peerId, addresses: [] });
  $("chat-members").replaceChildren(...[...known.values()].map((m) => {
    const item = document.createElement("li");
    const relayed = m.addresses.length > 0 && m.addresses.every((a) => a.includes("/p2p-circuit"));
    item.textContent = `${short(m.peerId)}: ${chat.linked.has(m.peerId) ? "linked" : "linking…"}${relayed ? " (through a relay)" : ""}`;
    item.dataset.linked = String(chat.linked.has(m.peerId));
    return item;
  }));
  $("chat-summary").textContent = `in "${chat.namespace}", ${chat.linked.size} linked`;
  document.body.dataset.chatLinked = String(chat.linked.size);
}

async function startChat(name) {
  await window.nsDht.node.register(name);
  chat.namespace = name;
  $("chat").hidden = false;
  await refreshChat();
  setInterval(() => refreshChat().catch((e) => console.warn("chat refresh failed", e)), 3000);
}

function showResult(element, ok, text) {
  element.textContent = text;
  element.className = ok ? "result ok" : "result error";
}

async function timed(action) {
  const started = performance.now();
  const value = await action();
  return [value, performance.now() - started];
}

function wireForms() {
  $("chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("chat-text").value;
    $("chat-text").value = "";
    chatLine("me", text);
    const results = await Promise.allSettled([...chat.linked].map((peerId) => window.nsDht.node.send(peerId, text)));
    const failed = results.filter((r) => r.status === "rejected");
    if (failed.length) chatLine("(not delivered)", failed.map((r) => `${r.reason.code}: ${r.reason.message}`).join("; "));
  });
  $("put-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("put-name").value, value = $("put-value").value;
    try {
      const [stored, ms] = await timed(() => window.nsDht.node.put(name, value));
      const key = shown(stored.key);
      const at = `${stored.stored} peer${stored.stored === 1 ? "" : "s"}`;
      showResult($("op-result"), true, `stored "${key}" (version ${stored.seq}) at ${at} in ${ms.toFixed(1)} ms (${stored.stats.requests} requests)`);
      $("get-key").value = key;
      queueRefresh();
    } catch (error) {
      showResult($("op-result"), false, `put failed (${error.code}): ${error.message}`);
    }
  });
  $("get-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("get-key").value;
    try {
      const [found, ms] = await timed(() => window.nsDht.node.get(key));
      window.nsDht.timings.firstGetMs ??= performance.now();
      const value = shown(found.value);
      const asked = found.stats.requests;
      const where = found.foundLocally ? "in this tab" : `after asking ${asked} peer${asked === 1 ? "" : "s"}`;
      const by = found.owner ? `signed by ${short(found.owner)}, version ${found.seq}` : "matching its hash";
      const forged = found.forgeries ? `; ${found.forgeries} forged cop${found.forgeries === 1 ? "y" : "ies"} discarded` : "";
      showResult($("op-result"), true, `"${key}" = "${value}", ${by}, found ${where} in ${ms.toFixed(1)} ms${forged}`);
    } catch (error) {
      showResult($("op-result"), false, `get failed (${error.code}): ${error.message}`);
    }
  });
  $("ns-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("ns-name").value;
    const action = e.submitter?.value ?? "discover";
    const list = $("ns-peers");
    try {
      if (action === "chat") {
        await startChat(name);
        showResult($("ns-result"), true, `chatting in "${name}"`);
      } else if (action === "register") {
        const [, ms] = await timed(() => window.nsDht.node.register(name));
        showResult($("ns-result"), true, `registered in "${name}" in ${ms.toFixed(1)} ms`);
      } else {
        const [peers, ms] = await timed(() => window.nsDht.node.discover(name));
        showResult($("ns-result"), true, `${peers.length} members of "${name}" found in ${ms.toFixed(1)} ms`);
        list.replaceChildren(...peers.map((p) => {
          const item = document.createElement("li");
          const relayed = p.addresses.length > 0 && p.addresses.every((a) => a.includes("/p2p-circuit"));
          item.textContent = `${p.peerId} ${p.addresses.length ? p.addresses.join(" ") : "(no address yet)"}${relayed ? " (reached through a relay)" : ""}`;
          return item;
        }));
      }
    } catch (error) {
      showResult($("ns-result"), false, `${action} failed (${error.code}): ${error.message}`);
    }
  });
}

async function main() {
  step("script");
  wireForms();
  setState("loading", "loading the node");
  try {
    // The bootstrap's addresses are fetched while the module compiles.
    const configured = fetch("/config.json").then((response) => {
      if (!response.ok) throw new Error(`/config.json answered ${response.status}`);
      return response.json();
    });
    await init();
    step("wasm");
    const config = await configured;
    step("config");
    setState("joining", `through ${short(config.peerId)}`);
    const options = { bootstrap: config.addresses, ephemeral: params.has("ephemeral") };
    if (params.get("transport")) options.transports = [params.get("transport")];
    step("start");
    const node = await DhtNode.start(options, onEvent);
    window.nsDht.node = node;
    window.nsDht.timings.joinedMs = performance.now();
    step("connected"); step("joined");
    $("peer-id").textContent = node.peerId;
    $("identity-kind").textContent = node.identityPersisted
      ? "kept in localStorage: a reload keeps this peer id"
      : "ephemeral: a reload makes a new peer id";
    $("joined-in").textContent = `${window.nsDht.timings.joinedMs.toFixed(0)} ms after the page started loading`;
    setState("joined", `over ${node.transport}`);
    showServing({ type: "joined" });
    await refresh();
    setInterval(queueRefresh, 5000);
  } catch (error) {
    console.error(error);
    setState("failed", error.message ?? String(error));
  }
}

main();
