// Access through the page: with tokens, a reader's page receives every change and
// offers nothing to edit; a change made anyway is refused by the relay, which the page
// says, and the writer never sees it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  TIMEOUT,
  freshDoc,
  mintToken,
  relayAndBrowser,
  textOf,
  typeIn,
  waitForSyncState,
  waitForText,
} from "./harness.mjs";

const SECRET = "e2e-secret-of-at-least-sixteen-bytes";
const env = relayAndBrowser(["--auth-secret", SECRET]);

test("a read-only page receives changes and its own are refused", async (t) => {
  const s = env.scenario(t);
  const doc = freshDoc("access");
  const alice = await s.open("alice", doc, undefined, { token: mintToken(SECRET, doc, "write") });
  const reader = await s.open("reader", doc, undefined, { token: mintToken(SECRET, doc, "read") });

  const a = "only alice may write here\n";
  await typeIn(alice, "end", a);
  await waitForText(reader, a);
  await waitForSyncState(alice, "saved");

  // The page knows the token is read-only: nothing to type into, no buttons.
  assert.equal(await reader.getAttribute("#editor .cm-content", "contenteditable"), "false");
  assert.equal(await reader.isDisabled("#counter-inc"), true);
  assert.equal(await reader.isVisible("#read-only"), true);

  // A change made anyway (through the engine) is refused by the relay, which closes
  // with 1008: the page stops reconnecting and says why.
  await reader.evaluate(() => window.chorusDemo.doc.insertText("body", 0, "forbidden"));
  await reader.waitForFunction(
    () => /Refused by the relay/.test(document.querySelector("#sync-status").textContent),
    null,
    { timeout: TIMEOUT },
  );
  assert.equal(await reader.getAttribute("#sync-status", "data-state"), "offline");
  assert.equal(await reader.isChecked("#online"), false);
  assert.match(await reader.textContent("#sync-status"), /read/i);

  // Alice keeps working and never receives the refused text.
  const more = "and she goes on\n";
  await typeIn(alice, "end", more);
  await waitForSyncState(alice, "saved");
  assert.equal(await textOf(alice), a + more);
});
