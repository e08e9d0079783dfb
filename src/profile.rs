//! In-process CPU sampling for the benchmarks (cargo feature `profile`, the pprof crate:
//! `perf` gets no samples on the machines this runs on). A [`Sampler`] samples every thread
//! of the process about a thousand times a second until its report is taken; the report
//! says where the time went as text: the share of each thread kind, the functions the
//! samples were in (self), and the functions on the stack (inclusive), each in per cent of
//! all samples.
//!
//! The benchmarks that run the server in their own process (`notify_load`, `reads`) sample
//! their measured phase directly; `fanout` runs the server binary, which (built with the
//! feature and `TOPUP_PROFILE_DIR` set) starts sampling on `SIGUSR1` and writes its report
//! into that folder on `SIGUSR2`.

use std::collections::HashMap;

/// A running profile of this process.
pub struct Sampler {
    guard: pprof::ProfilerGuard<'static>,
}

impl Sampler {
    /// Starts sampling (about 1,000 samples a second per busy thread).
    pub fn start() -> Result<Sampler, String> {
        pprof::ProfilerGuardBuilder::default()
            .frequency(997)
            // Samples in libc stay (allocation, copies and system calls are part of the
            // cost); only the vDSO, which the unwinder cannot walk out of, is left out.
            .blocklist(&["vdso"])
            .build()
            .map(|guard| Sampler { guard })
            .map_err(|e| format!("the profiler did not start: {e}"))
    }

    /// Where the time went since the start: the `top` heaviest functions, self and
    /// inclusive.
    pub fn report(&self, top: usize) -> Result<String, String> {
        let report = self
            .guard
            .report()
            .build()
            .map_err(|e| format!("the profile could not be read: {e}"))?;
        let mut total = 0i64;
        let mut threads: HashMap<String, i64> = HashMap::new();
        let mut self_time: HashMap<String, i64> = HashMap::new();
        let mut crate_self: HashMap<String, i64> = HashMap::new();
        let mut inclusive: HashMap<String, i64> = HashMap::new();
        for (frames, count) in &report.data {
            let count = i64::try_from(*count).unwrap_or(0);
            total += count;
            let thread = frames
                .thread_name
                .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
                .to_owned();
            *threads.entry(thread).or_default() += count;
            // Leaf first; within a frame, the innermost inlined function first.
            let names: Vec<String> = frames
                .frames
                .iter()
                .flat_map(|frame| frame.iter().map(|symbol| tidy(&symbol.name())))
                .collect();
            let leaf = names.first().cloned().unwrap_or_else(|| "?".into());
            *crate_self.entry(crate_of(&leaf)).or_default() += count;
            *self_time.entry(leaf).or_default() += count;
            let mut seen: Vec<&String> = Vec::new();
            for name in &names {
                if !seen.contains(&name) {
                    seen.push(name);
                    *inclusive.entry(name.clone()).or_default() += count;
                }
            }
        }
        let mut out = format!("{total} samples ({:.1} s of CPU)\n", total as f64 / 997.0);
        let pct = |n: i64| 100.0 * n as f64 / total.max(1) as f64;
        for (title, table, rows) in [
            ("threads", &threads, top),
            ("self, by crate", &crate_self, top),
            ("self, by function", &self_time, top),
            ("inclusive (on the stack)", &inclusive, top * 2),
        ] {
            out.push_str(&format!("-- {title}\n"));
            let mut sorted: Vec<(&String, &i64)> = table.iter().collect();
            sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (name, n) in sorted.into_iter().take(rows) {
                out.push_str(&format!("{:6.2}%  {name}\n", pct(*n)));
            }
        }
        Ok(out)
    }
}

/// A symbol's name without its hash, cut to a readable length.
fn tidy(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    };
    name.chars().take(160).collect()
}

/// The crate a function belongs to, roughly: the first path segment of its name (of the
/// type, for a `<T as Trait>::f`).
fn crate_of(name: &str) -> String {
    let name = name.trim_start_matches(['<', '&', '*', ' ']);
    let name = name.strip_prefix("mut ").unwrap_or(name);
    name.split([':', ' ', '<', '>', '('])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("?")
        .to_owned()
}
