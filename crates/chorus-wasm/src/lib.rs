//! Chorus in the browser: the same engine, compiled to WebAssembly, through
//! wasm-bindgen.
//!
//! `scripts/build-wasm.sh` builds it into `web-demo/pkg` (ES module, for the browser)
//! and `web-demo/pkg-node` (CommonJS, for the node:test suite in `web-demo/test`).
//! Two replicas converging, in JavaScript:
//!
//! ```js
//! import init, { Doc } from "./pkg/chorus_wasm.js";
//! await init();
//! const alice = new Doc(), bob = new Doc();
//! alice.insertText("body", 0, "Hello 👍🏽");
//! bob.insertText("body", 0, "world");
//! bob.applyUpdate(alice.encodeSince(bob.version()));
//! alice.applyUpdate(bob.encodeSince(alice.version()));
//! console.assert(alice.text("body") === bob.text("body"));
//! ```
//!
//! # The JavaScript API
//!
//! Positions and lengths of text count **UTF-16 code units**, like JavaScript strings,
//! CodeMirror and the DOM; an edit that would split a surrogate pair throws. Replica
//! ids are 32 lowercase hex digits. Versions are `Uint8Array`s in the `vv` encoding of
//! PROTOCOL.md (what `Hello`, `Delta` and `Ack` frames carry). Every failure throws a
//! JS `Error` with the engine's message; nothing panics across the boundary.
//!
//! **`Doc`** — `new Doc(replicaHex?)` (random id when omitted), `Doc.decode(bytes,
//! replicaHex?)`, `replicaId()`.
//! - Text: `insertText(field, pos, str)`, `deleteText(field, pos, len)`, `text(field)`,
//!   `textLength(field)`.
//! - Counter: `counterAdd(field, delta)`, `counterValue(field)`.
//! - Registers: last-writer-wins `setRegister(field, value, nowMs)` / `register(field)`;
//!   multi-value `setMulti(field, value, nowMs)` / `multi(field)` / `conflicts(field)`
//!   (`[{ value, replica, timeMs, lamport }]` while concurrent writes differ; a new
//!   `setMulti` resolves them); merge rules `setMerged(field, rule, value, nowMs)` /
//!   `merged(field, rule)` with rule `"max"`, `"min"` or `"union"`. `nowMs` is the
//!   caller's clock (`Date.now()`): the engine reads none.
//! - Maps: `mapSet(path, key, value)`, `mapGet(path, key)`, `mapDelete(path, key)`,
//!   `mapKeys(path)`, `mapConflicts(path, key)` (the concurrent writes a key holds, as
//!   for registers); `path` is a root field name or `[field, key, …]` for nested maps
//!   (created as needed). A nested container reads as `{ container: kind }`.
//! - `fieldConflicts()`: root names used with more than one kind, `[{ name, kinds }]`.
//! - Lists: `listInsert(field, pos, values[])`, `listDelete(field, pos, len)`,
//!   `list(field)`.
//! - Values are `null`, booleans, numbers (integral ones are stored as integers),
//!   bigints, strings, `Uint8Array`s and arrays of these.
//! - Each edit method commits one transaction. `transact([[method, ...args], …],
//!   options?)` makes several edits one transaction (one change, one event, one undo
//!   step), all or none; `options` `{ message?, time? }` (time in ms since the epoch,
//!   `Date.now()`) are recorded with the change and travel with its operations.
//! - Sync: `encode()`, `version()`, `encodeSince(version)`, `applyUpdate(bytes)` →
//!   `{ applied, duplicate, pending, rejected }`; `toJSON()`; `check()`.
//! - Events: `observe(cb)` → id, `unobserve(id)`. After every commit and every applied
//!   update, `cb({ origin, changes })` where `origin` is `"local"` or an array of the
//!   remote replica ids, and each change is `{ path, kind, diff }`: `path` the field
//!   name then map keys; `kind` one of `text`, `list`, `map`, `counter`, `register`,
//!   `multi`, `merge:<rule>`; `diff` for text an array of `{ retain: n }`,
//!   `{ insert: str }`, `{ delete: n }` in UTF-16 units against the text before (lists
//!   alike, with arrays of values), for counters `{ delta, value }`, for registers
//!   `{ value, conflicts, wasConflict }`, for maps `[{ key, value | deleted: true,
//!   conflict }]`. Callbacks run after the change, with the document free to read.
//! - Cursors: `cursorAt(field, pos, "after" | "before")` → bytes (to keep, or to send
//!   in presence), `resolveCursor(field, bytes)` → position or `undefined`.
//! - History: a version is `version()`'s bytes or `versionText()`'s URL-safe text
//!   (`versionToText(bytes)`, `versionFromText(text)`); every method below takes either.
//!   `at(version)` → a read-only `Checkout` (`text(field)`, `blame(field)`,
//!   `counterValue`, `register`, `list`, `toJSON()`, `version()`, `versionText()`);
//!   `diff(from, to)` → the event `observe` delivers for going from one to the other;
//!   `revertTo(version, timeMs, message?)` makes the document show `version` again with
//!   new operations (one undoable change that syncs and keeps concurrent edits) →
//!   whether anything differed; `blame(field, version?)` → `[{ start, end, replica,
//!   seqStart, seqEnd, lamport, time, message }]` in UTF-16 units; `history(gapMs)` →
//!   `[{ replica, changes, inserted, deleted, other, firstTime, lastTime, version }]`,
//!   oldest first. A version this replica lacks operations of throws ("unknown
//!   version … sync first").
//!
//! **`UndoManager`** — `new UndoManager(doc, captureMs = 500)` records every later edit
//! made through `doc`'s methods (edits closer than `captureMs` join one step);
//! `undo(nowMs?)`, `redo(nowMs?)` (→ whether something was done), `canUndo()`,
//! `canRedo()`, `stopCapturing()`, `clear()`. Only this replica's edits are undone;
//! undo makes new operations that sync like any edit.
//!
//! **`Session`** — one link to a relay, sans-IO; what a WebSocket provider needs:
//! `new Session(docId)`; on open send `open(doc)`; for every binary message
//! `receive(doc, frame)` → `{ reply: Uint8Array[], applied, acked, awareness }`, send
//! each of `reply`; after local edits send `localChange(doc)` if defined; every second
//! send `tick(doc)` if defined; `ack(version)` after storing durably; `isLive()`,
//! `peer()`, `peerAcked()`, `docId()`. A protocol violation throws an `Error` with
//! `code` and `frame`: send `frame`, then close. An `Error` frame from the peer throws
//! with `remote: true` and the peer's code and message: the peer is closing the link.
//!
//! **`Awareness`** — presence: `new Awareness(doc.replicaId(), timeoutMs = 30000)`;
//! `setLocal(state, nowMs)` and `clearLocal(nowMs)` return the frame to send;
//! `apply(entries | frame, nowMs)` takes a `receive` result's `awareness` (or frame
//! bytes) → `{ added, updated, removed, renewed }`; `states()` → `[{ replica, state }]`;
//! `tick(nowMs)` → the same plus `frame` to send if any; `encodeAll()`.
//!
//! **Frames** — `decodeMessage(bytes)` → `{ type: "hello", protocol, doc, replica,
//! version }`, `{ type: "delta", version, update }`, `{ type: "ack", version }`,
//! `{ type: "awareness", entries: [{ replica, clock, state }] }` or `{ type: "error",
//! code, message }`; `encodeMessage(object)` the inverse. `decodeVersion(bytes)` →
//! `{ replicaHex: nextSeq }` and `encodeVersion(object)`.

mod convert;
mod doc;
mod history;
mod sync;

pub use doc::{Doc, UndoManager};
pub use history::{Checkout, version_from_text, version_to_text};
pub use sync::{
    Awareness, Session, decode_message, decode_version, encode_message, encode_version,
};
