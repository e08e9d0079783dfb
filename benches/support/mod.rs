//! What the load benchmarks share: a throw-away database, a bounded load loop, latency
//! reports, and pgbench runs of a baseline script on the same database.

use std::time::{Duration, Instant};

mod cpu;
mod db;
pub use cpu::process_cpu_ms;
pub use db::BenchDb;

use futures_util::StreamExt;

pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub struct Phase {
    pub done: usize,
    pub failed: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op` over `items`, `concurrency` at a time, until they are done or `cap` has passed.
pub async fn run_phase<T, F, Fut>(items: &[T], concurrency: usize, cap: Duration, op: F) -> Phase
where
    T: Clone,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    let started = Instant::now();
    let deadline = started + cap;
    let results: Vec<Option<Duration>> = futures_util::stream::iter(items.iter().cloned())
        .take_while(|_| futures_util::future::ready(Instant::now() < deadline))
        .map(|item| {
            let fut = op(item);
            async move {
                let t = Instant::now();
                fut.await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().flatten().copied().collect();
    latencies.sort();
    Phase {
        done: latencies.len(),
        failed: results.len() - latencies.len(),
        elapsed,
        latencies,
    }
}

pub fn report(name: &str, p: &Phase) {
    let pct = |q: f64| {
        p.latencies
            .get(((p.latencies.len() as f64 - 1.0) * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{name:<40} {:>6} ok {:>3} failed in {:>6.2} s = {:>7.0}/s   p50 {:>6.1} ms  p95 {:>6.1} ms  p99 {:>6.1} ms",
        p.done,
        p.failed,
        p.elapsed.as_secs_f64(),
        p.rate(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
    );
}

/// Runs `script` with pgbench (`-M prepared`, `clients` clients on 2 threads, `seconds`
/// long) against `url`; the transactions per second it reports.
pub fn pgbench(url: &str, script: &str, clients: usize, seconds: usize) -> f64 {
    let path = std::env::temp_dir().join(format!(
        "topup-bench-{}-{}.sql",
        std::process::id(),
        script.len()
    ));
    std::fs::write(&path, script).expect("write the pgbench script");
    let output = std::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-j", "2"])
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&path)
        .arg(url)
        .output()
        .expect("run pgbench (the postgresql-contrib / postgresql-client package)");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("tps = ")
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .expect("pgbench printed its tps")
}

/// The machine's load average over the last minute (what the figures were measured under).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// CPU time used so far, in ms: by this process (the server and the load generator), and
/// by the whole machine (user, nice, system, irq and softirq of every core).
fn cpu_ms() -> (f64, f64) {
    let own = process_cpu_ms("self");
    let machine = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let cpu: Vec<f64> = stat
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq: all but idle and iowait.
            Some((cpu.first()? + cpu.get(1)? + cpu.get(2)? + cpu.get(5)? + cpu.get(6)?) * 10.0)
        })
        .unwrap_or(0.0);
    (own, machine)
}

/// Runs `phase` and prints where the machine's CPU went meanwhile: this process (the
/// server and the load generator) and the rest (PostgreSQL, on a machine running nothing
/// else). With `--features profile` and `BENCH_PROFILE` set, it also samples this process
/// and prints where its time went.
pub async fn profiled<T>(what: &str, phase: impl std::future::Future<Output = T>) -> T {
    #[cfg(feature = "profile")]
    let sampler = std::env::var_os("BENCH_PROFILE")
        .map(|_| topup::profile::Sampler::start().expect("the profiler"));
    let (own, machine) = cpu_ms();
    let out = phase.await;
    let (own_after, machine_after) = cpu_ms();
    println!(
        "  CPU during {what}: this process {:.0} ms, the rest of the machine {:.0} ms",
        own_after - own,
        (machine_after - machine) - (own_after - own)
    );
    #[cfg(feature = "profile")]
    if let Some(sampler) = sampler {
        println!(
            "profile of {what}:\n{}",
            sampler.report(30).expect("the profile")
        );
    }
    out
}
