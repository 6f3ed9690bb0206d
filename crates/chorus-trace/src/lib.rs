//! Real editing traces: loading them, and replaying them with Chorus.
//!
//! The traces come from Joseph Gentle's public `editing-traces` collection and live
//! outside the repository, in `../shared/traces` next to the workspace root (override
//! with the `CHORUS_TRACES_DIR` environment variable). Two formats exist:
//!
//! - *sequential*: one user's history, a list of transactions of patches, each patch
//!   applied to the result of the previous one;
//! - *concurrent*: several agents editing at once; every transaction names its parent
//!   transactions, and its positions are relative to the merge of their states.
//!
//! Replaying every patch must reproduce the trace's `endContent` exactly.
//!
//! ```no_run
//! let trace = chorus_trace::load(&chorus_trace::traces_dir().join("seph-blog1.json.gz"))?;
//! let doc = chorus_trace::replay(&trace)?;
//! assert_eq!(doc.text(chorus_trace::FIELD).to_string(), trace.end_content());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! This crate also holds [`CountingAlloc`], a global allocator wrapper that the
//! `chorus` and `chorus-bench` binaries register to measure peak memory.

mod alloc;
mod replay;
mod schedule;

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

pub use alloc::CountingAlloc;
pub use replay::{
    ConcurrentReplay, replay, replay_concurrent, replay_concurrent_replicas, replay_sequential,
};
pub use schedule::{Schedule, schedule};

/// The name of the text field traces are replayed into.
pub const FIELD: &str = "text";

/// The environment variable that overrides [`traces_dir`].
pub const TRACES_DIR_ENV: &str = "CHORUS_TRACES_DIR";

/// One edit: at char position `pos`, delete `del` chars, then insert `ins`.
///
/// Positions and lengths count Unicode scalar values (Rust `char`s).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "(usize, usize, String)")]
pub struct Patch {
    /// Where the edit happens, in chars.
    pub pos: usize,
    /// How many chars are deleted at `pos`.
    pub del: usize,
    /// What is inserted at `pos` after the deletion.
    pub ins: String,
}

impl From<(usize, usize, String)> for Patch {
    fn from((pos, del, ins): (usize, usize, String)) -> Self {
        Self { pos, del, ins }
    }
}

/// A transaction of a sequential trace: patches applied in order, each to the result
/// of the previous one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SeqTxn {
    /// The edits, in order.
    pub patches: Vec<Patch>,
}

/// A transaction of a concurrent trace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ConcTxn {
    /// Indexes of earlier transactions whose merged state this one edits (empty: the
    /// empty document).
    pub parents: Vec<usize>,
    /// The agent (user) that made it, `0..num_agents`.
    pub agent: usize,
    /// The edits, in order, relative to the merge of the parents' states.
    pub patches: Vec<Patch>,
}

/// A loaded editing trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trace {
    /// One user's editing history.
    Sequential {
        /// The document before the first transaction.
        start: String,
        /// The document after the last transaction.
        end: String,
        /// The transactions, in order.
        txns: Vec<SeqTxn>,
    },
    /// Several agents editing concurrently.
    Concurrent {
        /// The document after merging every transaction.
        end: String,
        /// How many agents take part.
        num_agents: usize,
        /// The transactions, parents before children.
        txns: Vec<ConcTxn>,
    },
}

impl Trace {
    /// The expected final document.
    pub fn end_content(&self) -> &str {
        match self {
            Trace::Sequential { end, .. } | Trace::Concurrent { end, .. } => end,
        }
    }

    /// The total number of patches in all transactions.
    pub fn num_patches(&self) -> usize {
        match self {
            Trace::Sequential { txns, .. } => txns.iter().map(|t| t.patches.len()).sum(),
            Trace::Concurrent { txns, .. } => txns.iter().map(|t| t.patches.len()).sum(),
        }
    }

    /// The number of transactions.
    pub fn num_txns(&self) -> usize {
        match self {
            Trace::Sequential { txns, .. } => txns.len(),
            Trace::Concurrent { txns, .. } => txns.len(),
        }
    }

    /// `"sequential"` or `"concurrent"`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Trace::Sequential { .. } => "sequential",
            Trace::Concurrent { .. } => "concurrent",
        }
    }

    /// Parses a trace from its JSON text, and checks it is well formed: sequential
    /// patches stay inside the document, concurrent parents point backwards and agents
    /// are in range.
    pub fn from_json(json: &str) -> anyhow::Result<Self> {
        let raw: RawTrace =
            serde_json::from_str(json).context("not a valid editing trace (JSON)")?;
        raw.into_trace()
    }

    /// Parses a trace from a JSON reader; see [`Trace::from_json`].
    pub fn from_reader(reader: impl Read) -> anyhow::Result<Self> {
        let raw: RawTrace = serde_json::from_reader(BufReader::new(reader))
            .context("not a valid editing trace (JSON)")?;
        raw.into_trace()
    }

    /// Checks the trace can be replayed without an out-of-range edit (sequential) or a
    /// dangling reference (concurrent). [`load`] and [`Trace::from_json`] call it.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self {
            Trace::Sequential { start, txns, .. } => {
                let mut len = start.chars().count();
                for (t, txn) in txns.iter().enumerate() {
                    for (p, patch) in txn.patches.iter().enumerate() {
                        let end = patch.pos.checked_add(patch.del);
                        if end.is_none_or(|end| end > len) {
                            bail!(
                                "transaction {t}, patch {p} (at position {}, deleting {} chars) is out of range: \
                                 the document is {len} chars long there",
                                patch.pos,
                                patch.del
                            );
                        }
                        len = len - patch.del + patch.ins.chars().count();
                    }
                }
                Ok(())
            }
            Trace::Concurrent {
                num_agents, txns, ..
            } => schedule(*num_agents, txns).map(|_| ()),
        }
    }
}

/// The JSON shape shared by both formats.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTrace {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    start_content: Option<String>,
    end_content: String,
    #[serde(default)]
    num_agents: Option<usize>,
    txns: Vec<RawTxn>,
}

/// A copy of `patches` with exactly their size, allocated one after the other.
fn compact(patches: &[Patch]) -> Vec<Patch> {
    let mut out = Vec::with_capacity(patches.len());
    out.extend(patches.iter().map(|p| Patch {
        pos: p.pos,
        del: p.del,
        ins: p.ins.as_str().to_owned(),
    }));
    out
}

#[derive(Deserialize)]
struct RawTxn {
    #[serde(default)]
    parents: Option<Vec<usize>>,
    #[serde(default)]
    agent: Option<usize>,
    patches: Vec<Patch>,
}

impl RawTrace {
    /// Builds the trace in fresh memory, every transaction's patches and text right
    /// after the previous one's: replaying reads them in order, and the layout the
    /// JSON parser left (vectors with spare room, scattered strings) would add the
    /// same cache misses to every engine's time.
    fn into_trace(self) -> anyhow::Result<Trace> {
        let trace = match self.kind.as_deref() {
            None | Some("sequential") => Trace::Sequential {
                start: self.start_content.unwrap_or_default(),
                end: self.end_content,
                txns: self
                    .txns
                    .iter()
                    .map(|t| SeqTxn {
                        patches: compact(&t.patches),
                    })
                    .collect(),
            },
            Some("concurrent") => {
                let num_agents = self
                    .num_agents
                    .context("concurrent trace has no `numAgents`")?;
                let txns = self
                    .txns
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        Ok(ConcTxn {
                            parents: t
                                .parents
                                .clone()
                                .with_context(|| format!("transaction {i} has no `parents`"))?,
                            agent: t
                                .agent
                                .with_context(|| format!("transaction {i} has no `agent`"))?,
                            patches: compact(&t.patches),
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                ensure!(
                    self.start_content.as_deref().is_none_or(str::is_empty),
                    "concurrent traces must start empty"
                );
                Trace::Concurrent {
                    end: self.end_content,
                    num_agents,
                    txns,
                }
            }
            Some(other) => {
                bail!("unknown trace kind {other:?} (expected \"sequential\" or \"concurrent\")")
            }
        };
        trace.validate()?;
        Ok(trace)
    }
}

/// Loads a trace from a `.json` or `.json.gz` file.
pub fn load(path: &Path) -> anyhow::Result<Trace> {
    let file = File::open(path).with_context(|| format!("cannot open trace {}", path.display()))?;
    let gzipped = path.extension().is_some_and(|ext| ext == "gz");
    let trace = if gzipped {
        Trace::from_reader(flate2::read::GzDecoder::new(file))
    } else {
        Trace::from_reader(file)
    };
    trace.with_context(|| format!("cannot load trace {}", path.display()))
}

/// The trace's name: its file name without `.json` / `.json.gz`.
pub fn trace_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.strip_suffix(".json").unwrap_or(name).to_owned()
}

/// The directory holding the shared traces: `$CHORUS_TRACES_DIR` if set, otherwise
/// `../shared/traces` next to the workspace root.
pub fn traces_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(TRACES_DIR_ENV) {
        return PathBuf::from(dir);
    }
    // This crate lives in `<workspace>/crates/chorus-trace`.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest.ancestors().nth(3) {
        // `<workspace>/..`, so the path reads `/…/shared/traces`.
        Some(above_workspace) => above_workspace.join("shared/traces"),
        None => manifest.join("../../../shared/traces"),
    }
}

/// Every `*.json.gz` trace in [`traces_dir`], sorted by name; empty if the directory
/// does not exist.
pub fn default_traces() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(traces_dir()) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".json.gz"))
        })
        .collect();
    paths.sort();
    paths
}

/// Where `actual` first differs from `expected`, as a message naming the first
/// differing char position and both lengths; `None` if they are equal.
pub fn describe_mismatch(expected: &str, actual: &str) -> Option<String> {
    if expected == actual {
        return None;
    }
    let pos = expected
        .chars()
        .zip(actual.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let snippet = |s: &str| -> String { s.chars().skip(pos.saturating_sub(10)).take(30).collect() };
    Some(format!(
        "text differs from endContent at char {pos} (expected {} chars, got {}): \
         expected …{:?}…, got …{:?}…",
        expected.chars().count(),
        actual.chars().count(),
        snippet(expected),
        snippet(actual),
    ))
}

#[cfg(test)]
mod tests;
