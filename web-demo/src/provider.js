// A WebSocket provider: keeps one Chorus document in sync with a relay.
//
// It drives the engine's sans-IO `Session` over a WebSocket: a fresh session per
// connection, so every (re)connection resyncs by version vector and sends exactly what
// the relay lacks, edits made offline included. It reconnects with exponential backoff
// and jitter, shares presence through `Awareness`, and reports "saved" when the relay's
// `Ack` covers every op this replica made. Frames leave only once the ops they may
// carry are stored in IndexedDB (see `Persister`).

import { Session, decodeVersion } from "../pkg/chorus_wasm.js";

const TICK_MS = 1000;
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 10_000;
/** Close codes after which reconnecting would be refused again: 1003, 1007, 1008. */
const FINAL = new Set([1003, 1007, 1008]);

/**
 * Events (an `EventTarget`): `status` (detail: the status object), `presence` (the
 * peers' states changed), `synced` (the first handshake of a connection completed).
 */
export class ChorusProvider extends EventTarget {
  /**
   * @param {object} o
   * @param {string} o.url WebSocket URL of the document (`ws://host/ws/doc?token=…`).
   * @param {string} o.docId
   * @param {import("../pkg/chorus_wasm.js").Doc} o.doc
   * @param {import("../pkg/chorus_wasm.js").Awareness} o.awareness
   * @param {import("./store.js").Persister} o.persister
   */
  constructor({ url, docId, doc, awareness, persister, now = () => Date.now() }) {
    super();
    this.url = url;
    this.docId = docId;
    this.doc = doc;
    this.awareness = awareness;
    this.persister = persister;
    this.now = now;
    this.replica = doc.replicaId();
    this.online = false; // wanted by the user
    this.ws = null;
    this.session = null;
    this.connected = false; // the handshake with the relay completed
    this.attempt = 0;
    this.retryAt = null;
    this.retryTimer = null;
    this.lastClose = null; // { code, reason }
    this.refused = null; // the close that stopped reconnecting, if any
    this.refusalMessage = null; // the relay's last Error frame, if any
    this.ackedSeq = 0; // how many of our ops the relay has stored
    this.queue = []; // frames waiting for IndexedDB: { frame, need, ws }
    this.draining = false;
    this.tickTimer = setInterval(() => this.tick(), TICK_MS);
    this.onBrowserOnline = () => {
      if (this.online && !this.ws) this.reconnectNow();
    };
    globalThis.addEventListener?.("online", this.onBrowserOnline);
  }

  /** Goes online: connects now and keeps reconnecting until `disconnect()`. */
  connect() {
    this.online = true;
    this.refused = null;
    this.reconnectNow();
  }

  /** Goes offline: closes the connection; edits go on locally and are kept. */
  disconnect() {
    this.online = false;
    clearTimeout(this.retryTimer);
    this.retryAt = null;
    if (this.ws) {
      const ws = this.ws;
      this.dropSocket();
      ws.close(1000, "offline");
    }
    this.emitStatus();
  }

  destroy() {
    this.disconnect();
    clearInterval(this.tickTimer);
    globalThis.removeEventListener?.("online", this.onBrowserOnline);
  }

  /** Call after every local change: sends the delta if connected. */
  localChange() {
    if (this.session && this.connected) {
      const frame = this.session.localChange(this.doc);
      if (frame) this.send(frame);
    }
    this.emitStatus();
  }

  /** Sends an awareness frame (from `Awareness.setLocal`) if connected. */
  sendPresence(frame) {
    if (this.session && this.connected) this.send(frame);
  }

  /**
   * `{ state, online, connected, unsaved, retryInMs, closed, refused, storedLocally,
   * storageError }`:
   * `state` is `offline` (switched off, or refused by the relay: `refused` says how),
   * `connecting`, `saving` or `saved`; `unsaved` how many of our ops the relay has not
   * acknowledged; `storedLocally` whether every change is in IndexedDB.
   */
  status() {
    const own = decodeVersion(this.doc.version())[this.replica] ?? 0;
    const unsaved = Math.max(0, own - this.ackedSeq);
    let state;
    if (!this.online) state = "offline";
    else if (!this.connected) state = "connecting";
    else state = unsaved > 0 ? "saving" : "saved";
    return {
      state,
      online: this.online,
      connected: this.connected,
      unsaved,
      retryInMs: this.retryAt === null ? null : Math.max(0, this.retryAt - this.now()),
      closed: this.lastClose,
      refused: this.refused,
      storedLocally: this.persister.idle,
      storageError: this.persister.error,
    };
  }

  emitStatus() {
    this.dispatchEvent(new CustomEvent("status", { detail: this.status() }));
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.retryAt = null;
    if (!this.ws) this.open();
  }

  open() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.session = new Session(this.docId);
    this.connected = false;
    const session = this.session;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      // The Hello carries our version vector: the relay answers with what we lack
      // and learns what it lacks.
      this.send(session.open(this.doc));
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (typeof ev.data === "string") {
        this.fail(ws, 1003, "text frame where binary is expected");
        return;
      }
      this.receive(ws, session, new Uint8Array(ev.data));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.lastClose = { code: ev.code, reason: ev.reason };
      this.dropSocket();
      if (FINAL.has(ev.code)) {
        // The relay refused what we sent (a policy, a malformed or a text frame):
        // trying again would be refused again. Going online again retries.
        this.online = false;
        this.refused = { ...this.lastClose, message: this.refusalMessage ?? null };
      } else if (this.online) {
        this.scheduleReconnect();
      }
      this.emitStatus();
    };
    ws.onerror = () => {
      // A close event follows; it schedules the reconnect.
    };
    this.emitStatus();
  }

  receive(ws, session, frame) {
    // Replies carry no op of ours made after this moment: the ops this frame brings
    // need not be stored before they go out (they are the relay's already).
    const need = this.persister.wanted;
    let r;
    try {
      r = session.receive(this.doc, frame);
    } catch (e) {
      if (e.remote) {
        // The relay refused something and is closing the connection; its close code
        // decides what follows. Its message says more than the close reason can.
        console.warn("chorus: the relay refused:", e.message);
        this.refusalMessage = e.message;
        return;
      }
      // The relay broke the protocol (or sent bytes we cannot read): tell it, close,
      // and let the backoff try again; the document is unchanged.
      console.error("chorus: bad frame from the relay:", e);
      if (e.frame) ws.send(e.frame);
      this.fail(ws, 1007, String(e.message ?? e).slice(0, 120));
      return;
    }
    for (const reply of r.reply) this.send(reply, need);
    if (r.acked) {
      const seq = decodeVersion(r.acked)[this.replica] ?? 0;
      if (seq > this.ackedSeq) this.ackedSeq = seq;
    }
    if (r.awareness) {
      this.awareness.apply(r.awareness, this.now());
      this.dispatchEvent(new CustomEvent("presence"));
    }
    if (!this.connected && session.isLive()) {
      this.connected = true;
      this.attempt = 0;
      this.lastClose = null;
      this.refusalMessage = null;
      // Our presence, as a frame holding only our own entry (the relay refuses
      // presence for other replicas from a client).
      const state = this.awareness.localState();
      if (state !== null) this.send(this.awareness.setLocal(state, this.now()));
      this.dispatchEvent(new CustomEvent("synced"));
      this.dispatchEvent(new CustomEvent("presence"));
    }
    this.emitStatus();
  }

  /** Queues a frame for the current socket; it leaves once its ops are stored locally. */
  send(frame, need = this.persister.wanted) {
    if (!this.ws) return;
    this.queue.push({ frame, need, ws: this.ws });
    this.drain();
  }

  async drain() {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.queue.length > 0) {
        const head = this.queue[0];
        if (head.need > this.persister.stored) {
          await this.persister.flushed();
          continue; // the queue may have been dropped meanwhile
        }
        this.queue.shift();
        if (head.ws === this.ws && head.ws.readyState === WebSocket.OPEN) head.ws.send(head.frame);
      }
    } finally {
      this.draining = false;
    }
  }

  /** Closes a connection whose relay broke the protocol (4000 + the WebSocket code). */
  fail(ws, code, reason) {
    this.lastClose = { code, reason };
    this.dropSocket();
    try {
      ws.close(4000 + code, reason);
    } catch {
      ws.close();
    }
    if (this.online) this.scheduleReconnect();
    this.emitStatus();
  }

  dropSocket() {
    if (this.ws) {
      this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    }
    this.ws = null;
    this.session = null;
    this.connected = false;
    this.queue = [];
    this.dispatchEvent(new CustomEvent("presence"));
  }

  scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt = Math.min(this.attempt + 1, 16);
    this.retryAt = this.now() + delay;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryAt = null;
      if (this.online && !this.ws) this.open();
    }, delay);
  }

  tick() {
    const now = this.now();
    const t = this.awareness.tick(now);
    if (t.removed.length || t.added.length || t.updated.length) {
      this.dispatchEvent(new CustomEvent("presence"));
    }
    if (this.session && this.connected) {
      if (t.frame) this.send(t.frame);
      const hello = this.session.tick(this.doc);
      if (hello) this.send(hello);
    }
    if (this.retryAt !== null) this.emitStatus();
  }
}
