//! Topologies: which replicas hold a link to which.
//!
//! A topology is a list of [`Edge`]s between replicas `0..n`. Every edge is one link:
//! one conversation between two [`Node`](crate::Node)s, opened by [`Edge::from`]
//! (it sends the first `Hello`) and accepted by [`Edge::to`].
//!
//! ```
//! use chorus_sync::Topology;
//!
//! // A mesh of 4 replicas: every pair is linked, n(n-1)/2 links.
//! assert_eq!(Topology::Mesh.edges(4).len(), 6);
//! // A star: every link has the hub, replica 0, at one end.
//! assert!(Topology::Star.edges(5).iter().all(|e| e.from == 0));
//! assert_eq!("ring-one-way".parse::<Topology>().unwrap(), Topology::RingOneWay);
//! ```

use std::fmt;
use std::str::FromStr;

/// How replicas are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topology {
    /// Replica 0 is the hub (a relay); every other replica has one link, to it.
    Star,
    /// Replica `i` is linked to `i + 1` (and `n - 1` to `0`); operations travel both
    /// ways around the ring.
    Ring,
    /// Replica `i` is linked to `i + 1` (and `n - 1` to `0`), and operations travel
    /// one way only: from `i` to `i + 1`.
    ///
    /// What "one way" means here: the link is still a conversation — the downstream
    /// end (`i + 1`) sends its `Hello`s (what it has, what it asks for) and `Ack`s
    /// upstream — but it never sends operations (`Delta` frames) upstream. So an
    /// operation made at `i` reaches `i - 1` only by going all the way around, and one
    /// broken link cuts the flow to every replica after it until the link heals.
    RingOneWay,
    /// A chain: `0 - 1 - 2 - … - (n-1)`.
    Line,
    /// A binary tree rooted at replica 0: the parent of `i` is `(i - 1) / 2`.
    Tree,
    /// Every pair of replicas is linked: `n(n-1)/2` links.
    Mesh,
}

/// One link of a topology, between two replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    /// The replica that opens the link (sends the first `Hello`).
    pub from: usize,
    /// The replica that accepts it.
    pub to: usize,
    /// Operations flow only from `from` to `to`: `to` sends no `Delta` on this link
    /// (see [`Topology::RingOneWay`]).
    pub one_way: bool,
}

impl Edge {
    /// Whether the link joins `a` and `b` (in either direction).
    pub fn joins(&self, a: usize, b: usize) -> bool {
        (self.from, self.to) == (a, b) || (self.from, self.to) == (b, a)
    }

    /// The replica at the other end from `node` (which must be an end).
    pub fn other(&self, node: usize) -> usize {
        if node == self.from {
            self.to
        } else {
            self.from
        }
    }
}

impl Topology {
    /// Every topology, in the order the comparisons print them.
    pub const ALL: [Topology; 6] = [
        Topology::Star,
        Topology::Ring,
        Topology::RingOneWay,
        Topology::Line,
        Topology::Tree,
        Topology::Mesh,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Star => "star",
            Topology::Ring => "ring",
            Topology::RingOneWay => "ring-one-way",
            Topology::Line => "line",
            Topology::Tree => "tree",
            Topology::Mesh => "mesh",
        }
    }

    /// The links of this topology for `n` replicas, in a fixed order (the index of an
    /// edge in this list is its link id in the simulator).
    ///
    /// Small rings degenerate: a two-way ring of 2 replicas is one link (a ring of 1
    /// has none); a one-way ring of 2 is two links, one each way.
    pub fn edges(self, n: usize) -> Vec<Edge> {
        let two_way = |from, to| Edge {
            from,
            to,
            one_way: false,
        };
        match self {
            Topology::Star => (1..n).map(|i| two_way(0, i)).collect(),
            Topology::Line => (1..n).map(|i| two_way(i - 1, i)).collect(),
            Topology::Tree => (1..n).map(|i| two_way((i - 1) / 2, i)).collect(),
            Topology::Mesh => (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| two_way(a, b)))
                .collect(),
            Topology::Ring => {
                let mut e: Vec<Edge> = (1..n).map(|i| two_way(i - 1, i)).collect();
                if n > 2 {
                    e.push(two_way(n - 1, 0));
                }
                e
            }
            Topology::RingOneWay => {
                if n < 2 {
                    return Vec::new();
                }
                (0..n)
                    .map(|i| Edge {
                        from: i,
                        to: (i + 1) % n,
                        one_way: true,
                    })
                    .collect()
            }
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A topology name that is not one of [`Topology::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown topology {0:?}: expected star, ring, ring-one-way, line, tree or mesh")]
pub struct UnknownTopology(pub String);

impl FromStr for Topology {
    type Err = UnknownTopology;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topology::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownTopology(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_counts() {
        for n in [1, 2, 3, 8, 16] {
            assert_eq!(Topology::Star.edges(n).len(), n.saturating_sub(1));
            assert_eq!(Topology::Line.edges(n).len(), n.saturating_sub(1));
            assert_eq!(Topology::Tree.edges(n).len(), n.saturating_sub(1));
            assert_eq!(Topology::Mesh.edges(n).len(), n * (n - 1) / 2);
        }
        assert_eq!(Topology::Ring.edges(2).len(), 1);
        assert_eq!(Topology::Ring.edges(5).len(), 5);
        assert_eq!(Topology::RingOneWay.edges(2).len(), 2);
        assert_eq!(Topology::RingOneWay.edges(5).len(), 5);
        assert!(Topology::RingOneWay.edges(5).iter().all(|e| e.one_way));
    }

    #[test]
    fn names_round_trip() {
        for t in Topology::ALL {
            assert_eq!(t.to_string().parse::<Topology>().unwrap(), t);
        }
        assert!("bus".parse::<Topology>().is_err());
    }
}
