//! Plain values: what registers, map entries and list elements hold.
//!
//! [`Value`] has a *total* order, so that rules such as "the greatest value wins" pick
//! the same winner on every replica whatever the values are, floats included. This
//! module also holds the binary codec the update format uses for values:
//!
//! ```text
//! value = 0 null | 1 false | 2 true
//!       | 3 varint(zigzag(i64))
//!       | 4 f64 bits, 8 bytes little endian
//!       | 5 varint len · UTF-8 bytes
//!       | 6 varint len · bytes
//!       | 7 varint count · count × value        (at most 32 arrays deep)
//! ```
//!
//! Varints are LEB128, at most 10 bytes, and must be minimal (values are read with a
//! [canonical](crate::wire::Reader::canonical) reader), so every value has exactly one
//! encoding: equal values encode to equal bytes.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::DecodeError;

/// A plain value stored in a register, a map entry or a list element.
///
/// Values are ordered totally — first by variant, in the order the variants are
/// declared (`Null < Bool < Int < Float < Str < Bytes < Array`), then by content — so
/// that every replica agrees on which of two values is greater. `Int` and `Float` are
/// different variants and never equal: `Int(1) < Float(0.5)`, and `Int(1) != Float(1.0)`.
///
/// Floats compare by [`f64::total_cmp`] and are equal (and hash alike) only when their
/// bit patterns are equal. So `NaN == NaN` (a NaN is greater than every other float,
/// and a negative NaN smaller), and `0.0 != -0.0` (with `-0.0 < 0.0`). IEEE comparison
/// would make NaN unequal to itself, which would break sets, maps and merge rules.
///
/// Arrays may nest at most 32 deep: decoding rejects deeper ones, so a document must
/// not accept them from a local edit either.
#[derive(Clone, Debug)]
pub enum Value {
    /// No value (JSON `null`).
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float; compared by bit pattern, see [`Value`].
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes (JSON has no bytes; [`Display`](fmt::Display) writes them as an array
    /// of numbers).
    Bytes(Vec<u8>),
    /// A list of values (what set-union registers hold; JSON arrays).
    Array(Vec<Value>),
}

/// Arrays nest at most this deep (an array of scalars has depth 1). The codec and
/// deserialization reject deeper values, which also bounds their recursion.
pub(crate) const MAX_VALUE_DEPTH: usize = 32;

impl Value {
    /// The variant's place in the total order.
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => 4,
            Value::Bytes(_) => 5,
            Value::Array(_) => 6,
        }
    }

    /// The boolean, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is an `Int` (a `Float` is not converted: the variants are
    /// distinct so that no conversion silently loses precision).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is a `Float` (an `Int` is not converted, for the same reason
    /// as in [`as_i64`](Value::as_i64)).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is `Bytes`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements, if this is an `Array`.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// How deeply arrays nest in this value: 0 for a scalar, 1 for an array of scalars.
    /// Iterative, so that a caller can check a value built locally against
    /// [`MAX_VALUE_DEPTH`] before encoding it, however deep it is.
    pub(crate) fn array_depth(&self) -> usize {
        let mut max = 0;
        let mut stack = vec![(self, 0usize)];
        while let Some((v, d)) = stack.pop() {
            if let Value::Array(items) = v {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|item| (item, d + 1)));
            }
        }
        max
    }

    /// The value as JSON: bytes become an array of numbers and non-finite floats
    /// `null`, since JSON has neither.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Bytes(b) => {
                serde_json::Value::Array(b.iter().map(|&x| serde_json::Value::from(x)).collect())
            }
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
        }
    }
}

// ---------------------------------------------------------------- order, equality, hash

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            // Bit equality, to agree with `total_cmp` and `Hash`.
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bytes(a), Value::Bytes(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            // `total_cmp` is `Equal` exactly when the bit patterns are equal.
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.rank().hash(state);
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) => i.hash(state),
            Value::Float(f) => f.to_bits().hash(state),
            Value::Str(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(a) => a.hash(state),
        }
    }
}

// ---------------------------------------------------------------- conversions

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}

impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::Array(v)
    }
}

/// `None` becomes `Null`, so optional fields can be written directly.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

// ---------------------------------------------------------------- display, serde

/// Writes the value as compact JSON; JSON has no bytes and no infinities or NaN, so
/// bytes are written as an array of numbers and non-finite floats as `null`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_json(), f)
    }
}

/// Serializes to the natural shape: JSON gets `null`, booleans, numbers, strings and
/// arrays. Bytes go through `serialize_bytes`, so binary formats keep them as bytes.
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Str(s) => serializer.serialize_str(s),
            Value::Bytes(b) => serializer.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = serializer.serialize_seq(Some(a.len()))?;
                for item in a {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// Accepts any self-describing input except maps: in a document a map is a container
/// with its own per-key merging, not a value. An unsigned integer above
/// `i64::MAX` becomes a `Float`; arrays deeper than 32 are rejected, as in updates.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        ValueSeed { depth: 0 }.deserialize(deserializer)
    }
}

/// Deserializes a value inside `depth` arrays, so that nesting is bounded whatever the
/// format's own recursion limit is.
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor { depth: self.depth })
    }
}

struct ValueVisitor {
    depth: usize,
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a boolean, a number, a string, bytes or an array")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        ValueSeed { depth: self.depth }.deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.depth >= MAX_VALUE_DEPTH {
            return Err(de::Error::custom("arrays nest deeper than 32 levels"));
        }
        // The hint comes from the input: trust it only as far as a small allocation.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(ValueSeed {
            depth: self.depth + 1,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("maps are containers, not values"))
    }
}

// ---------------------------------------------------------------- binary codec

const TAG_NULL: u8 = 0;
const TAG_FALSE: u8 = 1;
const TAG_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_STR: u8 = 5;
const TAG_BYTES: u8 = 6;
const TAG_ARRAY: u8 = 7;

use crate::wire::{Reader, put_bytes, put_str, put_varint, put_zigzag};

/// Appends the encoding of `v`.
///
/// The caller must keep arrays within [`MAX_VALUE_DEPTH`] (see
/// [`Value::array_depth`]), or peers will reject the update.
pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Int(i) => {
            out.push(TAG_INT);
            put_zigzag(out, *i);
        }
        Value::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Value::Str(s) => {
            out.push(TAG_STR);
            put_str(out, s);
        }
        Value::Bytes(b) => {
            out.push(TAG_BYTES);
            put_bytes(out, b);
        }
        Value::Array(items) => {
            out.push(TAG_ARRAY);
            put_varint(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// Reads one value from `r`. `budget` is how many bytes decoding may still allocate:
/// the value charges `size_of::<Value>()` plus every heap byte it allocates (an array's
/// element slots, strings, bytes), and exceeding it is an error. Nesting deeper than
/// 32 arrays is an error. Varints must be minimal, whatever `r` accepts elsewhere. On
/// error, `r` and `budget` are unchanged.
pub(crate) fn read_value(r: &mut Reader<'_>, budget: &mut usize) -> Result<Value, DecodeError> {
    let mut vr = ValueReader {
        r: Reader::canonical(r.peek_rest()),
        budget: *budget,
    };
    let v = vr.value(0)?;
    r.bytes(vr.r.position())?;
    *budget = vr.budget;
    Ok(v)
}

/// The values of one [`read_value`] call, and what they may still allocate.
struct ValueReader<'a> {
    r: Reader<'a>,
    budget: usize,
}

impl ValueReader<'_> {
    fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        self.budget = self
            .budget
            .checked_sub(bytes)
            .ok_or(DecodeError::Malformed("update expands too much"))?;
        Ok(())
    }

    /// A value inside `depth` arrays. Recursion is bounded by [`MAX_VALUE_DEPTH`].
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let tag = self.r.u8()?;
        if tag > TAG_ARRAY {
            return Err(DecodeError::Malformed("unknown value tag"));
        }
        // Elements live in their array's heap block, charged with it.
        if depth == 0 {
            self.charge(size_of::<Value>())?;
        }
        Ok(match tag {
            TAG_NULL => Value::Null,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_INT => Value::Int(self.r.zigzag()?),
            TAG_FLOAT => Value::Float(f64::from_bits(u64::from_le_bytes(self.r.array()?))),
            TAG_STR => {
                // Charged before the bytes are checked, so a string that is both too
                // large and not UTF-8 is refused for its size.
                let n = self.r.count(1)?;
                self.charge(n)?;
                let s =
                    std::str::from_utf8(self.r.bytes(n)?).map_err(|_| DecodeError::InvalidUtf8)?;
                Value::Str(s.to_owned())
            }
            TAG_BYTES => {
                let n = self.r.count(1)?;
                self.charge(n)?;
                Value::Bytes(self.r.bytes(n)?.to_vec())
            }
            _ => {
                if depth >= MAX_VALUE_DEPTH {
                    return Err(DecodeError::Malformed("arrays nest deeper than 32 levels"));
                }
                let n = self.r.count(1)?;
                self.charge(n.saturating_mul(size_of::<Value>()))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
        })
    }
}

// ---------------------------------------------------------------- tests

/// Values of every variant, nested a few arrays deep. Leaves are drawn both from the
/// whole range and from a handful of small values, so that equal values (duplicates
/// in sets, ties in max/min) turn up often.
#[cfg(test)]
pub(crate) fn arb_value() -> impl proptest::strategy::Strategy<Value = Value> {
    arb_tree(false)
}

#[cfg(test)]
fn arb_tree(json_safe: bool) -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;

    let special_floats = prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(1.0),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
    ];
    let float = if json_safe {
        prop_oneof![
            proptest::num::f64::NORMAL
                | proptest::num::f64::SUBNORMAL
                | proptest::num::f64::ZERO
                | proptest::num::f64::POSITIVE
                | proptest::num::f64::NEGATIVE,
            special_floats.prop_filter("finite", |f: &f64| f.is_finite()),
        ]
        .boxed()
    } else {
        prop_oneof![any::<f64>(), special_floats].boxed()
    };
    let bytes = if json_safe {
        Just(Value::Null).boxed()
    } else {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
            proptest::collection::vec(0u8..2, 0..2).prop_map(Value::Bytes),
        ]
        .boxed()
    };
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![Just(i64::MIN), Just(i64::MAX), -2i64..3].prop_map(Value::Int),
        float.prop_map(Value::Float),
        any::<String>().prop_map(Value::Str),
        "[ab]{0,2}".prop_map(Value::Str),
        bytes,
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Value::Array)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BIG: usize = usize::MAX;

    fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        put_value(&mut out, v);
        out
    }

    fn decode(buf: &[u8]) -> Result<Value, DecodeError> {
        let mut r = Reader::new(buf);
        let mut budget = BIG;
        let v = read_value(&mut r, &mut budget)?;
        assert!(r.is_empty(), "decoding stopped early");
        Ok(v)
    }

    fn nested(depth: usize) -> Value {
        let mut v = Value::Null;
        for _ in 0..depth {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn round_trips_every_variant() {
        let values = [
            Value::Null,
            Value::Bool(false),
            Value::Bool(true),
            Value::Int(0),
            Value::Int(-1),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::Float(1.5),
            Value::Float(-0.0),
            Value::Float(0.0),
            Value::Float(f64::NAN),
            Value::Float(f64::from_bits(0x7ff0_0000_dead_beef)),
            Value::Float(f64::NEG_INFINITY),
            Value::Str(String::new()),
            Value::Str("héllo ✓".into()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0, 255, 7]),
            Value::Array(vec![]),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::Str("x".into()), Value::Array(vec![])]),
                Value::Float(f64::NAN),
            ]),
            nested(MAX_VALUE_DEPTH),
        ];
        for v in values {
            let bytes = encode(&v);
            let back = decode(&bytes).unwrap();
            assert_eq!(back, v);
            if let (Value::Float(a), Value::Float(b)) = (&back, &v) {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encode(&Value::Null), [0]);
        assert_eq!(encode(&Value::Bool(false)), [1]);
        assert_eq!(encode(&Value::Bool(true)), [2]);
        assert_eq!(encode(&Value::Int(-1)), [3, 1]);
        assert_eq!(encode(&Value::Int(64)), [3, 0x80, 1]);
        assert_eq!(
            encode(&Value::Float(1.0)),
            [4, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
        );
        assert_eq!(encode(&Value::from("hi")), [5, 2, b'h', b'i']);
        assert_eq!(encode(&Value::from(&[9u8][..])), [6, 1, 9]);
        assert_eq!(
            encode(&Value::from(vec![Value::Null, Value::Int(1)])),
            [7, 2, 0, 3, 2]
        );
    }

    #[test]
    fn ordering() {
        use Value::*;
        let ascending = [
            Null,
            Bool(false),
            Bool(true),
            Int(i64::MIN),
            Int(-1),
            Int(7),
            Int(i64::MAX),
            Float(-f64::NAN),
            Float(f64::NEG_INFINITY),
            Float(-1.0),
            Float(-0.0),
            Float(0.0),
            Float(0.5),
            Float(f64::INFINITY),
            Float(f64::NAN),
            Str(String::new()),
            Str("a".into()),
            Str("ab".into()),
            Str("b".into()),
            Bytes(vec![]),
            Bytes(vec![0]),
            Array(vec![]),
            Array(vec![Null]),
            Array(vec![Int(1)]),
            Array(vec![Int(1), Null]),
            Array(vec![Int(2)]),
        ];
        for (i, a) in ascending.iter().enumerate() {
            for (j, b) in ascending.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} vs {b:?}");
                assert_eq!(a == b, i == j, "{a:?} == {b:?}");
            }
        }
        // Int and Float never meet: every Int is below every Float.
        assert!(Int(i64::MAX) < Float(f64::NEG_INFINITY));
        assert_ne!(Int(1), Float(1.0));
        assert_eq!(Float(f64::NAN), Float(f64::NAN));
        assert_ne!(Float(0.0), Float(-0.0));
    }

    #[test]
    fn hash_agrees_with_eq() {
        use std::collections::HashSet;
        let set: HashSet<Value> = [
            Value::Float(f64::NAN),
            Value::Float(f64::NAN),
            Value::Float(0.0),
            Value::Float(-0.0),
            Value::Int(0),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 4);
        assert!(set.contains(&Value::Float(f64::NAN)));
    }

    #[test]
    fn conversions_and_accessors() {
        assert_eq!(Value::from(true).as_bool(), Some(true));
        assert_eq!(Value::from(-3i32), Value::Int(-3));
        assert_eq!(Value::from(u32::MAX), Value::Int(i64::from(u32::MAX)));
        assert_eq!(Value::from(5i64).as_i64(), Some(5));
        assert_eq!(Value::from(5i64).as_f64(), None);
        assert_eq!(Value::from(2.5).as_f64(), Some(2.5));
        assert_eq!(Value::from("s").as_str(), Some("s"));
        assert_eq!(Value::from(String::from("s")), Value::Str("s".into()));
        assert_eq!(Value::from(vec![1u8, 2]).as_bytes(), Some(&[1u8, 2][..]));
        assert_eq!(
            Value::from(vec![Value::Null]).as_array(),
            Some(&[Value::Null][..])
        );
        assert!(Value::from(None::<i64>).is_null());
        assert_eq!(Value::from(Some("x")), Value::Str("x".into()));
        assert_eq!(Value::Null.as_str(), None);
        assert!(!Value::Int(0).is_null());
    }

    #[test]
    fn displays_as_json() {
        let v = Value::Array(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-4),
            Value::Float(1.5),
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Str("a\"b\n".into()),
            Value::Bytes(vec![1, 200]),
            Value::Array(vec![]),
        ]);
        assert_eq!(
            v.to_string(),
            r#"[null,true,-4,1.5,null,null,"a\"b\n",[1,200],[]]"#
        );
    }

    #[test]
    fn deserializes_json() {
        let v: Value =
            serde_json::from_str(r#"[null, 1, -2, 18446744073709551615, 2.5, "s", [true]]"#)
                .unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Null,
                Value::Int(1),
                Value::Int(-2),
                Value::Float(18446744073709551615.0),
                Value::Float(2.5),
                Value::Str("s".into()),
                Value::Array(vec![Value::Bool(true)]),
            ])
        );
        let err = serde_json::from_str::<Value>(r#"{"a": 1}"#).unwrap_err();
        assert!(err.to_string().contains("maps are containers"), "{err}");
        let err = serde_json::from_str::<Value>(r#"[1, {}]"#).unwrap_err();
        assert!(err.to_string().contains("maps are containers"), "{err}");

        let ok = "[".repeat(MAX_VALUE_DEPTH) + &"]".repeat(MAX_VALUE_DEPTH);
        assert_eq!(
            serde_json::from_str::<Value>(&ok).unwrap().array_depth(),
            MAX_VALUE_DEPTH
        );
        let deep = "[".repeat(MAX_VALUE_DEPTH + 1) + &"]".repeat(MAX_VALUE_DEPTH + 1);
        let err = serde_json::from_str::<Value>(&deep).unwrap_err();
        assert!(err.to_string().contains("deeper than 32"), "{err}");
    }

    #[test]
    fn array_depth() {
        assert_eq!(Value::Int(1).array_depth(), 0);
        assert_eq!(Value::Array(vec![]).array_depth(), 1);
        let v = Value::Array(vec![Value::Null, nested(3), Value::Array(vec![])]);
        assert_eq!(v.array_depth(), 4);
    }

    #[test]
    fn rejects_bad_input() {
        let bad: &[(&[u8], DecodeError)] = &[
            (&[], DecodeError::Truncated),
            (&[8], DecodeError::Malformed("unknown value tag")),
            (&[255], DecodeError::Malformed("unknown value tag")),
            (&[3], DecodeError::Truncated),
            (&[3, 0x80], DecodeError::Truncated),
            (&[4, 0, 0, 0, 0, 0, 0, 0], DecodeError::Truncated),
            (&[5, 2, b'a'], DecodeError::Truncated),
            (&[5, 1, 0xff], DecodeError::InvalidUtf8),
            (&[6, 3, 1, 2], DecodeError::Truncated),
            (&[7, 2, 0], DecodeError::Truncated),
            // A count far beyond the input is refused before anything is allocated.
            (
                &[
                    7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                DecodeError::Truncated,
            ),
            (
                &[6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0],
                DecodeError::Truncated,
            ),
            (
                &[3, 0x80, 0x00],
                DecodeError::Malformed("varint is not minimally encoded"),
            ),
            (
                &[
                    3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
                DecodeError::Malformed("varint overflows 64 bits"),
            ),
            (
                &[
                    3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0,
                ],
                DecodeError::Malformed("varint longer than 10 bytes"),
            ),
        ];
        for (bytes, want) in bad {
            let mut r = Reader::new(bytes);
            let mut budget = BIG;
            assert_eq!(
                read_value(&mut r, &mut budget).as_ref(),
                Err(want),
                "{bytes:?}"
            );
            assert_eq!((r.position(), budget), (0, BIG), "state changed on error");
        }
        // The largest varint is accepted.
        assert_eq!(
            decode(&[
                3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Ok(Value::Int(i64::MIN))
        );
    }

    #[test]
    fn reads_in_sequence() {
        let mut buf = encode(&Value::Int(300));
        put_value(&mut buf, &Value::from("x"));
        let mut r = Reader::new(&buf);
        let mut budget = BIG;
        assert_eq!(read_value(&mut r, &mut budget), Ok(Value::Int(300)));
        assert_eq!(r.position(), 3);
        assert_eq!(read_value(&mut r, &mut budget), Ok(Value::from("x")));
        assert!(r.is_empty());
        // At the end, a value is truncated.
        assert_eq!(read_value(&mut r, &mut budget), Err(DecodeError::Truncated));
    }

    #[test]
    fn values_are_canonical_inside_a_lenient_reader() {
        // The update format accepts long varints elsewhere, never in values.
        let (mut r, mut budget) = (Reader::new(&[3, 0x80, 0x00]), BIG);
        assert_eq!(
            read_value(&mut r, &mut budget),
            Err(DecodeError::Malformed("varint is not minimally encoded"))
        );
    }

    #[test]
    fn nesting_is_bounded() {
        assert!(decode(&encode(&nested(MAX_VALUE_DEPTH))).is_ok());
        assert_eq!(
            decode(&encode(&nested(MAX_VALUE_DEPTH + 1))),
            Err(DecodeError::Malformed("arrays nest deeper than 32 levels"))
        );
        // Far deeper than the stack could take if decoding recursed without a bound.
        let mut hostile = [7u8, 1].repeat(1_000_000);
        hostile.push(0);
        assert_eq!(
            decode(&hostile),
            Err(DecodeError::Malformed("arrays nest deeper than 32 levels"))
        );
    }

    #[test]
    fn budget_is_charged_exactly() {
        let unit = size_of::<Value>();
        let cases = [
            (Value::Int(1), unit),
            (Value::from("abc"), unit + 3),
            (Value::from(vec![1u8, 2]), unit + 2),
            (
                Value::Array(vec![Value::Null, Value::from("ab")]),
                unit + 2 * unit + 2,
            ),
        ];
        for (v, cost) in cases {
            let bytes = encode(&v);
            let mut budget = cost;
            assert_eq!(
                read_value(&mut Reader::new(&bytes), &mut budget),
                Ok(v.clone())
            );
            assert_eq!(budget, 0);
            let mut budget = cost - 1;
            assert_eq!(
                read_value(&mut Reader::new(&bytes), &mut budget),
                Err(DecodeError::Malformed("update expands too much"))
            );
        }
        // A kilobyte of empty arrays would cost ~64 KiB; a 4 KiB budget stops it.
        let mut bomb = vec![7u8];
        put_varint(&mut bomb, 1000);
        bomb.extend([7, 0].repeat(1000));
        let mut budget = 4096;
        assert_eq!(
            read_value(&mut Reader::new(&bomb), &mut budget),
            Err(DecodeError::Malformed("update expands too much"))
        );
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity(v in arb_value()) {
            let bytes = encode(&v);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn order_is_consistent(a in arb_value(), b in arb_value()) {
            use std::hash::BuildHasher;
            let h = std::collections::hash_map::RandomState::new();
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a == b, a.cmp(&b) == Ordering::Equal);
            prop_assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
            if a == b {
                prop_assert_eq!(h.hash_one(&a), h.hash_one(&b));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            budget in prop_oneof![Just(BIG), 0usize..2000],
        ) {
            let (mut r, mut left) = (Reader::new(&bytes), budget);
            if let Ok(v) = read_value(&mut r, &mut left) {
                // The encoding is canonical: what was read re-encodes to the same bytes.
                prop_assert_eq!(encode(&v), &bytes[..r.position()]);
                prop_assert!(left <= budget);
            }
        }

        #[test]
        fn decoding_mangled_values_never_panics(
            v in arb_value(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = encode(&v);
            let i = flip.index(bytes.len());
            bytes[i] = byte;
            bytes.truncate(cut.index(bytes.len() + 1));
            let mut budget = BIG;
            let _ = read_value(&mut Reader::new(&bytes), &mut budget);
        }

        #[test]
        fn serde_json_round_trip(v in arb_tree(true)) {
            let json = serde_json::to_string(&v).unwrap();
            let back: Value = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &v, "{}", json);
            prop_assert_eq!(v.to_string(), json);
            prop_assert_eq!(serde_json::to_value(&v).unwrap(), v.to_json());
        }
    }
}
