//! Running untrusted, model-written Python (MBPP) and classifying the result.
//!
//! `code + setup + tests → sandboxed python3 → verdict → ExecResult`.
//!
//! Each run is its own `python3 -I -B` process in a fresh temporary work dir (removed
//! afterwards), with a wall-clock timeout and CPU, address-space, file-size and process-count
//! limits, and its stdout/stderr read with a byte cap. Isolation is layered, OS first; what a
//! machine allows is probed once per process and what was really in force comes back in
//! [`Isolation`]:
//!
//! - **Network**: an empty network namespace (only a loopback interface, down).
//! - **Filesystem**: a mount namespace where / is read-only and only the work dir is
//!   writable; without one, an unprivileged uid (world-writable dirs such as /tmp stay open).
//! - **Processes**: as root, a fresh uid no account uses (RLIMIT_NPROC does not bind root), so
//!   a fork bomb stops at `max_processes`; a pid namespace, so the whole tree dies with its
//!   first process; otherwise a process-group kill plus killing every process of the uid.
//! - **Defence in depth**: an audit hook in the harness refuses writes outside the work dir,
//!   sockets, starting programs, ctypes and gc introspection.
//!
//! The harness (`harness.py`) compiles the program, runs setup and program in a fresh
//! namespace, then each assert, and reports on a pipe only it is told about, with a random
//! token, so the program's prints cannot forge a pass; a program that exits before the
//! asserts finish has no verdict and is a runtime error. See `child.rs` for the process tree.

mod capture;
mod child;
mod sandbox;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use sandbox::{Launched, RunIds, Sandbox, Spec, Workspace};

const HARNESS: &str = include_str!("harness.py");

/// Resource limits for one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time before the whole process tree is killed.
    pub timeout: Duration,
    /// CPU seconds per process (RLIMIT_CPU): SIGXCPU at the limit, SIGKILL a second later.
    pub cpu_seconds: u64,
    /// Address space per process (RLIMIT_AS): allocations beyond it raise MemoryError.
    pub memory_bytes: u64,
    /// Largest file the program may write (RLIMIT_FSIZE).
    pub file_size_bytes: u64,
    /// Processes and threads of the sandbox uid (RLIMIT_NPROC); binds only when the
    /// program does not run as root (see [`Isolation::unprivileged`]).
    pub max_processes: u64,
    /// Bytes kept of stdout and of stderr each; the rest is read and dropped.
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(10), // MBPP reference solutions take milliseconds
            cpu_seconds: 10,
            memory_bytes: 1 << 30, // 1 GiB: room for the interpreter and real work
            file_size_bytes: 10 << 20, // 10 MiB
            max_processes: 32,     // enough for a small multiprocessing pool
            output_bytes: 64 << 10, // 64 KiB per stream: plenty to debug a failure
        }
    }
}

impl Limits {
    fn check(&self) -> Result<()> {
        let zero = [
            ("timeout", self.timeout.is_zero()),
            ("cpu_seconds", self.cpu_seconds == 0),
            ("memory_bytes", self.memory_bytes == 0),
            ("max_processes", self.max_processes == 0),
        ];
        match zero.iter().find(|(_, is_zero)| *is_zero) {
            Some((name, _)) => Err(Error::Config(format!(
                "code sandbox limit `{name}` is 0; give it a positive value"
            ))),
            None => Ok(()),
        }
    }
}

/// How a program did on its tests: the code-error classes of the MBPP report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Compiled, ran, and every assert held.
    Passed,
    /// Did not compile.
    SyntaxError,
    /// Raised (or was killed, or exited) before every assert had run.
    RuntimeError,
    /// An assert was false.
    FailedAssertion,
    /// Ran out of wall-clock or CPU time.
    Timeout,
}

impl Outcome {
    /// The serialised name, e.g. `failed_assertion`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::SyntaxError => "syntax_error",
            Outcome::RuntimeError => "runtime_error",
            Outcome::FailedAssertion => "failed_assertion",
            Outcome::Timeout => "timeout",
        }
    }
}

/// The isolation that was really in force for a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The program ran in an empty network namespace: no network at the OS level. When
    /// false, only the audit hook stood between it and the network.
    pub network: bool,
    /// What stopped writes outside the work dir: `read-only mount namespace`,
    /// `unprivileged uid` (world-writable dirs such as /tmp stay writable) or nothing at the
    /// OS level, each followed by ` + audit hook` when the hook was installed.
    pub filesystem: String,
    /// The program ran without root privileges (dropped from root to [`Isolation::uid`], or
    /// we were never root).
    pub unprivileged: bool,
    /// The program ran in its own pid namespace: its whole process tree died with it.
    pub pid_namespace: bool,
    /// The uid the program ran as. When dropped from root it is fresh for the run, so no
    /// process of it should survive the run.
    pub uid: u32,
}

/// The result of running one program on its tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecResult {
    /// The code-error class.
    pub outcome: Outcome,
    /// One line saying why: `NameError: name 'x' is not defined (in assert f(1) == 2)`,
    /// `assert f(1) == 2 failed`, `killed after 10.0 s (wall-clock limit)`,
    /// `MemoryError (memory limit 1 GiB)`, `killed by signal 11 (SIGSEGV)`, `3 of 3 tests
    /// passed`.
    pub detail: String,
    /// The program's stdout, at most `Limits::output_bytes` of it (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (with the traceback of a runtime error), capped the same way.
    pub stderr: String,
    /// stdout or stderr was cut at the cap.
    pub truncated: bool,
    /// Wall-clock time from spawn to exit (or to the kill).
    pub duration_ms: f64,
    /// What contained the program.
    pub isolation: Isolation,
}

impl ExecResult {
    /// Every test held.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// The python3 interpreter programs run under: `python3` on PATH resolved to the real
/// executable, or, when running as root and that one is out of an unprivileged uid's reach
/// (e.g. under /root/.pyenv), the system's `/usr/bin/python3`. Probes the sandbox on first
/// call (a few interpreter starts); errors when no Python 3.8+ can be found or started.
pub fn python() -> Result<PathBuf> {
    Ok(sandbox()?.python.clone())
}

/// Run `setup`, then `code`, then each assert statement of `tests`, in a fresh sandboxed
/// interpreter, and classify what happened.
///
/// `Err` only when the run could not be judged: no usable python3, a sandbox that would not
/// start, or `tests`/`setup` that do not compile (the dataset's fault, not the program's).
pub fn run_tests(code: &str, setup: &str, tests: &[String], limits: &Limits) -> Result<ExecResult> {
    run(code, setup, tests, limits, true)
}

fn sandbox() -> Result<&'static Sandbox> {
    sandbox::sandbox().map_err(Error::MissingInput)
}

/// `run_tests`, with the audit hook optional so the tests can check the OS layer alone.
fn run(
    code: &str,
    setup: &str,
    tests: &[String],
    limits: &Limits,
    audit: bool,
) -> Result<ExecResult> {
    limits.check()?;
    let sandbox = sandbox()?;
    let ids = sandbox.run_ids();
    let workspace = Workspace::new(ids).map_err(|source| Error::Write {
        path: std::env::temp_dir(),
        source,
    })?;
    let cannot_run = |e: std::io::Error| {
        Error::Config(format!(
            "cannot run {} in the code sandbox: {e}",
            sandbox.python.display()
        ))
    };
    let (verdict_r, verdict_w) = std::io::pipe().map_err(cannot_run)?;
    // 128 random bits: a program that cannot read the harness's memory cannot guess it.
    let token = format!("{:032x}", rand::random::<u128>());
    let job = serde_json::json!({
        "token": token,
        "verdict_fd": verdict_w.as_raw_fd(),
        "code": code,
        "setup": setup,
        "tests": tests,
        "audit": audit,
    })
    .to_string();
    let spec = Spec {
        args: ["-I", "-B", "-c", HARNESS].map(OsStr::new).to_vec(),
        stdin: format!("{}\n{job}", job.len()).into_bytes(),
        verdict: Some((verdict_r, verdict_w)),
        limits,
    };
    let work = workspace.path().to_path_buf();
    let launched = sandbox.launch(&work, ids, spec);
    if let Err(e) = workspace.remove() {
        tracing::warn!(dir = %work.display(), "cannot remove the sandbox work dir: {e}");
    }
    let launched = launched.map_err(cannot_run)?;
    let report = Report::parse(&launched.verdict.bytes, &token);
    let (outcome, detail) = classify(&launched, &report, tests, limits)?;
    Ok(ExecResult {
        outcome,
        detail,
        stdout: String::from_utf8_lossy(&launched.stdout.bytes).into_owned(),
        stderr: String::from_utf8_lossy(&launched.stderr.bytes).into_owned(),
        truncated: launched.stdout.truncated || launched.stderr.truncated,
        duration_ms: launched.duration.as_secs_f64() * 1000.0,
        isolation: isolation(sandbox, ids, audit),
    })
}

fn isolation(sandbox: &Sandbox, ids: RunIds, audit: bool) -> Isolation {
    let plan = sandbox.plan;
    let os = if plan.mount_ns {
        "read-only mount namespace"
    } else if ids.dropped {
        "unprivileged uid"
    } else {
        ""
    };
    let filesystem = match (os, audit) {
        ("", true) => "audit hook".to_string(),
        ("", false) => "none".to_string(),
        (os, true) => format!("{os} + audit hook"),
        (os, false) => os.to_string(),
    };
    Isolation {
        network: plan.net_ns,
        filesystem,
        unprivileged: ids.dropped || !sandbox.root,
        pid_namespace: plan.pid_ns,
        uid: ids.uid,
    }
}

/// The harness's outcome names and the exit status each must come with.
const HARNESS_OUTCOMES: [(&str, Option<Outcome>, i32); 5] = [
    ("passed", Some(Outcome::Passed), 0),
    ("syntax_error", Some(Outcome::SyntaxError), 10),
    ("runtime_error", Some(Outcome::RuntimeError), 11),
    ("failed_assertion", Some(Outcome::FailedAssertion), 12),
    ("invalid_test", None, 13),
];

/// How far the harness got, from the lines carrying our token.
#[derive(Debug, Default, PartialEq)]
struct Report {
    /// The first outcome line: (outcome name, detail).
    outcome: Option<(String, String)>,
    /// The last progress line: `setup`, `code`, or `test` with a 1-based index.
    progress: Option<(String, Option<usize>)>,
}

/// One line of the verdict stream.
#[derive(Debug, Deserialize)]
struct Line {
    token: String,
    outcome: Option<String>,
    detail: Option<String>,
    progress: Option<String>,
    index: Option<usize>,
}

impl Report {
    fn parse(bytes: &[u8], token: &str) -> Report {
        let mut report = Report::default();
        let lines = bytes.split(|&b| b == b'\n');
        for line in lines.filter_map(|l| serde_json::from_slice::<Line>(l).ok()) {
            if line.token != token {
                continue; // a forgery
            }
            if let Some(outcome) = line.outcome {
                report.outcome = Some((outcome, line.detail.unwrap_or_default()));
                break;
            }
            if let Some(progress) = line.progress {
                report.progress = Some((progress, line.index));
            }
        }
        report
    }
}

/// The outcome and one-line detail of a finished launch.
fn classify(
    run: &Launched,
    report: &Report,
    tests: &[String],
    limits: &Limits,
) -> Result<(Outcome, String)> {
    if run.timed_out {
        let secs = limits.timeout.as_secs_f64();
        return Ok((
            Outcome::Timeout,
            format!("killed after {secs:.1} s (wall-clock limit)"),
        ));
    }
    let Some((status, cpu_ms)) = run.status else {
        return Ok((
            Outcome::RuntimeError,
            "the sandbox lost the program's exit status".into(),
        ));
    };
    // SIGXCPU at the soft limit; SIGKILL at the hard one if the program ignored SIGXCPU.
    let cpu_out = cpu_ms >= limits.cpu_seconds.saturating_mul(1000);
    if status.signal() == Some(libc::SIGXCPU) || (status.signal() == Some(libc::SIGKILL) && cpu_out)
    {
        let detail = format!("CPU limit of {} s exceeded", limits.cpu_seconds);
        return Ok((Outcome::Timeout, detail));
    }
    if let Some((name, detail)) = &report.outcome {
        let known = HARNESS_OUTCOMES.iter().find(|(n, ..)| n == name);
        // A verdict counts only with the exit status the harness gives it.
        if let Some((_, outcome, _)) = known.filter(|(.., code)| status.code() == Some(*code)) {
            let Some(outcome) = outcome else {
                return Err(Error::Config(format!(
                    "{detail}; the task's tests and setup code must be Python statements \
                     (check the dataset row)"
                )));
            };
            return Ok((*outcome, annotate(detail, limits)));
        }
    }
    let detail = match (status.signal(), status.code()) {
        (Some(sig), _) => format!("killed by signal {sig} ({})", signal_name(sig)),
        (None, Some(code)) => {
            let when = match report.progress {
                Some((ref stage, Some(i))) if stage == "test" => {
                    match i.checked_sub(1).and_then(|i| tests.get(i)) {
                        Some(test) => format!("exited during {}", first_line(test)),
                        None => format!("exited during test {i}"),
                    }
                }
                _ => "exited before the tests ran".to_string(),
            };
            let mut detail = format!("{when} (exit status {code})");
            if let Some(last) = last_line(&run.stderr.bytes).filter(|_| code != 0) {
                detail.push_str(": ");
                detail.push_str(&last);
            }
            detail
        }
        (None, None) => format!("ended with {status}"),
    };
    Ok((Outcome::RuntimeError, detail))
}

/// Name the limit behind errors that come from one.
fn annotate(detail: &str, limits: &Limits) -> String {
    if let Some(rest) = detail.strip_prefix("MemoryError") {
        return format!(
            "MemoryError (memory limit {}){rest}",
            human_bytes(limits.memory_bytes)
        );
    }
    if detail.contains("[Errno 27]") {
        return format!(
            "{detail} (file size limit {})",
            human_bytes(limits.file_size_bytes)
        );
    }
    detail.to_string()
}

fn first_line(text: &str) -> String {
    let mut lines = text.trim().lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        first + " …"
    } else {
        first
    }
}

/// The last non-empty line of a program's stderr, shortened.
fn last_line(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

/// `1 GiB`, `10 MiB`, `64 KiB`, `1.5 GiB`, `100 bytes`.
fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGINT => "SIGINT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "signal",
    }
}
