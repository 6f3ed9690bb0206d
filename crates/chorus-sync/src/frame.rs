//! Frames: the messages peers exchange, and their bytes (see `PROTOCOL.md`).
//!
//! ```text
//! frame     = version:u8 (=1) · type:u8 · body
//! Hello     (1) = protocol:u8 · varint len · doc id (UTF-8) · replica (16 bytes) · vv
//! Delta     (2) = vv (the sender's version) · an update (the rest of the frame)
//! Ack       (3) = vv
//! Awareness (4) = varint n · n × (replica (16) · varint clock · varint len · JSON (UTF-8))
//!                 (len 0: the replica's state is removed)
//! Error     (5) = code:u16 (big endian) · varint len · message (UTF-8)
//! vv        = varint n · n × (replica (16) · varint next seq), by replica, no zeros
//! ```
//!
//! Varints, lengths and replica ids are read and written by [`chorus_doc::wire`], the
//! same code as the update format's.

use chorus_doc::wire::{ReadError, Reader, put_replica, put_str, put_varint};
use chorus_doc::{ReplicaId, VersionVector};

use crate::ProtocolError;

/// The framing version this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// The sync protocol version this build speaks (sent in `Hello`).
pub const PROTOCOL_VERSION: u8 = 1;

const T_HELLO: u8 = 1;
const T_DELTA: u8 = 2;
const T_ACK: u8 = 3;
const T_AWARENESS: u8 = 4;
const T_ERROR: u8 = 5;

/// One message of the sync protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Opens (and, sent again, refreshes) a link: who I am and what I have.
    Hello(Hello),
    /// An update: operations the receiver lacks, with the sender's version (so the
    /// receiver knows what the sender has without asking).
    Delta {
        /// The sender's version when it sent this (its ops, the update's included).
        version: VersionVector,
        /// The update (see `PROTOCOL.md`).
        update: Vec<u8>,
    },
    /// What the sender has durably stored.
    Ack(VersionVector),
    /// Ephemeral presence: replicas' states (user, colour, cursor), never stored.
    Awareness(Vec<AwarenessEntry>),
    /// The sender is closing the link because of this error.
    Error {
        /// A stable code (see [`ProtocolError::code`]).
        code: u16,
        /// What went wrong, for people.
        message: String,
    },
}

/// The first message of a link in each direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the sender speaks.
    pub protocol: u8,
    /// The document this link syncs.
    pub doc: String,
    /// The sender's replica.
    pub replica: ReplicaId,
    /// The operations the sender has.
    pub version: VersionVector,
}

/// One replica's presence.
#[derive(Clone, Debug, PartialEq)]
pub struct AwarenessEntry {
    /// Whose state.
    pub replica: ReplicaId,
    /// Grows with every change of the state; the highest wins.
    pub clock: u64,
    /// The state (`None`: removed, the replica left).
    pub state: Option<serde_json::Value>,
}

impl Message {
    /// The frame bytes of this message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FRAME_VERSION];
        match self {
            Message::Hello(h) => {
                out.push(T_HELLO);
                out.push(h.protocol);
                put_str(&mut out, &h.doc);
                put_replica(&mut out, h.replica);
                put_vv(&mut out, &h.version);
            }
            Message::Delta { version, update } => {
                out.push(T_DELTA);
                put_vv(&mut out, version);
                out.extend_from_slice(update);
            }
            Message::Ack(vv) => {
                out.push(T_ACK);
                put_vv(&mut out, vv);
            }
            Message::Awareness(entries) => {
                out.push(T_AWARENESS);
                put_varint(&mut out, entries.len() as u64);
                for e in entries {
                    put_replica(&mut out, e.replica);
                    put_varint(&mut out, e.clock);
                    let json = e.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
                    put_str(&mut out, &json);
                }
            }
            Message::Error { code, message } => {
                out.push(T_ERROR);
                out.extend_from_slice(&code.to_be_bytes());
                put_str(&mut out, message);
            }
        }
        out
    }

    /// Reads a frame. Never panics; every malformed frame is a typed error.
    pub fn decode(frame: &[u8]) -> Result<Message, ProtocolError> {
        let mut r = Reader::new(frame);
        let version = r.u8()?;
        if version != FRAME_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let msg = match r.u8()? {
            T_HELLO => {
                let protocol = r.u8()?;
                let doc = r.str()?.to_owned();
                let replica = r.replica()?;
                let version = read_vv(&mut r)?;
                Message::Hello(Hello {
                    protocol,
                    doc,
                    replica,
                    version,
                })
            }
            T_DELTA => {
                let version = read_vv(&mut r)?;
                let rest = r.rest();
                if rest.is_empty() {
                    return Err(ProtocolError::Malformed("empty delta"));
                }
                Message::Delta {
                    version,
                    update: rest.to_vec(),
                }
            }
            T_ACK => Message::Ack(read_vv(&mut r)?),
            T_AWARENESS => {
                // Each entry takes at least 18 bytes.
                let n = r.count(18)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let replica = r.replica()?;
                    let clock = r.varint()?;
                    let json = r.str()?;
                    let state =
                        if json.is_empty() {
                            None
                        } else {
                            Some(serde_json::from_str(json).map_err(|_| {
                                ProtocolError::Malformed("awareness state is not JSON")
                            })?)
                        };
                    entries.push(AwarenessEntry {
                        replica,
                        clock,
                        state,
                    });
                }
                Message::Awareness(entries)
            }
            T_ERROR => {
                let code = u16::from_be_bytes(r.array()?);
                let message = r.str()?.to_owned();
                Message::Error { code, message }
            }
            t => return Err(ProtocolError::UnknownType(t)),
        };
        r.finish()?;
        Ok(msg)
    }

    /// An `Error` message for `e`.
    pub fn error(e: &ProtocolError) -> Message {
        Message::Error {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

fn put_vv(out: &mut Vec<u8>, vv: &VersionVector) {
    vv.write_to(out);
}

fn read_vv(r: &mut Reader<'_>) -> Result<VersionVector, ProtocolError> {
    Ok(VersionVector::read_from(r)?)
}

/// A frame's field could not be read: the frame is cut short or malformed.
impl From<ReadError> for ProtocolError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated => ProtocolError::Truncated,
            ReadError::TrailingBytes(n) => ProtocolError::TrailingBytes(n),
            ReadError::InvalidUtf8 => ProtocolError::Malformed("text is not UTF-8"),
            ReadError::Malformed(what) => ProtocolError::Malformed(what),
            // `ReadError` is non-exhaustive; a new kind of unreadable field is still
            // a malformed frame.
            _ => ProtocolError::Malformed("unreadable field"),
        }
    }
}
