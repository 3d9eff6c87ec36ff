//! `bwb eval`: a fake provider on 127.0.0.1 speaks OpenAI's, Anthropic's and Gemini's wire
//! formats and injects faults; runs complete, cost is counted once, a killed run resumes
//! without loss or duplicates, a rerun sends nothing; local smoke runs work offline; bad
//! input gives one-line errors.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bwb::backend::{Backend, BatchStats, Completion, Request, Sink, Usage};
use bwb::config::Configs;
use bwb::data::{Answer, Example, Span};
use bwb::eval::{self, Condition, Job};
use bwb::prompt::chat_template::Message;
use bwb::prompt::task::TaskPrompt;
use bwb::score::Parsed;

use crate::common::{jsonl, Project, REPO};

const KEY: &str = "sk-test-0123456789-secret";
/// gpt-5.4-mini in configs/pricing.yaml: 0.75 in, 0.075 cached in, 4.50 out per Mtok; the
/// fake server reports 100 prompt tokens (20 cached) and 5 completion tokens (2 reasoning).
const COST_PER_REQUEST: f64 = (80.0 * 0.75 + 20.0 * 0.075 + 5.0 * 4.50) / 1e6;

/// (path, lower-case header name → value, body) of one request.
type Seen = (String, BTreeMap<String, String>, String);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 429 with `Retry-After: <secs>`.
    RateLimit(u64),
    /// 429 with this `Retry-After` value as is.
    RetryAfter(&'static str),
    ServerError,
    /// Answer only after this long (past the client's timeout).
    Stall(Duration),
    /// 200 with the JSON cut in half.
    Truncated,
}

/// A fake provider. Every request is counted; faults are served first, in order.
struct ApiServer {
    url: String,
    /// Requests received (faulty ones included).
    received: Arc<AtomicUsize>,
    /// Well-formed 200 answers sent.
    answered: Arc<AtomicUsize>,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Once this many answers were sent, every further request hangs (simulates a provider
    /// that stops answering mid-run).
    hang_after: Arc<AtomicUsize>,
    /// Every request received.
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ApiServer {
    fn start(faults: &[Fault]) -> ApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let s = ApiServer {
            url,
            received: Arc::new(AtomicUsize::new(0)),
            answered: Arc::new(AtomicUsize::new(0)),
            faults: Arc::new(Mutex::new(faults.iter().copied().collect())),
            hang_after: Arc::new(AtomicUsize::new(usize::MAX)),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let (received, answered, faults, hang_after, seen) = (
            s.received.clone(),
            s.answered.clone(),
            s.faults.clone(),
            s.hang_after.clone(),
            s.seen.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (received, answered, faults, hang_after, seen) = (
                    received.clone(),
                    answered.clone(),
                    faults.clone(),
                    hang_after.clone(),
                    seen.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(stream, &received, &answered, &faults, &hang_after, &seen);
                });
            }
        });
        s
    }

    fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

fn respond(
    mut s: &TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )?;
    for (k, v) in headers {
        write!(s, "{k}: {v}\r\n")?;
    }
    s.write_all(b"\r\n")?;
    s.write_all(body)?;
    s.flush()
}

/// The provider's answer for a request at `path`: always "Positive." with fixed usage.
fn answer(path: &str) -> String {
    if path.ends_with("/chat/completions") {
        serde_json::json!({
            "id": "chatcmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Positive."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105,
                "prompt_tokens_details": {"cached_tokens": 20},
                "completion_tokens_details": {"reasoning_tokens": 2}}
        })
        .to_string()
    } else if path.ends_with("/v1/messages") {
        serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": "Positive."}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 80, "output_tokens": 5, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 0}
        })
        .to_string()
    } else {
        serde_json::json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Positive."}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 100, "candidatesTokenCount": 3, "thoughtsTokenCount": 2,
                "cachedContentTokenCount": 20, "totalTokenCount": 105}
        })
        .to_string()
    }
}

fn serve(
    stream: TcpStream,
    received: &AtomicUsize,
    answered: &AtomicUsize,
    faults: &Mutex<VecDeque<Fault>>,
    hang_after: &AtomicUsize,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    received.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push((
        path.clone(),
        headers,
        String::from_utf8_lossy(&body).into_owned(),
    ));
    let fault = faults.lock().unwrap().pop_front();
    match fault {
        Some(Fault::RateLimit(secs)) => {
            return respond(
                &stream,
                "429 Too Many Requests",
                &[("Retry-After", secs.to_string())],
                br#"{"error":{"message":"rate limited"}}"#,
            )
        }
        Some(Fault::RetryAfter(v)) => {
            return respond(
                &stream,
                "429 Too Many Requests",
                &[("Retry-After", v.to_string())],
                br#"{"error":{"message":"rate limited"}}"#,
            )
        }
        Some(Fault::ServerError) => {
            return respond(
                &stream,
                "500 Internal Server Error",
                &[],
                br#"{"error":{"message":"boom"}}"#,
            )
        }
        Some(Fault::Stall(d)) => {
            std::thread::sleep(d);
        }
        Some(Fault::Truncated) => {
            let full = answer(&path);
            return respond(&stream, "200 OK", &[], &full.as_bytes()[..full.len() / 2]);
        }
        None => {}
    }
    if answered.load(Ordering::SeqCst) >= hang_after.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(60));
        return Ok(());
    }
    let r = respond(&stream, "200 OK", &[], answer(&path).as_bytes());
    if r.is_ok() && fault.is_none() {
        answered.fetch_add(1, Ordering::SeqCst);
    }
    r
}

/// A project with FPB downloaded and prepared from the smoke fixtures.
fn fpb_project() -> Project {
    let p = Project::new();
    p.bwb(&["--smoke-test", "download", "--task", "fpb"]).ok();
    p.bwb(&["--smoke-test", "prepare", "--task", "fpb"]).ok();
    p
}

fn api_project(server: &ApiServer) -> Project {
    fpb_project()
        .set_env("OPENAI_API_KEY", KEY)
        .set_env("OPENAI_BASE_URL", &format!("{}/v1", server.url))
        .set_env("BWB_API_BACKOFF_MS", "20")
}

const PRED: &str = "results/smoke/predictions/gpt-5.4-mini/fpb/zero-shot/seed-1.jsonl";

fn eval_api(p: &Project, extra: &[&str]) -> crate::common::Run {
    let mut args = vec![
        "--smoke-test",
        "eval",
        "--model",
        "gpt-5.4-mini",
        "--task",
        "fpb",
        "--condition",
        "zero-shot",
        "--seeds",
        "1",
    ];
    args.extend_from_slice(extra);
    p.bwb(&args)
}

/// Distinct examples in a file's draws, and its ids (asserting each occurs once).
fn check_file(text: &str) -> (usize, Vec<serde_json::Value>) {
    let rows = jsonl(text);
    let ids: HashSet<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), rows.len(), "duplicate ids");
    let examples: HashSet<&str> = rows
        .iter()
        .map(|r| r["example_id"].as_str().unwrap())
        .collect();
    (examples.len(), rows)
}

fn spent(stdout: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("total spent this run: $"))
        .unwrap_or_else(|| panic!("no total in {stdout}"));
    line.trim_start_matches("total spent this run: $")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn openai_faults_are_retried_and_every_cost_is_counted_once() {
    let server = ApiServer::start(&[
        Fault::RateLimit(1),
        Fault::ServerError,
        Fault::Stall(Duration::from_secs(3)),
        Fault::Truncated,
    ]);
    let p = api_project(&server);
    let t0 = Instant::now();
    let run = eval_api(&p, &["--concurrency", "2", "--request-timeout", "1"]).ok();
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    let (unique, rows) = check_file(&p.read(PRED));
    // The smoke FPB test set has 15 examples, each generated once.
    assert_eq!((rows.len(), unique), (15, 15));
    for r in &rows {
        assert!(r["error"].is_null(), "{r}");
        assert_eq!(r["raw_output"], "Positive.");
        assert_eq!(
            r["prediction"],
            serde_json::json!({"kind": "label", "label": "positive"})
        );
        assert_eq!(r["gold"]["kind"], "label");
        assert_eq!(r["input_tokens"], 100);
        assert_eq!(r["cached_input_tokens"], 20);
        assert_eq!(r["reasoning_tokens"], 2);
        assert_eq!(r["output_tokens"], 5);
        assert_eq!(r["model"], "gpt-5.4-mini");
        assert_eq!(r["condition"], "zero-shot");
        assert_eq!(r["seed"], 1);
        assert_eq!(r["input_messages"][0]["role"], "system");
        assert_eq!(r["input_messages"][1]["role"], "user");
        assert!((r["cost_usd"].as_f64().unwrap() - COST_PER_REQUEST).abs() < 1e-12);
    }
    // One well-formed answer per distinct example; the four faults came on top.
    assert_eq!(server.answered(), unique);
    assert_eq!(server.received(), unique + 4);
    let total = spent(&run.stdout());
    assert!(
        (total - unique as f64 * COST_PER_REQUEST).abs() < 1e-6,
        "spent {total}, want {} × {COST_PER_REQUEST}",
        unique
    );
    // The wire format: max_completion_tokens and a bearer key; the key is in no file.
    let seen = server.seen.lock().unwrap().clone();
    let (path, headers, body) = &seen[0];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(headers["authorization"], format!("Bearer {KEY}"));
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["model"], "gpt-5.4-mini");
    assert_eq!(body["max_completion_tokens"], 8);
    for (name, bytes) in crate::common::snapshot(p.root()) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the API key leaked into {name}"
        );
    }
    assert!(!run.stdout().contains(KEY) && !run.stderr().contains(KEY));

    // A second identical run sends nothing: every id is finished.
    let before = server.received();
    let again = eval_api(&p, &[]).ok().stdout();
    assert_eq!(server.received(), before);
    assert!(again.contains("0 requests sent"), "{again}");
    assert_eq!(spent(&again), 0.0);

    // Without the predictions, the response cache still answers everything.
    let first = p.read(PRED);
    std::fs::remove_file(p.path(PRED)).unwrap();
    let cached = eval_api(&p, &[]).ok().stdout();
    assert_eq!(server.received(), before, "cache missed");
    assert!(cached.contains(&format!("{unique} cached")), "{cached}");
    // The same lines (in completion order, which concurrency may change), now from the cache.
    let strip = |t: &str| -> BTreeMap<String, serde_json::Value> {
        jsonl(t)
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("from_cache");
                (r["id"].as_str().unwrap().to_string(), r)
            })
            .collect()
    };
    let (a, b) = (strip(&first), strip(&p.read(PRED)));
    assert_eq!(a.len(), b.len());
    for (id, row) in &a {
        assert!(b.get(id) == Some(row), "cached rerun differs at {id}");
    }
    assert!(jsonl(&p.read(PRED)).iter().all(|r| r["from_cache"] == true));
}

/// A sampling API model (OpenAI's GPT-5 family runs only at temperature 1): each seed is an
/// independent generation of the whole test set, with its own response-cache entries, and the
/// summary's spread is across the generations.
#[test]
fn sampling_models_generate_the_test_set_once_per_seed() {
    let server = ApiServer::start(&[]);
    let p = api_project(&server);
    let args = [
        "--smoke-test",
        "eval",
        "--model",
        "gpt-5.4-mini",
        "--task",
        "fpb",
        "--condition",
        "zero-shot",
        "--seeds",
        "3",
    ];
    let out = p.bwb(&args).ok().stdout();
    assert!(out.contains("sampled: generation 3 of 3"), "{out}");
    assert_eq!(
        server.answered(),
        3 * 15,
        "one request per example and seed"
    );
    for seed in 1..=3 {
        let rel = format!("results/smoke/predictions/gpt-5.4-mini/fpb/zero-shot/seed-{seed}.jsonl");
        let (unique, rows) = check_file(&p.read(&rel));
        assert_eq!((rows.len(), unique), (15, 15));
        assert!(rows
            .iter()
            .all(|r| r["generation"] == "sampled" && r["seed"] == seed));
        assert!(rows.iter().all(|r| r["from_cache"] == false), "seed {seed}");
    }
    // Without the predictions, each seed is answered from its own cache entries.
    std::fs::remove_dir_all(p.path("results/smoke/predictions")).unwrap();
    let cached = p.bwb(&args).ok().stdout();
    assert_eq!(server.answered(), 3 * 15, "cache missed");
    assert_eq!(cached.matches("15 cached").count(), 3, "{cached}");

    p.bwb(&["--smoke-test", "classify", "--task", "fpb"]).ok();
    let s: serde_json::Value =
        serde_json::from_str(&p.read("results/smoke/summaries/gpt-5.4-mini_fpb_zero-shot.json"))
            .unwrap();
    assert_eq!(s["spread"], "generations");
    assert_eq!(s["seeds"], serde_json::json!([1, 2, 3]));
    assert_eq!(s["n_predictions"], 45);
    assert_eq!(
        s["metrics"]["macro_f1"]["per_seed"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn killed_run_resumes_without_loss_or_duplicates() {
    let server = ApiServer::start(&[]);
    server.hang_after.store(4, Ordering::SeqCst);
    let p = api_project(&server);
    let mut child = spawn(
        &p,
        &[
            "--smoke-test",
            "eval",
            "--model",
            "gpt-5.4-mini",
            "--task",
            "fpb",
            "--condition",
            "zero-shot",
            "--seeds",
            "1",
            "--concurrency",
            "1",
        ],
    );
    // Wait for the answered examples to reach the file, then kill -9 mid-run.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = std::fs::read_to_string(p.path(PRED))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= 4 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = p.read(PRED);
    let lines = partial.lines().count();
    assert!((4..15).contains(&lines), "{lines} lines before the kill");
    // A torn last line, as a kill in the middle of a write would leave.
    let last = partial
        .lines()
        .last()
        .unwrap()
        .replace("\"id\":\"", "\"id\":\"torn-");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p.path(PRED))
        .unwrap();
    f.write_all(&last.as_bytes()[..last.len() / 2]).unwrap();
    drop(f);

    server.hang_after.store(usize::MAX, Ordering::SeqCst);
    let out = eval_api(&p, &[]).ok().stdout();
    assert!(out.contains(&format!("{lines} already done")), "{out}");
    let text = p.read(PRED);
    assert!(text.starts_with(&partial), "finished lines were rewritten");
    let (unique, rows) = check_file(&text);
    assert_eq!(rows.len(), 15);
    assert!(rows.iter().all(|r| r["error"].is_null()));
    assert!(!text.contains("torn-"));
    // Nothing was asked twice: one answer per distinct example over both runs.
    assert_eq!(server.answered(), unique);
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bwb"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("--root")
        .arg(p.root())
        .args(args)
        .current_dir(p.root())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in &p.env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

#[test]
fn cost_limit_stops_cleanly_and_a_rerun_continues() {
    let server = ApiServer::start(&[]);
    let p = api_project(&server);
    // Two requests' worth: the run stops after the second answer (one request in flight).
    let limit = format!("{}", COST_PER_REQUEST * 1.5);
    let err = eval_api(&p, &["--concurrency", "1", "--max-cost-usd", &limit]).fails(1);
    assert!(
        err.contains("cost limit reached") && err.contains("--max-cost-usd"),
        "{err}"
    );
    let (_, rows) = check_file(&p.read(PRED));
    assert_eq!(server.answered(), 2);
    assert!(rows.len() >= 2 && rows.len() < 15, "{}", rows.len());
    let out = eval_api(&p, &[]).ok().stdout();
    let (unique, rows) = check_file(&p.read(PRED));
    assert_eq!(rows.len(), 15, "{out}");
    assert_eq!(server.answered(), unique);
}

/// Configs for an Anthropic and a Gemini model (priced), and an OpenAI-compatible server
/// given by the model config's `base_url`.
fn add_models(p: &Project, server: &ApiServer) {
    p.write(
        "configs/models/claude-test.yaml",
        "id: claude-test\nkind: api\nprovider: anthropic\napi_model: claude-test-1\n",
    );
    p.write(
        "configs/models/gemini-test.yaml",
        "id: gemini-test\nkind: api\nprovider: gemini\napi_model: gemini-test-1\n",
    );
    p.write(
        "configs/models/vllm-test.yaml",
        &format!(
            "id: vllm-test\nkind: api\nprovider: openai\napi_model: served-model\nbase_url: {}/v1/\n",
            server.url
        ),
    );
    let pricing = p.read("configs/pricing.yaml").replace(
        "api:\n",
        "api:\n  claude-test: {input_per_mtok: 1.0, cached_input_per_mtok: 0.1, output_per_mtok: 5.0}\n  gemini-test: {input_per_mtok: 1.0, cached_input_per_mtok: 0.25, output_per_mtok: 10.0}\n",
    );
    p.write("configs/pricing.yaml", &pricing);
}

#[test]
fn anthropic_and_gemini_wire_formats_and_keys_from_dotenv() {
    let server = ApiServer::start(&[Fault::RateLimit(0), Fault::Truncated]);
    let p = fpb_project()
        .set_env("ANTHROPIC_BASE_URL", &server.url)
        .set_env("GEMINI_BASE_URL", &server.url)
        .set_env("BWB_API_BACKOFF_MS", "20");
    add_models(&p, &server);
    p.write(
        ".env",
        "ANTHROPIC_API_KEY=ak-dotenv\nGEMINI_API_KEY=gk-dotenv\n",
    );
    for (model, input, cached, output, price) in [
        // Anthropic: 80 fresh + 20 cache-read input tokens; 5 output.
        (
            "claude-test",
            100,
            20,
            5,
            (80.0 * 1.0 + 20.0 * 0.1 + 5.0 * 5.0) / 1e6,
        ),
        // Gemini: thoughts (2) are billed as output on top of the 3 candidate tokens.
        (
            "gemini-test",
            100,
            20,
            5,
            (80.0 * 1.0 + 20.0 * 0.25 + 5.0 * 10.0) / 1e6,
        ),
    ] {
        p.bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            model,
            "--task",
            "fpb",
            "--condition",
            "5-shot",
            "--seeds",
            "1",
        ])
        .ok();
        let rows = jsonl(&p.read(&format!(
            "results/smoke/predictions/{model}/fpb/5-shot/seed-1.jsonl"
        )));
        assert_eq!(rows.len(), 15);
        for r in &rows {
            assert!(r["error"].is_null(), "{r}");
            assert_eq!(r["prediction"]["label"], "positive");
            assert_eq!(r["input_tokens"], input);
            assert_eq!(r["cached_input_tokens"], cached);
            assert_eq!(r["output_tokens"], output);
            assert!(
                (r["cost_usd"].as_f64().unwrap() - price).abs() < 1e-12,
                "{model}: {r}"
            );
            // system, five (user, assistant) demonstrations, the question.
            let roles: Vec<&str> = r["input_messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["role"].as_str().unwrap())
                .collect();
            assert_eq!(roles.len(), 12, "{roles:?}");
            assert_eq!(roles[0], "system");
            assert_eq!(&roles[1..3], ["user", "assistant"]);
            assert_eq!(roles[11], "user");
        }
    }
    let seen = server.seen.lock().unwrap().clone();
    let claude = seen
        .iter()
        .find(|(path, _, _)| path == "/v1/messages")
        .unwrap();
    assert_eq!(claude.1["x-api-key"], "ak-dotenv");
    assert_eq!(claude.1["anthropic-version"], "2023-06-01");
    let body: serde_json::Value = serde_json::from_str(&claude.2).unwrap();
    assert_eq!(body["model"], "claude-test-1");
    assert_eq!(body["max_tokens"], 8);
    assert!(body["system"].as_str().unwrap().contains("financial"));
    assert_eq!(body["messages"].as_array().unwrap().len(), 11);
    let gem = seen
        .iter()
        .find(|(path, _, _)| path == "/v1beta/models/gemini-test-1:generateContent")
        .unwrap();
    assert_eq!(gem.1["x-goog-api-key"], "gk-dotenv");
    let body: serde_json::Value = serde_json::from_str(&gem.2).unwrap();
    assert_eq!(body["contents"][1]["role"], "model");
    assert_eq!(body["generationConfig"]["maxOutputTokens"], 8);
    assert!(body["systemInstruction"]["parts"][0]["text"].is_string());

    // An OpenAI-compatible server named by the model config's base_url.
    let p = p.set_env("OPENAI_API_KEY", KEY);
    let before = server.received();
    p.bwb(&[
        "--smoke-test",
        "eval",
        "--model",
        "vllm-test",
        "--task",
        "fpb",
        "--condition",
        "zero-shot",
        "--seeds",
        "1",
    ])
    .ok();
    assert!(server.received() > before);
    let seen = server.seen.lock().unwrap().clone();
    assert!(seen[before..]
        .iter()
        .all(|(path, _, _)| path == "/v1/chat/completions"));
    // Unpriced: cost unknown, not zero.
    let rows = jsonl(&p.read("results/smoke/predictions/vllm-test/fpb/zero-shot/seed-1.jsonl"));
    assert!(rows.iter().all(|r| r["cost_usd"].is_null()));
}

/// Regression: `Retry-After: 1e300` panicked in `Duration::from_secs_f64`; it is capped and
/// the request is retried after the policy's longest wait.
#[test]
fn a_huge_retry_after_is_capped_not_a_panic() {
    use bwb::backend::api::{ApiBackend, ApiOptions, RetryPolicy};
    let server = ApiServer::start(&[Fault::RetryAfter("1e300"), Fault::RetryAfter("inf")]);
    let configs = Configs::load(&Path::new(REPO).join("configs")).unwrap();
    let env = bwb::settings::Env::from_pairs(
        &[
            ("OPENAI_API_KEY", KEY),
            ("OPENAI_BASE_URL", &format!("{}/v1", server.url)),
        ],
        &[],
    );
    let opts = ApiOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_millis(50),
        },
        ..ApiOptions::default()
    };
    let backend = ApiBackend::new(
        configs.model("gpt-5.4-mini").unwrap(),
        &env,
        &configs.pricing,
        opts,
    )
    .unwrap();
    let t0 = Instant::now();
    let mut got = Vec::new();
    backend
        .generate(
            vec![Request {
                key: 0,
                messages: vec![Message::user("Is this up or down?")],
                max_new_tokens: 8,
                sample: None,
            }],
            &mut |c| {
                got.push(c);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].error, None);
    assert_eq!(got[0].text, "Positive.");
    assert_eq!(server.received(), 3, "two 429s, then the answer");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

/// Regression: `--request-timeout 1e300`, `BWB_API_TIMEOUT_S=1e300` and `--exec-timeout
/// 1e300` panicked in `Duration::from_secs_f64`; now each is one line naming its source.
#[test]
fn huge_timeouts_are_one_line_errors() {
    let p = Project::new().set_env("OPENAI_API_KEY", KEY);
    let err = eval_api(&p, &["--request-timeout", "1e300"]).fails(1);
    assert!(
        err.contains("--request-timeout 1e300") && err.contains("at most 86400"),
        "{err}"
    );
    let q = Project::new()
        .set_env("OPENAI_API_KEY", KEY)
        .set_env("BWB_API_TIMEOUT_S", "1e300");
    let err = eval_api(&q, &[]).fails(1);
    assert!(
        err.contains("BWB_API_TIMEOUT_S (environment) 1e300"),
        "{err}"
    );
    // From .env too.
    p.write(".env", "BWB_API_TIMEOUT_S=1e300\n");
    let err = eval_api(&p, &[]).fails(1);
    assert!(err.contains("BWB_API_TIMEOUT_S (.env) 1e300"), "{err}");
    std::fs::remove_file(p.path(".env")).unwrap();
    for args in [
        &["classify", "--task", "fpb", "--exec-timeout", "1e300"][..],
        &["run", "--exec-timeout", "1e300"][..],
    ] {
        let err = p.bwb(args).fails(1);
        assert!(
            err.contains("--exec-timeout 1e300") && err.contains("at most 86400"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_input_gives_one_line_errors() {
    let p = fpb_project();
    let eval = |p: &Project, model: &str, cond: &str| {
        p.bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            model,
            "--task",
            "fpb",
            "--condition",
            cond,
        ])
    };
    // Missing key: names the variable.
    let err = eval(&p, "gpt-5.4-mini", "zero-shot").fails(1);
    assert!(
        err.contains("OPENAI_API_KEY") && err.contains(".env"),
        "{err}"
    );
    // An API model has no LoRA condition.
    let err = eval(&p, "gpt-5.4-mini", "lora").fails(1);
    assert!(err.contains("API model"), "{err}");
    // No adapter: names the train command.
    let err = eval(&p, "smoke", "lora").fails(1);
    assert!(
        err.contains("bwb train --model smoke --task fpb --condition lora-500 --smoke-test"),
        "{err}"
    );
    let err = eval(&p, "smoke", "ten-shot").fails(1);
    assert!(
        err.contains("ten-shot") && err.contains("zero-shot"),
        "{err}"
    );
    let err = p
        .bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--seeds",
            "9",
        ])
        .fails(1);
    assert!(
        err.contains("--seeds 9") && err.contains("eval_seeds"),
        "{err}"
    );
    // Unknown provider: the config error names the file and the value.
    p.write(
        "configs/models/mistral-x.yaml",
        "id: mistral-x\nkind: api\nprovider: mistral\napi_model: m\n",
    );
    let err = eval(&p, "mistral-x", "zero-shot").fails(1);
    assert!(
        err.contains("mistral-x.yaml") && err.contains("mistral"),
        "{err}"
    );
    std::fs::remove_file(p.path("configs/models/mistral-x.yaml")).unwrap();
    // Missing prepared data: names the prepare command.
    let q = Project::new().set_env("OPENAI_API_KEY", KEY);
    let err = eval(&q, "gpt-5.4-mini", "zero-shot").fails(1);
    assert!(err.contains("bwb prepare --task fpb --smoke-test"), "{err}");
    // A bad base URL names where it came from.
    let p = p
        .set_env("OPENAI_API_KEY", KEY)
        .set_env("OPENAI_BASE_URL", "localhost:9");
    let err = eval(&p, "gpt-5.4-mini", "zero-shot").fails(1);
    assert!(
        err.contains("OPENAI_BASE_URL") && err.contains("http://"),
        "{err}"
    );
}

#[test]
fn smoke_eval_runs_offline_for_zero_shot_and_5_shot() {
    let p = fpb_project();
    let out = p
        .bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            "zero-shot",
        ])
        .ok()
        .stdout();
    // run_defaults.yaml: n_eval_seeds 3 of eval_seeds [1, 2, 3, …]. The smoke model decodes
    // greedily: the test set is generated once (seed 1's file), each example exactly once,
    // and the three seeds resample it when scored.
    assert!(
        out.contains("15 examples (0 already done, 15 generated, 0 errors; greedy: the one generation, spread over 3 resamples when scored)"),
        "{out}"
    );
    let rel = "results/smoke/predictions/smoke/fpb/zero-shot/seed-1.jsonl";
    let (unique, rows) = check_file(&p.read(rel));
    assert_eq!((rows.len(), unique), (15, 15), "{out}");
    for r in &rows {
        assert!(r["error"].is_null());
        assert_eq!(r["id"], r["example_id"]);
        assert_eq!(r["generation"], "greedy");
        assert!(r["input_tokens"].as_u64().unwrap() > 0);
        assert!(
            r["output_tokens"].as_u64().unwrap() <= 8,
            "max_new_tokens of fpb is 8"
        );
        assert!(
            r["cost_usd"].is_null(),
            "local cost is left to the TCO report"
        );
        assert_eq!(r["prediction"]["kind"], "label");
    }
    for seed in 2..=3 {
        let other = format!("results/smoke/predictions/smoke/fpb/zero-shot/seed-{seed}.jsonl");
        assert!(!p.path(&other).exists(), "seed {seed} generated again");
    }
    let again = p
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
        .ok()
        .stdout();
    assert!(again.contains("15 already done, 0 generated"), "{again}");

    // The headline is the metric on the whole test set; the spread is over 3 resamples.
    p.bwb(&["--smoke-test", "classify", "--task", "fpb"]).ok();
    let summary: serde_json::Value =
        serde_json::from_str(&p.read("results/smoke/summaries/smoke_fpb_zero-shot.json")).unwrap();
    assert_eq!(summary["spread"], "test_resamples");
    assert_eq!(summary["seeds"], serde_json::json!([1, 2, 3]));
    assert_eq!(summary["n_predictions"], 15);
    let configs = Configs::load(&Path::new(REPO).join("configs")).unwrap();
    let task = configs.task("fpb").unwrap();
    let labels: Vec<&str> = task.answer.labels.iter().map(String::as_str).collect();
    let y_true: Vec<&str> = rows
        .iter()
        .map(|r| r["gold"]["label"].as_str().unwrap())
        .collect();
    let y_pred: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r["prediction"]["label"].as_str())
        .collect();
    let whole = bwb::metrics::classification::macro_f1(&labels, &y_true, &y_pred);
    let m = &summary["metrics"]["macro_f1"];
    assert_eq!(m["mean"].as_f64().unwrap(), whole);
    assert_eq!(m["per_seed"].as_array().unwrap().len(), 3);

    p.bwb(&[
        "--smoke-test",
        "eval",
        "--model",
        "smoke",
        "--task",
        "fpb",
        "--condition",
        "5-shot",
        "--seeds",
        "1",
    ])
    .ok();
    let rows = jsonl(&p.read("results/smoke/predictions/smoke/fpb/5-shot/seed-1.jsonl"));
    assert_eq!(rows.len(), 15);
    let first = &rows[0]["input_messages"];
    assert_eq!(first.as_array().unwrap().len(), 12);
    // Every row of a seed sees the same demonstrations.
    assert!(rows.iter().all(|r| r["input_messages"][1] == first[1]));
}

#[test]
fn lora_condition_evaluates_the_trained_adapter() {
    let p = fpb_project();
    p.bwb(&[
        "--smoke-test",
        "train",
        "--model",
        "smoke",
        "--task",
        "fpb",
        "--condition",
        "lora-500",
    ])
    .ok();
    let out = p
        .bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            "lora-500",
            "--seeds",
            "1",
        ])
        .ok()
        .stdout();
    assert!(out.contains("smoke/fpb/lora-500/seed-1"), "{out}");
    let rows = jsonl(&p.read("results/smoke/predictions/smoke/fpb/lora-500/seed-1.jsonl"));
    assert_eq!(rows.len(), 15);
    assert!(rows.iter().all(|r| r["condition"] == "lora-500"));
    // lora-full was not trained: asking for both names its train command.
    let err = p
        .bwb(&[
            "--smoke-test",
            "eval",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            "lora",
        ])
        .fails(1);
    assert!(err.contains("--condition lora-full"), "{err}");
}

/// A backend that counts one token per 4 characters and finds the clause in whichever
/// window contains it; records what it was asked.
struct WindowFake {
    clause: &'static str,
    asked: Mutex<Vec<String>>,
}

impl Backend for WindowFake {
    fn describe(&self) -> String {
        "fake".into()
    }
    fn count_tokens(&self, m: &[Message]) -> bwb::error::Result<Option<usize>> {
        Ok(Some(
            m.iter().map(|x| x.content.chars().count()).sum::<usize>() / 4,
        ))
    }
    fn generate(&self, reqs: Vec<Request>, sink: &mut Sink<'_>) -> bwb::error::Result<BatchStats> {
        for r in reqs {
            let user = r.messages.last().unwrap().content.clone();
            self.asked.lock().unwrap().push(user.clone());
            let text = if user.contains(self.clause) {
                format!("\"{}\"", self.clause)
            } else {
                "No relevant clause.".into()
            };
            sink(Completion {
                key: r.key,
                text,
                usage: Usage {
                    input_tokens: 10,
                    output_tokens: 2,
                    ..Usage::default()
                },
                latency_ms: 1.0,
                ..Completion::default()
            })?;
        }
        Ok(BatchStats::default())
    }
}

#[test]
fn cuad_long_contracts_are_split_into_windows_and_aggregated() {
    let configs = Configs::load(&Path::new(REPO).join("configs")).unwrap();
    let mut task = configs.task("cuad").unwrap().clone();
    task.max_seq_length = 600;
    task.max_new_tokens = 100;
    let prompt = TaskPrompt::load(&Path::new(REPO).join("prompts"), &task).unwrap();
    let clause = "This Agreement shall be governed by the laws of Delaware.";
    let filler: Vec<String> = (0..1500).map(|i| format!("word{i}")).collect();
    let mut words = filler.clone();
    words.insert(1000, clause.to_string());
    let long = words.join(" ");
    let ex = |id: &str, context: &str, present: bool| Example {
        id: id.into(),
        task: "cuad".into(),
        inputs: BTreeMap::from([
            ("title".to_string(), "T".to_string()),
            ("context".to_string(), context.to_string()),
            ("question".to_string(), "Governing law?".to_string()),
        ]),
        answer: Answer::Spans {
            spans: if present {
                vec![Span {
                    text: clause.into(),
                    start: 0,
                }]
            } else {
                vec![]
            },
        },
        target: String::new(),
        stratum: None,
    };
    let test = vec![
        ex("long", &long, true),
        ex("absent", &filler.join(" "), false),
        ex("short", clause, true),
    ];
    let fake = WindowFake {
        clause,
        asked: Mutex::new(Vec::new()),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for seed in 1..=4 {
        let job = Job {
            backend: &fake,
            model: "fake",
            task: &task,
            prompt: &prompt,
            condition: Condition::ZeroShot,
            seed,
            draw: 0,
            test: &test,
            shots: Vec::new(),
            path: dir.path().join(format!("seed-{seed}.jsonl")),
            progress: bwb::progress::ProgressMode::Hidden,
        };
        let out = eval::run(&job).unwrap();
        let these = bwb::eval::predictions::read(&job.path).unwrap();
        assert_eq!(these.len(), out.examples);
        rows.extend(these);
    }
    let covered: HashSet<&str> = rows.iter().map(|r| r.example_id.as_str()).collect();
    assert_eq!(
        covered.len(),
        3,
        "every run generates every example: {covered:?}"
    );
    let asked = fake.asked.lock().unwrap().clone();
    // Every window fits the budget (max_seq_length − max_new_tokens = 500 fake tokens).
    assert!(
        asked.iter().all(|u| u.chars().count() / 4 <= 500),
        "a window is too long"
    );
    for r in &rows {
        match r.example_id.as_str() {
            "long" => {
                assert!(r.windows > 3, "{} windows", r.windows);
                assert_eq!(
                    r.prediction,
                    Parsed::Spans {
                        spans: vec![clause.to_string()]
                    }
                );
                assert_eq!(r.input_tokens, 10 * r.windows as u64);
            }
            "absent" => {
                assert!(r.windows > 3);
                assert_eq!(r.prediction, Parsed::Spans { spans: vec![] });
            }
            _ => {
                assert_eq!(r.windows, 1);
                assert_eq!(
                    r.prediction,
                    Parsed::Spans {
                        spans: vec![clause.to_string()]
                    }
                );
            }
        }
    }
}

#[test]
fn cuad_demonstrations_show_the_passage_around_their_answer() {
    let filler = "lorem ipsum ".repeat(1000);
    let clause = "The term is five years.";
    let context = format!("{filler}{clause} {filler}");
    let start = filler.chars().count();
    let shot = Example {
        id: "s".into(),
        task: "cuad".into(),
        inputs: BTreeMap::from([("context".to_string(), context)]),
        answer: Answer::Spans {
            spans: vec![Span {
                text: clause.into(),
                start,
            }],
        },
        target: clause.into(),
        stratum: Some("present".into()),
    };
    let v = eval::shot_view(&shot, "No relevant clause.");
    assert_eq!(
        v.inputs["context"].chars().count(),
        eval::SHOT_CONTEXT_CHARS
    );
    assert!(v.inputs["context"].contains(clause));
    assert_eq!(v.target, clause);
    // An absent-clause shot shows the contract's start and the no-answer phrase.
    let mut absent = shot.clone();
    absent.answer = Answer::Spans { spans: vec![] };
    absent.target = "No relevant clause.".into();
    let v = eval::shot_view(&absent, "No relevant clause.");
    assert!(v.inputs["context"].starts_with("lorem ipsum"));
    assert_eq!(v.target, "No relevant clause.");
}

#[test]
fn local_backend_sorts_by_length_but_answers_each_request_by_its_key() {
    use bwb::backend::local::LocalBackend;
    use bwb::model::load::{self, LoadOptions, ModelSource};
    let c = Configs::load(&Path::new(REPO).join("configs")).unwrap();
    let mc = c.model("smoke").unwrap();
    let source = ModelSource::Random {
        arch: mc.arch.unwrap(),
        init: mc.random_init.clone().unwrap(),
    };
    let m = load::load(&source, &LoadOptions::default()).unwrap();
    let backend = LocalBackend::new(m, 2, "smoke");
    let texts = [
        "a",
        "a much longer prompt than the others",
        "mid length",
        "zz",
    ];
    let reqs: Vec<Request> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Request {
            key: i,
            messages: vec![Message::user(*t)],
            max_new_tokens: 3,
            sample: None,
        })
        .collect();
    let want: Vec<usize> = reqs
        .iter()
        .map(|r| backend.count_tokens(&r.messages).unwrap().unwrap())
        .collect();
    let mut got = Vec::new();
    backend
        .generate(reqs, &mut |c: Completion| {
            got.push(c);
            Ok(())
        })
        .unwrap();
    assert_eq!(got.len(), 4);
    // Longest first, and each completion carries its own prompt's length.
    assert_eq!(got[0].key, 1);
    for c in &got {
        assert_eq!(c.usage.input_tokens as usize, want[c.key], "key {}", c.key);
        assert!(c.usage.output_tokens <= 3);
        assert!(c.error.is_none() && c.cost_usd.is_none());
    }
}

/// `--compress selective:0.5`: each test input (and each 5-shot demonstration) is compressed
/// by the local compressor before the prompt is built; the predictions go under
/// `smoke+selective-0.5` beside the uncompressed run, the compressions are kept and not
/// redone, and the report scores the variant like any model.
#[test]
fn eval_compress_sends_compressed_inputs_under_a_variant_name() {
    let p = fpb_project();
    let args = |cond: &'static str| {
        [
            "--smoke-test",
            "eval",
            "--model",
            "smoke",
            "--task",
            "fpb",
            "--condition",
            cond,
            "--seeds",
            "1",
            "--compress",
            "selective:0.5",
            "--compress-model",
            "smoke",
        ]
    };
    let out = p.bwb(&args("zero-shot")).ok().stdout();
    assert!(
        out.contains("fpb: 15 test contexts compressed with selective-0.5"),
        "{out}"
    );
    let records = jsonl(&p.read("results/smoke/compression/selective-0.5/fpb.test.jsonl"));
    assert_eq!(records.len(), 15);
    let by_id: std::collections::HashMap<String, &serde_json::Value> = records
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r))
        .collect();
    let (orig, kept) = records.iter().fold((0, 0), |(o, k), r| {
        (
            o + r["result"]["original_tokens"].as_u64().unwrap(),
            k + r["result"]["compressed_tokens"].as_u64().unwrap(),
        )
    });
    assert!(kept < orig, "{kept} of {orig} tokens kept");
    let rel = "results/smoke/predictions/smoke+selective-0.5/fpb/zero-shot/seed-1.jsonl";
    let rows = jsonl(&p.read(rel));
    assert_eq!(rows.len(), 15);
    let test = jsonl(&p.read("data/smoke/prepared/fpb/test.jsonl"));
    let mut shortened = 0;
    for r in &rows {
        let id = r["example_id"].as_str().unwrap();
        let rec = by_id[id];
        let field = rec["field"].as_str().unwrap();
        let sent = rec["result"]["text"].as_str().unwrap();
        let user = r["input_messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap();
        assert!(user.contains(sent), "{user} lacks {sent}");
        let ex = test.iter().find(|e| e["id"] == id).unwrap();
        let original = ex["inputs"][field].as_str().unwrap();
        if original != sent {
            shortened += 1;
            assert!(!user.contains(original), "the original went out: {user}");
        }
    }
    assert!(shortened > 0, "nothing was shortened");
    // The uncompressed run is untouched; a rerun compresses and generates nothing again.
    assert!(!p.path("results/smoke/predictions/smoke/fpb").exists());
    let again = p.bwb(&args("zero-shot")).ok().stdout();
    assert!(again.contains("15 already done, 0 generated"), "{again}");
    assert_eq!(
        jsonl(&p.read("results/smoke/compression/selective-0.5/fpb.test.jsonl")),
        records
    );
    // 5-shot: the demonstrations are compressed too.
    p.bwb(&args("5-shot")).ok();
    let shots = jsonl(&p.read("results/smoke/compression/selective-0.5/fpb.shots.jsonl"));
    assert_eq!(shots.len(), 5);
    let five =
        jsonl(&p.read("results/smoke/predictions/smoke+selective-0.5/fpb/5-shot/seed-1.jsonl"));
    let demo = five[0]["input_messages"][1]["content"].as_str().unwrap();
    assert!(
        shots
            .iter()
            .any(|s| demo.contains(s["result"]["text"].as_str().unwrap())),
        "{demo}"
    );
    // Scored like any model, under its variant name.
    p.bwb(&["--smoke-test", "classify", "--task", "fpb"]).ok();
    let summary: serde_json::Value = serde_json::from_str(
        &p.read("results/smoke/summaries/smoke+selective-0.5_fpb_zero-shot.json"),
    )
    .unwrap();
    assert_eq!(summary["n_predictions"], 15);
    // A bad method or rate is one line naming the flag.
    for (bad, want) in [("zip:0.5", "selective"), ("lingua:1.5", "between 0 and 1")] {
        let mut args = args("zero-shot").to_vec();
        let at = args.len() - 3; // the --compress value
        args[at] = bad;
        let err = p.bwb(&args).fails(1);
        assert!(
            err.contains(&format!("--compress {bad}")) && err.contains(want),
            "{err}"
        );
    }
}
