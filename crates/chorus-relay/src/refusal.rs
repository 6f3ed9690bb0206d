//! Why the relay closes a connection: the `Error` frame code, the WebSocket close code
//! and the reason the client sees.

use chorus_doc::{DecodeError, ReplicaId};
use chorus_sync::{Message, ProtocolError};

use crate::auth::AuthError;

/// A reason to close one connection. Codes below 100 are the sync protocol's
/// ([`ProtocolError::code`]); the relay's own start at 100 (see `PROTOCOL.md`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No valid token for this document.
    #[error("not authorized: {0}")]
    Unauthorized(#[from] AuthError),
    /// The document id in the URL is not one.
    #[error("bad document id: use 1 to 128 characters of A-Z a-z 0-9 . _ ~ -")]
    BadDocId,
    /// A read-only connection sent operations.
    #[error("this connection may only read: its token grants no write right")]
    ReadOnly,
    /// Operations under a replica id the connection did not announce.
    #[error(
        "operations of replica {0} refused: a connection may only send its own replica's operations"
    )]
    NotYourReplica(ReplicaId),
    /// The replica id is in use by another live connection to this document.
    #[error(
        "replica {0} is already connected to this document; try again once that connection is gone"
    )]
    ReplicaInUse(ReplicaId),
    /// A frame larger than the limit.
    #[error("frame too big: the limit is {0} bytes")]
    FrameTooBig(usize),
    /// The document would outgrow its limit.
    #[error("the document would exceed its size limit of {0} bytes")]
    DocTooBig(u64),
    /// Too many frames per second.
    #[error("too many frames: the limit is {0} per second")]
    RateLimited(u32),
    /// Too many operations waiting for dependencies.
    #[error(
        "too many operations waiting for missing dependencies (limit {0}); send updates in causal order"
    )]
    TooManyPending(usize),
    /// No `Hello` in time.
    #[error("no Hello within {0} ms of connecting")]
    NoHello(u128),
    /// The peer broke the sync protocol.
    #[error(transparent)]
    Protocol(ProtocolError),
}

impl Refusal {
    /// The code in the `Error` frame.
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Unauthorized(_) => 100,
            Refusal::BadDocId => 101,
            Refusal::ReadOnly => 102,
            Refusal::NotYourReplica(_) => 103,
            Refusal::ReplicaInUse(_) => 104,
            Refusal::FrameTooBig(_) => 105,
            Refusal::DocTooBig(_) => 106,
            Refusal::RateLimited(_) => 107,
            Refusal::TooManyPending(_) => 108,
            Refusal::NoHello(_) => 109,
            Refusal::Protocol(e) => e.code(),
        }
    }

    /// The WebSocket close code: 1009 for sizes, 1007 for bytes that cannot be
    /// decoded, 1013 (try again later) for a replica id still bound to a connection
    /// that may be dead, 1008 (policy) otherwise.
    pub fn close_code(&self) -> u16 {
        match self {
            Refusal::FrameTooBig(_) | Refusal::DocTooBig(_) => 1009,
            Refusal::ReplicaInUse(_) => 1013,
            Refusal::Protocol(
                ProtocolError::Truncated
                | ProtocolError::UnknownType(_)
                | ProtocolError::Malformed(_)
                | ProtocolError::TrailingBytes(_)
                | ProtocolError::UnsupportedVersion(_)
                | ProtocolError::BadUpdate(_),
            ) => 1007,
            _ => 1008,
        }
    }

    /// The `Error` frame sent before closing.
    pub fn frame(&self) -> Vec<u8> {
        Message::Error {
            code: self.code(),
            message: self.to_string(),
        }
        .encode()
    }
}

impl From<ProtocolError> for Refusal {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::BadUpdate(DecodeError::PendingOverflow { limit, .. }) => {
                Refusal::TooManyPending(limit)
            }
            e => Refusal::Protocol(e),
        }
    }
}

/// A close reason fits a control frame (123 bytes); longer ones are cut at a char
/// boundary.
pub(crate) fn close_reason(s: &str) -> String {
    let mut end = s.len().min(123);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
