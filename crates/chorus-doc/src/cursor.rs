//! Stable cursors: positions in a text that follow concurrent edits.
//!
//! A [`Cursor`] is anchored on a character (by its op id, which never changes) and a
//! side of it, so it resolves to the right position after any edits, local or remote,
//! including deletion of the anchored character: deleted characters keep their place
//! in the sequence (as tombstones), so the cursor stays where the character was.

use crate::branch::Body;
use crate::tree::{Cur, Lv};
use crate::{DecodeError, EditError, OpId, ReplicaId, TextView};

/// Which neighbour of a position a [`Cursor`] sticks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Assoc {
    /// The character after the position: text typed at the cursor goes before the
    /// anchor, so the cursor moves right with it (the usual caret).
    After,
    /// The character before the position: text typed at the cursor goes after the
    /// anchor, so the cursor stays left of it (the start of a selection).
    Before,
}

/// A position in a text that survives concurrent edits. Cheap to copy, and to send
/// to other replicas ([`Cursor::to_bytes`]) for showing remote carets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The anchor character; `None` for the start (`Before`) or end (`After`).
    anchor: Option<OpId>,
    assoc: Assoc,
}

impl Cursor {
    /// The anchor character, if any.
    pub fn anchor(&self) -> Option<OpId> {
        self.anchor
    }

    /// The side it sticks to.
    pub fn assoc(&self) -> Assoc {
        self.assoc
    }

    /// A compact binary form: `u8` tag (bit 0: anchored, bit 1: `Before`), then for an
    /// anchored cursor the 16-byte replica id and the seq as a LEB128 varint.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            vec![u8::from(self.anchor.is_some()) | (u8::from(self.assoc == Assoc::Before) << 1)];
        if let Some(id) = self.anchor {
            out.extend_from_slice(id.replica.as_bytes());
            crate::encoding::put_varint(&mut out, id.seq);
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form.
    pub fn from_bytes(b: &[u8]) -> Result<Cursor, DecodeError> {
        let (&tag, rest) = b.split_first().ok_or(DecodeError::Truncated)?;
        if tag > 3 {
            return Err(DecodeError::Malformed("unknown cursor tag"));
        }
        let assoc = if tag & 2 != 0 {
            Assoc::Before
        } else {
            Assoc::After
        };
        if tag & 1 == 0 {
            if !rest.is_empty() {
                return Err(DecodeError::TrailingBytes(rest.len()));
            }
            return Ok(Cursor {
                anchor: None,
                assoc,
            });
        }
        if rest.len() < 17 {
            return Err(DecodeError::Truncated);
        }
        let replica = ReplicaId::from_bytes(rest[..16].try_into().expect("16 bytes"));
        let mut seq = 0u64;
        let mut i = 16;
        for shift in (0..64).step_by(7) {
            let byte = *rest.get(i).ok_or(DecodeError::Truncated)?;
            i += 1;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::Malformed("varint overflows 64 bits"));
            }
            seq |= bits << shift;
            if byte & 0x80 == 0 {
                if i != rest.len() {
                    return Err(DecodeError::TrailingBytes(rest.len() - i));
                }
                return Ok(Cursor {
                    anchor: Some(OpId::new(replica, seq)),
                    assoc,
                });
            }
        }
        Err(DecodeError::Malformed("varint longer than 10 bytes"))
    }
}

impl TextView<'_> {
    /// A cursor at char position `pos`, sticking to the character on side `assoc`.
    pub fn cursor(&self, pos: usize, assoc: Assoc) -> Result<Cursor, EditError> {
        let len = self.len();
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        let anchor_pos = match assoc {
            Assoc::After if pos < len => Some(pos),
            Assoc::Before if pos > 0 => Some(pos - 1),
            _ => None,
        };
        let anchor = match (anchor_pos, self.field) {
            (Some(p), Some(f)) => {
                let tree = self.branch.seq(f);
                let (cur, _) = tree
                    .find_visible(p as u32, crate::tree::Unit::Char, &self.doc.content)?
                    .expect("position was checked");
                let lv = tree.item_at(cur);
                let (agent, seq) = self.doc.log.id_of(lv);
                Some(OpId::new(self.doc.log.agents[agent as usize].id, seq))
            }
            _ => None,
        };
        Ok(Cursor { anchor, assoc })
    }

    /// A cursor at UTF-16 position `pos`.
    pub fn cursor_utf16(&self, pos: usize, assoc: Assoc) -> Result<Cursor, EditError> {
        self.cursor(self.utf16_to_char(pos)?, assoc)
    }

    /// Where `cursor` is now, in chars; `None` if its anchor is not known here (yet)
    /// or belongs to another field.
    pub fn resolve(&self, cursor: &Cursor) -> Option<usize> {
        self.resolve_counts(cursor).map(|c| c.chars as usize)
    }

    /// Where `cursor` is now, in UTF-16 units.
    pub fn resolve_utf16(&self, cursor: &Cursor) -> Option<usize> {
        self.resolve_counts(cursor).map(|c| c.utf16 as usize)
    }

    fn resolve_counts(&self, cursor: &Cursor) -> Option<crate::tree::Counts> {
        let Some(id) = cursor.anchor else {
            return Some(match cursor.assoc {
                Assoc::Before => crate::tree::Counts::default(),
                Assoc::After => self
                    .field
                    .map(|f| self.branch.seq(f).total())
                    .unwrap_or_default(),
            });
        };
        let f = self.field?;
        let agent = self.doc.log.find(&id.replica)?;
        let lv: Lv = self.doc.log.lv_of(agent, id.seq)?;
        let Body::Seq(tree) = &self.branch.bodies[f as usize] else {
            return None;
        };
        let cur: Cur = if self.branch.index.is_on() {
            let leaf = self.branch.index.get(lv)?;
            let e = &self.doc.log.entries[self.doc.log.entry_index(lv)];
            if e.field != f {
                return None;
            }
            tree.locate(lv, leaf)
        } else {
            tree.scan_for(lv)?
        };
        let mut at = tree.counts_before(cur, &self.doc.content);
        let r = tree.run(cur.leaf, cur.idx);
        if cursor.assoc == Assoc::Before && !r.deleted() {
            // After the anchor character.
            let c = r
                .text(&self.doc.content)
                .chars()
                .nth(cur.off as usize)
                .map_or(1, char::len_utf16);
            at.chars += 1;
            at.utf16 += c as u32;
        }
        Some(at)
    }
}
