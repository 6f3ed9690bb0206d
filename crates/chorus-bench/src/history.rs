//! The history benchmark: reading old versions, diffing two versions, and forking at
//! an old version, for Chorus and every anchor whose API can do it.
//!
//! On a sequential trace, each engine replays the trace transaction by transaction and
//! takes versions after the transactions that reach 10 %, 50 %, 90 % and 100 % of the
//! trace's patches (outside the timed regions), with its text at each. Then:
//!
//! - **read at 10 / 50 / 90 %**: the text at that version (for Loro, `checkout` and
//!   reading; its `checkout_to_latest` afterwards is not timed);
//! - **diff 50 → 100 %**: the change between the two versions, in the engine's own form;
//! - **fork + edits + merge**: a fork at 50 % (another replica), [`FORK_EDITS`] edits on
//!   it (one transaction each), and the fork's changes merged into a copy of the full
//!   document (the copy is made outside the timed region).
//!
//! # Checks
//!
//! Every run is checked, and a wrong result fails the run as a wrong replay does. The
//! texts taken during the replay must equal a plain model of the trace (a chunked
//! `Vec<char>`, [`Model`]); a read must give the text at its version; a diff applied to
//! the text at 50 % must give the text at 100 %. The fork's edits insert only
//! private-use chars (which the trace must not hold), typed at a cursor that now and
//! then jumps, with backspaces that may delete trace text. So, whatever order an engine
//! gives concurrent inserts, the merged text is fixed up to interleaving: without the
//! private-use chars it is the full text less the chars the fork deleted that the trace
//! had not deleted yet; the private-use chars alone are the fork's, in the fork's
//! order. The first run also merges the other way (the copy's changes into the fork)
//! and checks both ends hold the same text.
//!
//! # Timing
//!
//! As in `measure`: the median of up to `reps` runs, fewer for a step that takes an
//! engine more than its budget. The engines' runs are interleaved (run 1 of every
//! engine, then run 2 of every engine, ...) so that noise on the machine falls on all
//! alike. Nothing here asserts on a time.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chorus_trace::{Patch, describe_mismatch};
use serde::Serialize;

use crate::engines::{HistoryEngine, SeqInput, StepError};
use crate::measure::{Settings, extra_runs, median, ms};
use crate::report::{cell, fmt_ms};

/// The versions taken, in percent of the trace's patches.
pub const PERCENTS: [usize; 4] = [10, 50, 90, 100];
/// Where the diff starts and the fork is taken: the index in [`PERCENTS`] of 50 %.
const MIDDLE: usize = 1;
/// Where the diff ends: the index of 100 %.
const END: usize = 3;
/// How many edits the fork makes.
pub const FORK_EDITS: usize = 1000;
/// The seed of the fork's edits.
pub const FORK_SEED: u64 = 0x5EED_F0C5;
/// The first private-use char; the fork inserts chars from here on.
const MARK_FIRST: u32 = 0xE000;
/// How many private-use chars the fork cycles through.
const MARK_COUNT: u32 = 0x1900;

fn is_mark(c: char) -> bool {
    (MARK_FIRST..MARK_FIRST + MARK_COUNT).contains(&(c as u32))
}

/// The measured steps, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read the text at `PERCENTS[i]`.
    Read(usize),
    /// Diff 50 % → 100 %.
    Diff,
    /// Fork at 50 %, edit, merge back.
    Fork,
}

const STEPS: [Step; 5] = [
    Step::Read(0),
    Step::Read(1),
    Step::Read(2),
    Step::Diff,
    Step::Fork,
];

impl Step {
    /// The key in the JSON output.
    fn key(self) -> &'static str {
        match self {
            Step::Read(0) => "read_10",
            Step::Read(1) => "read_50",
            Step::Read(_) => "read_90",
            Step::Diff => "diff_50_100",
            Step::Fork => "fork_edit_merge",
        }
    }

    /// The row title in the table.
    fn title(self) -> String {
        match self {
            Step::Read(i) => format!("read at {}%", PERCENTS[i]),
            Step::Diff => format!("diff {}→{}%", PERCENTS[MIDDLE], PERCENTS[END]),
            Step::Fork => format!("fork {}%+{FORK_EDITS} ed.+merge", PERCENTS[MIDDLE]),
        }
    }
}

/// The history benchmark's results on one trace.
#[derive(Debug, Serialize)]
pub struct HistoryResult {
    /// The versions taken during the replay.
    pub versions: Vec<Cut>,
    /// How many edits the fork makes.
    pub fork_edits: usize,
    /// The seed of the fork's edits.
    pub fork_seed: u64,
    /// One entry per step, in report order.
    pub steps: Vec<StepResult>,
    /// Engines whose replay (before any step) failed, with the reason.
    pub setup_errors: Vec<(&'static str, String)>,
}

/// Where a version was taken.
#[derive(Debug, Clone, Serialize)]
pub struct Cut {
    /// The percentage of the trace's patches asked for.
    pub percent: usize,
    /// Transactions replayed when the version was taken.
    pub txns: usize,
    /// Patches replayed when the version was taken (the first transaction boundary at
    /// or past the percentage).
    pub patches: usize,
    /// Length of the text then, in chars.
    pub chars: usize,
}

/// One step, every engine.
#[derive(Debug, Serialize)]
pub struct StepResult {
    /// The step's key (`read_10`, `read_50`, `read_90`, `diff_50_100`, `fork_edit_merge`).
    pub step: &'static str,
    /// One entry per engine, in report order.
    pub engines: Vec<StepCell>,
}

/// One step of one engine.
#[derive(Debug, Serialize)]
pub struct StepCell {
    /// The engine's name.
    pub engine: &'static str,
    /// The median time.
    pub ms: Option<f64>,
    /// How many runs the median is taken over.
    pub runs: usize,
    /// Why the engine's API cannot do this step, if it cannot.
    pub unsupported: Option<String>,
    /// An error, panic or wrong result: the run fails.
    pub error: Option<String>,
}

impl HistoryResult {
    /// Every failure, as `engine / step: reason`.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .setup_errors
            .iter()
            .map(|(engine, err)| format!("{engine} / history replay: {err}"))
            .collect();
        for step in &self.steps {
            for cell in &step.engines {
                if let Some(err) = &cell.error {
                    out.push(format!("{} / {}: {err}", cell.engine, step.step));
                }
            }
        }
        out
    }
}

/// What every engine's results are checked against, computed once per trace.
#[derive(Debug)]
pub struct Expected {
    cuts: Vec<Cut>,
    /// The text at each cut.
    texts: Vec<String>,
    /// The fork's edits, in chars and in UTF-16 units.
    edits: Vec<Patch>,
    edits_utf16: Vec<(usize, usize)>,
    /// The fork's text after its edits.
    fork_text: String,
    /// The merged text without the fork's chars.
    merged_plain: String,
    /// The fork's chars in the merged text, in order.
    merged_marks: String,
}

impl Expected {
    /// Prepares the versions and the fork's edits for `input`.
    pub fn new(input: &SeqInput<'_>) -> anyhow::Result<Self> {
        let SeqInput { start, txns, .. } = *input;
        let patches = || txns.iter().flat_map(|t| &t.patches);
        if start.chars().any(is_mark) || patches().any(|p| p.ins.chars().any(is_mark)) {
            bail!(
                "the trace holds private-use chars (U+{MARK_FIRST:04X}..U+{:04X}), which the \
                 fork's edits use to be told apart",
                MARK_FIRST + MARK_COUNT - 1
            );
        }

        // The first transaction boundary at or past each percentage.
        let total = patches().count();
        let mut cuts = Vec::new();
        let (mut applied_txns, mut applied_patches) = (0, 0);
        let mut model = Model::new(start);
        let mut texts = Vec::new();
        for percent in PERCENTS {
            let wanted = (total * percent).div_ceil(100);
            while applied_patches < wanted {
                for patch in &txns[applied_txns].patches {
                    model.apply(patch);
                }
                applied_patches += txns[applied_txns].patches.len();
                applied_txns += 1;
            }
            if percent == 100 {
                // Trailing transactions without patches.
                applied_txns = txns.len();
            }
            let text = model.text();
            cuts.push(Cut {
                percent,
                txns: applied_txns,
                patches: applied_patches,
                chars: text.chars().count(),
            });
            texts.push(text);
        }

        let middle: Vec<char> = texts[MIDDLE].chars().collect();
        let fork = ForkEdits::generate(&middle, FORK_EDITS, FORK_SEED);
        let edits_utf16 = crate::engines::utf16_positions(
            &texts[MIDDLE],
            &[chorus_trace::SeqTxn {
                patches: fork.edits.clone(),
            }],
        );
        // Where the trace text the fork deleted is at the end, if the trace had not
        // deleted it by then.
        let later = txns[cuts[MIDDLE].txns..].iter().flat_map(|t| &t.patches);
        let gone = track(fork.deleted.clone(), later);
        let mut gone = gone.into_iter().peekable();
        let merged_plain = texts[END]
            .chars()
            .enumerate()
            .filter(|&(i, _)| {
                let hit = gone.peek() == Some(&i);
                if hit {
                    gone.next();
                }
                !hit
            })
            .map(|(_, c)| c)
            .collect();
        let fork_text: String = fork
            .items
            .iter()
            .map(|item| match *item {
                Item::Trace(i) => middle[i],
                Item::Mark(c) => c,
            })
            .collect();
        let merged_marks = fork_text.chars().filter(|&c| is_mark(c)).collect();
        Ok(Self {
            cuts,
            texts,
            edits: fork.edits,
            edits_utf16,
            fork_text,
            merged_plain,
            merged_marks,
        })
    }
}

/// The text of a trace as it is replayed: a list of chunks of chars, so an edit moves
/// at most one chunk's chars.
#[derive(Debug)]
struct Model {
    chunks: Vec<Vec<char>>,
}

/// Chunks are split past this many chars.
const CHUNK: usize = 1024;

impl Model {
    fn new(start: &str) -> Self {
        let mut model = Model {
            chunks: vec![Vec::new()],
        };
        model.insert(0, start);
        model
    }

    /// The chunk holding char `pos` and the offset in it (the end of the last chunk for
    /// the end of the text).
    fn locate(&self, mut pos: usize) -> (usize, usize) {
        for (i, chunk) in self.chunks.iter().enumerate() {
            if pos < chunk.len() {
                return (i, pos);
            }
            pos -= chunk.len();
        }
        let last = self.chunks.len() - 1;
        (last, self.chunks[last].len() + pos)
    }

    fn insert(&mut self, pos: usize, s: &str) {
        let (i, offset) = self.locate(pos);
        let chunk = &mut self.chunks[i];
        chunk.splice(offset..offset, s.chars());
        if chunk.len() > CHUNK {
            let pieces: Vec<Vec<char>> = chunk.chunks(CHUNK / 2).map(<[char]>::to_vec).collect();
            self.chunks.splice(i..=i, pieces);
        }
    }

    fn delete(&mut self, pos: usize, mut len: usize) {
        while len > 0 {
            let (i, offset) = self.locate(pos);
            let chunk = &mut self.chunks[i];
            let n = len.min(chunk.len() - offset);
            chunk.drain(offset..offset + n);
            if chunk.is_empty() && self.chunks.len() > 1 {
                self.chunks.remove(i);
            }
            len -= n;
        }
    }

    fn apply(&mut self, patch: &Patch) {
        self.delete(patch.pos, patch.del);
        self.insert(patch.pos, &patch.ins);
    }

    fn text(&self) -> String {
        self.chunks.iter().flatten().collect()
    }
}

/// A char of the fork's text: the trace's char at this index of the text at 50 %, or
/// one the fork inserted.
#[derive(Debug, Clone, Copy)]
enum Item {
    Trace(usize),
    Mark(char),
}

/// The fork's edits and what they do.
#[derive(Debug)]
struct ForkEdits {
    edits: Vec<Patch>,
    /// The fork's text after the edits.
    items: Vec<Item>,
    /// The indexes (in the text at 50 %) of the trace chars the fork deleted, ascending.
    deleted: Vec<usize>,
}

impl ForkEdits {
    /// `count` edits on `text`: runs of 1–4 inserted chars and backspaces of 1–3 chars at
    /// a cursor that jumps to a random place before one edit in ten.
    fn generate(text: &[char], count: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let mut items: Vec<Item> = (0..text.len()).map(Item::Trace).collect();
        let mut deleted = Vec::new();
        let mut edits = Vec::with_capacity(count);
        let mut next_mark = 0;
        let mut cursor = rng.below(items.len() + 1);
        for _ in 0..count {
            if rng.below(10) == 0 {
                cursor = rng.below(items.len() + 1);
            }
            if items.is_empty() || rng.below(4) != 0 {
                let ins: String = (0..1 + rng.below(4))
                    .map(|_| {
                        next_mark = (next_mark + 1) % MARK_COUNT;
                        char::from_u32(MARK_FIRST + next_mark).expect("a private-use char")
                    })
                    .collect();
                items.splice(cursor..cursor, ins.chars().map(Item::Mark));
                edits.push(Patch {
                    pos: cursor,
                    del: 0,
                    ins: ins.clone(),
                });
                cursor += ins.chars().count();
            } else {
                let want = 1 + rng.below(3);
                // A backspace, or a forward delete at the start of the text.
                let (pos, del) = if cursor == 0 {
                    (0, want.min(items.len()))
                } else {
                    (cursor - want.min(cursor), want.min(cursor))
                };
                for item in items.drain(pos..pos + del) {
                    if let Item::Trace(i) = item {
                        deleted.push(i);
                    }
                }
                edits.push(Patch {
                    pos,
                    del,
                    ins: String::new(),
                });
                cursor = pos;
            }
        }
        deleted.sort_unstable();
        Self {
            edits,
            items,
            deleted,
        }
    }
}

/// Follows the chars at `positions` (ascending) through `patches`: returns where those
/// the patches did not delete end up.
fn track<'a>(mut positions: Vec<usize>, patches: impl Iterator<Item = &'a Patch>) -> Vec<usize> {
    for patch in patches {
        let lo = positions.partition_point(|&p| p < patch.pos);
        let hi = positions.partition_point(|&p| p < patch.pos + patch.del);
        positions.drain(lo..hi);
        let ins = patch.ins.chars().count();
        for p in &mut positions[lo..] {
            *p = *p - patch.del + ins;
        }
    }
    positions
}

/// SplitMix64 (Steele, Lea & Flood): a seeded generator, so every run makes the same
/// edits.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One engine, replayed, ready to run steps: the object-safe face of a
/// [`HistoryEngine`], so the engines' runs can be interleaved.
trait Subject {
    fn name(&self) -> &'static str;
    /// Runs `step` once, checks the result against `expected` (`first`: also the
    /// costlier checks), and returns the time of the timed part.
    fn run(&mut self, step: Step, expected: &Expected, first: bool) -> Result<Duration, StepError>;
}

/// An engine's replayed document and the versions taken during the replay.
struct Prepared<E: HistoryEngine> {
    doc: E::Doc,
    versions: Vec<E::Version>,
}

/// `Err(wrong text)` if `actual` is not `expected`.
fn check(what: &str, expected: &str, actual: &str) -> Result<(), StepError> {
    match describe_mismatch(expected, actual) {
        None => Ok(()),
        Some(mismatch) => Err(StepError::Failed(anyhow::anyhow!(
            "WRONG TEXT ({what}): {mismatch}"
        ))),
    }
}

/// Replays `input` with `E`, taking the versions of `expected.cuts` and checking the
/// texts then.
fn prepare<E: HistoryEngine>(
    input: &SeqInput<'_>,
    expected: &Expected,
) -> anyhow::Result<Prepared<E>> {
    let mut doc = E::history_doc(input.start)?;
    let mut versions = Vec::new();
    let mut utf16 = &input.utf16[..];
    let mut cuts = expected.cuts.iter().zip(&expected.texts).peekable();
    for applied in 0..=input.txns.len() {
        if applied > 0 {
            let patches = &input.txns[applied - 1].patches;
            let (now, rest) = utf16.split_at(patches.len());
            utf16 = rest;
            E::apply_txn(&mut doc, patches, now)
                .with_context(|| format!("transaction {}", applied - 1))?;
        }
        while let Some((cut, text)) = cuts.next_if(|(cut, _)| cut.txns == applied) {
            let actual = E::current_text(&mut doc)?;
            if let Some(mismatch) = describe_mismatch(text, &actual) {
                bail!(
                    "WRONG TEXT during the replay at {}% ({} txns): {mismatch}",
                    cut.percent,
                    cut.txns
                );
            }
            versions.push(E::version(&mut doc));
        }
    }
    Ok(Prepared { doc, versions })
}

impl<E: HistoryEngine> Subject for Prepared<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn run(&mut self, step: Step, expected: &Expected, first: bool) -> Result<Duration, StepError> {
        let doc = &mut self.doc;
        match step {
            Step::Read(i) => {
                let start = Instant::now();
                let text = E::text_at(doc, &self.versions[i]);
                let time = start.elapsed();
                E::after_read(doc);
                let text = text?;
                check("read", &expected.texts[i], &text)?;
                Ok(time)
            }
            Step::Diff => {
                E::before_diff(doc);
                let start = Instant::now();
                let diff = E::diff(doc, &self.versions[MIDDLE], &self.versions[END])?;
                let time = start.elapsed();
                let text = E::apply_diff(&diff, &expected.texts[MIDDLE])
                    .context("applying the diff to the text at 50%")?;
                check("diff applied", &expected.texts[END], &text)?;
                Ok(time)
            }
            Step::Fork => {
                let mut target = E::duplicate(doc)?;
                let start = Instant::now();
                let mut fork = E::fork_edit_merge(
                    doc,
                    &mut target,
                    &self.versions[MIDDLE],
                    &expected.edits,
                    &expected.edits_utf16,
                )?;
                let time = start.elapsed();
                check("fork", &expected.fork_text, &E::fork_text(&mut fork)?)?;
                let merged = E::current_text(&mut target)?;
                let plain: String = merged.chars().filter(|&c| !is_mark(c)).collect();
                check(
                    "merged, without the fork's chars",
                    &expected.merged_plain,
                    &plain,
                )?;
                let marks: String = merged.chars().filter(|&c| is_mark(c)).collect();
                check("merged, the fork's chars", &expected.merged_marks, &marks)?;
                if first {
                    let other_way = E::converge(&mut fork, &mut target)?;
                    check("fork after merging the other way", &merged, &other_way)?;
                }
                Ok(time)
            }
        }
    }
}

/// Runs `f`, turning a panic into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, StepError>) -> Result<T, StepError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        Err(StepError::Failed(anyhow::anyhow!("panicked: {message}")))
    })
}

/// Adds engine `E` to `subjects`, or records why its replay failed.
fn add<E: HistoryEngine + 'static>(
    input: &SeqInput<'_>,
    expected: &Expected,
    subjects: &mut Vec<Box<dyn Subject>>,
    setup_errors: &mut Vec<(&'static str, String)>,
) {
    eprintln!("  history: replaying with {}", E::NAME);
    match guarded(|| Ok(prepare::<E>(input, expected)?)) {
        Ok(prepared) => subjects.push(Box::new(prepared)),
        Err(err) => setup_errors.push((E::NAME, err.to_string())),
    }
}

/// Runs the history benchmark on `input` with the engines `selected` picks.
pub fn run(
    input: &SeqInput<'_>,
    settings: &Settings,
    selected: &dyn Fn(&str) -> bool,
) -> anyhow::Result<HistoryResult> {
    use crate::engines::{Automerge, Chorus, DiamondTypes, Loro, Yrs};

    let expected = Expected::new(input).context("preparing the history benchmark")?;
    let mut subjects: Vec<Box<dyn Subject>> = Vec::new();
    let mut setup_errors = Vec::new();
    if selected(<Chorus as HistoryEngine>::NAME) {
        add::<Chorus>(input, &expected, &mut subjects, &mut setup_errors);
    }
    if selected(<Yrs as HistoryEngine>::NAME) {
        add::<Yrs>(input, &expected, &mut subjects, &mut setup_errors);
    }
    if selected(<Automerge as HistoryEngine>::NAME) {
        add::<Automerge>(input, &expected, &mut subjects, &mut setup_errors);
    }
    if selected(<DiamondTypes as HistoryEngine>::NAME) {
        add::<DiamondTypes>(input, &expected, &mut subjects, &mut setup_errors);
    }
    if selected(<Loro as HistoryEngine>::NAME) {
        add::<Loro>(input, &expected, &mut subjects, &mut setup_errors);
    }

    let steps = STEPS
        .iter()
        .map(|&step| StepResult {
            step: step.key(),
            engines: measure_step(step, &mut subjects, &expected, settings),
        })
        .collect();
    Ok(HistoryResult {
        versions: expected.cuts.clone(),
        fork_edits: FORK_EDITS,
        fork_seed: FORK_SEED,
        steps,
        setup_errors,
    })
}

/// Measures one step on every engine, the engines' runs interleaved.
fn measure_step(
    step: Step,
    subjects: &mut [Box<dyn Subject>],
    expected: &Expected,
    settings: &Settings,
) -> Vec<StepCell> {
    let mut cells: Vec<StepCell> = subjects
        .iter()
        .map(|s| StepCell {
            engine: s.name(),
            ms: None,
            runs: 0,
            unsupported: None,
            error: None,
        })
        .collect();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); subjects.len()];
    // How many runs each engine gets, set by its first run's time.
    let mut allowed = vec![1; subjects.len()];
    for round in 0..settings.reps {
        for (i, subject) in subjects.iter_mut().enumerate() {
            let cell = &mut cells[i];
            if round >= allowed[i] || cell.error.is_some() || cell.unsupported.is_some() {
                continue;
            }
            match guarded(|| subject.run(step, expected, round == 0)) {
                Ok(time) => {
                    if round == 0 {
                        allowed[i] = 1 + extra_runs(settings, time);
                    }
                    times[i].push(time);
                }
                Err(StepError::Unsupported(reason)) => cell.unsupported = Some(reason),
                Err(StepError::Failed(err)) => cell.error = Some(format!("{err:#}")),
            }
        }
    }
    for (cell, times) in cells.iter_mut().zip(times) {
        if cell.error.is_none() && !times.is_empty() {
            cell.runs = times.len();
            cell.ms = Some(ms(median(times)));
            eprintln!(
                "  history: {:<16} {:<14} {:.2} ms ×{}",
                step.key(),
                cell.engine,
                cell.ms.unwrap_or(f64::NAN),
                cell.runs
            );
        }
    }
    cells
}

/// The history table: a row per step, a column per engine, each time with its ratio to
/// Chorus.
pub fn table(trace: &str, result: &HistoryResult) -> String {
    let mut engines: Vec<&'static str> = result
        .steps
        .first()
        .map(|s| s.engines.iter().map(|c| c.engine).collect())
        .unwrap_or_default();
    engines.extend(result.setup_errors.iter().map(|(e, _)| *e));
    let mut out = String::new();
    let versions: Vec<String> = result
        .versions
        .iter()
        .map(|c| format!("{}% = {} txns, {} chars", c.percent, c.txns, c.chars))
        .collect();
    let _ = writeln!(
        out,
        "\n{trace} history (versions at {}; fork edits: {} seeded, {:#x}); ratios are to chorus",
        versions.join(", "),
        result.fork_edits,
        result.fork_seed
    );
    let _ = write!(out, "{:<26}", "step");
    for engine in &engines {
        let _ = write!(out, " {engine:>22}");
    }
    out.push('\n');
    let mut notes = Vec::new();
    for step in &result.steps {
        let chorus = step
            .engines
            .iter()
            .find(|c| c.engine == "chorus")
            .and_then(|c| c.ms);
        let title = STEPS
            .iter()
            .find(|s| s.key() == step.step)
            .map_or_else(|| step.step.to_owned(), |s| s.title());
        let _ = write!(out, "{title:<26}");
        for engine in &engines {
            let text = match step.engines.iter().find(|c| c.engine == *engine) {
                Some(c) if c.error.is_some() => "FAILED".to_owned(),
                Some(StepCell {
                    unsupported: Some(reason),
                    ..
                }) => {
                    notes.push(format!("n/a ({engine}, {title}): {reason}"));
                    "n/a".to_owned()
                }
                Some(c) => cell(c.ms, chorus, fmt_ms),
                None => "FAILED".to_owned(),
            };
            let _ = write!(out, " {text:>22}");
        }
        out.push('\n');
    }
    for note in notes {
        let _ = writeln!(out, "{note}");
    }
    for failure in result.failures() {
        let _ = writeln!(out, "FAILED: {failure}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_follows_patches_across_chunks() {
        let mut model = Model::new(&"ab".repeat(CHUNK));
        model.apply(&Patch {
            pos: CHUNK - 3,
            del: 10,
            ins: "xyz".into(),
        });
        let mut naive: Vec<char> = "ab".repeat(CHUNK).chars().collect();
        naive.splice(CHUNK - 3..CHUNK + 7, "xyz".chars());
        assert_eq!(model.text(), naive.iter().collect::<String>());
        model.apply(&Patch {
            pos: 2 * CHUNK - 7,
            del: 0,
            ins: "end".into(),
        });
        naive.extend("end".chars());
        assert_eq!(model.text(), naive.iter().collect::<String>());
    }

    #[test]
    fn tracked_positions_move_and_vanish() {
        let patch = |pos, del, ins: &str| Patch {
            pos,
            del,
            ins: ins.into(),
        };
        // "abcdef": follow b (1), d (3), f (5); delete "cd", insert "XY" at 0.
        let patches = [patch(2, 2, ""), patch(0, 0, "XY")];
        assert_eq!(track(vec![1, 3, 5], patches.iter()), vec![3, 5]);
    }

    #[test]
    fn fork_edits_are_deterministic_and_consistent() {
        let text: Vec<char> = "hello world".chars().collect();
        let a = ForkEdits::generate(&text, 200, 1);
        let b = ForkEdits::generate(&text, 200, 1);
        assert_eq!(a.edits, b.edits);
        // Replaying the edits on the text gives the items.
        let mut model = Model::new("hello world");
        for edit in &a.edits {
            model.apply(edit);
        }
        let items: String = a
            .items
            .iter()
            .map(|item| match *item {
                Item::Trace(i) => text[i],
                Item::Mark(c) => c,
            })
            .collect();
        assert_eq!(model.text(), items);
    }
}
