//! Classification on hand-made launches, and the OS layer of the sandbox alone (no audit
//! hook): what the kernel stops when the Python-level guard is not there.

use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::capture::Captured;
use super::*;

fn launched(status: Option<(i32, u64)>, stderr: &str) -> Launched {
    Launched {
        timed_out: false,
        status: status.map(|(raw, cpu)| (ExitStatus::from_raw(raw), cpu)),
        stdout: Captured::default(),
        stderr: Captured {
            bytes: stderr.as_bytes().to_vec(),
            truncated: false,
        },
        verdict: Captured::default(),
        duration: Duration::from_millis(5),
    }
}

fn exited(code: i32) -> Option<(i32, u64)> {
    Some((code << 8, 10))
}

fn report(outcome: &str, detail: &str) -> Report {
    Report {
        outcome: Some((outcome.into(), detail.into())),
        progress: None,
    }
}

fn tests() -> Vec<String> {
    vec!["assert f(1) == 2".into(), "assert f(2) == 3".into()]
}

#[test]
fn verdict_counts_only_with_its_exit_status() {
    let limits = Limits::default();
    let pass = report("passed", "2 of 2 tests passed");
    let got = classify(&launched(exited(0), ""), &pass, &tests(), &limits).unwrap();
    assert_eq!(got, (Outcome::Passed, "2 of 2 tests passed".into()));
    // The same line with another exit status is not a pass.
    let got = classify(&launched(exited(11), ""), &pass, &tests(), &limits).unwrap();
    assert_eq!(got.0, Outcome::RuntimeError);
    assert!(got
        .1
        .starts_with("exited before the tests ran (exit status 11)"));
}

#[test]
fn no_verdict_is_a_runtime_error_that_says_when() {
    let limits = Limits::default();
    let none = Report::default();
    let got = classify(&launched(exited(0), ""), &none, &tests(), &limits).unwrap();
    assert_eq!(
        got,
        (
            Outcome::RuntimeError,
            "exited before the tests ran (exit status 0)".into()
        )
    );
    let during = Report {
        outcome: None,
        progress: Some(("test".into(), Some(2))),
    };
    let got = classify(&launched(exited(3), "boom\n"), &during, &tests(), &limits).unwrap();
    assert_eq!(
        got.1,
        "exited during assert f(2) == 3 (exit status 3): boom"
    );
    let got = classify(
        &launched(Some((libc::SIGSEGV, 10)), ""),
        &none,
        &tests(),
        &limits,
    )
    .unwrap();
    assert_eq!(
        got,
        (
            Outcome::RuntimeError,
            "killed by signal 11 (SIGSEGV)".into()
        )
    );
}

#[test]
fn limits_are_named() {
    let limits = Limits::default();
    let none = Report::default();
    let got = classify(
        &launched(Some((libc::SIGXCPU, 10_000)), ""),
        &none,
        &tests(),
        &limits,
    );
    assert_eq!(
        got.unwrap(),
        (Outcome::Timeout, "CPU limit of 10 s exceeded".into())
    );
    // SIGKILL at the hard CPU limit (SIGXCPU ignored) is a timeout too; elsewhere it is not.
    let got = classify(
        &launched(Some((libc::SIGKILL, 11_000)), ""),
        &none,
        &tests(),
        &limits,
    );
    assert_eq!(got.unwrap().0, Outcome::Timeout);
    let got = classify(
        &launched(Some((libc::SIGKILL, 50)), ""),
        &none,
        &tests(),
        &limits,
    );
    assert_eq!(got.unwrap().1, "killed by signal 9 (SIGKILL)");
    let mut timed_out = launched(None, "");
    timed_out.timed_out = true;
    let got = classify(&timed_out, &none, &tests(), &limits).unwrap();
    assert_eq!(
        got,
        (
            Outcome::Timeout,
            "killed after 10.0 s (wall-clock limit)".into()
        )
    );
    let memory = report("runtime_error", "MemoryError (in assert f(1) == 2)");
    let got = classify(&launched(exited(11), ""), &memory, &tests(), &limits).unwrap();
    assert_eq!(
        got.1,
        "MemoryError (memory limit 1 GiB) (in assert f(1) == 2)"
    );
    let big = report("runtime_error", "OSError: [Errno 27] File too large");
    let got = classify(&launched(exited(11), ""), &big, &tests(), &limits).unwrap();
    assert_eq!(
        got.1,
        "OSError: [Errno 27] File too large (file size limit 10 MiB)"
    );
}

#[test]
fn invalid_tests_are_an_error_not_an_outcome() {
    let bad = report("invalid_test", "test 1 is not valid Python: SyntaxError: x");
    let err = classify(
        &launched(exited(13), ""),
        &bad,
        &tests(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("test 1 is not valid Python"),
        "{err}"
    );
}

#[test]
fn report_keeps_only_lines_with_the_token() {
    let stream = concat!(
        "{\"token\":\"abc\",\"progress\":\"test\",\"index\":1}\n",
        "{\"token\":\"forged\",\"outcome\":\"passed\",\"detail\":\"x\"}\n",
        "not json\n",
        "{\"token\":\"abc\",\"outcome\":\"failed_assertion\",\"detail\":\"assert 0 failed\"}\n",
        "{\"token\":\"abc\",\"outcome\":\"passed\",\"detail\":\"late\"}\n",
    );
    let got = Report::parse(stream.as_bytes(), "abc");
    assert_eq!(
        got.outcome,
        Some(("failed_assertion".into(), "assert 0 failed".into()))
    );
    assert_eq!(got.progress, Some(("test".into(), Some(1))));
    assert_eq!(Report::parse(stream.as_bytes(), "zzz"), Report::default());
}

#[test]
fn bytes_read_as_people_write_them() {
    assert_eq!(human_bytes(1 << 30), "1 GiB");
    assert_eq!(human_bytes(10 << 20), "10 MiB");
    assert_eq!(human_bytes(64 << 10), "64 KiB");
    assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    assert_eq!(human_bytes(100), "100 bytes");
}

#[test]
fn zero_limits_are_refused() {
    let limits = Limits {
        timeout: Duration::ZERO,
        ..Limits::default()
    };
    let err = run_tests("", "", &[], &limits).unwrap_err();
    assert!(err.to_string().contains("`timeout` is 0"), "{err}");
}

fn quick() -> Limits {
    Limits {
        timeout: Duration::from_secs(5),
        ..Limits::default()
    }
}

/// Without the audit hook, a write to /tmp is stopped by the read-only mount namespace alone.
#[test]
fn os_layer_blocks_writes_outside_the_work_dir() {
    let target = std::env::temp_dir().join(format!("bwb-exec-os-{:x}", rand::random::<u64>()));
    let code = format!(
        "open({t:?}, 'w').write('escaped')\n",
        t = target.display().to_string()
    );
    let result = run(&code, "", &[], &quick(), false).unwrap();
    assert!(!target.exists(), "{result:?}");
    let _ = std::fs::remove_file(&target);
    assert_eq!(result.outcome, Outcome::RuntimeError, "{result:?}");
    if result
        .isolation
        .filesystem
        .starts_with("read-only mount namespace")
    {
        assert!(
            result
                .detail
                .starts_with("OSError: [Errno 30] Read-only file system"),
            "{result:?}"
        );
    }
    // A shell started by the program is not under the hook either: still contained.
    let shell = format!(
        "import os\nos.system('echo escaped > {t}')\nopen('inside.txt', 'w').write('ok')\n",
        t = target.display()
    );
    let result = run(
        &shell,
        "",
        &["assert open('inside.txt').read() == 'ok'".into()],
        &quick(),
        false,
    )
    .unwrap();
    if result
        .isolation
        .filesystem
        .starts_with("read-only mount namespace")
    {
        assert!(!target.exists(), "{result:?}");
        assert_eq!(result.outcome, Outcome::Passed, "{result:?}");
    }
    let _ = std::fs::remove_file(&target);
}

/// Without the audit hook, the network namespace alone keeps a connection from being made.
#[test]
fn os_layer_blocks_the_network() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
    );
    let result = run(&code, "", &[], &quick(), false).unwrap();
    if result.isolation.network {
        assert!(
            listener.accept().is_err(),
            "a connection got through: {result:?}"
        );
        assert_eq!(result.outcome, Outcome::RuntimeError, "{result:?}");
        assert_eq!(
            result.detail, "OSError: [Errno 101] Network is unreachable",
            "{result:?}"
        );
    }
}

/// The program runs as the uid the result reports, and that is not root when we are.
#[test]
fn runs_as_the_reported_uid() {
    let result = run("import os\nprint(os.getuid())", "", &[], &quick(), false).unwrap();
    assert_eq!(
        result.stdout.trim(),
        result.isolation.uid.to_string(),
        "{result:?}"
    );
    if result.isolation.unprivileged {
        assert_ne!(result.isolation.uid, 0);
    }
}
