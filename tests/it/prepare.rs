//! `bwb prepare`: splits, stratification, balance, determinism and every kind of bad input.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{jsonl, snapshot, Project, REPO};

fn prepared(p: &Project, task: &str, split: &str) -> Vec<serde_json::Value> {
    jsonl(&p.read(&format!("data/smoke/prepared/{task}/{split}.jsonl")))
}

fn count_by(rows: &[serde_json::Value], key: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r[key].as_str().unwrap_or("-").to_string())
            .or_insert(0) += 1;
    }
    m
}

fn smoke_prepared() -> Project {
    let p = Project::new();
    p.bwb(&["--smoke-test", "download", "--task", "all"]).ok();
    p.bwb(&["--smoke-test", "prepare", "--task", "all"]).ok();
    p
}

#[test]
fn smoke_prepare_twice_gives_identical_bytes() {
    let p = smoke_prepared();
    let first = snapshot(&p.path("data/smoke/prepared"));
    assert_eq!(first.len(), 6 * 4);
    p.bwb(&["--smoke-test", "prepare", "--task", "all"]).ok();
    assert_eq!(first, snapshot(&p.path("data/smoke/prepared")));
    // ...and from a fresh download in another root too.
    let q = smoke_prepared();
    assert_eq!(first, snapshot(&q.path("data/smoke/prepared")));
    // Smoke outputs only under the smoke namespace.
    assert!(!p.path("data/prepared").exists() && !p.path("data/raw").exists());
}

#[test]
fn splits_are_disjoint_and_stratified() {
    let p = smoke_prepared();
    for task in ["banking77", "cuad", "fpb", "ledgar", "medmcqa", "mbpp"] {
        let mut ids = BTreeSet::new();
        let mut total = 0;
        for split in ["train", "val", "test"] {
            let rows = prepared(&p, task, split);
            assert!(!rows.is_empty(), "{task}/{split}");
            total += rows.len();
            ids.extend(rows.iter().map(|r| r["id"].as_str().unwrap().to_string()));
            for r in &rows {
                assert_eq!(r["task"], task);
                assert!(!r["target"].as_str().unwrap().is_empty());
            }
        }
        assert_eq!(ids.len(), total, "{task}: an id occurs in two splits");
    }
    // BANKING77 fixture: 12 intents × 4 rows in each raw split. Test takes 24 of the raw
    // test split (2 per intent), val holds out 12 of train (1 per intent).
    let test = count_by(&prepared(&p, "banking77", "test"), "stratum");
    assert_eq!(test.len(), 12);
    assert!(test.values().all(|&n| n == 2), "{test:?}");
    let val = count_by(&prepared(&p, "banking77", "val"), "stratum");
    assert!(val.values().all(|&n| n == 1) && val.len() == 12, "{val:?}");
    // FPB has only a train split: test (15) and val (9) are held out of its 54 rows.
    let fpb_test = count_by(&prepared(&p, "fpb", "test"), "stratum");
    assert_eq!(fpb_test.values().collect::<Vec<_>>(), [&5, &5, &5]);
    assert_eq!(prepared(&p, "fpb", "train").len(), 54 - 15 - 9);
}

#[test]
fn cuad_is_balanced_present_absent() {
    let p = smoke_prepared();
    for split in ["train", "val", "test"] {
        let c = count_by(&prepared(&p, "cuad", split), "stratum");
        assert_eq!(c.len(), 2, "{split}: {c:?}");
        assert_eq!(c["present"], c["absent"], "{split}: {c:?}");
    }
    for r in prepared(&p, "cuad", "test") {
        let spans = r["answer"]["spans"].as_array().unwrap();
        if spans.is_empty() {
            assert_eq!(r["target"], "No relevant clause.");
        } else {
            // Offsets point at the span text in the context (character offsets).
            let ctx: Vec<char> = r["inputs"]["context"].as_str().unwrap().chars().collect();
            for s in spans {
                let start = s["start"].as_u64().unwrap() as usize;
                let text = s["text"].as_str().unwrap();
                let got: String = ctx[start..start + text.chars().count()].iter().collect();
                assert_eq!(got, text);
            }
        }
    }
}

#[test]
fn task_specific_records() {
    let p = smoke_prepared();
    // MedMCQA: test comes from the raw validation split (the raw test has no answers).
    let raw_val: BTreeSet<String> = jsonl(&p.read("data/smoke/raw/medmcqa/validation.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    for r in prepared(&p, "medmcqa", "test") {
        assert!(raw_val.contains(r["id"].as_str().unwrap()));
        let letter = r["target"].as_str().unwrap();
        assert!(["A", "B", "C", "D"].contains(&letter));
        assert!(r["inputs"]["options"]
            .as_str()
            .unwrap()
            .contains(&format!("{letter}. ")));
    }
    // MBPP: LF line endings, tests carried along.
    for r in prepared(&p, "mbpp", "train") {
        assert!(!r["target"].as_str().unwrap().contains('\r'));
        assert!(!r["answer"]["tests"].as_array().unwrap().is_empty());
        assert!(r["stratum"].is_null());
    }
    // Labels are names from the config, not indices.
    for r in prepared(&p, "fpb", "train") {
        assert!(["negative", "neutral", "positive"].contains(&r["target"].as_str().unwrap()));
    }
    let m: serde_json::Value =
        serde_json::from_str(&p.read("data/smoke/prepared/ledgar/manifest.json")).unwrap();
    assert_eq!(m["train_500"], m["train"]);
    assert_eq!(m["seed"], 42);
}

#[test]
fn seed_precedence_cli_over_env_over_file() {
    let a = smoke_prepared();
    let default = a.read("data/smoke/prepared/fpb/test.jsonl");
    a.bwb(&["--smoke-test", "prepare", "--task", "fpb", "--seed", "7"])
        .ok();
    let cli7 = a.read("data/smoke/prepared/fpb/test.jsonl");
    assert_ne!(default, cli7, "another seed must give another split");

    let b = Project::new().set_env("BWB_SEED", "7");
    b.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    b.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    assert_eq!(
        cli7,
        b.read("data/smoke/prepared/fpb/test.jsonl"),
        "env seed"
    );
    b.bwb(&["--smoke-test", "prepare", "--task", "fpb", "--seed", "42"])
        .ok();
    assert_eq!(
        default,
        b.read("data/smoke/prepared/fpb/test.jsonl"),
        "CLI beats env"
    );

    // .env is below the process environment.
    let c = Project::new();
    c.write(".env", "BWB_SEED=7\n");
    c.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    c.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    assert_eq!(
        cli7,
        c.read("data/smoke/prepared/fpb/test.jsonl"),
        ".env seed"
    );
    let c = c.set_env("BWB_SEED", "42");
    c.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    assert_eq!(
        default,
        c.read("data/smoke/prepared/fpb/test.jsonl"),
        "env beats .env"
    );
}

#[test]
fn prepare_without_raw_data_names_the_command() {
    let p = Project::new();
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "fpb"])
        .fails(1);
    assert!(
        err.contains("bwb download --task fpb --smoke-test"),
        "{err}"
    );
    let err = p.bwb(&["prepare", "--task", "cuad"]).fails(1);
    assert!(err.contains("bwb download --task cuad`"), "{err}");
}

#[test]
fn malformed_row_names_file_and_line() {
    let p = Project::new().with_hf_home_cache();
    let target = p.path(
        "hf-home/hub/datasets--PolyAI--banking77/snapshots/714cddcf955880f86234b6713364d12991d4d93e/default/train/0000.parquet",
    );
    std::fs::copy(
        format!("{REPO}/tests/fixtures/broken/banking77_bad_rows.parquet"),
        &target,
    )
    .unwrap();
    p.bwb(&["download", "--task", "banking77"]).ok();
    // Real runs check row counts first; make the config expect the fixture's counts.
    let cfg = "configs/tasks/banking77.yaml";
    p.write(
        cfg,
        &p.read(cfg)
            .replace("rows: 10003", "rows: 6")
            .replace("rows: 3080", "rows: 48"),
    );
    let err = p.bwb(&["prepare", "--task", "banking77"]).fails(1);
    assert!(err.contains("train.jsonl line 3"), "{err}");
    assert!(err.contains("`label` is null"), "{err}");
    // Fix the null row by hand: the next bad row (label 99) is reported.
    let raw = p.read("data/raw/banking77/train.jsonl");
    let fixed: Vec<String> = raw
        .lines()
        .map(|l| l.replace("\"label\":null", "\"label\":3"))
        .collect();
    p.write("data/raw/banking77/train.jsonl", &(fixed.join("\n") + "\n"));
    let err = p.bwb(&["prepare", "--task", "banking77"]).fails(1);
    assert!(
        err.contains("train.jsonl line 5") && err.contains("99"),
        "{err}"
    );
    assert!(!p.path("data/prepared/banking77/manifest.json").exists());
}

#[test]
fn truncated_raw_split_fails_loudly() {
    let p = smoke_prepared();
    let before = snapshot(&p.path("data/smoke/prepared/fpb"));
    let raw = p.read("data/smoke/raw/fpb/train.jsonl");
    let half: Vec<&str> = raw.lines().take(20).collect();
    p.write("data/smoke/raw/fpb/train.jsonl", &(half.join("\n") + "\n"));
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "fpb"])
        .fails(1);
    assert!(
        err.contains("has 20 rows but the download wrote 54"),
        "{err}"
    );
    // The previous preparation is untouched.
    assert_eq!(before, snapshot(&p.path("data/smoke/prepared/fpb")));
}

#[test]
fn real_runs_check_row_counts_against_the_dataset() {
    let p = Project::new().with_hf_home_cache();
    p.bwb(&["download", "--task", "fpb"]).ok();
    let err = p.bwb(&["prepare", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("has 54 rows but takala/financial_phrasebank `train` has 2264"),
        "{err}"
    );
    // With counts and sizes that fit the fixture the same real path succeeds, outside smoke/.
    let cfg = "configs/tasks/fpb.yaml";
    p.write(
        cfg,
        &p.read(cfg)
            .replace("rows: 2264", "rows: 54")
            .replace("val_size: 200", "val_size: 6")
            .replace("test_sample_size: 500", "test_sample_size: 12"),
    );
    p.bwb(&["prepare", "--task", "fpb"]).ok();
    assert_eq!(jsonl(&p.read("data/prepared/fpb/test.jsonl")).len(), 12);
    assert_eq!(
        jsonl(&p.read("data/prepared/fpb/train.jsonl")).len(),
        54 - 18
    );
    assert!(!p.path("data/smoke").exists());
}

#[test]
fn edited_raw_line_is_reported() {
    let p = smoke_prepared();
    let raw = p.read("data/smoke/raw/medmcqa/train.jsonl");
    let mut lines: Vec<String> = raw.lines().map(str::to_string).collect();
    lines[6] = lines[6][..lines[6].len() / 2].to_string();
    p.write(
        "data/smoke/raw/medmcqa/train.jsonl",
        &(lines.join("\n") + "\n"),
    );
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "medmcqa"])
        .fails(1);
    assert!(
        err.contains("train.jsonl line 7") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn unlabelled_choice_rows_are_refused() {
    let p = smoke_prepared();
    let raw = p.read("data/smoke/raw/medmcqa/validation.jsonl");
    let mut lines: Vec<String> = raw.lines().map(str::to_string).collect();
    let mut row: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    row["cop"] = serde_json::json!(-1);
    lines[1] = row.to_string();
    p.write(
        "data/smoke/raw/medmcqa/validation.jsonl",
        &(lines.join("\n") + "\n"),
    );
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "medmcqa"])
        .fails(1);
    assert!(
        err.contains("validation.jsonl line 2") && err.contains("`cop` = -1"),
        "{err}"
    );
}

#[test]
fn unwritable_prepared_directory_keeps_raw_data() {
    let p = Project::new();
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    p.write("data/smoke/prepared", "blocker");
    let err = p
        .bwb(&["--smoke-test", "prepare", "--task", "fpb"])
        .fails(1);
    assert!(err.contains("cannot write"), "{err}");
    assert_eq!(jsonl(&p.read("data/smoke/raw/fpb/train.jsonl")).len(), 54);
}
