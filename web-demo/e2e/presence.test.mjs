// Presence: each page lists the other people on the document and draws their cursors
// and selections in the editor, labelled with their names.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  TIMEOUT,
  freshDoc,
  relayAndBrowser,
  typeIn,
  waitForText,
} from "./harness.mjs";

const env = relayAndBrowser();

const peerNames = (page) =>
  page.$$eval("#peers li[data-replica]", (items) => items.map((li) => li.textContent.trim()));

/** Waits until the `#peers` list of `page` has an entry mentioning `name` (or none). */
async function waitForPeer(page, name, present = true) {
  try {
    await page.waitForFunction(
      ([name, present]) =>
        [...document.querySelectorAll("#peers li[data-replica]")].some((li) =>
          li.textContent.includes(name),
        ) === present,
      [name, present],
      { timeout: TIMEOUT },
    );
  } catch (err) {
    const now = await peerNames(page).catch(() => "(page gone)");
    const what = present ? "never listed" : "still lists";
    throw new Error(`#peers ${what} ${name}; it lists ${JSON.stringify(now)}: ${err.message}`);
  }
}

test("a remote cursor and selection are drawn with the writer's name", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("presence");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  await waitForPeer(bob, "alice");
  await waitForPeer(alice, "bob");
  assert.deepEqual(await peerNames(bob), ["alice"]);
  assert.deepEqual(await peerNames(alice), ["bob"]);

  const text = "presence makes collaboration visible";
  await typeIn(alice, "end", text);
  await waitForText(bob, text);
  for (let i = 0; i < 7; i++) await alice.keyboard.press("Shift+ArrowLeft");

  const caret = '#editor .cm-remote-caret[data-name="alice"]';
  await bob.waitForSelector(caret, { state: "attached", timeout: TIMEOUT });
  assert.equal((await bob.textContent(`${caret} .cm-remote-caret-label`)).trim(), "alice");
  await bob.waitForSelector("#editor .cm-remote-selection", {
    state: "attached",
    timeout: TIMEOUT,
  });
  // The selection covers the 7 characters alice selected: "visible".
  // (The caret widget may sit inside a mark; its label is not selected text.)
  const selected = await bob.$$eval("#editor .cm-remote-selection", (marks) =>
    marks
      .map((m) => {
        const copy = m.cloneNode(true);
        for (const caret of copy.querySelectorAll(".cm-remote-caret")) caret.remove();
        return copy.textContent;
      })
      .join(""),
  );
  assert.equal(selected, "visible");
  // Bob sees no caret of his own drawn as remote.
  assert.equal(await bob.locator('.cm-remote-caret[data-name="bob"]').count(), 0);
});

test("a page that leaves disappears from the others", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("leave");
  const alice = await s.open("alice", doc);
  const bob = await s.open("bob", doc);
  await typeIn(alice, "end", "here I am");
  await waitForPeer(bob, "alice");
  await bob.waitForSelector('.cm-remote-caret[data-name="alice"]', {
    state: "attached",
    timeout: TIMEOUT,
  });

  await alice.close();
  await waitForPeer(bob, "alice", false);
  await bob.waitForSelector('.cm-remote-caret[data-name="alice"]', {
    state: "detached",
    timeout: TIMEOUT,
  });
});
