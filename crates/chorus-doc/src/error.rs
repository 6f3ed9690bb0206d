//! Errors, one enum per boundary.

/// A local edit asked for something the document cannot do; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// A position or range end lies past the end of the text.
    #[error("position {pos} is out of range: the text is {len} long in this unit")]
    OutOfRange {
        /// The position asked for.
        pos: usize,
        /// The length of the text, in the unit of the call.
        len: usize,
    },
    /// A UTF-16 position falls between the two halves of a surrogate pair.
    #[error(
        "UTF-16 position {pos} falls inside a surrogate pair; use a position on a character boundary"
    )]
    NotCharBoundary {
        /// The position asked for.
        pos: usize,
    },
    /// Containers may nest at most 64 deep, and array values 32 deep.
    #[error("nested too deeply: at most 64 levels of maps and 32 levels of arrays are supported")]
    TooDeep,
    /// A merge rule of this name is already known here.
    #[error("a merge rule named {name:?} is already registered; pick another name")]
    RuleExists {
        /// The rule's name.
        name: String,
    },
    /// The document cannot grow further (4 Gi ops or chars).
    #[error("the document is too large: at most 2^32 operations and characters are supported")]
    TooLarge,
}

/// Bytes from the network or from disk could not be applied; the document is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not start like a Chorus update.
    #[error("not a Chorus update (bad magic bytes)")]
    BadMagic,
    /// The update was written by a newer format version.
    #[error(
        "update format version {0} is not supported (this build reads version 2); upgrade Chorus"
    )]
    UnsupportedVersion(u8),
    /// The bytes end before the structure they describe.
    #[error("update is truncated")]
    Truncated,
    /// Bytes follow the end of the update.
    #[error("{0} unexpected bytes after the end of the update")]
    TrailingBytes(usize),
    /// A field holds a value that is not allowed there.
    #[error("malformed update: {0}")]
    Malformed(&'static str),
    /// Text content is not valid UTF-8.
    #[error("update content is not valid UTF-8")]
    InvalidUtf8,
    /// An operation refers to an operation it may not refer to (for example a delete
    /// of something that is not a character, or a reference into another field).
    #[error("update refers to an invalid operation: {0}")]
    InvalidReference(&'static str),
    /// An operation reuses an id already used by a different operation.
    #[error("update conflicts with operations already applied: {0}")]
    Conflict(&'static str),
    /// Applying would leave more operations waiting for missing dependencies than the limit.
    #[error(
        "too many operations waiting for missing dependencies ({pending} > limit {limit}); sync the missing history first"
    )]
    PendingOverflow {
        /// How many would wait.
        pending: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The document would exceed what this implementation supports.
    #[error("the document would be too large (at most 2^32 operations and characters)")]
    TooLarge,
}

/// An internal invariant does not hold: a bug in Chorus. Returned by [`Doc::check`].
///
/// [`Doc::check`]: crate::Doc::check
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {0}")]
pub struct CheckError(pub String);

/// A version could not be looked at here; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The version names operations this replica does not have (yet): a version of a
    /// replica further ahead, or of another document.
    #[error(
        "unknown version: it names {want} operations of replica {replica}, this document has {have}; sync first"
    )]
    Unknown {
        /// The replica.
        replica: crate::ReplicaId,
        /// How many of its operations are here.
        have: u64,
        /// How many the version names.
        want: u64,
    },
    /// No replica could have held this set of operations: one of them depends on an
    /// operation outside it.
    #[error("not a version any replica held: operation {op} depends on one it lacks")]
    NotClosed {
        /// An operation whose dependency is missing.
        op: crate::OpId,
    },
    /// A version text or bytes that do not parse.
    #[error("not a Chorus version: {0}")]
    Malformed(&'static str),
    /// Reverting would make the document too large.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// A bug in Chorus: an internal inconsistency (please report it).
    #[error("internal error in Chorus history: {0}")]
    Internal(String),
}
