//! Wire primitives: the one reader and writer of the integers, lengths and fixed-width
//! fields that every Chorus byte format is built from.
//!
//! The update format ([`Doc::encode`](crate::Doc::encode)), the value codec, cursors
//! ([`Cursor::to_bytes`](crate::Cursor::to_bytes)) and `chorus-sync`'s frames (with
//! their version vectors) all write through the `put_*` functions here and read
//! through [`Reader`], so there is exactly one definition of each primitive:
//!
//! ```text
//! varint       = LEB128: 7 bits a byte, least significant first, high bit = more
//!                follows; at most 10 bytes (a u64)
//! zigzag       = a varint of (v << 1) ^ (v >> 63), so small negative i64s stay short
//! len-prefixed = varint n · n bytes             (strings: n bytes of UTF-8)
//! fixed        = N bytes as they are            (replica ids: 16 bytes)
//! ```
//!
//! The writers always produce the shortest varint. The reader accepts any varint of at
//! most 10 bytes, as the update and frame formats always have; a reader made with
//! [`Reader::canonical`] (the value codec's, so that equal values have equal bytes)
//! also refuses varints that are not the shortest.
//!
//! What the reader guarantees, for any input whatever: it never panics and never
//! reads past its buffer; every failure is a [`ReadError`], which converts into the
//! error type of the format's boundary (`DecodeError` here, `ProtocolError` in
//! `chorus-sync`); and a count it returns from [`Reader::count`] has been checked
//! against the bytes that are left, so callers can reserve memory for that many items
//! without trusting the input. A failed read may have consumed bytes: a reader that
//! returned an error is not to be used further, except that [`Reader`] is `Copy`, so
//! callers that need all-or-nothing reads work on a copy.
//!
//! This module is public because `chorus-sync` builds its frames from it; it has no
//! other reason to be part of the API, and holds nothing specific to one format.
//!
//! ```
//! use chorus_doc::wire::{Reader, ReadError, put_str, put_varint, put_zigzag};
//!
//! let mut out = Vec::new();
//! put_varint(&mut out, 300);
//! put_zigzag(&mut out, -2);
//! put_str(&mut out, "hé");
//! assert_eq!(out, [0xac, 0x02, 0x03, 0x03, b'h', 0xc3, 0xa9]);
//!
//! let mut r = Reader::new(&out);
//! assert_eq!(r.varint(), Ok(300));
//! assert_eq!(r.zigzag(), Ok(-2));
//! assert_eq!(r.str(), Ok("hé"));
//! assert_eq!(r.finish(), Ok(()));
//! assert_eq!(r.u8(), Err(ReadError::Truncated));
//! ```

use crate::{DecodeError, ReplicaId};

/// Why a [`Reader`] could not read what it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The bytes end before the field does (or a count claims more items than the
    /// bytes left could hold).
    #[error("the bytes end before the field does")]
    Truncated,
    /// A field's bytes are not a valid encoding (an overlong or overflowing varint).
    #[error("malformed field: {0}")]
    Malformed(&'static str),
    /// A string field is not valid UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// Bytes are left where the encoding should have ended.
    #[error("{0} unexpected bytes after the end")]
    TrailingBytes(usize),
}

impl From<ReadError> for DecodeError {
    #[inline]
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated => DecodeError::Truncated,
            ReadError::Malformed(what) => DecodeError::Malformed(what),
            ReadError::InvalidUtf8 => DecodeError::InvalidUtf8,
            ReadError::TrailingBytes(n) => DecodeError::TrailingBytes(n),
        }
    }
}

/// The most bytes a varint of a `u64` takes.
pub const MAX_VARINT_LEN: usize = 10;

// ---------------------------------------------------------------- writing

/// Appends `v` as a (shortest) LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint.
#[inline]
pub fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

/// Appends `bytes` with their length in front (as a varint).
#[inline]
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends `s` as UTF-8 with its length in bytes in front (as a varint).
#[inline]
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends a replica id as its 16 bytes.
#[inline]
pub fn put_replica(out: &mut Vec<u8>, replica: ReplicaId) {
    out.extend_from_slice(replica.as_bytes());
}

/// Maps signed to unsigned so that numbers near zero, of either sign, are small:
/// 0, -1, 1, -2, … become 0, 1, 2, 3, ….
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

// ---------------------------------------------------------------- reading

/// Reads primitives from the front of a byte slice, checking every length against the
/// bytes left. See the [module docs](self) for what it guarantees.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    /// Invariant: `pos <= buf.len()`.
    pos: usize,
    /// Whether varints must be the shortest encoding of their value.
    canonical: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf` that accepts any varint of at most 10 bytes.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            canonical: false,
        }
    }

    /// A reader at the start of `buf` that also refuses varints longer than needed
    /// (such as `80 00` for 0), so that every value it reads has one encoding.
    #[inline]
    pub fn canonical(buf: &'a [u8]) -> Self {
        Reader {
            canonical: true,
            ..Reader::new(buf)
        }
    }

    /// How many bytes have been read.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The bytes left, without reading them.
    #[inline]
    pub fn peek_rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Reads every byte left.
    #[inline]
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.peek_rest();
        self.pos = self.buf.len();
        s
    }

    /// `Ok` if every byte has been read, else [`ReadError::TrailingBytes`].
    #[inline]
    pub fn finish(&self) -> Result<(), ReadError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(ReadError::TrailingBytes(n)),
        }
    }

    /// One byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, ReadError> {
        let b = *self.buf.get(self.pos).ok_or(ReadError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// The next `n` bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        if n > self.remaining() {
            return Err(ReadError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// The next `N` bytes, as an array (a fixed-width field).
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    /// A replica id (16 bytes).
    #[inline]
    pub fn replica(&mut self) -> Result<ReplicaId, ReadError> {
        Ok(ReplicaId::from_bytes(self.array()?))
    }

    /// A LEB128 varint of at most 10 bytes that fits a `u64` (and, for a
    /// [canonical](Reader::canonical) reader, is the shortest encoding of its value).
    // Always inlined: decoding an update reads several varints per run, and the
    // one-byte case is then a compare and an increment at each call site.
    #[inline(always)]
    pub fn varint(&mut self) -> Result<u64, ReadError> {
        // Most varints in Chorus formats are single bytes: small deltas, lengths and
        // indexes. Read those without entering the loop.
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    fn varint_slow(&mut self) -> Result<u64, ReadError> {
        let rest = &self.buf[self.pos..];
        let mut v = 0u64;
        for (i, &b) in rest.iter().take(MAX_VARINT_LEN).enumerate() {
            let bits = u64::from(b & 0x7f);
            if i == MAX_VARINT_LEN - 1 && bits > 1 {
                return Err(ReadError::Malformed("varint overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                // A last byte of 0 after others adds nothing: a second, longer
                // encoding of a shorter varint.
                if self.canonical && b == 0 && i > 0 {
                    return Err(ReadError::Malformed("varint is not minimally encoded"));
                }
                self.pos += i + 1;
                return Ok(v);
            }
        }
        if rest.len() < MAX_VARINT_LEN {
            Err(ReadError::Truncated)
        } else {
            Err(ReadError::Malformed("varint longer than 10 bytes"))
        }
    }

    /// A zigzag-encoded `i64` (see [`zigzag`]).
    #[inline]
    pub fn zigzag(&mut self) -> Result<i64, ReadError> {
        Ok(unzigzag(self.varint()?))
    }

    /// A count of items that each take at least `min_bytes` (taken as 1 if 0) of the
    /// bytes left; a larger count is [`ReadError::Truncated`] before anything is
    /// allocated for it.
    #[inline]
    pub fn count(&mut self, min_bytes: usize) -> Result<usize, ReadError> {
        let n = self.varint()?;
        if n > (self.remaining() / min_bytes.max(1)) as u64 {
            return Err(ReadError::Truncated);
        }
        Ok(n as usize)
    }

    /// An index into a table of `len` entries; one out of range is
    /// [`ReadError::Malformed`] with the message `what`.
    #[inline(always)]
    pub fn index(&mut self, len: usize, what: &'static str) -> Result<usize, ReadError> {
        let i = self.varint()?;
        if i >= len as u64 {
            return Err(ReadError::Malformed(what));
        }
        Ok(i as usize)
    }

    /// Length-prefixed bytes (see [`put_bytes`]).
    #[inline]
    pub fn len_prefixed(&mut self) -> Result<&'a [u8], ReadError> {
        let n = self.count(1)?;
        self.bytes(n)
    }

    /// A length-prefixed UTF-8 string (see [`put_str`]).
    #[inline]
    pub fn str(&mut self) -> Result<&'a str, ReadError> {
        std::str::from_utf8(self.len_prefixed()?).map_err(|_| ReadError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint_bytes(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let out = varint_bytes(v);
            assert_eq!(Reader::new(&out).varint(), Ok(v));
            assert_eq!(Reader::canonical(&out).varint(), Ok(v));
        }
        assert_eq!(varint_bytes(u64::MAX).len(), MAX_VARINT_LEN);
        for v in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!([zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)], [0, 1, 2, 3]);
    }

    #[test]
    fn known_encodings() {
        assert_eq!(varint_bytes(0), [0]);
        assert_eq!(varint_bytes(127), [0x7f]);
        assert_eq!(varint_bytes(128), [0x80, 1]);
        assert_eq!(varint_bytes(300), [0xac, 0x02]);
        let mut out = Vec::new();
        put_replica(&mut out, ReplicaId::from_u128(1));
        put_bytes(&mut out, &[9, 8]);
        assert_eq!(out[..16], 1u128.to_be_bytes());
        assert_eq!(out[16..], [2, 9, 8]);
    }

    #[test]
    fn bad_varints_are_errors() {
        let cases: &[(&[u8], ReadError)] = &[
            (&[], ReadError::Truncated),
            (&[0x80], ReadError::Truncated),
            (&[0xff; 9], ReadError::Truncated),
            (
                &[0xff; 11],
                ReadError::Malformed("varint overflows 64 bits"),
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                ReadError::Malformed("varint overflows 64 bits"),
            ),
            (
                &[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0,
                ],
                ReadError::Malformed("varint longer than 10 bytes"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Reader::new(bytes).varint(), Err(*want), "{bytes:x?}");
            assert_eq!(Reader::canonical(bytes).varint(), Err(*want), "{bytes:x?}");
        }
    }

    #[test]
    fn only_the_canonical_reader_refuses_long_encodings() {
        for bytes in [
            &[0x80, 0][..],
            &[0x81, 0x80, 0],
            &[0xff; 9].iter().chain(&[0]).copied().collect::<Vec<_>>(),
        ] {
            assert!(Reader::new(bytes).varint().is_ok(), "{bytes:x?}");
            assert_eq!(
                Reader::canonical(bytes).varint(),
                Err(ReadError::Malformed("varint is not minimally encoded")),
                "{bytes:x?}"
            );
        }
        // A single 0 byte is the shortest encoding of 0.
        assert_eq!(Reader::canonical(&[0]).varint(), Ok(0));
    }

    #[test]
    fn counts_are_checked_against_the_bytes_left() {
        assert_eq!(Reader::new(&[2, 0, 0]).count(1), Ok(2));
        assert_eq!(Reader::new(&[3, 0, 0]).count(1), Err(ReadError::Truncated));
        assert_eq!(
            Reader::new(&[2, 0, 0, 0]).count(2),
            Err(ReadError::Truncated)
        );
        assert_eq!(Reader::new(&[1, 0]).count(0), Ok(1));
        let huge = varint_bytes(u64::MAX);
        assert_eq!(Reader::new(&huge).count(1), Err(ReadError::Truncated));
        assert_eq!(Reader::new(&huge).len_prefixed(), Err(ReadError::Truncated));
        assert_eq!(
            Reader::new(&[3]).index(3, "out of range"),
            Err(ReadError::Malformed("out of range"))
        );
        assert_eq!(Reader::new(&[2]).index(3, "out of range"), Ok(2));
    }

    #[test]
    fn fields_in_sequence() {
        let mut out = vec![7];
        put_replica(&mut out, ReplicaId::from_u128(5));
        put_zigzag(&mut out, -300);
        put_str(&mut out, "ok");
        out.extend_from_slice(&[0xc3, 0x28]);
        put_bytes(&mut out, &[0xc3, 0x28]);
        let mut r = Reader::new(&out);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.replica(), Ok(ReplicaId::from_u128(5)));
        assert_eq!(r.zigzag(), Ok(-300));
        assert_eq!(r.str(), Ok("ok"));
        assert_eq!(r.array::<2>(), Ok([0xc3, 0x28]));
        assert_eq!(r.position(), out.len() - 3);
        assert_eq!(r.finish(), Err(ReadError::TrailingBytes(3)));
        assert_eq!(r.clone().str(), Err(ReadError::InvalidUtf8));
        assert_eq!(r.peek_rest(), &[2, 0xc3, 0x28]);
        assert_eq!(r.rest(), &[2, 0xc3, 0x28]);
        assert!(r.is_empty());
        assert_eq!(r.bytes(1), Err(ReadError::Truncated));
        assert_eq!(r.array::<16>(), Err(ReadError::Truncated));
        assert_eq!(r.bytes(0), Ok(&[][..]));
    }

    proptest! {
        #[test]
        fn written_varints_read_back(v in any::<u64>(), i in any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            put_zigzag(&mut out, i);
            let mut r = Reader::canonical(&out);
            prop_assert_eq!(r.varint(), Ok(v));
            prop_assert_eq!(r.zigzag(), Ok(i));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reading_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            ops in proptest::collection::vec(0u8..9, 0..24),
            canonical in any::<bool>(),
        ) {
            let mut r = if canonical { Reader::canonical(&bytes) } else { Reader::new(&bytes) };
            for op in ops {
                let before = r.position();
                let ok = match op {
                    0 => r.u8().is_ok(),
                    1 => r.varint().is_ok(),
                    2 => r.zigzag().is_ok(),
                    3 => r.count(3).is_ok(),
                    4 => r.str().is_ok(),
                    5 => r.len_prefixed().is_ok(),
                    6 => r.replica().is_ok(),
                    7 => r.index(5, "x").is_ok(),
                    _ => r.bytes(op as usize).is_ok(),
                };
                prop_assert!(r.position() <= bytes.len());
                prop_assert!(r.position() >= before);
                if ok && op == 1 {
                    // What was read re-encodes to the bytes read, if canonical.
                    let v = Reader::new(&bytes[before..]).varint().unwrap();
                    if canonical {
                        prop_assert_eq!(varint_bytes(v), &bytes[before..r.position()]);
                    }
                }
            }
        }
    }
}
