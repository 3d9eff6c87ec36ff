//! `bwb bench serve` against a real `bwb serve` (request and token counts, the JSON line's
//! arithmetic) and against fake servers on 127.0.0.1 with known delays (TTFT, TPOT, ITL,
//! E2E and goodput within tolerance), failing requests, seeded Poisson arrivals, and a fake
//! ScaleDown compression endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{jsonl, Project};
use crate::serve::Server;

/// One request the fake server saw: seconds since it started, path, headers, body.
#[derive(Debug, Clone)]
struct Seen {
    at: f64,
    path: String,
    headers: String,
    body: Value,
}

/// A fake HTTP server, one thread per connection; `reply` writes the whole response.
struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn start(reply: fn(&Seen, &mut TcpStream)) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let t0 = Instant::now();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let log = log.clone();
                std::thread::spawn(move || {
                    conn.set_nodelay(true).unwrap();
                    let Some(req) = read_request(&mut conn, t0) else {
                        return;
                    };
                    log.lock().unwrap().push(req.clone());
                    reply(&req, &mut conn);
                });
            }
        });
        Fake { base, seen }
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        let all = self.seen.lock().unwrap().clone();
        all.into_iter().filter(|s| s.path == path).collect()
    }
}

fn read_request(conn: &mut TcpStream, t0: Instant) -> Option<Seen> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let at = t0.elapsed().as_secs_f64();
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = String::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
        headers.push_str(&h.to_ascii_lowercase());
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Seen {
        at,
        path,
        headers,
        body,
    })
}

fn respond(conn: &mut TcpStream, status: &str, kind: &str, body: &str) {
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn event(conn: &mut TcpStream, v: &Value) {
    let _ = write!(conn, "data: {v}\n\n");
    let _ = conn.flush();
}

fn ms(n: u64) {
    std::thread::sleep(Duration::from_millis(n));
}

/// An OpenAI-compatible stream whose timing the `model` field picks: `fast` sends its first
/// token after 100 ms, `slow` after 800 ms, then one every 40 ms; `instant` never waits;
/// `broken` answers 500; `midstream` sends one token, then an error event. No /tokenize.
fn openai(req: &Seen, conn: &mut TcpStream) {
    if !req.path.starts_with("/v1/") {
        return respond(conn, "404 Not Found", "text/plain", "no such route");
    }
    let model = req.body["model"].as_str().unwrap_or("");
    let first = match model {
        "fast" => 100,
        "slow" => 800,
        "instant" | "midstream" => 0,
        _ => {
            return respond(
                conn,
                "500 Internal Server Error",
                "application/json",
                r#"{"error": {"message": "boom"}}"#,
            )
        }
    };
    let gap = if model == "instant" { 0 } else { 40 };
    let n = req.body["max_tokens"].as_u64().unwrap();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    );
    let chat = req.path == "/v1/chat/completions";
    if chat {
        event(
            conn,
            &json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        );
    }
    ms(first);
    for i in 0..n {
        if i > 0 {
            ms(gap);
        }
        if model == "midstream" && i == 1 {
            event(conn, &json!({"error": {"message": "the engine stopped"}}));
            break;
        }
        let piece = format!("w{i} ");
        let choice = if chat {
            json!({"index": 0, "delta": {"content": piece}, "finish_reason": null})
        } else {
            json!({"index": 0, "text": piece, "finish_reason": null})
        };
        event(conn, &json!({"choices": [choice]}));
    }
    if req.body["stream_options"]["include_usage"] == true {
        event(
            conn,
            &json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": n, "total_tokens": 11 + n}}),
        );
    }
    let _ = write!(conn, "data: [DONE]\n\n");
}

/// `bwb bench serve --url URL ARGS` (ARGS split on spaces).
fn bench(p: &Project, url: &str, args: &str) -> crate::common::Run {
    let mut all = vec!["bench", "serve", "--url", url];
    all.extend(args.split_whitespace());
    p.bwb(&all)
}

fn bench_json(p: &Project, url: &str, args: &str) -> Value {
    let out = bench(p, url, &format!("{args} --json")).ok().stdout();
    let rows = jsonl(&out);
    assert_eq!(rows.len(), 1, "{out}");
    rows[0].clone()
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} missing in {v}"))
}

fn assert_near(got: f64, lo: f64, hi: f64, what: &str) {
    assert!(lo <= got && got <= hi, "{what}: {got} not in [{lo}, {hi}]");
}

#[test]
fn against_bwb_serve_every_request_streams_max_tokens_and_the_json_adds_up() {
    let s = Server::start(Project::new(), &["--smoke-test"], &["--model", "smoke"]);
    let p = Project::new();
    let url = s.url("");
    let args = "--model smoke --concurrency 4 --requests 8 --prompt-len 24 --max-tokens 6 --slo ttft=60000,tpot=60000";
    let v = bench_json(&p, &url, args);
    assert_eq!(
        (v["completed"].as_u64(), v["failed"].as_u64()),
        (Some(8), Some(0)),
        "{v}"
    );
    assert_eq!(v["output_tokens"], 48, "max_tokens × requests: {v}");
    assert_eq!(v["output_tokens_from_usage"], 8, "{v}");
    // /tokenize makes each prompt exactly --prompt-len tokens as the server counts them.
    assert_eq!(v["prompt_len_exact"], true, "{v}");
    assert_eq!(v["prompt_tokens_mean"], 24.0, "{v}");
    let d = f(&v, "/duration_s");
    assert!(d > 0.0);
    assert!((f(&v, "/output_throughput") - 48.0 / d).abs() < 1e-9);
    assert!((f(&v, "/request_throughput") - 8.0 / d).abs() < 1e-9);
    assert!((f(&v, "/total_token_throughput") - (48.0 + 8.0 * 24.0) / d).abs() < 1e-9);
    assert_eq!(
        v["good_requests"], 8,
        "generous SLOs: every request is good"
    );
    assert!((f(&v, "/goodput") - 8.0 / d).abs() < 1e-9);
    for k in ["ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"] {
        for q in ["mean", "p50", "p99"] {
            assert!(f(&v, &format!("/{k}/{q}")) >= 0.0);
        }
    }
    assert!(f(&v, "/e2el_ms/p50") >= f(&v, "/ttft_ms/p50"));
    assert!(f(&v, "/e2el_ms/mean") <= 1e3 * d + 1.0);
    assert_eq!(v["per_model"][0]["output_tokens"], 48);
    assert_eq!(
        (v["endpoint"].as_str(), v["concurrency"].as_u64()),
        (Some("completions"), Some(4))
    );
    // The chat route, and the table.
    let chat = bench_json(
        &p,
        &url,
        "--model smoke --concurrency 2 --requests 2 --prompt-len 8 --max-tokens 3 --endpoint chat",
    );
    assert_eq!(
        (chat["completed"].as_u64(), chat["output_tokens"].as_u64()),
        (Some(2), Some(6)),
        "{chat}"
    );
    let table = bench(
        &p,
        &url,
        "--model smoke --concurrency 1 --requests 1 --prompt-len 4 --max-tokens 2",
    )
    .ok()
    .stdout();
    for want in [
        "completed / failed",
        " 1 / 0",
        "TTFT",
        "TPOT",
        "ITL",
        "E2E",
        "output throughput",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    // An unknown model is each request's failure (404), and no request succeeding is an error.
    let err = bench(
        &p,
        &url,
        "--model nope --concurrency 2 --requests 2 --prompt-len 4 --max-tokens 2",
    )
    .fails(1);
    assert!(
        err.contains("every request") && err.contains("HTTP 404"),
        "{err}"
    );
}

#[test]
fn known_delays_give_known_ttft_tpot_itl_e2e_and_goodput() {
    let fake = Fake::start(openai);
    let p = Project::new();
    // 100 ms to the first token, then 4 more 40 ms apart: E2E 260 ms. The server sleeps at
    // least that long, so the lower bounds are exact; the upper ones allow a busy machine.
    let v = bench_json(
        &p,
        &fake.base,
        "--model fast --concurrency 4 --requests 4 --prompt-len 16 --max-tokens 5",
    );
    assert_eq!(v["completed"], 4, "{v}");
    assert_eq!(v["prompt_len_exact"], false, "the fake has no /tokenize");
    assert_near(f(&v, "/ttft_ms/mean"), 100.0, 250.0, "TTFT");
    assert_near(f(&v, "/tpot_ms/mean"), 38.0, 90.0, "TPOT");
    assert_near(f(&v, "/itl_ms/p50"), 30.0, 90.0, "ITL");
    assert_near(f(&v, "/e2el_ms/mean"), 260.0, 500.0, "E2E");
    assert_eq!(v["output_tokens"], 20);
    // Round-robin over a fast and a slow model: only the fast ones meet a 400 ms TTFT.
    let v = bench_json(
        &p,
        &fake.base,
        "--model fast --model slow --concurrency 4 --requests 4 --prompt-len 16 --max-tokens 3 --slo ttft=400,tpot=1000 --endpoint chat",
    );
    assert_eq!(
        (v["completed"].as_u64(), v["good_requests"].as_u64()),
        (Some(4), Some(2)),
        "{v}"
    );
    assert!((f(&v, "/goodput") - 2.0 / f(&v, "/duration_s")).abs() < 1e-9);
    assert_near(f(&v, "/ttft_ms/p99"), 800.0, 1000.0, "slow TTFT");
    let models: Vec<&str> = v["per_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["fast", "slow"]);
    assert_eq!(v["per_model"][1]["completed"], 2);
    let sent: Vec<Seen> = fake.seen("/v1/chat/completions");
    let count = |m: &str| sent.iter().filter(|s| s.body["model"] == m).count();
    assert_eq!((count("fast"), count("slow")), (2, 2));
    let b = &sent[0].body;
    assert_eq!(
        (
            b["ignore_eos"].as_bool(),
            b["stream"].as_bool(),
            b["max_tokens"].as_u64()
        ),
        (Some(true), Some(true), Some(3))
    );
    assert_eq!(b["stream_options"]["include_usage"], true);
    // Without /tokenize a prompt is --prompt-len words.
    let words = b["messages"][0]["content"]
        .as_str()
        .unwrap()
        .split(' ')
        .count();
    assert_eq!(words, 16);
}

#[test]
fn failing_requests_are_counted_not_fatal() {
    let fake = Fake::start(openai);
    let p = Project::new();
    let v = bench_json(
        &p,
        &fake.base,
        "--model instant --model broken --model midstream --concurrency 3 --requests 6 --prompt-len 4 --max-tokens 3",
    );
    assert_eq!(
        (v["completed"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(4)),
        "{v}"
    );
    assert_eq!(v["output_tokens"], 6, "only completed requests count: {v}");
    let errors: Vec<(String, u64)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["error"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|(e, n)| e.contains("HTTP 500") && e.contains("boom") && *n == 2),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|(e, n)| e.contains("the engine stopped") && *n == 2),
        "{errors:?}"
    );
    assert_eq!(v["per_model"][1]["failed"], 2);
    // Nothing listening: every request fails, reported in one line.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let err = bench(
        &p,
        &url,
        "--model m --concurrency 1 --requests 2 --prompt-len 4 --max-tokens 2",
    )
    .fails(1);
    assert!(err.contains("every request"), "{err}");
}

#[test]
fn seeded_poisson_arrivals_reach_the_server_on_schedule_and_repeat() {
    let fake = Fake::start(openai);
    let p = Project::new();
    let (n, rate, seed) = (20usize, 20.0, 3u64);
    let run = |seed: u64| {
        let before = fake.seen("/v1/completions").len();
        let v = bench_json(
            &p,
            &fake.base,
            &format!("--model instant --request-rate 20 --requests 20 --prompt-len 8 --max-tokens 1 --seed {seed}"),
        );
        assert_eq!(v["completed"], 20, "{v}");
        assert_eq!(
            (v["request_rate"].as_f64(), v["burstiness"].as_f64()),
            (Some(20.0), Some(1.0))
        );
        fake.seen("/v1/completions")[before..].to_vec()
    };
    let first = run(seed);
    let plan = bwb::bench::serve::arrival_times(n, rate, 1.0, seed).unwrap();
    let mut at: Vec<f64> = first.iter().map(|s| s.at).collect();
    at.sort_by(f64::total_cmp);
    for i in 1..n {
        let (got, want) = (at[i] - at[0], plan[i] - plan[0]);
        assert!(
            (got - want).abs() < 0.15,
            "arrival {i}: {got:.3} s after the first, planned {want:.3}"
        );
    }
    let mean_gap = (at[n - 1] - at[0]) / (n - 1) as f64;
    let planned_gap = (plan[n - 1] - plan[0]) / (n - 1) as f64;
    assert!(
        (mean_gap - planned_gap).abs() < 0.01,
        "{mean_gap} vs {planned_gap}"
    );
    assert!(
        (plan[n - 1] - n as f64 / rate).abs() < 1e-9,
        "the schedule ends at N/R"
    );
    // The same seed sends the same prompts; another seed others.
    let prompts = |seen: &[Seen]| {
        let mut p: Vec<String> = seen
            .iter()
            .map(|s| s.body["prompt"].as_str().unwrap().to_string())
            .collect();
        p.sort();
        p
    };
    assert_eq!(prompts(&first), prompts(&run(seed)));
    assert_ne!(prompts(&first), prompts(&run(seed + 1)));
}

/// A ScaleDown-style `/compress/raw/`: key `k` required; `model` picks the answer: `results`
/// (half the words kept, after 30 ms), `data` (a quarter), `fail` (500), `cut` (truncated JSON).
fn scaledown(req: &Seen, conn: &mut TcpStream) {
    if req.path != "/compress/raw/" {
        return respond(conn, "404 Not Found", "text/plain", "no");
    }
    if !req.headers.contains("x-api-key: k\r\n") {
        return respond(
            conn,
            "401 Unauthorized",
            "application/json",
            r#"{"detail": "bad key"}"#,
        );
    }
    let words = req.body["context"].as_str().unwrap().split(' ').count() as u64;
    let body = |keep: u64, wrapper: &str| {
        json!({"successful": true, wrapper: {"compressed_prompt": "x", "original_prompt_tokens": words, "compressed_prompt_tokens": keep, "compression_ratio": words as f64 / keep as f64}}).to_string()
    };
    ms(30);
    match req.body["model"].as_str().unwrap() {
        "results" => respond(
            conn,
            "200 OK",
            "application/json",
            &body(words / 2, "results"),
        ),
        "data" => respond(conn, "200 OK", "application/json", &body(words / 4, "data")),
        "cut" => respond(
            conn,
            "200 OK",
            "application/json",
            r#"{"results": {"compressed_pro"#,
        ),
        _ => respond(conn, "500 Internal Server Error", "text/plain", "down"),
    }
}

#[test]
fn the_compress_endpoint_reports_ratio_latency_percentiles_and_errors() {
    let fake = Fake::start(scaledown);
    let p = Project::new();
    let v = bench_json(
        &p,
        &fake.base,
        "--endpoint compress --model results --model data --model fail --model cut --concurrency 4 --requests 8 --prompt-len 40 --compress-rate 0.5 --api-key k",
    );
    assert_eq!(
        (v["completed"].as_u64(), v["failed"].as_u64()),
        (Some(4), Some(4)),
        "{v}"
    );
    assert_eq!(v["error_rate"], 0.5);
    // compressed / original: 0.5 for `results`, 0.25 for `data`.
    assert!(
        (f(&v, "/compression_ratio_mean") - 0.375).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(v["original_tokens_mean"], 40.0);
    for q in ["mean", "p50", "p95", "p99"] {
        assert_near(f(&v, &format!("/latency_ms/{q}")), 30.0, 300.0, q);
    }
    assert!(f(&v, "/latency_ms/p50") <= f(&v, "/latency_ms/p95"));
    assert!((f(&v, "/request_throughput") - 4.0 / f(&v, "/duration_s")).abs() < 1e-9);
    let errors = v["errors"].to_string();
    assert!(
        errors.contains("HTTP 500") && errors.contains("malformed answer"),
        "{errors}"
    );
    let sent = fake.seen("/compress/raw/");
    let b = &sent[0].body;
    assert_eq!(b["scaledown"]["rate"], 0.5);
    assert_eq!(b["context"].as_str().unwrap().split(' ').count(), 40);
    assert!(b["prompt"].as_str().is_some_and(|q| !q.is_empty()));
    // A wrong key: every request fails with the service's 401.
    let err = bench(
        &p,
        &fake.base,
        "--endpoint compress --model results --concurrency 2 --requests 2 --prompt-len 5 --api-key wrong",
    )
    .fails(1);
    assert!(err.contains("HTTP 401"), "{err}");
    let table = bench(
        &p,
        &fake.base,
        "--endpoint compress --model results --concurrency 1 --requests 1 --prompt-len 8 --api-key k",
    )
    .ok()
    .stdout();
    assert!(
        table.contains("compression ratio (mean)     0.500") && table.contains("p95"),
        "{table}"
    );
}

#[test]
fn bad_flags_are_refused_in_one_line() {
    let p = Project::new();
    for (args, want) in [
        ("--url 127.0.0.1:1 --concurrency 1", "--url"),
        (
            "--url http://127.0.0.1:1 --request-rate 0",
            "--request-rate",
        ),
        (
            "--url http://127.0.0.1:1 --request-rate 2 --burstiness=-1",
            "--burstiness",
        ),
        (
            "--url http://127.0.0.1:1 --concurrency 1 --slo ttft=fast",
            "--slo",
        ),
        (
            "--url http://127.0.0.1:1 --concurrency 1 --endpoint compress --compress-rate 2",
            "--compress-rate",
        ),
    ] {
        let mut all = vec![
            "bench",
            "serve",
            "--model",
            "m",
            "--requests",
            "2",
            "--prompt-len",
            "4",
        ];
        all.extend(args.split_whitespace());
        let err = p.bwb(&all).fails(1);
        assert!(err.contains(want), "{want}: {err}");
    }
}
