// The history panel: a page lists the document's versions, shows an earlier one
// read-only with each character in its writer's colour and what changed since marked,
// and restores it — for everyone, keeping what another page typed concurrently.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  TIMEOUT,
  freshDoc,
  relayAndBrowser,
  setOnline,
  textOf,
  typeIn,
  waitForConvergence,
  waitForSyncState,
  waitForText,
  waitUntil,
} from "./harness.mjs";

const env = relayAndBrowser();

const replicaOf = (page) => page.evaluate(() => window.chorusDemo.doc.replicaId());

/** The colour a page shows its own user's name in (the header), as computed. */
const ownColor = (page) => page.$eval("#me", (el) => getComputedStyle(el).color);

async function openHistory(page) {
  await page.click("#history-toggle");
  await page.waitForSelector("#history-panel", { state: "visible", timeout: TIMEOUT });
  await page.waitForSelector("#history-list button.history-item", { timeout: TIMEOUT });
}

/**
 * Clicks the newest version in the list written by `replica` that inserted text
 * (any writer when `replica` is null), and waits for its text to show.
 */
async function pickVersion(page, replica) {
  const by = replica === null ? "" : `[data-replica="${replica}"]`;
  const item = page.locator(`#history-list button.history-item${by}:not([data-inserted="0"])`).first();
  await item.click({ timeout: TIMEOUT });
  await page.waitForSelector("#history-view", { state: "visible", timeout: TIMEOUT });
}

/** The text the history view shows for the picked version (what it held then). */
const shownText = (page) =>
  page.$$eval("#history-text .run", (runs) => runs.map((r) => r.textContent).join(""));

/** Two pages on one document: alice types "alpha ", then bob types "beta" after it. */
async function twoWriters(s, prefix) {
  const doc = freshDoc(prefix);
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);
  await typeIn(alice, "end", "alpha ");
  await waitForText(bob, "alpha ");
  await typeIn(bob, "end", "beta");
  await waitForConvergence([alice, bob], (t) => t === "alpha beta");
  return { alice, bob };
}

test("a page restores an earlier version and the other page shows it", async (t) => {
  const s = env.scenario(t);
  const { alice, bob } = await twoWriters(s, "history-restore");

  await openHistory(alice);
  await pickVersion(alice, await replicaOf(alice));
  assert.equal(await shownText(alice), "alpha ");
  // What changed since is marked: bob's word was added after this version.
  const added = await alice.$$eval("#history-text ins.added", (els) => els.map((e) => e.textContent));
  assert.deepEqual(added, ["beta"]);
  // Looking does not touch the live editor.
  assert.equal(await textOf(alice), "alpha beta");

  await alice.click("#history-restore");
  await alice.waitForSelector("#history-panel", { state: "hidden", timeout: TIMEOUT });
  await waitForText(alice, "alpha ");
  await waitForText(bob, "alpha ");
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);

  // The restore is itself a version, with its message, on both pages.
  for (const page of [alice, bob]) {
    await openHistory(page);
    const top = (await page.textContent("#history-list li:first-child .history-item")) ?? "";
    assert.match(top, /alice/);
    assert.match(top, /Restored version from/);
  }
  // Bob's word, deleted by the restore, shows struck through in the version before it.
  await pickVersion(bob, await replicaOf(bob));
  assert.equal(await shownText(bob), "alpha beta");
  const gone = await bob.$$eval("#history-text .run.gone", (els) => els.map((e) => e.textContent));
  assert.deepEqual(gone, ["beta"]);
});

test("an edit made concurrently with a restore is kept on both pages", async (t) => {
  const s = env.scenario(t);
  const { alice, bob } = await twoWriters(s, "history-concurrent");

  await setOnline(bob, false);
  await typeIn(bob, "start", "B: ");
  await waitForText(bob, "B: alpha beta");

  await openHistory(alice);
  await pickVersion(alice, await replicaOf(alice));
  assert.equal(await shownText(alice), "alpha ");
  await alice.click("#history-restore");
  await waitForText(alice, "alpha ");
  await waitForSyncState(alice, "saved");
  assert.equal(await textOf(bob), "B: alpha beta", "bob, offline, received the restore");

  await setOnline(bob, true);
  const text = await waitForConvergence([alice, bob], (t) => t === "B: alpha ");
  assert.equal(text, "B: alpha ");
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);
  assert.equal(await textOf(alice), await textOf(bob));
});

test("the history view tints each character in its writer's colour", async (t) => {
  const s = env.scenario(t);
  const { alice, bob } = await twoWriters(s, "history-blame");
  const [aliceId, bobId] = await Promise.all([replicaOf(alice), replicaOf(bob)]);
  const [aliceColor, bobColor] = await Promise.all([ownColor(alice), ownColor(bob)]);
  assert.notEqual(aliceColor, bobColor, "the two people have colours of their own");
  // The colour alice's page shows for bob elsewhere: the border of his entry in "Here now".
  await alice.waitForSelector(`#peers li[data-replica="${bobId}"]`, { timeout: TIMEOUT });
  const bobAsPeer = await alice.$eval(`#peers li[data-replica="${bobId}"]`, (li) =>
    getComputedStyle(li).borderLeftColor,
  );
  assert.equal(bobAsPeer, bobColor);

  for (const page of [alice, bob]) {
    await openHistory(page);
    await pickVersion(page, null); // the newest: "alpha beta"
    assert.equal(await shownText(page), "alpha beta");
    const runs = await page.$$eval("#history-text .run", (els) =>
      els.map((el) => ({
        text: el.textContent,
        replica: el.dataset.replica,
        color: getComputedStyle(el).color,
      })),
    );
    const by = (id) =>
      runs
        .filter((r) => r.replica === id)
        .map((r) => r.text)
        .join("");
    assert.equal(by(aliceId), "alpha ");
    assert.equal(by(bobId), "beta");
    for (const r of runs) {
      assert.equal(r.color, r.replica === aliceId ? aliceColor : bobColor, JSON.stringify(r));
    }
    // The list names each writer in the same colour.
    const who = await page.$$eval("#history-list .history-item", (items) =>
      items.map((b) => ({
        replica: b.dataset.replica,
        name: b.querySelector(".who").textContent,
        color: getComputedStyle(b.querySelector(".who")).borderLeftColor,
      })),
    );
    for (const w of who) {
      assert.equal(w.name, w.replica === aliceId ? "alice" : "bob");
      assert.equal(w.color, w.replica === aliceId ? aliceColor : bobColor);
    }
  }
});

test("restoring a version from before someone joined keeps their name and colour", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("history-joined");
  const alice = await s.open("alice", doc);
  await typeIn(alice, "end", "before bob");
  await waitForSyncState(alice, "saved");
  const bob = await s.open("bob", doc);
  await waitForText(bob, "before bob");
  await typeIn(bob, "end", ", then bob");
  await waitForText(alice, "before bob, then bob");
  const bobId = await replicaOf(bob);

  await openHistory(alice);
  await pickVersion(alice, await replicaOf(alice));
  assert.equal(await shownText(alice), "before bob");
  await alice.click("#history-restore");
  await waitForConvergence([alice, bob], (t) => t === "before bob");

  // The document at alice's version had no entry for bob in `people`; he keeps it
  // (alice writes it again in a second change, which may reach bob after the revert).
  const bobIn = (page) => page.evaluate((id) => window.chorusDemo.doc.mapGet("people", id), bobId);
  await waitUntil(
    async () => (await bobIn(alice)) === "bob" && (await bobIn(bob)) === "bob",
    () => "bob's name in `people` on both pages",
  );
  // And it stays: nothing takes it back later.
  await waitForSyncState(alice, "saved");
  for (const page of [alice, bob]) {
    assert.equal(await bobIn(page), "bob");
  }
  await openHistory(alice);
  const bobColor = await ownColor(bob);
  const names = await alice.$$eval(`#history-list .history-item[data-replica="${bobId}"] .who`, (els) =>
    els.map((e) => [e.textContent, getComputedStyle(e).borderLeftColor]),
  );
  assert.ok(names.length > 0);
  for (const [n, c] of names) {
    assert.equal(n, "bob");
    assert.equal(c, bobColor);
  }
});

test("the history panel fits a phone screen and closes back to the editor", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("history-phone");
  const page = await s.open("alice", doc);
  await page.setViewportSize({ width: 390, height: 780 });
  await typeIn(page, "end", "small screen");
  await openHistory(page);
  await pickVersion(page, null);
  assert.equal(await shownText(page), "small screen");
  const width = await page.evaluate(() => document.documentElement.clientWidth);
  for (const sel of ["#history-panel", "#history-restore", "#history-text", "#history-close"]) {
    const box = await page.locator(sel).boundingBox();
    assert.ok(box, `${sel} is shown`);
    assert.ok(box.x >= 0 && box.x + box.width <= width + 0.5, `${sel} fits: ${JSON.stringify(box)}`);
  }
  const scrolls = await page.evaluate(
    () => document.documentElement.scrollWidth > document.documentElement.clientWidth,
  );
  assert.equal(scrolls, false, "nothing sticks out sideways");
  await page.click("#history-close");
  await page.waitForSelector("#history-panel", { state: "hidden", timeout: TIMEOUT });
  await typeIn(page, "end", "!");
  await waitForText(page, "small screen!");
});
