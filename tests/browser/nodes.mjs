// What the browser tests and the page-load benchmark share: where things
// are, how Chromium is started, and native-node processes to talk to.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Debian's Chromium as root, kept off the network it cannot reach anyway.
export const CHROMIUM_ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
  "--disable-component-update", "--no-first-run", "--disable-sync",
];

/** The native-node binary of a cargo profile ("debug" or "release"). */
export function nativeNodeBinary(profile) {
  return join(targetDir, profile, "native-node");
}

const children = [];
// The nodes are told everything they know on their command line.
const nodeEnv = { ...process.env, RUST_LOG: "info" };
delete nodeEnv.DHT_BOOTSTRAP;

/** The environment native-node processes run in. */
export function nativeNodeEnv() {
  return nodeEnv;
}

/** Kills every node started with `startNode`. */
export function stopNodes() {
  for (const child of children) child.kill("SIGKILL");
}
process.on("SIGINT", () => { stopNodes(); process.exit(130); });

/** Starts `BINARY --json ARGS`; resolves lines as they come. */
export function startNode(binary, name, args) {
  const child = spawn(binary, ["--json", ...args], {
    env: nodeEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const lines = [];
  const waiters = [];
  let log = "";
  child.stderr.on("data", (chunk) => { log = (log + chunk).slice(-20000); });
  createInterface({ input: child.stdout }).on("line", (line) => {
    const value = JSON.parse(line);
    lines.push(value);
    for (const waiter of [...waiters]) {
      if (waiter.match(value)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        clearTimeout(waiter.timer);
        waiter.resolve(value);
      }
    }
  });
  child.on("exit", (code) => {
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.reject(new Error(`${name} exited (${code}) while waiting for ${waiter.what}\n${log}`));
    }
  });
  return {
    name,
    waitFor(what, match, ms = 30000) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = { what, match, resolve, reject };
        waiter.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`${name}: timed out waiting for ${what}\n${log}`));
        }, ms);
        waiters.push(waiter);
      });
    },
  };
}
