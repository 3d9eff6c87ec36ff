//! The OS side of the sandbox: which isolation this machine allows (probed once per process
//! by running python under it), the per-run work dir and uid, and launching, timing out and
//! killing a program's whole process tree.

use std::ffi::{CString, OsStr};
use std::io::{self, PipeReader, PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::capture::{capture, Captured};
use super::child::{ChildSetup, Killer, Rlimits, UserMaps, STATUS_LEN};
use super::Limits;

/// The isolation features a run uses; each is probed on its own, so a machine that allows
/// some but not others gets what it allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// A user namespace owning the others (not root: it is how we get to create them).
    pub user_ns: bool,
    /// An empty network namespace: only a loopback interface, and it is down.
    pub net_ns: bool,
    /// A mount namespace where / is read-only and only the work dir is writable.
    pub mount_ns: bool,
    /// A pid namespace: when its first process exits the kernel kills all the others.
    pub pid_ns: bool,
    /// Root only: run as a fresh unprivileged uid/gid, so RLIMIT_NPROC binds.
    pub drop_uid: bool,
}

/// Where the per-run uids come from when dropping root.
#[derive(Debug, Clone, Copy)]
enum UidPool {
    /// A range no account uses: every run gets its own uid, so RLIMIT_NPROC counts only
    /// that run and killing "every process of the uid" kills only that run.
    Fresh { start: u32, len: u32 },
    /// Only `nobody` is mapped (a container with a small uid map): shared by concurrent runs.
    Nobody,
}

const FRESH_START: u32 = 1_000_000_000;
const FRESH_LEN: u32 = 1 << 24;
const NOBODY: u32 = 65534;

/// The uid/gid one run uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunIds {
    pub uid: u32,
    pub gid: u32,
    /// Dropped from root to `uid`.
    pub dropped: bool,
    /// No other run uses `uid`: safe to kill every process it owns.
    pub unique: bool,
}

/// The probed sandbox: interpreter and isolation plan, fixed for the process's lifetime.
#[derive(Debug)]
pub(crate) struct Sandbox {
    pub python: PathBuf,
    pub plan: Plan,
    pub root: bool,
    euid: u32,
    egid: u32,
    pool: UidPool,
}

/// The sandbox, probed on first use.
pub(crate) fn sandbox() -> Result<&'static Sandbox, String> {
    static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    SANDBOX.get_or_init(detect).as_ref().map_err(Clone::clone)
}

/// A program to launch.
pub(crate) struct Spec<'a> {
    pub args: Vec<&'a OsStr>,
    pub stdin: Vec<u8>,
    pub verdict: Option<(PipeReader, PipeWriter)>,
    pub limits: &'a Limits,
}

/// How a launch ended.
#[derive(Debug)]
pub(crate) struct Launched {
    /// Killed at the wall-clock limit.
    pub timed_out: bool,
    /// The program's raw wait status and CPU time (ms); `None` when it was killed before
    /// its supervisor could report.
    pub status: Option<(ExitStatus, u64)>,
    pub stdout: Captured,
    pub stderr: Captured,
    pub verdict: Captured,
    pub duration: Duration,
}

/// Longest verdict stream kept: a few progress lines and one outcome line.
const VERDICT_CAP: usize = 256 * 1024;
/// How long the output pipes may take to reach EOF once the program has been reaped.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long a SIGKILLed supervisor may take to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(10);

impl Sandbox {
    /// The uid/gid for one run.
    pub(crate) fn run_ids(&self) -> RunIds {
        if !(self.root && self.plan.drop_uid) {
            return RunIds {
                uid: self.euid,
                gid: self.egid,
                dropped: false,
                unique: false,
            };
        }
        match self.pool {
            UidPool::Fresh { start, len } => {
                let id = start + rand::random::<u32>() % len;
                RunIds {
                    uid: id,
                    gid: id,
                    dropped: true,
                    unique: true,
                }
            }
            UidPool::Nobody => RunIds {
                uid: NOBODY,
                gid: NOBODY,
                dropped: true,
                unique: false,
            },
        }
    }

    /// Run `spec` in `work` under this sandbox's plan; kill its whole tree at the timeout.
    pub(crate) fn launch(&self, work: &Path, ids: RunIds, spec: Spec) -> io::Result<Launched> {
        let (plan, python) = (self.plan, self.python.as_path());
        let limits = spec.limits;
        let (status_r, status_w) = io::pipe()?;
        let (verdict_r, verdict_w) = match spec.verdict {
            Some((r, w)) => (Some(r), Some(w)),
            None => (None, None),
        };
        let maps = plan.user_ns.then(|| UserMaps {
            uid_map: id_map(self.euid),
            gid_map: id_map(self.egid),
        });
        let setup = ChildSetup {
            plan,
            drop_to: ids.dropped.then_some((ids.uid, ids.gid)),
            maps,
            workdir: CString::new(work.as_os_str().as_bytes())?,
            status_fd: status_w.as_raw_fd(),
            verdict_fd: verdict_w.as_ref().map(|w| w.as_raw_fd()),
            limits: Rlimits {
                cpu_seconds: limits.cpu_seconds,
                address_space: limits.memory_bytes,
                file_size: limits.file_size_bytes,
                processes: limits.max_processes,
            },
        };
        let mut cmd = Command::new(python);
        cmd.args(&spec.args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", work)
            .env("TMPDIR", work)
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // SAFETY: `enter` makes only async-signal-safe calls on data prepared above (see
        // child.rs); the descriptors it names stay open in this process until spawn returns.
        unsafe { cmd.pre_exec(move || setup.enter()) };
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        // Only the child's copies of the write ends may remain, or EOF never comes.
        drop(status_w);
        drop(verdict_w);
        let process_group = child.id() as libc::pid_t;

        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("child pipes missing"));
        };
        let stdout = capture(stdout, limits.output_bytes);
        let stderr = capture(stderr, limits.output_bytes);
        let verdict = verdict_r.map(|r| capture(r, VERDICT_CAP));
        let status = capture(status_r, STATUS_LEN);
        let job = spec.stdin;
        thread::spawn(move || {
            // A program that exits without reading its stdin makes this fail; that is fine.
            let _ = stdin.write_all(&job);
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(child.wait());
        });

        let killer = Killer {
            process_group,
            uid: (ids.dropped && ids.unique).then_some((ids.uid, ids.gid)),
        };
        let (timed_out, duration) = match rx.recv_timeout(limits.timeout) {
            Ok(waited) => {
                waited?;
                (false, start.elapsed())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let duration = start.elapsed();
                kill(python, killer)?;
                match rx.recv_timeout(KILL_GRACE) {
                    Ok(waited) => waited.map(drop)?,
                    Err(_) => {
                        return Err(io::Error::other(format!(
                            "sandboxed process {process_group} survived SIGKILL for {} s",
                            KILL_GRACE.as_secs()
                        )))
                    }
                }
                (true, duration)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("lost the sandboxed process's waiter"))
            }
        };
        // In a pid namespace the kernel has already killed everything the program left
        // running; without one, leftovers (daemonised children, a fork bomb) die here.
        if !plan.pid_ns && !timed_out {
            kill(python, killer)?;
        }

        let deadline = Instant::now() + DRAIN_GRACE;
        let status = status.finish(deadline);
        let status = (status.bytes.len() == STATUS_LEN).then(|| {
            let mut raw = [0u8; 4];
            raw.copy_from_slice(&status.bytes[..4]);
            let mut cpu = [0u8; 8];
            cpu.copy_from_slice(&status.bytes[4..]);
            (
                std::os::unix::process::ExitStatusExt::from_raw(i32::from_le_bytes(raw)),
                u64::from_le_bytes(cpu),
            )
        });
        Ok(Launched {
            timed_out,
            status,
            stdout: stdout.finish(deadline),
            stderr: stderr.finish(deadline),
            verdict: verdict.map(|v| v.finish(deadline)).unwrap_or_default(),
            duration,
        })
    }
}

/// SIGKILL the process group and, under a uid of its own, every process of that uid: from a
/// helper process (it must become that uid to do the second part), which never execs.
/// A few tries: a failed fork (EAGAIN under load) must not leave the program running.
fn kill(python: &Path, killer: Killer) -> io::Result<()> {
    let mut tries = 0;
    loop {
        let mut cmd = Command::new(python);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: `Killer::run` makes only async-signal-safe calls and exits without exec.
        unsafe { cmd.pre_exec(move || killer.run()) };
        match cmd.spawn().and_then(|mut helper| helper.wait()) {
            Ok(_) => return Ok(()),
            Err(e) if tries >= 4 => return Err(e),
            Err(_) => {
                tries += 1;
                thread::sleep(Duration::from_millis(50 << tries));
            }
        }
    }
}

/// `<id> <id> 1`: map our own id to itself in a new user namespace.
fn id_map(id: u32) -> CString {
    // Digits and spaces only: no interior NUL.
    CString::new(format!("{id} {id} 1")).unwrap_or_default()
}

/// A fresh temporary directory the program may write, owned by its uid; removed on drop.
pub(crate) struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub(crate) fn new(ids: RunIds) -> io::Result<Workspace> {
        let dir = tempfile::Builder::new()
            .prefix("bwb-exec-")
            .tempdir_in(temp_base(ids.dropped))?;
        if ids.dropped {
            std::os::unix::fs::chown(dir.path(), Some(ids.uid), Some(ids.gid))?;
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        Ok(Workspace { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Delete the directory and whatever the program left in it, including directories it
    /// made unreadable (root ignores modes; anyone else has to restore them first).
    pub(crate) fn remove(self) -> io::Result<()> {
        let path = self.dir.path().to_path_buf();
        if self.dir.close().is_ok() || !path.exists() {
            return Ok(());
        }
        make_removable(&path);
        std::fs::remove_dir_all(&path)
    }
}

fn make_removable(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                make_removable(&entry.path());
            }
        }
    }
}

/// The system temp dir, unless a dropped uid could not reach into it (a TMPDIR under
/// /root, say): then /tmp.
fn temp_base(dropped: bool) -> PathBuf {
    let base = std::env::temp_dir();
    if !dropped || world_traversable(&base) {
        return base;
    }
    PathBuf::from("/tmp")
}

fn world_traversable(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// Effective uid and gid, from /proc/self/status (no libc call needed).
fn ids() -> (u32, u32) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().nth(1)) // real, effective, saved, fs
            .and_then(|v| v.parse().ok())
    };
    match (field("Uid:"), field("Gid:")) {
        (Some(uid), Some(gid)) => (uid, gid),
        // No /proc: fall back to the owner of a file we create.
        _ => tempfile::tempfile()
            .and_then(|f| f.metadata())
            .map(|m| (m.uid(), m.gid()))
            .unwrap_or((u32::MAX, u32::MAX)),
    }
}

/// Whether /proc/self/{uid,gid}_map map [start, start+len) (no map file: no user
/// namespaces, everything is mapped).
fn mapped(file: &str, start: u32, len: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        return true;
    };
    let (start, end) = (u64::from(start), u64::from(start) + u64::from(len));
    text.lines().any(|line| {
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        matches!(nums[..], [inside, _, count] if inside <= start && end <= inside + count)
    })
}

fn uid_pool() -> UidPool {
    let fresh = |f| mapped(f, FRESH_START, FRESH_LEN);
    if fresh("/proc/self/uid_map") && fresh("/proc/self/gid_map") {
        UidPool::Fresh {
            start: FRESH_START,
            len: FRESH_LEN,
        }
    } else {
        UidPool::Nobody
    }
}

/// `python3` on PATH, resolved to the real interpreter (pyenv and friends put shell-script
/// shims on PATH, which an unprivileged uid may not be able to run).
fn find_python() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            "python3 not found on PATH; install Python 3.8 or newer to run MBPP programs"
                .to_string()
        })?;
    let real = Command::new(&found)
        .args(["-I", "-c", "import sys; print(sys.executable)"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|p| p.is_absolute() && p.is_file());
    Ok(real.unwrap_or(found))
}

/// Interpreters to try when running as a dropped uid: ours first, then the system's (ours
/// may live under a directory only root can enter, like /root/.pyenv).
fn candidates(found: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = vec![found.to_path_buf()];
    for p in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] {
        let p = PathBuf::from(p);
        let same = |q: &PathBuf| q.canonicalize().ok() == p.canonicalize().ok();
        if p.is_file() && !out.iter().any(same) {
            out.push(p);
        }
    }
    out
}

/// Exits 3 on a Python the harness cannot run (it needs audit hooks, 3.8+).
const PROBE: &str = "import sys; sys.exit(0 if sys.version_info >= (3, 8) else 3)";

/// How a probe run went.
#[derive(Debug, PartialEq)]
enum Probe {
    Ok,
    TooOld,
    Failed(String),
}

fn detect() -> Result<Sandbox, String> {
    let (euid, egid) = ids();
    let root = euid == 0;
    let python = find_python()?;
    let mut sandbox = Sandbox {
        python: python.clone(),
        plan: Plan::default(),
        root,
        euid,
        egid,
        pool: uid_pool(),
    };
    let full = Plan {
        user_ns: !root,
        net_ns: true,
        mount_ns: true,
        pid_ns: true,
        drop_uid: root,
    };
    let interpreters = if root {
        candidates(&python)
    } else {
        vec![python.clone()]
    };
    // Usually everything works at once: one probe per interpreter.
    for candidate in &interpreters {
        if sandbox.probe(full, candidate) == Probe::Ok {
            sandbox.python = candidate.clone();
            sandbox.plan = full;
            return Ok(sandbox);
        }
    }
    // Otherwise feature by feature. Not root: the namespaces need a user namespace.
    let mut plan = Plan::default();
    let base = Plan {
        user_ns: !root,
        ..Plan::default()
    };
    if root || sandbox.probe(base, &python) == Probe::Ok {
        plan = base;
        let features: [fn(&mut Plan); 3] = [
            |p| p.net_ns = true,
            |p| p.mount_ns = true,
            |p| p.pid_ns = true,
        ];
        for add in features {
            let mut next = plan;
            add(&mut next);
            if sandbox.probe(next, &python) == Probe::Ok {
                plan = next;
            }
        }
        if plan == base {
            plan = Plan::default(); // a user namespace alone isolates nothing
        }
    }
    if root {
        let dropped = Plan {
            drop_uid: true,
            ..plan
        };
        for candidate in &interpreters {
            if sandbox.probe(dropped, candidate) == Probe::Ok {
                sandbox.python = candidate.clone();
                sandbox.plan = dropped;
                return Ok(sandbox);
            }
        }
        tracing::warn!(
            python = %python.display(),
            "no python3 runs as an unprivileged uid; MBPP programs will run as root"
        );
    }
    match sandbox.probe(plan, &python) {
        Probe::Ok => {
            sandbox.plan = plan;
            Ok(sandbox)
        }
        Probe::TooOld => Err(format!(
            "{} is older than Python 3.8; install Python 3.8 or newer to run MBPP programs",
            python.display()
        )),
        Probe::Failed(why) => Err(format!(
            "{} does not run in the code sandbox ({why}); check that it runs on its own",
            python.display()
        )),
    }
}

impl Sandbox {
    /// Run the version check under `plan` with `python`, the way real runs go.
    fn probe(&self, plan: Plan, python: &Path) -> Probe {
        let probe = Sandbox {
            python: python.to_path_buf(),
            plan,
            root: self.root,
            euid: self.euid,
            egid: self.egid,
            pool: self.pool,
        };
        let ids = probe.run_ids();
        let result = Workspace::new(ids).and_then(|ws| {
            let limits = Limits::default();
            let spec = Spec {
                args: vec![OsStr::new("-I"), OsStr::new("-c"), OsStr::new(PROBE)],
                stdin: Vec::new(),
                verdict: None,
                limits: &limits,
            };
            let launched = probe.launch(ws.path(), ids, spec);
            ws.remove()?;
            launched
        });
        let verdict = match result {
            Err(e) => Probe::Failed(e.to_string()),
            Ok(run) => match run.status {
                Some((status, _)) if status.success() => Probe::Ok,
                Some((status, _)) if status.code() == Some(3) => Probe::TooOld,
                Some((status, _)) => Probe::Failed(format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&run.stderr.bytes).trim()
                )),
                None => Probe::Failed("no exit status".into()),
            },
        };
        tracing::debug!(?plan, python = %python.display(), ?verdict, "sandbox probe");
        verdict
    }
}
