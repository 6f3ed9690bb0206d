// Editing offline: edits made while disconnected are kept (in memory and in IndexedDB)
// and sent when the page is online again — once, never duplicated — even when the page
// was closed in between and a new one picks them up from IndexedDB.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  freshDoc,
  occurrences,
  relayAndBrowser,
  setOnline,
  textOf,
  typeIn,
  waitForConvergence,
  waitForStored,
  waitForSyncState,
  waitForText,
} from "./harness.mjs";

const env = relayAndBrowser();

test("offline edits merge when the page reconnects", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("offline");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  const base = "shared paragraph\n";
  await typeIn(alice, "end", base);
  await waitForText(bob, base);

  await setOnline(bob, false);
  const a = " [alice, online]";
  const b = "[bob, offline] ";
  await Promise.all([typeIn(alice, "end", a), typeIn(bob, "start", b)]);
  await waitForText(alice, base + a);
  await waitForText(bob, b + base);
  // Alice's edit reached the relay; bob, offline, must not have it.
  await waitForSyncState(alice, "saved");
  assert.equal(await textOf(bob), b + base, "bob received edits while offline");
  assert.equal((await bob.getAttribute("#sync-status", "data-state")), "offline");

  await setOnline(bob, true);
  const text = await waitForConvergence([alice, bob], (t) => t.includes(a) && t.includes(b));
  assert.equal(occurrences(text, a), 1, text);
  assert.equal(occurrences(text, b), 1, text);
  assert.equal(occurrences(text, base), 1, text);
  assert.equal(text.length, base.length + a.length + b.length, JSON.stringify(text));
  assert.equal(text, b + base + a);
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);
});

test("offline edits survive closing the page and sync from IndexedDB", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("reopen");
  const alice = await s.open("alice", doc);
  const bobContext = await s.newContext();
  const bob = await s.open("bob", doc, bobContext);
  const base = "before bob left\n";
  await typeIn(alice, "end", base);
  await waitForText(bob, base);

  await setOnline(bob, false);
  const b = "written by bob while offline\n";
  await typeIn(bob, "end", b);
  await waitForText(bob, base + b);
  await waitForStored(bob);
  await bob.close();

  // A new tab in bob's profile: it loads bob's offline edit from IndexedDB and, online,
  // sends it.
  const bobAgain = await s.open("bob", doc, bobContext);
  if (!(await bobAgain.isChecked("#online"))) await setOnline(bobAgain, true);
  const text = await waitForConvergence([alice, bobAgain], (t) => t.includes(b));
  assert.equal(text, base + b);
  assert.equal(occurrences(text, b), 1, text);
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bobAgain, "saved")]);
});

test("two tabs of one browser edit offline, close, and each one's edits return with a tab", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("tabs");
  const alice = await s.open("alice", doc);
  const bobContext = await s.newContext();
  const tab1 = await s.open("bob", doc, bobContext);
  const tab2 = await s.open("bob", doc, bobContext);
  const base = "written while everyone was online\n";
  await typeIn(alice, "end", base);
  await Promise.all([waitForText(tab1, base), waitForText(tab2, base)]);
  // Two tabs of one browser write under two replica ids (the relay binds an id to one
  // connection).
  const ids = await Promise.all([tab1, tab2].map((p) => p.evaluate(() => window.chorusDemo.doc.replicaId())));
  assert.notEqual(ids[0], ids[1]);

  await Promise.all([setOnline(tab1, false), setOnline(tab2, false)]);
  const one = "from the first tab\n";
  const two = "from the second tab\n";
  await typeIn(tab1, "end", one);
  await typeIn(tab2, "end", two);
  await Promise.all([waitForStored(tab1), waitForStored(tab2)]);
  await tab1.close();
  await tab2.close();

  // One tab comes back: it takes one of the two ids, and sends that id's edits — and is
  // not refused for the other id's, which stay in this browser.
  const again1 = await s.open("bob", doc, bobContext);
  await waitForSyncState(again1, "saved");
  const first = await waitForConvergence([alice, again1], (t) => t.includes(one) || t.includes(two));
  assert.equal(occurrences(first, one) + occurrences(first, two), 1, first);

  // A second tab takes the other id and sends the rest.
  const again2 = await s.open("bob", doc, bobContext);
  const text = await waitForConvergence([alice, again1, again2], (t) => t.includes(one) && t.includes(two));
  assert.equal(occurrences(text, one), 1, text);
  assert.equal(occurrences(text, two), 1, text);
  assert.equal(occurrences(text, base), 1, text);
  assert.equal(text.length, base.length + one.length + two.length, JSON.stringify(text));
  await Promise.all([alice, again1, again2].map((p) => waitForSyncState(p, "saved")));
});
