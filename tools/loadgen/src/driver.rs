//! Drives a workload for a fixed time, closed-loop (N workers, each calling again as soon as
//! its call returns: the maximum throughput at that concurrency) or open-loop (calls start at
//! a fixed arrival rate whatever the latency, at most N at once).
//!
//! In open-loop mode latency is measured from the moment a call was due, not from when it
//! could start: when the system falls behind, the wait for a free slot counts, so a slow
//! server is not flattered by the generator slowing down with it (coordinated omission).
use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::{sync::Semaphore, time::Instant};

use crate::stats::Stats;

/// What one call reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The operation's name, e.g. `award`.
    pub op: &'static str,
    /// The error class when it failed (a gRPC code name, an SQLSTATE, ...).
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(op: &'static str) -> Self {
        Self { op, error: None }
    }

    pub fn failed(op: &'static str, error: impl Into<String>) -> Self {
        Self {
            op,
            error: Some(error.into()),
        }
    }
}

/// Something to call under load. `seq` numbers the calls of a run from 0, uniquely, so a
/// workload can derive idempotency keys and alternate operations from it.
pub trait Workload: Send + Sync + 'static {
    fn call(&self, seq: u64) -> impl Future<Output = Outcome> + Send;
}

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct Load {
    /// Workers (closed loop), or the most calls in flight at once (open loop).
    pub concurrency: usize,
    pub duration: Duration,
    /// Calls started per second (open loop); `None` = closed loop.
    pub rate: Option<f64>,
    /// Open loop: start each call on time to within the OS's sleep precision (tens of
    /// microseconds, from a pacing thread of its own) instead of Tokio's timer, which wakes
    /// up to a millisecond late, a lateness that would count as every call's latency. Off in
    /// tests on Tokio's virtual clock.
    pub precise: bool,
}

/// The load options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Closed loop: workers calling back to back. Open loop: most calls in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long each measured phase runs.
    #[arg(long, default_value_t = 20)]
    pub duration_secs: u64,
    /// Open loop: start this many calls per second whatever their latency (latency then
    /// counts from when a call was due). Unset = closed loop at maximum throughput.
    #[arg(long)]
    pub rate: Option<f64>,
    /// No progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

impl LoadArgs {
    pub fn load(&self) -> Load {
        Load {
            concurrency: self.concurrency.max(1),
            duration: Duration::from_secs(self.duration_secs.max(1)),
            rate: self.rate.filter(|r| *r > 0.0),
            precise: true,
        }
    }

    pub fn progress(&self) -> bool {
        !self.no_progress
    }
}

/// What a run measured.
pub struct Run {
    pub stats: Stats,
    /// From the first call to the last answer.
    pub elapsed: Duration,
    /// Open loop: calls that found every slot busy when due (their wait counts as latency).
    pub delayed: u64,
}

/// Shared between the workers and the progress display.
#[derive(Default)]
struct Counters {
    done: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn count(&self, failed: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs `workload` under `load`, showing a progress bar labelled `label` when `progress`
/// (and stderr is a terminal).
pub async fn run<W: Workload>(workload: Arc<W>, load: &Load, label: &str, progress: bool) -> Run {
    let counters = Arc::new(Counters::default());
    let bar = progress_bar(label, load.duration, progress);
    let ticker = {
        let (bar, counters) = (bar.clone(), counters.clone());
        let start = Instant::now();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                let done = counters.done.load(Ordering::Relaxed);
                let failed = counters.failed.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64().max(1e-3);
                bar.set_position(start.elapsed().as_millis() as u64);
                bar.set_message(format!(
                    "{done} calls, {:.0}/s, {failed} failed",
                    done as f64 / secs
                ));
            }
        })
    };
    let out = match load.rate {
        None => closed_loop(workload, load, counters).await,
        Some(rate) => open_loop(workload, load, rate, counters).await,
    };
    ticker.abort();
    bar.finish_and_clear();
    out
}

fn progress_bar(label: &str, duration: Duration, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {elapsed:>4} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

async fn closed_loop<W: Workload>(workload: Arc<W>, load: &Load, counters: Arc<Counters>) -> Run {
    let seq = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + load.duration;
    let workers: Vec<_> = (0..load.concurrency.max(1))
        .map(|_| {
            let (workload, seq, counters) = (workload.clone(), seq.clone(), counters.clone());
            tokio::spawn(async move {
                let mut stats = Stats::default();
                while Instant::now() < deadline {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    let out = workload.call(n).await;
                    counters.count(out.error.is_some());
                    stats.record(out.op, began.elapsed(), out.error);
                }
                stats
            })
        })
        .collect();
    let mut stats = Stats::default();
    for w in workers {
        // A worker only ends by returning its stats; a panic in a workload is a bug to show.
        stats.merge(&w.await.expect("load worker panicked"));
    }
    Run {
        stats,
        elapsed: start.elapsed(),
        delayed: 0,
    }
}

async fn open_loop<W: Workload>(
    workload: Arc<W>,
    load: &Load,
    rate: f64,
    counters: Arc<Counters>,
) -> Run {
    let slots = load.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(slots));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let start = Instant::now();
    let deadline = start + load.duration;
    let launch = {
        let stats = stats.clone();
        move |n: u64, due: Instant, permit: tokio::sync::OwnedSemaphorePermit| {
            let (workload, stats, counters) = (workload.clone(), stats.clone(), counters.clone());
            async move {
                let out = workload.call(n).await;
                counters.count(out.error.is_some());
                stats.lock().unwrap_or_else(|e| e.into_inner()).record(
                    out.op,
                    due.elapsed(),
                    out.error,
                );
                drop(permit);
            }
        }
    };
    let schedule = move |n: u64| {
        let due = start + interval.mul_f64(n as f64);
        (due < deadline).then_some(due)
    };
    let delayed = if load.precise {
        let (permits, handle) = (permits.clone(), tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || {
            let mut delayed = 0;
            let mut n = 0;
            while let Some(due) = schedule(n) {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let permit = permits.clone().try_acquire_owned().unwrap_or_else(|_| {
                    delayed += 1;
                    handle
                        .block_on(permits.clone().acquire_owned())
                        .expect("the semaphore is never closed")
                });
                handle.spawn(launch(n, due, permit));
                n += 1;
            }
            delayed
        })
        .await
        .expect("the pacing thread panicked")
    } else {
        let mut delayed = 0;
        let mut n = 0;
        while let Some(due) = schedule(n) {
            tokio::time::sleep_until(due).await;
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    delayed += 1;
                    permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed")
                }
            };
            tokio::spawn(launch(n, due, permit));
            n += 1;
        }
        delayed
    };
    // Every slot free again = every call answered.
    let _all = permits
        .acquire_many(slots as u32)
        .await
        .expect("the semaphore is never closed");
    let elapsed = start.elapsed();
    let stats = std::mem::take(&mut *stats.lock().unwrap_or_else(|e| e.into_inner()));
    Run {
        stats,
        elapsed,
        delayed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Sleeps `latency` per call, fails every 10th, and remembers the sequence numbers.
    struct Sleeper {
        latency: Duration,
        seen: Mutex<Vec<u64>>,
    }

    impl Workload for Sleeper {
        async fn call(&self, seq: u64) -> Outcome {
            tokio::time::sleep(self.latency).await;
            self.seen.lock().unwrap().push(seq);
            if seq % 10 == 9 {
                Outcome::failed("op", "BOOM")
            } else {
                Outcome::ok("op")
            }
        }
    }

    fn sleeper(ms: u64) -> Arc<Sleeper> {
        Arc::new(Sleeper {
            latency: Duration::from_millis(ms),
            seen: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_keeps_every_worker_busy_until_the_deadline() {
        let w = sleeper(10);
        let load = Load {
            concurrency: 4,
            duration: Duration::from_secs(1),
            rate: None,
            precise: false,
        };
        let run = run(w.clone(), &load, "t", false).await;
        // 4 workers × 100 calls of 10 ms in 1 s (the clock is virtual, so exactly).
        let seen = w.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 400);
        assert_eq!(
            seen.iter().collect::<HashSet<_>>().len(),
            400,
            "unique seqs"
        );
        let op = &run.stats.ops["op"];
        assert_eq!((op.ok, op.failed()), (360, 40));
        assert_eq!(op.latency.value_at_quantile(0.5) / 1000, 10);
        assert_eq!(run.elapsed, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_starts_calls_at_the_rate_whatever_their_latency() {
        let w = sleeper(50);
        let load = Load {
            concurrency: 100,
            duration: Duration::from_secs(2),
            rate: Some(200.0),
            precise: false,
        };
        let run = run(w.clone(), &load, "t", false).await;
        // 200/s for 2 s, 10 in flight at a time: slots never run out.
        assert_eq!(w.seen.lock().unwrap().len(), 400);
        assert_eq!(run.delayed, 0);
        assert_eq!(run.stats.ops["op"].latency.max() / 1000, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_counts_the_wait_for_a_slot_as_latency() {
        let w = sleeper(100);
        let load = Load {
            concurrency: 1,
            duration: Duration::from_secs(1),
            rate: Some(20.0),
            precise: false,
        };
        let run = run(w.clone(), &load, "t", false).await;
        // 20 calls due over 1 s, one at a time of 100 ms each: the last is due at 950 ms
        // and answered at 2 s, so it waited about a second.
        assert_eq!(w.seen.lock().unwrap().len(), 20);
        assert_eq!(run.delayed, 19);
        assert!(run.stats.ops["op"].latency.max() >= 1_000_000);
        assert_eq!(run.elapsed, Duration::from_secs(2));
    }
}
