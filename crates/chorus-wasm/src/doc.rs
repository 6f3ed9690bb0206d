//! `Doc` and `UndoManager` for JavaScript.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};

use chorus_doc::{
    Assoc, Change, CommitOptions, Cursor, Event, MapMut, ReplicaId, Rule, SubscriptionId, TextUnit,
    Transaction, Value,
};
use js_sys::{Array, Function, Reflect};
use wasm_bindgen::prelude::*;

use crate::convert::{
    decode_vv, encode_vv, event, from_json, from_map_value, from_value, kind_name, obj,
    parse_replica, replica_hex, to_value, write,
};
use crate::history::{Checkout, blame_run, history_group, version_of};

/// What a `Doc` and the `UndoManager`s over it share.
pub(crate) struct Shared {
    pub(crate) doc: RefCell<chorus_doc::Doc>,
    /// Events the engine recorded, delivered to `observers` once no borrow is held,
    /// so a callback may read (or even edit) the document.
    queue: Arc<Mutex<Vec<Event>>>,
    observers: RefCell<Vec<(u32, Function)>>,
    next_observer: Cell<u32>,
    /// The engine-side observer feeding `queue`, while anybody observes.
    subscription: Cell<Option<SubscriptionId>>,
    undo: RefCell<Vec<Weak<RefCell<chorus_doc::UndoManager>>>>,
}

impl Shared {
    /// Calls the observers with the events recorded so far.
    pub(crate) fn flush(&self) {
        loop {
            let events: Vec<Event> = match self.queue.lock() {
                Ok(mut q) => std::mem::take(&mut *q),
                Err(_) => return,
            };
            if events.is_empty() {
                return;
            }
            let observers: Vec<Function> = self
                .observers
                .borrow()
                .iter()
                .map(|(_, f)| f.clone())
                .collect();
            for e in &events {
                let js = event(e);
                for f in &observers {
                    // An observer that throws must not stop the others.
                    let _ = f.call1(&JsValue::NULL, &js);
                }
            }
        }
    }
}

/// One replica of a document. See the crate docs.
#[wasm_bindgen]
pub struct Doc {
    pub(crate) shared: Rc<Shared>,
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doc").finish_non_exhaustive()
    }
}

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn usize_of(v: f64, what: &str) -> Result<usize, JsError> {
    if v >= 0.0 && v.fract() == 0.0 && v <= 4_294_967_295.0 {
        Ok(v as usize)
    } else {
        Err(JsError::new(&format!(
            "{what} must be a non-negative integer, got {v}"
        )))
    }
}

fn i64_of(v: f64, what: &str) -> Result<i64, JsError> {
    if v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_991.0 {
        Ok(v as i64)
    } else {
        Err(JsError::new(&format!("{what} must be an integer, got {v}")))
    }
}

fn now_of(v: f64) -> Result<u64, JsError> {
    if v >= 0.0 && v.is_finite() {
        Ok(v as u64)
    } else {
        Err(JsError::new(
            "nowMs must be a non-negative number of milliseconds",
        ))
    }
}

/// Commit metadata from JS: `undefined`/`null` (none) or `{ message?, time? }`, the time
/// in milliseconds since the Unix epoch.
fn options_of(v: &JsValue) -> Result<CommitOptions, JsError> {
    let mut o = CommitOptions::new();
    if v.is_undefined() || v.is_null() {
        return Ok(o);
    }
    if !v.is_object() {
        return Err(JsError::new(
            "commit options are an object: { message?: string, time?: number }",
        ));
    }
    let get = |k: &str| Reflect::get(v, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
    let message = get("message");
    if !message.is_undefined() && !message.is_null() {
        o = o.message(
            message
                .as_string()
                .ok_or_else(|| JsError::new("options.message must be a string"))?,
        );
    }
    let time = get("time");
    if !time.is_undefined() && !time.is_null() {
        let t = time
            .as_f64()
            .ok_or_else(|| JsError::new("options.time must be a number of milliseconds"))?;
        o = o.time(now_of(t).map_err(|_| {
            JsError::new("options.time must be a non-negative number of milliseconds")
        })?);
    }
    Ok(o)
}

/// A map path: a root field name, or an array of it and the keys of nested maps.
fn path_of(v: &JsValue) -> Result<Vec<String>, JsError> {
    if let Some(s) = v.as_string() {
        return Ok(vec![s]);
    }
    let parts: Option<Vec<String>> = v
        .dyn_ref::<Array>()
        .and_then(|a| a.iter().map(|p| p.as_string()).collect::<Option<Vec<_>>>());
    match parts {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err(JsError::new(
            "a map path is a field name or a non-empty array of names",
        )),
    }
}

fn in_map<R>(
    mut m: MapMut<'_>,
    rest: &[String],
    f: impl FnOnce(&mut MapMut<'_>) -> Result<R, JsError>,
) -> Result<R, JsError> {
    match rest.split_first() {
        None => f(&mut m),
        Some((key, rest)) => in_map(m.map(key).map_err(js_err)?, rest, f),
    }
}

/// The map at `path` (a root field, then keys of nested maps), for reading.
fn map_at<'d>(d: &'d chorus_doc::Doc, path: &[String]) -> chorus_doc::MapView<'d> {
    let mut m = d.map(&path[0]);
    for k in &path[1..] {
        m = m.map(k);
    }
    m
}

fn with_map<R>(
    tx: &mut Transaction<'_>,
    path: &[String],
    f: impl FnOnce(&mut MapMut<'_>) -> Result<R, JsError>,
) -> Result<R, JsError> {
    in_map(tx.map(&path[0]), &path[1..], f)
}

fn assoc_of(v: Option<String>) -> Result<Assoc, JsError> {
    match v.as_deref() {
        None | Some("after") => Ok(Assoc::After),
        Some("before") => Ok(Assoc::Before),
        Some(o) => Err(JsError::new(&format!(
            "assoc is \"after\" or \"before\", got {o:?}"
        ))),
    }
}

fn arg(args: &Array, i: u32) -> JsValue {
    args.get(i)
}

fn arg_str(args: &Array, i: u32) -> Result<String, JsError> {
    arg(args, i)
        .as_string()
        .ok_or_else(|| JsError::new(&format!("argument {i} must be a string")))
}

fn arg_num(args: &Array, i: u32) -> Result<f64, JsError> {
    arg(args, i)
        .as_f64()
        .ok_or_else(|| JsError::new(&format!("argument {i} must be a number")))
}

/// One edit of [`Doc::transact`]: `[method, ...arguments]`, as the methods take them.
fn run_op(tx: &mut Transaction<'_>, op: &JsValue) -> Result<(), JsError> {
    let a = op
        .dyn_ref::<Array>()
        .ok_or_else(|| JsError::new("an edit is an array: [method, ...arguments]"))?;
    let name = arg_str(a, 0)?;
    match name.as_str() {
        "insertText" => tx
            .text(&arg_str(a, 1)?)
            .insert_utf16(usize_of(arg_num(a, 2)?, "pos")?, &arg_str(a, 3)?)
            .map_err(js_err),
        "deleteText" => tx
            .text(&arg_str(a, 1)?)
            .delete_utf16(
                usize_of(arg_num(a, 2)?, "pos")?,
                usize_of(arg_num(a, 3)?, "len")?,
            )
            .map_err(js_err),
        "counterAdd" => tx
            .counter(&arg_str(a, 1)?)
            .add(i64_of(arg_num(a, 2)?, "delta")?)
            .map_err(js_err),
        "setRegister" | "setMulti" => {
            let rule = if name == "setRegister" {
                Rule::Lww
            } else {
                Rule::MultiValue
            };
            tx.register(&arg_str(a, 1)?, rule)
                .set(to_value(&arg(a, 2))?, now_of(arg_num(a, 3)?)?)
                .map_err(js_err)
        }
        "setMerged" => tx
            .register(&arg_str(a, 1)?, Rule::merge(&arg_str(a, 2)?))
            .set(to_value(&arg(a, 3))?, now_of(arg_num(a, 4)?)?)
            .map_err(js_err),
        "mapSet" => {
            let (key, value) = (arg_str(a, 2)?, to_value(&arg(a, 3))?);
            with_map(tx, &path_of(&arg(a, 1))?, |m| {
                m.set(&key, value).map_err(js_err)
            })
        }
        "mapDelete" => {
            let key = arg_str(a, 2)?;
            with_map(tx, &path_of(&arg(a, 1))?, |m| {
                m.delete(&key).map_err(js_err)
            })
        }
        "mapCreateMap" => {
            let key = arg_str(a, 2)?;
            with_map(tx, &path_of(&arg(a, 1))?, |m| {
                m.map(&key).map(drop).map_err(js_err)
            })
        }
        "listInsert" => {
            let values = arg(a, 3);
            let values = values
                .dyn_ref::<Array>()
                .ok_or_else(|| JsError::new("listInsert takes an array of values"))?
                .iter()
                .map(|v| to_value(&v))
                .collect::<Result<Vec<Value>, JsError>>()?;
            tx.list(&arg_str(a, 1)?)
                .insert_many(usize_of(arg_num(a, 2)?, "pos")?, values)
                .map_err(js_err)
        }
        "listDelete" => tx
            .list(&arg_str(a, 1)?)
            .delete(
                usize_of(arg_num(a, 2)?, "pos")?,
                usize_of(arg_num(a, 3)?, "len")?,
            )
            .map_err(js_err),
        other => Err(JsError::new(&format!("unknown edit {other:?}"))),
    }
}

impl Doc {
    pub(crate) fn new_with(doc: chorus_doc::Doc) -> Doc {
        let queue = Arc::new(Mutex::new(Vec::new()));
        Doc {
            shared: Rc::new(Shared {
                doc: RefCell::new(doc),
                queue,
                observers: RefCell::new(Vec::new()),
                next_observer: Cell::new(0),
                subscription: Cell::new(None),
                undo: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Runs `f` in one transaction: commits it (recording it for the undo managers)
    /// when `f` succeeds, rolls it back when it fails; then delivers the events.
    fn edit(
        &self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<(), JsError>,
    ) -> Result<(), JsError> {
        self.edit_with(CommitOptions::new(), f)
    }

    /// [`edit`](Self::edit), committed with `options` (message, time).
    fn edit_with(
        &self,
        options: CommitOptions,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<(), JsError>,
    ) -> Result<(), JsError> {
        self.change(|d| -> Result<Option<Change>, JsError> {
            let mut tx = d.transact();
            f(&mut tx)?;
            Ok(tx.commit_with(options))
        })?;
        Ok(())
    }

    /// Runs `f`, which makes at most one local change; records that change for the
    /// undo managers, then delivers the events (also when `f` failed: it made none).
    fn change<R>(
        &self,
        f: impl FnOnce(&mut chorus_doc::Doc) -> Result<Option<Change>, R>,
    ) -> Result<Option<Change>, R> {
        let r = {
            let mut d = self.shared.doc.borrow_mut();
            let r = f(&mut d);
            if let Ok(Some(change)) = &r {
                let mut managers = self.shared.undo.borrow_mut();
                managers.retain(|m| m.strong_count() > 0);
                if !managers.is_empty() {
                    let now = js_sys::Date::now() as u64;
                    for m in managers.iter().filter_map(Weak::upgrade) {
                        m.borrow_mut().record(&d, Some(change), now);
                    }
                }
            }
            r
        };
        self.shared.flush();
        r
    }

    fn read<R>(&self, f: impl FnOnce(&chorus_doc::Doc) -> R) -> R {
        f(&self.shared.doc.borrow())
    }
}

#[wasm_bindgen]
impl Doc {
    /// A new, empty replica; `replica` is 32 hex digits, random when omitted.
    #[wasm_bindgen(constructor)]
    pub fn new(replica: Option<String>) -> Result<Doc, JsError> {
        let id = match replica {
            Some(s) => parse_replica(&s)?,
            None => ReplicaId::random(),
        };
        Ok(Doc::new_with(chorus_doc::Doc::new(id)))
    }

    /// A replica loaded from `encode()`'s bytes (or any update); `replica` as in the
    /// constructor.
    pub fn decode(update: &[u8], replica: Option<String>) -> Result<Doc, JsError> {
        let id = match replica {
            Some(s) => parse_replica(&s)?,
            None => ReplicaId::random(),
        };
        chorus_doc::Doc::decode(update, id)
            .map(Doc::new_with)
            .map_err(js_err)
    }

    /// This replica's id, 32 hex digits.
    #[wasm_bindgen(js_name = replicaId)]
    pub fn replica_id(&self) -> String {
        self.read(|d| replica_hex(&d.replica_id()))
    }

    // ---------------------------------------------------------------- text

    /// Inserts `text` at UTF-16 position `pos` of text field `field`.
    #[wasm_bindgen(js_name = insertText)]
    pub fn insert_text(&self, field: &str, pos: f64, text: &str) -> Result<(), JsError> {
        let pos = usize_of(pos, "pos")?;
        self.edit(|tx| tx.text(field).insert_utf16(pos, text).map_err(js_err))
    }

    /// Deletes `len` UTF-16 units at `pos`; both ends must fall between characters.
    #[wasm_bindgen(js_name = deleteText)]
    pub fn delete_text(&self, field: &str, pos: f64, len: f64) -> Result<(), JsError> {
        let (pos, len) = (usize_of(pos, "pos")?, usize_of(len, "len")?);
        self.edit(|tx| tx.text(field).delete_utf16(pos, len).map_err(js_err))
    }

    /// The text of `field` ("" if there is none).
    pub fn text(&self, field: &str) -> String {
        self.read(|d| d.text(field).to_string())
    }

    /// The length of `field` in UTF-16 units (JavaScript's `length`).
    #[wasm_bindgen(js_name = textLength)]
    pub fn text_length(&self, field: &str) -> f64 {
        self.read(|d| d.text(field).len_utf16() as f64)
    }

    // ---------------------------------------------------------------- counter

    /// Adds `delta` (an integer, may be negative) to counter `field`.
    #[wasm_bindgen(js_name = counterAdd)]
    pub fn counter_add(&self, field: &str, delta: f64) -> Result<(), JsError> {
        let delta = i64_of(delta, "delta")?;
        self.edit(|tx| tx.counter(field).add(delta).map_err(js_err))
    }

    /// The value of counter `field` (0 if there is none).
    #[wasm_bindgen(js_name = counterValue)]
    pub fn counter_value(&self, field: &str) -> f64 {
        self.read(|d| d.counter(field).value() as f64)
    }

    // ---------------------------------------------------------------- registers

    /// Writes last-writer-wins register `field` at time `nowMs`.
    #[wasm_bindgen(js_name = setRegister)]
    pub fn set_register(&self, field: &str, value: JsValue, now_ms: f64) -> Result<(), JsError> {
        let (value, now) = (to_value(&value)?, now_of(now_ms)?);
        self.edit(|tx| {
            tx.register(field, Rule::Lww)
                .set(value, now)
                .map_err(js_err)
        })
    }

    /// The value of last-writer-wins register `field` (undefined if never written).
    pub fn register(&self, field: &str) -> JsValue {
        self.read(|d| {
            d.register(field, Rule::Lww)
                .value()
                .map_or(JsValue::UNDEFINED, |v| from_value(&v))
        })
    }

    /// Writes multi-value register `field` at time `nowMs`, resolving the conflicts
    /// this replica sees.
    #[wasm_bindgen(js_name = setMulti)]
    pub fn set_multi(&self, field: &str, value: JsValue, now_ms: f64) -> Result<(), JsError> {
        let (value, now) = (to_value(&value)?, now_of(now_ms)?);
        self.edit(|tx| {
            tx.register(field, Rule::MultiValue)
                .set(value, now)
                .map_err(js_err)
        })
    }

    /// The value of multi-value register `field`: the last of its conflicting writes
    /// by (time, replica); undefined if never written.
    pub fn multi(&self, field: &str) -> JsValue {
        self.read(|d| {
            d.register(field, Rule::MultiValue)
                .value()
                .map_or(JsValue::UNDEFINED, |v| from_value(&v))
        })
    }

    /// The concurrent writes of multi-value register `field` while they hold
    /// different values: `[{ value, replica, timeMs, lamport }]`; `[]` otherwise.
    pub fn conflicts(&self, field: &str) -> Array {
        self.read(|d| {
            d.register(field, Rule::MultiValue)
                .conflicts()
                .iter()
                .map(|w| write(w, from_value))
                .collect()
        })
    }

    /// Writes merge register `field` with rule `rule` ("max", "min", "union").
    #[wasm_bindgen(js_name = setMerged)]
    pub fn set_merged(
        &self,
        field: &str,
        rule: &str,
        value: JsValue,
        now_ms: f64,
    ) -> Result<(), JsError> {
        let (value, now) = (to_value(&value)?, now_of(now_ms)?);
        self.edit(|tx| {
            tx.register(field, Rule::merge(rule))
                .set(value, now)
                .map_err(js_err)
        })
    }

    /// The merged value of merge register `field` with rule `rule`.
    pub fn merged(&self, field: &str, rule: &str) -> JsValue {
        self.read(|d| {
            d.register(field, Rule::merge(rule))
                .value()
                .map_or(JsValue::UNDEFINED, |v| from_value(&v))
        })
    }

    // ---------------------------------------------------------------- maps

    /// Sets `key` of the map at `path` (a root field name, or `[field, key, …]` for
    /// nested maps, created as needed).
    #[wasm_bindgen(js_name = mapSet)]
    pub fn map_set(&self, path: JsValue, key: &str, value: JsValue) -> Result<(), JsError> {
        let (path, value) = (path_of(&path)?, to_value(&value)?);
        self.edit(|tx| with_map(tx, &path, |m| m.set(key, value).map_err(js_err)))
    }

    /// Deletes `key` of the map at `path`.
    #[wasm_bindgen(js_name = mapDelete)]
    pub fn map_delete(&self, path: JsValue, key: &str) -> Result<(), JsError> {
        let path = path_of(&path)?;
        self.edit(|tx| with_map(tx, &path, |m| m.delete(key).map_err(js_err)))
    }

    /// The value of `key` of the map at `path`: a value, `{ container: kind }` for a
    /// nested container, or undefined.
    #[wasm_bindgen(js_name = mapGet)]
    pub fn map_get(&self, path: JsValue, key: &str) -> Result<JsValue, JsError> {
        let path = path_of(&path)?;
        Ok(self.read(|d| {
            let m = map_at(d, &path);
            m.get(key)
                .map_or(JsValue::UNDEFINED, |v| from_map_value(&v))
        }))
    }

    /// The concurrent writes `key` of the map at `path` holds when they put different
    /// things there: `[{ value, replica, timeMs, lamport }]` ordered by (Lamport,
    /// replica), the shown one last; `[]` otherwise. Writing the key resolves them.
    #[wasm_bindgen(js_name = mapConflicts)]
    pub fn map_conflicts(&self, path: JsValue, key: &str) -> Result<Array, JsError> {
        let path = path_of(&path)?;
        Ok(self.read(|d| {
            let m = map_at(d, &path);
            m.conflicts(key)
                .iter()
                .map(|w| write(w, from_map_value))
                .collect()
        }))
    }

    /// Root names used with more than one kind (concurrently, or by mistake):
    /// `[{ name, kinds }]`, the shown kind first. Each kind's field stays readable.
    #[wasm_bindgen(js_name = fieldConflicts)]
    pub fn field_conflicts(&self) -> Array {
        self.read(|d| {
            d.field_conflicts()
                .iter()
                .map(|c| {
                    let kinds: Array = c
                        .kinds
                        .iter()
                        .map(|k| JsValue::from_str(&kind_name(k)))
                        .collect();
                    obj(&[("name", c.name.as_str().into()), ("kinds", kinds.into())])
                })
                .collect()
        })
    }

    /// The keys of the map at `path`, in order.
    #[wasm_bindgen(js_name = mapKeys)]
    pub fn map_keys(&self, path: JsValue) -> Result<Array, JsError> {
        let path = path_of(&path)?;
        Ok(self.read(|d| {
            let m = map_at(d, &path);
            m.keys().map(JsValue::from_str).collect()
        }))
    }

    // ---------------------------------------------------------------- lists

    /// Inserts the `values` (an array) at `pos` of list `field`.
    #[wasm_bindgen(js_name = listInsert)]
    pub fn list_insert(&self, field: &str, pos: f64, values: Array) -> Result<(), JsError> {
        let pos = usize_of(pos, "pos")?;
        let values = values
            .iter()
            .map(|v| to_value(&v))
            .collect::<Result<Vec<_>, _>>()?;
        self.edit(|tx| tx.list(field).insert_many(pos, values).map_err(js_err))
    }

    /// Deletes `len` elements at `pos` of list `field`.
    #[wasm_bindgen(js_name = listDelete)]
    pub fn list_delete(&self, field: &str, pos: f64, len: f64) -> Result<(), JsError> {
        let (pos, len) = (usize_of(pos, "pos")?, usize_of(len, "len")?);
        self.edit(|tx| tx.list(field).delete(pos, len).map_err(js_err))
    }

    /// The elements of list `field`.
    pub fn list(&self, field: &str) -> Array {
        self.read(|d| d.list(field).iter().map(from_value).collect())
    }

    // ---------------------------------------------------------------- grouping

    /// Makes several edits one transaction (one change, one event, one undo step):
    /// `edits` is an array of `[method, ...arguments]` with the arguments the methods
    /// take, for `insertText`, `deleteText`, `counterAdd`, `setRegister`, `setMulti`,
    /// `setMerged`, `mapSet`, `mapDelete`, `mapCreateMap` (path, key), `listInsert`,
    /// `listDelete`. If one fails, none is made.
    ///
    /// `options` is what the change records besides its operations, kept in the log
    /// and sent with them: `{ message?, time? }`, `time` in milliseconds since the Unix
    /// epoch (`Date.now()`; the engine reads no clock). See `history` and `blame`.
    pub fn transact(
        &self,
        edits: Array,
        #[wasm_bindgen(unchecked_optional_param_type = "CommitOptions")] options: Option<JsValue>,
    ) -> Result<(), JsError> {
        let options = options
            .as_ref()
            .map_or(Ok(CommitOptions::new()), options_of)?;
        self.edit_with(options, |tx| {
            for op in edits.iter() {
                run_op(tx, &op)?;
            }
            Ok(())
        })
    }

    // ---------------------------------------------------------------- history

    /// The version vector as URL-safe text (the same version as `version()`'s bytes);
    /// every method taking a version takes either form.
    #[wasm_bindgen(js_name = versionText)]
    pub fn version_text(&self) -> String {
        self.read(|d| d.version().to_text())
    }

    /// The document as it was at `version` (bytes from `version()` or a history
    /// group, or their text), read-only. Throws when this replica lacks operations the
    /// version names ("unknown version … sync first") or no replica could have held it.
    pub fn at(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | string")] version: JsValue,
    ) -> Result<Checkout, JsError> {
        Checkout::open(&self.shared, version_of(&version)?)
    }

    /// What changed from version `from` to version `to`, as the event `observe`
    /// delivers (`{ origin, changes }`, text deltas in UTF-16 units against the text at
    /// `from`); `origin` lists the replicas whose operations `to` has and `from` lacks.
    /// The versions need not be ordered: from a later to an earlier one, the deltas
    /// undo what happened in between.
    #[wasm_bindgen(unchecked_return_type = "DocEvent")]
    pub fn diff(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | string")] from: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | string")] to: JsValue,
    ) -> Result<JsValue, JsError> {
        let (from, to) = (version_of(&from)?, version_of(&to)?);
        let e = self
            .read(|d| d.diff(&from, &to, TextUnit::Utf16))
            .map_err(js_err)?;
        Ok(event(&e))
    }

    /// Makes the document show what it showed at `version` again, with new operations
    /// in one change (undoable, synced like any edit; edits made elsewhere meanwhile
    /// are kept), committed at `timeMs` (`Date.now()`: its time, and the time of the
    /// register writes it makes) with `message` if given. Returns whether anything
    /// differed.
    #[wasm_bindgen(js_name = revertTo)]
    pub fn revert_to(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | string")] version: JsValue,
        time_ms: f64,
        message: Option<String>,
    ) -> Result<bool, JsError> {
        let (version, now) = (version_of(&version)?, now_of(time_ms)?);
        let mut options = CommitOptions::new().time(now);
        if let Some(m) = message {
            options = options.message(m);
        }
        let change = self
            .change(|d| d.revert_to_with(&version, now, options))
            .map_err(js_err)?;
        Ok(change.is_some())
    }

    /// Who inserted each character of text `field` — now, or at `version` — and in
    /// which change: `[{ start, end, replica, seqStart, seqEnd, lamport, time,
    /// message }]`, runs covering the whole text in order, `start`/`end` in UTF-16
    /// units; `time` and `message` are null for changes that recorded none. Undo and
    /// revert bring back original characters, so their typist stays the author.
    #[wasm_bindgen(unchecked_return_type = "BlameRun[]")]
    pub fn blame(
        &self,
        field: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "Uint8Array | string")] version: Option<
            JsValue,
        >,
    ) -> Result<Array, JsError> {
        if let Some(v) = version.filter(|v| !v.is_null()) {
            return self.at(v)?.blame(field);
        }
        let runs = self.read(|d| {
            let t = d.text(field);
            t.blame_utf16(0..t.len_utf16())
        });
        Ok(runs.map_err(js_err)?.iter().map(blame_run).collect())
    }

    /// The changes this document holds, grouped for a history view, oldest first:
    /// consecutive changes of one writer whose times lie at most `gapMs` apart (changes
    /// without a time group with neighbours without one). Each group is `{ replica,
    /// changes: [{ replica, seqStart, seqEnd, lamport, time, message }], inserted,
    /// deleted, other, firstTime, lastTime, version }`: chars and list items inserted
    /// and deleted, other operations, and `version`, the document just after the
    /// group, to pass to `at`, `diff` or `revertTo`.
    #[wasm_bindgen(unchecked_return_type = "HistoryGroup[]")]
    pub fn history(&self, gap_ms: f64) -> Result<Array, JsError> {
        let gap = now_of(gap_ms)
            .map_err(|_| JsError::new("gapMs must be a non-negative number of milliseconds"))?;
        Ok(self.read(|d| d.history(gap).iter().map(history_group).collect()))
    }

    // ---------------------------------------------------------------- whole doc

    /// The document as JSON (see `chorus_doc::Doc::to_json`).
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> JsValue {
        self.read(|d| from_json(&d.to_json()))
    }

    /// The full state as one update.
    pub fn encode(&self) -> Vec<u8> {
        self.read(|d| d.encode())
    }

    /// The operations a replica at `version` (from its `version()`) lacks.
    #[wasm_bindgen(js_name = encodeSince)]
    pub fn encode_since(&self, version: &[u8]) -> Result<Vec<u8>, JsError> {
        let vv = decode_vv(version)?;
        Ok(self.read(|d| d.encode_since(&vv)))
    }

    /// The version vector, in the `vv` encoding of PROTOCOL.md.
    pub fn version(&self) -> Vec<u8> {
        self.read(|d| encode_vv(d.version()))
    }

    /// Applies an update; `{ applied, duplicate, pending, rejected }` op counts.
    /// Throws (and changes nothing) on malformed bytes.
    #[wasm_bindgen(js_name = applyUpdate)]
    pub fn apply_update(&self, update: &[u8]) -> Result<JsValue, JsError> {
        let r = self
            .shared
            .doc
            .borrow_mut()
            .apply_update(update)
            .map_err(js_err)?;
        self.shared.flush();
        Ok(obj(&[
            ("applied", JsValue::from_f64(r.applied as f64)),
            ("duplicate", JsValue::from_f64(r.duplicate as f64)),
            ("pending", JsValue::from_f64(r.pending as f64)),
            ("rejected", JsValue::from_f64(r.rejected as f64)),
        ]))
    }

    /// Checks the document's internal invariants; throws if one is broken (a bug).
    pub fn check(&self) -> Result<(), JsError> {
        self.read(|d| d.check()).map_err(js_err)
    }

    // ---------------------------------------------------------------- events

    /// Calls `callback(event)` after every commit and every applied update; returns an
    /// id for `unobserve`. See the crate docs for the event's shape.
    pub fn observe(&self, callback: Function) -> u32 {
        let id = self.shared.next_observer.get();
        self.shared.next_observer.set(id + 1);
        self.shared.observers.borrow_mut().push((id, callback));
        if self.shared.subscription.get().is_none() {
            let queue = Arc::clone(&self.shared.queue);
            let sub = self
                .shared
                .doc
                .borrow_mut()
                .observe(TextUnit::Utf16, move |_, e| {
                    if let Ok(mut q) = queue.lock() {
                        q.push(e.clone());
                    }
                });
            self.shared.subscription.set(Some(sub));
        }
        id
    }

    /// Removes an observer; false if it was not there.
    pub fn unobserve(&self, id: u32) -> bool {
        let mut obs = self.shared.observers.borrow_mut();
        let n = obs.len();
        obs.retain(|(i, _)| *i != id);
        if obs.is_empty() {
            // Nobody listens: the engine stops recording what changes.
            if let Some(sub) = self.shared.subscription.take() {
                self.shared.doc.borrow_mut().unobserve(sub);
            }
        }
        obs.len() != n
    }

    // ---------------------------------------------------------------- cursors

    /// A stable cursor at UTF-16 position `pos` of text `field`, as bytes to keep or
    /// send; `assoc` is "after" (default: sticks to the next character) or "before".
    #[wasm_bindgen(js_name = cursorAt)]
    pub fn cursor_at(
        &self,
        field: &str,
        pos: f64,
        assoc: Option<String>,
    ) -> Result<Vec<u8>, JsError> {
        let (pos, assoc) = (usize_of(pos, "pos")?, assoc_of(assoc)?);
        self.read(|d| d.text(field).cursor_utf16(pos, assoc))
            .map(|c| c.to_bytes())
            .map_err(js_err)
    }

    /// Where a cursor is now, in UTF-16 units; undefined if its text is not known here.
    #[wasm_bindgen(js_name = resolveCursor)]
    pub fn resolve_cursor(&self, field: &str, cursor: &[u8]) -> Result<Option<f64>, JsError> {
        let c = Cursor::from_bytes(cursor).map_err(js_err)?;
        Ok(self.read(|d| d.text(field).resolve_utf16(&c).map(|p| p as f64)))
    }
}

/// Undo and redo of this replica's own edits made through one `Doc`.
#[wasm_bindgen]
pub struct UndoManager {
    shared: Rc<Shared>,
    inner: Rc<RefCell<chorus_doc::UndoManager>>,
}

impl std::fmt::Debug for UndoManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UndoManager").finish_non_exhaustive()
    }
}

#[wasm_bindgen]
impl UndoManager {
    /// Records every later edit made through `doc`'s methods. Edits less than
    /// `captureMs` (default 500) apart join one undo step; 0 makes each its own.
    #[wasm_bindgen(constructor)]
    pub fn new(doc: &Doc, capture_ms: Option<f64>) -> Result<UndoManager, JsError> {
        let capture = now_of(capture_ms.unwrap_or(500.0))?;
        let inner = Rc::new(RefCell::new(chorus_doc::UndoManager::new(capture)));
        doc.shared.undo.borrow_mut().push(Rc::downgrade(&inner));
        Ok(UndoManager {
            shared: Rc::clone(&doc.shared),
            inner,
        })
    }

    /// Undoes the last step (as new operations that sync like any edit); false if
    /// there was nothing to undo. `nowMs` defaults to `Date.now()`.
    ///
    /// `options` (`{ message?, time? }`, as for `Doc.transact`) is recorded with the
    /// change the undo makes.
    pub fn undo(
        &self,
        now_ms: Option<f64>,
        #[wasm_bindgen(unchecked_optional_param_type = "CommitOptions")] options: Option<JsValue>,
    ) -> Result<bool, JsError> {
        let now = now_of(now_ms.unwrap_or_else(js_sys::Date::now))?;
        let options = options
            .as_ref()
            .map_or(Ok(CommitOptions::new()), options_of)?;
        let r = {
            let mut d = self.shared.doc.borrow_mut();
            self.inner
                .borrow_mut()
                .undo_with(&mut d, now, options)
                .map_err(js_err)
        };
        self.shared.flush();
        r
    }

    /// Redoes the last undone step; false if there was nothing to redo.
    ///
    /// `options` (`{ message?, time? }`, as for `Doc.transact`) is recorded with the
    /// change the redo makes.
    pub fn redo(
        &self,
        now_ms: Option<f64>,
        #[wasm_bindgen(unchecked_optional_param_type = "CommitOptions")] options: Option<JsValue>,
    ) -> Result<bool, JsError> {
        let now = now_of(now_ms.unwrap_or_else(js_sys::Date::now))?;
        let options = options
            .as_ref()
            .map_or(Ok(CommitOptions::new()), options_of)?;
        let r = {
            let mut d = self.shared.doc.borrow_mut();
            self.inner
                .borrow_mut()
                .redo_with(&mut d, now, options)
                .map_err(js_err)
        };
        self.shared.flush();
        r
    }

    /// Whether there is a step to undo.
    #[wasm_bindgen(js_name = canUndo)]
    pub fn can_undo(&self) -> bool {
        self.inner.borrow().can_undo()
    }

    /// Whether there is a step to redo.
    #[wasm_bindgen(js_name = canRedo)]
    pub fn can_redo(&self) -> bool {
        self.inner.borrow().can_redo()
    }

    /// Makes the next edit start a new undo step.
    #[wasm_bindgen(js_name = stopCapturing)]
    pub fn stop_capturing(&self) {
        self.inner.borrow_mut().stop_capturing();
    }

    /// Forgets both stacks.
    pub fn clear(&self) {
        self.inner.borrow_mut().clear();
    }
}
