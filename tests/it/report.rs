//! `bwb classify` and `bwb run`: prediction files written by hand (each case's expected class
//! and score known), then the summaries, error classes, comparisons and TCO checked.

use serde_json::{json, Value};

use crate::common::{jsonl, Project};

/// One prediction line in the format `bwb eval` writes.
#[allow(clippy::too_many_arguments)]
fn pred(
    model: &str,
    task: &str,
    cond: &str,
    seed: u64,
    id: &str,
    raw: &str,
    prediction: Value,
    gold: Value,
    error: Option<&str>,
) -> Value {
    json!({
        "id": id, "example_id": id.split('#').next().unwrap(), "model": model, "task": task,
        "condition": cond, "seed": seed,
        "input_messages": [{"role": "user", "content": "x"}],
        "raw_output": raw, "prediction": prediction, "gold": gold,
        "input_tokens": 1000, "output_tokens": 10, "cached_input_tokens": 200,
        "latency_ms": 100.0 + seed as f64, "compute_ms": 50.0,
        "cost_usd": null, "error": error, "windows": 1, "from_cache": false
    })
}

fn write_preds(p: &Project, model: &str, task: &str, cond: &str, seed: u64, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    p.write(
        &format!("results/predictions/{model}/{task}/{cond}/seed-{seed}.jsonl"),
        &text,
    );
}

fn summary(p: &Project, model: &str, task: &str, cond: &str) -> Value {
    serde_json::from_str(&p.read(&format!("results/summaries/{model}_{task}_{cond}.json"))).unwrap()
}

fn label(l: Option<&str>) -> Value {
    json!({"kind": "label", "label": l})
}

fn gold_label(l: &str) -> Value {
    json!({"kind": "label", "label": l})
}

const FPB: [&str; 3] = ["negative", "neutral", "positive"];

/// fpb: ten examples; zero-shot gets 6 right and shows every wrong-answer class; lora-500
/// gets all right.
fn fpb_predictions(p: &Project, model: &str, seeds: &[u64]) {
    for &seed in seeds {
        let mut zs = Vec::new();
        let mut lora = Vec::new();
        for i in 0..10 {
            let id = format!("ex{i}");
            let gold = FPB[i % 3];
            let (raw, parsed, err) = match i {
                6 => ("positive", label(Some(if gold == "positive" { "neutral" } else { "positive" })), None),
                7 => ("bullish", label(None), None),
                8 => ("I cannot tell what the sentiment of this sentence is supposed to be, it depends", label(None), None),
                9 => ("", label(None), Some("HTTP 500 after 4 attempts")),
                _ => (gold, label(Some(gold)), None),
            };
            zs.push(pred(
                model,
                "fpb",
                "zero-shot",
                seed,
                &id,
                raw,
                parsed,
                gold_label(gold),
                err,
            ));
            lora.push(pred(
                model,
                "fpb",
                "lora-500",
                seed,
                &id,
                gold,
                label(Some(gold)),
                gold_label(gold),
                None,
            ));
        }
        write_preds(p, model, "fpb", "zero-shot", seed, &zs);
        write_preds(p, model, "fpb", "lora-500", seed, &lora);
    }
}

#[test]
fn classify_labels_classes_metrics_comparisons_and_tco() {
    let p = Project::new();
    fpb_predictions(&p, "smoke", &[1, 2]);
    p.write(
        "results/training/smoke_fpb_lora-500.json",
        r#"{"wall_seconds": 3600.0}"#,
    );
    let out = p.bwb(&["classify", "--task", "fpb"]).ok().stdout();
    assert!(out.contains("smoke/fpb/zero-shot: macro_f1"), "{out}");
    assert!(
        out.contains("overview → results/summaries/all.csv"),
        "{out}"
    );

    // Per-example classes.
    let classes = jsonl(&p.read("results/classified/smoke_fpb_zero-shot.jsonl"));
    assert_eq!(classes.len(), 20);
    let class_of = |id: &str| {
        classes
            .iter()
            .find(|c| c["id"] == id && c["seed"] == 1)
            .unwrap()["class"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(class_of("ex0"), "correct");
    assert_eq!(class_of("ex6"), "wrong_label");
    assert_eq!(class_of("ex7"), "label_outside_set");
    assert_eq!(class_of("ex8"), "unparseable");
    assert_eq!(class_of("ex9"), "request_error");

    let s = summary(&p, "smoke", "fpb", "zero-shot");
    assert_eq!(s["model_kind"], "local");
    assert_eq!(s["primary_metric"], "macro_f1");
    // Lines without `generation` are an earlier bwb's bootstrap draws, scored as before.
    assert_eq!(s["spread"], "bootstrap_draws");
    assert_eq!(s["seeds"], json!([1, 2]));
    // The request error is left out: 9 scored per seed, 6 right.
    assert_eq!(s["n_predictions"], 18);
    assert_eq!(s["n_examples"], 9);
    let acc = &s["metrics"]["accuracy"];
    assert!(
        (acc["mean"].as_f64().unwrap() - 6.0 / 9.0).abs() < 1e-12,
        "{acc}"
    );
    assert_eq!(acc["std"].as_f64().unwrap(), 0.0);
    assert_eq!(acc["per_seed"].as_array().unwrap().len(), 2);
    let (lo, hi) = (
        acc["ci_low"].as_f64().unwrap(),
        acc["ci_high"].as_f64().unwrap(),
    );
    assert!(
        lo < 6.0 / 9.0 && 6.0 / 9.0 < hi && lo >= 0.0 && hi <= 1.0,
        "{acc}"
    );
    for m in ["macro_f1", "weighted_f1"] {
        let v = s["metrics"][m]["mean"].as_f64().unwrap();
        assert!(v > 0.0 && v < 1.0, "{m} {v}");
    }
    assert_eq!(
        s["error_classes"],
        json!({"correct": 12, "wrong_label": 2, "label_outside_set": 2, "unparseable": 2, "request_error": 2})
    );
    assert_eq!(s["latency_ms"]["p50"].as_f64().unwrap(), 101.5);
    assert_eq!(s["tokens"]["total_input"], 18_000);

    // Local cost: 50 ms of compute per query at the default GPU's hourly price.
    let hourly = 2.69;
    let per_query = s["cost"]["per_query_usd"].as_f64().unwrap();
    assert!(
        (per_query - 0.05 / 3600.0 * hourly).abs() < 1e-15,
        "{per_query}"
    );
    assert_eq!(s["cost"]["basis"], "gpu:h100-80gb");
    let tco = &s["tco"];
    assert_eq!(tco["training_usd"].as_f64().unwrap(), 0.0);
    let first = &tco["points"][0];
    // Always on: at least one GPU for the month.
    assert!((first["monthly_usd"].as_f64().unwrap() - 730.0 * hourly).abs() < 1e-9);
    // The LoRA condition adds its one-off training hour.
    let lora = summary(&p, "smoke", "fpb", "lora-500");
    assert!((lora["tco"]["training_usd"].as_f64().unwrap() - hourly).abs() < 1e-12);
    assert_eq!(lora["metrics"]["macro_f1"]["mean"], 1.0);

    // Paired comparison on the 9 examples both scored: lora-500 right where zero-shot is
    // wrong on 3 examples, never the other way round.
    let cmp = s["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["condition"] == "lora-500")
        .unwrap();
    assert_eq!(cmp["n_paired"], 9);
    assert_eq!(cmp["score"], "correct");
    assert!(
        (cmp["mean_diff"].as_f64().unwrap() + 3.0 / 9.0).abs() < 1e-12,
        "{cmp}"
    );
    assert_eq!(cmp["mcnemar"]["only_a"], 0);
    assert_eq!(cmp["mcnemar"]["only_b"], 3);
    assert_eq!(cmp["mcnemar"]["exact"], true);
    // Exact two-sided binomial: 2 × 0.5³.
    assert!((cmp["mcnemar"]["p_value"].as_f64().unwrap() - 0.25).abs() < 1e-12);

    // CSVs: the flattened summary and the overview.
    let csv = p.read("results/summaries/smoke_fpb_zero-shot.csv");
    assert!(csv.starts_with("key,value\n"), "{csv}");
    assert!(csv.contains("metrics.accuracy.mean,0.666666"), "{csv}");
    let all = p.read("results/summaries/all.csv");
    assert_eq!(all.lines().count(), 3, "{all}");
    assert!(all.contains("fpb,smoke,lora-500,macro_f1,1,"), "{all}");

    // Predictions removed → their summary goes at the next classify.
    std::fs::remove_dir_all(p.path("results/predictions/smoke/fpb/lora-500")).unwrap();
    p.bwb(&["classify", "--task", "fpb"]).ok();
    assert!(!p.path("results/summaries/smoke_fpb_lora-500.json").exists());
    assert!(!p.path("results/summaries/smoke_fpb_lora-500.csv").exists());
    assert!(p
        .path("results/summaries/smoke_fpb_zero-shot.json")
        .exists());
    assert_eq!(p.read("results/summaries/all.csv").lines().count(), 2);
}

/// A greedy generation beside an earlier bwb's bootstrap-draw files: only the generation is
/// scored; its whole-test-set metric is the headline and the eval seeds resample it.
#[test]
fn classify_scores_the_one_greedy_generation_and_resamples_it() {
    let p = Project::new();
    fpb_predictions(&p, "smoke", &[2, 3]);
    let greedy: Vec<Value> = (0..10)
        .map(|i| {
            let gold = FPB[i % 3];
            let said = if i < 4 { "negative" } else { gold };
            let mut v = pred(
                "smoke",
                "fpb",
                "zero-shot",
                1,
                &format!("ex{i}"),
                said,
                label(Some(said)),
                gold_label(gold),
                None,
            );
            v["generation"] = json!("greedy");
            v
        })
        .collect();
    write_preds(&p, "smoke", "fpb", "zero-shot", 1, &greedy);
    let run = p.bwb(&["classify", "--task", "fpb", "--seeds", "2"]).ok();
    assert!(
        run.stdout()
            .contains("10 predictions, one greedy generation, ± over 2 resample(s)"),
        "{}",
        run.stdout()
    );
    assert!(run.stderr().contains("left out"), "{}", run.stderr());
    let s = summary(&p, "smoke", "fpb", "zero-shot");
    assert_eq!(s["spread"], "test_resamples");
    assert_eq!(s["seeds"], json!([1, 2]));
    assert_eq!(s["n_predictions"], 10);
    // ex1 (neutral) and ex2 (positive) answered negative: 8 of 10 right on the whole set.
    let acc = &s["metrics"]["accuracy"];
    assert_eq!(acc["mean"].as_f64().unwrap(), 0.8);
    assert_eq!(acc["per_seed"].as_array().unwrap().len(), 2);
    assert!(acc["std"].as_f64().is_some());
    let classes = jsonl(&p.read("results/classified/smoke_fpb_zero-shot.jsonl"));
    assert_eq!(classes.len(), 10);
}

#[test]
fn classify_api_models_cost_their_tokens() {
    let p = Project::new();
    let m = "gpt-5.4-mini";
    let lines: Vec<Value> = (0..4)
        .map(|i| {
            let mut v = pred(
                m,
                "fpb",
                "zero-shot",
                1,
                &format!("e{i}"),
                "neutral",
                label(Some("neutral")),
                gold_label("neutral"),
                None,
            );
            v["compute_ms"] = Value::Null;
            v["cost_usd"] = json!(0.001);
            v
        })
        .collect();
    write_preds(&p, m, "fpb", "zero-shot", 1, &lines);
    p.bwb(&["classify", "--task", "all"]).ok();
    let s = summary(&p, m, "fpb", "zero-shot");
    assert_eq!(s["model_kind"], "api");
    // 800 fresh input tokens at $0.75/M, 200 cached at $0.075/M, 10 output at $4.50/M.
    let want = (800.0 * 0.75 + 200.0 * 0.075 + 10.0 * 4.5) / 1e6;
    assert!((s["cost"]["per_query_usd"].as_f64().unwrap() - want).abs() < 1e-15);
    assert!((s["cost"]["spent_usd"].as_f64().unwrap() - 0.004).abs() < 1e-15);
    let pts = s["tco"]["points"].as_array().unwrap();
    assert_eq!(pts[0]["monthly_queries"], 1000);
    assert!((pts[0]["twelve_month_usd"].as_f64().unwrap() - 12.0 * 1000.0 * want).abs() < 1e-9);
    assert!(pts[0]["gpu_hours_per_month"].is_null());
}

fn spans(v: &[&str]) -> Value {
    json!({"kind": "spans", "spans": v})
}

fn gold_spans(v: &[&str]) -> Value {
    let s: Vec<Value> = v.iter().map(|t| json!({"text": t, "start": 0})).collect();
    json!({"kind": "spans", "spans": s})
}

#[test]
fn classify_clause_extraction() {
    let p = Project::new();
    let cases = [
        (
            spans(&["The term is five years"]),
            gold_spans(&["The term is five years"]),
            "correct",
            1.0,
        ),
        (spans(&[]), gold_spans(&[]), "correct", 1.0),
        (
            spans(&[]),
            gold_spans(&["Licensee may not assign"]),
            "missed_clause",
            0.0,
        ),
        (
            spans(&["Governed by Delaware law"]),
            gold_spans(&[]),
            "false_positive",
            0.0,
        ),
        // pred {term, is, five}, gold {term, is, five, years}: P 1, R 3/4, F1 6/7.
        (
            spans(&["term is five"]),
            gold_spans(&["The term is five years"]),
            "partial_span",
            6.0 / 7.0,
        ),
        (
            spans(&["payment net thirty"]),
            gold_spans(&["exclusive license"]),
            "wrong_span",
            0.0,
        ),
    ];
    let lines: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (pr, g, _, _))| {
            pred(
                "smoke",
                "cuad",
                "zero-shot",
                1,
                &format!("c{i}"),
                "x",
                pr.clone(),
                g.clone(),
                None,
            )
        })
        .collect();
    write_preds(&p, "smoke", "cuad", "zero-shot", 1, &lines);
    p.bwb(&["classify", "--task", "cuad"]).ok();
    let classes = jsonl(&p.read("results/classified/smoke_cuad_zero-shot.jsonl"));
    for (c, (_, _, want, score)) in classes.iter().zip(&cases) {
        assert_eq!(c["class"], *want, "{c}");
        assert!((c["score"].as_f64().unwrap() - score).abs() < 1e-12, "{c}");
    }
    let s = summary(&p, "smoke", "cuad", "zero-shot");
    assert_eq!(s["primary_metric"], "cuad_f1");
    let f1 = s["metrics"]["cuad_f1"]["mean"].as_f64().unwrap();
    assert!((f1 - (2.0 + 6.0 / 7.0) / 6.0).abs() < 1e-12, "{f1}");
    // Detection: 4 gold positives; found 3 of them (1 missed) and 1 false positive.
    let det = &s["metrics"];
    assert!((det["answer_detection_precision"]["mean"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    assert!((det["answer_detection_recall"]["mean"].as_f64().unwrap() - 0.75).abs() < 1e-12);
    assert!(det["aupr"]["mean"].as_f64().unwrap() > 0.0);
    assert!((det["exact_match"]["mean"].as_f64().unwrap() - 2.0 / 6.0).abs() < 1e-12);
    // Extraction scores are graded: no McNemar.
    assert!(s["comparisons"].as_array().unwrap().is_empty());
}

fn code(c: &str) -> Value {
    json!({"kind": "code", "code": c})
}

#[test]
fn classify_code_needs_opt_in_then_runs_each_program_sandboxed() {
    let p = Project::new();
    let gold = json!({"kind": "code", "reference": "def add(a, b):\n    return a + b",
        "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"], "setup": "", "challenge_tests": []});
    let cases = [
        ("def add(a, b):\n    return a + b", "correct"),
        ("def add(a, b) return a + b", "syntax_error"),
        ("def add(a, b):\n    return a - b", "failed_assertion"),
        ("def add(a, b):\n    return undefined_name", "runtime_error"),
        ("def add(a, b):\n    while True:\n        pass", "timeout"),
    ];
    let lines: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (c, _))| {
            pred(
                "smoke",
                "mbpp",
                "zero-shot",
                1,
                &format!("m{i}"),
                c,
                code(c),
                gold.clone(),
                None,
            )
        })
        .collect();
    write_preds(&p, "smoke", "mbpp", "zero-shot", 1, &lines);

    let err = p.bwb(&["classify", "--task", "mbpp"]).fails(1);
    assert!(err.contains("--allow-code-execution"), "{err}");
    assert!(!p.path("results/summaries").exists());
    // `all` skips it with a note instead, and has nothing else to score.
    let err = p.bwb(&["classify", "--task", "all"]).fails(1);
    assert!(err.contains("no predictions"), "{err}");

    let out = p
        .bwb(&[
            "classify",
            "--task",
            "mbpp",
            "--allow-code-execution",
            "--exec-timeout",
            "2",
        ])
        .ok()
        .stdout();
    assert!(out.contains("ran 5 distinct programs"), "{out}");
    let classes = jsonl(&p.read("results/classified/smoke_mbpp_zero-shot.jsonl"));
    for (c, (_, want)) in classes.iter().zip(&cases) {
        assert_eq!(c["class"], *want, "{c}");
    }
    let failing = classes
        .iter()
        .find(|c| c["class"] == "failed_assertion")
        .unwrap();
    assert!(
        failing["detail"]
            .as_str()
            .unwrap()
            .contains("add(1, 2) == 3"),
        "{failing}"
    );
    let s = summary(&p, "smoke", "mbpp", "zero-shot");
    assert_eq!(s["primary_metric"], "pass_at_1");
    assert!((s["metrics"]["pass_at_1"]["mean"].as_f64().unwrap() - 0.2).abs() < 1e-12);
}

#[test]
fn classify_bad_input_is_one_line() {
    let p = Project::new();
    let err = p.bwb(&["classify", "--task", "fpb"]).fails(1);
    assert!(
        err.contains("no predictions for fpb") && err.contains("bwb eval"),
        "{err}"
    );
    let err = p.bwb(&["classify", "--task", "imdb"]).fails(1);
    assert!(err.contains("unknown task `imdb`"), "{err}");
    let err = p
        .bwb(&["classify", "--task", "fpb", "--exec-timeout", "0"])
        .fails(1);
    assert!(err.contains("--exec-timeout 0"), "{err}");

    // A torn last line (an eval killed mid-write) is skipped; a bad line elsewhere is named.
    fpb_predictions(&p, "smoke", &[1]);
    let path = "results/predictions/smoke/fpb/zero-shot/seed-1.jsonl";
    let good = p.read(path);
    p.write(path, &format!("{good}{{\"id\": \"torn"));
    p.bwb(&["classify", "--task", "fpb"]).ok();
    assert_eq!(summary(&p, "smoke", "fpb", "zero-shot")["n_predictions"], 9);
    p.write(path, &format!("{{not json}}\n{good}"));
    let err = p.bwb(&["classify", "--task", "fpb"]).fails(1);
    assert!(err.contains("seed-1.jsonl line 1"), "{err}");

    // A corrupt summary is named by the overview writer, not silently dropped.
    p.write(path, &good);
    p.write("results/summaries/junk_fpb_x.json", "{}");
    let r = p.bwb(&["classify", "--task", "fpb"]);
    assert_eq!(r.code(), 1);
    // (stderr also holds the warning about the request error of ex9)
    let err = r.stderr();
    let last = err.trim().lines().last().unwrap();
    assert!(
        last.starts_with("error: ")
            && last.contains("junk_fpb_x.json")
            && last.contains("not a bwb summary"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn smoke_run_chains_every_stage_and_skips_what_is_done() {
    let p = Project::new();
    let args = [
        "--smoke-test",
        "run",
        "--tasks",
        "fpb,mbpp",
        "--conditions",
        "zero-shot,lora-500",
        "--seeds",
        "1",
        "--allow-code-execution",
    ];
    let out = p.bwb(&args).ok().stdout();
    for stage in [
        "download",
        "prepare",
        "train",
        "eval",
        "classify",
        "dashboard",
    ] {
        assert!(out.contains(&format!("==> {stage}")), "{stage}: {out}");
    }
    for f in [
        "results/smoke/summaries/smoke_fpb_zero-shot.json",
        "results/smoke/summaries/smoke_fpb_lora-500.json",
        "results/smoke/summaries/smoke_mbpp_lora-500.json",
        "results/smoke/training/smoke_fpb_lora-500.json",
        "dashboard-data/smoke/summaries.json",
        "site/smoke/index.html",
    ] {
        assert!(p.path(f).is_file(), "{f} missing; stdout:\n{out}");
    }
    // Nothing is redone the second time.
    let again = p.bwb(&args).ok().stdout();
    for done in [
        "fpb: raw data present; skipped",
        "fpb: prepared; skipped",
        "smoke/fpb/lora-500: trained; skipped",
        "smoke/mbpp/zero-shot: evaluated; skipped",
    ] {
        assert!(again.contains(done), "{done}: {again}");
    }
    assert!(!again.contains("best epoch"), "{again}");
    // Without the opt-in, code is not run and says how to get it scored.
    let out = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--tasks",
            "mbpp",
            "--conditions",
            "zero-shot",
            "--seeds",
            "1",
        ])
        .ok()
        .stdout();
    assert!(
        out.contains("mbpp: not scored") && out.contains("--allow-code-execution"),
        "{out}"
    );
}

#[test]
fn run_checks_api_keys_and_names_before_any_stage() {
    let p = Project::new();
    let err = p
        .bwb(&[
            "--smoke-test",
            "run",
            "--models",
            "gpt-5.4-mini",
            "--tasks",
            "fpb",
        ])
        .fails(1);
    assert!(err.contains("OPENAI_API_KEY is not set"), "{err}");
    assert!(
        !p.path("data/smoke").exists(),
        "a stage ran before the check"
    );
    let err = p.bwb(&["--smoke-test", "run", "--models", "nope"]).fails(1);
    assert!(err.contains("unknown model `nope`"), "{err}");
    let err = p
        .bwb(&["--smoke-test", "run", "--conditions", "zero-shot,ten-shot"])
        .fails(1);
    assert!(err.contains("--condition ten-shot"), "{err}");
    let err = p.bwb(&["--smoke-test", "run", "--seeds", "9"]).fails(1);
    assert!(err.contains("--seeds 9"), "{err}");
    assert!(!p.path("data/smoke").exists());
}
