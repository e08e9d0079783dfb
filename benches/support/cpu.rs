//! A process's CPU time, from `/proc`: what the load benchmarks print beside their figures.

/// CPU time (user and system, in ms) used so far by process `pid` (`"self"` for this one),
/// all its threads together.
pub fn process_cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    // utime and stime are the line's fields 14 and 15: the 12th and 13th after the command's
    // closing parenthesis (the command may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .expect("utime and stime")
    };
    // In ticks of USER_HZ, 100 a second on Linux.
    (ticks(11) + ticks(12)) * 10.0
}
