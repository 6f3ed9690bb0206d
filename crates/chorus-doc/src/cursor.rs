//! Stable cursors: positions in a text that follow concurrent edits.
//!
//! A [`Cursor`] is anchored on a character (by its op id, which never changes) and a
//! side of it, so it resolves to the right position after any edits, local or remote,
//! including deletion of the anchored character: deleted characters keep their place
//! in the sequence (as tombstones), so the cursor stays where the character was.

use crate::branch::Body;
use crate::tree::{Cur, Lv};
use crate::wire::{Reader, put_replica, put_varint};
use crate::{DecodeError, EditError, OpId, TextView};

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
            put_replica(&mut out, id.replica);
            put_varint(&mut out, id.seq);
        }
        out
    }

    /// Reads [`to_bytes`](Self::to_bytes)'s form.
    pub fn from_bytes(b: &[u8]) -> Result<Cursor, DecodeError> {
        let mut r = Reader::new(b);
        let tag = r.u8()?;
        if tag > 3 {
            return Err(DecodeError::Malformed("unknown cursor tag"));
        }
        let assoc = if tag & 2 != 0 {
            Assoc::Before
        } else {
            Assoc::After
        };
        let anchor = if tag & 1 != 0 {
            Some(OpId::new(r.replica()?, r.varint()?))
        } else {
            None
        };
        r.finish()?;
        Ok(Cursor { anchor, assoc })
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
                    .find_visible(p as u32, crate::tree::Unit::Char, &self.doc.log.content)?
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
        let mut at = tree.counts_before(cur, &self.doc.log.content);
        let r = tree.run(cur.leaf, cur.idx);
        if cursor.assoc == Assoc::Before && !r.deleted() {
            // After the anchor character.
            let c = r
                .text(&self.doc.log.content)
                .chars()
                .nth(cur.off as usize)
                .map_or(1, char::len_utf16);
            at.chars += 1;
            at.utf16 += c as u32;
        }
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReplicaId;

    #[test]
    fn bytes_round_trip() {
        let anchored = Cursor {
            anchor: Some(OpId::new(ReplicaId::from_u128(7), 300)),
            assoc: Assoc::Before,
        };
        let bytes = anchored.to_bytes();
        assert_eq!(bytes[0], 3);
        assert_eq!(bytes[1..17], 7u128.to_be_bytes());
        assert_eq!(bytes[17..], [0xac, 0x02]);
        assert_eq!(Cursor::from_bytes(&bytes), Ok(anchored));
        let end = Cursor {
            anchor: None,
            assoc: Assoc::After,
        };
        assert_eq!(end.to_bytes(), [0]);
        assert_eq!(Cursor::from_bytes(&[0]), Ok(end));
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        let anchored = |tail: &[u8]| [&[1u8][..], &[5; 16], tail].concat();
        let cases: Vec<(Vec<u8>, DecodeError)> = vec![
            (vec![], DecodeError::Truncated),
            (vec![4], DecodeError::Malformed("unknown cursor tag")),
            (vec![0, 0], DecodeError::TrailingBytes(1)),
            (vec![2, 1, 2], DecodeError::TrailingBytes(2)),
            (vec![1; 16], DecodeError::Truncated),
            (anchored(&[]), DecodeError::Truncated),
            (anchored(&[0x80]), DecodeError::Truncated),
            (anchored(&[5, 0]), DecodeError::TrailingBytes(1)),
            (
                anchored(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
                DecodeError::Malformed("varint overflows 64 bits"),
            ),
            (
                anchored(&[
                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0,
                ]),
                DecodeError::Malformed("varint longer than 10 bytes"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(Cursor::from_bytes(&bytes), Err(want), "{bytes:x?}");
        }
        // Cursors have always accepted a varint longer than needed.
        assert_eq!(
            Cursor::from_bytes(&anchored(&[0x80, 0])).map(|c| c.anchor().map(|a| a.seq)),
            Ok(Some(0))
        );
    }
}
