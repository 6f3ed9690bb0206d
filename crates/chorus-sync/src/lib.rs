//! The Chorus sync protocol, sans-IO: bytes in, bytes out.
//!
//! No sockets, no clock, no randomness: time is passed in, so the same code runs in
//! the relay, in the browser and in deterministic tests.

mod error;
mod frame;
mod node;
mod session;

pub use error::ProtocolError;
pub use frame::{AwarenessEntry, FRAME_VERSION, Hello, Message, PROTOCOL_VERSION};
pub use node::{LinkId, Node, Outbox};
pub use session::{Received, Session, SessionStats};
mod awareness;
pub use awareness::{Awareness, AwarenessChange};
pub mod sim;
mod topology;
pub use sim::{SimConfig, SimReport};
pub use topology::{Edge, Topology, UnknownTopology};
