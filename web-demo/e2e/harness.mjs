// Shared by the browser end-to-end tests: a real relay process serving the built demo,
// Chromium driven by playwright-core, and waits for the pages to converge. It has no
// tests of its own (node --test runs only the *.test.mjs files beside it).
//
// Environment: CHORUS_BIN (the `chorus` binary; else target/{ci,release,debug}/chorus),
// CHROMIUM_PATH (else /usr/bin/chromium; scripts/ensure-chromium.sh installs it),
// CHORUS_ARTIFACTS (where screenshots go; else web-demo/test-results), CHORUS_E2E_LOG=1
// (echo the relay's log and every console message of the pages).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { after, before } from "node:test";
import { chromium } from "playwright-core";

/** How long any wait for the pages lasts before the test fails. */
export const TIMEOUT = 15_000;

const WEB_DEMO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const REPO = path.dirname(WEB_DEMO);
const DIST = path.join(WEB_DEMO, "dist");
const VERBOSE = process.env.CHORUS_E2E_LOG === "1";

// Relays still running when the process exits (a test crashed before `after`): killed
// then, so no relay outlives the run.
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function relayBinary() {
  if (process.env.CHORUS_BIN) {
    const bin = path.resolve(process.env.CHORUS_BIN);
    if (!existsSync(bin)) throw new Error(`CHORUS_BIN=${bin} does not exist`);
    return bin;
  }
  const candidates = ["ci", "release", "debug"].map((p) => path.join(REPO, "target", p, "chorus"));
  const found = candidates.find((c) => existsSync(c));
  if (!found) {
    throw new Error(
      `no chorus binary at ${candidates.join(", ")}: build it (cargo build --profile ci ` +
        `-p chorus-cli) or set CHORUS_BIN`,
    );
  }
  return found;
}

/**
 * Starts `chorus relay` on a free loopback port with a fresh data directory, serving the
 * built demo (web-demo/dist). Resolves once the relay says it is serving.
 *
 * @returns {Promise<{ url: string, stderr: () => string, stop: () => Promise<void> }>}
 */
export async function startRelay(extraArgs = []) {
  if (!existsSync(path.join(DIST, "index.html"))) {
    throw new Error(`${DIST}/index.html does not exist: run npm run build:web first`);
  }
  const bin = relayBinary();
  const dataDir = await mkdtemp(path.join(tmpdir(), "chorus-e2e-"));
  const child = spawn(
    bin,
    ["relay", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--static-dir", DIST, ...extraArgs],
    {
      stdio: ["ignore", "ignore", "pipe"],
      env: { CHORUS_LOG: "info", NO_COLOR: "1", ...process.env },
    },
  );
  running.add(child);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    // Not started at all (not executable, say): no "exit" follows.
    child.once("error", (error) => resolve({ error }));
  });
  exited.then(() => running.delete(child));

  // The log is kept (its tail) for error messages; reading it also keeps the relay from
  // blocking on a full pipe.
  let log = "";
  let pending = "";
  let announce;
  const announced = new Promise((resolve) => (announce = resolve));
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    log = (log + chunk).slice(-64 * 1024);
    if (VERBOSE) process.stderr.write(chunk.replace(/^(?=.)/gm, "[relay] "));
    pending += chunk;
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) {
      const m = /chorus relay: serving (http:\/\/[^\s]+)/.exec(line);
      if (m) announce(m[1]);
    }
  });

  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve("timeout"), 20_000);
  });
  const outcome = await Promise.race([announced, exited, timedOut]);
  clearTimeout(timer);
  const stop = async () => {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(killer);
    }
    // A child of the binary (a wrapper script's) may still hold the pipe open.
    child.stderr.destroy();
    await rm(dataDir, { recursive: true, force: true });
  };
  if (typeof outcome !== "string" || !outcome.startsWith("http://")) {
    await stop();
    const why =
      outcome === "timeout"
        ? "did not say it was serving within 20 s"
        : outcome.error
          ? `could not start: ${outcome.error.message}`
          : `exited (code ${outcome.code}, signal ${outcome.signal}) before serving`;
    throw new Error(`${bin} relay ${why}; its output so far:\n${log}`);
  }
  return { url: outcome, stderr: () => log, stop };
}

/** Chromium, headless; every launch has a fresh profile. */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}

// Uncaught exceptions of each page (`pageerror`), which fail the test that opened it.
const uncaught = new WeakMap();

/** The uncaught exceptions `page` has thrown so far. */
export function pageErrors(page) {
  return uncaught.get(page) ?? [];
}

/**
 * Opens the demo on `doc` as `name` in `context` and waits until the page says it is
 * ready. Console errors and uncaught exceptions are echoed to the test log; the
 * exceptions are also kept (`pageErrors`).
 */
export async function openDemo(context, relayUrl, doc, name, params = {}) {
  const page = await context.newPage();
  const errors = [];
  uncaught.set(page, errors);
  page.on("pageerror", (err) => {
    errors.push(err);
    process.stderr.write(`[${name}] uncaught: ${err.stack || err.message}\n`);
  });
  page.on("console", (msg) => {
    if (msg.type() === "error" || VERBOSE) {
      const at = msg.location()?.url;
      const where = at ? ` (${at})` : "";
      process.stderr.write(`[${name}] console.${msg.type()}: ${msg.text()}${where}\n`);
    }
  });
  const query = new URLSearchParams({ doc, name, ...params });
  await page.goto(`${relayUrl}/?${query}`);
  try {
    await page.waitForFunction(() => window.chorusDemo?.ready === true, null, {
      timeout: 20_000,
    });
  } catch (err) {
    const thrown = errors.map((e) => `\n  ${e.message}`).join("");
    throw new Error(`the demo (${name} on ${doc}) did not become ready: ${err.message}${thrown}`);
  }
  return page;
}

/** Saves a PNG of `page` as `<name>.png` under CHORUS_ARTIFACTS or web-demo/test-results. */
export async function screenshot(page, name) {
  const dir = process.env.CHORUS_ARTIFACTS || path.join(WEB_DEMO, "test-results");
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** The editor's text. */
export function textOf(page) {
  return page.evaluate(() => window.chorusDemo.text());
}

/**
 * Waits until the editor's text is `expected` (a string) or satisfies it (a predicate),
 * and returns the text. A predicate runs here in Node, polling, so it may use the test's
 * variables (a function handed to `page.waitForFunction` is sent as source and would lose
 * them).
 */
export async function waitForText(page, expected, timeout = TIMEOUT) {
  if (typeof expected === "string") {
    try {
      await page.waitForFunction((want) => window.chorusDemo.text() === want, expected, {
        timeout,
      });
      return expected;
    } catch (err) {
      const got = await textOf(page).catch(() => "(page gone)");
      throw new Error(
        `text did not become ${JSON.stringify(expected)}; it is ${JSON.stringify(got)}: ` +
          err.message,
      );
    }
  }
  let last;
  await waitUntil(
    async () => expected((last = await textOf(page))),
    () => `text never satisfied ${expected}; it is ${JSON.stringify(last)}`,
    timeout,
  );
  return last;
}

/**
 * Waits until every page has the same text and it satisfies `predicate`; returns it.
 */
export async function waitForConvergence(pages, predicate = () => true, timeout = TIMEOUT) {
  let texts = [];
  await waitUntil(
    async () => {
      texts = await Promise.all(pages.map(textOf));
      return texts.every((t) => t === texts[0]) && predicate(texts[0]);
    },
    () =>
      `the pages did not converge on a text satisfying ${predicate}:\n` +
      texts.map((t, i) => `  page ${i}: ${JSON.stringify(t)}`).join("\n"),
    timeout,
  );
  return texts[0];
}

/** Polls `check` (every 50 ms) until it returns true; else throws `describe()`. */
export async function waitUntil(check, describe, timeout = TIMEOUT) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until `#sync-status` has `data-state="<state>"`. */
export async function waitForSyncState(page, state, timeout = TIMEOUT) {
  try {
    await page.waitForSelector(`#sync-status[data-state="${state}"]`, {
      state: "attached",
      timeout,
    });
  } catch (err) {
    const now = await page
      .$eval("#sync-status", (el) => `${el.dataset.state} (${JSON.stringify(el.textContent)})`)
      .catch(() => "(missing)");
    throw new Error(`#sync-status never became ${state}; it is ${now}: ${err.message}`);
  }
}

/**
 * Waits until the page has written every change it made to IndexedDB, so closing it
 * loses nothing.
 */
export async function waitForStored(page, timeout = TIMEOUT) {
  // `data-local` on the sync status: "stored" once every change is in IndexedDB.
  await page.waitForSelector('#sync-status[data-local="stored"]', { timeout });
}

/**
 * Takes the page offline (`#online` unchecked: it must report `offline`) or back online
 * (it must reconnect).
 */
export async function setOnline(page, online, timeout = TIMEOUT) {
  await page.setChecked("#online", online);
  if (online) {
    await page.waitForFunction(() => window.chorusDemo.provider.connected === true, null, {
      timeout,
    });
  } else {
    await waitForSyncState(page, "offline", timeout);
    assert.equal(await page.evaluate(() => window.chorusDemo.provider.connected), false);
  }
}

/** Focuses the editor with the cursor at the start or the end of the document. */
export async function placeCursor(page, where) {
  await page.click("#editor .cm-content");
  await page.keyboard.press(where === "start" ? "Control+Home" : "Control+End");
}

/**
 * Types `text` at the start or the end of the document, a key every `delay` ms, the way
 * a person would: click into the editor, move the cursor, type.
 *
 * When two pages type at once, place both cursors first (`placeCursor`) and then type:
 * a cursor placed after the other page's first keys have arrived lands inside the other
 * person's words, and the typing then lands there too — the person's intent, not an
 * interleaving by the engine.
 */
export async function typeIn(page, where, text, delay = 20) {
  await placeCursor(page, where);
  await page.keyboard.type(text, { delay });
}

/** How many times `needle` occurs in `haystack`, overlaps included. */
export function occurrences(haystack, needle) {
  let n = 0;
  for (let i = haystack.indexOf(needle); i !== -1; i = haystack.indexOf(needle, i + 1)) n++;
  return n;
}

/** A document id no other test uses. */
export function freshDoc(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

const slug = (s) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");

/**
 * The pages of one test. When the test ends (passed or failed) it screenshots every page
 * still open, named after the test and the user, closes its browser contexts, and fails
 * the test if any page threw an uncaught exception.
 */
export class Scenario {
  /** @param t the node:test context */
  constructor(t, browser, relayUrl) {
    this.browser = browser;
    this.relayUrl = relayUrl;
    this.contexts = [];
    this.pages = [];
    t.after(() => this.finish(slug(t.name)));
  }

  /** A new browser context: a separate user with its own storage. */
  async newContext() {
    const context = await this.browser.newContext({ viewport: { width: 1100, height: 800 } });
    this.contexts.push(context);
    return context;
  }

  /** Opens the demo on `doc` as `name`, in `context` or else in a new one. */
  async open(name, doc, context, params) {
    const page = await openDemo(context ?? (await this.newContext()), this.relayUrl, doc, name, params);
    this.pages.push({ name, page });
    return page;
  }

  async finish(testSlug) {
    const taken = new Map();
    for (const { name, page } of this.pages) {
      if (page.isClosed()) continue;
      const n = (taken.get(name) ?? 0) + 1;
      taken.set(name, n);
      const suffix = n === 1 ? name : `${name}-${n}`;
      await screenshot(page, `${testSlug}--${suffix}`).catch((err) =>
        process.stderr.write(`screenshot of ${name} failed: ${err.message}\n`),
      );
    }
    await Promise.all(this.contexts.map((c) => c.close().catch(() => {})));
    const thrown = this.pages.flatMap(({ name, page }) =>
      pageErrors(page).map((e) => `${name}: ${e.message}`),
    );
    assert.deepEqual(thrown, [], "the pages threw uncaught exceptions");
  }
}

/**
 * One relay and one browser for a test file: started before its first test, stopped
 * after its last. `scenario(t)` starts a test's `Scenario` on them.
 */
export function relayAndBrowser(relayArgs = []) {
  const env = {
    relay: null,
    browser: null,
    scenario: (t) => new Scenario(t, env.browser, env.relay.url),
  };
  before(async () => {
    env.relay = await startRelay(relayArgs);
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.relay?.stop();
  });
  return env;
}

/** An access token from `chorus token` for a relay started with `--auth-secret secret`. */
export function mintToken(secret, doc, right) {
  return execFileSync(relayBinary(), ["token", "--doc", doc, "--right", right, "--ttl", "600"], {
    env: { ...process.env, CHORUS_AUTH_SECRET: secret },
    encoding: "utf8",
  }).trim();
}
