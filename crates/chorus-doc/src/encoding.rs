//! The binary update format (version 3), shared by full states and deltas.
//!
//! ```text
//! update   = magic "CHRS" · version u8 (2 or 3) · replicas · fields
//!            · block(meta) · block(content) · block(values) · [block(changes)]
//! replicas = varint n · n × 16-byte replica id
//! fields   = varint n · n × (varint parent · varint len · UTF-8 name · kind)
//!            (parent 0 = the root, i + 1 = the map at entry i, which comes earlier)
//! kind     = u8 (1 text, 2 list, 3 map, 4 counter, 5 LWW register, 6 multi-value
//!            register, 7 merge register · varint len · UTF-8 rule name)
//! block    = u8 codec (0 = stored, 1 = deflate) · varint raw_len · [varint stored_len] · bytes
//! meta     = varint n_runs · 10 × (varint len · column)
//! content  = the UTF-8 text of every text insert run, in run order
//! values   = list elements, register values, map keys and map values, in run order
//! changes  = varint n · n × (varint replica index · zigzag seq delta · varint len · u8 flags
//!            · [zigzag time delta] · [varint len · UTF-8 message])   (version 3 only)
//! ```
//!
//! Version 3 adds the changes block: the metadata (time, message) of the changes whose
//! operations the update carries. An update with no change metadata is written as
//! version 2, byte for byte what earlier builds wrote, and both versions are read.
//!
//! A run is one stretch of operations by one replica (see `PROTOCOL.md` for the
//! per-run layout). Runs are in causal order. Integers are LEB128 varints; signed
//! deltas are zigzag-encoded (both read and written by [`crate::wire`]). Decoding
//! never trusts a count: every count is checked against the bytes that remain, a
//! block may expand to at most [`MAX_EXPANSION`] times its stored size, and all that
//! decoding allocates (blocks and runs) stays under [`MAX_EXPANSION`] times the
//! update's size (or 4 KiB for tiny updates).

use std::sync::Arc;

use crate::changes::ChangeMeta;
use crate::ids::ReplicaIndex;
use crate::types::FieldKey;
use crate::value::{put_value, read_value};
use crate::wire::{Reader, put_replica, put_str, put_varint, unzigzag, zigzag};
use crate::{DecodeError, Kind, MapValue, OpId, ReplicaId, Rule, Value};

const MAGIC: &[u8; 4] = b"CHRS";
/// The format version this build writes when an update carries change metadata.
pub(crate) const FORMAT_VERSION: u8 = 3;
/// The format version of updates without change metadata (also read).
const FORMAT_V2: u8 = 2;
/// Flags of a change record.
const CH_TIME: u8 = 1;
const CH_MESSAGE: u8 = 2;
/// Containers may nest at most this deep (the root's fields are depth 0).
pub(crate) const MAX_DEPTH: usize = 64;
/// A compressed block may not claim to expand more than this many times.
pub(crate) const MAX_EXPANSION: usize = 64;
/// Blocks smaller than this are stored as they are.
const COMPRESS_MIN: usize = 256;

const KIND_INSERT: u8 = 0;
const KIND_DELETE: u8 = 1;
const KIND_DELETE_BACK: u8 = 2;
/// A counter, register or map op (length 1); bits 4 and 5 say more for maps.
const KIND_ATOM: u8 = 3;
/// A map op that deletes its key (no value).
const F_NO_VALUE: u8 = 1 << 4;
/// A map op whose value is a nested container (its kind is in the values block).
const F_CONTAINER: u8 = 1 << 5;
const F_AGENT: u8 = 1 << 2;
const F_FIELD: u8 = 1 << 3;
const LEFT_SHIFT: u8 = 4;
const RIGHT_SHIFT: u8 = 6;
const O_NONE: u8 = 0;
const O_PREV: u8 = 1; // left: this replica's previous op; right: same as last insert's
const O_EXPLICIT: u8 = 2;
const O_SAME_AGENT: u8 = 3;

// The columns of the meta block: one value stream per kind of field, so that
// similar values sit together (and compress together).
const N_COLS: usize = 10;
const C_FLAGS: usize = 0;
const C_AGENT: usize = 1;
const C_SEQ: usize = 2;
const C_LAMPORT: usize = 3;
const C_LEN: usize = 4;
const C_FIELD: usize = 5;
const C_LEFT: usize = 6;
const C_RIGHT: usize = 7;
const C_TARGET: usize = 8;
/// Counter deltas, register clocks, and how many writes a write supersedes.
const C_EXTRA: usize = 9;

/// One stretch of operations as carried in an update.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct WireRun {
    pub replica: ReplicaId,
    pub seq: u64,
    pub lamport: u64,
    pub len: u32,
    pub field: Arc<FieldKey>,
    pub op: WireOp,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum WireOp {
    Insert {
        left: Option<OpId>,
        right: Option<OpId>,
        content: Content,
    },
    Delete {
        target: OpId,
        backward: bool,
    },
    Add {
        delta: i64,
    },
    Set {
        key: Option<Arc<str>>,
        value: Option<MapValue>,
        hlc: u64,
        preds: Vec<OpId>,
    },
    /// Undoes the delete ops `target.seq..target.seq + len` of `target.replica`.
    Undelete {
        target: OpId,
    },
}

/// What an insert run inserts: characters into a text, values into a list.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Content {
    Text(String),
    Values(Vec<Value>),
}

impl Content {
    /// Bytes of text (0 for list values).
    pub fn text_len(&self) -> usize {
        match self {
            Content::Text(t) => t.len(),
            Content::Values(_) => 0,
        }
    }

    pub fn as_ref(&self) -> ContentRef<'_> {
        match self {
            Content::Text(t) => ContentRef::Text(t),
            Content::Values(v) => ContentRef::Values(v),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ContentRef<'a> {
    Text(&'a str),
    Values(&'a [Value]),
}

impl ContentRef<'_> {
    pub fn text_len(&self) -> usize {
        match self {
            ContentRef::Text(t) => t.len(),
            ContentRef::Values(_) => 0,
        }
    }
}

impl WireRun {
    pub fn end_seq(&self) -> u64 {
        self.seq + u64::from(self.len)
    }

    /// Drops the first `k` operations (already applied here).
    pub fn trim_front(&mut self, k: u32) {
        debug_assert!(k < self.len);
        if k == 0 {
            return;
        }
        match &mut self.op {
            WireOp::Insert { left, content, .. } => {
                *left = Some(OpId::new(self.replica, self.seq + u64::from(k) - 1));
                match content {
                    Content::Text(content) => {
                        let cut = content
                            .char_indices()
                            .nth(k as usize)
                            .map_or(content.len(), |(b, _)| b);
                        content.drain(..cut);
                    }
                    Content::Values(v) => {
                        v.drain(..k as usize);
                    }
                }
            }
            WireOp::Undelete { target } => target.seq += u64::from(k),
            // Length 1: never trimmed.
            WireOp::Add { .. } | WireOp::Set { .. } => {}
            WireOp::Delete { target, backward } => {
                if *backward {
                    target.seq -= u64::from(k);
                } else {
                    target.seq += u64::from(k);
                }
            }
        }
        self.advance(k);
    }

    fn advance(&mut self, k: u32) {
        self.seq += u64::from(k);
        self.lamport += u64::from(k);
        self.len -= k;
    }
}

// ---------------------------------------------------------------- writing

fn put_block(out: &mut Vec<u8>, raw: &[u8], compress: bool) {
    if compress && raw.len() >= COMPRESS_MIN {
        let packed = deflate(raw);
        if packed.len() < raw.len() && raw.len() <= packed.len() * MAX_EXPANSION {
            out.push(1);
            put_varint(out, raw.len() as u64);
            put_varint(out, packed.len() as u64);
            out.extend_from_slice(&packed);
            return;
        }
    }
    out.push(0);
    put_varint(out, raw.len() as u64);
    out.extend_from_slice(raw);
}

/// How many `Value` slots decoding `v` allocates (itself and nested elements).
fn value_slots(v: &Value) -> usize {
    let mut n = 1;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if let Value::Array(items) = v {
            n += items.len();
            stack.extend(items);
        }
    }
    n
}

/// Writes a container kind.
fn put_kind(out: &mut Vec<u8>, kind: &Kind) {
    match kind {
        Kind::Text => out.push(1),
        Kind::List => out.push(2),
        Kind::Map => out.push(3),
        Kind::Counter => out.push(4),
        Kind::Register(Rule::Lww) => out.push(5),
        Kind::Register(Rule::MultiValue) => out.push(6),
        Kind::Register(Rule::Merge(name)) => {
            out.push(7);
            put_str(out, name);
        }
    }
}

/// The fields table of an update being written.
#[derive(Default)]
struct FieldTable {
    keys: Vec<Arc<FieldKey>>,
    slots: std::collections::HashMap<Arc<FieldKey>, u64>,
}

impl FieldTable {
    /// The index of `key`, adding it (after its parents) if new.
    fn slot(&mut self, key: &Arc<FieldKey>) -> u64 {
        if let Some(&f) = self.slots.get(key) {
            return f;
        }
        if let Some(p) = &key.parent {
            self.slot(p);
        }
        let f = self.keys.len() as u64;
        self.keys.push(key.clone());
        self.slots.insert(key.clone(), f);
        f
    }
}

fn put_id(col: &mut Vec<u8>, agents: &mut ReplicaIndex, id: OpId) {
    put_varint(col, agents.insert(id.replica).0 as u64);
    put_varint(col, id.seq);
}

/// Encodes `runs` (in causal order) and the metadata of their changes as one update,
/// its blocks compressed when that pays and `compress` allows it (an update that goes
/// straight into another document here need not be).
pub(crate) fn encode_runs(runs: &[WireRun], changes: &[ChangeMeta], compress: bool) -> Vec<u8> {
    let mut agents = ReplicaIndex::default();
    let mut fields = FieldTable::default();
    let intern = |r: ReplicaId, agents: &mut ReplicaIndex| -> u64 { agents.insert(r).0 as u64 };

    let mut cols: [Vec<u8>; N_COLS] = Default::default();
    let mut content = String::new();
    let mut values = Vec::new();
    let mut n_values = 0usize;
    let mut expected_seq: Vec<u64> = Vec::new();
    let mut prev_agent = u64::MAX;
    let mut prev_field = u64::MAX;
    let mut prev_lamport_end = 0u64;
    let mut prev_right: Option<OpId> = None;
    for run in runs {
        let agent = intern(run.replica, &mut agents);
        let field = match fields.keys.get(prev_field as usize) {
            // Runs of one field mostly come together.
            Some(f) if Arc::ptr_eq(f, &run.field) => prev_field,
            _ => fields.slot(&run.field),
        };
        let mut flags = match run.op {
            WireOp::Insert { .. } => KIND_INSERT,
            WireOp::Delete {
                backward: false, ..
            } => KIND_DELETE,
            WireOp::Delete { backward: true, .. } => KIND_DELETE_BACK,
            WireOp::Add { .. } | WireOp::Set { .. } | WireOp::Undelete { .. } => KIND_ATOM,
        };
        if agent != prev_agent {
            flags |= F_AGENT;
        }
        if field != prev_field {
            flags |= F_FIELD;
        }
        match &run.op {
            WireOp::Insert {
                left,
                right,
                content: inserted,
                ..
            } => {
                let lmode = match left {
                    None => O_NONE,
                    Some(l) if l.replica == run.replica && l.seq + 1 == run.seq => O_PREV,
                    Some(l) if l.replica == run.replica => {
                        put_varint(&mut cols[C_LEFT], zigzag(run.seq as i64 - l.seq as i64));
                        O_SAME_AGENT
                    }
                    Some(l) => {
                        put_id(&mut cols[C_LEFT], &mut agents, *l);
                        O_EXPLICIT
                    }
                };
                let rmode = match right {
                    None => O_NONE,
                    Some(r) if Some(*r) == prev_right => O_PREV,
                    Some(r) if r.replica == run.replica => {
                        put_varint(&mut cols[C_RIGHT], zigzag(run.seq as i64 - r.seq as i64));
                        O_SAME_AGENT
                    }
                    Some(r) => {
                        put_id(&mut cols[C_RIGHT], &mut agents, *r);
                        O_EXPLICIT
                    }
                };
                prev_right = *right;
                flags |= (lmode << LEFT_SHIFT) | (rmode << RIGHT_SHIFT);
                match inserted {
                    Content::Text(text) => content.push_str(text),
                    Content::Values(vs) => {
                        for v in vs {
                            n_values += value_slots(v);
                            put_value(&mut values, v);
                        }
                    }
                }
            }
            WireOp::Delete { target, .. } => {
                let t = intern(target.replica, &mut agents);
                put_varint(&mut cols[C_TARGET], t);
                if target.replica == run.replica {
                    put_varint(
                        &mut cols[C_TARGET],
                        zigzag(run.seq as i64 - target.seq as i64),
                    );
                } else {
                    put_varint(&mut cols[C_TARGET], target.seq);
                }
            }
            WireOp::Add { delta } => put_varint(&mut cols[C_EXTRA], zigzag(*delta)),
            WireOp::Undelete { target } => put_id(&mut cols[C_TARGET], &mut agents, *target),
            WireOp::Set {
                key,
                value,
                hlc,
                preds,
            } => {
                if let Some(key) = key {
                    put_str(&mut values, key);
                } else {
                    put_varint(&mut cols[C_EXTRA], *hlc);
                }
                put_varint(&mut cols[C_EXTRA], preds.len() as u64);
                for p in preds {
                    put_id(&mut cols[C_TARGET], &mut agents, *p);
                }
                match value {
                    None => flags |= F_NO_VALUE,
                    Some(MapValue::Value(v)) => {
                        n_values += value_slots(v);
                        put_value(&mut values, v);
                    }
                    Some(MapValue::Container(kind)) => {
                        flags |= F_CONTAINER;
                        put_kind(&mut values, kind);
                    }
                }
            }
        }
        cols[C_FLAGS].push(flags);
        if flags & F_AGENT != 0 {
            put_varint(&mut cols[C_AGENT], agent);
        }
        if expected_seq.len() <= agent as usize {
            expected_seq.resize(agent as usize + 1, 0);
        }
        let exp = &mut expected_seq[agent as usize];
        put_varint(&mut cols[C_SEQ], zigzag(run.seq.wrapping_sub(*exp) as i64));
        *exp = run.end_seq();
        put_varint(
            &mut cols[C_LAMPORT],
            zigzag(run.lamport.wrapping_sub(prev_lamport_end) as i64),
        );
        prev_lamport_end = run.lamport + u64::from(run.len);
        put_varint(&mut cols[C_LEN], u64::from(run.len));
        if flags & F_FIELD != 0 {
            put_varint(&mut cols[C_FIELD], field);
        }
        prev_agent = agent;
        prev_field = field;
    }

    let mut change_block = Vec::new();
    if !changes.is_empty() {
        put_varint(&mut change_block, changes.len() as u64);
        let mut prev_end: Vec<u64> = Vec::new();
        let mut prev_time = 0u64;
        for c in changes {
            let agent = intern(c.replica, &mut agents);
            put_varint(&mut change_block, agent);
            if prev_end.len() <= agent as usize {
                prev_end.resize(agent as usize + 1, 0);
            }
            let exp = &mut prev_end[agent as usize];
            put_varint(&mut change_block, zigzag(c.seq.wrapping_sub(*exp) as i64));
            *exp = c.end();
            put_varint(&mut change_block, c.len);
            let flags = if c.time.is_some() { CH_TIME } else { 0 }
                | if c.message.is_some() { CH_MESSAGE } else { 0 };
            change_block.push(flags);
            if let Some(t) = c.time {
                put_varint(&mut change_block, zigzag(t.wrapping_sub(prev_time) as i64));
                prev_time = t;
            }
            if let Some(m) = &c.message {
                put_str(&mut change_block, m);
            }
        }
    }
    let mut meta = Vec::with_capacity(cols.iter().map(Vec::len).sum::<usize>() + 32);
    put_varint(&mut meta, runs.len() as u64);
    for c in &cols {
        put_varint(&mut meta, c.len() as u64);
        meta.extend_from_slice(c);
    }
    let mut head = Vec::with_capacity(64);
    head.extend_from_slice(MAGIC);
    head.push(if changes.is_empty() {
        FORMAT_V2
    } else {
        FORMAT_VERSION
    });
    let out = &mut head;
    put_varint(out, agents.ids().len() as u64);
    for &a in agents.ids() {
        put_replica(out, a);
    }
    put_varint(out, fields.keys.len() as u64);
    for f in &fields.keys {
        let parent = f.parent.as_ref().map_or(0, |p| fields.slots[p] + 1);
        put_varint(out, parent);
        put_str(out, &f.name);
        put_kind(out, &f.kind);
    }
    // What decoding will allocate, at most: the blocks, the runs, the fields and the
    // values (strings and bytes are in the values block already).
    let charge = meta.len()
        + content.len()
        + values.len()
        + std::mem::size_of_val(runs)
        + fields
            .keys
            .iter()
            .map(|f| std::mem::size_of::<FieldKey>() + f.name.len() + 64)
            .sum::<usize>()
        + n_values * std::mem::size_of::<Value>()
        + change_block.len()
        + std::mem::size_of_val(changes);
    let write = |compress: bool| {
        let mut out = head.clone();
        out.reserve(meta.len() / 2 + content.len() / 2 + values.len() + 16);
        put_block(&mut out, &meta, compress);
        put_block(&mut out, content.as_bytes(), compress);
        put_block(&mut out, &values, compress);
        if !changes.is_empty() {
            put_block(&mut out, &change_block, compress);
        }
        out
    };
    if !compress {
        return write(false);
    }
    let out = write(true);
    // Decoders refuse updates that expand more than MAX_EXPANSION times; a very
    // repetitive update goes uncompressed rather than refused.
    if charge > out.len().saturating_mul(MAX_EXPANSION).max(4096) {
        return write(false);
    }
    out
}

// ---------------------------------------------------------------- reading

/// Reads a block: its codec, its length(s), and its bytes, inflated if compressed.
fn read_block(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let codec = r.u8()?;
    let raw_len = r.varint()?;
    match codec {
        0 => Ok(r
            .bytes(usize::try_from(raw_len).map_err(|_| DecodeError::Truncated)?)?
            .to_vec()),
        1 => {
            let stored = r.varint()?;
            if stored > r.remaining() as u64 {
                return Err(DecodeError::Truncated);
            }
            let stored = stored as usize;
            if raw_len > (stored as u64).saturating_mul(MAX_EXPANSION as u64) {
                return Err(DecodeError::Malformed(
                    "block claims too large an expansion",
                ));
            }
            let raw_len = raw_len as usize;
            let data = r.bytes(stored)?;
            inflate_exact(data, raw_len)
        }
        _ => Err(DecodeError::Malformed("unknown block codec")),
    }
}

/// Raw DEFLATE (RFC 1951) of `raw`, at the default level.
fn deflate(raw: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(raw.len() / 2 + 64);
    loop {
        let before_in = c.total_in() as usize;
        match c.compress_vec(&raw[before_in..], &mut out, flate2::FlushCompress::Finish) {
            Ok(flate2::Status::StreamEnd) => return out,
            Ok(_) => out.reserve(out.capacity().max(64)),
            // Compressing in memory cannot fail; keep the data stored if it does.
            Err(_) => return raw.to_vec(),
        }
    }
}

/// Inflates raw DEFLATE `data` that must expand to exactly `raw_len` bytes, into one
/// buffer of that size (the caller has bounded it by the input's size).
fn inflate_exact(data: &[u8], raw_len: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; raw_len];
    let mut d = flate2::Decompress::new(false);
    match d.decompress(data, &mut out, flate2::FlushDecompress::Finish) {
        Ok(flate2::Status::StreamEnd)
            if d.total_out() as usize == raw_len && d.total_in() as usize == data.len() =>
        {
            Ok(out)
        }
        Ok(_) => Err(DecodeError::Malformed(
            "compressed block has the wrong length",
        )),
        Err(_) => Err(DecodeError::Malformed("compressed block is corrupt")),
    }
}

fn checked_seq(base: u64, delta: u64) -> Result<u64, DecodeError> {
    u64::try_from(i128::from(base) + i128::from(unzigzag(delta)))
        .map_err(|_| DecodeError::Malformed("sequence number out of range"))
}

/// Decodes an update into runs. Nothing is applied; every structural error is found here.
pub(crate) fn decode_runs(bytes: &[u8]) -> Result<(Vec<WireRun>, Vec<ChangeMeta>), DecodeError> {
    let n = std::cell::Cell::new(0);
    let mut runs = Vec::new();
    let mut changes = Vec::new();
    decode_each(
        bytes,
        &mut changes,
        |count, _| n.set(count),
        |run| {
            if runs.is_empty() {
                runs.reserve_exact(n.get());
            }
            runs.push(run.to_owned());
            Ok(true)
        },
    )?;
    Ok((runs, changes))
}

/// One run as decoded, borrowing the update's text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunRef<'a> {
    pub replica: ReplicaId,
    pub seq: u64,
    pub lamport: u64,
    pub len: u32,
    pub field: &'a Arc<FieldKey>,
    pub op: OpRef<'a>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum OpRef<'a> {
    Insert {
        left: Option<OpId>,
        right: Option<OpId>,
        content: ContentRef<'a>,
    },
    Delete {
        target: OpId,
        backward: bool,
    },
    Add {
        delta: i64,
    },
    Undelete {
        target: OpId,
    },
    Set {
        key: Option<&'a Arc<str>>,
        value: Option<&'a MapValue>,
        hlc: u64,
        preds: &'a [OpId],
    },
}

impl RunRef<'_> {
    fn to_owned(self) -> WireRun {
        WireRun {
            replica: self.replica,
            seq: self.seq,
            lamport: self.lamport,
            len: self.len,
            field: self.field.clone(),
            op: match self.op {
                OpRef::Insert {
                    left,
                    right,
                    content,
                } => WireOp::Insert {
                    left,
                    right,
                    content: match content {
                        ContentRef::Text(t) => Content::Text(t.to_owned()),
                        ContentRef::Values(v) => Content::Values(v.to_vec()),
                    },
                },
                OpRef::Delete { target, backward } => WireOp::Delete { target, backward },
                OpRef::Add { delta } => WireOp::Add { delta },
                OpRef::Undelete { target } => WireOp::Undelete { target },
                OpRef::Set {
                    key,
                    value,
                    hlc,
                    preds,
                } => WireOp::Set {
                    key: key.cloned(),
                    value: value.cloned(),
                    hlc,
                    preds: preds.to_vec(),
                },
            },
        }
    }
}

impl WireRun {
    pub fn as_ref(&self) -> RunRef<'_> {
        RunRef {
            replica: self.replica,
            seq: self.seq,
            lamport: self.lamport,
            len: self.len,
            field: &self.field,
            op: match &self.op {
                WireOp::Insert {
                    left,
                    right,
                    content,
                } => OpRef::Insert {
                    left: *left,
                    right: *right,
                    content: content.as_ref(),
                },
                WireOp::Delete { target, backward } => OpRef::Delete {
                    target: *target,
                    backward: *backward,
                },
                WireOp::Add { delta } => OpRef::Add { delta: *delta },
                WireOp::Undelete { target } => OpRef::Undelete { target: *target },
                WireOp::Set {
                    key,
                    value,
                    hlc,
                    preds,
                } => OpRef::Set {
                    key: key.as_ref(),
                    value: value.as_ref(),
                    hlc: *hlc,
                    preds,
                },
            },
        }
    }
}

/// Reads a container kind.
/// Reads the changes block into `out`, charging what it allocates to `budget`.
fn read_changes(
    block: &[u8],
    agents: &[ReplicaId],
    budget: &mut usize,
    out: &mut Vec<ChangeMeta>,
) -> Result<(), DecodeError> {
    let mut r = Reader::new(block);
    // Each record takes at least 4 bytes.
    let n = r.count(4)?;
    if n == 0 {
        return Err(DecodeError::Malformed("an empty changes block"));
    }
    let too_much = DecodeError::Malformed("update expands too much");
    *budget = budget
        .checked_sub(n.saturating_mul(std::mem::size_of::<ChangeMeta>()))
        .ok_or(too_much.clone())?;
    out.reserve_exact(n);
    let mut prev_end: Vec<u64> = vec![0; agents.len()];
    let mut prev_time = 0u64;
    for _ in 0..n {
        let a = r.index(agents.len(), "replica index out of range")?;
        let seq = prev_end[a].wrapping_add(unzigzag(r.varint()?) as u64);
        let len = r.varint()?;
        if len == 0 {
            return Err(DecodeError::Malformed("a change with no operations"));
        }
        let end = seq.checked_add(len).ok_or(DecodeError::Malformed(
            "a change's sequence numbers overflow",
        ))?;
        prev_end[a] = end;
        let flags = r.u8()?;
        if flags & !(CH_TIME | CH_MESSAGE) != 0 {
            return Err(DecodeError::Malformed("unknown change flags"));
        }
        let time = if flags & CH_TIME != 0 {
            prev_time = prev_time.wrapping_add(unzigzag(r.varint()?) as u64);
            Some(prev_time)
        } else {
            None
        };
        let message = if flags & CH_MESSAGE != 0 {
            let m = read_str(&mut r)?;
            *budget = budget.checked_sub(m.len()).ok_or(too_much.clone())?;
            Some(m)
        } else {
            None
        };
        out.push(ChangeMeta {
            replica: agents[a],
            seq,
            len,
            time,
            message,
        });
    }
    r.finish()?;
    Ok(())
}

fn read_kind(r: &mut Reader<'_>) -> Result<Kind, DecodeError> {
    Ok(match r.u8()? {
        1 => Kind::Text,
        2 => Kind::List,
        3 => Kind::Map,
        4 => Kind::Counter,
        5 => Kind::Register(Rule::Lww),
        6 => Kind::Register(Rule::MultiValue),
        7 => Kind::Register(Rule::Merge(read_str(r)?)),
        _ => return Err(DecodeError::Malformed("unknown container kind")),
    })
}

fn read_str(r: &mut Reader<'_>) -> Result<Arc<str>, DecodeError> {
    Ok(r.str()?.into())
}

/// Decodes an update and hands each run to `each` in order, after `count` was told
/// how many there are and how many bytes of text they carry. `each` returns `Ok(false)` to stop early (then so does this).
/// Structural errors anywhere in the update are found, but those past the last run
/// only once every run was handed out.
pub(crate) fn decode_each(
    bytes: &[u8],
    changes: &mut Vec<ChangeMeta>,
    count: impl FnOnce(usize, usize),
    mut each: impl FnMut(RunRef<'_>) -> Result<bool, DecodeError>,
) -> Result<bool, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.bytes(4).map_err(|_| DecodeError::BadMagic)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8()?;
    if version != FORMAT_VERSION && version != FORMAT_V2 {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let n_agents = r.count(16)?;
    let mut agents = Vec::with_capacity(n_agents);
    for _ in 0..n_agents {
        agents.push(r.replica()?);
    }
    // Everything decoding allocates stays within a fixed multiple of the input.
    let mut budget = bytes.len().saturating_mul(MAX_EXPANSION).max(4096);
    let too_much = DecodeError::Malformed("update expands too much");
    let n_fields = r.count(3)?;
    let mut fields: Vec<Arc<FieldKey>> = Vec::with_capacity(n_fields);
    let mut depths: Vec<usize> = Vec::with_capacity(n_fields);
    let mut listed: std::collections::HashSet<Arc<FieldKey>> =
        std::collections::HashSet::with_capacity(n_fields);
    for i in 0..n_fields {
        let parent = match r.varint()? {
            0 => None,
            p if p <= i as u64 => Some(p as usize - 1),
            _ => {
                return Err(DecodeError::Malformed(
                    "a field's parent does not come before it",
                ));
            }
        };
        let name = read_str(&mut r)?;
        let kind = read_kind(&mut r)?;
        // The key, its name, and its entries in the tables here.
        budget = budget
            .checked_sub(std::mem::size_of::<FieldKey>() + name.len() + 64)
            .ok_or(too_much.clone())?;
        let depth = match parent {
            None => 0,
            Some(p) => {
                if fields[p].kind != Kind::Map {
                    return Err(DecodeError::Malformed("a field's parent is not a map"));
                }
                depths[p] + 1
            }
        };
        if depth > MAX_DEPTH {
            return Err(DecodeError::Malformed("containers nested too deeply"));
        }
        let key = FieldKey {
            parent: parent.map(|p| fields[p].clone()),
            name,
            kind,
        };
        let key = Arc::new(key);
        if !listed.insert(key.clone()) {
            return Err(DecodeError::Malformed("a field is listed twice"));
        }
        fields.push(key);
        depths.push(depth);
    }
    let meta = read_block(&mut r)?;
    let content = read_block(&mut r)?;
    let values = read_block(&mut r)?;
    let change_block = if version == FORMAT_VERSION {
        read_block(&mut r)?
    } else {
        Vec::new()
    };
    let mut budget = budget
        .checked_sub(meta.len() + content.len() + values.len() + change_block.len())
        .ok_or(too_much)?;
    r.finish()?;
    if version == FORMAT_VERSION {
        read_changes(&change_block, &agents, &mut budget, changes)?;
    }
    let mut vals = Reader::new(&values);
    let content = std::str::from_utf8(&content).map_err(|_| DecodeError::InvalidUtf8)?;
    let ascii = content.is_ascii();
    let mut content_pos = 0usize;

    let mut m = Reader::new(&meta);
    // Each run takes at least 4 bytes of meta.
    let n_runs = m.count(4)?;
    let mut cols: Vec<Reader<'_>> = Vec::with_capacity(N_COLS);
    for _ in 0..N_COLS {
        let len = m.count(1)?;
        cols.push(Reader::new(m.bytes(len)?));
    }
    if m.remaining() != 0 {
        return Err(DecodeError::Malformed("bytes left after the last column"));
    }
    if n_runs > cols[C_FLAGS].remaining() {
        return Err(DecodeError::Truncated);
    }
    budget = budget
        .checked_sub(n_runs.saturating_mul(std::mem::size_of::<WireRun>()))
        .ok_or(DecodeError::Malformed("update expands too much"))?;
    count(n_runs, content.len());
    let mut expected_seq: Vec<u64> = vec![0; agents.len()];
    // (agent, seq, end) of every run, to check the change records against.
    let mut run_spans: Vec<(usize, u64, u64)> = Vec::new();
    let mut agent = usize::MAX;
    let mut field = usize::MAX;
    let mut prev_lamport_end = 0u64;
    let mut prev_right: Option<OpId> = None;
    let mut list_buf: Vec<Value> = Vec::new();
    let mut preds_buf: Vec<OpId> = Vec::new();
    let mut key_buf: Option<Arc<str>>;
    let mut value_buf: Option<MapValue>;
    let id = |agents: &[ReplicaId], m: &mut Reader<'_>| -> Result<OpId, DecodeError> {
        let a = m.index(agents.len(), "replica index out of range")?;
        let seq = m.varint()?;
        Ok(OpId::new(agents[a], seq))
    };
    for _ in 0..n_runs {
        let flags = cols[C_FLAGS].u8()?;
        if flags & F_AGENT != 0 {
            agent = cols[C_AGENT].index(agents.len(), "replica index out of range")?;
        } else if agent == usize::MAX {
            return Err(DecodeError::Malformed("first run names no replica"));
        }
        let seq = checked_seq(expected_seq[agent], cols[C_SEQ].varint()?)?;
        let lamport = checked_seq(prev_lamport_end, cols[C_LAMPORT].varint()?)?;
        let len = cols[C_LEN].varint()?;
        if len == 0 || len > u64::from(u32::MAX) {
            return Err(DecodeError::Malformed("run length out of range"));
        }
        let len = len as u32;
        let end_seq = seq
            .checked_add(u64::from(len))
            .ok_or(DecodeError::Malformed("sequence number out of range"))?;
        prev_lamport_end = lamport
            .checked_add(u64::from(len))
            .ok_or(DecodeError::Malformed("lamport timestamp out of range"))?;
        expected_seq[agent] = end_seq;
        if flags & F_FIELD != 0 {
            field = cols[C_FIELD].index(fields.len(), "field index out of range")?;
        } else if field == usize::MAX {
            return Err(DecodeError::Malformed("first run names no field"));
        }
        let replica = agents[agent];
        let kind = &fields[field].kind;
        let sequence = matches!(kind, Kind::Text | Kind::List);
        let op = match flags & 3 {
            KIND_INSERT if sequence => {
                let left = match (flags >> LEFT_SHIFT) & 3 {
                    O_NONE => None,
                    O_PREV => Some(OpId::new(
                        replica,
                        seq.checked_sub(1)
                            .ok_or(DecodeError::Malformed("left origin before the first op"))?,
                    )),
                    O_EXPLICIT => Some(id(&agents, &mut cols[C_LEFT])?),
                    _ => Some(OpId::new(
                        replica,
                        checked_seq(seq, cols[C_LEFT].varint()?.wrapping_neg_zz())?,
                    )),
                };
                let right = match (flags >> RIGHT_SHIFT) & 3 {
                    O_NONE => None,
                    O_PREV => {
                        Some(prev_right.ok_or(DecodeError::Malformed("no previous right origin"))?)
                    }
                    O_EXPLICIT => Some(id(&agents, &mut cols[C_RIGHT])?),
                    _ => Some(OpId::new(
                        replica,
                        checked_seq(seq, cols[C_RIGHT].varint()?.wrapping_neg_zz())?,
                    )),
                };
                prev_right = right;
                if *kind == Kind::List {
                    if len as usize > vals.remaining() {
                        return Err(DecodeError::Truncated);
                    }
                    list_buf.clear();
                    for _ in 0..len {
                        list_buf.push(read_value(&mut vals, &mut budget)?);
                    }
                    OpRef::Insert {
                        left,
                        right,
                        content: ContentRef::Values(&list_buf),
                    }
                } else {
                    let rest = &content[content_pos..];
                    let n = if ascii {
                        if rest.len() < len as usize {
                            return Err(DecodeError::Truncated);
                        }
                        len as usize
                    } else {
                        let mut it = rest.char_indices();
                        match it.nth(len as usize - 1) {
                            Some((b, c)) => b + c.len_utf8(),
                            None => return Err(DecodeError::Truncated),
                        }
                    };
                    content_pos += n;
                    OpRef::Insert {
                        left,
                        right,
                        content: ContentRef::Text(&rest[..n]),
                    }
                }
            }
            k @ (KIND_DELETE | KIND_DELETE_BACK) if sequence => {
                if flags >> LEFT_SHIFT != 0 {
                    return Err(DecodeError::Malformed("delete run with origin flags"));
                }
                let t = cols[C_TARGET].index(agents.len(), "replica index out of range")?;
                let tseq = if agents[t] == replica {
                    checked_seq(seq, cols[C_TARGET].varint()?.wrapping_neg_zz())?
                } else {
                    cols[C_TARGET].varint()?
                };
                let backward = k == KIND_DELETE_BACK;
                let ok = if backward {
                    tseq >= u64::from(len - 1)
                } else {
                    tseq.checked_add(u64::from(len)).is_some()
                };
                if !ok {
                    return Err(DecodeError::Malformed("delete target out of range"));
                }
                OpRef::Delete {
                    target: OpId::new(agents[t], tseq),
                    backward,
                }
            }
            KIND_ATOM if sequence => {
                if flags >> LEFT_SHIFT != 0 {
                    return Err(DecodeError::Malformed("undelete run with origin flags"));
                }
                let target = id(&agents, &mut cols[C_TARGET])?;
                if target.seq.checked_add(u64::from(len)).is_none() {
                    return Err(DecodeError::Malformed("undelete target out of range"));
                }
                if target.replica == replica && target.seq >= seq {
                    return Err(DecodeError::Malformed("an undelete of a later op"));
                }
                OpRef::Undelete { target }
            }
            KIND_ATOM => {
                if len != 1 {
                    return Err(DecodeError::Malformed(
                        "a counter, register or map run of length > 1",
                    ));
                }
                let is_map = *kind == Kind::Map;
                // Maps delete keys and hold containers; LWW and multi-value registers
                // can be cleared (an undo of their first write).
                let allowed = match kind {
                    Kind::Map => F_NO_VALUE | F_CONTAINER,
                    Kind::Register(Rule::Lww | Rule::MultiValue) => F_NO_VALUE,
                    _ => 0,
                };
                if flags & !(3 | F_AGENT | F_FIELD | allowed) != 0
                    || flags & (F_NO_VALUE | F_CONTAINER) == (F_NO_VALUE | F_CONTAINER)
                {
                    return Err(DecodeError::Malformed(
                        "bad flags on a counter, register or map op",
                    ));
                }
                if *kind == Kind::Counter {
                    OpRef::Add {
                        delta: unzigzag(cols[C_EXTRA].varint()?),
                    }
                } else {
                    let (key, hlc) = if is_map {
                        let k = read_str(&mut vals)?;
                        budget = budget
                            .checked_sub(k.len() + 16)
                            .ok_or(DecodeError::Malformed("update expands too much"))?;
                        (Some(k), 0)
                    } else {
                        (None, cols[C_EXTRA].varint()?)
                    };
                    let n_preds = cols[C_EXTRA].varint()?;
                    // Each pred takes at least two bytes.
                    if n_preds > (cols[C_TARGET].remaining() / 2) as u64 {
                        return Err(DecodeError::Truncated);
                    }
                    budget = budget
                        .checked_sub(n_preds as usize * std::mem::size_of::<OpId>())
                        .ok_or(DecodeError::Malformed("update expands too much"))?;
                    preds_buf.clear();
                    for _ in 0..n_preds {
                        let p = id(&agents, &mut cols[C_TARGET])?;
                        if p.replica == replica && p.seq >= seq {
                            return Err(DecodeError::Malformed("a write supersedes a later write"));
                        }
                        preds_buf.push(p);
                    }
                    value_buf = if flags & F_NO_VALUE != 0 {
                        None
                    } else if flags & F_CONTAINER != 0 {
                        let k = read_kind(&mut vals)?;
                        if depths[field] + 1 > MAX_DEPTH {
                            return Err(DecodeError::Malformed("containers nested too deeply"));
                        }
                        Some(MapValue::Container(k))
                    } else {
                        Some(MapValue::Value(read_value(&mut vals, &mut budget)?))
                    };
                    key_buf = key;
                    OpRef::Set {
                        key: key_buf.as_ref(),
                        value: value_buf.as_ref(),
                        hlc,
                        preds: &preds_buf,
                    }
                }
            }
            _ => return Err(DecodeError::Malformed("run kind does not fit its field")),
        };
        if !changes.is_empty() {
            run_spans.push((agent, seq, seq + u64::from(len)));
        }
        let run = RunRef {
            replica,
            seq,
            lamport,
            len,
            field: &fields[field],
            op,
        };
        if !each(run)? {
            return Ok(false);
        }
    }
    if cols.iter().any(|c| c.remaining() != 0) {
        return Err(DecodeError::Malformed("bytes left after the last run"));
    }
    if content_pos != content.len() {
        return Err(DecodeError::Malformed("content left after the last run"));
    }
    if !vals.is_empty() {
        return Err(DecodeError::Malformed("values left after the last run"));
    }
    // A change record describes ops the update carries: one overlaps a run of its
    // replica (records cannot be attached to others' changes by a third party).
    if !changes.is_empty() {
        run_spans.sort_unstable();
        let index: std::collections::HashMap<ReplicaId, usize> =
            agents.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        for c in changes.iter() {
            let a = index[&c.replica];
            let i = run_spans.partition_point(|&(ra, _, end)| (ra, end) <= (a, c.seq));
            if !run_spans
                .get(i)
                .is_some_and(|&(ra, seq, _)| ra == a && seq < c.end())
            {
                return Err(DecodeError::Malformed(
                    "a change record names no operation of the update",
                ));
            }
        }
    }
    Ok(true)
}

/// `x - seq` was written as `zigzag(seq - x)`; reading it back as a delta to add
/// means negating the zigzagged value.
trait NegZigzag {
    fn wrapping_neg_zz(self) -> u64;
}

impl NegZigzag for u64 {
    fn wrapping_neg_zz(self) -> u64 {
        zigzag(unzigzag(self).wrapping_neg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        let a = ReplicaId::from_u128(7);
        let b = ReplicaId::from_u128(9);
        let f = Arc::new(FieldKey {
            parent: None,
            name: "body".into(),
            kind: Kind::Text,
        });
        let runs = vec![
            WireRun {
                replica: a,
                seq: 0,
                lamport: 1,
                len: 3,
                field: f.clone(),
                op: WireOp::Insert {
                    left: None,
                    right: None,
                    content: Content::Text("h😀é".into()),
                },
            },
            WireRun {
                replica: b,
                seq: 0,
                lamport: 4,
                len: 2,
                field: f.clone(),
                op: WireOp::Insert {
                    left: Some(OpId::new(a, 0)),
                    right: Some(OpId::new(a, 1)),
                    content: Content::Text("xy".into()),
                },
            },
            WireRun {
                replica: a,
                seq: 3,
                lamport: 6,
                len: 2,
                field: f,
                op: WireOp::Delete {
                    target: OpId::new(a, 2),
                    backward: true,
                },
            },
        ];
        let bytes = encode_runs(&runs, &[], true);
        assert_eq!(decode_runs(&bytes).unwrap().0, runs);
    }
}
