//! What a run measured: per operation, the successes, the failures by error class, and a
//! latency histogram of the successful calls (microseconds, 3 significant digits).
use std::{collections::BTreeMap, time::Duration};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency a histogram tracks exactly; longer calls are clamped to it.
const MAX_LATENCY_US: u64 = 120_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static histogram bounds are valid")
}

/// One operation's results.
#[derive(Clone)]
pub struct OpStats {
    pub ok: u64,
    /// Failures by error class (a gRPC code, an SQLSTATE, "transport", ...).
    pub errors: BTreeMap<String, u64>,
    /// Latency of successful calls, µs.
    pub latency: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            ok: 0,
            errors: BTreeMap::new(),
            latency: histogram(),
        }
    }
}

impl OpStats {
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: &OpStats) {
        self.ok += other.ok;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds merge");
    }
}

/// Results of a run (or of one worker, merged afterwards), keyed by operation name.
#[derive(Clone, Default)]
pub struct Stats {
    pub ops: BTreeMap<&'static str, OpStats>,
}

impl Stats {
    /// Records one call: a success with its latency, or a failure of `error` class.
    pub fn record(&mut self, op: &'static str, latency: Duration, error: Option<String>) {
        let s = self.ops.entry(op).or_default();
        match error {
            None => {
                s.ok += 1;
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                s.latency.saturating_record(us.clamp(1, MAX_LATENCY_US));
            }
            Some(e) => *s.errors.entry(e).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: &Stats) {
        for (op, s) in &other.ops {
            self.ops.entry(op).or_default().merge(s);
        }
    }

    /// All operations together.
    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for s in self.ops.values() {
            t.merge(s);
        }
        t
    }

    /// Rates and percentiles over a measured window of `elapsed`.
    pub fn summary(&self, name: &str, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let line = |op: &str, s: &OpStats| Line {
            op: op.to_owned(),
            ok: s.ok,
            failed: s.failed(),
            errors: s.errors.clone(),
            per_sec: s.ok as f64 / secs,
            p50_ms: quantile_ms(&s.latency, 0.50),
            p90_ms: quantile_ms(&s.latency, 0.90),
            p99_ms: quantile_ms(&s.latency, 0.99),
            p999_ms: quantile_ms(&s.latency, 0.999),
            max_ms: if s.latency.is_empty() {
                0.0
            } else {
                s.latency.max() as f64 / 1000.0
            },
        };
        Summary {
            name: name.to_owned(),
            elapsed_secs: secs,
            ops: self.ops.iter().map(|(op, s)| line(op, s)).collect(),
            total: line("total", &self.total()),
        }
    }
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// One row of a summary.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub op: String,
    pub ok: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// A phase's results, ready to print or to write as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    pub elapsed_secs: f64,
    pub ops: Vec<Line>,
    pub total: Line,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} ({:.1} s)", self.name, self.elapsed_secs)?;
        writeln!(
            f,
            "  {:<10} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "op", "ok", "failed", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        )?;
        for l in self.ops.iter().chain(std::iter::once(&self.total)) {
            writeln!(
                f,
                "  {:<10} {:>9} {:>7} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
                l.op, l.ok, l.failed, l.per_sec, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            )?;
        }
        for l in &self.ops {
            for (class, n) in &l.errors {
                writeln!(f, "  {} failed {n} times: {class}", l.op)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_workers_add_up_and_percentiles_come_from_successes_only() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for ms in 1..=100 {
            a.record("award", Duration::from_millis(ms), None);
        }
        b.record("award", Duration::from_secs(30), Some("UNAVAILABLE".into()));
        b.record("spend", Duration::from_millis(7), None);
        a.merge(&b);
        let s = a.summary("grpc", Duration::from_secs(10));
        let award = &s.ops[0];
        assert_eq!(
            (award.op.as_str(), award.ok, award.failed),
            ("award", 100, 1)
        );
        assert_eq!(award.errors["UNAVAILABLE"], 1);
        assert!((award.per_sec - 10.0).abs() < 1e-9);
        assert!((award.p50_ms - 50.0).abs() < 0.1, "{}", award.p50_ms);
        assert!((award.p99_ms - 99.0).abs() < 0.1, "{}", award.p99_ms);
        assert!((award.max_ms - 100.0).abs() < 0.1, "{}", award.max_ms);
        assert_eq!((s.total.ok, s.total.failed), (101, 1));
        assert!((s.total.per_sec - 10.1).abs() < 1e-9);
    }

    #[test]
    fn an_operation_that_only_failed_reports_zero_latency() {
        let mut a = Stats::default();
        a.record("spend", Duration::from_millis(3), Some("INTERNAL".into()));
        let s = a.summary("x", Duration::from_secs(1));
        assert_eq!(
            (s.ops[0].ok, s.ops[0].p99_ms, s.ops[0].max_ms),
            (0, 0.0, 0.0)
        );
        assert!(s.to_string().contains("spend failed 1 times: INTERNAL"));
    }
}
