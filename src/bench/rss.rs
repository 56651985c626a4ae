//! Resident memory of a process, from `/proc/<pid>/status` (Linux).

/// Resident set size now and at its peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rss {
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak resident set size), KiB.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` from a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<Rss> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Rss { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// The memory of process `pid`, if readable.
pub fn of_pid(pid: u32) -> Option<Rss> {
    parse_status(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The memory of this process, if readable.
pub fn of_self() -> Option<Rss> {
    parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
}
