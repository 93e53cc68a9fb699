//! CPU time and RSS of a server and all its descendants (nginx workers), read from /proc.

use std::fs;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// user + system CPU seconds.
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// The kernel's clock-tick unit of /proc/PID/stat; 100 on every Linux architecture we run on.
const USER_HZ: f64 = 100.0;

/// (ppid, utime+stime ticks) from the text of /proc/PID/stat.
fn parse_stat(stat: &str) -> Option<(u32, f64)> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `root` and every live process descending from it.
pub fn tree(root: u32) -> Vec<u32> {
    let mut parent = vec![];
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, _)) = fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            {
                parent.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Sum over the process tree of `root`; None when `root` is gone.
pub fn sample(root: u32) -> Option<ProcSample> {
    let mut s = ProcSample::default();
    let mut found = false;
    for pid in tree(root) {
        let Some((_, ticks)) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            continue;
        };
        found |= pid == root;
        s.cpu_seconds += ticks / USER_HZ;
        s.rss_bytes += fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|t| rss_kib(&t))
            .unwrap_or(0)
            * 1024;
    }
    found.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_odd_name() {
        let line =
            "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some((4241, 325.0)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  1234 kB\n"), Some(1234));
    }

    #[test]
    fn own_process_is_measured() {
        let me = std::process::id();
        let s = sample(me).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(tree(me).contains(&me));
    }
}
