//! Conversions between JavaScript values and the engine's types.

use chorus_doc::{
    Diff, Event, KeyChange, Kind, MapValue, Origin, ReplicaId, TextDelta, Value, VersionVector,
    Write,
};
use chorus_sync::{AwarenessEntry, Hello, Message};
use js_sys::{Array, BigInt, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

/// Values nest no deeper than this, as in updates.
const MAX_DEPTH: usize = 32;

/// A plain JS object with these properties.
pub(crate) fn obj(props: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in props {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

pub(crate) fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

pub(crate) fn replica_hex(r: &ReplicaId) -> String {
    format!("{:032x}", r.as_u128())
}

/// A replica id from 32 hex digits (or a hyphenated uuid).
pub(crate) fn parse_replica(s: &str) -> Result<ReplicaId, JsError> {
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 {
        return Err(JsError::new(&format!(
            "a replica id is 32 hex digits, got {s:?}"
        )));
    }
    u128::from_str_radix(&digits, 16)
        .map(ReplicaId::from_u128)
        .map_err(|_| JsError::new(&format!("a replica id is 32 hex digits, got {s:?}")))
}

/// The version vector in the frame encoding of PROTOCOL.md (`vv`): the body of an `Ack`.
pub(crate) fn encode_vv(vv: &VersionVector) -> Vec<u8> {
    let mut frame = Message::Ack(vv.clone()).encode();
    frame.drain(..2);
    frame
}

/// Reads [`encode_vv`]'s form.
pub(crate) fn decode_vv(b: &[u8]) -> Result<VersionVector, JsError> {
    let mut frame = vec![chorus_sync::FRAME_VERSION, 3];
    frame.extend_from_slice(b);
    match Message::decode(&frame) {
        Ok(Message::Ack(vv)) => Ok(vv),
        Ok(_) => Err(JsError::new("not a version vector")),
        Err(e) => Err(JsError::new(&format!("bad version vector: {e}"))),
    }
}

/// A JS value as a document value: `null`/`undefined`, booleans, numbers (integers
/// become `Int`, others `Float`), bigints, strings, `Uint8Array`s (bytes) and arrays.
pub(crate) fn to_value(v: &JsValue) -> Result<Value, JsError> {
    to_value_at(v, 0)
}

fn to_value_at(v: &JsValue, depth: usize) -> Result<Value, JsError> {
    if depth > MAX_DEPTH {
        return Err(JsError::new("values nest at most 32 arrays deep"));
    }
    if v.is_null() || v.is_undefined() {
        return Ok(Value::Null);
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(f) = v.as_f64() {
        let int = f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0;
        // -0.0 stays a float so that it round-trips.
        return Ok(if int && !(f == 0.0 && f.is_sign_negative()) {
            Value::Int(f as i64)
        } else {
            Value::Float(f)
        });
    }
    if v.is_bigint() {
        let s: String = v
            .clone()
            .unchecked_into::<BigInt>()
            .to_string(10)
            .map(String::from)
            .unwrap_or_default();
        return s
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| JsError::new("a bigint value must fit in 64 signed bits"));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::Str(s));
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(Value::Bytes(a.to_vec()));
    }
    if let Some(a) = v.dyn_ref::<Array>() {
        let mut out = Vec::with_capacity(a.length() as usize);
        for item in a.iter() {
            out.push(to_value_at(&item, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    Err(JsError::new(
        "a value is null, a boolean, a number, a bigint, a string, a Uint8Array or an array \
         of those (use a map field for objects)",
    ))
}

/// A document value as JS: integers beyond 2^53 become bigints, bytes `Uint8Array`s.
pub(crate) fn from_value(v: &Value) -> JsValue {
    match v {
        Value::Null => JsValue::NULL,
        Value::Bool(b) => JsValue::from_bool(*b),
        Value::Int(i) if i.unsigned_abs() <= 9_007_199_254_740_991 => JsValue::from_f64(*i as f64),
        Value::Int(i) => BigInt::from(*i).into(),
        Value::Float(f) => JsValue::from_f64(*f),
        Value::Str(s) => JsValue::from_str(s),
        Value::Bytes(b) => bytes(b),
        Value::Array(a) => a.iter().map(from_value).collect::<Array>().into(),
        // Value is non-exhaustive to the engine's users only in spirit; show anything
        // new as its JSON.
        #[allow(unreachable_patterns)]
        other => JsValue::from_str(&other.to_string()),
    }
}

pub(crate) fn from_map_value(v: &MapValue) -> JsValue {
    match v {
        MapValue::Value(v) => from_value(v),
        MapValue::Container(k) => obj(&[("container", kind_name(k).into())]),
    }
}

pub(crate) fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Text => "text".into(),
        Kind::List => "list".into(),
        Kind::Map => "map".into(),
        Kind::Counter => "counter".into(),
        Kind::Register(chorus_doc::Rule::Lww) => "register".into(),
        Kind::Register(chorus_doc::Rule::MultiValue) => "multi".into(),
        Kind::Register(chorus_doc::Rule::Merge(n)) => format!("merge:{n}"),
        #[allow(unreachable_patterns)]
        other => other.to_string(),
    }
}

/// `{ value, replica, timeMs, lamport }`.
pub(crate) fn write<V>(w: &Write<V>, f: impl Fn(&V) -> JsValue) -> JsValue {
    obj(&[
        ("value", f(&w.value)),
        ("replica", replica_hex(&w.replica).into()),
        ("timeMs", JsValue::from_f64(w.time_ms as f64)),
        ("lamport", JsValue::from_f64(w.lamport as f64)),
    ])
}

/// `{ origin, changes: [{ path, kind, diff }] }`; see the crate docs for the diffs.
pub(crate) fn event(e: &Event) -> JsValue {
    let origin: JsValue = match &e.origin {
        Origin::Local => "local".into(),
        Origin::Remote(rs) => rs
            .iter()
            .map(|r| JsValue::from_str(&replica_hex(r)))
            .collect::<Array>()
            .into(),
    };
    let changes: Array = e
        .changes
        .iter()
        .map(|c| {
            let path: Array = c.path.iter().map(|p| JsValue::from_str(p)).collect();
            obj(&[
                ("path", path.into()),
                ("kind", kind_name(&c.kind).into()),
                ("diff", diff(&c.diff)),
            ])
        })
        .collect();
    obj(&[("origin", origin), ("changes", changes.into())])
}

fn diff(d: &Diff) -> JsValue {
    match d {
        Diff::Text(ds) => ds
            .iter()
            .map(|d| match d {
                TextDelta::Retain(n) => obj(&[("retain", JsValue::from_f64(*n as f64))]),
                TextDelta::Insert(s) => obj(&[("insert", JsValue::from_str(s))]),
                TextDelta::Delete(n) => obj(&[("delete", JsValue::from_f64(*n as f64))]),
            })
            .collect::<Array>()
            .into(),
        Diff::List(ds) => ds
            .iter()
            .map(|d| match d {
                chorus_doc::ListDelta::Retain(n) => {
                    obj(&[("retain", JsValue::from_f64(*n as f64))])
                }
                chorus_doc::ListDelta::Insert(vs) => obj(&[(
                    "insert",
                    vs.iter().map(from_value).collect::<Array>().into(),
                )]),
                chorus_doc::ListDelta::Delete(n) => {
                    obj(&[("delete", JsValue::from_f64(*n as f64))])
                }
            })
            .collect::<Array>()
            .into(),
        Diff::Counter { delta, value } => obj(&[
            ("delta", JsValue::from_f64(*delta as f64)),
            ("value", JsValue::from_f64(*value as f64)),
        ]),
        Diff::Register {
            value,
            conflicts,
            was_conflict,
        } => obj(&[
            (
                "value",
                value.as_ref().map_or(JsValue::UNDEFINED, from_value),
            ),
            (
                "conflicts",
                conflicts
                    .iter()
                    .map(|w| write(w, from_value))
                    .collect::<Array>()
                    .into(),
            ),
            ("wasConflict", JsValue::from_bool(*was_conflict)),
        ]),
        Diff::Map(keys) => keys.iter().map(key_change).collect::<Array>().into(),
        #[allow(unreachable_patterns)]
        _ => JsValue::UNDEFINED,
    }
}

fn key_change(k: &KeyChange) -> JsValue {
    let mut props = vec![("key", JsValue::from_str(&k.key))];
    match &k.value {
        Some(v) => props.push(("value", from_map_value(v))),
        None => props.push(("deleted", JsValue::TRUE)),
    }
    props.push(("conflict", JsValue::from_bool(k.conflict)));
    obj(&props)
}

/// A JSON-shaped JS value as `serde_json` (through `JSON.stringify`).
pub(crate) fn to_json(v: &JsValue) -> Result<serde_json::Value, JsError> {
    let s = js_sys::JSON::stringify(v)
        .map_err(|_| JsError::new("the value cannot be written as JSON"))?;
    let s: String = s.into();
    serde_json::from_str(&s).map_err(|e| JsError::new(&format!("bad JSON: {e}")))
}

/// `serde_json` as a JS value (through `JSON.parse`).
pub(crate) fn from_json(v: &serde_json::Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

pub(crate) fn awareness_entry(e: &AwarenessEntry) -> JsValue {
    obj(&[
        ("replica", replica_hex(&e.replica).into()),
        ("clock", JsValue::from_f64(e.clock as f64)),
        ("state", e.state.as_ref().map_or(JsValue::NULL, from_json)),
    ])
}

fn get(o: &JsValue, k: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED)
}

fn get_u64(o: &JsValue, k: &str) -> Result<u64, JsError> {
    let v = get(o, k);
    match v.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_991.0 => Ok(f as u64),
        _ => Err(JsError::new(&format!("{k} must be a non-negative integer"))),
    }
}

fn get_string(o: &JsValue, k: &str) -> Result<String, JsError> {
    get(o, k)
        .as_string()
        .ok_or_else(|| JsError::new(&format!("{k} must be a string")))
}

fn get_bytes(o: &JsValue, k: &str) -> Result<Vec<u8>, JsError> {
    get(o, k)
        .dyn_ref::<Uint8Array>()
        .map(Uint8Array::to_vec)
        .ok_or_else(|| JsError::new(&format!("{k} must be a Uint8Array")))
}

/// Awareness entries from JS: `[{ replica, clock, state }]` (`state` null: removed).
pub(crate) fn to_awareness_entries(v: &JsValue) -> Result<Vec<AwarenessEntry>, JsError> {
    let a = v
        .dyn_ref::<Array>()
        .ok_or_else(|| JsError::new("awareness entries are an array"))?;
    a.iter()
        .map(|e| {
            let state = get(&e, "state");
            Ok(AwarenessEntry {
                replica: parse_replica(&get_string(&e, "replica")?)?,
                clock: get_u64(&e, "clock")?,
                state: if state.is_null() || state.is_undefined() {
                    None
                } else {
                    Some(to_json(&state)?)
                },
            })
        })
        .collect()
}

/// A message as JS: `{ type: "hello", protocol, doc, replica, version }`,
/// `{ type: "delta", version, update }`, `{ type: "ack", version }`,
/// `{ type: "awareness", entries }`, `{ type: "error", code, message }`; versions as
/// `vv` bytes.
pub(crate) fn message(m: &Message) -> JsValue {
    match m {
        Message::Hello(h) => obj(&[
            ("type", "hello".into()),
            ("protocol", JsValue::from_f64(f64::from(h.protocol))),
            ("doc", JsValue::from_str(&h.doc)),
            ("replica", replica_hex(&h.replica).into()),
            ("version", bytes(&encode_vv(&h.version))),
        ]),
        Message::Delta { version, update } => obj(&[
            ("type", "delta".into()),
            ("version", bytes(&encode_vv(version))),
            ("update", bytes(update)),
        ]),
        Message::Ack(vv) => obj(&[("type", "ack".into()), ("version", bytes(&encode_vv(vv)))]),
        Message::Awareness(es) => obj(&[
            ("type", "awareness".into()),
            (
                "entries",
                es.iter().map(awareness_entry).collect::<Array>().into(),
            ),
        ]),
        Message::Error { code, message } => obj(&[
            ("type", "error".into()),
            ("code", JsValue::from_f64(f64::from(*code))),
            ("message", JsValue::from_str(message)),
        ]),
    }
}

/// The inverse of [`message`].
pub(crate) fn to_message(v: &JsValue) -> Result<Message, JsError> {
    let t = get_string(v, "type")?;
    Ok(match t.as_str() {
        "hello" => {
            let protocol = get(v, "protocol");
            Message::Hello(Hello {
                protocol: match protocol.as_f64() {
                    None => chorus_sync::PROTOCOL_VERSION,
                    Some(p) if (0.0..=255.0).contains(&p) && p.fract() == 0.0 => p as u8,
                    Some(_) => return Err(JsError::new("protocol must be a byte")),
                },
                doc: get_string(v, "doc")?,
                replica: parse_replica(&get_string(v, "replica")?)?,
                version: decode_vv(&get_bytes(v, "version")?)?,
            })
        }
        "delta" => Message::Delta {
            version: decode_vv(&get_bytes(v, "version")?)?,
            update: get_bytes(v, "update")?,
        },
        "ack" => Message::Ack(decode_vv(&get_bytes(v, "version")?)?),
        "awareness" => Message::Awareness(to_awareness_entries(&get(v, "entries"))?),
        "error" => Message::Error {
            code: u16::try_from(get_u64(v, "code")?)
                .map_err(|_| JsError::new("code must fit in 16 bits"))?,
            message: get_string(v, "message")?,
        },
        other => return Err(JsError::new(&format!("unknown message type {other:?}"))),
    })
}

// Most of this crate needs a JavaScript host (web-demo/test runs it under node); the
// byte-level helpers run anywhere.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vv_bytes_round_trip_in_the_frame_encoding() {
        let mut vv = VersionVector::new();
        vv.observe(ReplicaId::from_u128(1), 3);
        let b = encode_vv(&vv);
        // PROTOCOL.md: varint n · n × (replica (16) · varint next seq).
        let mut want = vec![1];
        want.extend_from_slice(ReplicaId::from_u128(1).as_bytes());
        want.push(3);
        assert_eq!(b, want);
        assert_eq!(decode_vv(&b).ok(), Some(vv));
        assert_eq!(encode_vv(&VersionVector::new()), vec![0]);
    }

    #[test]
    fn replica_ids_are_32_hex_digits() {
        let r = ReplicaId::from_u128(0xabc);
        assert_eq!(replica_hex(&r), "00000000000000000000000000000abc");
        assert_eq!(parse_replica(&replica_hex(&r)).ok(), Some(r));
        assert_eq!(
            parse_replica("00000000-0000-0000-0000-000000000abc").ok(),
            Some(r)
        );
    }
}
