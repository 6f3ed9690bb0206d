//! The binary update format (version 1), shared by full states and deltas.
//!
//! ```text
//! update   = magic "CHRS" · version u8 (= 1) · replicas · fields · block(meta) · block(content)
//! replicas = varint n · n × 16-byte replica id
//! fields   = varint n · n × (varint len · UTF-8 name · u8 type (1 = text))
//! block    = u8 codec (0 = stored, 1 = deflate) · varint raw_len · [varint stored_len] · bytes
//! meta     = varint n_runs · n_runs × run
//! content  = the UTF-8 text of every insert run, in run order
//! ```
//!
//! A run is one stretch of operations by one replica (see `PROTOCOL.md` for the
//! per-run layout). Runs are in causal order. Integers are LEB128 varints; signed
//! deltas are zigzag-encoded. Decoding never trusts a count: every count is checked
//! against the bytes that remain, a block may expand to at most [`MAX_EXPANSION`]
//! times its stored size, and all that decoding allocates (blocks and runs) stays
//! under [`MAX_EXPANSION`] times the update's size (or 4 KiB for tiny updates).

use std::sync::Arc;

use crate::ids::ReplicaIndex;
use crate::{DecodeError, OpId, ReplicaId};

const MAGIC: &[u8; 4] = b"CHRS";
/// The format version this build writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// A compressed block may not claim to expand more than this many times.
pub(crate) const MAX_EXPANSION: usize = 64;
/// Blocks smaller than this are stored as they are.
const COMPRESS_MIN: usize = 256;

const KIND_INSERT: u8 = 0;
const KIND_DELETE: u8 = 1;
const KIND_DELETE_BACK: u8 = 2;
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
const N_COLS: usize = 9;
const C_FLAGS: usize = 0;
const C_AGENT: usize = 1;
const C_SEQ: usize = 2;
const C_LAMPORT: usize = 3;
const C_LEN: usize = 4;
const C_FIELD: usize = 5;
const C_LEFT: usize = 6;
const C_RIGHT: usize = 7;
const C_TARGET: usize = 8;

/// One stretch of operations as carried in an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireRun {
    pub replica: ReplicaId,
    pub seq: u64,
    pub lamport: u64,
    pub len: u32,
    pub field: Arc<str>,
    pub op: WireOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WireOp {
    Insert {
        left: Option<OpId>,
        right: Option<OpId>,
        content: String,
    },
    Delete {
        target: OpId,
        backward: bool,
    },
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
                let cut = content
                    .char_indices()
                    .nth(k as usize)
                    .map_or(content.len(), |(b, _)| b);
                content.drain(..cut);
            }
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

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_block(out: &mut Vec<u8>, raw: &[u8]) {
    if raw.len() >= COMPRESS_MIN {
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

/// Encodes `runs` (in causal order) as one update.
pub(crate) fn encode_runs(runs: &[WireRun]) -> Vec<u8> {
    let mut agents = ReplicaIndex::default();
    let mut fields: Vec<Arc<str>> = Vec::new();
    let intern = |r: ReplicaId, agents: &mut ReplicaIndex| -> u64 { agents.insert(r).0 as u64 };

    let mut cols: [Vec<u8>; N_COLS] = Default::default();
    let mut content = String::new();
    let mut expected_seq: Vec<u64> = Vec::new();
    let mut prev_agent = u64::MAX;
    let mut prev_field = u64::MAX;
    let mut prev_lamport_end = 0u64;
    let mut prev_right: Option<OpId> = None;
    for run in runs {
        let agent = intern(run.replica, &mut agents);
        let field = match fields
            .iter()
            .position(|f| Arc::ptr_eq(f, &run.field) || *f == run.field)
        {
            Some(f) => f as u64,
            None => {
                fields.push(run.field.clone());
                fields.len() as u64 - 1
            }
        };
        let mut flags = match run.op {
            WireOp::Insert { .. } => KIND_INSERT,
            WireOp::Delete {
                backward: false, ..
            } => KIND_DELETE,
            WireOp::Delete { backward: true, .. } => KIND_DELETE_BACK,
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
                content: text,
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
                        put_varint(&mut cols[C_LEFT], intern(l.replica, &mut agents));
                        put_varint(&mut cols[C_LEFT], l.seq);
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
                        put_varint(&mut cols[C_RIGHT], intern(r.replica, &mut agents));
                        put_varint(&mut cols[C_RIGHT], r.seq);
                        O_EXPLICIT
                    }
                };
                prev_right = *right;
                flags |= (lmode << LEFT_SHIFT) | (rmode << RIGHT_SHIFT);
                content.push_str(text);
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

    let mut meta = Vec::with_capacity(cols.iter().map(Vec::len).sum::<usize>() + 32);
    put_varint(&mut meta, runs.len() as u64);
    for c in &cols {
        put_varint(&mut meta, c.len() as u64);
        meta.extend_from_slice(c);
    }
    let mut out = Vec::with_capacity(meta.len() / 2 + content.len() / 2 + 64);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    put_varint(&mut out, agents.ids().len() as u64);
    for a in agents.ids() {
        out.extend_from_slice(a.as_bytes());
    }
    put_varint(&mut out, fields.len() as u64);
    for f in &fields {
        put_varint(&mut out, f.len() as u64);
        out.extend_from_slice(f.as_bytes());
        out.push(1);
    }
    put_block(&mut out, &meta);
    put_block(&mut out, content.as_bytes());
    out
}

// ---------------------------------------------------------------- reading

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Malformed("varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes"))
    }

    /// A count of items that each take at least `min_bytes` of what remains.
    fn count(&mut self, min_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    fn index(&mut self, len: usize, what: &'static str) -> Result<usize, DecodeError> {
        let i = self.varint()?;
        if i >= len as u64 {
            return Err(DecodeError::Malformed(what));
        }
        Ok(i as usize)
    }

    fn block(&mut self) -> Result<Vec<u8>, DecodeError> {
        let codec = self.u8()?;
        let raw_len = self.varint()?;
        match codec {
            0 => Ok(self
                .bytes(usize::try_from(raw_len).map_err(|_| DecodeError::Truncated)?)?
                .to_vec()),
            1 => {
                let stored = self.varint()?;
                if stored > self.remaining() as u64 {
                    return Err(DecodeError::Truncated);
                }
                let stored = stored as usize;
                if raw_len > (stored as u64).saturating_mul(MAX_EXPANSION as u64) {
                    return Err(DecodeError::Malformed(
                        "block claims too large an expansion",
                    ));
                }
                let raw_len = raw_len as usize;
                let data = self.bytes(stored)?;
                inflate_exact(data, raw_len)
            }
            _ => Err(DecodeError::Malformed("unknown block codec")),
        }
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
pub(crate) fn decode_runs(bytes: &[u8]) -> Result<Vec<WireRun>, DecodeError> {
    let n = std::cell::Cell::new(0);
    let mut runs = Vec::new();
    decode_each(
        bytes,
        |count, _| n.set(count),
        |run| {
            if runs.is_empty() {
                runs.reserve_exact(n.get());
            }
            runs.push(run.to_owned());
            Ok(true)
        },
    )?;
    Ok(runs)
}

/// One run as decoded, borrowing the update's text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunRef<'a> {
    pub replica: ReplicaId,
    pub seq: u64,
    pub lamport: u64,
    pub len: u32,
    pub field: &'a Arc<str>,
    pub op: OpRef<'a>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum OpRef<'a> {
    Insert {
        left: Option<OpId>,
        right: Option<OpId>,
        content: &'a str,
    },
    Delete {
        target: OpId,
        backward: bool,
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
                    content: content.to_owned(),
                },
                OpRef::Delete { target, backward } => WireOp::Delete { target, backward },
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
                    content,
                },
                WireOp::Delete { target, backward } => OpRef::Delete {
                    target: *target,
                    backward: *backward,
                },
            },
        }
    }
}

/// Decodes an update and hands each run to `each` in order, after `count` was told
/// how many there are and how many bytes of text they carry. `each` returns `Ok(false)` to stop early (then so does this).
/// Structural errors anywhere in the update are found, but those past the last run
/// only once every run was handed out.
pub(crate) fn decode_each(
    bytes: &[u8],
    count: impl FnOnce(usize, usize),
    mut each: impl FnMut(RunRef<'_>) -> Result<bool, DecodeError>,
) -> Result<bool, DecodeError> {
    let mut r = Reader::new(bytes);
    if r.bytes(4).map_err(|_| DecodeError::BadMagic)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let n_agents = r.count(16)?;
    let mut agents = Vec::with_capacity(n_agents);
    for _ in 0..n_agents {
        let b: [u8; 16] = r.bytes(16)?.try_into().expect("16 bytes");
        agents.push(ReplicaId::from_bytes(b));
    }
    let n_fields = r.count(2)?;
    let mut fields: Vec<Arc<str>> = Vec::with_capacity(n_fields);
    for _ in 0..n_fields {
        let len = r.count(1)?;
        let name = std::str::from_utf8(r.bytes(len)?).map_err(|_| DecodeError::InvalidUtf8)?;
        if r.u8()? != 1 {
            return Err(DecodeError::Malformed("unknown field type"));
        }
        fields.push(name.into());
    }
    let meta = r.block()?;
    let content = r.block()?;
    // Everything decoding allocates stays within a fixed multiple of the input.
    let budget = bytes.len().saturating_mul(MAX_EXPANSION).max(4096);
    if meta.len() + content.len() > budget {
        return Err(DecodeError::Malformed("update expands too much"));
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
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
    if n_runs.saturating_mul(std::mem::size_of::<WireRun>()) > budget {
        return Err(DecodeError::Malformed("update expands too much"));
    }
    count(n_runs, content.len());
    let mut expected_seq: Vec<u64> = vec![0; agents.len()];
    let mut agent = usize::MAX;
    let mut field = usize::MAX;
    let mut prev_lamport_end = 0u64;
    let mut prev_right: Option<OpId> = None;
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
        let op = match flags & 3 {
            KIND_INSERT => {
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
                    content: &rest[..n],
                }
            }
            k @ (KIND_DELETE | KIND_DELETE_BACK) => {
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
            _ => return Err(DecodeError::Malformed("unknown run kind")),
        };
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
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(Reader::new(&out).varint().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .varint()
                .is_err()
        );
    }

    #[test]
    fn runs_round_trip() {
        let a = ReplicaId::from_u128(7);
        let b = ReplicaId::from_u128(9);
        let f: Arc<str> = "body".into();
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
                    content: "h😀é".into(),
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
                    content: "xy".into(),
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
        let bytes = encode_runs(&runs);
        assert_eq!(decode_runs(&bytes).unwrap(), runs);
    }
}
