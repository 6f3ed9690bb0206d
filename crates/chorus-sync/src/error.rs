//! Protocol errors: what a peer did wrong, with a stable numeric code for the wire.

use chorus_doc::DecodeError;

/// A peer broke the protocol (or sent bytes that cannot be applied). Each error has a
/// stable [`code`](ProtocolError::code), sent in an `Error` frame before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The frame is empty or ends before its structure does.
    #[error("frame is truncated")]
    Truncated,
    /// The frame was written by a framing version this build does not speak.
    #[error("frame version {0} is not supported (this build speaks version 1); upgrade Chorus")]
    UnsupportedVersion(u8),
    /// The frame's type byte names no message.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field holds a value that is not allowed there.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// Bytes follow the end of the message.
    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),
    /// The peer's Hello names another document than this session's.
    #[error("the peer is syncing document {theirs:?}, this session is for {ours:?}")]
    WrongDocument {
        /// This session's document.
        ours: String,
        /// The document the peer named.
        theirs: String,
    },
    /// The peer speaks a protocol version this build does not.
    #[error("protocol version {0} is not supported (this build speaks version 1)")]
    UnsupportedProtocol(u8),
    /// A message arrived that is not allowed in the session's state (such as a Delta
    /// before the Hello).
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// The peer's update could not be applied; the document is unchanged.
    #[error("the peer's update was refused: {0}")]
    BadUpdate(#[from] DecodeError),
    /// The peer reported an error and is closing.
    #[error("the peer reported error {code}: {message}")]
    Remote {
        /// The peer's error code.
        code: u16,
        /// The peer's message.
        message: String,
    },
}

impl ProtocolError {
    /// The stable wire code of this error (see `PROTOCOL.md`).
    pub fn code(&self) -> u16 {
        match self {
            ProtocolError::Truncated => 1,
            ProtocolError::UnsupportedVersion(_) => 2,
            ProtocolError::UnknownType(_) => 3,
            ProtocolError::Malformed(_) => 4,
            ProtocolError::TrailingBytes(_) => 5,
            ProtocolError::WrongDocument { .. } => 6,
            ProtocolError::UnsupportedProtocol(_) => 7,
            ProtocolError::Unexpected(_) => 8,
            ProtocolError::BadUpdate(_) => 9,
            ProtocolError::Remote { code, .. } => *code,
        }
    }
}
