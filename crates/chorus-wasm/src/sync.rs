//! `Session`, `Awareness` and frame helpers for JavaScript.

use chorus_sync::{Message, ProtocolError};
use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

use crate::convert::{
    awareness_entry, bytes, decode_vv, encode_vv, from_json, message, obj, parse_replica,
    replica_hex, to_awareness_entries, to_json, to_message,
};
use crate::doc::Doc;

/// A JS `Error` for a protocol error, with `code` (the wire code), `frame` (the
/// `Error` frame to send the peer before closing the link) and `remote` (true when the
/// peer sent an `Error` frame: it is closing, nothing is to be sent back).
fn protocol_error(e: &ProtocolError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let _ = Reflect::set(
        &err,
        &"code".into(),
        &JsValue::from_f64(f64::from(e.code())),
    );
    let _ = Reflect::set(&err, &"frame".into(), &bytes(&Message::error(e).encode()));
    let remote = matches!(e, ProtocolError::Remote { .. });
    let _ = Reflect::set(&err, &"remote".into(), &JsValue::from_bool(remote));
    err.into()
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

/// One end of one link (to a relay or a peer) for one document. Sans-IO: the caller
/// moves the bytes (a WebSocket's binary messages) and calls `tick` every second or so.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Session {
    inner: chorus_sync::Session,
}

#[wasm_bindgen]
impl Session {
    /// A session for document `docId`, not opened yet.
    #[wasm_bindgen(constructor)]
    pub fn new(doc_id: &str) -> Session {
        Session {
            inner: chorus_sync::Session::new(doc_id),
        }
    }

    /// Opens the link: the `Hello` frame to send first.
    pub fn open(&mut self, doc: &Doc) -> Vec<u8> {
        self.inner.open(&doc.shared.doc.borrow())
    }

    /// Handles one frame from the peer: `{ reply, applied, acked, awareness }` — the
    /// frames to send back (an array of `Uint8Array`), the number of operations
    /// applied to `doc`, the peer's durable version (`vv` bytes) when it sent an `Ack`,
    /// and the presence entries when it sent `Awareness` (pass them to
    /// `Awareness.apply`). Throws an `Error` with `code` and `frame` (send `frame`,
    /// then close) when the peer broke the protocol; `doc` is then unchanged.
    pub fn receive(&mut self, doc: &Doc, frame: &[u8]) -> Result<JsValue, JsValue> {
        let r = {
            let mut d = doc.shared.doc.borrow_mut();
            self.inner.receive(&mut d, frame)
        };
        doc.shared.flush();
        let r = r.map_err(|e| protocol_error(&e))?;
        let reply: Array = r.reply.iter().map(|f| bytes(f)).collect();
        Ok(obj(&[
            ("reply", reply.into()),
            ("applied", JsValue::from_f64(r.applied as f64)),
            (
                "acked",
                r.acked
                    .map_or(JsValue::UNDEFINED, |v| bytes(&encode_vv(&v))),
            ),
            (
                "awareness",
                r.awareness.map_or(JsValue::UNDEFINED, |es| {
                    es.iter().map(awareness_entry).collect::<Array>().into()
                }),
            ),
        ]))
    }

    /// After local edits: the `Delta` frame to send, if the link is live and the peer
    /// lacks something.
    #[wasm_bindgen(js_name = localChange)]
    pub fn local_change(&mut self, doc: &Doc) -> Option<Vec<u8>> {
        self.inner.local_change(&doc.shared.doc.borrow())
    }

    /// Periodic repair (every second or so): a `Hello` to send if something may have
    /// been lost; nothing on an idle, in-sync link.
    pub fn tick(&mut self, doc: &Doc) -> Option<Vec<u8>> {
        self.inner.tick(&doc.shared.doc.borrow())
    }

    /// An `Ack` telling the peer we durably stored `version` (`vv` bytes, e.g. after
    /// writing to IndexedDB), if that is news.
    pub fn ack(&mut self, version: &[u8]) -> Result<Option<Vec<u8>>, JsError> {
        Ok(self.inner.ack(&decode_vv(version)?))
    }

    /// Whether both `Hello`s were exchanged.
    #[wasm_bindgen(js_name = isLive)]
    pub fn is_live(&self) -> bool {
        self.inner.is_live()
    }

    /// The peer's replica (32 hex digits), once its `Hello` arrived.
    pub fn peer(&self) -> Option<String> {
        self.inner.peer().map(|r| replica_hex(&r))
    }

    /// The peer's durable version (`vv` bytes): what its last `Ack` covered.
    #[wasm_bindgen(js_name = peerAcked)]
    pub fn peer_acked(&self) -> Vec<u8> {
        encode_vv(self.inner.peer_acked())
    }

    /// The document id.
    #[wasm_bindgen(js_name = docId)]
    pub fn doc_id(&self) -> String {
        self.inner.doc_id().to_owned()
    }
}

/// Presence (user, colour, cursor) of every replica, ephemeral: never stored, and
/// expired after `timeoutMs` without news.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Awareness {
    inner: chorus_sync::Awareness,
}

fn change(c: &chorus_sync::AwarenessChange) -> JsValue {
    let list = |rs: &[chorus_doc::ReplicaId]| -> JsValue {
        rs.iter()
            .map(|r| JsValue::from_str(&replica_hex(r)))
            .collect::<Array>()
            .into()
    };
    obj(&[
        ("added", list(&c.added)),
        ("updated", list(&c.updated)),
        ("removed", list(&c.removed)),
        ("renewed", list(&c.renewed)),
    ])
}

#[wasm_bindgen]
impl Awareness {
    /// Presence for local replica `replica` (32 hex digits; use the `Doc`'s
    /// `replicaId()`); remote states expire after `timeoutMs` (default 30 000).
    #[wasm_bindgen(constructor)]
    pub fn new(replica: &str, timeout_ms: Option<f64>) -> Result<Awareness, JsError> {
        Ok(Awareness {
            inner: chorus_sync::Awareness::new(
                parse_replica(replica)?,
                now_of(timeout_ms.unwrap_or(30_000.0))?,
            ),
        })
    }

    /// Sets our state (any JSON value); the `Awareness` frame to broadcast.
    #[wasm_bindgen(js_name = setLocal)]
    pub fn set_local(&mut self, state: JsValue, now_ms: f64) -> Result<Vec<u8>, JsError> {
        let state = to_json(&state)?;
        Ok(self.inner.set_local(state, now_of(now_ms)?).encode())
    }

    /// Removes our state (leaving); the frame to broadcast.
    #[wasm_bindgen(js_name = clearLocal)]
    pub fn clear_local(&mut self, now_ms: f64) -> Result<Vec<u8>, JsError> {
        Ok(self.inner.clear_local(now_of(now_ms)?).encode())
    }

    /// Our state, or null.
    #[wasm_bindgen(js_name = localState)]
    pub fn local_state(&self) -> JsValue {
        self.inner.local_state().map_or(JsValue::NULL, from_json)
    }

    /// Takes the entries a peer sent (the `awareness` of `Session.receive`, or an
    /// `Awareness` frame's bytes); what changed: `{ added, updated, removed, renewed }`
    /// (arrays of replica ids).
    pub fn apply(&mut self, entries: JsValue, now_ms: f64) -> Result<JsValue, JsError> {
        let entries = if let Some(frame) = entries.dyn_ref::<Uint8Array>() {
            match Message::decode(&frame.to_vec()) {
                Ok(Message::Awareness(es)) => es,
                Ok(_) => return Err(JsError::new("not an Awareness frame")),
                Err(e) => return Err(JsError::new(&e.to_string())),
            }
        } else {
            to_awareness_entries(&entries)?
        };
        Ok(change(&self.inner.apply(&entries, now_of(now_ms)?)))
    }

    /// Every replica's state, ours included: `[{ replica, state }]`.
    pub fn states(&self) -> Array {
        self.inner
            .states()
            .map(|(r, s)| obj(&[("replica", replica_hex(&r).into()), ("state", from_json(s))]))
            .collect()
    }

    /// Call every second or so: expires silent replicas and renews ours;
    /// `{ added, updated, removed, renewed, frame }` with the frame to broadcast, if any.
    pub fn tick(&mut self, now_ms: f64) -> Result<JsValue, JsError> {
        let (c, m) = self.inner.tick(now_of(now_ms)?);
        let out = change(&c);
        let frame = m.map_or(JsValue::UNDEFINED, |m| bytes(&m.encode()));
        let _ = Reflect::set(&out, &"frame".into(), &frame);
        Ok(out)
    }

    /// Every state known here as one frame, for a peer that just connected.
    #[wasm_bindgen(js_name = encodeAll)]
    pub fn encode_all(&self) -> Option<Vec<u8>> {
        self.inner.encode_all().map(|m| m.encode())
    }
}

/// Reads a frame into a plain object (see the crate docs); throws on malformed bytes.
#[wasm_bindgen(js_name = decodeMessage)]
pub fn decode_message(frame: &[u8]) -> Result<JsValue, JsValue> {
    Message::decode(frame)
        .map(|m| message(&m))
        .map_err(|e| protocol_error(&e))
}

/// Writes a frame from [`decode_message`]'s object form.
#[wasm_bindgen(js_name = encodeMessage)]
pub fn encode_message(message: JsValue) -> Result<Vec<u8>, JsError> {
    Ok(to_message(&message)?.encode())
}

/// A version vector (`vv` bytes) as `{ replicaHex: nextSeq }`.
#[wasm_bindgen(js_name = decodeVersion)]
pub fn decode_version(version: &[u8]) -> Result<JsValue, JsError> {
    let vv = decode_vv(version)?;
    let props: Vec<(String, JsValue)> = vv
        .iter()
        .map(|(r, n)| (replica_hex(&r), JsValue::from_f64(n as f64)))
        .collect();
    let refs: Vec<(&str, JsValue)> = props.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    Ok(obj(&refs))
}

/// A version vector from `{ replicaHex: nextSeq }`, as `vv` bytes.
#[wasm_bindgen(js_name = encodeVersion)]
pub fn encode_version(version: JsValue) -> Result<Vec<u8>, JsError> {
    let mut vv = chorus_doc::VersionVector::new();
    if !version.is_object() {
        return Err(JsError::new(
            "a version is an object of replica ids to integers",
        ));
    }
    let keys = js_sys::Object::keys(version.unchecked_ref::<js_sys::Object>());
    for k in keys.iter() {
        let key = k.as_string().unwrap_or_default();
        let n = Reflect::get(&version, &k)
            .ok()
            .and_then(|v| v.as_f64())
            .filter(|n| *n >= 0.0 && n.fract() == 0.0)
            .ok_or_else(|| JsError::new("a version maps replica ids to integers"))?;
        vv.observe(parse_replica(&key)?, n as u64);
    }
    Ok(encode_vv(&vv))
}
