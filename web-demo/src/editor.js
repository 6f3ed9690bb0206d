// CodeMirror 6 bound to a Chorus text field.
//
// Local changes become one transaction of text ops each (positions in UTF-16 units,
// as CodeMirror counts), committed with the time for the history; every other change of the field — remote ops, undo, redo —
// arrives as an event and becomes a CodeMirror change annotated as ours, so it is never
// sent back (no echo). Undo is the engine's: it undoes this replica's own edits only,
// and undoing a delete brings back the original characters, never a copy. Remote
// carets and selections come from presence, anchored with stable cursors so they stay
// on the right characters while text moves around them.

import { Annotation, EditorState, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration,
  EditorView,
  WidgetType,
  drawSelection,
  highlightActiveLine,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap } from "@codemirror/commands";

/** Marks transactions that come from the document (remote, undo): not sent back. */
const fromDoc = Annotation.define();

const setRemote = StateEffect.define();

class CaretWidget extends WidgetType {
  constructor(name, color) {
    super();
    this.name = name;
    this.color = color;
  }

  eq(other) {
    return other.name === this.name && other.color === this.color;
  }

  toDOM() {
    const caret = document.createElement("span");
    caret.className = "cm-remote-caret";
    caret.dataset.name = this.name;
    caret.style.borderColor = this.color;
    const label = document.createElement("span");
    label.className = "cm-remote-caret-label";
    label.textContent = this.name;
    label.style.background = this.color;
    caret.append(label);
    return caret;
  }

  ignoreEvent() {
    return true;
  }
}

const remoteCursors = StateField.define({
  create: () => Decoration.none,
  update(deco, tr) {
    for (const e of tr.effects) if (e.is(setRemote)) return e.value;
    return deco.map(tr.changes);
  },
  provide: (f) => EditorView.decorations.from(f),
});

function toBase64(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The ops of one CodeMirror transaction, for `Doc.transact`. */
function opsOf(field, changes) {
  const ops = [];
  let shift = 0; // how far the positions moved by earlier changes of this transaction
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    const at = fromA + shift;
    if (toA > fromA) ops.push(["deleteText", field, at, toA - fromA]);
    const text = inserted.toString();
    if (text.length > 0) ops.push(["insertText", field, at, text]);
    shift += text.length - (toA - fromA);
  });
  return ops;
}

/** CodeMirror changes (positions in the old text) from a retain/insert/delete diff. */
function changesOf(diff) {
  const changes = [];
  let pos = 0;
  for (const d of diff) {
    if (d.retain !== undefined) pos += d.retain;
    else if (d.insert !== undefined) changes.push({ from: pos, insert: d.insert });
    else if (d.delete !== undefined) {
      changes.push({ from: pos, to: pos + d.delete });
      pos += d.delete;
    }
  }
  return changes;
}

/**
 * An editor in `parent` showing text field `field` of `doc`.
 * `onSelection(anchorBytes, headBytes)` receives the local selection as stable cursors
 * (base64) whenever it moves, for presence. `readOnly`: the text cannot be edited here.
 */
export function createEditor({ parent, doc, field, undo, onSelection, readOnly = false }) {
  let applying = false; // our own transact is running: its event is not ours to show

  const undoKeys = keymap.of([
    { key: "Mod-z", run: () => (undo.undo(undefined, { time: Date.now() }), true), preventDefault: true },
    { key: "Mod-y", run: () => (undo.redo(undefined, { time: Date.now() }), true), preventDefault: true },
    { key: "Mod-Shift-z", run: () => (undo.redo(undefined, { time: Date.now() }), true), preventDefault: true },
  ]);

  const toDoc = EditorView.updateListener.of((update) => {
    for (const tr of update.transactions) {
      if (!tr.docChanged || tr.annotation(fromDoc)) continue;
      const ops = opsOf(field, tr.changes);
      if (ops.length === 0) continue;
      applying = true;
      try {
        doc.transact(ops, { time: Date.now() }); // typing: a time, no message
      } catch (e) {
        // Cannot happen while editor and document agree; if they ever disagree, the
        // document wins.
        console.error("chorus: an editor change could not be applied:", e);
        queueMicrotask(resync); // not while CodeMirror is updating
      } finally {
        applying = false;
      }
    }
    if (update.selectionSet || update.docChanged) {
      const sel = update.state.selection.main;
      onSelection?.(
        toBase64(doc.cursorAt(field, sel.anchor, "after")),
        toBase64(doc.cursorAt(field, sel.head, "after")),
      );
    }
  });

  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: doc.text(field),
      extensions: [
        lineNumbers(),
        drawSelection(),
        highlightActiveLine(),
        EditorView.lineWrapping,
        undoKeys,
        keymap.of(defaultKeymap),
        remoteCursors,
        toDoc,
        EditorState.readOnly.of(readOnly),
        EditorView.editable.of(!readOnly),
      ],
    }),
  });

  function resync() {
    view.dispatch({
      changes: { from: 0, to: view.state.doc.length, insert: doc.text(field) },
      annotations: fromDoc.of(true),
    });
  }

  const observer = doc.observe((ev) => {
    if (applying) return;
    for (const c of ev.changes) {
      if (c.kind !== "text" || c.path.length !== 1 || c.path[0] !== field) continue;
      view.dispatch({ changes: changesOf(c.diff), annotations: fromDoc.of(true) });
      if (view.state.doc.length !== doc.textLength(field)) {
        console.error("chorus: editor and document disagree; reloading the text");
        resync();
      }
    }
  });

  /**
   * Draws the other replicas' carets and selections: `peers` is
   * `[{ name, color, anchor, head }]` with the cursors as base64.
   */
  function showPeers(peers) {
    const ranges = [];
    const len = view.state.doc.length;
    for (const p of peers) {
      let anchor, head;
      try {
        anchor = doc.resolveCursor(field, fromBase64(p.anchor));
        head = doc.resolveCursor(field, fromBase64(p.head));
      } catch {
        continue; // malformed presence from a peer: not drawn
      }
      // Undefined while the ops it is anchored on have not arrived.
      if (anchor === undefined || head === undefined) continue;
      anchor = Math.min(anchor, len);
      head = Math.min(head, len);
      const [from, to] = anchor < head ? [anchor, head] : [head, anchor];
      if (from < to) {
        ranges.push(
          Decoration.mark({
            class: "cm-remote-selection",
            attributes: { style: `background-color: ${p.color}33`, "data-name": p.name },
          }).range(from, to),
        );
      }
      ranges.push(
        Decoration.widget({ widget: new CaretWidget(p.name, p.color), side: 1 }).range(head),
      );
    }
    view.dispatch({ effects: setRemote.of(Decoration.set(ranges, true)) });
  }

  return {
    view,
    showPeers,
    text: () => view.state.doc.toString(),
    destroy() {
      doc.unobserve(observer);
      view.destroy();
    },
  };
}
