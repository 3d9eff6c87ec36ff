//! `bwb experiments`: the experiments file checked line by line (`--dry-run` prints the plan
//! and sends nothing), every context dataset run offline from the hub fixtures against a fake
//! OpenAI-compatible server and the local smoke model, outputs in the context benchmark's
//! shapes with metrics recomputed by hand, resumption, parallel experiments, the dashboard.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::{jsonl, Project};

const KEY: &str = "sk-test-experiments-secret";

/// A fake OpenAI chat-completions server: the answer to a request is the first rule whose
/// needle occurs in the last user message, else "I do not know."; usage is 1 token per 4
/// characters of the prompt, 3 completion tokens.
struct FakeOpenAi {
    url: String,
    received: Arc<AtomicUsize>,
    /// Every request body received.
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl FakeOpenAi {
    fn start(rules: &[(&str, &str)]) -> FakeOpenAi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let rules: Arc<Vec<(String, String)>> = Arc::new(
            rules
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        );
        let (r2, b2) = (received.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, b, rules) = (r2.clone(), b2.clone(), rules.clone());
                std::thread::spawn(move || {
                    let _ = answer(stream, &r, &b, &rules);
                });
            }
        });
        FakeOpenAi {
            url,
            received,
            bodies,
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// The user messages received that contain `needle`.
    fn users_with(&self, needle: &str) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| {
                b["messages"].as_array()?.last()?["content"]
                    .as_str()
                    .map(String::from)
            })
            .filter(|u| u.contains(needle))
            .collect()
    }
}

fn answer(
    stream: TcpStream,
    received: &AtomicUsize,
    bodies: &Mutex<Vec<Value>>,
    rules: &[(String, String)],
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    received.fetch_add(1, Ordering::SeqCst);
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let user = v["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|x| x["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    let prompt_chars: usize = v["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x["content"].as_str().unwrap_or("").len())
                .sum()
        })
        .unwrap_or(0);
    bodies.lock().unwrap().push(v);
    let text = rules
        .iter()
        .find(|(needle, _)| user.contains(needle.as_str()))
        .map(|(_, a)| a.clone())
        .unwrap_or_else(|| "I do not know.".to_string());
    if text == "HTTP400" {
        let body = r#"{"error":{"message":"This model's maximum context length is 8 tokens","code":"context_length_exceeded"}}"#;
        let mut s = &stream;
        write!(
            s,
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return s.flush();
    }
    let out = serde_json::json!({
        "id": "chatcmpl-x", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_chars.div_ceil(4), "completion_tokens": 3, "total_tokens": prompt_chars.div_ceil(4) + 3}
    })
    .to_string();
    let mut s = &stream;
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
        out.len()
    )?;
    s.flush()
}

fn project(server: &FakeOpenAi) -> Project {
    Project::new()
        .set_env("OPENAI_API_KEY", KEY)
        .set_env("OPENAI_BASE_URL", &format!("{}/v1", server.url))
        .set_env("BWB_API_BACKOFF_MS", "20")
}

fn summary(p: &Project, id: &str) -> Value {
    serde_json::from_str(&p.read(&format!("results/smoke/experiments/{id}/summary.json"))).unwrap()
}

fn rows(p: &Project, rel: &str) -> Vec<Value> {
    jsonl(&p.read(&format!("results/smoke/experiments/{rel}")))
}

#[allow(dead_code)]
fn by_id(rows: &[Value]) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect()
}

/// Every context dataset in one file: API experiments against the fake server, local ones on
/// the smoke model.
const ALL: &str = r#"defaults:
  concurrency: 2
  bertscore: {model: BERT_DIR, num_layers: 2}
experiments:
  - id: hp
    tags: [api]
    model: {name: openai:gpt-4o}
    mode: baseline
    dataset: {name: hotpotqa, split: validation, num_examples: 50, seed: 42}
    task: {name: rag_qa}
    metrics: [exact_match, f1]
  - id: mr
    tags: [api]
    model: openai:gpt-4o
    dataset: {name: msmarco}
    task: retrieval
    metrics: [retrieval_precision, retrieval_recall, retrieval_f1]
  - id: fb
    tags: [api]
    model: openai:gpt-4o
    pricing: {input_per_1m_tokens: 2.5, output_per_1m_tokens: 10}
    dataset: {name: financebench}
    task: rag_qa
    metrics: [em, f1]
  - id: lb
    tags: [api]
    model: openai:gpt-4o
    dataset: {name: longbench, split: test, task: null}
    task: rag_qa
    metrics: [f1]
  - id: et
    tags: [api]
    model: openai:gpt-4o
    dataset: {name: ethic, task: Recalling}
    task: rag_qa
  - id: ea
    tags: [api]
    model: openai:gpt-4o
    dataset: {name: ethic, task: attributing}
    task: retrieval
  - id: qm
    tags: [api]
    model: openai:gpt-4o
    dataset: {name: qmsum}
    task: summarization
    metrics: [rouge1, rouge2, rougeL, bertscore_f1, bertscore_precision]
  - id: ms
    tags: [local]
    model: smoke
    dataset: {name: msmarco, num_examples: 2, seed: 7}
    task: rag_qa
  - id: es
    tags: [local]
    model: smoke
    dataset: {name: ethic, task: null}
    task: summarization
"#;

const RULES: [(&str, &str); 13] = [
    // HotpotQA: right, yes for no (F1 0 by HotpotQA's rule), partial, right after normalising.
    ("ferry operator Nordlys Lines", "Port Ellery"),
    ("Ilse Varga and Tomas Brenn", "yes"),
    ("town of Lemford stands", "in 1893"),
    ("founder of the Halvard Quartet", "The viola."),
    // MS MARCO retrieval: gold [2], [2, 3], [], [1].
    ("Query: how long to boil an egg", "Passage 2"),
    ("Query: what is the capital of tasmania", "3, 2"),
    ("Query: who painted the blue fox mural", "None of them."),
    ("Query: define estuary", "2"),
    // ETHIC Recalling: gold Anna, Piet, Lotte.
    ("character who visits the mill", "Anna, Piet"),
    (
        "every drug the patient received",
        "amoxicillin, paracetamol",
    ),
    // ETHIC Attributing: gold 1, 3.
    ("contract wa", "Related Segments: 1, 3"),
    // FinanceBench: a provider's context-length error is that example's error.
    ("Corvid Software", "HTTP400"),
    // QMSum: close to the reference.
    (
        "remote control's battery",
        "Users forget to charge devices, so the team chose standard batteries.",
    ),
];

fn all_project(server: &FakeOpenAi) -> Project {
    let p = project(server);
    let bert = format!("{}/tests/fixtures/models/tiny-bert", crate::common::REPO);
    p.write("exp.yaml", &ALL.replace("BERT_DIR", &bert));
    p
}

fn mean(s: &Value, metric: &str) -> f64 {
    s["metrics"][metric]["mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("{metric}: {s}"))
}

#[test]
fn every_dataset_runs_offline_and_scores_as_worked_by_hand() {
    let server = FakeOpenAi::start(&RULES);
    let p = all_project(&server);
    let out = p
        .bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .ok()
        .stdout();
    assert!(out.contains("total spent this run"), "{out}");
    let sent = server.received();
    // 4 hotpotqa + 4 msmarco + 3 financebench + 12 longbench + 3 + 3 ethic + 3 qmsum.
    assert_eq!(sent, 4 + 4 + 3 + 12 + 3 + 3 + 3, "{out}");
    // API models get the whole context: HotpotQA's prompt holds every titled paragraph.
    let hp_prompt = server.users_with("Nordlys Lines");
    assert_eq!(hp_prompt.len(), 1);
    assert!(
        hp_prompt[0].matches("\n\n").count() >= 2,
        "{}",
        hp_prompt[0]
    );

    // Per-example lines in the context benchmark's shape.
    let hp = rows(&p, "hp/hp.jsonl");
    assert_eq!(hp.len(), 4);
    for r in &hp {
        for k in [
            "id",
            "model",
            "input_question",
            "input_context",
            "pred",
            "gold",
            "input_tokens",
            "output_tokens",
            "latency_ms",
            "cost_usd",
            "metrics",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        assert_eq!(r["model"], "openai:gpt-4o");
        assert!(r["input_context"].as_str().unwrap().contains('\n'));
    }
    let f1: BTreeMap<String, f64> = hp
        .iter()
        .map(|r| {
            (
                r["pred"].as_str().unwrap().to_string(),
                r["metrics"]["f1"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(f1["Port Ellery"], 1.0);
    assert_eq!(f1["yes"], 0.0);
    assert!((f1["in 1893"] - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!(f1["The viola."], 1.0);
    let s = summary(&p, "hp");
    assert!((mean(&s, "exact_match") - 0.5).abs() < 1e-12);
    assert!((mean(&s, "f1") - (1.0 + 0.0 + 2.0 / 3.0 + 1.0) / 4.0).abs() < 1e-12);
    for k in ["mean", "std", "p50", "p95", "ci_low", "ci_high"] {
        assert!(s["metrics"]["f1"][k].is_number(), "{k}: {s}");
    }
    assert!(s["cost"].is_null(), "gpt-4o has no price in pricing.yaml");
    assert!(s["tokens"]["avg_input_tokens"].as_f64().unwrap() > 50.0);
    assert_eq!(s["tokens"]["avg_output_tokens"], 3.0);

    // Retrieval: [2]→1, [3,2]→1, none for none→1, [2] for [1]→0.
    let s = summary(&p, "mr");
    assert!((mean(&s, "retrieval_f1") - 0.75).abs() < 1e-12, "{s}");

    // Priced per experiment: every example's cost from its usage.
    let fb = rows(&p, "fb/fb.jsonl");
    let (failed, fb): (Vec<Value>, Vec<Value>) =
        fb.into_iter().partition(|r| r["error"].is_string());
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("context length"),
        "{}",
        failed[0]
    );
    assert!(failed[0]["metrics"].as_object().unwrap().is_empty());
    assert_eq!(summary(&p, "fb")["errors"], 1);
    let mut total = 0.0;
    for r in &fb {
        let want = (r["input_tokens"].as_f64().unwrap() * 2.5 + 3.0 * 10.0) / 1e6;
        assert!((r["cost_usd"].as_f64().unwrap() - want).abs() < 1e-15);
        total += want;
        assert_eq!(r["metrics"]["exact_match"], 0.0);
    }
    let s = summary(&p, "fb");
    assert!((s["cost"]["total_usd"].as_f64().unwrap() - total).abs() < 1e-12);
    for k in ["mean_usd", "std_usd", "p50_usd", "p95_usd"] {
        assert!(s["cost"][k].is_number(), "{k}");
    }

    // LongBench with task: null: one file and one per_task entry per subtask.
    let s = summary(&p, "lb");
    let per = s["per_task"].as_object().unwrap();
    let names: Vec<&str> = per.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["2wikimqa", "multifieldqa_en", "narrativeqa", "qasper"]
    );
    assert_eq!(s["num_examples"], 12);
    for t in ["2wikimqa", "multifieldqa_en", "narrativeqa", "qasper"] {
        assert_eq!(rows(&p, &format!("lb/lb.longbench-{t}.jsonl")).len(), 3);
    }
    let csv = p.read("results/smoke/experiments/lb/summary.csv");
    assert_eq!(csv.lines().count(), 1 + 1 + 4, "{csv}");

    // ETHIC Recalling: {Anna, Piet} of {Anna, Piet, Lotte} → P 1, R 2/3, F1 0.8; the
    // second example exactly right; the third not answered.
    let et = rows(&p, "et/et.jsonl");
    let by = by_id(&et);
    assert!((by["Books_0001"]["metrics"]["set_f1"].as_f64().unwrap() - 0.8).abs() < 1e-12);
    assert_eq!(by["Medicine_0002"]["metrics"]["set_exact_match"], 1.0);
    assert!(et[0]["input_question"]
        .as_str()
        .unwrap()
        .contains("### Instruction"));
    let s = summary(&p, "ea");
    assert!(s["metrics"].as_object().unwrap().len() >= 3, "{s}");

    // QMSum: ROUGE and BERTScore (tiny random BERT, layer 2) per example, means in summary.
    let qm = rows(&p, "qm/qm.jsonl");
    let cands: Vec<String> = qm
        .iter()
        .map(|r| r["pred"].as_str().unwrap().to_string())
        .collect();
    let refs: Vec<Vec<String>> = qm
        .iter()
        .map(|r| vec![r["gold"].as_str().unwrap().to_string()])
        .collect();
    let scorer = bwb::metrics::bertscore::BertScorer::from_dir(
        &std::path::Path::new(crate::common::REPO).join("tests/fixtures/models/tiny-bert"),
        &bwb::metrics::bertscore::BertScoreOptions {
            layer: Some(2),
            ..Default::default()
        },
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let want = scorer.score(&cands, &refs).unwrap();
    for (r, w) in qm.iter().zip(&want) {
        let got = r["metrics"]["bertscore_f1"].as_f64().unwrap();
        assert!((got - w.f1).abs() < 1e-9, "{got} vs {}", w.f1);
        assert!(r["metrics"]["bertscore_recall"].is_null(), "not asked for");
        assert!(r["metrics"]["rougeL"].is_number());
    }
    let battery = &qm[0];
    assert!(battery["pred"]
        .as_str()
        .unwrap()
        .contains("standard batteries"));
    assert!(
        battery["metrics"]["rougeL"].as_f64().unwrap() > 0.4,
        "{battery}"
    );
    let s = summary(&p, "qm");
    let rl: Vec<f64> = qm
        .iter()
        .map(|r| r["metrics"]["rougeL"].as_f64().unwrap())
        .collect();
    assert!((mean(&s, "rougeL") - rl.iter().sum::<f64>() / 3.0).abs() < 1e-12);

    // Local experiments: the smoke model, smoke sample sizes.
    let s = summary(&p, "ms");
    assert_eq!(s["num_examples"], 2);
    assert_eq!(s["model"], "smoke");
    let s = summary(&p, "es");
    assert_eq!(s["task"], "summarization");

    // A rerun sends nothing and rewrites the same results.
    let before = crate::common::snapshot(&p.path("results/smoke/experiments"));
    p.bwb(&[
        "--smoke-test",
        "experiments",
        "--config",
        "exp.yaml",
        "--tag",
        "api",
    ])
    .ok();
    // Only the failed example is sent again (errors are retried, as in `bwb eval`).
    assert_eq!(server.received(), sent + 1);
    let not_fb = |v: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
        v.into_iter()
            .filter(|(n, _)| !n.starts_with("fb/"))
            .collect()
    };
    assert_eq!(
        not_fb(before),
        not_fb(crate::common::snapshot(
            &p.path("results/smoke/experiments")
        ))
    );

    // The dashboard shows the experiments without any fine-tune summary.
    p.bwb(&["--smoke-test", "dashboard"]).ok();
    let d: Value = serde_json::from_str(&p.read("dashboard-data/smoke/experiments.json")).unwrap();
    assert_eq!(d.as_array().unwrap().len(), 9);
    assert!(p
        .read("site/smoke/data.js")
        .contains("\"experiment_id\":\"lb\""));
}

/// (what the line says, the field the error must name) — each replaces one line of ALL.
/// The last entry's error is on the line it adds.
const BAD: [(&str, &str, &str); 10] = [
    (
        "dataset: {name: hotpotqa, split: validation, num_examples: 50, seed: 42}",
        "dataset: {name: hotpot, split: validation}",
        "dataset.name",
    ),
    ("task: {name: rag_qa}", "task: {name: qa}", "task.name"),
    (
        "metrics: [exact_match, f1]",
        "metrics: [exact_match, bleu]",
        "metrics",
    ),
    ("metrics: [exact_match, f1]", "metrics: [rougeL]", "metrics"),
    (
        "model: {name: openai:gpt-4o}",
        "model: {name: mistral:large}",
        "model",
    ),
    (
        "model: {name: openai:gpt-4o}",
        "model: {name: no-such-model}",
        "model",
    ),
    (
        "dataset: {name: hotpotqa, split: validation, num_examples: 50, seed: 42}",
        "dataset: {name: hotpotqa, split: train}",
        "dataset.split",
    ),
    (
        "dataset: {name: longbench, split: test, task: null}",
        "dataset: {name: longbench, task: hotpotqa}",
        "dataset.task",
    ),
    ("mode: baseline", "mode: scaledown", "mode"),
    (
        "mode: baseline",
        "mode: baseline\n    num_exampels: 3",
        "num_exampels",
    ),
];

#[test]
fn dry_run_checks_every_line_prints_the_plan_and_sends_nothing() {
    let server = FakeOpenAi::start(&[]);
    let p = all_project(&server);
    let out = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--dry-run",
        ])
        .ok()
        .stdout();
    for id in ["hp", "mr", "fb", "lb", "et", "ea", "qm", "ms", "es"] {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("{id} "))),
            "{id}: {out}"
        );
    }
    assert!(out.contains("9 experiments"), "{out}");
    assert!(out.contains("nothing sent"), "{out}");
    assert_eq!(server.received(), 0);
    assert!(!p.path("results").exists(), "a dry run writes no results");
    // The priced experiment shows a cost, the others say unpriced.
    let fb = out.lines().find(|l| l.starts_with("fb ")).unwrap();
    assert!(!fb.contains("unpriced"), "{fb}");

    let text = p.read("exp.yaml");
    for (old, new, field) in BAD {
        let mut line = text.lines().position(|l| l.trim() == old).unwrap() + 1;
        line += new.matches('\n').count();
        p.write("bad.yaml", &text.replacen(old, new, 1));
        let err = p
            .bwb(&[
                "--smoke-test",
                "experiments",
                "--config",
                "bad.yaml",
                "--dry-run",
            ])
            .fails(1);
        assert!(err.contains(&format!("bad.yaml:{line}")), "{new}: {err}");
        assert!(err.contains(field), "{new}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // A missing API key names the variable and .env.
    let q = Project::new();
    q.write("exp.yaml", &text);
    let err = q
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--dry-run",
        ])
        .fails(1);
    assert!(
        err.contains("exp.yaml:7") && err.contains("OPENAI_API_KEY") && err.contains(".env"),
        "{err}"
    );
    // Selection by id and tag; an unknown id lists the valid ones.
    let out = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--dry-run",
            "--tag",
            "local",
        ])
        .ok()
        .stdout();
    assert!(out.contains("2 experiments"), "{out}");
    let err = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--experiment-id",
            "zz",
        ])
        .fails(1);
    assert!(err.contains("zz") && err.contains("hp, mr"), "{err}");
    // Without --config: configs/experiments.yaml.
    let out = p
        .bwb(&["--smoke-test", "experiments", "--dry-run"])
        .ok()
        .stdout();
    assert!(out.contains("hotpotqa-gpt4o-mini-baseline"), "{out}");
    let err = p
        .bwb(&["--smoke-test", "experiments", "--config", "nope.yaml"])
        .fails(1);
    assert!(
        err.contains("nope.yaml") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn parallel_experiments_write_what_serial_ones_do() {
    let server = FakeOpenAi::start(&RULES);
    let serial = all_project(&server);
    let args = [
        "--smoke-test",
        "experiments",
        "--config",
        "exp.yaml",
        "--tag",
        "api",
    ];
    serial
        .bwb(&[&args[..], &["--serial-experiments"]].concat())
        .ok();
    let parallel = all_project(&server);
    parallel
        .bwb(&[&args[..], &["--parallel-experiments"]].concat())
        .ok();
    let strip = |p: &Project| -> Vec<(String, Vec<Value>)> {
        // Latency differs run to run; everything else must match.
        let mut out = Vec::new();
        for id in ["hp", "mr", "fb", "lb", "et", "ea", "qm"] {
            let dir = p.path(&format!("results/smoke/experiments/{id}"));
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".jsonl"))
                .collect();
            names.sort();
            for n in names {
                let rows: Vec<Value> = rows(p, &format!("{id}/{n}"))
                    .into_iter()
                    .map(|mut r| {
                        r["latency_ms"] = Value::Null;
                        r
                    })
                    .collect();
                out.push((n, rows));
            }
        }
        out
    };
    assert_eq!(strip(&serial), strip(&parallel));
}

#[test]
fn long_contexts_are_cut_in_the_middle_for_local_models_and_counted() {
    let server = FakeOpenAi::start(&[]);
    let p = project(&server);
    // A window far shorter than the fixtures' contexts.
    let cfg = p.read("configs/datasets/longbench-qasper.yaml");
    p.write(
        "configs/datasets/longbench-qasper.yaml",
        &cfg.replace(
            "max_seq_length:",
            "max_seq_length: 680\n_old_max_seq_length:",
        )
        .lines()
        .filter(|l| !l.starts_with("_old_max_seq_length"))
        .collect::<Vec<_>>()
        .join("\n"),
    );
    p.write(
        "exp.yaml",
        "experiments:\n  - {id: cut, model: smoke, dataset: {name: longbench, task: qasper}, task: rag_qa}\n  - {id: api, model: openai:gpt-4o, dataset: {name: longbench, task: qasper}, task: rag_qa}\n",
    );
    p.bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .ok();
    let s = summary(&p, "cut");
    let cut_rows = rows(&p, "cut/cut.jsonl");
    let n_cut = cut_rows.iter().filter(|r| r["truncated"] == true).count();
    assert!(n_cut >= 1, "{s}");
    assert_eq!(s["truncated"], n_cut);
    for r in &cut_rows {
        assert!(r["input_tokens"].as_u64().unwrap() <= 680 - 16, "{r}");
    }
    let preds = jsonl(&p.read("results/smoke/experiments/cut/predictions/longbench-qasper.jsonl"));
    let (i, r) = cut_rows
        .iter()
        .enumerate()
        .find(|(_, r)| r["truncated"] == true)
        .unwrap();
    let pred = preds.iter().find(|x| x["id"] == r["id"]).unwrap();
    let prompt = pred["input_messages"].to_string();
    let ctx = r["input_context"].as_str().unwrap().to_string();
    let head: String = ctx.chars().take(12).collect();
    let tail: String = ctx
        .chars()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        prompt.contains(&head) && prompt.contains(&tail),
        "head and tail kept ({i})"
    );
    assert!(!prompt.contains(&ctx), "the middle is cut");
    // The API model got the whole context.
    assert_eq!(summary(&p, "api")["truncated"], 0);
    assert_eq!(server.users_with(&ctx).len(), 1);
    // A window the prompt cannot fit even without its context is a one-line error.
    let cfg = p.read("configs/datasets/longbench-qasper.yaml");
    p.write(
        "configs/datasets/longbench-qasper.yaml",
        &cfg.replace("max_seq_length: 680", "max_seq_length: 100"),
    );
    std::fs::remove_dir_all(p.path("results/smoke/experiments/cut")).unwrap();
    let err = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--experiment-id",
            "cut",
        ])
        .fails(1);
    assert!(
        err.contains("max_seq_length 100") && err.contains("raise max_seq_length"),
        "{err}"
    );
}

#[test]
fn upload_hf_pushes_results_and_summaries_to_a_dataset_repo() {
    let server = FakeOpenAi::start(&RULES);
    let hub = crate::sync_hub::start();
    let p = all_project(&server);
    let hf_home = p.path("hf-home").display().to_string();
    let p = p
        .set_env("HF_HOME", &hf_home)
        .set_env("HF_ENDPOINT", &hub.endpoint)
        .set_env("HF_TOKEN", crate::sync_hub::TOKEN);
    let args = [
        "--smoke-test",
        "experiments",
        "--config",
        "exp.yaml",
        "--experiment-id",
        "hp",
        "--upload-hf",
        "me/bwb-results",
    ];
    let out = p.bwb(&args).ok().stdout();
    assert!(out.contains("to datasets/me/bwb-results"), "{out}");
    {
        let h = hub.hub();
        let repo = &h.repos["me/bwb-results"];
        assert_eq!((repo.kind.as_str(), repo.private), ("dataset", true));
        assert_eq!(repo.commits.len(), 1);
        let summary = "results/smoke/experiments/hp/summary.json";
        assert_eq!(
            repo.files[summary].content,
            std::fs::read(p.path(summary)).unwrap()
        );
        assert!(repo
            .files
            .contains_key("results/smoke/experiments/hp/summary.csv"));
        assert!(h.violations.is_empty(), "{:?}", h.violations);
    }
    // Rerun: every example is cached, nothing new to upload.
    let out = p.bwb(&args).ok().stdout();
    assert!(out.contains("nothing uploaded"), "{out}");
    assert_eq!(hub.hub().repos["me/bwb-results"].commits.len(), 1);
    // A bad repo id is refused before anything runs.
    let err = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--upload-hf",
            "bad id",
        ])
        .fails(1);
    assert!(
        err.contains("--upload-hf `bad id`") && err.contains("ORG/NAME"),
        "{err}"
    );
}
