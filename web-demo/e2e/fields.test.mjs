// The document's other types, through the page: a counter that adds concurrent
// increments, a last-writer-wins title, and a multi-value status that shows concurrent
// writes as a conflict until someone picks one.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  TIMEOUT,
  freshDoc,
  relayAndBrowser,
  screenshot,
  setOnline,
  waitForSyncState,
} from "./harness.mjs";

const env = relayAndBrowser();

/** Waits until `selector`'s text (trimmed) is `want`. */
async function waitForTextContent(page, selector, want) {
  try {
    await page.waitForFunction(
      ([sel, w]) => document.querySelector(sel)?.textContent.trim() === w,
      [selector, want],
      { timeout: TIMEOUT },
    );
  } catch (err) {
    const got = await page.textContent(selector).catch(() => "(missing)");
    throw new Error(
      `${selector} never showed ${JSON.stringify(want)}; it shows ${JSON.stringify(got)}: ` +
        err.message,
    );
  }
}

/** Waits until `#status-conflict` is shown (or hidden) with `picks` choices. */
async function waitForConflict(page, shown, picks = 0) {
  await page.waitForFunction(
    ([shown, picks]) => {
      const box = document.querySelector("#status-conflict");
      if (!box) return false;
      if (!shown) return box.hidden;
      return !box.hidden && box.querySelectorAll("button.status-pick").length === picks;
    },
    [shown, picks],
    { timeout: TIMEOUT },
  );
}

test("concurrent counter clicks add up", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("counter");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);
  assert.equal((await alice.textContent("#counter-value")).trim(), "0");

  await Promise.all([
    (async () => {
      for (let i = 0; i < 3; i++) await alice.click("#counter-inc");
    })(),
    bob.click("#counter-dec"),
  ]);
  await waitForTextContent(alice, "#counter-value", "2");
  await waitForTextContent(bob, "#counter-value", "2");
});

test("the title is shared", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("title");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  const title = "Minutes of the Tuesday meeting";
  await alice.click("#title");
  await alice.keyboard.type(title, { delay: 10 });
  await bob.waitForFunction((want) => document.querySelector("#title").value === want, title, {
    timeout: TIMEOUT,
  });
  assert.equal(await alice.inputValue("#title"), title);
});

test("concurrent statuses conflict until one is picked", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("status");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  await Promise.all([waitForSyncState(alice, "saved"), waitForSyncState(bob, "saved")]);

  await setOnline(bob, false);
  await alice.click('#status-buttons button[data-value="approved"]');
  await bob.click('#status-buttons button[data-value="blocked"]');
  await waitForTextContent(alice, "#status-value", "approved");
  await waitForTextContent(bob, "#status-value", "blocked");
  await waitForSyncState(alice, "saved");
  await setOnline(bob, true);

  for (const page of [alice, bob]) {
    await waitForConflict(page, true, 2);
    const picks = await page.$$eval("#status-conflict button.status-pick", (buttons) =>
      buttons.map((b) => ({ value: b.dataset.value, text: b.textContent })),
    );
    picks.sort((x, y) => x.value.localeCompare(y.value));
    assert.deepEqual(
      picks.map((p) => p.value),
      ["approved", "blocked"],
    );
    // Each choice names its value and who wrote it.
    assert.match(picks[0].text, /approved/);
    assert.match(picks[0].text, /alice/);
    assert.match(picks[1].text, /blocked/);
    assert.match(picks[1].text, /bob/);
  }
  await screenshot(bob, "concurrent-statuses-conflict-until-one-is-picked--bob-in-conflict");

  await alice.click('#status-conflict button.status-pick[data-value="blocked"]');
  for (const page of [alice, bob]) {
    await waitForConflict(page, false);
    await waitForTextContent(page, "#status-value", "blocked");
  }
});
