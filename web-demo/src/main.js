// The Chorus demo: one document with a text (CodeMirror), a counter, a
// last-writer-wins title and a multi-value status, synced through the relay that
// serves this page, kept in IndexedDB, editable offline; and its history (history.js).
// Every commit the page makes carries the time, for the history.

import init, { Awareness, Doc, UndoManager } from "../pkg/chorus_wasm.js";
import { createEditor } from "./editor.js";
import { createHistoryPanel } from "./history.js";
import { ChorusProvider } from "./provider.js";
import { DocStore, Persister } from "./store.js";

const TEXT = "body";
const COUNTER = "votes";
const TITLE = "title";
const STATUS = "status";
const PEOPLE = "people"; // replica id → the name of who wrote under it
const STATUSES = ["draft", "review", "approved", "blocked"];
const NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"];
const COLORS = ["#d7263d", "#1b998b", "#3a86ff", "#f46036", "#8338ec", "#2e933c", "#c05299", "#b07d00"];
const PRESENCE_EVERY_MS = 50;

const $ = (sel) => document.querySelector(sel);

function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** A person's colour (carets, the name in the header, the history): from their name. */
const colorFor = (name) => COLORS[hash(name) % COLORS.length];

/** The document, the user's name and the token, from the URL (a new document if none). */
function fromUrl() {
  const url = new URL(location.href);
  let docId = url.searchParams.get("doc");
  if (!docId || !/^[A-Za-z0-9._~-]{1,128}$/.test(docId)) {
    const rnd = crypto.getRandomValues(new Uint32Array(1))[0].toString(36);
    docId = `demo-${rnd}`;
    url.searchParams.set("doc", docId);
    history.replaceState(null, "", url);
  }
  let name = url.searchParams.get("name") || localStorage.getItem("chorus-name");
  if (!name) name = NAMES[crypto.getRandomValues(new Uint32Array(1))[0] % NAMES.length];
  name = name.slice(0, 40);
  const token = url.searchParams.get("token");
  // The token's right, read from its (unverified) claims only to shape the page: the
  // relay checks the signature and refuses what the token does not allow.
  let readOnly = false;
  if (token) {
    try {
      const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
      readOnly = claims.right === "read";
    } catch {
      // Not a token we can read: the relay will say.
    }
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let ws = `${scheme}://${location.host}/ws/${encodeURIComponent(docId)}`;
  if (token) ws += `?token=${encodeURIComponent(token)}`;
  return { docId, name, color: colorFor(name), ws, readOnly };
}

function describe(status) {
  switch (status.state) {
    case "saved":
      return "All changes saved";
    case "saving":
      return `Saving ${status.unsaved} change${status.unsaved === 1 ? "" : "s"}…`;
    case "offline":
      if (status.refused) {
        const why = status.refused.message ?? `${status.refused.code} ${status.refused.reason}`;
        return `Refused by the relay (${why}); go online to retry`;
      }
      if (status.unsaved === 0) return "Offline";
      return status.storedLocally
        ? `Offline — ${status.unsaved} change${status.unsaved === 1 ? "" : "s"} kept in this browser`
        : "Offline — storing in this browser…";
    default: {
      let s = "Connecting…";
      if (status.retryInMs !== null) s = `Reconnecting in ${Math.ceil(status.retryInMs / 1000)} s…`;
      if (status.closed && status.closed.code !== 1000) {
        s += ` (closed: ${status.closed.code}${status.closed.reason ? ` ${status.closed.reason}` : ""})`;
      }
      return s;
    }
  }
}

async function main() {
  const { docId, name, color, ws, readOnly } = fromUrl();
  document.title = `${docId} — Chorus`;
  $("#doc-id").textContent = docId;
  $("#me").textContent = name;
  $("#me").style.color = color;
  $("#read-only").hidden = !readOnly;

  await init({ module_or_path: new URL("chorus_wasm_bg.wasm", location.href) });

  // The browser's copy: a replica id of our own and what this browser kept.
  let store = null;
  let replica;
  let storeNote = "";
  try {
    store = await DocStore.open(docId);
    replica = await store.claimReplica();
  } catch (e) {
    console.warn("chorus: IndexedDB unavailable; edits live in this tab only:", e);
    storeNote = "IndexedDB is unavailable: offline edits last only while this tab is open.";
  }
  const doc = new Doc(replica);
  if (store) {
    const { updates, failed } = await store.load(doc);
    if (failed > 0) storeNote = `${failed} stored update(s) could not be read and were left aside.`;
    else if (updates > 0) storeNote = "Loaded from this browser's copy.";
  }
  $("#store-note").textContent = storeNote;

  const persister = new Persister(doc, store);
  const undo = new UndoManager(doc, 500);
  const awareness = new Awareness(doc.replicaId(), 30_000);
  const provider = new ChorusProvider({ url: ws, docId, doc, awareness, persister });

  const peerName = (replica) => {
    const n = doc.mapGet(PEOPLE, replica);
    return typeof n === "string" ? n : replica.slice(0, 6);
  };
  /** The colour of whoever writes under `replica`, as their carets show it. */
  const colorOf = (replica) => {
    const n = doc.mapGet(PEOPLE, replica);
    return typeof n === "string" ? colorFor(n) : COLORS[hash(replica) % COLORS.length];
  };
  /** One edit (`[method, ...args]`) as its own change, stamped with the time. */
  const commit = (...edits) => doc.transact(edits, { time: Date.now() });

  // Presence: our name, colour and selection (as stable cursors).
  let presence = { name, color, anchor: null, head: null };
  let presenceTimer = null;
  const publishPresence = () => {
    presenceTimer = null;
    provider.sendPresence(awareness.setLocal(presence, Date.now()));
  };
  const schedulePresence = () => {
    if (presenceTimer === null) presenceTimer = setTimeout(publishPresence, PRESENCE_EVERY_MS);
  };
  awareness.setLocal(presence, Date.now());

  const editor = createEditor({
    parent: $("#editor"),
    doc,
    field: TEXT,
    undo,
    readOnly,
    onSelection(anchor, head) {
      presence = { ...presence, anchor, head };
      schedulePresence();
    },
  });

  const peers = () => {
    if (!provider.connected) return [];
    return awareness
      .states()
      .filter((s) => s.replica !== doc.replicaId() && s.state && typeof s.state === "object")
      .map((s) => ({ replica: s.replica, ...s.state }))
      .filter((p) => typeof p.name === "string" && typeof p.color === "string");
  };

  function renderPeers() {
    const list = peers();
    const ul = $("#peers");
    ul.replaceChildren(
      ...list.map((p) => {
        const li = document.createElement("li");
        li.dataset.replica = p.replica;
        li.textContent = p.name;
        li.style.borderColor = p.color;
        return li;
      }),
    );
    editor.showPeers(
      list
        .filter((p) => typeof p.anchor === "string" && typeof p.head === "string")
        .map((p) => ({ name: p.name, color: p.color, anchor: p.anchor, head: p.head })),
    );
  }

  function renderFields() {
    $("#counter-value").textContent = String(doc.counterValue(COUNTER));

    const title = doc.register(TITLE) ?? "";
    const input = $("#title");
    if (input.value !== title) {
      const focused = document.activeElement === input;
      const [s, e] = [input.selectionStart, input.selectionEnd];
      input.value = title;
      if (focused) input.setSelectionRange(Math.min(s, title.length), Math.min(e, title.length));
    }

    const conflicts = doc.conflicts(STATUS);
    const value = doc.multi(STATUS);
    $("#status-value").textContent = value ?? "—";
    for (const b of document.querySelectorAll("#status-buttons button")) {
      b.classList.toggle("current", conflicts.length === 0 && b.dataset.value === value);
    }
    const box = $("#status-conflict");
    box.hidden = conflicts.length === 0;
    $("#status").classList.toggle("in-conflict", conflicts.length > 0);
    const picks = $("#status-picks");
    picks.replaceChildren(
      ...conflicts.map((w) => {
        const b = document.createElement("button");
        b.className = "status-pick";
        b.dataset.value = String(w.value);
        const v = document.createElement("strong");
        v.textContent = String(w.value);
        const who = document.createElement("span");
        who.textContent = `${peerName(w.replica)}, ${new Date(w.timeMs).toLocaleTimeString()}`;
        b.append(v, who);
        b.title = "Keep this value";
        return b;
      }),
    );
  }

  function renderStatus(status = provider.status()) {
    const el = $("#sync-status");
    el.dataset.state = status.state;
    el.dataset.local = status.storedLocally ? "stored" : "storing";
    el.textContent = describe(status);
    $("#online").checked = status.online;
    if (status.storageError) $("#store-note").textContent = `Not stored in this browser: ${status.storageError}`;
  }

  doc.observe((ev) => {
    persister.changed();
    if (ev.origin === "local") provider.localChange();
    else renderPeers(); // remote carets may now resolve, or move
    if (ev.changes.some((c) => c.path[0] !== TEXT)) renderFields();
  });
  provider.addEventListener("status", (e) => renderStatus(e.detail));
  persister.onStored = () => renderStatus();
  provider.addEventListener("presence", renderPeers);

  // Controls.
  $("#counter-inc").addEventListener("click", () => commit(["counterAdd", COUNTER, 1]));
  $("#counter-dec").addEventListener("click", () => commit(["counterAdd", COUNTER, -1]));
  $("#title").addEventListener("input", (e) =>
    commit(["setRegister", TITLE, e.target.value, Date.now()]),
  );
  for (const b of document.querySelectorAll("#status-buttons button")) {
    b.addEventListener("click", () => commit(["setMulti", STATUS, b.dataset.value, Date.now()]));
  }
  $("#status-picks").addEventListener("click", (e) => {
    const b = e.target.closest("button.status-pick");
    if (b) commit(["setMulti", STATUS, b.dataset.value, Date.now()]);
  });
  $("#online").addEventListener("change", (e) => {
    if (e.target.checked) provider.connect();
    else provider.disconnect();
  });
  $("#undo").addEventListener("click", () => undo.undo(undefined, { time: Date.now() }));
  $("#redo").addEventListener("click", () => undo.redo(undefined, { time: Date.now() }));
  addEventListener("pagehide", () => provider.sendPresence(awareness.clearLocal(Date.now())));

  if (readOnly) {
    // Looking at the history stays possible; restoring is hidden (history.js).
    const controls = document.querySelectorAll("main button:not(#history-toggle), #title");
    for (const el of controls) el.disabled = true;
  }

  // Who writes under our replica id, so conflicts can name their writers.
  if (!readOnly && doc.mapGet(PEOPLE, doc.replicaId()) !== name) {
    commit(["mapSet", PEOPLE, doc.replicaId(), name]);
    undo.clear(); // not something to undo
  }

  const historyPanel = createHistoryPanel({
    root: $("#history-panel"),
    toggle: $("#history-toggle"),
    doc,
    field: TEXT,
    nameOf: peerName,
    colorOf,
    readOnly,
    restore(version, message) {
      // A revert takes every field back, `people` too; but who writes under which id
      // is not content, and a restored version from before someone joined must not
      // forget their name: what the revert took back is written again.
      const people = doc.mapKeys(PEOPLE).map((id) => [id, doc.mapGet(PEOPLE, id)]);
      doc.revertTo(version, Date.now(), message);
      const lost = people.filter(([id, n]) => typeof n === "string" && doc.mapGet(PEOPLE, id) !== n);
      if (lost.length > 0) commit(...lost.map(([id, n]) => ["mapSet", PEOPLE, id, n]));
    },
  });

  renderFields();
  renderStatus();
  provider.connect();

  window.chorusDemo = {
    ready: true,
    text: () => editor.text(),
    doc,
    provider,
    view: editor.view,
    awareness,
    undo,
    statuses: STATUSES,
    history: historyPanel,
  };
}

main().catch((e) => {
  console.error(e);
  const el = $("#sync-status");
  el.dataset.state = "error";
  el.textContent = `Could not start: ${e.message ?? e}`;
});
