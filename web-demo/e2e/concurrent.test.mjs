// Two people typing into one document at the same moment, each in their own browser
// profile, through a real relay: both editors end with the same text, and each person's
// words arrive whole — the CRDT never interleaves two runs of typing.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  freshDoc,
  occurrences,
  placeCursor,
  relayAndBrowser,
  waitForConvergence,
  waitForSyncState,
} from "./harness.mjs";

const env = relayAndBrowser();

test("concurrent typing converges without interleaving", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("concurrent");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  const pages = [alice, bob];
  await Promise.all(pages.map((p) => waitForSyncState(p, "saved")));

  // Disjoint alphabets, so any interleaving shows.
  const a = "alice types lowercase words here";
  const b = "BOB TYPES CAPITALS 1234567890";
  // Both cursors are placed before anyone types (see `typeIn`).
  await Promise.all([placeCursor(alice, "end"), placeCursor(bob, "end")]);
  await Promise.all([
    alice.keyboard.type(a, { delay: 20 }),
    bob.keyboard.type(b, { delay: 20 }),
  ]);

  const text = await waitForConvergence(pages, (t) => t.includes(a) && t.includes(b));
  assert.equal(occurrences(text, a), 1, text);
  assert.equal(occurrences(text, b), 1, text);
  assert.equal(text.length, a.length + b.length, `nothing else was typed: ${JSON.stringify(text)}`);

  for (const page of pages) {
    await waitForSyncState(page, "saved");
    assert.equal((await page.textContent("#sync-status")).trim(), "All changes saved");
  }
});

test("an editor that joins later gets everything typed before it", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("late");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  const a = "first line from alice\n";
  const b = "bob's line\n";
  await Promise.all([placeCursor(alice, "end"), placeCursor(bob, "start")]);
  await Promise.all([
    alice.keyboard.type(a, { delay: 10 }),
    bob.keyboard.type(b, { delay: 10 }),
  ]);
  const text = await waitForConvergence([alice, bob], (t) => t.includes(a) && t.includes(b));
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);

  const carol = await s.open("carol", doc);
  assert.equal(await waitForConvergence([alice, bob, carol]), text);
});
