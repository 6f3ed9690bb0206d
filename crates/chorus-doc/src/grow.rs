//! Gentle growth for the document's big vectors.
//!
//! A vector that doubles when full holds up to twice what it needs; for a document's
//! largest structures (the op log, the leaves of a tree, the text) that slack is most
//! of the memory overhead. These grow by a quarter instead: still amortized O(1) per
//! push, with at most 25% slack.

/// Makes room for one more element, growing by a quarter when full.
pub(crate) fn reserve_one<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact(v.capacity() / 4 + 16);
    }
}

/// Makes room for `extra` more bytes, growing by at least a quarter when full.
pub(crate) fn reserve_str(s: &mut String, extra: usize) {
    if s.capacity() - s.len() < extra {
        s.reserve_exact(extra.max(s.capacity() / 4 + 64));
    }
}
