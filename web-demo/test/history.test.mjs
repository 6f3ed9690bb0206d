// History through the WebAssembly API: versions as values, the document at an earlier
// version, diffs, reverts, change metadata (message, time) and blame in UTF-16 units,
// the grouped history listing — and the golden vector of format version 3 (PROTOCOL.md,
// pinned also by crates/chorus-doc/tests/it/golden.rs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { wasm, R1, R2, R3, applyDelta, hex, syncDocs, unhex } from "./_wasm.mjs";

const { Doc, UndoManager } = wasm;

const T0 = 1_700_000_000_000;

/** Blame runs as [start, end, replica, message, time], for short assertions. */
const runs = (blame) => blame.map((b) => [b.start, b.end, b.replica, b.message, b.time]);

test("versions are values: bytes and text name the same version", () => {
  const d = new Doc(R1);
  d.insertText("t", 0, "draft");
  const bytes = d.version();
  const text = d.versionText();
  assert.match(text, /^[A-Za-z0-9_-]+$/, "URL-safe");
  assert.equal(wasm.versionToText(bytes), text);
  assert.deepEqual(wasm.versionFromText(text), bytes);
  assert.deepEqual(wasm.decodeVersion(wasm.versionFromText(text)), { [R1]: 5 });
  // Either form opens the version.
  d.insertText("t", 5, " two");
  assert.equal(d.at(bytes).text("t"), "draft");
  assert.equal(d.at(text).text("t"), "draft");
  assert.equal(d.at(text).versionText(), text);
  assert.deepEqual(d.at(text).version(), bytes);
  assert.throws(() => wasm.versionFromText("not base64!"), /not a Chorus version/);
  assert.throws(() => d.at(42), /a version is a Uint8Array/);
});

test("at() reads every field as it was, and stays valid as the document moves on", () => {
  const d = new Doc(R1);
  d.transact([
    ["insertText", "t", 0, "Hello 👋"],
    ["counterAdd", "c", 2],
    ["setRegister", "title", "First", 10],
    ["listInsert", "l", 0, ["a"]],
  ]);
  const v1 = d.version();
  d.transact([
    ["deleteText", "t", 0, 6], // "Hello "
    ["insertText", "t", 2, "!"], // after the emoji (2 UTF-16 units)
    ["counterAdd", "c", 5],
    ["setRegister", "title", "Second", 20],
    ["listInsert", "l", 1, ["b"]],
  ]);
  assert.equal(d.text("t"), "👋!");
  const old = d.at(v1);
  assert.equal(old.text("t"), "Hello 👋");
  assert.equal(old.counterValue("c"), 2);
  assert.equal(old.register("title"), "First");
  assert.deepEqual(old.list("l"), ["a"]);
  assert.deepEqual(old.toJSON(), { t: "Hello 👋", c: 2, title: "First", l: ["a"] });
  assert.equal(old.text("missing"), "");
  // The checkout reads the same after more edits.
  d.insertText("t", 0, "more ");
  assert.equal(old.text("t"), "Hello 👋");
  assert.equal(d.at(new Doc(R2).version()).text("t"), "", "the empty version");
});

test("an unknown version throws a clear error, and changes nothing", () => {
  const a = new Doc(R1);
  a.insertText("t", 0, "abc");
  const ahead = a.version();
  const b = new Doc(R2);
  b.insertText("t", 0, "x");
  const before = b.encode();
  for (const call of [
    () => b.at(ahead),
    () => b.diff(b.version(), ahead),
    () => b.diff(ahead, b.version()),
    () => b.revertTo(ahead, T0),
    () => b.blame("t", ahead),
  ]) {
    assert.throws(call, (e) => {
      assert.ok(e instanceof Error);
      assert.match(e.message, /unknown version/);
      assert.match(e.message, /sync first/);
      return true;
    });
  }
  assert.deepEqual(b.encode(), before);
  // Once synced, the same version opens.
  b.applyUpdate(a.encode());
  assert.equal(b.at(ahead).text("t"), "abc");
  // Bytes that are no version at all.
  assert.throws(() => b.at(new Uint8Array([1, 2, 3])), /not a Chorus version/);
});

test("diff() is the event observe delivers, both ways", () => {
  const d = new Doc(R1);
  d.insertText("t", 0, "one 😀 two");
  const v1 = d.version();
  const seen = [];
  d.observe((e) => seen.push(e));
  d.transact([
    ["deleteText", "t", 0, 4], // "one "
    ["insertText", "t", 6, " three"], // the end: "😀 two" is 6 units
    ["counterAdd", "votes", 3],
  ]);
  const v2 = d.version();
  const forward = d.diff(v1, v2);
  assert.deepEqual(forward.changes, seen[0].changes, "the same shape as the observer's event");
  assert.deepEqual(forward.origin, [R1]);
  const text = forward.changes.find((c) => c.kind === "text");
  assert.deepEqual(text.path, ["t"]);
  assert.equal(applyDelta("one 😀 two", text.diff), "😀 two three");
  assert.deepEqual(forward.changes.find((c) => c.kind === "counter").diff, { delta: 3, value: 3 });
  // Backwards: the deltas undo what happened.
  const back = d.diff(v2, v1);
  const t2 = back.changes.find((c) => c.kind === "text");
  assert.equal(applyDelta("😀 two three", t2.diff), "one 😀 two");
  assert.deepEqual(back.changes.find((c) => c.kind === "counter").diff, { delta: -3, value: 0 });
  assert.deepEqual(d.diff(v2, v2).changes, []);
  // Text versions work too.
  assert.deepEqual(d.diff(wasm.versionToText(v1), d.versionText()), forward);
});

test("revertTo() brings an old version back as new ops that sync and keep concurrent edits", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.insertText("t", 0, "first draft");
  syncDocs(a, b);
  const draft = a.version();
  a.deleteText("t", 0, 6); // "draft"
  a.insertText("t", 5, " — rewritten");
  syncDocs(a, b);
  // b edits concurrently with a's revert: in front of "draft", which is all that is
  // left before it.
  b.insertText("t", 0, "[b] ");
  const events = [];
  a.observe((e) => events.push(e));
  assert.equal(a.revertTo(draft, T0 + 5, "Restored"), true);
  assert.equal(a.text("t"), "first draft");
  assert.equal(events.length, 1, "one change, one event");
  assert.equal(events[0].origin, "local");
  assert.equal(a.revertTo(draft, T0 + 6), false, "nothing differs any more");
  syncDocs(a, b);
  // "first " comes back where it was; b's words stay in front of "draft".
  assert.equal(a.text("t"), "first [b] draft");
  assert.equal(b.text("t"), a.text("t"));
  a.check();
  b.check();
  // The revert is a change with its message and time, in the history of both.
  for (const d of [a, b]) {
    const last = d.history(0).filter((g) => g.replica === R1).at(-1);
    assert.equal(last.changes.at(-1).message, "Restored");
    assert.equal(last.changes.at(-1).time, T0 + 5);
  }
  // The restored characters are the original ones: blame names the first change.
  const blame = a.blame("t");
  assert.deepEqual(
    blame.map((r) => [a.text("t").slice(r.start, r.end), r.replica]),
    [
      ["first ", R1],
      ["[b] ", R2],
      ["draft", R1],
    ],
  );
});

test("revertTo() is one undo step", () => {
  const d = new Doc(R1);
  const u = new UndoManager(d, 0);
  d.insertText("t", 0, "keep");
  const v = d.version();
  d.insertText("t", 4, " and more");
  d.revertTo(v, T0);
  assert.equal(d.text("t"), "keep");
  assert.equal(u.undo(T0 + 1), true);
  assert.equal(d.text("t"), "keep and more");
});

test("transact() records a message and a time; blame counts UTF-16 units with emoji", () => {
  const d = new Doc(R1);
  d.transact([["insertText", "t", 0, "😀ab"]], { message: "smile", time: T0 });
  d.transact([["insertText", "t", 4, "👍🏽c"]], { time: T0 + 1000 }); // after "😀ab" (4 units)
  d.transact([["insertText", "t", 2, "X"]]); // between the emoji and "ab": no metadata
  assert.equal(d.text("t"), "😀Xab👍🏽c");
  const blame = d.blame("t");
  assert.deepEqual(runs(blame), [
    [0, 2, R1, "smile", T0],
    [2, 3, R1, null, null],
    [3, 5, R1, "smile", T0],
    [5, 10, R1, null, T0 + 1000], // 👍🏽 is 4 units, then "c"
  ]);
  assert.equal(blame[0].seqStart, 0);
  assert.equal(blame[0].seqEnd, 3, "the first change made three ops (chars)");
  assert.equal(blame[3].seqStart, 3);
  assert.equal(blame[3].seqEnd, 6);
  for (const r of blame) assert.equal(typeof r.lamport, "number");
  // The runs cover the text exactly; slicing the JS string by them cuts no emoji.
  assert.equal(blame.map((r) => d.text("t").slice(r.start, r.end)).join(""), d.text("t"));
  assert.equal(d.text("t").slice(5, 10), "👍🏽c");
  assert.deepEqual(d.blame("empty"), []);
  // Bad options are refused before anything is made.
  assert.throws(() => d.transact([["insertText", "t", 0, "x"]], { time: -1 }), /options.time/);
  assert.throws(() => d.transact([["insertText", "t", 0, "x"]], { message: 5 }), /options.message/);
  assert.throws(() => d.transact([["insertText", "t", 0, "x"]], "soon"), /commit options/);
  assert.equal(d.text("t"), "😀Xab👍🏽c");
});

test("blame at an earlier version, in that version's positions", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.transact([["insertText", "t", 0, "🎉 party"]], { message: "a", time: T0 });
  syncDocs(a, b);
  b.transact([["insertText", "t", 0, "big "]], { message: "b", time: T0 + 1 });
  syncDocs(a, b);
  const v = a.version();
  a.deleteText("t", 0, 4 + 3); // "big 🎉 "
  assert.equal(a.text("t"), "party");
  assert.deepEqual(runs(a.blame("t")), [[0, 5, R1, "a", T0]]);
  const then = a.blame("t", v);
  assert.deepEqual(runs(then), [
    [0, 4, R2, "b", T0 + 1],
    [4, 12, R1, "a", T0],
  ]);
  assert.deepEqual(a.at(v).blame("t"), then);
  assert.equal(a.at(v).text("t").slice(4, 12), "🎉 party");
});

test("metadata survives encode / applyUpdate to another replica", () => {
  const a = new Doc(R1);
  a.transact([["insertText", "body", 0, "Hi 👋"]], { message: "hello", time: T0 });
  a.transact([["insertText", "body", 5, "!"]], { time: T0 + 500 });
  // Through a full state …
  const full = Doc.decode(a.encode(), R3);
  // … and through a delta applied to a replica that had nothing.
  const b = new Doc(R2);
  b.applyUpdate(a.encodeSince(b.version()));
  for (const d of [full, b]) {
    assert.equal(d.text("body"), "Hi 👋!");
    assert.deepEqual(runs(d.blame("body")), [
      [0, 5, R1, "hello", T0],
      [5, 6, R1, null, T0 + 500],
    ]);
    const h = d.history(60_000);
    assert.equal(h.length, 1);
    assert.deepEqual(
      h[0].changes.map((c) => [c.message, c.time]),
      [
        ["hello", T0],
        [null, T0 + 500],
      ],
    );
  }
  // A duplicate changes nothing: the first record wins.
  b.applyUpdate(a.encode());
  assert.deepEqual(b.blame("body"), full.blame("body"));
});

test("history() groups by writer and time gap, each group with the version after it", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.transact([["insertText", "t", 0, "abc"]], { time: T0 });
  a.transact([["deleteText", "t", 0, 1]], { time: T0 + 1_000 });
  a.transact([["insertText", "t", 2, "d"]], { time: T0 + 120_000 }); // after a long pause
  syncDocs(a, b);
  b.transact([["insertText", "t", 0, "😀"], ["counterAdd", "n", 1]], { message: "b's", time: T0 + 121_000 });
  syncDocs(a, b);
  const h = a.history(60_000);
  assert.deepEqual(
    h.map((g) => [g.replica, g.changes.length, g.inserted, g.deleted, g.other, g.firstTime, g.lastTime]),
    [
      [R1, 2, 3, 1, 0, T0, T0 + 1_000],
      [R1, 1, 1, 0, 0, T0 + 120_000, T0 + 120_000],
      [R2, 1, 1, 0, 1, T0 + 121_000, T0 + 121_000],
    ],
  );
  assert.equal(h[2].changes[0].message, "b's");
  assert.ok(h[0].version instanceof Uint8Array);
  // Each group's version opens at what the document showed just after it.
  assert.deepEqual(
    h.map((g) => a.at(g.version).text("t")),
    ["bc", "bcd", "😀bcd"],
  );
  assert.deepEqual(h.at(-1).version, a.version());
  // Without a gap, every change is its own group.
  assert.equal(a.history(0).length, 4);
  assert.throws(() => a.history(-5), /gapMs/);
  // An empty document has no history.
  assert.deepEqual(new Doc(R3).history(1000), []);
});

// PROTOCOL.md, "Golden vectors", version 3 (the same hex as
// crates/chorus-doc/tests/it/golden.rs GOLDEN_META).
const GOLDEN_META =
  "43485253030200000000000000000000000000000001000000000000000000000000000000020100017401001802020c8402000102000002020002030101000002000000000005486921c2a100000017020000020380a0abfef96205477265657400000101e807";

test("the format version 3 update (change metadata) is pinned", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.transact([["insertText", "t", 0, "Hi"]], { message: "Greet", time: 1_700_000_000_000 });
  a.transact([["insertText", "t", 2, "!"]], { time: 1_700_000_000_500 });
  b.applyUpdate(a.encode());
  b.insertText("t", 0, "¡"); // no metadata
  a.applyUpdate(b.encodeSince(a.version()));
  const bytes = a.encode();
  assert.equal(bytes[4], 3, "an update with change metadata is version 3");
  assert.equal(hex(bytes), GOLDEN_META);

  const back = Doc.decode(unhex(GOLDEN_META), R3);
  back.check();
  assert.equal(back.text("t"), "¡Hi!");
  assert.deepEqual(runs(back.blame("t")), [
    [0, 1, R2, null, null],
    [1, 3, R1, "Greet", 1_700_000_000_000],
    [3, 4, R1, null, 1_700_000_000_500],
  ]);
  assert.equal(hex(back.encode()), GOLDEN_META);
  // Without metadata an update stays version 2.
  const plain = new Doc(R3);
  plain.insertText("t", 0, "x");
  assert.equal(plain.encode()[4], 2);
});

test("the history panel's pieces: blame runs cut by what changed since, in UTF-16 units", async () => {
  const { pieces, whatChanged } = await import("../src/history.js");
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.transact([["insertText", "body", 0, "one 😀 two"]], { time: T0 });
  syncDocs(a, b);
  b.transact([["insertText", "body", 4, "🎉"]], { time: T0 + 1 }); // "one 🎉😀 two"
  syncDocs(a, b);
  const v = a.version();
  a.transact([["deleteText", "body", 6, 2], ["insertText", "body", 0, ">"]], { time: T0 + 2 });
  assert.equal(a.text("body"), ">one 🎉 two");
  const then = a.at(v).text("body");
  const delta = a.diff(v, a.version()).changes.find((c) => c.kind === "text").diff;
  const got = pieces(then, a.blame("body", v), delta);
  assert.deepEqual(got, [
    { added: ">" },
    { text: "one ", replica: R1, gone: false },
    { text: "🎉", replica: R2, gone: false },
    { text: "😀", replica: R1, gone: true },
    { text: " two", replica: R1, gone: false },
  ]);
  // The pieces that are not additions spell the old text.
  assert.equal(got.map((p) => p.text ?? "").join(""), then);
  assert.deepEqual(pieces("", [], []), []);
  assert.deepEqual(pieces("", [], [{ insert: "x" }]), [{ added: "x" }]);
  const h = a.history(60_000);
  assert.equal(whatChanged(h[0]), "+9 −0 chars"); // "one 😀 two" is 9 chars
  assert.equal(whatChanged(h.at(-1)), "+1 −1 chars");
  assert.equal(whatChanged({ inserted: 0, deleted: 0, other: 2 }), "2 other changes");
});

test("the history panel joins one writer's keystrokes into one piece", async () => {
  const { pieces } = await import("../src/history.js");
  const d = new Doc(R1);
  for (const [i, ch] of [..."abc"].entries()) d.transact([["insertText", "t", i, ch]], { time: T0 + i });
  const v = d.version();
  d.deleteText("t", 1, 2);
  const blame = d.blame("t", v);
  assert.equal(blame.length, 3, "a change per keystroke");
  const delta = d.diff(v, d.version()).changes[0].diff;
  assert.deepEqual(pieces("abc", blame, delta), [
    { text: "a", replica: R1, gone: false },
    { text: "bc", replica: R1, gone: true },
  ]);
});

test("undo and redo record the options they are given", () => {
  const d = new Doc(R1);
  const undo = new UndoManager(d, 0);
  d.transact([["insertText", "t", 0, "abc"]], { message: "type", time: T0 });
  assert.equal(undo.undo(T0 + 10, { message: "undo", time: T0 + 10 }), true);
  assert.equal(d.text("t"), "");
  assert.equal(undo.redo(T0 + 20, { time: T0 + 20 }), true);
  assert.equal(d.text("t"), "abc");
  const changes = d.history(0).flatMap((g) => g.changes.map((c) => [c.message, c.time]));
  assert.deepEqual(changes, [
    ["type", T0],
    ["undo", T0 + 10],
    [null, T0 + 20],
  ]);
  assert.throws(() => undo.undo(T0, "no"), /commit options are an object/);
});
