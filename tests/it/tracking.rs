//! MLflow tracking against a real `mlflow server` (PyPI `mlflow` in a throwaway venv: .ci/run
//! installs it and sets BWB_MLFLOW_PYTHON; without it the server test prints SKIP, and with
//! BWB_REQUIRE_MLFLOW=1 it fails). Smoke train / eval / classify runs log to it; MLflow's own
//! Python client reads everything back and the values are checked against bwb's files. A
//! server killed mid-run, or none at all, never fails or holds up the command.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{jsonl, Project};

/// The interpreter of a venv with `mlflow` (BWB_MLFLOW_PYTHON), or None after a SKIP line;
/// BWB_REQUIRE_MLFLOW=1 (CI) makes a missing one a failure.
fn mlflow_python() -> Option<String> {
    let py = std::env::var("BWB_MLFLOW_PYTHON")
        .ok()
        .filter(|p| Path::new(p).exists());
    if py.is_none() {
        let hint = "install it with `python3 -m venv .ci/venv-mlflow && .ci/venv-mlflow/bin/pip install mlflow` and set BWB_MLFLOW_PYTHON=.ci/venv-mlflow/bin/python";
        if std::env::var("BWB_REQUIRE_MLFLOW").as_deref() == Ok("1") {
            panic!("BWB_MLFLOW_PYTHON is unset or missing and BWB_REQUIRE_MLFLOW=1; {hint}");
        }
        eprintln!("SKIP: no interpreter with mlflow; {hint}");
    }
    py
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `mlflow server` on a free port with a SQLite store and proxied artifacts, in its own
/// process group (uvicorn runs in a child process); the whole group is killed on drop.
struct MlflowServer {
    child: Child,
    uri: String,
    log: PathBuf,
}

impl MlflowServer {
    fn spawn(py: &str, dir: &Path) -> MlflowServer {
        let port = free_port();
        let log = dir.join("mlflow-server.log");
        let child = Command::new(py)
            .args(["-m", "mlflow", "server", "--backend-store-uri"])
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--serve-artifacts")
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--workers", "1"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("mlflow-server.err")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        MlflowServer {
            child,
            uri: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Wait for `/health` (a cold start creates the SQLite schema: tens of seconds).
    fn wait_healthy(&mut self) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(180) {
            if let Ok(r) = http.get(format!("{}/health", self.uri)).send() {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mlflow server exited ({status}): {}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("mlflow server not healthy after 180 s: {}", self.logs());
    }

    fn logs(&self) -> String {
        let err = self.log.with_file_name("mlflow-server.err");
        format!(
            "{}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    /// SIGKILL the server and its workers.
    fn kill(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group this test spawned.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads every run of an experiment back with MLflow's own client, as JSON: tags, params,
/// latest metrics, the full history of a few metrics, and every artifact with its size.
const READ_BACK: &str = r#"
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
exp = client.get_experiment_by_name(sys.argv[2])
def files(run_id, path=None):
    out = {}
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.update(files(run_id, f.path))
        else:
            out[f.path] = f.file_size
    return out
runs = []
for r in client.search_runs([exp.experiment_id], max_results=1000):
    hist = {}
    for key in r.data.metrics:
        h = client.get_metric_history(r.info.run_id, key)
        hist[key] = [[m.step, m.value] for m in sorted(h, key=lambda m: (m.step, m.timestamp))]
    runs.append({
        "name": r.info.run_name,
        "status": r.info.status,
        "end_time": r.info.end_time,
        "tags": {k: v for k, v in r.data.tags.items() if not k.startswith("mlflow.")},
        "params": r.data.params,
        "metrics": r.data.metrics,
        "history": hist,
        "artifacts": files(r.info.run_id),
    })
print(json.dumps(runs))
"#;

fn read_back(py: &str, dir: &Path, uri: &str, experiment: &str) -> Vec<Value> {
    let script = dir.join("read_back.py");
    std::fs::write(&script, READ_BACK).unwrap();
    let out = Command::new(py)
        .arg(&script)
        .args([uri, experiment])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read-back failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str::<Vec<Value>>(line).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn run_named<'a>(runs: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = runs.iter().filter(|r| r["name"] == name).collect();
    assert_eq!(found.len(), 1, "runs named {name}: {runs:#?}");
    found[0]
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// Two epochs of 8 steps: per-epoch validation metrics have a history.
const TWO_EPOCHS: &str = "lora:
  r: 4
  alpha: 8
  dropout: 0.0
  target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]
lr: 1.0e-3
weight_decay: 0.0
warmup_ratio: 0.0
lr_schedule: constant
epochs: 2
batch_size: 4
gradient_accumulation: 1
max_grad_norm: 1.0
max_seq_length: 640
";

const EXPERIMENT: &str = "bwb-it";

#[test]
fn train_eval_and_classify_runs_read_back_with_mlflows_own_client() {
    let Some(py) = mlflow_python() else { return };
    let p = Project::new();
    let mut server = MlflowServer::spawn(&py, p.root());
    // Prepare while the server creates its schema.
    p.write("configs/training/smoke.yaml", TWO_EPOCHS);
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    p.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    server.wait_healthy();
    let p = p
        .set_env("MLFLOW_TRACKING_URI", &server.uri)
        .set_env("MLFLOW_EXPERIMENT_NAME", EXPERIMENT);
    let train = [
        "--smoke-test",
        "--mlflow",
        "train",
        "--model",
        "smoke",
        "--task",
        "fpb",
        "--condition",
        "lora-500",
    ];
    let out = p.bwb(&train).ok();
    let stdout = out.stdout();
    assert!(
        stdout.contains("mlflow: logged 1 run(s)") && stdout.contains(EXPERIMENT),
        "{stdout}\n{}",
        out.stderr()
    );
    assert!(!out.stderr().contains("mlflow"), "{}", out.stderr());
    let eval = [
        "--smoke-test",
        "--mlflow",
        "eval",
        "--model",
        "smoke",
        "--task",
        "fpb",
        "--condition",
        "zero-shot,lora-500",
        "--seeds",
        "2",
    ];
    let out = p.bwb(&eval).ok();
    assert!(
        out.stdout().contains("mlflow: logged 2 run(s)"),
        "{}",
        out.stdout()
    );
    // classify takes the flag from run_defaults.yaml `tracking:`.
    let defaults = p.read("configs/run_defaults.yaml");
    assert!(defaults.contains("  mlflow: false\n"), "{defaults}");
    p.write(
        "configs/run_defaults.yaml",
        &defaults.replace("  mlflow: false\n", "  mlflow: true\n"),
    );
    let out = p
        .bwb(&["--smoke-test", "classify", "--task", "fpb", "--seeds", "2"])
        .ok();
    assert!(
        out.stdout().contains("mlflow: logged 2 run(s)"),
        "{}",
        out.stdout()
    );

    let runs = read_back(&py, p.root(), &server.uri, EXPERIMENT);
    // bwb's own search (what `bwb experiments` lists) sees the same runs.
    let settings = bwb::track::TrackingSettings {
        enabled: true,
        uri: server.uri.clone(),
        experiment: EXPERIMENT.into(),
        ..Default::default()
    };
    let all = bwb::track::search_runs(&settings, "", 100).unwrap();
    assert_eq!(all.len(), 5, "{all:#?}");
    assert!(all.windows(2).all(|w| w[0].start_time >= w[1].start_time));
    let classified =
        bwb::track::search_runs(&settings, "tags.`bwb.command` = 'classify'", 100).unwrap();
    let mut names: Vec<&str> = classified.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "classify smoke/fpb/lora-500",
            "classify smoke/fpb/zero-shot"
        ]
    );
    assert_eq!(bwb::track::search_runs(&settings, "", 2).unwrap().len(), 2);
    let missing = bwb::track::TrackingSettings {
        experiment: "never-created".into(),
        ..settings.clone()
    };
    assert!(bwb::track::search_runs(&missing, "", 10)
        .unwrap()
        .is_empty());
    assert_eq!(runs.len(), 5, "{runs:#?}");
    for r in &runs {
        assert_eq!(r["status"], "FINISHED", "{r:#}");
        assert!(r["end_time"].as_i64().unwrap_or(0) > 0, "{r:#}");
        assert_eq!(r["tags"]["bwb.smoke"], "true");
        assert_eq!(r["tags"]["bwb.model"], "smoke");
        assert_eq!(r["tags"]["bwb.task"], "fpb");
    }

    // Train: params are the hyperparameters used (the record's, FPB's overrides included),
    // loss has one point per optimizer step with the metrics file's values, one validation
    // point per epoch, and the adapter and records are artifacts of the same size.
    let t = run_named(&runs, "train smoke/fpb/lora-500");
    assert_eq!(t["tags"]["bwb.command"], "train");
    assert_eq!(t["tags"]["bwb.condition"], "lora-500");
    let record: Value =
        serde_json::from_str(&p.read("results/smoke/training/smoke_fpb_lora-500.json")).unwrap();
    let mut hp = Vec::new();
    bwb::track::flatten_params("", &record["hyperparameters"], &mut hp);
    assert!(hp.len() > 10, "{hp:?}");
    for (k, v) in &hp {
        assert_eq!(t["params"][k], *v, "param {k}");
    }
    assert_eq!(
        t["params"]["lr"], "0.0001",
        "FPB's override of the smoke lr"
    );
    assert_eq!(t["params"]["seed"], "42");
    assert_eq!(t["params"]["train_examples"], "30");
    let lines = jsonl(&p.read("results/smoke/training/smoke_fpb_lora-500.metrics.jsonl"));
    let steps: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "step").collect();
    assert_eq!(steps.len(), 16);
    assert_eq!(record["steps"], 16);
    for key in ["loss", "lr", "grad_norm", "tokens_per_s"] {
        let h = t["history"][key].as_array().unwrap();
        assert_eq!(h.len(), steps.len(), "{key}: {h:?}");
        for (point, line) in h.iter().zip(&steps) {
            assert_eq!(point[0], line["step"], "{key}");
            assert_eq!(
                num(&point[1]),
                num(&line[key]),
                "{key} at step {}",
                point[0]
            );
        }
    }
    let epochs: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "epoch").collect();
    let val = t["history"]["val_macro_f1"].as_array().unwrap();
    assert_eq!(val.len(), 2);
    for (point, e) in val.iter().zip(&epochs) {
        assert_eq!(
            (&point[0], num(&point[1])),
            (&e["step"], num(&e["val_metric"]))
        );
    }
    assert_eq!(t["history"]["val_loss"].as_array().unwrap().len(), 2);
    assert_eq!(num(&t["metrics"]["steps"]), 16.0);
    assert_eq!(
        num(&t["metrics"]["tokens_per_second"]),
        num(&record["tokens_per_second"])
    );
    let ck = "checkpoints/smoke/smoke/fpb/lora-500/adapter";
    for (artifact, local) in [
        (
            "adapter/adapter_model.safetensors",
            format!("{ck}/adapter_model.safetensors"),
        ),
        (
            "adapter/adapter_config.json",
            format!("{ck}/adapter_config.json"),
        ),
        ("adapter/scores.json", format!("{ck}/scores.json")),
        (
            "training/smoke_fpb_lora-500.json",
            "results/smoke/training/smoke_fpb_lora-500.json".into(),
        ),
        (
            "training/smoke_fpb_lora-500.metrics.jsonl",
            "results/smoke/training/smoke_fpb_lora-500.metrics.jsonl".into(),
        ),
    ] {
        let size = std::fs::metadata(p.path(&local)).unwrap().len();
        assert_eq!(
            t["artifacts"][artifact], size,
            "{artifact}: {:#}",
            t["artifacts"]
        );
    }
    // The uploaded adapter is byte for byte the local one (artifact store on disk).
    let stored: Vec<PathBuf> = walk(&p.path("artifacts"))
        .into_iter()
        .filter(|f| f.ends_with("adapter/adapter_model.safetensors"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        std::fs::read(&stored[0]).unwrap()
            == std::fs::read(p.path(&format!("{ck}/adapter_model.safetensors"))).unwrap()
    );

    // Eval: params, per-generation counts and the predictions.
    for cond in ["zero-shot", "lora-500"] {
        let e = run_named(&runs, &format!("eval smoke/fpb/{cond}"));
        assert_eq!(e["tags"]["bwb.command"], "eval");
        assert_eq!(e["tags"]["bwb.condition"], cond);
        assert_eq!(e["params"]["seeds"], "1,2");
        assert_eq!(e["params"]["generation"], "greedy");
        assert_eq!(e["params"]["model_kind"], "local");
        assert_eq!(num(&e["metrics"]["examples"]), 15.0);
        assert_eq!(num(&e["metrics"]["generated"]), 15.0);
        let local = format!("results/smoke/predictions/smoke/fpb/{cond}/seed-1.jsonl");
        let preds = jsonl(&p.read(&local));
        let input: f64 = preds.iter().map(|r| num(&r["input_tokens"])).sum();
        assert_eq!(num(&e["metrics"]["tokens_total_input"]), input);
        let mut lat: Vec<f64> = preds.iter().map(|r| num(&r["latency_ms"])).collect();
        lat.sort_by(f64::total_cmp);
        assert_eq!(lat.len(), 15);
        // numpy's median of 15 values: index (15 − 1) · 0.5.
        assert_eq!(num(&e["metrics"]["latency_ms_p50"]), lat[7]);
        let size = std::fs::metadata(p.path(&local)).unwrap().len();
        assert_eq!(e["artifacts"]["predictions/seed-1.jsonl"], size);
    }

    // Classify: every metric of the summary with its CI, per-seed values as a history,
    // latency, tokens, cost, and the summary / classified / prediction files.
    for cond in ["zero-shot", "lora-500"] {
        let c = run_named(&runs, &format!("classify smoke/fpb/{cond}"));
        assert_eq!(c["tags"]["bwb.command"], "classify");
        let rel = format!("results/smoke/summaries/smoke_fpb_{cond}.json");
        let s: Value = serde_json::from_str(&p.read(&rel)).unwrap();
        assert_eq!(c["params"]["primary_metric"], s["primary_metric"]);
        assert_eq!(c["params"]["spread"], "test_resamples");
        assert_eq!(c["params"]["seeds"], "1,2");
        let metrics = s["metrics"].as_object().unwrap();
        assert!(metrics.contains_key("weighted_f1"), "{metrics:?}");
        let ours = classified
            .iter()
            .find(|r| r.tags["bwb.condition"] == cond)
            .unwrap();
        assert_eq!(ours.status, "FINISHED");
        assert_eq!(
            ours.metrics["weighted_f1_ci_high"],
            num(&metrics["weighted_f1"]["ci_high"])
        );
        assert_eq!(ours.params["seeds"], "1,2");
        for (name, m) in metrics {
            assert_eq!(num(&c["metrics"][name]), num(&m["mean"]), "{name}");
            for f in ["ci_low", "ci_high", "p50", "p95", "std"] {
                let key = format!("{name}_{f}");
                assert_eq!(num(&c["metrics"][&key]), num(&m[f]), "{key}");
            }
            let per_seed: Vec<f64> = c["history"][&format!("{name}_per_seed")]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| num(&p[1]))
                .collect();
            let want: Vec<f64> = m["per_seed"].as_array().unwrap().iter().map(num).collect();
            assert_eq!(per_seed, want, "{name}_per_seed");
        }
        for (key, want) in [
            ("latency_ms_p50", &s["latency_ms"]["p50"]),
            ("latency_ms_p95", &s["latency_ms"]["p95"]),
            ("tokens_total_input", &s["tokens"]["total_input"]),
            ("tokens_output_mean", &s["tokens"]["output"]["mean"]),
            ("cost_per_query_usd", &s["cost"]["per_query_usd"]),
            ("n_predictions", &s["n_predictions"]),
        ] {
            assert_eq!(num(&c["metrics"][key]), num(want), "{key}");
        }
        let errors: BTreeMap<String, Value> =
            serde_json::from_value(s["error_classes"].clone()).unwrap();
        for (class, n) in errors {
            assert_eq!(num(&c["metrics"][&format!("errors_{class}")]), num(&n));
        }
        let tco = c["history"]["tco_12m_usd"].as_array().unwrap();
        assert_eq!(tco.len(), s["tco"]["points"].as_array().unwrap().len());
        for f in [
            format!("summary/smoke_fpb_{cond}.json"),
            format!("summary/smoke_fpb_{cond}.csv"),
            format!("classified/smoke_fpb_{cond}.jsonl"),
            "predictions/seed-1.jsonl".to_string(),
        ] {
            assert!(
                c["artifacts"][&f].as_u64().unwrap_or(0) > 0,
                "{f}: {:#}",
                c["artifacts"]
            );
        }
    }

    // `bwb experiments`: the experiments file's `tracking:` turns MLflow on (run_defaults.yaml
    // off again); one run per experiment with the summary's numbers and files.
    p.write("configs/run_defaults.yaml", &defaults);
    p.write(
        "exp.yaml",
        "defaults:\n  tracking: {mlflow: true}\nexperiments:\n  - {id: qm, model: smoke, dataset: {name: qmsum}, task: summarization, metrics: [rougeL, rouge1]}\n",
    );
    let out = p
        .bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .ok();
    assert!(
        out.stdout().contains("mlflow: logged 1 run(s)"),
        "{}",
        out.stdout()
    );
    let summary: Value =
        serde_json::from_str(&p.read("results/smoke/experiments/qm/summary.json")).unwrap();
    let runs = read_back(&py, p.root(), &server.uri, EXPERIMENT);
    let e = run_named(&runs, "experiments qm");
    assert_eq!(e["status"], "FINISHED");
    assert_eq!(e["tags"]["bwb.command"], "experiments");
    assert_eq!(e["tags"]["bwb.experiment_id"], "qm");
    assert_eq!(e["params"]["model"], "smoke");
    assert_eq!(e["params"]["dataset"], "qmsum");
    for m in ["rougeL", "rouge1"] {
        assert_eq!(
            num(&e["metrics"][m]),
            num(&summary["metrics"][m]["mean"]),
            "{m}"
        );
        assert_eq!(
            num(&e["metrics"][&format!("{m}_ci_high")]),
            num(&summary["metrics"][m]["ci_high"])
        );
    }
    assert_eq!(num(&e["metrics"]["num_examples"]), 3.0);
    for f in [
        "summary/summary.json",
        "summary/summary.csv",
        "examples/qm.jsonl",
    ] {
        assert!(
            e["artifacts"][f].as_u64().unwrap_or(0) > 0,
            "{f}: {:#}",
            e["artifacts"]
        );
    }

    // The server killed mid-run: training finishes as usual, exit 0, one warning when the
    // server first fails and one line on what was not logged, and only seconds added.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bwb"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--root")
        .arg(p.root())
        .args([
            "--smoke-test",
            "--mlflow",
            "train",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            "lora-full",
        ])
        .current_dir(p.root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &p.env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let metrics = p.path("results/smoke/training/smoke_fpb_lora-full.metrics.jsonl");
    while std::fs::read_to_string(&metrics)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < 2
    {
        assert!(child.try_wait().unwrap().is_none(), "train ended early");
        assert!(t0.elapsed() < Duration::from_secs(300));
        std::thread::sleep(Duration::from_millis(20));
    }
    server.kill();
    assert!(
        child.try_wait().unwrap().is_none(),
        "the kill missed the run"
    );
    let stderr_pipe = child.stderr.take().unwrap();
    let stderr_lines: Vec<String> = BufReader::new(stderr_pipe)
        .lines()
        .map_while(Result::ok)
        .collect();
    let status = child.wait().unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(status.success(), "{stderr_lines:#?}");
    let mlflow_lines: Vec<&String> = stderr_lines
        .iter()
        .filter(|l| l.contains("mlflow"))
        .collect();
    assert_eq!(mlflow_lines.len(), 2, "{mlflow_lines:#?}");
    assert!(mlflow_lines[0].contains("WARN") && mlflow_lines[0].contains("failed"));
    let last = mlflow_lines[1];
    assert!(last.contains("mlflow: not logged: 0 runs, "), "{last}");
    let not_logged_metrics: u64 = last
        .split("0 runs, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(not_logged_metrics > 0, "{last}");
    assert!(last.contains("artifacts"), "{last}");
    let record: Value =
        serde_json::from_str(&p.read("results/smoke/training/smoke_fpb_lora-full.json")).unwrap();
    // Everything but training itself (start-up, tokenising, the record, the flush) takes a
    // few seconds at most.
    let overhead = elapsed - num(&record["wall_seconds"]);
    eprintln!("killed-server run: {elapsed:.1} s in all, {overhead:.1} s beyond training");
    assert!(overhead < 8.0, "{overhead:.1} s beyond training");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// No server at all (a closed port): the command succeeds at full speed with one warning and
/// one not-logged line. Needs no Python.
#[test]
fn a_closed_port_never_fails_or_holds_up_the_command() {
    let p = Project::new();
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    p.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    let uri = format!("http://127.0.0.1:{}", free_port());
    let args = [
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
    ];
    let t0 = Instant::now();
    let plain = p.bwb(&args).ok();
    let baseline = t0.elapsed().as_secs_f64();
    assert!(!plain.stdout().contains("mlflow") && !plain.stderr().contains("mlflow"));
    std::fs::remove_dir_all(p.path("results/smoke/predictions")).unwrap();

    let mut with = vec!["--mlflow", "--mlflow-uri", uri.as_str()];
    with.extend(args);
    let t0 = Instant::now();
    let out = p.bwb(&with).ok();
    let elapsed = t0.elapsed().as_secs_f64();
    let err = out.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("mlflow")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains(&uri) && lines[0].contains("cannot connect"),
        "{err}"
    );
    assert!(
        lines[1].contains("mlflow: not logged: 1 runs, 13 metrics, ")
            && lines[1].contains(", 1 artifacts"),
        "{err}"
    );
    assert!(out.stdout().contains("15 generated"), "{}", out.stdout());
    assert!(
        elapsed < baseline + 3.0,
        "{elapsed:.1} s vs {baseline:.1} s without tracking"
    );

    // A server that accepts connections and never answers: each call times out (1 s here),
    // in the background; the command is not held up beyond the call in flight.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    std::fs::remove_dir_all(p.path("results/smoke/predictions")).unwrap();
    let p = p.set_env("BWB_MLFLOW_TIMEOUT_S", "1");
    let mut with = vec!["--mlflow", "--mlflow-uri", silent.as_str()];
    with.extend(args);
    let t0 = Instant::now();
    let out = p.bwb(&with).ok();
    let elapsed = t0.elapsed().as_secs_f64();
    let err = out.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("mlflow")).collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].contains("timed out"), "{err}");
    assert!(
        lines[1].contains("mlflow: not logged: 1 runs, 13 metrics, "),
        "{err}"
    );
    assert!(
        elapsed < baseline + 3.0,
        "{elapsed:.1} s vs {baseline:.1} s without tracking"
    );

    // --no-mlflow wins over the environment; a bad URI is a one-line config error only when
    // tracking is on.
    let p = p
        .set_env("BWB_MLFLOW", "1")
        .set_env("MLFLOW_TRACKING_URI", "file:///tmp/mlruns");
    let err = p.bwb(&args).fails(1);
    assert!(
        err.contains("MLFLOW_TRACKING_URI (environment)") && err.contains("http"),
        "{err}"
    );
    let mut off = vec!["--no-mlflow"];
    off.extend(args);
    let out = p.bwb(&off).ok();
    assert!(!out.stderr().contains("mlflow"), "{}", out.stderr());
}
