//! History for JavaScript: versions as values, `Checkout` (the document at an earlier
//! version), and the shapes of blame runs and history groups.
//!
//! A core `Checkout` borrows its `Doc`, which a JS object cannot; the JS `Checkout`
//! holds the document's shared state and the version instead, and opens the version
//! again for each read (linear in the log; nothing is paid between reads). Opening it
//! once when it is made checks the version, so an unknown one throws at `at()`.

use std::rc::Rc;

use chorus_doc::{BlameRun, ChangeInfo, HistoryGroup, Rule, VersionVector};
use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::convert::{bytes, from_json, from_value, obj, replica_hex};
use crate::doc::{Shared, js_err};

/// A version from JS: `Uint8Array` bytes (what `version()` returns) or their text
/// (`versionText()`, URL-safe base64).
pub(crate) fn version_of(v: &JsValue) -> Result<VersionVector, JsError> {
    if let Some(s) = v.as_string() {
        return VersionVector::from_text(&s).map_err(not_a_version);
    }
    if let Some(b) = v.dyn_ref::<Uint8Array>() {
        return VersionVector::from_bytes(&b.to_vec()).map_err(not_a_version);
    }
    Err(JsError::new(
        "a version is a Uint8Array (from version()) or its text (from versionText())",
    ))
}

/// The core reads versions with the update decoder, whose messages speak of updates
/// ("update is truncated"); say what was being read.
fn not_a_version(e: chorus_doc::DecodeError) -> JsError {
    JsError::new(&format!("not a Chorus version: {e}"))
}

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

fn time(t: Option<u64>) -> JsValue {
    t.map_or(JsValue::NULL, num)
}

/// The properties a change has in JS, shared by changes and blame runs.
fn change_props(c: &ChangeInfo) -> [(&'static str, JsValue); 6] {
    [
        ("replica", replica_hex(&c.replica).into()),
        ("seqStart", num(c.seqs.start)),
        ("seqEnd", num(c.seqs.end)),
        ("lamport", num(c.lamport)),
        ("time", time(c.time)),
        (
            "message",
            c.message
                .as_deref()
                .map_or(JsValue::NULL, JsValue::from_str),
        ),
    ]
}

/// `{ replica, seqStart, seqEnd, lamport, time, message }` (`time`, `message`: null
/// when the change recorded none).
pub(crate) fn change_info(c: &ChangeInfo) -> JsValue {
    obj(&change_props(c))
}

/// `{ start, end, replica, seqStart, seqEnd, lamport, time, message }`, positions in
/// whatever unit the run was computed in (UTF-16 here).
pub(crate) fn blame_run(b: &BlameRun) -> JsValue {
    let mut props = vec![
        ("start", num(b.range.start as u64)),
        ("end", num(b.range.end as u64)),
    ];
    props.extend(change_props(&b.change));
    obj(&props)
}

/// `{ replica, changes, inserted, deleted, other, firstTime, lastTime, version }`.
pub(crate) fn history_group(g: &HistoryGroup) -> JsValue {
    let changes: Array = g.changes.iter().map(change_info).collect();
    obj(&[
        ("replica", replica_hex(&g.replica).into()),
        ("changes", changes.into()),
        ("inserted", num(g.inserted)),
        ("deleted", num(g.deleted)),
        ("other", num(g.other)),
        ("firstTime", time(g.first_time())),
        ("lastTime", time(g.last_time())),
        ("version", bytes(&g.version.to_bytes())),
    ])
}

/// The document as it was at one version, read-only: made by `Doc.at(version)`.
///
/// It stays valid while the document moves on (operations are never forgotten), and
/// reads what a replica holding exactly that version's operations showed.
#[wasm_bindgen]
pub struct Checkout {
    shared: Rc<Shared>,
    version: VersionVector,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Checkout {
    /// A checkout of `version`, checked now: an unknown or impossible version throws.
    pub(crate) fn open(shared: &Rc<Shared>, version: VersionVector) -> Result<Checkout, JsError> {
        shared.doc.borrow().at(&version).map_err(js_err)?;
        Ok(Checkout {
            shared: Rc::clone(shared),
            version,
        })
    }

    fn read<R>(&self, f: impl FnOnce(&chorus_doc::Checkout<'_>) -> R) -> Result<R, JsError> {
        let d = self.shared.doc.borrow();
        let c = d.at(&self.version).map_err(js_err)?;
        Ok(f(&c))
    }
}

#[wasm_bindgen]
impl Checkout {
    /// The version shown, as bytes (the `vv` encoding, like `Doc.version()`).
    pub fn version(&self) -> Vec<u8> {
        self.version.to_bytes()
    }

    /// The version shown, as URL-safe text.
    #[wasm_bindgen(js_name = versionText)]
    pub fn version_text(&self) -> String {
        self.version.to_text()
    }

    /// The text of `field` at this version ("" if it had none).
    pub fn text(&self, field: &str) -> Result<String, JsError> {
        self.read(|c| c.text(field).to_string())
    }

    /// Who inserted each character of text `field` at this version, and in which
    /// change: `[{ start, end, replica, seqStart, seqEnd, lamport, time, message }]`,
    /// runs covering the whole text in order, positions in UTF-16 units of this
    /// version's text. See `Doc.blame`.
    #[wasm_bindgen(unchecked_return_type = "BlameRun[]")]
    pub fn blame(&self, field: &str) -> Result<Array, JsError> {
        self.read(|c| {
            let t = c.text(field);
            t.blame_utf16(0..t.len_utf16())
                .map(|runs| runs.iter().map(blame_run).collect::<Array>())
        })?
        .map_err(js_err)
    }

    /// The value of counter `field` at this version.
    #[wasm_bindgen(js_name = counterValue)]
    pub fn counter_value(&self, field: &str) -> Result<f64, JsError> {
        self.read(|c| c.counter(field).value() as f64)
    }

    /// The value of last-writer-wins register `field` at this version.
    pub fn register(&self, field: &str) -> Result<JsValue, JsError> {
        self.read(|c| {
            c.register(field, Rule::Lww)
                .value()
                .map_or(JsValue::UNDEFINED, |v| from_value(&v))
        })
    }

    /// The elements of list `field` at this version.
    pub fn list(&self, field: &str) -> Result<Array, JsError> {
        self.read(|c| c.list(field).iter().map(from_value).collect())
    }

    /// The whole document at this version as JSON, like `Doc.toJSON()`.
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> Result<JsValue, JsError> {
        self.read(|c| from_json(&c.to_json()))
    }
}

/// A version's bytes (from `Doc.version()`) as URL-safe text.
#[wasm_bindgen(js_name = versionToText)]
pub fn version_to_text(version: &[u8]) -> Result<String, JsError> {
    VersionVector::from_bytes(version)
        .map(|v| v.to_text())
        .map_err(not_a_version)
}

/// A version's text (from `versionText()` or `versionToText`) as bytes.
#[wasm_bindgen(js_name = versionFromText)]
pub fn version_from_text(text: &str) -> Result<Vec<u8>, JsError> {
    VersionVector::from_text(text)
        .map(|v| v.to_bytes())
        .map_err(not_a_version)
}

/// TypeScript shapes of what the history methods return.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** One change: who made it (replica), its operations (seqStart..seqEnd), its Lamport
 * timestamp, and the time (ms since the epoch) and message it was committed with, or
 * null. */
export interface ChangeInfo {
  replica: string;
  seqStart: number;
  seqEnd: number;
  lamport: number;
  time: number | null;
  message: string | null;
}
/** A stretch start..end (UTF-16 units) of text inserted by one change. */
export interface BlameRun extends ChangeInfo {
  start: number;
  end: number;
}
/** Consecutive changes of one writer close together in time. */
export interface HistoryGroup {
  replica: string;
  changes: ChangeInfo[];
  inserted: number;
  deleted: number;
  other: number;
  firstTime: number | null;
  lastTime: number | null;
  /** The version just after this group: open it with `Doc.at`. */
  version: Uint8Array;
}
/** What changed, as `observe` delivers it and `diff` returns it: `origin` is "local" or
 * the remote replicas; each change names its field (`path`), its kind and its `diff`
 * (see the crate docs for each kind's shape). */
export interface DocEvent {
  origin: "local" | string[];
  changes: { path: string[]; kind: string; diff: any }[];
}
/** What a commit records besides its operations. */
export interface CommitOptions {
  message?: string;
  /** Milliseconds since the Unix epoch (Date.now()). */
  time?: number;
}
"#;
