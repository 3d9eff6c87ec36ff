//! Progress where stderr is not a terminal (a job log, CI, `nohup`): train and eval write
//! plain progress lines at `--log-every`, and training appends its figures per step to
//! results/training/<model>_<task>_<condition>.metrics.jsonl.

use crate::common::{jsonl, Project};

/// The lines of `log` from `what` (`train smoke/fpb/lora-500:`) on, with the timestamp and
/// level in front cut off.
fn lines_of<'a>(log: &'a str, what: &str) -> Vec<&'a str> {
    log.lines()
        .filter_map(|l| l.find(what).map(|i| &l[i..]))
        .collect()
}

#[test]
fn a_smoke_run_without_a_terminal_logs_train_and_eval_progress() {
    let p = Project::new();
    // stderr is a pipe here, as in a job log.
    let run = p
        .bwb(&[
            "--smoke-test",
            "--log-every",
            "0",
            "run",
            "--tasks",
            "fpb",
            "--conditions",
            "lora-500",
            "--seeds",
            "1",
        ])
        .ok();
    let log = run.stderr();
    assert!(
        log.is_ascii() && !log.contains('\x1b'),
        "not plain text:\n{log}"
    );

    // Training: a line per step (--log-every 0), each with every figure, then the epoch's
    // validation and a last line.
    let train = lines_of(&log, "train smoke/fpb/lora-500:");
    let steps: Vec<&&str> = train.iter().filter(|l| l.contains("ETA")).collect();
    let total = 8; // 30 examples / batch 4 (configs/training/smoke.yaml), one epoch
    assert_eq!(steps.len(), total, "{log}");
    for (i, l) in steps.iter().enumerate() {
        assert!(l.contains(&format!(": {}/{total} steps", i + 1)), "{l}");
        for field in [
            "epoch 1/1",
            "loss ",
            "lr ",
            "grad norm ",
            "tokens/s",
            "elapsed ",
        ] {
            assert!(l.contains(field), "no `{field}` in {l}");
        }
    }
    assert!(train.iter().any(|l| l.contains("val loss")), "{log}");
    assert!(
        train.last().is_some_and(
            |l| l.contains(&format!("{total}/{total} steps (100%)")) && l.contains("done in")
        ),
        "{log}"
    );

    // Evaluation: a line per finished example, then the last one.
    let eval = lines_of(&log, "eval smoke/fpb/lora-500/seed-");
    assert!(eval.len() >= 2, "{log}");
    for field in ["examples (", "errors", "examples/s"] {
        assert!(
            eval.iter().all(|l| l.contains(field)),
            "no `{field}`:\n{log}"
        );
    }
    assert!(eval[0].contains("ETA"), "{log}");
    assert!(eval
        .last()
        .is_some_and(|l| l.contains("(100%)") && l.contains("done in")));

    // The metrics file: every step once, in order, then the epoch.
    let rows = jsonl(&p.read("results/smoke/training/smoke_fpb_lora-500.metrics.jsonl"));
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, [vec!["step"; total], vec!["epoch"]].concat());
    for (i, r) in rows[..total].iter().enumerate() {
        assert_eq!(r["step"], i + 1);
        assert_eq!(r["epoch"], 1);
        for key in ["loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"] {
            assert!(r[key].as_f64().is_some_and(f64::is_finite), "{key}: {r}");
        }
    }
    let epoch = &rows[total];
    assert_eq!(
        (epoch["step"].as_u64(), epoch["best"].as_bool()),
        (Some(8), Some(true))
    );
    assert_eq!(epoch["metric"], "macro_f1");
    for key in ["train_loss", "val_loss", "val_metric"] {
        assert!(epoch[key].as_f64().is_some(), "{key}: {epoch}");
    }

    // BWB_LOG_EVERY sets the interval: an hour leaves only the last line.
    let p = p.set_env("BWB_LOG_EVERY", "3600");
    let run = p
        .bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            "zero-shot",
            "--seeds",
            "1",
        ])
        .ok();
    let log = run.stderr();
    let eval = lines_of(&log, "eval smoke/fpb/zero-shot/seed-");
    assert_eq!(eval.len(), 1, "{log}");
    assert!(eval[0].contains("done in"), "{log}");
}
