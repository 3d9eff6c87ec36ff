//! The code that runs between `fork` and `exec`: it puts the program inside the sandbox.
//!
//! Everything here runs in a child forked from a multi-threaded process, so it may only make
//! async-signal-safe calls: raw syscalls, no allocation, no locks, no panics. Every buffer it
//! needs (paths, uid maps) is prepared by the parent before the fork. This file holds all of
//! the module's `unsafe`, and it is only ever reached through `Command::pre_exec`.
//!
//! The process tree, with a pid namespace:
//!
//! ```text
//! bwb ─fork→ P  own process group; unshare(net, mount[, user]); / read-only, work dir writable;
//!            │  unshare(pid); waits for C, then exits
//!            └─fork→ C  pid 1 of the new pid namespace: mounts its /proc, reaps, reports G's
//!                   │   status on the status pipe; when it exits the kernel kills the namespace
//!                   └─fork→ G  chdir, drop to the sandbox uid, rlimits, exec python3
//! ```
//!
//! Without a pid namespace P forks G directly and reports G's status itself. P and C close
//! every descriptor but the status pipe, so they hold neither the program's output pipes nor
//! `std`'s exec-error socket: `spawn` returns as soon as G has exec'd, and the output pipes
//! reach EOF when G's process tree is gone.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::ptr;

use libc::{c_int, c_uint, c_ulong, pid_t};

use super::sandbox::Plan;

// From <linux/mount.h>; libc does not re-export these on every target.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// `struct mount_attr` for mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = c_int;

/// The resource limits of the program (G), from `Limits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rlimits {
    pub cpu_seconds: u64,
    pub address_space: u64,
    pub file_size: u64,
    pub processes: u64,
}

/// A user namespace's identity maps, written by P for itself (non-root only).
#[derive(Debug)]
pub(crate) struct UserMaps {
    pub uid_map: CString,
    pub gid_map: CString,
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub(crate) struct ChildSetup {
    pub plan: Plan,
    /// Run the program as this (uid, gid), dropped from root.
    pub drop_to: Option<(u32, u32)>,
    pub maps: Option<UserMaps>,
    pub workdir: CString,
    /// Write end of the status pipe: G's raw wait status and CPU time.
    pub status_fd: RawFd,
    /// Write end of the verdict pipe, left open across exec for the harness.
    pub verdict_fd: Option<RawFd>,
    pub limits: Rlimits,
}

/// `Ok` for a syscall's non-negative return, errno otherwise.
fn check(ret: c_int) -> io::Result<c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn interrupted() -> bool {
    io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
}

fn exit(code: c_int) -> ! {
    // SAFETY: _exit is async-signal-safe and skips atexit handlers and destructors, which
    // belong to the parent's copy of the address space.
    unsafe { libc::_exit(code) }
}

/// `Some(child)` in the parent, `None` in the child.
fn fork() -> io::Result<Option<pid_t>> {
    // SAFETY: we are single-threaded (forked from `std`'s spawn, whose fork left malloc and
    // stdio locks consistent), and both sides continue with async-signal-safe calls only.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

fn getpid() -> pid_t {
    // SAFETY: no preconditions.
    unsafe { libc::getpid() }
}

/// Write all of `bytes` to a file such as /proc/self/uid_map.
fn write_file(path: &CStr, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the fd is ours and closed below.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) })?;
    // SAFETY: `bytes` is valid for its length.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    let result = if n == bytes.len() as isize {
        Ok(())
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::Error::from_raw_os_error(libc::EIO))
    };
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    result
}

/// Close every descriptor except `keep` (-1: none). close_range(2) needs Linux 5.9; older
/// kernels get a loop over the descriptor table.
fn close_fds_except(keep: RawFd) {
    let close_range = |first: c_uint, last: c_uint| {
        // SAFETY: closing descriptors this process will never use again.
        unsafe { libc::syscall(libc::SYS_close_range, first, last, 0 as c_uint) == 0 }
    };
    let done = if keep < 0 {
        close_range(0, c_uint::MAX)
    } else {
        let keep = keep as c_uint;
        (keep == 0 || close_range(0, keep - 1)) && close_range(keep + 1, c_uint::MAX)
    };
    if done {
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur.min(1 << 20) as c_int
    } else {
        1024
    };
    for fd in (0..max).filter(|&fd| fd != keep) {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}

/// Lower a resource limit to `soft`/`hard`, never above the current hard limit (raising it
/// needs privileges we may not have).
fn set_limit(resource: Resource, soft: u64, hard: u64) -> io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `current` is a valid out-pointer.
    check(unsafe { libc::getrlimit(resource, &mut current) })?;
    let hard = hard.min(current.rlim_max);
    let limit = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid rlimit.
    check(unsafe { libc::setrlimit(resource, &limit) }).map(drop)
}

fn mount_setattr(path: &CStr, flags: c_uint, set: u64, clear: u64) -> io::Result<()> {
    let mut attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated and `attr` is a valid `struct mount_attr` of the
    // size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &mut attr as *mut MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ChildSetup {
    /// Runs in P, `std`'s child. Returns `Ok` only in G, which `std` then execs; P and C
    /// never return. An `Err` before the first fork, or in C or G, fails `spawn` with it.
    pub(crate) fn enter(&self) -> io::Result<()> {
        self.unshare()?;
        if self.plan.mount_ns {
            self.remount()?;
        }
        let supervisor = getpid();
        if let Some(child) = fork()? {
            // P: without a pid namespace the child is G and P reports its status;
            // with one, the child is C, which reports.
            self.supervise(child, !self.plan.pid_ns, false)
        }
        if !self.plan.pid_ns {
            return self.become_program(supervisor);
        }
        // C: pid 1 of the new namespace. Dies with P, taking the namespace with it.
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) })?;
        if self.plan.mount_ns {
            // A /proc that shows only this namespace. Best effort: it hides the host's
            // processes but contains nothing.
            // SAFETY: NUL-terminated literals; a null data pointer is allowed for proc.
            unsafe {
                libc::mount(
                    c"proc".as_ptr(),
                    c"/proc".as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    ptr::null(),
                )
            };
        }
        let init = getpid();
        if let Some(program) = fork()? {
            self.supervise(program, true, true)
        }
        self.become_program(init)
    }

    /// New namespaces for P and everything below it; a user namespace first when not root.
    fn unshare(&self) -> io::Result<()> {
        let plan = self.plan;
        let mut flags = 0;
        if plan.user_ns {
            flags |= libc::CLONE_NEWUSER;
        }
        if plan.net_ns {
            flags |= libc::CLONE_NEWNET;
        }
        if plan.mount_ns {
            flags |= libc::CLONE_NEWNS;
        }
        if plan.pid_ns {
            flags |= libc::CLONE_NEWPID;
        }
        if flags == 0 {
            return Ok(());
        }
        // SAFETY: P is single-threaded, as CLONE_NEWUSER requires.
        check(unsafe { libc::unshare(flags) })?;
        if let Some(maps) = &self.maps {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", maps.uid_map.as_bytes())?;
            write_file(c"/proc/self/gid_map", maps.gid_map.as_bytes())?;
        }
        Ok(())
    }

    /// Everything read-only and nosuid, except a bind mount of the work dir; nothing
    /// propagates back to the host's mount namespace.
    fn remount(&self) -> io::Result<()> {
        let root = c"/";
        // SAFETY: NUL-terminated paths; null source/fstype/data are allowed for a
        // propagation change and a bind mount.
        check(unsafe {
            libc::mount(
                ptr::null(),
                root.as_ptr(),
                ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                ptr::null(),
            )
        })?;
        // SAFETY: as above.
        check(unsafe {
            libc::mount(
                self.workdir.as_ptr(),
                self.workdir.as_ptr(),
                ptr::null(),
                libc::MS_BIND,
                ptr::null(),
            )
        })?;
        mount_setattr(
            root,
            libc::AT_RECURSIVE as c_uint,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            0,
        )?;
        mount_setattr(&self.workdir, 0, 0, MOUNT_ATTR_RDONLY)
    }

    /// P or C: close everything, wait for `child` (reaping any other child on the way when
    /// `any_child`, as pid 1 must), report its status if asked, exit.
    fn supervise(&self, child: pid_t, report: bool, any_child: bool) -> ! {
        close_fds_except(if report { self.status_fd } else { -1 });
        let target = if any_child { -1 } else { child };
        loop {
            let mut status: c_int = 0;
            // SAFETY: rusage is plain old data; all-zero is a valid value.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid out-pointers.
            let pid = unsafe { libc::wait4(target, &mut status, 0, &mut usage) };
            if pid == child {
                if report {
                    write_status(self.status_fd, status, &usage);
                }
                exit(0);
            }
            if pid == -1 && !interrupted() {
                exit(1);
            }
        }
    }

    /// G: the last steps before exec.
    fn become_program(&self, parent: pid_t) -> io::Result<()> {
        // After the mounts, so the cwd is the writable bind mount, not the directory under it.
        // SAFETY: NUL-terminated path.
        check(unsafe { libc::chdir(self.workdir.as_ptr()) })?;
        if let Some((uid, gid)) = self.drop_to {
            // SAFETY: plain syscalls; order matters: groups and gid while still root.
            check(unsafe { libc::setgroups(0, ptr::null()) })?;
            // SAFETY: as above.
            check(unsafe { libc::setgid(gid) })?;
            // SAFETY: as above.
            check(unsafe { libc::setuid(uid) })?;
        }
        let limits = self.limits;
        set_limit(
            libc::RLIMIT_CPU,
            limits.cpu_seconds,
            limits.cpu_seconds.saturating_add(1),
        )?;
        set_limit(libc::RLIMIT_AS, limits.address_space, limits.address_space)?;
        set_limit(libc::RLIMIT_FSIZE, limits.file_size, limits.file_size)?;
        set_limit(libc::RLIMIT_NPROC, limits.processes, limits.processes)?;
        set_limit(libc::RLIMIT_CORE, 0, 0)?;
        // After setuid, which clears the parent-death signal.
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0, 0, 0) })?;
        // SAFETY: no preconditions.
        if unsafe { libc::getppid() } != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH)); // the supervisor is gone
        }
        // SAFETY: prctl with integer arguments.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0) })?;
        // Anything the parent leaked without CLOEXEC must not reach the program either.
        // Best effort (Linux 5.11); `std`'s own descriptors are CLOEXEC already.
        let verdict = self.verdict_fd.unwrap_or(-1);
        let cloexec = |first: c_uint, last: c_uint| {
            // SAFETY: only sets CLOEXEC on descriptors.
            unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first,
                    last,
                    libc::CLOSE_RANGE_CLOEXEC,
                )
            };
        };
        if verdict > 3 {
            cloexec(3, verdict as c_uint - 1);
        }
        cloexec((verdict.max(2) + 1) as c_uint, c_uint::MAX);
        if let Some(fd) = self.verdict_fd {
            // SAFETY: clears FD_CLOEXEC on our own fd so the harness inherits it.
            check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })?;
        }
        Ok(())
    }
}

/// The status record: G's raw wait status (i32) and its CPU time in ms (u64), little-endian.
pub(crate) const STATUS_LEN: usize = 12;

fn write_status(fd: RawFd, status: c_int, usage: &libc::rusage) {
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    let cpu_ms = ms(usage.ru_utime) + ms(usage.ru_stime);
    let mut record = [0u8; STATUS_LEN];
    record[..4].copy_from_slice(&status.to_le_bytes());
    record[4..].copy_from_slice(&cpu_ms.to_le_bytes());
    // SAFETY: `record` is valid for its length; 12 bytes to a pipe is one atomic write.
    unsafe { libc::write(fd, record.as_ptr().cast(), record.len()) };
}

/// What a killer process does: SIGKILL a process group and, when the program ran under a
/// uid of its own, every process of that uid (`kill(-1)` as that uid reaches exactly them,
/// wherever they moved: new sessions, new process groups).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Killer {
    pub process_group: pid_t,
    pub uid: Option<(u32, u32)>,
}

impl Killer {
    /// Runs in a freshly forked helper and never execs.
    pub(crate) fn run(&self) -> ! {
        // SAFETY: kill with integer arguments.
        unsafe { libc::kill(-self.process_group, libc::SIGKILL) };
        let Some((uid, gid)) = self.uid else { exit(0) };
        // SAFETY: dropping this helper's own privileges; it exits right after.
        let dropped = unsafe {
            libc::setgroups(0, ptr::null()) == 0 && libc::setgid(gid) == 0 && libc::setuid(uid) == 0
        };
        if !dropped {
            exit(1);
        }
        // Repeat until none is left: a process forking at the moment of a kill(-1) may leave a
        // child behind. Zombies also count as present, hence the bound.
        for _ in 0..200 {
            // SAFETY: kill(-1) as the sandbox uid: every process of that uid but ourselves.
            if unsafe { libc::kill(-1, libc::SIGKILL) } == -1 {
                exit(0);
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 1_000_000,
            };
            // SAFETY: valid timespec; nanosleep is async-signal-safe.
            unsafe { libc::nanosleep(&pause, ptr::null_mut()) };
        }
        exit(0)
    }
}
