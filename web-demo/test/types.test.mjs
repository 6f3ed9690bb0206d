// Counters, registers, multi-value conflicts, maps and lists over sync; errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { wasm, R1, R2, R3, syncDocs, link } from "./_wasm.mjs";

const { Doc } = wasm;

test("replica ids", () => {
  const d = new Doc();
  assert.match(d.replicaId(), /^[0-9a-f]{32}$/);
  assert.notEqual(d.replicaId(), new Doc().replicaId());
  assert.equal(new Doc(R1).replicaId(), R1);
  assert.equal(new Doc("00000000-0000-0000-0000-000000000002").replicaId(), R2);
  assert.throws(() => new Doc("xyz"), /32 hex digits/);
});

test("counters sum concurrent increments", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.counterAdd("likes", 3);
  b.counterAdd("likes", -1);
  b.counterAdd("likes", 10);
  syncDocs(a, b);
  assert.equal(a.counterValue("likes"), 12);
  assert.equal(b.counterValue("likes"), 12);
  assert.equal(a.counterValue("none"), 0);
  assert.throws(() => a.counterAdd("likes", 1.5), /integer/);
});

test("last-writer-wins registers", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  assert.equal(a.register("title"), undefined);
  a.setRegister("title", "old", 1000);
  b.setRegister("title", "new", 2000);
  syncDocs(a, b);
  assert.equal(a.register("title"), "new");
  assert.equal(b.register("title"), "new");
  // Values of every kind.
  const values = [null, true, 42, -2.5, "text 👍🏽", new Uint8Array([1, 2, 3]), [1, ["x", null]], 2n ** 60n];
  values.forEach((v, i) => a.setRegister(`v${i}`, v, 3000));
  syncDocs(a, b);
  values.forEach((v, i) => assert.deepEqual(b.register(`v${i}`), v));
  assert.throws(() => a.setRegister("bad", { an: "object" }, 1), /map field/);
});

test("multi-value registers show conflicts until a write resolves them", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.setMulti("color", "red", 1000);
  syncDocs(a, b);
  assert.deepEqual(a.conflicts("color"), []);
  a.setMulti("color", "green", 2000);
  b.setMulti("color", "blue", 2500);
  syncDocs(a, b);
  const c = a.conflicts("color");
  assert.deepEqual(b.conflicts("color"), c);
  assert.equal(c.length, 2);
  assert.deepEqual(
    c.map((w) => [w.value, w.replica, w.timeMs]),
    [
      ["green", R1, 2000],
      ["blue", R2, 2500],
    ],
  );
  assert.equal(a.multi("color"), "blue");
  assert.deepEqual(a.toJSON().color, { conflict: ["green", "blue"] });
  // A person picks one: the next write has seen both and resolves them.
  b.setMulti("color", "green", 3000);
  syncDocs(a, b);
  assert.deepEqual(a.conflicts("color"), []);
  assert.equal(a.multi("color"), "green");
  assert.equal(b.multi("color"), "green");
});

test("merge registers", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.setMerged("best", "max", 7, 1000);
  b.setMerged("best", "max", 9, 1000);
  a.setMerged("best", "max", 8, 2000);
  syncDocs(a, b);
  assert.equal(a.merged("best", "max"), 9);
  assert.equal(b.merged("best", "max"), 9);
});

test("maps, nested maps and lists over sync", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.mapSet("settings", "theme", "dark");
  a.mapSet(["settings", "font"], "size", 14);
  b.mapSet("settings", "lang", "fr");
  b.listInsert("todo", 0, ["one", "two"]);
  syncDocs(a, b);
  for (const d of [a, b]) {
    assert.deepEqual(d.mapKeys("settings"), ["font", "lang", "theme"]);
    assert.equal(d.mapGet("settings", "theme"), "dark");
    assert.deepEqual(d.mapGet("settings", "font"), { container: "map" });
    assert.equal(d.mapGet(["settings", "font"], "size"), 14);
    assert.equal(d.mapGet("settings", "missing"), undefined);
    assert.deepEqual(d.list("todo"), ["one", "two"]);
  }
  b.mapDelete("settings", "theme");
  a.listDelete("todo", 0, 1);
  a.listInsert("todo", 1, ["three"]);
  syncDocs(a, b);
  assert.deepEqual(a.toJSON(), b.toJSON());
  assert.deepEqual(a.toJSON(), {
    settings: { font: { size: 14 }, lang: "fr" },
    todo: ["two", "three"],
  });
});

test("map keys written concurrently show their conflict until one write resolves it", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.mapSet("settings", "theme", "dark");
  b.mapSet("settings", "theme", "light");
  syncDocs(a, b);
  for (const d of [a, b]) {
    const cs = d.mapConflicts("settings", "theme");
    assert.deepEqual(
      cs.map((w) => [w.value, w.replica]).sort(),
      [["dark", R1], ["light", R2]],
    );
    // The shown value is the last of the conflicting writes.
    assert.equal(d.mapGet("settings", "theme"), cs[cs.length - 1].value);
  }
  // A value and a nested map at one key conflict too.
  const c = new Doc(R3);
  c.mapSet(["settings", "theme"], "font", "serif");
  syncDocs(a, c);
  assert.equal(a.mapConflicts("settings", "theme").length, 3);
  assert.ok(a.mapConflicts("settings", "theme").some((w) => w.value?.container === "map"));
  // Writing the key after seeing them resolves the conflict everywhere.
  a.mapSet("settings", "theme", "sepia");
  syncDocs(a, b);
  assert.deepEqual(b.mapConflicts("settings", "theme"), []);
  assert.equal(b.mapGet("settings", "theme"), "sepia");
  assert.deepEqual(a.mapConflicts("settings", "nothing"), []);
});

test("a root name used with two kinds is reported and both stay readable", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.insertText("notes", 0, "hello");
  b.counterAdd("notes", 5);
  assert.deepEqual(a.fieldConflicts(), []);
  syncDocs(a, b);
  for (const d of [a, b]) {
    const fc = d.fieldConflicts();
    assert.equal(fc.length, 1);
    assert.equal(fc[0].name, "notes");
    assert.deepEqual([...fc[0].kinds].sort(), ["counter", "text"]);
    assert.equal(d.text("notes"), "hello");
    assert.equal(d.counterValue("notes"), 5);
  }
  assert.deepEqual(a.fieldConflicts()[0].kinds, b.fieldConflicts()[0].kinds);
});

test("everything over two Sessions", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  const l = link(a, b, "room-9");
  a.counterAdd("c", 1);
  a.setMulti("s", 1, 1000);
  b.setMulti("s", 2, 1000);
  b.mapSet("m", "k", [1, 2]);
  l.pump();
  a.insertText("t", 0, "𝄞");
  b.counterAdd("c", 1);
  l.changed();
  assert.deepEqual(a.toJSON(), b.toJSON());
  assert.equal(a.counterValue("c"), 2);
  assert.equal(b.conflicts("s").length, 2);
  assert.equal(b.text("t"), "𝄞");
});

test("a new replica loads the full state; applying twice is a no-op", () => {
  const a = new Doc(R1);
  a.insertText("t", 0, "abc");
  a.counterAdd("c", 2);
  const c = Doc.decode(a.encode(), R3);
  assert.deepEqual(c.toJSON(), a.toJSON());
  assert.equal(c.replicaId(), R3);
  const r = c.applyUpdate(a.encode());
  assert.equal(r.applied, 0);
  assert.ok(r.duplicate > 0);
  assert.deepEqual(wasm.decodeVersion(c.version()), { [R1]: 4 });
  assert.deepEqual(wasm.encodeVersion({ [R1]: 4 }), c.version());
});

test("malformed bytes throw typed errors and change nothing", () => {
  const d = new Doc(R1);
  d.insertText("t", 0, "keep");
  const before = d.encode();
  assert.throws(() => d.applyUpdate(new Uint8Array([1, 2, 3])), /magic|not a chorus|update/i);
  const bad = d.encode();
  assert.throws(() => d.applyUpdate(bad.slice(0, bad.length - 3)));
  for (let i = 0; i < before.length; i++) {
    const flipped = before.slice();
    flipped[i] ^= 0x41;
    try {
      new Doc(R2).applyUpdate(flipped);
    } catch (e) {
      assert.ok(e instanceof Error);
    }
  }
  assert.deepEqual(d.encode(), before);
  assert.throws(() => d.encodeSince(new Uint8Array([5])), /version/);
});

test("a protocol violation throws with the wire code and the Error frame to send", () => {
  const d = new Doc(R1);
  const s = new wasm.Session("doc-1");
  s.open(d);
  const other = wasm.encodeMessage({
    type: "hello",
    doc: "doc-2",
    replica: R2,
    version: new Uint8Array([0]),
  });
  let err;
  try {
    s.receive(d, other);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error);
  assert.equal(err.code, 6);
  const frame = wasm.decodeMessage(err.frame);
  assert.equal(frame.type, "error");
  assert.equal(frame.code, 6);
  assert.equal(err.remote, false);
  assert.throws(() => s.receive(d, new Uint8Array([9, 9])), (e) => e.code === 2 && !e.remote);
  // An Error frame from the peer: its code and message, marked remote.
  const refusal = wasm.encodeMessage({ type: "error", code: 103, message: "not your replica" });
  assert.throws(
    () => new wasm.Session("doc-1").receive(d, refusal),
    (e) => e.remote === true && e.code === 103 && /not your replica/.test(e.message),
  );
});

test("awareness: presence between two replicas", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  const pa = new wasm.Awareness(a.replicaId(), 10_000);
  const pb = new wasm.Awareness(b.replicaId(), 10_000);
  const l = link(a, b);
  l.pump();
  const frame = pa.setLocal({ user: "Ann", cursor: [...a.cursorAt("t", 0)] }, 1000);
  l.sendFromA(frame);
  l.pump();
  assert.equal(l.awareness.b.length, 1);
  const change = pb.apply(l.awareness.b[0], 1000);
  assert.deepEqual(change.added, [R1]);
  const states = pb.states();
  assert.deepEqual(
    states.find((s) => s.replica === R1).state,
    { cursor: [0], user: "Ann" },
  );
  // Frames work too, and a silent replica expires.
  const c2 = pb.apply(pa.setLocal({ user: "Ann B." }, 2000), 2000);
  assert.deepEqual(c2.updated, [R1]);
  const t = pb.tick(20_000);
  assert.deepEqual(t.removed, [R1]);
  assert.equal(pa.localState().user, "Ann B.");
  assert.ok(pa.encodeAll() instanceof Uint8Array);
  const left = pb.apply(pa.clearLocal(21_000), 21_000);
  assert.deepEqual(left.added, []);
});
