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
    let mut api_key = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
            if k.trim().eq_ignore_ascii_case("x-api-key") {
                api_key = v.trim().to_string();
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    if path.ends_with("/compress/raw/") {
        return scaledown(&stream, &api_key, v, bodies);
    }
    received.fetch_add(1, Ordering::SeqCst);
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

const SD_KEY: &str = "sd-test-key-0123";

/// Faults the fake ScaleDown endpoint serves first, in order (then it answers).
static SD_FAULTS: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
/// ScaleDown requests received.
static SD_SEEN: AtomicUsize = AtomicUsize::new(0);

fn reply(stream: &TcpStream, status: &str, extra: &str, body: &str) -> std::io::Result<()> {
    let mut s = stream;
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

/// The fake ScaleDown endpoint: checks the key, serves queued faults, then keeps the first
/// half of the context's words (rate 0.5) with word counts as tokens; answers questions
/// about Tasmania in the `data` wrapper, the rest in `results`.
fn scaledown(
    stream: &TcpStream,
    key: &str,
    v: Value,
    bodies: &Mutex<Vec<Value>>,
) -> std::io::Result<()> {
    SD_SEEN.fetch_add(1, Ordering::SeqCst);
    bodies
        .lock()
        .unwrap()
        .push(serde_json::json!({"scaledown": v.clone()}));
    if key != SD_KEY {
        return reply(
            stream,
            "401 Unauthorized",
            "",
            r#"{"detail":"invalid api key"}"#,
        );
    }
    let fault = {
        let mut f = SD_FAULTS.lock().unwrap();
        if f.is_empty() {
            None
        } else {
            Some(f.remove(0))
        }
    };
    match fault {
        Some("429") => {
            return reply(
                stream,
                "429 Too Many Requests",
                "Retry-After: 0\r\n",
                r#"{"detail":"slow down"}"#,
            )
        }
        Some("500") => {
            return reply(
                stream,
                "500 Internal Server Error",
                "",
                r#"{"detail":"boom"}"#,
            )
        }
        Some("truncated") => {
            return reply(
                stream,
                "200 OK",
                "",
                r#"{"successful": true, "results": {"compressed_pro"#,
            )
        }
        _ => {}
    }
    let ctx = v["context"].as_str().unwrap_or("");
    let words: Vec<&str> = ctx.split_whitespace().collect();
    let kept = words[..words.len() / 2].join(" ");
    let inner = serde_json::json!({
        "compressed_prompt": kept,
        "original_prompt_tokens": words.len(),
        "compressed_prompt_tokens": words.len() / 2,
        "compression_ratio": 2.0,
        "success": true,
    });
    let wrapper = if v["prompt"].as_str().unwrap_or("").contains("tasmania") {
        "data"
    } else {
        "results"
    };
    let body = serde_json::json!({"successful": true, wrapper: inner}).to_string();
    reply(stream, "200 OK", "", &body)
}

fn project(server: &FakeOpenAi) -> Project {
    Project::new()
        .set_env("OPENAI_API_KEY", KEY)
        .set_env("OPENAI_BASE_URL", &format!("{}/v1", server.url))
        .set_env("BWB_API_BACKOFF_MS", "20")
        .set_env("SCALEDOWN_API_KEY", SD_KEY)
        .set_env("SCALEDOWN_BASE_URL", &server.url)
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
    ("mode: baseline", "mode: squeeze", "mode"),
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
        let run = p.bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "bad.yaml",
            "--dry-run",
        ]);
        let (out, err) = (run.stdout(), run.stderr());
        assert_eq!(run.code(), 1, "{new}: {out}");
        assert!(!err.contains("panicked"), "{err}");
        let lines: Vec<&str> = err.trim().lines().collect();
        assert!(
            lines[0].contains(&format!("bad.yaml:{line}")),
            "{new}: {err}"
        );
        assert!(lines[0].contains(field), "{new}: {err}");
        if field == "num_exampels" {
            // Not YAML of the right shape: the file is refused as a whole, on one line.
            assert_eq!(lines.len(), 1, "{err}");
        } else {
            // The bad line, then the count; the plan of the other eight is still printed.
            assert_eq!(lines.len(), 2, "{err}");
            assert!(lines[1].contains("1 of 9 experiments"), "{err}");
            assert!(out.contains("8 experiments"), "{new}: {out}");
        }
    }
    // Every dataset in compressed mode too: 9 + 9 experiments planned.
    let mut both = text.clone();
    let combos = [
        ("hotpotqa", "rag_qa"),
        ("longbench", "rag_qa"),
        ("ethic", "rag_qa"),
        ("ethic", "retrieval"),
        ("ethic", "summarization"),
        ("msmarco", "rag_qa"),
        ("msmarco", "retrieval"),
        ("financebench", "rag_qa"),
        ("qmsum", "summarization"),
    ];
    for (i, (ds, task)) in combos.iter().enumerate() {
        both.push_str(&format!(
            "  - {{id: c{i}, model: openai:gpt-4o, mode: compressed, compression: {{method: scaledown, rate: 0.5}}, dataset: {{name: {ds}}}, task: {task}}}\n"
        ));
    }
    p.write("both.yaml", &both);
    let out = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "both.yaml",
            "--dry-run",
        ])
        .ok()
        .stdout();
    assert!(out.contains("18 experiments"), "{out}");
    assert_eq!(server.received(), 0);
    // A missing API key names the variable and .env.
    let q = Project::new();
    q.write("exp.yaml", &text);
    let run = q.bwb(&[
        "--smoke-test",
        "experiments",
        "--config",
        "exp.yaml",
        "--dry-run",
    ]);
    let err = run.stderr();
    assert_eq!(run.code(), 1);
    assert!(
        err.contains("exp.yaml:7") && err.contains("OPENAI_API_KEY") && err.contains(".env"),
        "{err}"
    );
    // The seven API experiments, each on its line, then the count; the local ones planned.
    assert_eq!(err.trim().lines().count(), 8, "{err}");
    assert!(run.stdout().contains("2 experiments"), "{}", run.stdout());
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
fn compressed_mode_goes_through_scaledown_beside_baseline() {
    let server = FakeOpenAi::start(&RULES);
    let p = project(&server);
    p.write(
        "exp.yaml",
        "experiments:
  - {id: base, model: openai:gpt-4o, dataset: {name: msmarco}, task: rag_qa, metrics: [f1]}
  - id: comp
    model: openai:gpt-4o
    mode: compressed
    compression: {method: scaledown, rate: 0.5, model: gpt-4o, price_per_1m_tokens: 1.0}
    dataset: {name: msmarco}
    task: rag_qa
    metrics: [f1]
  - id: legacy
    model: openai:gpt-4o
    mode: scaledown
    scaledown: {rate: auto, compression_model: gemini-2.5-flash}
    dataset: {name: hotpotqa, num_examples: 2}
    task: {name: rag_qa}
    metrics: [exact_match, f1]
",
    );
    *SD_FAULTS.lock().unwrap() = vec!["429", "500", "truncated"];
    SD_SEEN.store(0, Ordering::SeqCst);
    let out = p
        .bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .ok()
        .stdout();
    // 4 + 2 contexts compressed, plus the three faults retried.
    assert_eq!(SD_SEEN.load(Ordering::SeqCst), 4 + 2 + 3, "{out}");
    let base = summary(&p, "base");
    let comp = summary(&p, "comp");
    assert!(base["compression"].is_null());
    assert_eq!(comp["mode"], "compressed");
    let c = &comp["compression"];
    assert_eq!(c["method"], "scaledown");
    assert_eq!(c["rate"], 0.5);
    assert_eq!(c["examples"], 4);
    let orig = c["original_tokens_total"].as_f64().unwrap();
    let kept = c["compressed_tokens_total"].as_f64().unwrap();
    assert!((c["token_reduction"].as_f64().unwrap() - (1.0 - kept / orig)).abs() < 1e-12);
    assert!(kept < orig && kept >= orig / 2.0 - 4.0, "{c}");
    assert!((c["cost_total_usd"].as_f64().unwrap() - orig / 1e6).abs() < 1e-12);
    assert!(
        comp["tokens"]["avg_input_tokens"].as_f64().unwrap()
            < base["tokens"]["avg_input_tokens"].as_f64().unwrap()
    );
    // What the model got is the compressed context, and each row says so.
    for r in rows(&p, "comp/comp.jsonl") {
        let cmp = &r["compression"];
        let sent = cmp["compressed_context"].as_str().unwrap();
        assert!(!server.users_with(sent).is_empty(), "{sent}");
        assert!(cmp["original_tokens"].as_u64() > cmp["compressed_tokens"].as_u64());
        assert!(
            (cmp["compression_ratio"].as_f64().unwrap()
                - cmp["compressed_tokens"].as_f64().unwrap()
                    / cmp["original_tokens"].as_f64().unwrap())
            .abs()
                < 1e-12
        );
        assert!(r["input_context"].as_str().unwrap().len() > sent.len());
    }
    // ScaleDown got the body its API documents; the legacy form's model and rate too.
    let sd: Vec<Value> = server
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter_map(|b| b.get("scaledown").cloned())
        .collect();
    assert!(sd
        .iter()
        .any(|b| b["model"] == "gpt-4o" && b["scaledown"]["rate"] == 0.5));
    assert!(sd
        .iter()
        .any(|b| b["model"] == "gemini-2.5-flash" && b["scaledown"]["rate"] == "auto"));
    assert!(sd
        .iter()
        .all(|b| b["context"].is_string() && b["prompt"].is_string()));
    let legacy = summary(&p, "legacy");
    assert_eq!(legacy["compression"]["examples"], 2);
    let csv = p.read("results/smoke/experiments/comp/summary.csv");
    assert!(csv.lines().next().unwrap().contains("token_reduction"));

    // Baseline and compressed side by side, paired example by example, worked by hand.
    assert!(
        out.contains("base → comp (scaledown, 4 paired examples)"),
        "{out}"
    );
    assert!(legacy["vs_baseline"].is_null() && base["vs_baseline"].is_null());
    let vs = &comp["vs_baseline"];
    assert_eq!(vs["baseline"], "base");
    assert_eq!(vs["pairs"], 4);
    let b_rows = by_id(&rows(&p, "base/base.jsonl"));
    let c_rows = by_id(&rows(&p, "comp/comp.jsonl"));
    let sum = |rows: &BTreeMap<String, Value>, f: &dyn Fn(&Value) -> f64| -> f64 {
        rows.values().map(f).sum()
    };
    let b_tok = sum(&b_rows, &|r| r["input_tokens"].as_f64().unwrap());
    let c_tok = sum(&c_rows, &|r| r["input_tokens"].as_f64().unwrap());
    assert_eq!(vs["input_tokens"]["baseline"].as_f64().unwrap(), b_tok);
    assert_eq!(vs["input_tokens"]["compressed"].as_f64().unwrap(), c_tok);
    assert!(
        (vs["input_tokens"]["reduction"].as_f64().unwrap() - (1.0 - c_tok / b_tok)).abs() < 1e-12
    );
    let b_f1 = sum(&b_rows, &|r| r["metrics"]["f1"].as_f64().unwrap()) / 4.0;
    let c_f1 = sum(&c_rows, &|r| r["metrics"]["f1"].as_f64().unwrap()) / 4.0;
    let f1 = &vs["metrics"]["f1"];
    assert!(
        (f1["baseline"].as_f64().unwrap() - b_f1).abs() < 1e-12,
        "{f1}"
    );
    assert!(
        (f1["compressed"].as_f64().unwrap() - c_f1).abs() < 1e-12,
        "{f1}"
    );
    assert!(
        (f1["diff"].as_f64().unwrap() - (c_f1 - b_f1)).abs() < 1e-12,
        "{f1}"
    );
    let (lo, hi) = (
        f1["ci_low"].as_f64().unwrap(),
        f1["ci_high"].as_f64().unwrap(),
    );
    assert!(
        lo <= c_f1 - b_f1 + 1e-12 && c_f1 - b_f1 <= hi + 1e-12,
        "{f1}"
    );
    let p_value = f1["p_value"].as_f64().unwrap();
    assert!(p_value > 0.0 && p_value <= 1.0);
    // gpt-4o has no price in the smoke configs: with an unpriced call, no cost comparison.
    assert!(b_rows.values().all(|r| r["cost_usd"].is_null()));
    assert!(vs["cost_usd"]["compressed"].is_null() && vs["cost_usd"]["saved"].is_null());
    let c_lat = sum(&c_rows, &|r| {
        r["latency_ms"].as_f64().unwrap() + r["compression"]["latency_ms"].as_f64().unwrap()
    }) / 4.0;
    assert!((vs["latency_ms"]["compressed"].as_f64().unwrap() - c_lat).abs() < 1e-9);

    // A rerun compresses nothing again and sends nothing to the model.
    let (sd0, api0) = (SD_SEEN.load(Ordering::SeqCst), server.received());
    p.bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .ok();
    assert_eq!(
        (SD_SEEN.load(Ordering::SeqCst), server.received()),
        (sd0, api0)
    );

    // A wrong key stops the run with one line naming the variable.
    let q = p.set_env("SCALEDOWN_API_KEY", "wrong");
    std::fs::remove_dir_all(q.path("results/smoke/experiments/comp")).unwrap();
    let err = q
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--experiment-id",
            "comp",
            "--no-cache",
        ])
        .fails(1);
    assert!(
        err.contains("SCALEDOWN_API_KEY") && !err.contains("wrong"),
        "{err}"
    );
}

#[test]
fn compressed_mode_runs_the_local_compressors_beside_baseline() {
    let Some(gguf) = crate::generate::smollm2() else {
        return;
    };
    let server = FakeOpenAi::start(&RULES);
    let p = project(&server);
    let exp = |id: &str, method: &str| {
        format!(
            "  - id: {id}\n    model: openai:gpt-4o\n    mode: compressed\n    compression: {{method: {method}, rate: 0.5, model: {}, force_tokens: [\"?\"]}}\n    dataset: {{name: hotpotqa, num_examples: 2}}\n    task: rag_qa\n    metrics: [f1]\n",
            gguf.display()
        )
    };
    p.write(
        "exp.yaml",
        &format!(
            "experiments:\n  - {{id: base, model: openai:gpt-4o, dataset: {{name: hotpotqa, num_examples: 2}}, task: rag_qa, metrics: [f1]}}\n{}{}",
            exp("sel", "selective"),
            exp("lin", "lingua")
        ),
    );
    p.bwb(&[
        "--smoke-test",
        "experiments",
        "--config",
        "exp.yaml",
        "--dry-run",
    ])
    .ok();
    let out = p
        .bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .ok()
        .stdout();
    let base = summary(&p, "base");
    for (id, method) in [("sel", "selective"), ("lin", "lingua")] {
        let s = summary(&p, id);
        let c = &s["compression"];
        assert_eq!(
            (c["method"].as_str(), c["examples"].as_u64()),
            (Some(method), Some(2)),
            "{c}"
        );
        let (orig, kept) = (
            c["original_tokens_total"].as_f64().unwrap(),
            c["compressed_tokens_total"].as_f64().unwrap(),
        );
        assert!((kept / orig - 0.5).abs() < 0.05, "{id}: {kept} of {orig}");
        // Local compute is priced at the default GPU's hourly rate.
        assert!(c["cost_total_usd"].as_f64().unwrap() > 0.0, "{c}");
        assert!(
            s["tokens"]["avg_input_tokens"].as_f64().unwrap()
                < base["tokens"]["avg_input_tokens"].as_f64().unwrap()
        );
        for r in rows(&p, &format!("{id}/{id}.jsonl")) {
            let sent = r["compression"]["compressed_context"].as_str().unwrap();
            assert!(!server.users_with(sent).is_empty(), "{sent}");
        }
        // Side by side with the baseline, on the same examples.
        let head = format!("base → {id} ({method}, 2 paired examples)");
        assert!(out.contains(&head), "{out}");
        assert_eq!(s["vs_baseline"]["pairs"], 2, "{}", s["vs_baseline"]);
    }
}

#[test]
fn compression_blocks_are_checked_by_line() {
    let server = FakeOpenAi::start(&[]);
    let p = project(&server);
    let head = "experiments:\n  - id: c\n    model: openai:gpt-4o\n    dataset: {name: msmarco}\n    task: rag_qa\n";
    for (extra, field, line) in [
        (
            "    mode: compressed\n",
            "`compressed` needs a `compression:",
            6,
        ),
        (
            "    mode: compressed\n    compression: {method: selective, rate: 0.5, model: gone/x.gguf}\n",
            "compression.model",
            7,
        ),
        (
            "    mode: compressed\n    compression: {method: lingua, rate: 0, model: smollm2-135m}\n",
            "compression.rate",
            7,
        ),
        (
            "    mode: compressed\n    compression: {method: selective, unit: clause}\n",
            "unknown unit `clause`",
            7,
        ),
        (
            "    mode: compressed\n    compression: {method: scaledown, force_tokens: [a]}\n",
            "local compressors",
            7,
        ),
        (
            "    mode: compressed\n    compression: {method: zip}\n",
            "unknown method `zip`; valid: scaledown, scaledown-summarize, selective, lingua",
            7,
        ),
        (
            "    mode: compressed\n    compression: {method: scaledown, rate: 1.5}\n",
            "compression.rate",
            7,
        ),
        (
            "    compression: {method: scaledown}\n",
            "only applies to `mode: compressed`",
            6,
        ),
        (
            "    mode: squeeze\n",
            "valid: baseline, compressed, scaledown",
            6,
        ),
    ] {
        p.write("c.yaml", &format!("{head}{extra}"));
        let err = p
            .bwb(&[
                "--smoke-test",
                "experiments",
                "--config",
                "c.yaml",
                "--dry-run",
            ])
            .fails(1);
        assert!(
            err.contains(&format!("c.yaml:{line}")) && err.contains(field),
            "{extra}: {err}"
        );
    }
    let q = Project::new().set_env("OPENAI_API_KEY", KEY);
    q.write("c.yaml", &format!("{head}    mode: scaledown\n"));
    let err = q
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "c.yaml",
            "--dry-run",
        ])
        .fails(1);
    assert!(
        err.contains("c.yaml:6") && err.contains("SCALEDOWN_API_KEY"),
        "{err}"
    );
}

/// A LangSmith stand-in: records (path, x-api-key, body) of every request; answers 200 (or
/// 500 while `fail` is set).
struct LangSmithStandIn {
    url: String,
    seen: Arc<Mutex<Vec<(String, String, Value)>>>,
}

impl LangSmithStandIn {
    fn start(fail: bool) -> LangSmithStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = s2.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let (mut len, mut key) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.trim().to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "x-api-key" => key = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let path = line.split_whitespace().nth(1).unwrap().to_string();
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    seen.lock().unwrap().push((path, key, v));
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = reply(&stream, status, "", "{}");
                });
            }
        });
        LangSmithStandIn { url, seen }
    }
}

/// `20261206T090501123456Z` + a UUID.
fn is_segment(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 22 + 36
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..21].iter().all(u8::is_ascii_digit)
        && b[21] == b'Z'
        && uuid_like(&s[22..])
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[test]
fn langsmith_gets_a_root_run_per_experiment_a_child_per_example_and_feedback() {
    let server = FakeOpenAi::start(&RULES);
    let ls = LangSmithStandIn::start(false);
    let p = project(&server)
        .set_env("LANGSMITH_API_KEY", "ls-key-42")
        .set_env("LANGSMITH_ENDPOINT", &ls.url);
    p.write(
        "exp.yaml",
        "experiments:\n  - {id: hp, model: openai:gpt-4o, dataset: {name: hotpotqa}, task: rag_qa, metrics: [exact_match, f1]}\n",
    );
    let out = p
        .bwb(&[
            "--smoke-test",
            "experiments",
            "--config",
            "exp.yaml",
            "--langsmith",
            "--langsmith-project",
            "ctx",
        ])
        .ok()
        .stdout();
    assert!(
        out.contains("langsmith: logged 5 runs and 8 feedback scores to project `ctx`"),
        "{out}"
    );
    let seen = ls.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, k, _)| k == "ls-key-42"));
    let batches: Vec<&Value> = seen
        .iter()
        .filter(|(p, _, _)| p == "/runs/batch")
        .map(|x| &x.2)
        .collect();
    assert_eq!(batches.len(), 1);
    let runs = batches[0]["post"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
    let root = &runs[0];
    let root_id = root["id"].as_str().unwrap();
    assert!(uuid_like(root_id));
    assert_eq!(root["trace_id"], root_id);
    assert_eq!(root["run_type"], "chain");
    assert_eq!(root["session_name"], "ctx");
    assert!(is_segment(root["dotted_order"].as_str().unwrap()));
    assert!(root.get("parent_run_id").is_none());
    assert_eq!(root["outputs"]["summary"]["experiment_id"], "hp");
    let rows = by_id(&rows(&p, "hp/hp.jsonl"));
    let mut child_ids = Vec::new();
    for c in &runs[1..] {
        let id = c["id"].as_str().unwrap();
        child_ids.push(id.to_string());
        assert_eq!(c["trace_id"], root_id);
        assert_eq!(c["parent_run_id"], root_id);
        assert_eq!(c["run_type"], "llm");
        let dotted = c["dotted_order"].as_str().unwrap();
        let (parent, own) = dotted.split_once('.').unwrap();
        assert_eq!(parent, root["dotted_order"]);
        assert!(is_segment(own) && own.ends_with(id), "{dotted}");
        assert!(c["start_time"].as_str().unwrap() <= c["end_time"].as_str().unwrap());
        let row = &rows[c["name"].as_str().unwrap()];
        assert_eq!(c["outputs"]["pred"], row["pred"]);
        assert_eq!(c["outputs"]["gold"], row["gold"]);
        assert_eq!(c["extra"]["metadata"]["input_tokens"], row["input_tokens"]);
        let msgs = c["inputs"]["messages"].as_array().unwrap();
        assert!(msgs
            .iter()
            .any(|m| m["role"] == "user" && m["content"].as_str().unwrap().contains("Question:")));
    }
    let feedback: Vec<&Value> = seen
        .iter()
        .filter(|(p, _, _)| p == "/feedback")
        .map(|x| &x.2)
        .collect();
    assert_eq!(feedback.len(), 8);
    for f in feedback {
        let run = f["run_id"].as_str().unwrap();
        assert!(child_ids.iter().any(|c| c == run));
        let c = runs.iter().find(|r| r["id"] == run).unwrap();
        let row = &rows[c["name"].as_str().unwrap()];
        let key = f["key"].as_str().unwrap();
        assert_eq!(f["score"], row["metrics"][key], "{key}");
    }
    // A server that fails never fails the run; one line says what was not logged, and the
    // key is in no output.
    let bad = LangSmithStandIn::start(true);
    let q = p.set_env("LANGSMITH_ENDPOINT", &bad.url);
    let run = q.bwb(&[
        "--smoke-test",
        "experiments",
        "--config",
        "exp.yaml",
        "--langsmith",
    ]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.contains("langsmith: not logged: 5 runs, 8 feedback scores"),
        "{err}"
    );
    assert!(!err.contains("ls-key-42") && !run.stdout().contains("ls-key-42"));
    // Tracing on without a key is a one-line error before anything is sent.
    let r = Project::new()
        .set_env("OPENAI_API_KEY", KEY)
        .set_env("LANGSMITH_TRACING", "true");
    r.write("exp.yaml", &q.read("exp.yaml"));
    let err = r
        .bwb(&["--smoke-test", "experiments", "--config", "exp.yaml"])
        .fails(1);
    assert!(err.contains("LANGSMITH_API_KEY"), "{err}");
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
