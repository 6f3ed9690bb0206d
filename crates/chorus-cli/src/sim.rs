//! `chorus sim`: run the deterministic network simulator and print what a topology
//! costs — or, with `--compare`, what every topology costs on one workload, with and
//! without a failed link or replica; with `--plot`, convergence latency against the
//! number of replicas as an SVG chart.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chorus_sync::Topology;
use chorus_sync::sim::{self, Crash, LinkFailure, SimConfig, SimReport, human_bytes};
use clap::Args;

/// `chorus sim` options.
#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// How replicas are wired: star, ring, ring-one-way, line, tree or mesh.
    #[arg(long, default_value = "star")]
    topology: Topology,
    /// The number of replicas.
    #[arg(long, default_value_t = 8)]
    replicas: usize,
    /// Edits each replica makes.
    #[arg(long, default_value_t = 20)]
    ops: usize,
    /// The probability that a frame is lost.
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// The probability that a frame is delivered twice.
    #[arg(long, default_value_t = 0.01)]
    dup: f64,
    /// A link's fixed delay (ms).
    #[arg(long, default_value_t = 50)]
    latency: u64,
    /// A link's random extra delay, 0 to this (ms); it reorders frames.
    #[arg(long, default_value_t = 20)]
    jitter: u64,
    /// Time between a replica's edits (ms), plus up to as much again at random.
    #[arg(long, default_value_t = 100)]
    interval: u64,
    /// Time between a replica's repair ticks (ms).
    #[arg(long, default_value_t = 200)]
    tick: u64,
    /// Seeds every random choice: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run every topology on the same workload, with no failure, with one failed
    /// link and with one failed replica, and print the trade-offs.
    #[arg(long)]
    compare: bool,
    /// Draw convergence latency (p50, p99) against the number of replicas for every
    /// topology into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// The numbers of replicas for `--plot`.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    sizes: Vec<usize>,
}

impl SimArgs {
    fn config(&self, topology: Topology, replicas: usize) -> SimConfig {
        let mut c = SimConfig::new(topology, replicas);
        c.seed = self.seed;
        c.ops_per_replica = self.ops;
        c.loss = self.loss;
        c.duplicate = self.dup;
        c.latency_ms = self.latency;
        c.jitter_ms = self.jitter;
        c.edit_interval_ms = self.interval;
        c.edit_jitter_ms = self.interval;
        c.tick_ms = self.tick;
        c
    }

    fn workload(&self) -> String {
        format!(
            "{} edits per replica, {}–{} ms apart; links {} ms + 0–{} ms, loss {}%, duplication {}%; a tick every {} ms; seed {}",
            self.ops,
            self.interval,
            2 * self.interval,
            self.latency,
            self.jitter,
            self.loss * 100.0,
            self.dup * 100.0,
            self.tick,
            self.seed
        )
    }
}

/// Runs `chorus sim`.
pub(crate) fn run(args: &SimArgs) -> anyhow::Result<()> {
    // Refuse a bad configuration before doing anything.
    for n in std::iter::once(args.replicas)
        .chain(args.plot.iter().flat_map(|_| args.sizes.iter().copied()))
    {
        args.config(args.topology, n).validate()?;
    }
    if args.compare {
        compare(args)?;
    } else if args.plot.is_none() {
        let report = sim::run(&args.config(args.topology, args.replicas));
        println!("{}", args.workload());
        print!("{report}");
        if !report.converged {
            anyhow::bail!("the replicas did not converge");
        }
    }
    if let Some(path) = &args.plot {
        plot(args, path)?;
    }
    Ok(())
}

/// Runs the configurations on up to as many threads as there are CPUs, in order.
fn run_all(configs: Vec<SimConfig>) -> Vec<SimReport> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut reports: Vec<Option<SimReport>> = vec![None; configs.len()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(&mut reports);
    std::thread::scope(|s| {
        for _ in 0..threads.min(configs.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(c) = configs.get(i) else { break };
                    let r = sim::run(c);
                    results.lock().expect("no thread panics holding it")[i] = Some(r);
                }
            });
        }
    });
    reports
        .into_iter()
        .map(|r| r.expect("every configuration ran"))
        .collect()
}

/// The link that fails in the comparison: one whose loss a topology feels if it can.
fn failed_link(t: Topology, n: usize) -> (usize, usize) {
    match t {
        // A leaf is cut off; a subtree is cut off; the line is cut in half.
        Topology::Star | Topology::Tree => (0, 1),
        Topology::Line => (n / 2 - 1, n / 2),
        // Two ways round the ring, or another path in the mesh; the one-way ring is
        // cut into a line.
        Topology::Ring | Topology::RingOneWay | Topology::Mesh => (0, 1),
    }
}

/// The replicas that fail in the comparison, with what they are.
fn failed_nodes(t: Topology, n: usize) -> Vec<(usize, &'static str)> {
    match t {
        Topology::Star => vec![(n - 1, "leaf"), (0, "hub")],
        Topology::Line => vec![(n / 2, "middle")],
        Topology::Tree => vec![(1, "inner")],
        Topology::Ring | Topology::RingOneWay | Topology::Mesh => vec![(1, "")],
    }
}

fn groups(r: &SimReport) -> String {
    let sizes: Vec<String> = r.groups.iter().map(|g| g.len().to_string()).collect();
    sizes.join("+")
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "NO" }
}

fn compare(args: &SimArgs) -> anyhow::Result<()> {
    let n = args.replicas;
    anyhow::ensure!(n >= 4, "--compare needs at least 4 replicas");
    println!("{} replicas; {}", n, args.workload());

    // One batch: the baseline, a failed link, the failed replicas, per topology.
    let mut configs = Vec::new();
    let mut labels = Vec::new();
    for t in Topology::ALL {
        configs.push(args.config(t, n));
        labels.push((t, "base".to_owned()));
        let mut c = args.config(t, n);
        c.link_failures.push(LinkFailure {
            link: failed_link(t, n),
            at_ms: 0,
        });
        configs.push(c);
        labels.push((t, "link".to_owned()));
        for (node, what) in failed_nodes(t, n) {
            let mut c = args.config(t, n);
            c.crashes.push(Crash {
                node,
                at_ms: 0,
                restart_ms: None,
            });
            configs.push(c);
            labels.push((t, format!("replica {node} {what}").trim_end().to_owned()));
        }
    }
    let reports = run_all(configs);
    let of = |t: Topology, kind: &str| -> Vec<(&String, &SimReport)> {
        labels
            .iter()
            .zip(&reports)
            .filter(|((lt, l), _)| {
                *lt == t && (l == kind || (kind == "node" && l != "base" && l != "link"))
            })
            .map(|((_, l), r)| (l, r))
            .collect()
    };

    println!();
    println!("No failure: convergence latency of an edit (commit → every replica has it), traffic");
    println!(
        "{:<13} {:>5} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>7} {:>7} {:>8}   busiest replica (frames, bytes in+out)",
        "topology",
        "links",
        "per repl.",
        "p50 ms",
        "p99 ms",
        "max ms",
        "frames",
        "bytes",
        "Hello",
        "Delta",
        "ops 2×+",
    );
    for t in Topology::ALL {
        let (_, r) = of(t, "base")[0];
        let (lo, hi) = r.links_per_node();
        let b = &r.per_node[r.busiest];
        println!(
            "{:<13} {:>5} {:>9} {:>7} {:>7} {:>7} {:>8} {:>9} {:>7} {:>7} {:>8}   #{} ({}, {}){}",
            t,
            r.links,
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}–{hi}")
            },
            r.latency.p50_ms,
            r.latency.p99_ms,
            r.latency.max_ms,
            r.traffic.frames_sent,
            human_bytes(r.traffic.bytes_sent),
            r.frames_by_type.hello,
            r.frames_by_type.delta,
            r.ops_duplicate(),
            r.busiest,
            b.traffic.frames(),
            human_bytes(b.traffic.bytes()),
            if r.converged { "" } else { "  NOT CONVERGED" }
        );
    }

    println!();
    println!(
        "Failures at t = 0, for good. groups: the live replicas by final state; latency: p50 / p99 (ms) \
         over every live replica when they converged, else within the largest group"
    );
    println!(
        "{:<13} {:<18} {:>9} {:>15} {:>16} {:>12} {:>8}",
        "topology", "what fails", "converged", "groups", "edits everywhere", "latency", "frames"
    );
    let mut rows: Vec<(Topology, String, &SimReport)> = Vec::new();
    for t in Topology::ALL {
        let (a, b) = failed_link(t, n);
        rows.push((t, format!("link {a}–{b}"), of(t, "link")[0].1));
    }
    for t in Topology::ALL {
        for (label, r) in of(t, "node") {
            rows.push((t, label.clone(), r));
        }
    }
    for (t, what, r) in rows {
        let l = if r.converged {
            &r.latency
        } else {
            &r.main_group_latency
        };
        let group = if r.converged {
            r.live()
        } else {
            r.main_group.len()
        };
        let latency = if l.count == 0 || group < 2 {
            "–".to_owned()
        } else {
            format!("{} / {}", l.p50_ms, l.p99_ms)
        };
        println!(
            "{:<13} {:<18} {:>9} {:>15} {:>16} {:>12} {:>8}",
            t,
            what,
            yes(r.converged),
            groups(r),
            format!("{}/{}", r.edits_everywhere, r.edits),
            latency,
            r.traffic.frames_sent
        );
    }
    let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
    for e in &errors {
        eprintln!("error: {e}");
    }
    anyhow::ensure!(
        errors.is_empty(),
        "the simulations found {} errors",
        errors.len()
    );
    Ok(())
}

/// Colours of the topologies' lines.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

fn plot(args: &SimArgs, path: &Path) -> anyhow::Result<()> {
    let sizes = &args.sizes;
    anyhow::ensure!(!sizes.is_empty(), "--sizes names no size");
    let configs: Vec<SimConfig> = Topology::ALL
        .iter()
        .flat_map(|&t| sizes.iter().map(move |&n| (t, n)))
        .map(|(t, n)| args.config(t, n))
        .collect();
    let reports = run_all(configs);
    println!();
    println!(
        "Convergence latency (ms, p50 / p99) by number of replicas; {}",
        args.workload()
    );
    print!("{:<13}", "topology");
    for n in sizes {
        print!(" {:>13}", format!("N = {n}"));
    }
    println!();
    let mut series = Vec::new();
    for (k, t) in Topology::ALL.iter().enumerate() {
        let rs = &reports[k * sizes.len()..(k + 1) * sizes.len()];
        print!("{t:<13}");
        for r in rs {
            let mark = if r.converged { "" } else { "!" };
            print!(
                " {:>13}",
                format!("{} / {}{mark}", r.latency.p50_ms, r.latency.p99_ms)
            );
        }
        println!();
        series.push((
            *t,
            rs.iter().map(|r| r.latency.p50_ms).collect::<Vec<_>>(),
            rs.iter().map(|r| r.latency.p99_ms).collect::<Vec<_>>(),
        ));
    }
    let svg = svg_chart(sizes, &series, &args.workload());
    std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// A line chart: one colour per topology, p99 solid, p50 dashed; the x axis is the
/// number of replicas (evenly spaced, in the order given), the y axis milliseconds.
fn svg_chart(sizes: &[usize], series: &[(Topology, Vec<u64>, Vec<u64>)], subtitle: &str) -> String {
    let (w, h) = (900.0, 560.0);
    let (left, right, top, bottom) = (70.0, 170.0, 60.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let top_value = series
        .iter()
        .flat_map(|(_, a, b)| a.iter().chain(b))
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let step = nice_step(top_value as f64 / 5.0);
    let y_max = (top_value as f64 / step).ceil() * step;
    let x = |i: usize| {
        if sizes.len() == 1 {
            left + pw / 2.0
        } else {
            left + pw * i as f64 / (sizes.len() - 1) as f64
        }
    };
    let y = |v: u64| top + ph - ph * v as f64 / y_max;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="16" text-anchor="middle">Convergence latency against replicas (p99 solid, p50 dashed)</text>"#,
        left + pw / 2.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="42" font-size="10" text-anchor="middle" fill="#555">{}</text>"##,
        left + pw / 2.0,
        escape(subtitle)
    );
    // Grid and axes.
    let mut v = 0.0;
    while v <= y_max + 1e-9 {
        let yy = top + ph - ph * v / y_max;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0,
            v as u64
        );
        v += step;
    }
    for (i, n) in sizes.iter().enumerate() {
        let xx = x(i);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{}" stroke="#eee"/><text x="{xx:.1}" y="{}" text-anchor="middle">{n}</text>"##,
            top + ph,
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        top + ph,
        left + pw,
        top + ph,
        top + ph
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">replicas (N)</text>"#,
        left + pw / 2.0,
        h - 16.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">milliseconds</text>"#,
        top + ph / 2.0
    );
    // The lines and the legend.
    for (k, (t, p50, p99)) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        for (values, dash) in [(p99, ""), (p50, r#" stroke-dasharray="6 4""#)] {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="{}"/>"#,
                points.join(" ")
            );
            for (i, &v) in values.iter().enumerate() {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{t}, N = {}: {v} ms</title></circle>"#,
                    x(i),
                    y(v),
                    sizes[i]
                );
            }
        }
        let ly = top + 10.0 + 22.0 * k as f64;
        let lx = left + pw + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{t}</text>"#,
            lx + 28.0,
            lx + 36.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let raw = raw.max(1.0);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * p)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.3), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(230.0), 500.0);
        assert_eq!(nice_step(1000.0), 1000.0);
    }

    #[test]
    fn the_chart_is_well_formed() {
        let series = vec![(Topology::Star, vec![10, 20], vec![30, 45])];
        let svg = svg_chart(&[4, 8], &series, "a & b");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &amp; b"));
    }
}
