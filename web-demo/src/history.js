// The history panel: the document's versions, newest first, from `Doc.history`; one
// picked is shown read-only — the text field as it was, each character tinted by its
// writer's colour (`Doc.blame` at that version), with what changed since marked
// (`Doc.diff` from that version to now: struck through what was deleted since,
// underlined what was added) — and "Restore this version" makes the document show it
// again (`Doc.revertTo`: new operations that sync to everyone and keep what others type
// meanwhile). The live editor stays as it is; the panel never edits it.

/** Changes of one writer less than this apart are one entry of the list. */
export const GAP_MS = 30_000;

function relative(ms, now) {
  const s = Math.round((now - ms) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86_400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** "+12 −3 chars, 1 other change" for a history group. */
export function whatChanged(g) {
  const parts = [];
  if (g.inserted || g.deleted) {
    parts.push(`+${g.inserted} −${g.deleted} ${g.inserted + g.deleted === 1 ? "char" : "chars"}`);
  }
  if (g.other) parts.push(plural(g.other, "other change"));
  return parts.join(", ") || "no change";
}

/**
 * The pieces of the text at a version for display: `[{ text, replica, gone }]` and
 * `{ added }` entries, from the blame runs of that text (UTF-16 ranges) and the text
 * delta from that version to now (retain / delete / insert against that text).
 * Neighbouring pieces of one writer and one state are joined.
 */
export function pieces(text, blame, delta) {
  // Deleted ranges and insertions, in positions of `text`.
  const gone = [];
  const added = [];
  let pos = 0;
  for (const d of delta) {
    if (d.retain !== undefined) pos += d.retain;
    else if (d.delete !== undefined) {
      gone.push([pos, pos + d.delete]);
      pos += d.delete;
    } else if (d.insert !== undefined) added.push([pos, d.insert]);
  }
  const cuts = new Set([0, text.length]);
  for (const r of blame) cuts.add(r.start).add(r.end);
  for (const [a, b] of gone) cuts.add(a).add(b);
  for (const [a] of added) cuts.add(a);
  const points = [...cuts].filter((p) => p >= 0 && p <= text.length).sort((x, y) => x - y);

  const out = [];
  let ri = 0;
  let gi = 0;
  let ai = 0;
  for (let i = 0; i < points.length; i++) {
    const a = points[i];
    while (ai < added.length && added[ai][0] === a) out.push({ added: added[ai++][1] });
    if (i + 1 === points.length) break;
    const b = points[i + 1];
    while (ri < blame.length && blame[ri].end <= a) ri++;
    while (gi < gone.length && gone[gi][1] <= a) gi++;
    const run = ri < blame.length && blame[ri].start <= a ? blame[ri] : null;
    const isGone = gi < gone.length && gone[gi][0] <= a;
    const replica = run?.replica ?? null;
    const last = out.at(-1);
    // One writer's consecutive changes (a keystroke each, say) read as one piece.
    if (last && last.added === undefined && last.replica === replica && last.gone === isGone) {
      last.text += text.slice(a, b);
    } else {
      out.push({ text: text.slice(a, b), replica, gone: isGone });
    }
  }
  while (ai < added.length) out.push({ added: added[ai++][1] });
  return out;
}

/**
 * The panel in `root` (its elements are in index.html), over text field `field` of
 * `doc`. `nameOf(replica)` and `colorOf(replica)` say who a writer is and their colour;
 * `restore(version, message)` restores a version (by default `doc.revertTo` at
 * `Date.now()`); `readOnly` hides restoring.
 */
export function createHistoryPanel({
  root,
  toggle,
  doc,
  field,
  nameOf,
  colorOf,
  restore: restoreVersion = (version, message) => doc.revertTo(version, Date.now(), message),
  readOnly = false,
}) {
  const list = root.querySelector("#history-list");
  const view = root.querySelector("#history-view");
  const label = root.querySelector("#history-view-label");
  const pre = root.querySelector("#history-text");
  const restore = root.querySelector("#history-restore");
  const note = root.querySelector("#history-note");
  restore.hidden = readOnly;

  let open = false;
  let groups = [];
  let picked = null; // { version (bytes), time, replica }
  let scheduled = false;

  function when(g) {
    const t = g.lastTime ?? g.firstTime;
    return t === null ? null : t;
  }

  function renderList() {
    groups = doc.history(GAP_MS);
    const now = Date.now();
    const items = groups
      .map((g, i) => ({ g, i }))
      .reverse()
      .map(({ g, i }) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.className = "history-item";
        b.dataset.index = String(i);
        b.dataset.replica = g.replica;
        b.dataset.inserted = String(g.inserted);
        b.dataset.deleted = String(g.deleted);
        const t = when(g);
        const who = document.createElement("span");
        who.className = "who";
        who.textContent = nameOf(g.replica);
        who.style.setProperty("--writer", colorOf(g.replica));
        const at = document.createElement("time");
        at.className = "when";
        if (t !== null) {
          at.dateTime = new Date(t).toISOString();
          at.textContent = relative(t, now);
          at.title = new Date(t).toLocaleString();
        } else {
          at.textContent = "time unknown";
        }
        const what = document.createElement("span");
        what.className = "what";
        what.textContent = whatChanged(g);
        b.append(who, at, what);
        const messages = [...new Set(g.changes.map((c) => c.message).filter((m) => m !== null))];
        if (messages.length > 0) {
          const m = document.createElement("span");
          m.className = "message";
          m.textContent = messages.join("; ");
          b.append(m);
        }
        if (picked && sameVersion(picked.version, g.version)) b.classList.add("picked");
        li.append(b);
        return li;
      });
    list.replaceChildren(...items);
    if (items.length === 0) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "Nothing written yet.";
      list.append(li);
    }
  }

  function renderView() {
    view.hidden = picked === null;
    if (picked === null) return;
    const at = doc.at(picked.version);
    let text, blame;
    try {
      text = at.text(field);
      blame = at.blame(field);
    } finally {
      at.free(); // now, rather than whenever the garbage collector runs
    }
    const change = doc
      .diff(picked.version, doc.version())
      .changes.find((c) => c.kind === "text" && c.path.length === 1 && c.path[0] === field);
    const parts = pieces(text, blame, change ? change.diff : []);
    pre.replaceChildren(
      ...parts.map((p) => {
        if (p.added !== undefined) {
          const ins = document.createElement("ins");
          ins.className = "added";
          ins.title = "added since this version";
          ins.textContent = p.added;
          return ins;
        }
        const span = document.createElement("span");
        span.className = p.gone ? "run gone" : "run";
        if (p.gone) span.title = "deleted since this version";
        if (p.replica !== null) {
          span.dataset.replica = p.replica;
          const color = colorOf(p.replica);
          span.dataset.color = color;
          span.style.color = color;
          span.style.backgroundColor = `${color}1f`;
        }
        span.textContent = p.text;
        return span;
      }),
    );
    const t = picked.time;
    label.textContent =
      `${nameOf(picked.replica)}'s version` + (t === null ? "" : `, ${new Date(t).toLocaleString()}`);
    const same = change === undefined;
    note.textContent = same ? "The text is the same now." : "";
    pre.dataset.text = text;
  }

  function render() {
    scheduled = false;
    if (!open) return;
    renderList();
    renderView();
  }

  function schedule() {
    if (open && !scheduled) {
      scheduled = true;
      requestAnimationFrame(render);
    }
  }

  function setOpen(o) {
    open = o;
    root.hidden = !o;
    toggle.setAttribute("aria-expanded", String(o));
    document.body.classList.toggle("history-open", o);
    if (!o) picked = null;
    render();
  }

  toggle.addEventListener("click", () => setOpen(!open));
  root.querySelector("#history-close").addEventListener("click", () => setOpen(false));
  list.addEventListener("click", (e) => {
    const b = e.target.closest("button.history-item");
    if (!b) return;
    const g = groups[Number(b.dataset.index)];
    picked = { version: g.version, time: when(g), replica: g.replica };
    render();
  });
  restore.addEventListener("click", () => {
    if (picked === null) return;
    const t = picked.time;
    const message = `Restored version from ${t === null ? "earlier" : new Date(t).toLocaleString()}`;
    restoreVersion(picked.version, message);
    setOpen(false); // back to live editing, which now shows the restored text
  });
  doc.observe(schedule);

  return { setOpen, isOpen: () => open };
}

function sameVersion(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
