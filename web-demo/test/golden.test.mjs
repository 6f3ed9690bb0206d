// The golden byte vectors of PROTOCOL.md, built through the WebAssembly API. The same
// hex is pinned by crates/chorus-doc/tests/it/golden.rs and
// crates/chorus-sync/tests/it/golden.rs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { wasm, R1, R2, R3, hex, unhex } from "./_wasm.mjs";

const { Doc, Session, UndoManager } = wasm;

const GOLDEN_FULL =
  "43485253020200000000000000000000000000000001000000000000000000000000000000020100017401001e03030c01240200010300000003020001030301010100020002000200040000074869f09f9880210000";
const GOLDEN_ALL =
  "434852530201000000000000000000000000000000010800016304000172050001730600017807036d617800016d0305037375620300016c020001740100630d0d0f0b0b0b0b0313230b0808010301000d000000000000000000000000000d020000000000000000000000000d0101010101010101010202010108000102030405060700000600050004000d15058080a01f008180a01f008280a01f00000001000000026162002c050174040000000000000440030e016b0204676f6e650602010204676f6e650373756203016e000501610302";
const GOLDEN_HELLO =
  "01010105646f632d3100000000000000000000000000000002010000000000000000000000000000000103";
const GOLDEN_DELTA =
  "0102010000000000000000000000000000000103434852530201000000000000000000000000000000010100017401001101010c010001000102010301000000000000034869210000";
const GOLDEN_ACK = "0103010000000000000000000000000000000103";
const GOLDEN_AWARENESS =
  "01040200000000000000000000000000000001071d7b22636f6c6f72223a2223653333222c2275736572223a22416e6e227d000000000000000000000000000000020200";
const GOLDEN_ERROR = "010500090a62616420757064617465";

/** Two replicas: 1 types "Hi😀", 2 appends "!" while 1 deletes "i". */
function sample() {
  const a = new Doc(R1);
  const b = new Doc(R2);
  a.insertText("t", 0, "Hi😀");
  b.applyUpdate(a.encode());
  b.insertText("t", 4, "!"); // after the emoji: 4 UTF-16 units
  a.deleteText("t", 1, 1);
  a.applyUpdate(b.encodeSince(a.version()));
  return a;
}

/** Every type, then an undone delete (as golden.rs's sample_all). */
function sampleAll() {
  const a = new Doc(R1);
  a.transact([
    ["counterAdd", "c", -3],
    ["setRegister", "r", "t", 1000],
    ["setMulti", "s", 2.5, 1000],
    ["setMerged", "x", "max", 7, 1000],
    ["mapSet", "m", "k", true],
    ["mapSet", "m", "gone", new Uint8Array([1, 2])],
    ["mapDelete", "m", "gone"],
    ["mapSet", ["m", "sub"], "n", null],
    ["listInsert", "l", 0, ["a", 1]],
    ["insertText", "t", 0, "ab"],
  ]);
  const u = new UndoManager(a, 0);
  a.deleteText("t", 0, 1);
  assert.equal(u.undo(1), true);
  return a;
}

test("the full-state update is pinned", () => {
  const doc = sample();
  assert.equal(doc.text("t"), "H😀!");
  assert.equal(hex(doc.encode()), GOLDEN_FULL);
  const back = Doc.decode(unhex(GOLDEN_FULL), R3);
  assert.equal(back.text("t"), "H😀!");
  assert.equal(back.textLength("t"), 4);
  assert.deepEqual(back.version(), doc.version());
  assert.deepEqual(wasm.decodeVersion(back.version()), { [R1]: 4, [R2]: 1 });
});

test("the every-type update is pinned", () => {
  const doc = sampleAll();
  assert.equal(hex(doc.encode()), GOLDEN_ALL);
  const back = Doc.decode(unhex(GOLDEN_ALL), R3);
  back.check();
  assert.deepEqual(back.toJSON(), doc.toJSON());
  assert.equal(back.text("t"), "ab");
  assert.equal(back.counterValue("c"), -3);
  assert.equal(back.register("r"), "t");
  assert.equal(back.multi("s"), 2.5);
  assert.equal(back.merged("x", "max"), 7);
  assert.deepEqual(back.mapKeys("m"), ["k", "sub"]);
  assert.equal(back.mapGet(["m", "sub"], "n"), null);
  assert.deepEqual(back.list("l"), ["a", 1]);
  assert.equal(hex(back.encode()), GOLDEN_ALL);
});

/** Replica 1 typed "Hi!" (3 ops): version { 1: 3 }. */
function hiDoc() {
  const d = new Doc(R1);
  d.insertText("t", 0, "Hi!");
  return d;
}

const vv = () => wasm.encodeVersion({ [R1]: 3 });

test("the Hello frame is pinned", () => {
  const d2 = new Doc(R2);
  d2.applyUpdate(hiDoc().encode());
  assert.equal(hex(new Session("doc-1").open(d2)), GOLDEN_HELLO);
  const m = { type: "hello", protocol: 1, doc: "doc-1", replica: R2, version: vv() };
  assert.equal(hex(wasm.encodeMessage(m)), GOLDEN_HELLO);
  assert.deepEqual(wasm.decodeMessage(unhex(GOLDEN_HELLO)), m);
});

test("the Delta and Ack frames are pinned", () => {
  const d = hiDoc();
  assert.deepEqual(d.version(), vv());
  const s = new Session("doc-1");
  const peerHello = wasm.encodeMessage({
    type: "hello",
    doc: "doc-1",
    replica: R2,
    version: wasm.encodeVersion({}),
  });
  const r = s.receive(d, peerHello);
  assert.equal(r.reply.length, 2);
  assert.equal(wasm.decodeMessage(r.reply[0]).type, "hello");
  assert.equal(hex(r.reply[1]), GOLDEN_DELTA);
  assert.equal(
    hex(wasm.encodeMessage({ type: "delta", version: vv(), update: d.encode() })),
    GOLDEN_DELTA,
  );
  const delta = wasm.decodeMessage(unhex(GOLDEN_DELTA));
  assert.equal(delta.type, "delta");
  assert.deepEqual(delta.version, vv());
  assert.equal(Doc.decode(delta.update, R3).text("t"), "Hi!");

  assert.ok(s.isLive());
  assert.equal(hex(s.ack(d.version())), GOLDEN_ACK);
  assert.equal(s.ack(d.version()), undefined); // not news
  assert.equal(hex(wasm.encodeMessage({ type: "ack", version: vv() })), GOLDEN_ACK);
  assert.deepEqual(wasm.decodeMessage(unhex(GOLDEN_ACK)), { type: "ack", version: vv() });
  // A session receiving the Ack reports it.
  const r2 = s.receive(d, unhex(GOLDEN_ACK));
  assert.deepEqual(r2.acked, vv());
  assert.deepEqual(s.peerAcked(), vv());
});

test("the Awareness frame is pinned", () => {
  const m = {
    type: "awareness",
    entries: [
      { replica: R1, clock: 7, state: { user: "Ann", color: "#e33" } },
      { replica: R2, clock: 2, state: null },
    ],
  };
  assert.equal(hex(wasm.encodeMessage(m)), GOLDEN_AWARENESS);
  const back = wasm.decodeMessage(unhex(GOLDEN_AWARENESS));
  assert.deepEqual(back, m);
  // An Awareness takes the frame as it is.
  const p = new wasm.Awareness(R3);
  assert.deepEqual(p.apply(unhex(GOLDEN_AWARENESS), 0).added, [R1]);
  assert.deepEqual(p.states(), [{ replica: R1, state: { color: "#e33", user: "Ann" } }]);
});

test("the Error frame is pinned", () => {
  const m = { type: "error", code: 9, message: "bad update" };
  assert.equal(hex(wasm.encodeMessage(m)), GOLDEN_ERROR);
  assert.deepEqual(wasm.decodeMessage(unhex(GOLDEN_ERROR)), m);
  // A session that receives it reports the peer's error.
  const s = new Session("doc-1");
  assert.throws(() => s.receive(new Doc(R1), unhex(GOLDEN_ERROR)), /bad update/);
});

test("truncated golden frames are typed errors", () => {
  for (const g of [GOLDEN_HELLO, GOLDEN_ACK, GOLDEN_AWARENESS, GOLDEN_ERROR]) {
    const b = unhex(g);
    for (let cut = 0; cut < b.length; cut++) {
      assert.throws(() => wasm.decodeMessage(b.slice(0, cut)), (e) => typeof e.code === "number");
    }
  }
});
