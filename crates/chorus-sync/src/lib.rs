//! The Chorus sync protocol, sans-IO: bytes in, bytes out.
//!
//! No sockets, no clock, no randomness: time is passed in, so the same code runs in
//! the relay, in the browser and in deterministic tests. Two replicas that edited
//! apart converge over one link:
//!
//! ```
//! use chorus_doc::{Doc, ReplicaId};
//! use chorus_sync::Node;
//!
//! let mut alice = Node::new("notes", Doc::new(ReplicaId::from_u128(1)));
//! let mut bob = Node::new("notes", Doc::new(ReplicaId::from_u128(2)));
//! for (node, word) in [(&mut alice, "hello "), (&mut bob, "world")] {
//!     let mut tx = node.transact();
//!     tx.text("body").insert(0, word).unwrap();
//!     tx.commit();
//! }
//!
//! // Alice opens link 0 to Bob (his end is link 0 too); frames go both ways until
//! // nothing is left to say.
//! bob.accept(0);
//! let mut to_bob: Vec<Vec<u8>> = alice.connect(0).into_iter().map(|(_, f)| f).collect();
//! let mut to_alice: Vec<Vec<u8>> = Vec::new();
//! while !to_bob.is_empty() || !to_alice.is_empty() {
//!     for f in std::mem::take(&mut to_bob) {
//!         let (out, _) = bob.receive(0, &f).unwrap();
//!         to_alice.extend(out.into_iter().map(|(_, f)| f));
//!     }
//!     for f in std::mem::take(&mut to_alice) {
//!         let (out, _) = alice.receive(0, &f).unwrap();
//!         to_bob.extend(out.into_iter().map(|(_, f)| f));
//!     }
//! }
//! assert_eq!(alice.doc().text("body").to_string(), bob.doc().text("body").to_string());
//! ```
//!
//! [`Session`] is one end of one link; [`Node`] is a replica with many links that
//! forwards what it learns, so replicas can be wired in any [`Topology`]; [`sim`]
//! runs them over a simulated network; [`Awareness`] carries presence. The bytes are
//! specified in `PROTOCOL.md`.

mod awareness;
mod error;
mod frame;
mod node;
mod session;
pub mod sim;
mod topology;

pub use awareness::{Awareness, AwarenessChange};
pub use error::ProtocolError;
pub use frame::{AwarenessEntry, FRAME_VERSION, Hello, Message, PROTOCOL_VERSION};
pub use node::{LinkId, Node, Outbox};
pub use session::{Received, Session, SessionStats};
pub use sim::{SimConfig, SimReport};
pub use topology::{Edge, Topology, UnknownTopology};
