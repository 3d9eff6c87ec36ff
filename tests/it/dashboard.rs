//! `bwb dashboard`: summaries → dashboard-data/*.json and a static site whose charts draw in
//! headless Chromium without errors; strings from the data cannot inject markup; the page's
//! own health check catches a broken page; bad input gives one line saying what to do.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bwb::dashboard;
use bwb::paths::Paths;
use serde_json::{json, Value};

use crate::common::Project;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Metric bars, metric vs cost, latency, TCO.
const CHARTS_PER_TASK: usize = 4;
pub(crate) const TASKS: [(&str, &str); 2] = [("banking77", "accuracy"), ("fpb", "macro_f1")];
const MODELS: [(&str, &str); 3] = [
    ("gemma3-4b", "local"),
    ("qwen3-8b", "local"),
    ("gpt-5.4-mini", "api"),
];
const LOCAL_CONDITIONS: [&str; 4] = ["zero-shot", "5-shot", "lora-500", "lora-full"];
const API_CONDITIONS: [&str; 2] = ["zero-shot", "5-shot"];
/// 2 tasks × (2 local models × 4 conditions + 1 API model × 2 conditions).
const N_SUMMARIES: usize = 20;

// ---- fixtures ---------------------------------------------------------------------------

/// A summary shaped like `bwb classify` writes, with plausible numbers: LoRA beats prompting,
/// the API model is slower and dearer per query, LoRA conditions carry a training cost.
fn summary(task: &str, metric: &str, model: &str, kind: &str, condition: &str) -> Value {
    let api = kind == "api";
    let skill = match model {
        _ if api => 0.78,
        "qwen3-8b" => 0.61,
        _ => 0.54,
    };
    let lift = match condition {
        "5-shot" => 0.05,
        "lora-500" => 0.15,
        "lora-full" => 0.22,
        _ => 0.0,
    };
    let mean = f64::min(skill + lift - if task == "fpb" { 0.04 } else { 0.0 }, 0.96);
    let per_seed = [mean - 0.012, mean + 0.004, mean + 0.008];
    let std = (per_seed.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    let input_tokens = if condition == "5-shot" { 1350.0 } else { 310.0 };
    // Longer prompts take longer; the API adds network and queueing time.
    let p50 = input_tokens / 20.0
        + if api {
            620.0
        } else if model == "qwen3-8b" {
            120.0
        } else {
            80.0
        };
    let per_query = if api {
        (input_tokens * 0.75 + 6.0 * 4.50) / 1e6
    } else {
        p50 * 0.6 / 1e3 / 3600.0 * 2.69 // compute seconds × H100 hourly price
    };
    let training_hours: f64 = match condition {
        "lora-500" => 0.4,
        "lora-full" => 1.6,
        _ => 0.0,
    };
    let training_usd = training_hours * 2.69;
    let points: Vec<Value> = [1_000u64, 10_000, 100_000, 1_000_000, 10_000_000]
        .iter()
        .map(|&q| {
            let monthly = per_query * q as f64;
            json!({
                "monthly_queries": q,
                "twelve_month_usd": 12.0 * monthly + training_usd,
                "monthly_usd": monthly,
                "gpu_hours_per_month": (!api).then(|| q as f64 * p50 * 0.6 / 1e3 / 3600.0),
            })
        })
        .collect();
    let n = 500u64;
    let correct = (mean * (3 * n) as f64).round() as u64;
    let mut metrics = serde_json::Map::new();
    for (name, shift) in [(metric, 0.0), ("exact_match", -0.03)] {
        metrics.insert(
            name.to_string(),
            json!({
                "mean": mean + shift, "std": std, "p50": mean + shift, "p95": mean + shift + 0.007,
                "ci_low": mean + shift - 0.034, "ci_high": mean + shift + 0.031,
                "per_seed": per_seed.iter().map(|x| x + shift).collect::<Vec<_>>(),
            }),
        );
    }
    json!({
        "model": model,
        "model_kind": kind,
        "task": task,
        "condition": condition,
        "primary_metric": metric,
        "spread": "test_resamples",
        "seeds": [1, 2, 3],
        "n_predictions": 3 * n,
        "n_examples": n,
        "metrics": metrics,
        "latency_ms": {"mean": p50 * 1.1, "std": p50 * 0.3, "p50": p50, "p95": p50 * 2.2, "max": p50 * 4.0},
        "tokens": {
            "input": {"mean": input_tokens, "std": 40.0, "p50": input_tokens, "p95": input_tokens + 80.0, "max": input_tokens + 200.0},
            "output": {"mean": 6.0, "std": 1.0, "p50": 6.0, "p95": 8.0, "max": 12.0},
            "cached_input_mean": 0.0,
            "total_input": (input_tokens as u64) * 3 * n,
            "total_output": 18 * n,
        },
        "cost": {
            "per_query_usd": per_query,
            "spent_usd": api.then(|| per_query * (3 * n) as f64),
            "basis": if api { "api" } else { "gpu:h100-80gb" },
        },
        "error_classes": {"correct": correct, "wrong_label": 3 * n - correct - 4, "unparseable": 4},
        "comparisons": [{
            "model": "gpt-5.4-mini", "condition": "zero-shot", "score": "correct", "n_paired": n,
            "mean_diff": mean - 0.78, "ci_low": mean - 0.82, "ci_high": mean - 0.74, "p_value": 0.01,
            "mcnemar": {"only_a": 40, "only_b": 25, "statistic": 3.46, "p_value": 0.06, "exact": false},
        }],
        "tco": {
            "basis": if api { "api" } else { "gpu:h100-80gb" },
            "per_query_usd": per_query,
            "training_usd": training_usd,
            "training_hours": (training_hours > 0.0).then_some(training_hours),
            "throughput_qps": (!api).then(|| 1e3 / (p50 * 0.6)),
            "points": points,
        },
        "prices_as_of": "2026-03-18",
    })
}

/// Every model × condition of every task in `tasks`.
pub(crate) fn all_summaries(tasks: &[(&str, &str)]) -> Vec<Value> {
    let mut out = Vec::new();
    for (task, metric) in tasks {
        for (model, kind) in MODELS {
            let conditions: &[&str] = if kind == "api" {
                &API_CONDITIONS
            } else {
                &LOCAL_CONDITIONS
            };
            for c in conditions {
                out.push(summary(task, metric, model, kind, c));
            }
        }
    }
    out
}

/// Write summaries as results/summaries/<n>.json under `root` (smoke: results/smoke/…).
pub(crate) fn write_summaries(root: &Path, smoke: bool, summaries: &[Value]) -> PathBuf {
    let dir = Paths::new(root, smoke).results().join("summaries");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in summaries.iter().enumerate() {
        let text = serde_json::to_string_pretty(s).unwrap();
        std::fs::write(dir.join(format!("s{i:02}.json")), text).unwrap();
    }
    dir
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

// ---- headless Chromium ------------------------------------------------------------------

/// Chromium, or None after printing a SKIP line; with BWB_REQUIRE_CHROMIUM=1 (CI) a missing
/// browser fails the test instead.
fn chromium(test: &str) -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    let hint = "install it with `apt-get install -y chromium`";
    if std::env::var("BWB_REQUIRE_CHROMIUM").as_deref() == Ok("1") {
        panic!("{CHROMIUM} not found and BWB_REQUIRE_CHROMIUM=1; {hint}");
    }
    println!(
        "SKIP {test}: {CHROMIUM} not found; {hint} (BWB_REQUIRE_CHROMIUM=1 makes this a failure)"
    );
    None
}

/// Run headless Chromium on `page` with `extra` flags; stdout as text. Output goes to files,
/// not pipes, so a large DOM cannot block the browser while we wait on it.
fn run_chromium(browser: &str, page: &Path, extra: &[String]) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.path().join("profile").display()
        ))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "chromium ran over 120 s on {}; stderr:\n{}",
                page.display(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success(),
        "chromium failed ({status}) on {}; stderr:\n{}",
        page.display(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    stdout
}

/// What the page recorded about itself on <body>.
#[derive(Debug)]
struct Health {
    charts_drawn: Option<usize>,
    blank_canvases: Option<usize>,
    errors: Vec<String>,
    dom: String,
}

fn render(browser: &str, site: &Path) -> Health {
    let dom = run_chromium(browser, &site.join("index.html"), &["--dump-dom".into()]);
    let attrs = body_attributes(&dom);
    let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let errors = get("data-errors").unwrap_or_else(|| panic!("no data-errors on <body>:\n{dom}"));
    Health {
        charts_drawn: get("data-charts-drawn").map(|v| v.parse().unwrap()),
        blank_canvases: get("data-blank-canvases").map(|v| v.parse().unwrap()),
        errors: serde_json::from_str(&errors).unwrap_or_else(|e| panic!("{errors}: {e}")),
        dom,
    }
}

/// The attributes of the first <body> tag in serialized HTML, entity-decoded.
fn body_attributes(dom: &str) -> Vec<(String, String)> {
    let start = dom.find("<body").expect("no <body> in the dumped DOM") + "<body".len();
    let mut rest = &dom[start..];
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with('>') || rest.is_empty() {
            return out;
        }
        let name_end = rest
            .find(|c: char| c == '=' || c == '>' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_string();
        rest = &rest[name_end..];
        if let Some(after) = rest.strip_prefix("=\"") {
            let end = after.find('"').expect("unterminated attribute");
            out.push((name, unescape(&after[..end])));
            rest = &after[end + 1..];
        } else {
            out.push((name, String::new()));
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// target/test-artifacts/, beside target/tmp.
fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- data files -------------------------------------------------------------------------

#[test]
fn dashboard_writes_data_per_task_and_replaces_stale_files() {
    let root = tempfile::tempdir().unwrap();
    let summaries = all_summaries(&TASKS);
    let dir = write_summaries(root.path(), false, &summaries);
    // Files that are not summaries are left alone: CSV siblings, an atomic write in progress.
    std::fs::write(dir.join("all.csv"), "task,model\n").unwrap();
    std::fs::write(dir.join(".bwb-tmp-x"), "{").unwrap();

    let paths = Paths::new(root.path(), false);
    let built = dashboard::build(&paths).unwrap();
    assert_eq!((built.summaries, built.tasks), (N_SUMMARIES, 2));
    assert_eq!(built.data_dir, root.path().join("dashboard-data"));
    assert_eq!(built.site_dir, root.path().join("site"));
    assert_eq!(dashboard::site(&paths), built.site_dir);

    // summaries.json: all of them, sorted by task, model, condition.
    let all = read_json(&built.data_dir.join("summaries.json"));
    let keys: Vec<(String, String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_string();
            (f("task"), f("model"), f("condition"))
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), N_SUMMARIES);
    assert_eq!(all[0], summaries_sorted_first(&summaries));

    let index = read_json(&built.data_dir.join("index.json"));
    let at = index["generated_at"].as_str().unwrap();
    assert!(
        at.len() == 20 && at.as_bytes()[10] == b'T' && at.ends_with('Z'),
        "not RFC 3339 UTC: {at}"
    );
    assert_eq!(index["tasks"][0]["name"], "banking77");
    assert_eq!(index["tasks"][1]["primary_metric"], "macro_f1");
    assert_eq!(index["tasks"][1]["file"], "fpb.json");
    assert_eq!(index["conditions"].as_array().unwrap().len(), 4);
    assert_eq!(
        index["models"][1],
        json!({"name": "gpt-5.4-mini", "kind": "api"})
    );
    assert_eq!(index["prices_as_of"], json!(["2026-03-18"]));
    assert_eq!(
        index["counts"],
        json!({"summaries": 20, "tasks": 2, "models": 3, "conditions": 4})
    );

    let fpb = read_json(&built.data_dir.join("fpb.json"));
    assert_eq!(fpb["task"], "fpb");
    assert_eq!(fpb["primary_metric"], "macro_f1");
    assert_eq!(fpb["summaries"].as_array().unwrap().len(), 10);

    // The site: assets plus data.js carrying the same data.
    for f in [
        "index.html",
        "health.js",
        "app.js",
        "style.css",
        "vendor/chart.umd.min.js",
        "vendor/LICENSE.chartjs",
    ] {
        assert!(built.site_dir.join(f).is_file(), "missing site/{f}");
    }
    let data_js = std::fs::read_to_string(built.site_dir.join("data.js")).unwrap();
    let json_text = data_js
        .split_once("window.BWB_DATA = ")
        .and_then(|(_, rest)| rest.trim_end().strip_suffix(';'))
        .expect("data.js assigns window.BWB_DATA");
    let page: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(page["index"]["counts"], index["counts"]);
    assert_eq!(page["tasks"][1], fpb);

    // Drop a task: its per-task file goes, the rest is rewritten.
    for (i, s) in summaries.iter().enumerate() {
        if s["task"] == "banking77" {
            std::fs::remove_file(dir.join(format!("s{i:02}.json"))).unwrap();
        }
    }
    let built = dashboard::build(&paths).unwrap();
    assert_eq!((built.summaries, built.tasks), (10, 1));
    assert!(!built.data_dir.join("banking77.json").exists());
    assert!(built.data_dir.join("fpb.json").is_file());
    assert_eq!(
        read_json(&built.data_dir.join("index.json"))["counts"]["tasks"],
        1
    );
}

fn summaries_sorted_first(summaries: &[Value]) -> Value {
    let mut v = summaries.to_vec();
    let key = |s: &Value| {
        (
            s["task"].as_str().unwrap().to_string(),
            s["model"].as_str().unwrap().to_string(),
            s["condition"].as_str().unwrap().to_string(),
        )
    };
    v.sort_by_key(key);
    v[0].clone()
}

#[test]
fn dashboard_smoke_outputs_stay_under_smoke() {
    let root = tempfile::tempdir().unwrap();
    write_summaries(root.path(), true, &all_summaries(&TASKS[..1]));
    let built = dashboard::build(&Paths::new(root.path(), true)).unwrap();
    assert_eq!(built.data_dir, root.path().join("dashboard-data/smoke"));
    assert_eq!(built.site_dir, root.path().join("site/smoke"));
    assert!(built.site_dir.join("index.html").is_file());
    assert!(built.data_dir.join("banking77.json").is_file());
    assert!(!root.path().join("site/index.html").exists());
    assert!(!root.path().join("dashboard-data/index.json").exists());
}

#[test]
fn dashboard_without_summaries_names_dir_and_command() {
    let root = tempfile::tempdir().unwrap();
    let paths = Paths::new(root.path(), false);
    let missing = dashboard::build(&paths).unwrap_err().to_string();
    // An existing but empty directory reads the same.
    std::fs::create_dir_all(paths.results().join("summaries")).unwrap();
    let empty = dashboard::build(&paths).unwrap_err().to_string();
    for err in [missing, empty] {
        assert!(err.contains("results/summaries"), "{err}");
        assert!(err.contains("bwb classify --task all"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!root.path().join("site").exists());
}

#[test]
fn dashboard_bad_summary_names_file_and_field() {
    let root = tempfile::tempdir().unwrap();
    let mut summaries = all_summaries(&TASKS[..1]);
    summaries[3].as_object_mut().unwrap().remove("latency_ms");
    let dir = write_summaries(root.path(), false, &summaries);
    let paths = Paths::new(root.path(), false);
    let err = dashboard::build(&paths).unwrap_err().to_string();
    assert!(err.contains("s03.json"), "{err}");
    assert!(err.contains("latency_ms"), "{err}");
    assert!(err.contains("bwb classify"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // A value of the wrong type: serde says what it expected, the message adds where.
    let mut s = summaries[3].clone();
    s["metrics"]["accuracy"]["ci_low"] = json!("low");
    std::fs::write(dir.join("s03.json"), s.to_string()).unwrap();
    let err = dashboard::build(&paths).unwrap_err().to_string();
    assert!(
        err.contains("s03.json") && err.contains("field `metrics.accuracy.ci_low`"),
        "{err}"
    );

    // Parses, but its primary metric is not among its metrics.
    let mut s = summary("fpb", "macro_f1", "qwen3-8b", "local", "zero-shot");
    s["primary_metric"] = json!("accuracy");
    std::fs::write(dir.join("s03.json"), s.to_string()).unwrap();
    let err = dashboard::build(&paths).unwrap_err().to_string();
    assert!(
        err.contains("s03.json") && err.contains("primary_metric"),
        "{err}"
    );

    // A task name that would escape dashboard-data/.
    let mut s = summary("fpb", "macro_f1", "qwen3-8b", "local", "zero-shot");
    s["task"] = json!("../../etc");
    std::fs::write(dir.join("s03.json"), s.to_string()).unwrap();
    let err = dashboard::build(&paths).unwrap_err().to_string();
    assert!(
        err.contains("s03.json") && err.contains("field `task`"),
        "{err}"
    );

    // The same model × task × condition twice.
    std::fs::write(dir.join("s03.json"), summaries[2].to_string()).unwrap();
    let err = dashboard::build(&paths).unwrap_err().to_string();
    assert!(
        err.contains("s02.json") && err.contains("s03.json"),
        "{err}"
    );
    assert!(!root.path().join("site").exists());
}

// ---- rendering --------------------------------------------------------------------------

#[test]
fn dashboard_renders_in_chromium() {
    let Some(browser) = chromium("dashboard_renders_in_chromium") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    write_summaries(root.path(), false, &all_summaries(&TASKS));
    let built = dashboard::build(&Paths::new(root.path(), false)).unwrap();

    let page = render(browser, &built.site_dir);
    assert_eq!(page.errors, Vec::<String>::new(), "page errors");
    assert_eq!(page.charts_drawn, Some(CHARTS_PER_TASK * TASKS.len()));
    assert_eq!(page.blank_canvases, Some(0));
    assert_eq!(
        page.dom.matches("<canvas").count(),
        CHARTS_PER_TASK * TASKS.len()
    );
    // One table row per summary, plus a header row per task.
    assert_eq!(page.dom.matches("<tr>").count(), N_SUMMARIES + TASKS.len());

    let png = artifacts_dir().join("dashboard.png");
    std::fs::remove_file(&png).ok();
    run_chromium(
        browser,
        &built.site_dir.join("index.html"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,2000".into(),
            "--hide-scrollbars".into(),
        ],
    );
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    println!("dashboard screenshot: {} ({size} bytes)", png.display());
    assert!(
        size > 10_000,
        "screenshot {} is {size} bytes",
        png.display()
    );
}

#[test]
fn dashboard_escapes_hostile_strings() {
    let Some(browser) = chromium("dashboard_escapes_hostile_strings") else {
        return;
    };
    // Markup that would mark <body> if it were ever parsed as HTML.
    let model = r#"<img src=x onerror="document.body.dataset.pwned=1">"#;
    // Breaks out of an attribute if ever pasted into one. (Conditions used to carry it; they
    // are an enum now, and an unknown one is refused below.)
    let as_of = r#"2026"><svg onload="document.body.dataset.pwned=2">"#;
    let mut summaries = all_summaries(&TASKS);
    for s in summaries
        .iter_mut()
        .filter(|s| s["model"] == "gpt-5.4-mini")
    {
        s["model"] = json!(model);
        s["prices_as_of"] = json!(as_of);
        if s["condition"] == "zero-shot" {
            // And unpriced: listed as "no price" instead of plotted.
            s["cost"]["per_query_usd"] = Value::Null;
            s["tco"] = Value::Null;
        }
    }
    let refused = tempfile::tempdir().unwrap();
    let mut hostile = summaries.clone();
    hostile[0]["condition"] = json!(r#"zero-shot"><svg onload="x">"#);
    write_summaries(refused.path(), false, &hostile);
    let err = dashboard::build(&Paths::new(refused.path(), false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("condition"), "{err}");

    let root = tempfile::tempdir().unwrap();
    write_summaries(root.path(), false, &summaries);
    let built = dashboard::build(&Paths::new(root.path(), false)).unwrap();

    let page = render(browser, &built.site_dir);
    assert_eq!(page.errors, Vec::<String>::new(), "page errors");
    assert_eq!(page.charts_drawn, Some(CHARTS_PER_TASK * TASKS.len()));
    assert_eq!(page.blank_canvases, Some(0));
    let body = body_attributes(&page.dom);
    assert!(
        !body.iter().any(|(k, _)| k == "data-pwned"),
        "markup from the data ran"
    );
    assert!(!page.dom.contains("<img") && !page.dom.contains("<svg"));
    assert!(
        page.dom.contains("&lt;img src=x onerror="),
        "model name not shown as text"
    );
    assert!(
        page.dom.contains("No price: "),
        "unpriced summary not listed"
    );
}

#[test]
fn dashboard_health_check_catches_broken_page() {
    let Some(browser) = chromium("dashboard_health_check_catches_broken_page") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    write_summaries(root.path(), false, &all_summaries(&TASKS[..1]));
    let built = dashboard::build(&Paths::new(root.path(), false)).unwrap();
    let data_js = built.site_dir.join("data.js");
    let good = std::fs::read_to_string(&data_js).unwrap();

    // A truncated data.js: a syntax error there, then app.js finds no data.
    std::fs::write(&data_js, "window.BWB_DATA = {\"index\": ").unwrap();
    let page = render(browser, &built.site_dir);
    assert!(
        page.errors.len() >= 2,
        "errors not caught: {:?}",
        page.errors
    );
    assert!(
        page.errors.iter().any(|e| e.contains("BWB_DATA")),
        "{:?}",
        page.errors
    );
    assert_eq!(page.charts_drawn, None);

    // console.error is caught even when every chart draws.
    std::fs::write(&data_js, format!("console.error('boom');\n{good}")).unwrap();
    let page = render(browser, &built.site_dir);
    assert_eq!(page.errors, vec!["console.error: boom".to_string()]);
    assert_eq!(page.charts_drawn, Some(CHARTS_PER_TASK));

    // A missing script file is caught too.
    std::fs::remove_file(built.site_dir.join("vendor/chart.umd.min.js")).unwrap();
    std::fs::write(&data_js, &good).unwrap();
    let page = render(browser, &built.site_dir);
    assert!(
        page.errors
            .iter()
            .any(|e| e.contains("failed to load") && e.contains("chart.umd.min.js")),
        "{:?}",
        page.errors
    );
    assert_eq!(page.charts_drawn, None);
}

// ---- command line -----------------------------------------------------------------------

#[test]
fn dashboard_cli_builds_site() {
    let p = Project::new();
    let err = p.bwb(&["dashboard"]).fails(1);
    assert!(err.contains("bwb classify --task all"), "{err}");

    write_summaries(p.root(), false, &all_summaries(&TASKS));
    let out = p.bwb(&["dashboard"]).ok().stdout();
    assert!(out.contains("site/index.html"), "{out}");
    assert!(p.path("site/index.html").is_file());
    assert!(p.path("site/data.js").is_file());
    assert!(p.path("dashboard-data/index.json").is_file());
    assert!(p.path("dashboard-data/fpb.json").is_file());
}

/// A `bwb experiments` summary as output.rs writes it (two subtasks, one metric priced).
fn experiment_summary(id: &str, model: &str) -> Value {
    let m = |mean: f64| json!({"mean": mean, "std": 0.1, "p50": mean, "p95": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05, "n": 3});
    let part = |f1: f64| {
        json!({
            "num_examples": 3, "errors": 0, "truncated": 1,
            "metrics": {"f1": m(f1), "exact_match": m(f1 / 2.0)},
            "latency_ms": m(120.0),
            "tokens": {"avg_input_tokens": 900.0, "avg_output_tokens": 4.0},
            "cost": {"total_usd": 0.003, "mean_usd": 0.001, "std_usd": 0.0, "p50_usd": 0.001, "p95_usd": 0.001},
        })
    };
    let mut s = part(0.5);
    let o = s.as_object_mut().unwrap();
    for (k, v) in [
        ("experiment_id", json!(id)),
        ("model", json!(model)),
        ("mode", json!("baseline")),
        ("dataset", json!("longbench")),
        ("task", json!("rag_qa")),
        (
            "per_task",
            json!({"qasper": part(0.4), "narrativeqa": part(0.6)}),
        ),
    ] {
        o.insert(k.into(), v);
    }
    s
}

#[test]
fn experiments_render_beside_tasks_and_alone() {
    let Some(browser) = chromium("experiments_render_beside_tasks_and_alone") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let paths = Paths::new(root.path(), false);
    for (id, model) in [
        ("lb-a", "openai:gpt-4o"),
        ("lb-b", "<img src=x onerror=alert(1)>"),
    ] {
        let dir = paths.results().join("experiments").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("summary.json"),
            experiment_summary(id, model).to_string(),
        )
        .unwrap();
    }
    // Experiments alone: one chart, a row per experiment and per subtask.
    let built = dashboard::build(&paths).unwrap();
    let page = render(browser, &built.site_dir);
    assert_eq!(page.errors, Vec::<String>::new(), "page errors");
    assert_eq!(page.charts_drawn, Some(1));
    assert_eq!(page.blank_canvases, Some(0));
    assert!(page.dom.contains("Experiments") && page.dom.contains("lb-b / qasper"));
    assert!(
        page.dom.contains("0.500 [0.450–0.550]"),
        "mean and CI shown"
    );
    assert!(
        !page.dom.contains("<img src=x"),
        "model names are text, never markup"
    );
    assert_eq!(page.dom.matches("<tr>").count(), 1 + 2 * 3);
    let data = read_json(&built.data_dir.join("experiments.json"));
    assert_eq!(data.as_array().unwrap().len(), 2);
    // A compressed experiment paired with lb-a: accuracy vs tokens sent for both modes, and
    // the paired comparison in its row.
    let mut comp = experiment_summary("lb-c", "openai:gpt-4o");
    comp["mode"] = json!("compressed");
    comp["tokens"]["avg_input_tokens"] = json!(360.0);
    comp["vs_baseline"] = json!({
        "baseline": "lb-a", "compressed": "lb-c", "method": "selective", "pairs": 3,
        "metrics": {"f1": {"baseline": 0.5, "compressed": 0.45, "diff": -0.05,
            "ci_low": -0.2, "ci_high": 0.1, "p_value": 0.61, "n": 3}},
        "input_tokens": {"baseline": 2700.0, "compressed": 1080.0, "reduction": 0.6},
        "latency_ms": {"baseline": 120.0, "compressed": 150.0, "overhead": 30.0},
        "cost_usd": {"baseline": 0.003, "compressed": 0.0015, "saved": 0.0015},
    });
    let dir = paths.results().join("experiments").join("lb-c");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("summary.json"), comp.to_string()).unwrap();
    let built = dashboard::build(&paths).unwrap();
    let page = render(browser, &built.site_dir);
    assert_eq!(page.errors, Vec::<String>::new(), "page errors");
    assert_eq!(page.charts_drawn, Some(2));
    assert_eq!(page.blank_canvases, Some(0));
    assert!(
        page.dom
            .contains("exact_match vs input tokens sent per example (baseline and compressed)"),
        "accuracy vs tokens chart"
    );
    assert!(
        page.dom
            .contains("60.0 % fewer tokens; f1 Δ -0.050 [-0.200–0.100] p=0.610 (3 pairs vs lb-a)"),
        "paired comparison in the compressed row"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // Beside the fine-tune tasks.
    write_summaries(root.path(), false, &all_summaries(&TASKS));
    let built = dashboard::build(&paths).unwrap();
    let page = render(browser, &built.site_dir);
    assert_eq!(page.errors, Vec::<String>::new(), "page errors");
    assert_eq!(page.charts_drawn, Some(CHARTS_PER_TASK * TASKS.len() + 1));
    // A summary that is not an experiment's names its file.
    let bad = paths
        .results()
        .join("experiments")
        .join("lb-a")
        .join("summary.json");
    std::fs::write(&bad, "{\"model\": 1}").unwrap();
    let err = dashboard::build(&paths).unwrap_err().to_string();
    assert!(
        err.contains("lb-a") && err.contains("experiment_id"),
        "{err}"
    );
}
