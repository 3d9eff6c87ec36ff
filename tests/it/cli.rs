//! The command-line surface: subcommands, required flags, unimplemented stages, config errors.

use crate::common::Project;

#[test]
fn help_lists_every_stage() {
    let p = Project::new();
    let out = p.bwb(&["--help"]).ok().stdout();
    for cmd in [
        "download",
        "prepare",
        "train",
        "eval",
        "classify",
        "dashboard",
        "run",
        "generate",
        "sync",
    ] {
        assert!(out.contains(cmd), "missing {cmd} in help:\n{out}");
    }
    assert!(out.contains("--smoke-test") && out.contains("--verbose"));
}

#[test]
fn download_and_prepare_refuse_without_task() {
    let p = Project::new();
    for cmd in ["download", "prepare"] {
        let run = p.bwb(&[cmd]);
        assert_eq!(run.code(), 2, "{cmd}: {}", run.stderr());
        assert!(run.stderr().contains("--task"), "{}", run.stderr());
    }
}

#[test]
fn reporting_stages_explain_what_to_run_first() {
    let p = Project::new();
    let err = p.bwb(&["classify", "--task", "fpb"]).fails(1);
    assert!(err.contains("bwb eval"), "{err}");
    let err = p.bwb(&["dashboard"]).fails(1);
    assert!(err.contains("bwb classify --task all"), "{err}");
}

#[test]
fn unknown_task_lists_valid_ones() {
    let p = Project::new();
    for cmd in ["download", "prepare"] {
        let err = p.bwb(&["--smoke-test", cmd, "--task", "imdb"]).fails(1);
        assert!(err.contains("unknown task `imdb`"), "{err}");
        for t in [
            "banking77",
            "cuad",
            "fpb",
            "ledgar",
            "mbpp",
            "medmcqa",
            "all",
        ] {
            assert!(err.contains(t), "{t} not listed: {err}");
        }
    }
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let p = Project::new();
    let path = "configs/tasks/fpb.yaml";
    let text = p.read(path).replace("val_size: 200", "val_size: [200");
    p.write(path, &text);
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "fpb"])
        .fails(1);
    assert!(err.contains("fpb.yaml:"), "{err}");
    let line = p
        .read(path)
        .lines()
        .position(|l| l.contains("[200"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!(":{line}")) || err.contains(&format!(":{}", line + 1)),
        "line {line}: {err}"
    );
}

#[test]
fn unknown_field_is_an_error_naming_it() {
    let p = Project::new();
    let path = "configs/training/qwen3-8b.yaml";
    let text = p
        .read(path)
        .replace("lr: 2.0e-4", "lr: 2.0e-4\nlearning_rat: 3.0e-4");
    p.write(path, &text);
    let err = p.bwb(&["download", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("qwen3-8b.yaml:") && err.contains("learning_rat"),
        "{err}"
    );
    let line = p
        .read(path)
        .lines()
        .position(|l| l.starts_with("learning_rat"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!(":{line}:")), "line {line}: {err}");
}

#[test]
fn missing_field_is_an_error_naming_it() {
    let p = Project::new();
    let path = "configs/tasks/banking77.yaml";
    let text: String = p
        .read(path)
        .lines()
        .filter(|l| !l.starts_with("metric_id"))
        .map(|l| format!("{l}\n"))
        .collect();
    p.write(path, &text);
    let err = p.bwb(&["prepare", "--task", "banking77"]).fails(1);
    assert!(
        err.contains("banking77.yaml") && err.contains("metric_id"),
        "{err}"
    );
}

#[test]
fn invalid_value_names_field() {
    let p = Project::new();
    let path = "configs/training/smoke.yaml";
    p.write(path, &p.read(path).replace("dropout: 0.0", "dropout: 1.5"));
    let err = p.bwb(&["prepare", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("smoke.yaml") && err.contains("lora.dropout") && err.contains("1.5"),
        "{err}"
    );
}

#[test]
fn unknown_model_in_run_defaults_is_named() {
    let p = Project::new();
    let path = "configs/run_defaults.yaml";
    p.write(path, &p.read(path).replace("gemma3-4b,", "gemma9-4b,"));
    let err = p.bwb(&["prepare", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("gemma9-4b") && err.contains("qwen3-8b"),
        "{err}"
    );
}

#[test]
fn missing_prompt_file_is_named() {
    let p = Project::new();
    std::fs::remove_file(p.path("prompts/mbpp/user.txt")).unwrap();
    let err = p.bwb(&["prepare", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("prompts.user") && err.contains("mbpp"),
        "{err}"
    );
}

#[test]
fn root_without_configs_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_bwb"))
        .args(["--root"])
        .arg(dir.path())
        .args(["download", "--task", "all"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("no configs/ directory") && err.contains("--root"),
        "{err}"
    );
}

#[test]
fn bad_env_value_is_named() {
    let p = Project::new().set_env("BWB_SEED", "forty-two");
    let err = p.bwb(&["prepare", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("BWB_SEED") && err.contains("forty-two"),
        "{err}"
    );
}

#[test]
fn unknown_model_lists_valid_ones() {
    let p = Project::new();
    for cmd in ["train", "eval"] {
        let err = p
            .bwb(&[cmd, "--model", "llama-99b", "--task", "fpb"])
            .fails(1);
        assert!(err.contains("unknown model `llama-99b`"), "{err}");
        for m in [
            "qwen3-8b",
            "gemma3-4b",
            "phi4-mini",
            "gpt-5.4-mini",
            "smoke",
        ] {
            assert!(err.contains(m), "{m} not listed: {err}");
        }
    }
    let err = p
        .bwb(&["eval", "--model", "smoke", "--task", "imdb"])
        .fails(1);
    assert!(err.contains("unknown task `imdb`"), "{err}");
}
