//! Memory and CPU of a process from /proc: VmHWM and VmRSS (`status`), utime + stime (`stat`).

use serde::Serialize;

/// One reading of a process's resource use.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProcUsage {
    /// Peak resident set (VmHWM), MiB.
    pub hwm_mib: f64,
    /// Resident set now (VmRSS), MiB.
    pub rss_mib: f64,
    /// CPU time used so far (user + system), seconds.
    pub cpu_secs: f64,
}

/// Reads `pid`'s usage; `None` when the process is gone.
pub fn read(pid: u32) -> Option<ProcUsage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let kib = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some(ProcUsage { hwm_mib: kib("VmHWM:")? / 1024.0, rss_mib: kib("VmRSS:")? / 1024.0, cpu_secs: cpu_secs(&stat)? })
}

/// utime + stime of a /proc/<pid>/stat line, in seconds (the command may contain spaces and
/// parentheses: fields are counted after the last `)`).
pub fn cpu_secs(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3 of the line, utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks.max(1.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = super::read(std::process::id()).expect("own /proc");
        assert!(me.rss_mib > 0.0 && me.hwm_mib >= me.rss_mib && me.cpu_secs >= 0.0);
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 300 200 0 0";
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(super::cpu_secs(line), Some(500.0 / ticks));
    }
}
