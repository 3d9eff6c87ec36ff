//! The MBPP code sandbox (`bwb::exec`): each class of program gets its exact outcome, and
//! hostile programs (infinite loops, fork bombs, huge allocations, writes outside the work
//! dir, sockets, floods of output, early exits, forged verdicts) are contained, with the
//! containment checked from outside (the file system, a listening socket, /proc).
//!
//! The isolation asserted is what this machine supports: with root and working namespaces
//! (CI, this machine) everything; elsewhere the guarantees that hold without them.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bwb::error::Error;
use bwb::exec::{run_tests, ExecResult, Limits, Outcome};

fn limits() -> Limits {
    Limits {
        timeout: Duration::from_secs(2),
        ..Limits::default()
    }
}

fn run(code: &str, tests: &[&str]) -> ExecResult {
    run_with(code, tests, &limits())
}

fn run_with(code: &str, tests: &[&str], limits: &Limits) -> ExecResult {
    let tests: Vec<String> = tests.iter().map(|t| t.to_string()).collect();
    run_tests(code, "", &tests, limits).unwrap()
}

fn expect(result: &ExecResult, outcome: Outcome, detail: &str) {
    assert_eq!(result.outcome, outcome, "{result:#?}");
    assert!(
        result.detail.contains(detail),
        "detail {:?} lacks {detail:?}: {result:#?}",
        result.detail
    );
    assert!(!result.detail.contains('\n'), "{result:#?}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(|u| u == "0"))
        .unwrap()
}

/// Root, and `unshare` can make net, mount and pid namespaces: full isolation expected.
fn namespaces_available() -> bool {
    is_root()
        && Command::new("unshare")
            .args(["--net", "--mount", "--pid", "--fork", "true"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Processes of `uid` still alive (zombies included) according to /proc.
fn processes_of(uid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue; // exited meanwhile
        };
        let owner = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        if owner == Some(uid) {
            out.push(format!("{name}: {}", status.lines().next().unwrap_or("")));
        }
    }
    out
}

/// Survivors of a run: none, when the run had a uid of its own (checked a few times, since
/// SIGKILLed processes take a moment to be reaped).
fn assert_no_survivors(result: &ExecResult) {
    if !result.isolation.unprivileged || result.isolation.uid == 0 || !is_root() {
        return; // not a uid of its own: nothing to tell its processes from ours
    }
    let mut left = processes_of(result.isolation.uid);
    for _ in 0..50 {
        if left.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = processes_of(result.isolation.uid);
    }
    panic!(
        "processes of uid {} survived: {left:?}",
        result.isolation.uid
    );
}

#[test]
fn isolation_is_what_this_machine_allows() {
    let result = run("print('hi')", &[]);
    expect(&result, Outcome::Passed, "0 of 0 tests passed");
    assert_eq!(result.stdout, "hi\n");
    let iso = &result.isolation;
    assert!(iso.filesystem.ends_with("audit hook"), "{iso:?}");
    if namespaces_available() {
        assert!(iso.network, "{iso:?}");
        assert!(iso.pid_namespace, "{iso:?}");
        assert!(iso.unprivileged, "{iso:?}");
        assert_ne!(iso.uid, 0);
        assert_eq!(iso.filesystem, "read-only mount namespace + audit hook");
    }
    if !is_root() {
        assert!(iso.unprivileged, "{iso:?}");
    }
}

#[test]
fn a_correct_solution_passes() {
    let code = "def add(a, b):\n    return a + b\n";
    let result = run(code, &["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]);
    expect(&result, Outcome::Passed, "2 of 2 tests passed");
    assert!(result.passed());
    assert!(result.duration_ms > 0.0 && result.duration_ms < 2000.0);
    // Setup code runs first, in the same namespace.
    let tests = vec!["assert area(1) == round(math.pi, 2)".to_string()];
    let code = "def area(r):\n    return round(math.pi * r * r, 2)\n";
    let result = run_tests(code, "import math", &tests, &limits()).unwrap();
    expect(&result, Outcome::Passed, "1 of 1 tests passed");
}

#[test]
fn a_wrong_solution_names_the_failing_assert() {
    let code = "def add(a, b):\n    return a - b\n";
    let result = run(code, &["assert add(0, 0) == 0", "assert add(1, 2) == 3"]);
    expect(
        &result,
        Outcome::FailedAssertion,
        "assert add(1, 2) == 3 failed",
    );
    assert_eq!(result.detail, "assert add(1, 2) == 3 failed");
}

#[test]
fn a_syntax_error_is_its_own_class() {
    let result = run(
        "def add(a, b)\n    return a + b\n",
        &["assert add(1, 2) == 3"],
    );
    expect(&result, Outcome::SyntaxError, "SyntaxError");
    assert!(result.detail.contains("solution.py, line 1"), "{result:?}");
}

#[test]
fn a_name_error_is_a_runtime_error() {
    let result = run(
        "def add(a, b):\n    return a + c\n",
        &["assert add(1, 2) == 3"],
    );
    expect(
        &result,
        Outcome::RuntimeError,
        "NameError: name 'c' is not defined (in assert add(1, 2) == 3)",
    );
    assert!(result.stderr.contains("Traceback"), "{result:?}");
    // Raised while defining, before any test.
    let result = run("x = undefined_name\n", &["assert True"]);
    assert_eq!(
        result.detail,
        "NameError: name 'undefined_name' is not defined"
    );
}

#[test]
fn a_test_that_does_not_compile_is_an_error() {
    let tests = vec!["assert add(1, 2) ==".to_string()];
    let err = run_tests("def add(a, b): return a + b", "", &tests, &limits()).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("test 1 is not valid Python: SyntaxError"),
        "{err}"
    );
}

#[test]
fn an_infinite_loop_times_out() {
    let start = Instant::now();
    let result = run("while True:\n    pass\n", &["assert True"]);
    let took = start.elapsed();
    expect(
        &result,
        Outcome::Timeout,
        "killed after 2.0 s (wall-clock limit)",
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_no_survivors(&result);
}

#[test]
fn the_cpu_limit_is_a_timeout() {
    let limits = Limits {
        timeout: Duration::from_secs(10),
        cpu_seconds: 1,
        ..Limits::default()
    };
    let start = Instant::now();
    let result = run_with("while True:\n    pass\n", &["assert True"], &limits);
    expect(&result, Outcome::Timeout, "CPU limit of 1 s exceeded");
    assert!(start.elapsed() < Duration::from_secs(8), "{result:?}");
}

#[test]
fn a_fork_bomb_is_contained_and_leaves_nothing_behind() {
    // Forks as fast as it can for a second, counting successes, then spins.
    let counted = "import os, time\n\
        n, start = 0, time.time()\n\
        while time.time() - start < 1.0:\n\
        \x20   try:\n\
        \x20       if os.fork() == 0:\n\
        \x20           while True:\n\
        \x20               pass\n\
        \x20       n += 1\n\
        \x20   except OSError:\n\
        \x20       pass\n\
        print('forked', n, flush=True)\n\
        while True:\n\
        \x20   pass\n";
    let result = run(counted, &["assert True"]);
    expect(&result, Outcome::Timeout, "killed after 2.0 s");
    if result.isolation.unprivileged {
        // RLIMIT_NPROC binds: the program itself plus at most 31 children.
        let forked: u64 = result
            .stdout
            .trim()
            .trim_start_matches("forked ")
            .parse()
            .unwrap();
        assert!(forked < 32, "{result:?}");
    }
    assert_no_survivors(&result);

    // The classic: every process forks forever.
    let bomb =
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
    let result = run(bomb, &["assert True"]);
    expect(&result, Outcome::Timeout, "killed after 2.0 s");
    assert_no_survivors(&result);
}

#[test]
fn a_huge_allocation_is_a_memory_error() {
    let result = run("x = bytearray(10 * 1024 ** 3)\n", &["assert True"]);
    expect(
        &result,
        Outcome::RuntimeError,
        "MemoryError (memory limit 1 GiB)",
    );
    // And we are fine: allocate and touch 64 MiB here.
    let mine = vec![1u8; 64 << 20];
    assert_eq!(mine.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
}

#[test]
fn writes_outside_the_work_dir_fail() {
    // A directory anyone may write to, outside the sandbox, and a fresh name in /tmp.
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let in_outside = outside.path().join("escaped.txt");
    let in_tmp = Path::new("/tmp").join(format!("bwb-sandbox-escape-{}", std::process::id()));
    for target in [&in_outside, &in_tmp] {
        let code = format!(
            "open({:?}, 'w').write('escaped')\n",
            target.display().to_string()
        );
        let result = run(&code, &["assert True"]);
        let exists = target.exists();
        let _ = std::fs::remove_file(target);
        assert!(!exists, "{} was written: {result:#?}", target.display());
        expect(
            &result,
            Outcome::RuntimeError,
            "PermissionError: sandbox: writing",
        );
    }
    // Inside the work dir is fine.
    let code = "open('scratch.txt', 'w').write('ok')\nimport os\nos.makedirs('a/b')\n";
    let result = run(code, &["assert open('scratch.txt').read() == 'ok'"]);
    expect(&result, Outcome::Passed, "1 of 1 tests passed");
}

#[test]
fn sockets_are_blocked() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n\
         s.sendall(b'hello')\n"
    );
    let result = run(&code, &["assert True"]);
    expect(
        &result,
        Outcome::RuntimeError,
        "PermissionError: sandbox: network access (socket.connect) is blocked",
    );
    std::thread::sleep(Duration::from_millis(200));
    let accepted = listener.accept();
    assert!(
        accepted
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection got through: {accepted:?}"
    );
}

#[test]
fn a_flood_of_output_is_truncated() {
    let code = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 1_000_000)\n\
                sys.stderr.write('e' * 1_000_000)\n";
    let result = run(code, &["assert True"]);
    expect(&result, Outcome::Passed, "1 of 1 tests passed");
    assert!(result.truncated);
    assert_eq!(result.stdout.len(), Limits::default().output_bytes);
    assert_eq!(result.stderr.len(), Limits::default().output_bytes);
    assert!(result.stdout.bytes().all(|b| b == b'x'));
}

#[test]
fn exiting_before_the_asserts_is_not_a_pass() {
    let code = "def add(a, b):\n    return a + b\nimport os\nos._exit(0)\n";
    let result = run(code, &["assert add(1, 2) == 4"]);
    expect(
        &result,
        Outcome::RuntimeError,
        "exited before the tests ran (exit status 0)",
    );
    let code = "import sys\nsys.exit(0)\n";
    let result = run(code, &["assert False"]);
    expect(
        &result,
        Outcome::RuntimeError,
        "exited before the tests ran (sys.exit(0))",
    );
    // Exiting from inside a test.
    let code = "def add(a, b):\n    import os\n    os._exit(0)\n";
    let result = run(code, &["assert add(1, 2) == 3"]);
    expect(
        &result,
        Outcome::RuntimeError,
        "exited during assert add(1, 2) == 3 (exit status 0)",
    );
}

#[test]
fn a_forged_verdict_is_not_a_pass() {
    // The status line printed where the program can print, on every descriptor it can
    // reach, then an exit before the tests.
    let forged = r#"{"token":"0123456789abcdef0123456789abcdef","outcome":"passed","detail":"1 of 1 tests passed"}"#;
    let code = format!(
        "import os, sys\n\
         line = {forged:?} + '\\n'\n\
         print(line)\n\
         sys.stderr.write(line)\n\
         for fd in range(3, 256):\n\
         \x20   try:\n\
         \x20       os.write(fd, line.encode())\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         os._exit(0)\n"
    );
    let result = run(&code, &["assert False"]);
    expect(
        &result,
        Outcome::RuntimeError,
        "exited before the tests ran",
    );
    // Forged, then left to the real tests, which fail.
    let code = format!("print({forged:?})\ndef f():\n    return 1\n");
    let result = run(&code, &["assert f() == 2"]);
    expect(&result, Outcome::FailedAssertion, "assert f() == 2 failed");
}

#[test]
fn the_work_dir_is_fresh_and_removed() {
    let code = "import os\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))\n";
    let first = run(code, &["assert True"]);
    let second = run(code, &["assert True"]);
    let dirs: Vec<&str> = [&first, &second]
        .iter()
        .map(|r| r.stdout.lines().next().unwrap())
        .collect();
    assert_ne!(dirs[0], dirs[1]);
    for (result, dir) in [&first, &second].iter().zip(&dirs) {
        expect(result, Outcome::Passed, "1 of 1 tests passed");
        assert_eq!(result.stdout.lines().nth(1), Some("[]"), "{result:?}");
        assert!(!Path::new(dir).exists(), "{dir} is still there");
    }
}
