//! CPU time and RSS of a server and all its descendants (nginx workers), and the CPU time of
//! each of their threads (which shard did the work), read from /proc.

use std::fs;

use serde::Serialize;

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

/// (name, utime+stime ticks) from the text of /proc/PID/task/TID/stat.
fn parse_thread_stat(stat: &str) -> Option<(String, f64)> {
    // the name is everything between the first '(' and the last ')', spaces and parens included
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
    let (_, ticks) = parse_stat(stat)?;
    Some((name.to_string(), ticks))
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

/// One thread's CPU ticks so far.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadTicks {
    pub pid: u32,
    pub tid: u32,
    /// The kernel's comm (at most 15 bytes): "shard-0", "control", "nginx"...
    pub name: String,
    pub ticks: f64,
}

/// Every thread of every process in the tree of `root`; empty when `root` is gone.
pub fn threads(root: u32) -> Vec<ThreadTicks> {
    let mut out = vec![];
    for pid in tree(root) {
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            // a thread may end between the listing and the read: skip it
            if let Some((name, ticks)) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
                .ok()
                .and_then(|s| parse_thread_stat(&s))
            {
                out.push(ThreadTicks {
                    pid,
                    tid,
                    name,
                    ticks,
                });
            }
        }
    }
    out
}

/// A thread's share of one core over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadDelta {
    pub name: String,
    pub pid: u32,
    pub tid: u32,
    pub cpu_pct: f64,
}

/// The threads of one process that share a name, summed: glommio's blocking-pool thread
/// inherits its executor's name ("shard-0"), and its work is that shard's work.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadCpu {
    pub name: String,
    pub pid: u32,
    /// How many threads the figure sums.
    pub threads: usize,
    pub cpu_pct: f64,
}

/// CPU % of each thread alive at the window's end, busiest first. A thread born inside the
/// window counts from zero; one that ended inside it is missing here (its time still counts in
/// the process figure of [`sample`]).
pub fn thread_cpu(
    before: &[ThreadTicks],
    after: &[ThreadTicks],
    window_s: f64,
) -> Vec<ThreadDelta> {
    if window_s <= 0.0 {
        return vec![];
    }
    let mut out: Vec<ThreadDelta> = after
        .iter()
        .map(|a| {
            let b = before
                .iter()
                .find(|b| b.pid == a.pid && b.tid == a.tid)
                .map_or(0.0, |b| b.ticks);
            ThreadDelta {
                name: a.name.clone(),
                pid: a.pid,
                tid: a.tid,
                // a reused tid could read lower than its predecessor: never below zero
                cpu_pct: 100.0 * ((a.ticks - b).max(0.0) / USER_HZ) / window_s,
            }
        })
        .collect();
    out.sort_by(|x, y| y.cpu_pct.total_cmp(&x.cpu_pct).then(x.tid.cmp(&y.tid)));
    out
}

/// Per (process, name) sums of `threads`, busiest first.
pub fn by_name(threads: &[ThreadDelta]) -> Vec<ThreadCpu> {
    let mut out: Vec<ThreadCpu> = vec![];
    for t in threads {
        match out.iter_mut().find(|g| g.pid == t.pid && g.name == t.name) {
            Some(g) => {
                g.threads += 1;
                g.cpu_pct += t.cpu_pct;
            }
            None => out.push(ThreadCpu {
                name: t.name.clone(),
                pid: t.pid,
                threads: 1,
                cpu_pct: t.cpu_pct,
            }),
        }
    }
    out.sort_by(|x, y| y.cpu_pct.total_cmp(&x.cpu_pct).then(x.pid.cmp(&y.pid)));
    out
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
    fn thread_stat_names() {
        let line = "77 (shard-1) R 70 70 1 0 -1 0 0 0 0 0 480 20 0 0 20 0 1 0";
        assert_eq!(parse_thread_stat(line), Some(("shard-1".into(), 500.0)));
        let odd = "78 (a) b (c)) S 70 70 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0";
        assert_eq!(parse_thread_stat(odd), Some(("a) b (c)".into(), 3.0)));
        assert_eq!(parse_thread_stat("78 (x"), None);
        assert_eq!(parse_thread_stat("78 (x) S 1 2"), None);
    }

    fn t(tid: u32, name: &str, ticks: f64) -> ThreadTicks {
        ThreadTicks {
            pid: 70,
            tid,
            name: name.into(),
            ticks,
        }
    }

    #[test]
    fn thread_deltas() {
        let before = [
            t(70, "livego", 5.0),
            t(71, "shard-0", 100.0),
            t(72, "shard-1", 90.0),
        ];
        // 72 ended, 73 was born in the window, 71 used 2 s of a 4 s window
        let after = [
            t(70, "livego", 5.0),
            t(71, "shard-0", 300.0),
            t(73, "shard-1", 40.0),
        ];
        let d = thread_cpu(&before, &after, 4.0);
        let got: Vec<(&str, u32, f64)> = d
            .iter()
            .map(|c| (c.name.as_str(), c.tid, c.cpu_pct))
            .collect();
        assert_eq!(
            got,
            [
                ("shard-0", 71, 50.0),
                ("shard-1", 73, 10.0),
                ("livego", 70, 0.0)
            ]
        );
        // a tid reused with fewer ticks than before reads as zero, not negative
        assert_eq!(
            thread_cpu(&[t(9, "x", 50.0)], &[t(9, "y", 3.0)], 1.0)[0].cpu_pct,
            0.0
        );
        assert!(thread_cpu(&before, &after, 0.0).is_empty());
    }

    #[test]
    fn same_named_threads_of_a_process_sum() {
        let d = |name: &str, pid: u32, tid: u32, cpu_pct: f64| ThreadDelta {
            name: name.into(),
            pid,
            tid,
            cpu_pct,
        };
        let g = by_name(&[
            d("shard-0", 10, 11, 6.0),
            d("shard-0", 10, 12, 0.5),
            d("shard-1", 10, 13, 7.0),
            // nginx master and worker: one name, two processes
            d("nginx", 20, 20, 0.0),
            d("nginx", 21, 21, 30.0),
        ]);
        let got: Vec<(&str, u32, usize, f64)> = g
            .iter()
            .map(|c| (c.name.as_str(), c.pid, c.threads, c.cpu_pct))
            .collect();
        assert_eq!(
            got,
            [
                ("nginx", 21, 1, 30.0),
                ("shard-1", 10, 1, 7.0),
                ("shard-0", 10, 2, 6.5),
                ("nginx", 20, 1, 0.0)
            ]
        );
    }

    /// CPU time the calling thread has used.
    fn own_thread_cpu() -> std::time::Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec for the call to fill
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    #[test]
    fn busy_thread_of_own_process_shows_up() {
        use std::sync::mpsc;
        let me = std::process::id();
        let (busy_done, wait_busy) = mpsc::channel::<u32>();
        let (sampled, wait_sampled) = mpsc::channel::<()>();
        let (go, wait_go) = mpsc::channel::<()>();
        let h = std::thread::Builder::new()
            .name("lt-busy".into())
            .spawn(move || {
                let tid = unsafe { libc::gettid() } as u32;
                wait_go.recv().unwrap();
                // spin until this thread has had 100 ms of CPU (not wall time: the machine
                // may be shared), bounded in wall time so a starved run cannot hang
                let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let mut x = 0u64;
                while own_thread_cpu() < std::time::Duration::from_millis(100)
                    && std::time::Instant::now() < end
                {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
                busy_done.send(tid).unwrap();
                // stay alive until the second sample has read this thread
                wait_sampled.recv().unwrap();
            })
            .unwrap();
        let before = threads(me);
        let t0 = std::time::Instant::now();
        go.send(()).unwrap();
        let tid = wait_busy.recv().unwrap();
        let after = threads(me);
        let window = t0.elapsed().as_secs_f64();
        sampled.send(()).unwrap();
        h.join().unwrap();
        let cpu = thread_cpu(&before, &after, window);
        let busy = cpu
            .iter()
            .find(|c| c.tid == tid)
            .expect("busy thread listed");
        assert_eq!(busy.name, "lt-busy");
        assert_eq!(busy.pid, me);
        assert!(busy.cpu_pct > 0.0, "{cpu:?}");
    }

    #[test]
    fn own_process_is_measured() {
        let me = std::process::id();
        let s = sample(me).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(tree(me).contains(&me));
    }
}
