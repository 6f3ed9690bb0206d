//! Measuring one engine on one trace.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use chorus_trace::{CountingAlloc, Trace, describe_mismatch};
use serde::Serialize;

use crate::engines::{ConcInput, Engine, SeqInput};
use crate::history::HistoryResult;

/// A trace, prepared for replay.
#[derive(Debug)]
pub enum Input<'a> {
    /// A sequential trace.
    Seq(SeqInput<'a>),
    /// A concurrent trace.
    Conc(ConcInput<'a>),
}

/// How hard to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runs per timed step (the median is reported).
    pub reps: usize,
    /// Time one engine may spend repeating one timed step.
    pub budget: Duration,
}

/// Everything measured on one trace.
#[derive(Debug, Serialize)]
pub struct TraceResult {
    /// The trace's name.
    pub trace: String,
    /// `"sequential"` or `"concurrent"`.
    pub kind: &'static str,
    /// Transactions in the trace.
    pub txns: usize,
    /// Patches in the trace.
    pub patches: usize,
    /// Length of `endContent`, in chars.
    pub end_chars: usize,
    /// One entry per engine, in report order.
    pub engines: Vec<EngineResult>,
    /// The history benchmark, if it ran on this trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryResult>,
}

impl TraceResult {
    /// An empty result for `trace`.
    pub fn new(name: String, trace: &Trace) -> Self {
        Self {
            trace: name,
            kind: trace.kind_name(),
            txns: trace.num_txns(),
            patches: trace.num_patches(),
            end_chars: trace.end_content().chars().count(),
            engines: Vec::new(),
            history: None,
        }
    }
}

/// What one engine did on one trace. Missing values: the step failed or never ran.
#[derive(Debug, Default, Serialize)]
pub struct EngineResult {
    /// The engine's name.
    pub engine: &'static str,
    /// Median replay time (concurrent traces: the concurrent replay, merging included).
    pub replay_ms: Option<f64>,
    /// How many replays the median is taken over.
    pub replay_runs: usize,
    /// Peak memory allocated during the first replay, above what was allocated before.
    pub peak_memory_bytes: Option<usize>,
    /// Size of the full-state encoding.
    pub encoded_bytes: Option<usize>,
    /// Time to produce the full-state encoding (one run).
    pub encode_ms: Option<f64>,
    /// Median time to load the encoding into a fresh document and read its text.
    pub decode_ms: Option<f64>,
    /// How many decodes the median is taken over.
    pub decode_runs: usize,
    /// Length of the replayed text, in chars.
    pub final_chars: Option<usize>,
    /// Where the replayed or decoded text differs from `endContent`.
    pub mismatch: Option<String>,
    /// An error or panic that stopped the measurement.
    pub error: Option<String>,
    /// How this engine's replay departs from the common method, if it does.
    pub note: Option<&'static str>,
}

impl EngineResult {
    /// Why this result counts as a failure, if it does.
    pub fn failure(&self) -> Option<String> {
        match (&self.error, &self.mismatch) {
            (Some(error), _) => Some(error.clone()),
            (None, Some(mismatch)) => Some(format!("WRONG TEXT: {mismatch}")),
            (None, None) => None,
        }
    }

    /// A one-line progress summary.
    pub fn summary(&self) -> String {
        if let Some(failure) = self.failure() {
            return format!("FAILED: {failure}");
        }
        format!(
            "replay {:.1} ms ×{}, {} bytes, decode {:.1} ms ×{}, peak {} bytes",
            self.replay_ms.unwrap_or(f64::NAN),
            self.replay_runs,
            self.encoded_bytes.unwrap_or(0),
            self.decode_ms.unwrap_or(f64::NAN),
            self.decode_runs,
            self.peak_memory_bytes.unwrap_or(0),
        )
    }
}

/// Milliseconds, rounded to the microsecond.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// How many more runs fit: up to `reps - 1`, within `budget` given the first run took
/// `first`.
pub fn extra_runs(settings: &Settings, first: Duration) -> usize {
    let wanted = settings.reps.saturating_sub(1);
    if first.is_zero() {
        return wanted;
    }
    let fit = (settings.budget.saturating_sub(first).as_secs_f64() / first.as_secs_f64()) as usize;
    wanted.min(fit)
}

fn replay<E: Engine>(input: &Input<'_>) -> anyhow::Result<E::Doc> {
    match input {
        Input::Seq(input) => E::replay_sequential(input),
        Input::Conc(input) => E::replay_concurrent(input),
    }
}

/// Measures engine `E` on `input`, checking its text against `expected`. Errors and
/// panics inside the engine are caught and recorded, so one broken engine does not
/// stop the run.
pub fn measure<E: Engine>(
    input: &Input<'_>,
    expected: &str,
    settings: &Settings,
    alloc: &CountingAlloc,
) -> EngineResult {
    let mut result = EngineResult {
        engine: E::NAME,
        ..EngineResult::default()
    };
    if matches!(input, Input::Conc(_)) {
        result.note = E::CONCURRENT_NOTE;
    }
    match catch_unwind(AssertUnwindSafe(|| {
        measure_steps::<E>(input, expected, settings, alloc, &mut result)
    })) {
        Ok(Ok(())) => {}
        Ok(Err(err)) => result.error = Some(format!("{err:#}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            result.error = Some(format!("panicked: {message}"));
        }
    }
    result
}

fn measure_steps<E: Engine>(
    input: &Input<'_>,
    expected: &str,
    settings: &Settings,
    alloc: &CountingAlloc,
    result: &mut EngineResult,
) -> anyhow::Result<()> {
    // Replay: the first run also measures memory and is kept for the later steps.
    alloc.reset_peak();
    let start = Instant::now();
    let mut doc = replay::<E>(input)?;
    let first = start.elapsed();
    result.peak_memory_bytes = Some(alloc.peak_above_baseline());

    let text = E::text(&mut doc)?;
    result.final_chars = Some(text.chars().count());
    result.mismatch = describe_mismatch(expected, &text);
    drop(text);

    let mut times = vec![first];
    for _ in 0..extra_runs(settings, first) {
        let start = Instant::now();
        let again = replay::<E>(input)?;
        times.push(start.elapsed());
        drop(again);
    }
    result.replay_runs = times.len();
    result.replay_ms = Some(ms(median(times)));

    // Full-state encoding.
    let start = Instant::now();
    let bytes = E::encode(&mut doc)?;
    result.encode_ms = Some(ms(start.elapsed()));
    result.encoded_bytes = Some(bytes.len());
    drop(doc);

    // Decoding it into a fresh document and reading the text.
    let start = Instant::now();
    let decoded = E::decode_text(&bytes)?;
    let first = start.elapsed();
    if result.mismatch.is_none() {
        result.mismatch =
            describe_mismatch(expected, &decoded).map(|m| format!("after decoding: {m}"));
    }
    drop(decoded);
    let mut times = vec![first];
    for _ in 0..extra_runs(settings, first) {
        let start = Instant::now();
        let decoded = E::decode_text(&bytes)?;
        times.push(start.elapsed());
        drop(decoded);
    }
    result.decode_runs = times.len();
    result.decode_ms = Some(ms(median(times)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_runs_respect_the_budget() {
        let settings = Settings {
            reps: 5,
            budget: Duration::from_secs(10),
        };
        assert_eq!(extra_runs(&settings, Duration::from_millis(10)), 4);
        assert_eq!(extra_runs(&settings, Duration::from_secs(4)), 1);
        assert_eq!(extra_runs(&settings, Duration::from_secs(20)), 0);
        assert_eq!(
            median(vec![
                Duration::from_secs(3),
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]),
            Duration::from_secs(2)
        );
    }
}
