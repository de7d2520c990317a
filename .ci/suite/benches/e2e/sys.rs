//! What the harness reads off the operating system: CPU time of process
//! groups and of waited children, resident memory, and the built examples.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

use crate::Error;

/// Clock ticks per second of `/proc/<pid>/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3 on).
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // The state is a letter; every later field is a number.
    Some(
        rest.split_whitespace()
            .skip(1)
            .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
            .collect(),
    )
}

/// User + system seconds of every process of group `group`, with the time
/// of the children they reaped: a difference of two readings is the CPU
/// the group spent between them, whichever processes came and went.
pub fn group_cpu(group: u32) -> f64 {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        // ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime: indexes 0..=13 after the state.
        if f.get(1).copied() == Some(u64::from(group)) && f.len() > 13 {
            ticks += f[10] + f[11] + f[12] + f[13];
        }
    }
    ticks as f64 / ticks_per_second()
}

/// User + system seconds of `pid` and of its children (alive, with what
/// they reaped, and those it reaped): a server that forks a process per
/// connection, such as PostgreSQL's postmaster, whatever its process group.
pub fn tree_cpu(pid: u32) -> f64 {
    let mut ticks = 0u64;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for entry in dir.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(f) = stat_fields(p) else { continue };
        if (p == pid || f.first().copied() == Some(u64::from(pid))) && f.len() > 13 {
            ticks += f[10] + f[11] + f[12] + f[13];
        }
    }
    ticks as f64 / ticks_per_second()
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// How a waited child ended and what it used.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub status: ExitStatus,
    /// User + system seconds.
    pub cpu: f64,
    /// Peak resident set, KiB, as the child's `VmHWM` said last (read
    /// while it ran: `wait4`'s `ru_maxrss` counts the parent's memory at
    /// the fork, which is this harness's, not the child's).
    pub max_rss_kib: u64,
}

/// Waits for `child` and reads its resource usage (`wait4`).
pub fn wait_usage(child: Child) -> Result<Usage, Error> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our unwaited child; both pointers are to live
        // locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4 of {pid}: {e}").into());
        }
    }
    // The child is reaped; `Child` never waits on drop.
    drop(child);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        status: ExitStatus::from_raw(status),
        cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
        max_rss_kib: 0,
    })
}

/// Runs `command` to its end; its wall time and usage. A failure is an
/// error carrying the tail of `log` (where its output went).
pub fn run_measured(command: Command, what: &str, log: &Path) -> Result<(f64, Usage), Error> {
    run_measured_from(command, std::process::Stdio::null(), what, log)
}

/// [`run_measured`] with `stdin` as the command's standard input.
pub fn run_measured_from(
    mut command: Command,
    stdin: std::process::Stdio,
    what: &str,
    log: &Path,
) -> Result<(f64, Usage), Error> {
    let out = std::fs::File::create(log)?;
    command.stdout(out.try_clone()?).stderr(out);
    let (wall, usage) = run(command, stdin, what)?;
    if !usage.status.success() {
        return Err(format!("{what} failed ({}): {}", usage.status, tail(log)).into());
    }
    Ok((wall, usage))
}

/// [`run_measured`] that takes a failed run as a result (a run cut on
/// purpose): its status is in the usage.
pub fn run_unchecked(mut command: Command, what: &str, log: &Path) -> Result<(f64, Usage), Error> {
    let out = std::fs::File::create(log)?;
    command.stdout(out.try_clone()?).stderr(out);
    run(command, std::process::Stdio::null(), what)
}

fn run(
    mut command: Command,
    stdin: std::process::Stdio,
    what: &str,
) -> Result<(f64, Usage), Error> {
    command.stdin(stdin);
    let start = std::time::Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting {what}: {e}"))?;
    // The peak memory, read while the child runs (its VmHWM only grows).
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).1);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let usage = wait_usage(child);
    let wall = start.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = watcher.join().map_err(|_| "the memory watcher panicked")?;
    let mut usage = usage?;
    usage.max_rss_kib = peak;
    Ok((wall, usage))
}

/// The last lines of a log file, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// The directory of the release examples: next to this benchmark's own
/// binary (`target/release/deps/e2e-*` → `target/release/examples`).
pub fn examples_dir() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot tell the target directory from the benchmark's path")?;
    Ok(release.join("examples"))
}

/// Builds every runtime's `pop3d` and `fetch` example (the tokio `pop3d`
/// with `--postgres`) and `deliver` in release mode.
pub fn build_examples() -> Result<(), Error> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("e2e: building the examples (release)");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "pop3-tokio",
            "-p",
            "pop3-async-std",
            "-p",
            "pop3-blocking",
            "--features",
            "pop3-blocking/cli,pop3-tokio/postgres",
            "--example",
            "pop3d",
            "--example",
            "fetch",
            "--example",
            "pop3d-smol",
            "--example",
            "fetch-smol",
            "--example",
            "pop3d-blocking",
            "--example",
            "fetch-blocking",
            "--example",
            "deliver",
        ])
        .status()?;
    if !status.success() {
        return Err("building the examples failed".into());
    }
    Ok(())
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Stops a process group we started, and reaps its leader.
pub fn kill_group(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling a process group is a plain syscall; the group is
    // the one this harness created for the child (`process_group(0)`).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Polls `f` until it is true or `limit` passed (for a process to start
/// listening; the harness is not a test, and a peer's readiness has no
/// event to wait on).
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
