//! Reading text: [`TextView`], on the current branch or on one at another version.

use std::fmt;
use std::ops::Range;

use crate::branch::Branch;
use crate::doc::Doc;
use crate::oplog::ROOT;
use crate::tree::{Cur, Tree, Unit};
use crate::{EditError, Kind};

impl Doc {
    /// Reads the text field `name` (empty if it does not exist).
    pub fn text(&self, name: &str) -> TextView<'_> {
        TextView {
            doc: self,
            branch: &self.branch,
            field: self.find_field(ROOT, name, &Kind::Text),
        }
    }

    pub(crate) fn utf16_to_char_in(
        &self,
        field: Option<u32>,
        pos: usize,
    ) -> Result<usize, EditError> {
        TextView {
            doc: self,
            branch: &self.branch,
            field,
        }
        .utf16_to_char(pos)
    }
}

/// Read-only access to one text field.
#[derive(Clone, Copy)]
pub struct TextView<'d> {
    pub(crate) doc: &'d Doc,
    pub(crate) branch: &'d Branch,
    pub(crate) field: Option<u32>,
}

impl<'d> TextView<'d> {
    pub(crate) fn tree(&self) -> Option<&'d Tree> {
        self.field.map(|f| self.branch.seq(f))
    }

    /// Length in chars (Unicode scalar values).
    pub fn len(&self) -> usize {
        self.tree().map_or(0, |t| t.total().chars as usize)
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length in UTF-16 code units.
    pub fn len_utf16(&self) -> usize {
        self.tree().map_or(0, |t| t.total().utf16 as usize)
    }

    /// Length in UTF-8 bytes.
    pub fn len_utf8(&self) -> usize {
        self.tree().map_or(0, |t| t.total().bytes as usize)
    }

    /// The chars in `range` (char positions).
    pub fn slice(&self, range: Range<usize>) -> Result<String, EditError> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(EditError::OutOfRange {
                pos: range.end.max(range.start),
                len,
            });
        }
        let mut out = String::new();
        let Some(tree) = self.tree() else {
            return Ok(out);
        };
        if range.is_empty() {
            return Ok(out);
        }
        let content = &self.doc.log.content;
        let (mut cur, _) = tree
            .find_visible(range.start as u32, Unit::Char, content)?
            .expect("range was checked");
        let mut want = range.end - range.start;
        while want > 0 {
            let r = tree.run(cur.leaf, cur.idx);
            if !r.deleted() {
                let text = r.text(content);
                let take = (r.len - cur.off).min(want as u32);
                if r.byte_len == r.len {
                    out.push_str(&text[cur.off as usize..(cur.off + take) as usize]);
                } else {
                    out.extend(text.chars().skip(cur.off as usize).take(take as usize));
                }
                want -= take as usize;
            }
            cur = tree.normalize(Cur {
                leaf: cur.leaf,
                idx: cur.idx + 1,
                off: 0,
            });
        }
        Ok(out)
    }

    /// Converts a UTF-16 position to a char position.
    pub fn utf16_to_char(&self, pos: usize) -> Result<usize, EditError> {
        let Some(tree) = self.tree() else {
            return if pos == 0 {
                Ok(0)
            } else {
                Err(EditError::OutOfRange { pos, len: 0 })
            };
        };
        let total = tree.total();
        if pos > total.utf16 as usize {
            return Err(EditError::OutOfRange {
                pos,
                len: total.utf16 as usize,
            });
        }
        Ok(
            match tree.find_visible(pos as u32, Unit::Utf16, &self.doc.log.content) {
                Ok(Some((_, chars))) => chars as usize,
                Ok(None) => total.chars as usize,
                Err(_) => return Err(EditError::NotCharBoundary { pos }),
            },
        )
    }

    /// Converts a char position to a UTF-16 position.
    pub fn char_to_utf16(&self, pos: usize) -> Result<usize, EditError> {
        Ok(self.prefix(pos)?.utf16 as usize)
    }

    /// Converts a char position to a UTF-8 byte offset.
    pub fn char_to_utf8(&self, pos: usize) -> Result<usize, EditError> {
        Ok(self.prefix(pos)?.bytes as usize)
    }

    fn prefix(&self, pos: usize) -> Result<crate::tree::Counts, EditError> {
        let len = self.len();
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        Ok(self
            .tree()
            .map(|t| t.prefix_counts(pos as u32, &self.doc.log.content))
            .unwrap_or_default())
    }
}

impl fmt::Display for TextView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(tree) = self.tree() else {
            return Ok(());
        };
        for r in tree.runs() {
            if !r.deleted() {
                f.write_str(r.text(&self.doc.log.content))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TextView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TextView").field(&self.to_string()).finish()
    }
}
