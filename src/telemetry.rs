//! Metrics: one Prometheus recorder per process, installed at start-up; the code counts
//! through the `metrics` macros and `GET /metrics` renders the text format
//! (`metrics-exporter-prometheus`, not a hand-written exposition). Every name is listed in
//! the README's Metrics section.
//!
//! Labels only ever take values from a small fixed set (verdicts, outcomes, services,
//! route families) or, for GraphQL operation names that clients choose, a bounded set
//! ([`operation_label`]), so no client can grow the series without bound.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets in seconds: 1 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        // Another recorder installed first (a test harness) keeps counting; ours then
        // renders only what it saw.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        handle
    })
}

/// Adds one to a gauge while it lives (an open connection, an open subscription).
pub struct Open(&'static str);

impl Open {
    /// Counts one more in the gauge `name` until dropped.
    pub fn new(name: &'static str) -> Open {
        metrics::gauge!(name).increment(1.0);
        Open(name)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// The most distinct GraphQL operation names given their own label.
const MAX_OPERATION_NAMES: usize = 200;
static OPERATION_NAMES: LazyLock<Mutex<HashSet<String>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// The label for a client-chosen operation name: the name itself while it is a plain
/// identifier among the first [`MAX_OPERATION_NAMES`] seen, `anonymous` without one, else
/// `other`.
pub fn operation_label(name: Option<&str>) -> String {
    let Some(name) = name else {
        return "anonymous".into();
    };
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain {
        return "other".into();
    }
    let Ok(mut seen) = OPERATION_NAMES.lock() else {
        return "other".into();
    };
    if seen.contains(name) || seen.len() < MAX_OPERATION_NAMES {
        seen.insert(name.to_owned());
        name.to_owned()
    } else {
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded_and_plain() {
        assert_eq!(operation_label(None), "anonymous");
        assert_eq!(operation_label(Some("Me")), "Me");
        assert_eq!(operation_label(Some("a b")), "other");
        assert_eq!(operation_label(Some(&"x".repeat(65))), "other");
        for i in 0..(MAX_OPERATION_NAMES + 10) {
            operation_label(Some(&format!("Op{i}")));
        }
        assert_eq!(operation_label(Some("NeverSeenBefore")), "other");
        assert_eq!(
            operation_label(Some("Me")),
            "Me",
            "a known name keeps its label"
        );
    }
}
