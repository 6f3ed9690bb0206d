// Text positions count UTF-16 code units, like JavaScript strings.
import { test } from "node:test";
import assert from "node:assert/strict";
import { wasm, R1, R2, R3, syncDocs, link } from "./_wasm.mjs";

const { Doc } = wasm;

// 👍🏽 is two astral code points (4 UTF-16 units), 𝄞 one (2 units); "é" below is
// "e" plus a combining acute accent (2 units, 2 code points).
const THUMB = "👍🏽";
const CLEF = "𝄞";
const E_ACUTE = "e\u0301";

test("lengths are UTF-16 units", () => {
  const d = new Doc(R1);
  const s = `a${THUMB}b${CLEF}c${E_ACUTE}`;
  d.insertText("t", 0, s);
  assert.equal(d.text("t"), s);
  assert.equal(d.textLength("t"), s.length);
  assert.equal(s.length, 1 + 4 + 1 + 2 + 1 + 2);
  assert.equal(d.textLength("none"), 0);
  assert.equal(d.text("none"), "");
});

test("insert and delete around astral characters and combining marks", () => {
  const d = new Doc(R1);
  let shadow = "";
  const ins = (pos, str) => {
    d.insertText("t", pos, str);
    shadow = shadow.slice(0, pos) + str + shadow.slice(pos);
    assert.equal(d.text("t"), shadow);
  };
  const del = (pos, len) => {
    d.deleteText("t", pos, len);
    shadow = shadow.slice(0, pos) + shadow.slice(pos + len);
    assert.equal(d.text("t"), shadow);
  };
  ins(0, `x${THUMB}y`);
  ins(1, CLEF); // between x and the thumb
  ins(shadow.indexOf("y"), E_ACUTE); // after the thumb's skin tone
  ins(shadow.length, THUMB);
  assert.equal(d.textLength("t"), shadow.length);
  del(shadow.indexOf(CLEF), CLEF.length);
  // Remove only the skin-tone modifier (2 units) of the first thumb.
  del(shadow.indexOf(THUMB) + 2, 2);
  // The combining accent alone.
  del(shadow.indexOf("\u0301"), 1);
  del(0, shadow.length);
  assert.equal(d.text("t"), "");
  d.check();
});

test("an edit that splits a surrogate pair throws and changes nothing", () => {
  const d = new Doc(R1);
  d.insertText("t", 0, `a${CLEF}b`);
  const before = d.encode();
  assert.throws(() => d.insertText("t", 2, "!"), Error);
  assert.throws(() => d.deleteText("t", 1, 1), Error);
  assert.throws(() => d.deleteText("t", 2, 2), Error);
  assert.throws(() => d.insertText("t", 99, "!"), /out of range|range|position/i);
  assert.deepEqual(d.encode(), before);
  assert.equal(d.text("t"), `a${CLEF}b`);
});

test("two docs converge through encode/applyUpdate", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.insertText("t", 0, `${THUMB}${CLEF}`);
  b.applyUpdate(a.encode());
  assert.equal(b.text("t"), `${THUMB}${CLEF}`);
  // Concurrent edits at astral boundaries.
  a.insertText("t", 4, "A");
  b.insertText("t", 4, "B");
  b.deleteText("t", 5, 2); // b removes the clef (after 👍🏽 and "B")
  a.insertText("t", 0, E_ACUTE);
  syncDocs(a, b);
  assert.equal(a.text("t"), b.text("t"));
  assert.equal(a.textLength("t"), a.text("t").length);
  assert.ok(!a.text("t").includes(CLEF));
  assert.ok(a.text("t").startsWith(`${E_ACUTE}${THUMB}`));
  assert.deepEqual(a.toJSON(), b.toJSON());
  assert.deepEqual(a.version(), b.version());
  a.check();
  b.check();
});

test("two docs converge through two Sessions", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.insertText("t", 0, `hello ${THUMB}`);
  b.insertText("t", 0, `${CLEF} world`);
  const l = link(a, b);
  l.pump();
  assert.ok(l.a.isLive() && l.b.isLive());
  assert.equal(l.a.peer(), R2);
  assert.equal(a.text("t"), b.text("t"));
  for (let i = 0; i < 20; i++) {
    const d = i % 2 ? a : b;
    const len = d.textLength("t");
    d.insertText("t", i % 3 === 0 ? 0 : len, i % 2 ? THUMB : E_ACUTE);
    l.changed();
    assert.equal(a.text("t"), b.text("t"));
  }
  // A tick confirms versions once; then an idle, in-sync link sends nothing.
  l.sendFromA(l.a.tick(a));
  l.sendFromB(l.b.tick(b));
  l.pump();
  l.sendFromA(l.a.tick(a));
  l.sendFromB(l.b.tick(b));
  l.pump();
  assert.equal(l.a.tick(a), undefined);
  assert.equal(l.b.tick(b), undefined);
});

test("cursors survive concurrent edits, in UTF-16 units", () => {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.insertText("t", 0, `ab${THUMB}cd`);
  b.applyUpdate(a.encode());
  const at = a.textLength("t") - 2; // before "c"
  const cur = a.cursorAt("t", at, "after");
  const start = a.cursorAt("t", 0, "before");
  assert.ok(cur instanceof Uint8Array);
  b.insertText("t", 0, CLEF);
  b.deleteText("t", 1 + 2, 1); // "b"
  a.applyUpdate(b.encodeSince(a.version()));
  assert.equal(a.resolveCursor("t", cur), a.text("t").indexOf("c"));
  assert.equal(b.resolveCursor("t", cur), b.text("t").indexOf("c"));
  assert.equal(a.resolveCursor("t", start), 0);
  // A cursor on text this doc has never seen.
  const c = new Doc(R3);
  assert.equal(c.resolveCursor("t", cur), undefined);
  assert.throws(() => a.cursorAt("t", 4, "sideways"), /assoc/);
  assert.throws(() => a.resolveCursor("t", new Uint8Array([0xff])), Error);
});
