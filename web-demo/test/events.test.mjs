// Events: what each commit or apply changed, with text deltas in UTF-16 units.
import { test } from "node:test";
import assert from "node:assert/strict";
import { wasm, R1, R2, applyDelta, link } from "./_wasm.mjs";

const { Doc } = wasm;

test("local commits deliver one event each, origin local", () => {
  const d = new Doc(R1);
  const events = [];
  d.observe((e) => events.push(e));
  d.insertText("t", 0, "a👍🏽b");
  d.counterAdd("c", 5);
  d.setRegister("r", "x", 1000);
  d.mapSet("m", "k", 1);
  assert.equal(events.length, 4);
  assert.ok(events.every((e) => e.origin === "local"));
  assert.deepEqual(events[0].changes, [
    { path: ["t"], kind: "text", diff: [{ insert: "a👍🏽b" }] },
  ]);
  assert.deepEqual(events[1].changes, [
    { path: ["c"], kind: "counter", diff: { delta: 5, value: 5 } },
  ]);
  assert.equal(events[2].changes[0].kind, "register");
  assert.equal(events[2].changes[0].diff.value, "x");
  assert.deepEqual(events[2].changes[0].diff.conflicts, []);
  assert.deepEqual(events[3].changes, [
    { path: ["m"], kind: "map", diff: [{ key: "k", value: 1, conflict: false }] },
  ]);
  // A grouped transaction is one event.
  d.transact([
    ["insertText", "t", 1, "🎉"],
    ["counterAdd", "c", -2],
  ]);
  assert.equal(events.length, 5);
  assert.equal(events[4].changes.length, 2);
});

test("a remote apply delivers UTF-16 deltas that reproduce the text", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  let shadow = "";
  const origins = [];
  b.observe((e) => {
    origins.push(e.origin);
    for (const c of e.changes) {
      if (c.kind === "text" && c.path[0] === "t") shadow = applyDelta(shadow, c.diff);
    }
  });
  const words = ["𝄞", "👍🏽", "e\u0301", "plain", "中文", "🇫🇷"];
  let seed = 7;
  const rand = (n) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  // Random edits on a, delivered to b in batches.
  for (let round = 0; round < 30; round++) {
    for (let k = 0; k < 3; k++) {
      const s = a.text("t");
      // Positions on code point boundaries.
      const points = [...s];
      const cut = rand(points.length + 1);
      const pos = points.slice(0, cut).join("").length;
      if (points.length > 0 && rand(3) === 0) {
        const n = 1 + rand(Math.min(3, points.length - cut || 1));
        const len = points.slice(cut, cut + n).join("").length;
        if (len > 0) a.deleteText("t", pos, len);
      } else {
        a.insertText("t", pos, words[rand(words.length)]);
      }
    }
    // b also edits concurrently, so that deltas have to retain around its text.
    if (round % 5 === 0) b.insertText("t", 0, "B");
    b.applyUpdate(a.encodeSince(b.version()));
    assert.equal(shadow, b.text("t"), `round ${round}`);
    a.applyUpdate(b.encodeSince(a.version()));
  }
  assert.ok(origins.some((o) => Array.isArray(o) && o.includes(R1)));
  assert.ok(origins.includes("local"));
});

test("events over a Session, and observers may read the doc", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  const l = link(a, b);
  l.pump();
  let shadow = "";
  let seen = null;
  b.observe((e) => {
    for (const c of e.changes) if (c.kind === "text") shadow = applyDelta(shadow, c.diff);
    seen = b.text("t"); // reading inside the callback is fine
  });
  a.insertText("t", 0, "héllo 👍🏽");
  l.changed();
  a.deleteText("t", 1, 1);
  l.changed();
  assert.equal(shadow, "hllo 👍🏽");
  assert.equal(seen, "hllo 👍🏽");
});

test("unobserve stops delivery; a throwing observer does not break the doc", () => {
  const d = new Doc(R1);
  let n = 0;
  const id = d.observe(() => n++);
  d.observe(() => {
    throw new Error("observer bug");
  });
  d.insertText("t", 0, "a");
  assert.equal(n, 1);
  assert.equal(d.unobserve(id), true);
  assert.equal(d.unobserve(id), false);
  d.insertText("t", 0, "b");
  assert.equal(n, 1);
  assert.equal(d.text("t"), "ba");
});

test("counter, register, conflict and map events from a remote replica", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  const events = [];
  b.observe((e) => events.push(e));
  a.counterAdd("c", 3);
  a.setMulti("s", "from a", 1000);
  b.setMulti("s", "from b", 1000);
  a.mapSet("m", "k", "v");
  events.length = 0;
  b.applyUpdate(a.encodeSince(b.version()));
  assert.equal(events.length, 1);
  assert.deepEqual(events[0].origin, [R1]);
  const byPath = Object.fromEntries(events[0].changes.map((c) => [c.path.join("/"), c]));
  assert.deepEqual(byPath.c.diff, { delta: 3, value: 3 });
  assert.equal(byPath.s.kind, "multi");
  assert.equal(byPath.s.diff.conflicts.length, 2);
  assert.equal(byPath.s.diff.wasConflict, false);
  assert.deepEqual(byPath.m.diff, [{ key: "k", value: "v", conflict: false }]);
});

test("observing again after everybody unobserved", () => {
  const d = new Doc(R1);
  const first = [];
  d.unobserve(d.observe((e) => first.push(e)));
  d.insertText("t", 0, "quiet");
  assert.equal(first.length, 0);
  let shadow = "quiet";
  d.observe((e) => {
    for (const c of e.changes) shadow = applyDelta(shadow, c.diff);
  });
  d.insertText("t", 5, " 👍🏽");
  d.deleteText("t", 0, 1);
  assert.equal(shadow, d.text("t"));
});
