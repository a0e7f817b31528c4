//! Where the CPU goes during a phase, on Linux: the CPU time of this process, of the service
//! under test (by pid) and of the PostgreSQL backends serving the benchmark's database, read
//! from /proc before and after. On a machine with few cores the rate is bounded by the CPU
//! that one operation costs over all processes, so this tells which one to make cheaper.
use std::collections::BTreeMap;

use serde::Serialize;

/// Linux reports process times in clock ticks of 1/100 s (USER_HZ) on every architecture
/// Rust targets.
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time (user + system) of a process and all its threads, in ticks.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields after it are space-separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after "pid (comm) ".
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Busy and total ticks of the whole machine (all cores), from /proc/stat.
fn machine() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = cpu.iter().take(8).sum();
    // idle and iowait
    let idle = cpu.get(3)? + cpu.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// A snapshot of the processes a phase is measured over.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    own: Option<u64>,
    service: Option<u64>,
    backends: BTreeMap<u32, u64>,
    machine: Option<(u64, u64)>,
}

/// What the processes used between two snapshots, per successful operation.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// This load generator.
    pub loadgen_us_per_op: f64,
    /// The service under test, when its pid was given.
    pub service_us_per_op: Option<f64>,
    /// The PostgreSQL backends connected to the database, when one was given.
    pub postgres_us_per_op: Option<f64>,
    /// Share of the machine's CPU in use meanwhile, by anything (0..1).
    pub machine_busy: Option<f64>,
}

impl Snapshot {
    /// Reads the CPU times now. `backends` are the pids of the PostgreSQL backends to count.
    pub fn take(service_pid: Option<u32>, backends: &[u32]) -> Self {
        Self {
            own: ticks(std::process::id()),
            service: service_pid.and_then(ticks),
            backends: backends
                .iter()
                .filter_map(|p| Some((*p, ticks(*p)?)))
                .collect(),
            machine: machine(),
        }
    }

    /// The usage from `self` to `later`, spread over `ops` operations.
    pub fn usage(&self, later: &Snapshot, ops: u64) -> Usage {
        let per_op = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e6 / ops.max(1) as f64;
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        // A backend that connected meanwhile counts from zero.
        let backends: u64 = later
            .backends
            .iter()
            .map(|(pid, t)| t.saturating_sub(self.backends.get(pid).copied().unwrap_or(0)))
            .sum();
        Usage {
            loadgen_us_per_op: delta(self.own, later.own).map(per_op).unwrap_or(0.0),
            service_us_per_op: delta(self.service, later.service).map(per_op),
            postgres_us_per_op: (!later.backends.is_empty()).then(|| per_op(backends)),
            machine_busy: match (self.machine, later.machine) {
                (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                    Some((b1 - b0) as f64 / (t1 - t0) as f64)
                }
                _ => None,
            },
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  CPU per operation: loadgen {:.0} µs",
            self.loadgen_us_per_op
        )?;
        if let Some(s) = self.service_us_per_op {
            write!(f, ", service {s:.0} µs")?;
        }
        if let Some(p) = self.postgres_us_per_op {
            write!(f, ", PostgreSQL backends {p:.0} µs")?;
        }
        if let Some(m) = self.machine_busy {
            write!(f, "; machine {:.0}% busy", m * 100.0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn this_process_is_seen_using_the_cpu_it_burns() {
        let me = std::process::id();
        let before = Snapshot::take(Some(me), &[]);
        let start = ticks(me).expect("/proc/self/stat");
        // Spin until the kernel has charged 0.2 s of CPU to this process (however busy the
        // machine is), with a generous bound in case /proc stops advancing.
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        let mut x = 0u64;
        while ticks(me).unwrap_or(start) < start + 20 && std::time::Instant::now() < give_up {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let after = Snapshot::take(Some(me), &[]);
        let u = before.usage(&after, 2);
        // 0.2 s over 2 operations = at least 100,000 µs each.
        assert!(u.loadgen_us_per_op >= 100_000.0, "{u:?}");
        assert_eq!(u.service_us_per_op, Some(u.loadgen_us_per_op));
        assert_eq!(u.postgres_us_per_op, None);
        assert!(u.machine_busy.is_some_and(|b| b > 0.0 && b <= 1.0), "{u:?}");
    }
}
