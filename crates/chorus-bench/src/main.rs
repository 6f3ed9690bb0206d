//! `chorus-bench`: Chorus side by side with yrs, Automerge, diamond-types and Loro, on
//! the real editing traces, in one run.
//!
//! For each trace and engine it measures the local replay time (for concurrent traces,
//! the per-agent concurrent replay), the size of the engine's standard full-state
//! encoding, the time to decode that encoding and read the text, and the peak memory
//! allocated during the replay. Every engine's final text is checked against the
//! trace's `endContent`; any mismatch or failure makes the run exit non-zero.
//!
//! ```text
//! cargo run --release -p chorus-bench -- [--reps N] [--budget-secs S] [--json] [TRACE...]
//! ```

mod engines;
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
}

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
        results.push(result);
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }

    let failures: Vec<String> = results
        .iter()
        .flat_map(|t| {
            t.engines.iter().filter_map(move |e| {
                e.failure()
                    .map(|f| format!("{} / {}: {f}", t.trace, e.engine))
            })
        })
        .collect();
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
