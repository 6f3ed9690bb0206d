//! The human-readable table.

use std::fmt::Write;

use crate::measure::{EngineResult, TraceResult};

pub fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn fmt_bytes(bytes: f64) -> String {
    if bytes < 1e3 {
        format!("{bytes} B")
    } else if bytes < 1e6 {
        format!("{:.1} kB", bytes / 1e3)
    } else {
        format!("{:.2} MB", bytes / 1e6)
    }
}

/// `value (ratio to chorus)`, or `-` if there is no value.
pub fn cell(value: Option<f64>, base: Option<f64>, fmt: fn(f64) -> String) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{} ({:.2}x)", fmt(v), v / b),
        (Some(v), _) => fmt(v),
        (None, _) => "-".to_owned(),
    }
}

/// One table for one trace: a row per engine, each value with its ratio to Chorus.
pub fn table(result: &TraceResult) -> String {
    let chorus = result
        .engines
        .iter()
        .find(|e| e.engine == "chorus" && e.error.is_none());
    let base = |f: fn(&EngineResult) -> Option<f64>| chorus.and_then(f);
    let replay = |e: &EngineResult| e.replay_ms;
    let size = |e: &EngineResult| e.encoded_bytes.map(|b| b as f64);
    let decode = |e: &EngineResult| e.decode_ms;
    let memory = |e: &EngineResult| e.peak_memory_bytes.map(|b| b as f64);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} ({}: {} txns, {} patches, {} chars); ratios are to chorus",
        result.trace, result.kind, result.txns, result.patches, result.end_chars
    );
    let replay_title = if result.kind == "concurrent" {
        "concurrent replay"
    } else {
        "replay"
    };
    let _ = writeln!(
        out,
        "{:<14} {:>22} {:>22} {:>22} {:>22}",
        "engine", replay_title, "encoded size", "decode", "peak memory"
    );
    let mut notes = Vec::new();
    for e in &result.engines {
        let _ = write!(
            out,
            "{:<14} {:>22} {:>22} {:>22} {:>22}",
            e.engine,
            cell(replay(e), base(replay), fmt_ms),
            cell(size(e), base(size), fmt_bytes),
            cell(decode(e), base(decode), fmt_ms),
            cell(memory(e), base(memory), fmt_bytes),
        );
        if let Some(failure) = e.failure() {
            let _ = write!(out, "  FAILED: {failure}");
        }
        out.push('\n');
        if let Some(note) = e.note {
            notes.push(format!("note ({}): {note}", e.engine));
        }
    }
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    out
}
