// Shared by the tests: the WebAssembly build (CommonJS, from scripts/build-wasm.sh)
// and small helpers. It has no tests of its own.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
export const wasm = require("../pkg-node/chorus_wasm.js");

export const R1 = "00000000000000000000000000000001";
export const R2 = "00000000000000000000000000000002";
export const R3 = "00000000000000000000000000000003";

export const hex = (bytes) => Buffer.from(bytes).toString("hex");
export const unhex = (s) => new Uint8Array(Buffer.from(s, "hex"));

/** Each doc sends the other what it lacks. */
export function syncDocs(a, b) {
  const toB = a.encodeSince(b.version());
  const toA = b.encodeSince(a.version());
  b.applyUpdate(toB);
  a.applyUpdate(toA);
}

/** Applies a UTF-16 text delta (from an event) to a string. */
export function applyDelta(s, delta) {
  let out = "";
  let i = 0;
  for (const op of delta) {
    if ("retain" in op) {
      out += s.slice(i, i + op.retain);
      i += op.retain;
    } else if ("insert" in op) {
      out += op.insert;
    } else if ("delete" in op) {
      i += op.delete;
    } else {
      throw new Error(`unknown delta op ${JSON.stringify(op)}`);
    }
  }
  return out + s.slice(i);
}

/**
 * A link between two docs through two Sessions: `pump()` moves frames both ways until
 * nothing is left to say; `frames` counts them.
 */
export function link(docA, docB, docId = "doc-1") {
  const a = new wasm.Session(docId);
  const b = new wasm.Session(docId);
  const queues = { toA: [], toB: [a.open(docA)] };
  queues.toA.push(b.open(docB));
  const state = { a, b, frames: 0, awareness: { a: [], b: [] } };
  state.pump = () => {
    let rounds = 0;
    while (queues.toA.length || queues.toB.length) {
      if (++rounds > 100) throw new Error("the link does not quiesce");
      for (const f of queues.toB.splice(0)) {
        state.frames++;
        const r = b.receive(docB, f);
        if (r.awareness) state.awareness.b.push(r.awareness);
        queues.toA.push(...r.reply);
      }
      for (const f of queues.toA.splice(0)) {
        state.frames++;
        const r = a.receive(docA, f);
        if (r.awareness) state.awareness.a.push(r.awareness);
        queues.toB.push(...r.reply);
      }
    }
  };
  state.sendFromA = (f) => f && queues.toB.push(f);
  state.sendFromB = (f) => f && queues.toA.push(f);
  /** After local edits on either side. */
  state.changed = () => {
    state.sendFromA(a.localChange(docA));
    state.sendFromB(b.localChange(docB));
    state.pump();
  };
  return state;
}
