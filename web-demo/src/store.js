// The browser's copy of each document, in IndexedDB: edits made offline survive a
// closed tab and are sent when a connection returns.
//
// Layout (database "chorus"):
// - "replicas": key docId → array of replica ids (hex) this browser has written under.
//   A tab takes one that no other open tab holds (a Web Lock per id) or a new one, so
//   the ops an earlier tab made offline under an id go out under that same id: the
//   only id the relay lets a connection author under.
// - "updates": key [docId, replica, timeMs, random] → Uint8Array, an update (a delta or
//   a full state): the log of the tab writing under that replica — its own ops and
//   every op it received. A tab loads only the log of the id it holds, so its document
//   never holds another id's ops the relay may lack (which the relay would refuse from
//   this connection); loading replaces the log with one full state, in one transaction.
//
// Bytes read back are untrusted like any input: an update that fails to apply is
// reported and left in place; the document stays as it was.

const DB_NAME = "chorus";
const DB_VERSION = 1;
const UPDATES = "updates";
const REPLICAS = "replicas";

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error("IndexedDB transaction aborted"));
  });
}

function openDatabase() {
  const req = indexedDB.open(DB_NAME, DB_VERSION);
  req.onupgradeneeded = () => {
    const db = req.result;
    if (!db.objectStoreNames.contains(UPDATES)) db.createObjectStore(UPDATES);
    if (!db.objectStoreNames.contains(REPLICAS)) db.createObjectStore(REPLICAS);
  };
  return request(req);
}

function randomHex(bytes) {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * Holds the Web Lock `name` for the page's lifetime if no one holds it; whether it got
 * it. Without Web Locks (an insecure origin) nothing can be held: no id is reused, as two
 * tabs writing under one id would make different ops with the same ids.
 */
function tryLock(name) {
  if (!navigator.locks) return Promise.resolve(false);
  return new Promise((resolve) => {
    navigator.locks
      .request(name, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        // Held until the page goes away.
        return lock === null ? undefined : new Promise(() => {});
      })
      .catch(() => resolve(false));
  });
}

export class DocStore {
  /** Opens the store of document `docId`; throws if IndexedDB is unavailable. */
  static async open(docId) {
    return new DocStore(await openDatabase(), docId);
  }

  constructor(db, docId) {
    this.db = db;
    this.docId = docId;
    this.replica = null; // set by claimReplica
  }

  /** The keys of the log of the replica this tab holds. */
  get range() {
    return IDBKeyRange.bound([this.docId, this.replica], [this.docId, this.replica, []]);
  }

  newKey() {
    return [this.docId, this.replica, Date.now(), randomHex(4)];
  }

  /**
   * A replica id for this tab: one this browser used before for the document if no
   * other tab holds it, else a new one (recorded before any op is made under it).
   * Call before `load` and `append`.
   */
  async claimReplica() {
    const tx = this.db.transaction(REPLICAS, "readonly");
    const ids = (await request(tx.objectStore(REPLICAS).get(this.docId))) ?? [];
    for (const id of ids) {
      if (await tryLock(`chorus:${this.docId}:${id}`)) {
        this.replica = id;
        return id;
      }
    }
    const id = randomHex(16);
    await tryLock(`chorus:${this.docId}:${id}`);
    const wtx = this.db.transaction(REPLICAS, "readwrite", { durability: "strict" });
    const store = wtx.objectStore(REPLICAS);
    const now = (await request(store.get(this.docId))) ?? [];
    store.put([...now.filter((x) => x !== id), id], this.docId);
    await done(wtx);
    this.replica = id;
    return id;
  }

  /**
   * Applies this replica's stored log to `doc` and compacts it into one full state.
   * Returns `{ updates, failed }`: how many were read, and how many could not be
   * applied (kept, untouched, for a later version to read).
   */
  async load(doc) {
    const tx = this.db.transaction(UPDATES, "readwrite", { durability: "strict" });
    const store = tx.objectStore(UPDATES);
    const keys = await request(store.getAllKeys(this.range));
    const values = await request(store.getAll(this.range));
    let failed = 0;
    const applied = [];
    values.forEach((bytes, i) => {
      try {
        doc.applyUpdate(bytes);
        applied.push(keys[i]);
      } catch (e) {
        failed += 1;
        console.warn(`chorus: a stored update of ${this.docId} could not be applied:`, e);
      }
    });
    if (applied.length > 1) {
      for (const k of applied) store.delete(k);
      store.put(doc.encode(), this.newKey());
    }
    await done(tx);
    return { updates: values.length, failed };
  }

  /** Appends an update; resolves once IndexedDB committed it durably. */
  async append(bytes) {
    const tx = this.db.transaction(UPDATES, "readwrite", { durability: "strict" });
    tx.objectStore(UPDATES).put(bytes, this.newKey());
    await done(tx);
  }
}

/**
 * Writes a document's changes to a `DocStore` as they happen, one write at a time
 * (each covering everything since the last), and tells when a given change is stored:
 * the provider sends a frame only once every op it may carry is stored here, so the
 * relay never has an op of ours that this browser could lose and then reuse the id of.
 */
export class Persister {
  constructor(doc, store) {
    this.doc = doc;
    this.store = store; // null: memory only
    this.version = doc.version();
    this.wanted = 0; // changes seen
    this.stored = 0; // changes stored (or given up on)
    this.running = false;
    this.waiters = [];
    this.error = null;
    this.onStored = null; // called after each write
  }

  /** Whether every change seen so far is stored. */
  get idle() {
    return this.stored >= this.wanted;
  }

  /** Call after every change of the document (local or remote). */
  changed() {
    this.wanted += 1;
    if (!this.store) this.stored = this.wanted;
    else if (!this.running) this.run();
  }

  async run() {
    this.running = true;
    while (this.stored < this.wanted) {
      const target = this.wanted;
      const version = this.doc.version();
      const update = this.doc.encodeSince(this.version);
      try {
        await this.store.append(update);
        this.version = version;
        this.error = null;
      } catch (e) {
        // Out of quota, or the database went away: keep syncing (the relay still
        // stores everything), and say so.
        this.error = e;
        console.error("chorus: could not store changes in IndexedDB:", e);
      }
      this.stored = target;
      this.wake();
    }
    this.running = false;
    this.onStored?.();
  }

  wake() {
    const ready = this.waiters.filter((w) => w.need <= this.stored);
    this.waiters = this.waiters.filter((w) => w.need > this.stored);
    for (const w of ready) w.resolve();
  }

  /** Resolves when every change seen so far is stored. */
  flushed() {
    const need = this.wanted;
    if (need <= this.stored) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ need, resolve }));
  }
}
