//! `chorus replay`: replay a trace with Chorus and report what it cost.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_doc::{Doc, ReplicaId};
use chorus_trace::{FIELD, describe_mismatch};
use serde::Serialize;

use crate::ALLOC;

/// What `chorus replay` prints.
#[derive(Debug, Serialize)]
struct ReplayStats {
    trace: String,
    kind: &'static str,
    txns: usize,
    patches: usize,
    final_chars: usize,
    /// Sequential traces: applying every patch on one replica. Concurrent traces: the
    /// per-agent replay, including exchanging and merging updates.
    replay_ms: f64,
    encoded_bytes: usize,
    decode_ms: f64,
    /// The most memory allocated at once during the replay, above what was allocated
    /// before it (the loaded trace).
    peak_memory_bytes: usize,
}

/// Milliseconds, rounded to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

/// Replays the trace at `path`, checks it, and prints [`ReplayStats`] as JSON.
pub(crate) fn run(path: &Path, pretty: bool) -> anyhow::Result<()> {
    let trace = chorus_trace::load(path)?;
    let expected = trace.end_content();

    ALLOC.reset_peak();
    let start = Instant::now();
    let doc =
        chorus_trace::replay(&trace).with_context(|| format!("replaying {}", path.display()))?;
    let replay_time = start.elapsed();
    let peak = ALLOC.peak_above_baseline();

    let text = doc.text(FIELD).to_string();
    if let Some(mismatch) = describe_mismatch(expected, &text) {
        bail!(
            "replaying {} gave the wrong text: {mismatch}",
            path.display()
        );
    }

    let encoded = doc.encode();
    let start = Instant::now();
    let decoded = Doc::decode(&encoded, ReplicaId::from_u128(u128::MAX))
        .context("decoding the document's own full encoding failed")?;
    let decoded_text = decoded.text(FIELD).to_string();
    let decode_time = start.elapsed();
    if let Some(mismatch) = describe_mismatch(expected, &decoded_text) {
        bail!("the decoded document has the wrong text: {mismatch}");
    }

    let stats = ReplayStats {
        trace: chorus_trace::trace_name(path),
        kind: trace.kind_name(),
        txns: trace.num_txns(),
        patches: trace.num_patches(),
        final_chars: doc.text(FIELD).len(),
        replay_ms: ms(replay_time),
        encoded_bytes: encoded.len(),
        decode_ms: ms(decode_time),
        peak_memory_bytes: peak,
    };
    let json = if pretty {
        serde_json::to_string_pretty(&stats)
    } else {
        serde_json::to_string(&stats)
    }?;
    println!("{json}");
    Ok(())
}
