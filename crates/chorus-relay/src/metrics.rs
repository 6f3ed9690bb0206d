//! The relay's Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Every metric is named `chorus_…`; counters end in `_total` and durations are in
//! seconds, as Prometheus expects. The handles are cheap to clone and update from any
//! task without locking a room: counters and gauges are atomics.
//!
//! ```
//! use chorus_relay::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! metrics.connections.inc();
//! metrics.frames_in.inc();
//! metrics.closed(1008);
//! let text = metrics.render();
//! assert!(text.contains("chorus_connections 1\n"));
//! assert!(text.contains("chorus_closes_total{code=\"1008\"} 1\n"));
//! ```

use std::fmt;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The label of `chorus_closes_total`: the WebSocket close code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
}

/// The label of `chorus_auth_refusals_total`: why a token was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

/// The relay's metrics and the registry that renders them.
///
/// Update the public handles directly (`metrics.frames_in.inc()`,
/// `metrics.apply_seconds.observe(elapsed.as_secs_f64())`); closes and refusals, which
/// carry a label, go through [`Metrics::closed`] and [`Metrics::refused`].
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections (`chorus_connections`).
    pub connections: Gauge,
    /// WebSocket connections accepted since start (`chorus_connections_opened_total`).
    pub connections_total: Counter,
    /// Open rooms, i.e. documents loaded in memory (`chorus_rooms`).
    pub rooms: Gauge,
    /// Frames received from clients and peers (`chorus_frames_in_total`).
    pub frames_in: Counter,
    /// Frames sent to clients and peers (`chorus_frames_out_total`).
    pub frames_out: Counter,
    /// Bytes of frames received (`chorus_bytes_in_total`).
    pub bytes_in: Counter,
    /// Bytes of frames sent (`chorus_bytes_out_total`).
    pub bytes_out: Counter,
    /// Time to apply one received update to a room's document (`chorus_apply_seconds`).
    pub apply_seconds: Histogram,
    /// Time to write one batch of a room's updates to storage (`chorus_persist_seconds`).
    pub persist_seconds: Histogram,
    closes: Family<CloseLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
}

/// Buckets from 50 µs doubling up to about 1.6 s: applying and persisting take
/// milliseconds, and the tail is what matters.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(50e-6, 2.0, 16)
}

impl Metrics {
    /// Creates the metrics, all zero, registered under their `chorus_` names.
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            rooms: Gauge::default(),
            frames_in: Counter::default(),
            frames_out: Counter::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            apply_seconds: Histogram::new(latency_buckets()),
            persist_seconds: Histogram::new(latency_buckets()),
            closes: Family::default(),
            refusals: Family::default(),
        };
        let mut r = Registry::default();
        r.register(
            "chorus_connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "chorus_connections_opened",
            "WebSocket connections accepted since the relay started",
            m.connections_total.clone(),
        );
        r.register(
            "chorus_rooms",
            "Open rooms (documents loaded in memory)",
            m.rooms.clone(),
        );
        r.register("chorus_frames_in", "Frames received", m.frames_in.clone());
        r.register("chorus_frames_out", "Frames sent", m.frames_out.clone());
        r.register(
            "chorus_bytes_in",
            "Bytes of frames received",
            m.bytes_in.clone(),
        );
        r.register(
            "chorus_bytes_out",
            "Bytes of frames sent",
            m.bytes_out.clone(),
        );
        r.register_with_unit(
            "chorus_apply",
            "Time to apply a received update to a room's document",
            Unit::Seconds,
            m.apply_seconds.clone(),
        );
        r.register_with_unit(
            "chorus_persist",
            "Time to write a batch of a room's updates to storage",
            Unit::Seconds,
            m.persist_seconds.clone(),
        );
        r.register(
            "chorus_closes",
            "Connections closed, by WebSocket close code",
            m.closes.clone(),
        );
        r.register(
            "chorus_auth_refusals",
            "Requests refused for their access token, by reason",
            m.refusals.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Counts a connection closed with the WebSocket close `code` (1000: normal, 1008:
    /// policy violation, …). It does not touch [`Metrics::connections`].
    pub fn closed(&self, code: u16) {
        self.closes.get_or_create(&CloseLabels { code }).inc();
    }

    /// Counts a connection or request refused for its access token; `reason` is a short,
    /// stable name such as [`AuthError::reason`](crate::auth::AuthError::reason) returns.
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// The metrics in the OpenMetrics text format (served as [`CONTENT_TYPE`]), ending
    /// in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and neither can encoding these metrics.
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    /// The current counter and gauge values, not the registry's internals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("connections", &self.connections.get())
            .field("connections_total", &self.connections_total.get())
            .field("rooms", &self.rooms.get())
            .field("frames_in", &self.frames_in.get())
            .field("frames_out", &self.frames_out.get())
            .field("bytes_in", &self.bytes_in.get())
            .field("bytes_out", &self.bytes_out.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_the_updates() {
        let m = Metrics::new();
        m.connections.inc();
        m.connections.inc();
        m.connections.dec();
        m.connections_total.inc_by(2);
        m.rooms.set(3);
        m.frames_in.inc_by(5);
        m.frames_out.inc_by(7);
        m.bytes_in.inc_by(100);
        m.bytes_out.inc_by(250);
        m.apply_seconds.observe(0.000_07);
        m.apply_seconds.observe(0.002);
        m.persist_seconds.observe(0.5);
        m.closed(1008);
        m.closed(1008);
        m.closed(1000);
        m.refused("expired");
        m.refused(crate::auth::AuthError::BadSignature.reason());

        let text = m.render();
        for line in [
            "# TYPE chorus_connections gauge",
            "chorus_connections 1",
            "chorus_connections_opened_total 2",
            "chorus_rooms 3",
            "# TYPE chorus_frames_in counter",
            "chorus_frames_in_total 5",
            "chorus_frames_out_total 7",
            "chorus_bytes_in_total 100",
            "chorus_bytes_out_total 250",
            "# TYPE chorus_apply_seconds histogram",
            "# UNIT chorus_apply_seconds seconds",
            "chorus_apply_seconds_count 2",
            "chorus_apply_seconds_bucket{le=\"0.0001\"} 1",
            "chorus_apply_seconds_bucket{le=\"+Inf\"} 2",
            "chorus_persist_seconds_count 1",
            "chorus_persist_seconds_sum 0.5",
            "chorus_closes_total{code=\"1008\"} 2",
            "chorus_closes_total{code=\"1000\"} 1",
            "chorus_auth_refusals_total{reason=\"expired\"} 1",
            "chorus_auth_refusals_total{reason=\"bad_signature\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
        // Every sample is named chorus_….
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("chorus_"), "{l}");
        }
        assert!(format!("{m:?}").contains("frames_in: 5"));
    }

    #[test]
    fn buckets_cover_fifty_microseconds_to_a_second() {
        let b: Vec<f64> = latency_buckets().collect();
        assert_eq!(b[0], 50e-6);
        assert!(b[b.len() - 1] > 1.0);
    }
}
