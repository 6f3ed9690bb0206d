//! `chorus-bench`: Chorus side by side with yrs, Automerge, diamond-types and Loro, on
//! the real editing traces, in one run.
//!
//! For each trace and engine it measures the local replay time (for concurrent traces,
//! the per-agent concurrent replay), the size of the engine's standard full-state
//! encoding, the time to decode that encoding and read the text, and the peak memory
//! allocated during the replay. Every engine's final text is checked against the
//! trace's `endContent`; any mismatch or failure makes the run exit non-zero.
//!
//! On automerge-paper (on every sequential trace with `--history`) it also runs the
//! history benchmark ([`history`]): reading the text at old versions, a diff between
//! two versions, and a fork at an old version with edits merged back.
//!
//! ```text
//! cargo run --release -p chorus-bench -- [--reps N] [--budget-secs S] [--json]
//!     [--history | --no-history | --history-only] [TRACE...]
//! ```

mod engines;
mod history;
mod measure;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chorus_trace::{CountingAlloc, Trace};
use clap::Parser;

use crate::engines::{Automerge, Chorus, ConcInput, DiamondTypes, Engine, Loro, SeqInput, Yrs};
use crate::measure::{EngineResult, Input, Settings, TraceResult, measure};

/// Counts allocated bytes, for the peak-memory column.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// The engines, in report order.
const ENGINES: [&str; 5] = [
    Chorus::NAME,
    Yrs::NAME,
    Automerge::NAME,
    DiamondTypes::NAME,
    Loro::NAME,
];

/// Benchmark Chorus against yrs, Automerge, diamond-types and Loro on editing traces.
#[derive(Debug, Parser)]
#[command(name = "chorus-bench", version, about)]
struct Args {
    /// Trace files (`.json` or `.json.gz`); default: every `*.json.gz` in the traces
    /// directory (`$CHORUS_TRACES_DIR`, or `../shared/traces` next to the workspace).
    traces: Vec<PathBuf>,
    /// How many times to run each timed step; the median is reported.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Seconds one engine may spend repeating one timed step: slow engines run it
    /// fewer times (at least once).
    #[arg(long, default_value_t = 10.0)]
    budget_secs: f64,
    /// Only run these engines (comma-separated: chorus,yrs,automerge,diamond-types,loro).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Run the history benchmark on every sequential trace (by default it runs on
    /// automerge-paper only).
    #[arg(long, conflicts_with = "no_history")]
    history: bool,
    /// Do not run the history benchmark.
    #[arg(long)]
    no_history: bool,
    /// Run only the history benchmark (on the traces it runs on), not the replay,
    /// encoding and memory measurements.
    #[arg(long, conflicts_with = "no_history")]
    history_only: bool,
}

/// The trace the history benchmark runs on by default.
const HISTORY_TRACE: &str = "automerge-paper";

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the benchmark; `Ok(false)` if any engine failed or produced the wrong text.
fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    for name in &args.engines {
        if !ENGINES.contains(&name.as_str()) {
            bail!(
                "unknown engine {name:?}; the engines are {}",
                ENGINES.join(", ")
            );
        }
    }
    let selected = |name: &str| args.engines.is_empty() || args.engines.iter().any(|e| e == name);
    let budget = Duration::try_from_secs_f64(args.budget_secs)
        .context("--budget-secs must be a non-negative number of seconds")?;
    let settings = Settings {
        reps: args.reps.max(1),
        budget,
    };

    let paths = if args.traces.is_empty() {
        let found = chorus_trace::default_traces();
        if found.is_empty() {
            bail!(
                "no traces given, and no *.json.gz traces found in {} (set {} or pass trace files)",
                chorus_trace::traces_dir().display(),
                chorus_trace::TRACES_DIR_ENV
            );
        }
        found
    } else {
        args.traces.clone()
    };

    let mut results = Vec::new();
    for path in &paths {
        let name = chorus_trace::trace_name(path);
        let history_here = !args.no_history && (args.history || name == HISTORY_TRACE);
        if args.history_only && !history_here {
            continue;
        }
        eprintln!("loading {}", path.display());
        let trace = chorus_trace::load(path)?;
        let mut result = TraceResult::new(name, &trace);

        let plan;
        let input = match &trace {
            Trace::Sequential { start, txns, .. } => Input::Seq(SeqInput::new(start, txns)),
            Trace::Concurrent {
                num_agents, txns, ..
            } => {
                plan = chorus_trace::schedule(*num_agents, txns)
                    .context("planning the concurrent replay")?;
                Input::Conc(ConcInput {
                    num_agents: *num_agents,
                    txns,
                    plan: &plan,
                })
            }
        };
        let expected = trace.end_content();
        let mut bench = |engine: EngineResult| {
            eprintln!("  {:<14} {}", engine.engine, engine.summary());
            result.engines.push(engine);
        };
        if !args.history_only {
            if selected(Chorus::NAME) {
                bench(measure::<Chorus>(&input, expected, &settings, &ALLOC));
            }
            if selected(Yrs::NAME) {
                bench(measure::<Yrs>(&input, expected, &settings, &ALLOC));
            }
            if selected(Automerge::NAME) {
                bench(measure::<Automerge>(&input, expected, &settings, &ALLOC));
            }
            if selected(DiamondTypes::NAME) {
                bench(measure::<DiamondTypes>(&input, expected, &settings, &ALLOC));
            }
            if selected(Loro::NAME) {
                bench(measure::<Loro>(&input, expected, &settings, &ALLOC));
            }
            if !args.json {
                println!("{}", report::table(&result));
            }
        }
        if history_here {
            match &input {
                Input::Seq(seq) => {
                    let history = history::run(seq, &settings, &selected)?;
                    if !args.json {
                        println!("{}", history::table(&result.trace, &history));
                    }
                    result.history = Some(history);
                }
                Input::Conc(_) => eprintln!(
                    "  history: skipped, {} is a concurrent trace (the history benchmark \
                     takes versions along one replica's replay)",
                    result.trace
                ),
            }
        }
        results.push(result);
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }

    let mut failures: Vec<String> = results
        .iter()
        .flat_map(|t| {
            t.engines.iter().filter_map(move |e| {
                e.failure()
                    .map(|f| format!("{} / {}: {f}", t.trace, e.engine))
            })
        })
        .collect();
    for t in &results {
        if let Some(history) = &t.history {
            failures.extend(
                history
                    .failures()
                    .into_iter()
                    .map(|f| format!("{} / {f}", t.trace)),
            );
        }
    }
    if failures.is_empty() {
        Ok(true)
    } else {
        eprintln!("\nFAILED ({}):", failures.len());
        for failure in &failures {
            eprintln!("  {failure}");
        }
        Ok(false)
    }
}
