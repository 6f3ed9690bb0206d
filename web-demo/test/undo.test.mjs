// Undo and redo of this replica's own edits.
import { test } from "node:test";
import assert from "node:assert/strict";
import { wasm, R1, R2, syncDocs } from "./_wasm.mjs";

const { Doc, UndoManager } = wasm;

test("undo and redo an insert and a delete", () => {
  const d = new Doc(R1);
  const u = new UndoManager(d, 0);
  assert.equal(u.canUndo(), false);
  assert.equal(u.undo(), false);
  d.insertText("t", 0, "hello 👍🏽");
  d.deleteText("t", 0, 1);
  assert.equal(d.text("t"), "ello 👍🏽");
  assert.ok(u.canUndo());
  assert.equal(u.undo(), true);
  assert.equal(d.text("t"), "hello 👍🏽");
  assert.ok(u.canRedo());
  assert.equal(u.undo(), true);
  assert.equal(d.text("t"), "");
  assert.equal(u.canUndo(), false);
  assert.equal(u.redo(), true);
  assert.equal(d.text("t"), "hello 👍🏽");
  assert.equal(u.redo(), true);
  assert.equal(d.text("t"), "ello 👍🏽");
  assert.equal(u.canRedo(), false);
  // A new edit clears the redo stack.
  u.undo();
  d.insertText("t", 0, "X");
  assert.equal(u.canRedo(), false);
  d.check();
});

test("edits within captureMs join one step; transact is one step", () => {
  const d = new Doc(R1);
  const u = new UndoManager(d, 60_000);
  d.insertText("t", 0, "a");
  d.insertText("t", 1, "b");
  u.stopCapturing();
  d.transact([
    ["insertText", "t", 2, "c"],
    ["counterAdd", "n", 4],
  ]);
  u.undo(0);
  assert.equal(d.text("t"), "ab");
  assert.equal(d.counterValue("n"), 0);
  u.undo(0);
  assert.equal(d.text("t"), "");
});

test("two replicas: undo affects only the local user's edits, and syncs", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  const ua = new UndoManager(a, 0);
  const ub = new UndoManager(b, 0);
  a.insertText("t", 0, "alice ");
  syncDocs(a, b);
  b.insertText("t", b.textLength("t"), "bob");
  a.deleteText("t", 0, 1);
  syncDocs(a, b);
  assert.equal(a.text("t"), "lice bob");
  // a undoes its delete: only the "a" comes back; bob's text stays.
  ua.undo();
  syncDocs(a, b);
  assert.equal(b.text("t"), "alice bob");
  // b undoes its insert.
  ub.undo();
  syncDocs(a, b);
  assert.equal(a.text("t"), "alice ");
  assert.equal(b.text("t"), "alice ");
  // a undoes its insert; b redoes its own.
  ua.undo();
  ub.redo();
  syncDocs(a, b);
  assert.equal(a.text("t"), "bob");
  assert.equal(b.text("t"), "bob");
  assert.equal(ua.canUndo(), false);
  a.check();
  b.check();
});

test("undo of a counter and a register", () => {
  const d = new Doc(R1);
  const u = new UndoManager(d, 0);
  d.counterAdd("c", 5);
  d.setRegister("r", "one", 1000);
  d.setRegister("r", "two", 2000);
  u.undo(3000);
  assert.equal(d.register("r"), "one");
  u.undo(4000);
  assert.equal(d.register("r"), undefined);
  u.undo(5000);
  assert.equal(d.counterValue("c"), 0);
});
