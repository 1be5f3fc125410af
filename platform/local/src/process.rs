//! Records of the processes the platform starts (`pid start-time` files), so teardown can
//! signal exactly those processes even after the daemon died, and never a process that merely
//! reuses a recorded pid (after a reboot, say).

use std::path::Path;

/// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process has exited and only waits to be reaped (state `Z` in `/proc/PID/stat`).
pub(crate) fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rfind(')').map(|end| stat[end + 1..].trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// Writes a record of `pid` to `path`.
pub(crate) fn record(path: &Path, pid: u32) -> std::io::Result<()> {
    let start = start_time(pid).unwrap_or(0);
    std::fs::write(path, format!("{pid} {start}\n"))
}

/// The pid in a record, if that very process is still running.
pub(crate) fn running(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    let pid: u32 = fields.next()?.parse().ok()?;
    let start: u64 = fields.next()?.parse().ok()?;
    (pid > 1 && start_time(pid) == Some(start) && !is_zombie(pid as i32)).then_some(pid as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_match_only_the_same_process() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("me");
        record(&path, std::process::id()).expect("record");
        assert_eq!(running(&path), Some(std::process::id() as i32));
        std::fs::write(&path, format!("{} 1\n", std::process::id())).expect("write");
        assert_eq!(running(&path), None, "a different start time is a different process");
        std::fs::write(&path, "junk").expect("write");
        assert_eq!(running(&path), None);
    }
}
