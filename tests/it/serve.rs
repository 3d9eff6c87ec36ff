//! `bwb serve` as a client sees it: every route over real HTTP (reqwest), streaming and not,
//! adapters by name, OpenAI's error envelope for every bad request (and the server still
//! answering afterwards), greedy output equal to `bwb generate`, continuous batching (requests
//! joining mid-generation answer as alone), cancel on disconnect, `/metrics` agreeing with
//! the answers, and the official `openai` Python SDK.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::{jsonl, Project};

/// A running `bwb serve` on a free port; killed on drop.
pub(crate) struct Server {
    child: Child,
    base: String,
    stderr: PathBuf,
    project: Project,
}

impl Server {
    /// `bwb --root <root> [global…] serve ARGS --port 0`, waiting for the address line.
    pub(crate) fn start(project: Project, global: &[&str], args: &[&str]) -> Server {
        let stderr = project.path("serve.stderr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bwb"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .arg("--root")
            .arg(project.root())
            .args(global)
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .current_dir(project.root())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in &project.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("bwb serve: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let Ok(base) = rx.recv_timeout(Duration::from_secs(300)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bwb serve printed no address; stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        };
        Server {
            child,
            base,
            stderr,
            project,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// POST a body (JSON text or raw bytes), returning status, headers and the body as JSON (or a
/// string when it is not JSON).
fn post(
    s: &Server,
    path: &str,
    body: impl Into<reqwest::blocking::Body>,
    key: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value, String) {
    let mut req = client()
        .post(s.url(path))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, headers, v, text)
}

fn get_json(s: &Server, path: &str) -> Value {
    serde_json::from_str(&client().get(s.url(path)).send().unwrap().text().unwrap()).unwrap()
}

fn ok_json(s: &Server, path: &str, body: Value) -> Value {
    let (status, _, v, text) = post(s, path, body.to_string(), None);
    assert_eq!(
        status,
        200,
        "{path} {body}: {text}\nserver stderr:\n{}",
        s.stderr()
    );
    v
}

/// The `data:` payloads of an SSE body, checking it ends with `[DONE]`.
fn sse_events(text: &str) -> Vec<Value> {
    let datas: Vec<&str> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not an SSE data line: {e:?}"))
        })
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
    datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn stream(s: &Server, path: &str, body: Value) -> Vec<Value> {
    let (status, headers, _, text) = post(s, path, body.to_string(), None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(headers["content-type"], "text/event-stream");
    sse_events(&text)
}

fn assert_usage(u: &Value) {
    let p = u["prompt_tokens"].as_u64().unwrap();
    let c = u["completion_tokens"].as_u64().unwrap();
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c, "{u}");
}

fn smoke_server(extra: &[&str]) -> Server {
    let mut args = vec!["--model", "smoke"];
    args.extend_from_slice(extra);
    Server::start(Project::new(), &["--smoke-test"], &args)
}

#[test]
fn smoke_model_serves_every_route_in_openai_shapes() {
    let s = smoke_server(&[]);
    let c = client();
    assert_eq!(
        c.get(s.url("/health")).send().unwrap().status().as_u16(),
        200
    );
    let models: Value =
        serde_json::from_str(&c.get(s.url("/v1/models")).send().unwrap().text().unwrap()).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "smoke");
    assert_eq!(models["data"][0]["object"], "model");
    assert!(models["data"][0]["parent"].is_null());

    // Chat, not streamed: OpenAI's shape, exact usage (prompt tokens = /tokenize's count).
    let msgs = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]);
    let chat = ok_json(
        &s,
        "/v1/chat/completions",
        json!({
            "model": "smoke", "messages": msgs, "max_tokens": 8, "temperature": 0,
            "some_unknown_field": {"ignored": true},
        }),
    );
    assert!(chat["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["model"], "smoke");
    assert!(chat["created"].as_u64().unwrap() > 0);
    let choice = &chat["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    assert_usage(&chat["usage"]);
    let completion_tokens = chat["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens <= 8);
    if choice["finish_reason"] == "length" {
        assert_eq!(completion_tokens, 8);
    }
    let tok = ok_json(&s, "/tokenize", json!({"model": "smoke", "messages": msgs}));
    assert_eq!(tok["count"], chat["usage"]["prompt_tokens"], "{tok}");
    assert_eq!(
        tok["tokens"].as_array().unwrap().len() as u64,
        tok["count"].as_u64().unwrap()
    );
    // /tokenize then /detokenize round-trips plain text.
    let ids = ok_json(&s, "/tokenize", json!({"prompt": "round trip"}));
    let back = ok_json(&s, "/detokenize", json!({"tokens": ids["tokens"]}));
    assert_eq!(back["prompt"], "round trip");
    // max_completion_tokens is max_tokens' newer name.
    let newer = ok_json(
        &s,
        "/v1/chat/completions",
        json!({
        "messages": msgs, "max_completion_tokens": 8, "temperature": 0}),
    );
    assert_eq!(newer["choices"][0]["message"]["content"], content.as_str());

    // Chat, streamed with usage: role chunk first, deltas joining to the same text, the
    // finish_reason, then the usage chunk with no choices.
    let events = stream(
        &s,
        "/v1/chat/completions",
        json!({
            "model": "smoke", "messages": msgs, "max_tokens": 8, "temperature": 0,
            "stream": true, "stream_options": {"include_usage": true},
        }),
    );
    assert_eq!(events[0]["object"], "chat.completion.chunk");
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let (last, body) = events.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], chat["usage"]);
    let joined: String = body
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, content);
    let fin = body.last().unwrap();
    assert_eq!(fin["choices"][0]["finish_reason"], choice["finish_reason"]);
    assert!(body[..body.len() - 1]
        .iter()
        .all(|e| e["choices"][0]["finish_reason"].is_null()));
    assert!(body
        .iter()
        .all(|e| e["usage"].is_null() && e["id"] == events[0]["id"]));
    // Without include_usage: no usage chunk and no usage key.
    let plain = stream(
        &s,
        "/v1/chat/completions",
        json!({
        "messages": msgs, "max_tokens": 8, "temperature": 0, "stream": true}),
    );
    assert!(plain
        .iter()
        .all(|e| e.get("usage").is_none() && !e["choices"].as_array().unwrap().is_empty()));

    // Completions: a list of prompts × n, choices prompt-major; greedy copies agree.
    let cmpl = ok_json(
        &s,
        "/v1/completions",
        json!({
            "model": "smoke", "prompt": ["abc", "a longer prompt"], "n": 2, "max_tokens": 6,
            "temperature": 0, "seed": 3,
        }),
    );
    assert_eq!(cmpl["object"], "text_completion");
    assert!(cmpl["id"].as_str().unwrap().starts_with("cmpl-"));
    let choices = cmpl["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 4);
    for (i, ch) in choices.iter().enumerate() {
        assert_eq!(ch["index"], i);
        assert!(ch["text"].is_string());
    }
    assert_eq!(choices[0]["text"], choices[1]["text"]);
    assert_eq!(choices[2]["text"], choices[3]["text"]);
    assert_usage(&cmpl["usage"]);
    let p0 = ok_json(&s, "/tokenize", json!({"prompt": "abc"}))["count"]
        .as_u64()
        .unwrap();
    let p1 = ok_json(&s, "/tokenize", json!({"prompt": "a longer prompt"}))["count"]
        .as_u64()
        .unwrap();
    assert_eq!(cmpl["usage"]["prompt_tokens"].as_u64().unwrap(), p0 + p1);
    // The same prompt alone gives the same greedy text as in the batch.
    let alone = ok_json(
        &s,
        "/v1/completions",
        json!({"prompt": "abc", "max_tokens": 6, "temperature": 0}),
    );
    assert_eq!(alone["choices"][0]["text"], choices[0]["text"]);
    // Streamed completions join to the same text.
    let events = stream(
        &s,
        "/v1/completions",
        json!({
        "prompt": "abc", "max_tokens": 6, "temperature": 0, "stream": true}),
    );
    let joined: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(joined, choices[0]["text"].as_str().unwrap());
    assert_eq!(events[0]["object"], "text_completion");

    // A stop string cuts the text before it and never reaches a streamed client.
    let text = alone["choices"][0]["text"].as_str().unwrap().to_string();
    let chars: Vec<char> = text.chars().collect();
    if chars.len() >= 2 {
        let stop = chars[chars.len() / 2].to_string();
        let cut = &text[..text.find(&stop).unwrap()];
        let stopped = ok_json(
            &s,
            "/v1/completions",
            json!({
            "prompt": "abc", "max_tokens": 6, "temperature": 0, "stop": [stop.clone()]}),
        );
        assert_eq!(stopped["choices"][0]["text"], cut);
        assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
        let events = stream(
            &s,
            "/v1/completions",
            json!({
            "prompt": "abc", "max_tokens": 6, "temperature": 0, "stop": stop, "stream": true}),
        );
        let joined: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["text"].as_str())
            .collect();
        assert_eq!(joined, cut);
        assert!(!joined.contains(&stop));
    }
    // Sampling with a seed is reproducible.
    let sample = json!({"prompt": "abc", "max_tokens": 6, "temperature": 1.0, "top_p": 0.9, "top_k": 50, "seed": 7});
    assert_eq!(
        ok_json(&s, "/v1/completions", sample.clone())["choices"],
        ok_json(&s, "/v1/completions", sample)["choices"]
    );
}

fn assert_error(status: u16, want: u16, v: &Value, text: &str) {
    assert_eq!(status, want, "{text}");
    let e = &v["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{text}"
    );
    assert!(e["type"].is_string(), "{text}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{text}"
    );
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let s = smoke_server(&[
        "--api-key",
        "sekrit",
        "--max-model-len",
        "64",
        "--max-num-seqs",
        "4",
    ]);
    let key = Some("sekrit");
    let good = json!({"model": "smoke", "prompt": "abc", "max_tokens": 3, "temperature": 0});
    // 401: no key, a wrong key; /health and /metrics (scraped as vLLM's) need none.
    for k in [None, Some("wrong")] {
        let (st, _, v, t) = post(&s, "/v1/completions", good.to_string(), k);
        assert_error(st, 401, &v, &t);
        let resp = client().get(s.url("/v1/models")).send().unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    assert_eq!(
        client()
            .get(s.url("/health"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(metrics(&s).contains("bwb:num_requests_running"));

    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("/v1/chat/completions", b"{not json".to_vec(), 400, None),
        ("/v1/chat/completions", b"".to_vec(), 400, None),
        (
            "/v1/completions",
            b"{\"prompt\": \"\xff\xfe\"}".to_vec(),
            400,
            None,
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "max_tokens": "ten"})
                .to_string()
                .into_bytes(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "max_tokens": i64::MAX})
                .to_string()
                .into_bytes(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "max_tokens": -1})
                .to_string()
                .into_bytes(),
            400,
            Some("max_tokens"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [], "max_tokens": 3})
                .to_string()
                .into_bytes(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": "hi"}).to_string().into_bytes(),
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": 5}]})
                .to_string()
                .into_bytes(),
            400,
            Some("messages[0].content"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "n": 1000000})
                .to_string()
                .into_bytes(),
            400,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "n": 0}).to_string().into_bytes(),
            400,
            Some("n"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "top_p": 0})
                .to_string()
                .into_bytes(),
            400,
            Some("top_p"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "temperature": -1})
                .to_string()
                .into_bytes(),
            400,
            Some("temperature"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, 2, 999999]}).to_string().into_bytes(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": ""}).to_string().into_bytes(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": [1, -2]}).to_string().into_bytes(),
            400,
            Some("prompt"),
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "stop": 3}).to_string().into_bytes(),
            400,
            Some("stop"),
        ),
        (
            "/v1/completions",
            json!({"model": "nope", "prompt": "abc"})
                .to_string()
                .into_bytes(),
            404,
            Some("model"),
        ),
        (
            "/detokenize",
            json!({"tokens": [999999]}).to_string().into_bytes(),
            400,
            Some("tokens"),
        ),
        ("/v1/nothing-here", b"{}".to_vec(), 404, None),
    ];
    for (path, body, want, param) in cases {
        let (st, _, v, t) = post(&s, path, body.clone(), key);
        assert_error(st, want, &v, &t);
        if let Some(p) = param {
            assert_eq!(
                v["error"]["param"],
                p,
                "{path} {}: {t}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    // 404 lists the served models.
    let (_, _, v, _) = post(
        &s,
        "/v1/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        key,
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("smoke"),
        "{v}"
    );
    // Over the context: 400 naming both lengths.
    let long = "word ".repeat(40);
    let (_, _, n, _) = post(&s, "/tokenize", json!({"prompt": long}).to_string(), key);
    let n = n["count"].as_u64().unwrap();
    let (st, _, v, t) = post(
        &s,
        "/v1/completions",
        json!({"prompt": long, "max_tokens": 3}).to_string(),
        key,
    );
    assert_error(st, 400, &v, &t);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("is 64 tokens")
            && msg.contains(&format!("({n} in the prompt, 3 in the completion)")),
        "{msg}"
    );
    let (st, _, v, t) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "abc", "max_tokens": 500}).to_string(),
        key,
    );
    assert_error(st, 400, &v, &t);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("500 in the completion"),
        "{t}"
    );

    // Still serving, with the key.
    let (st, _, v, t) = post(&s, "/v1/completions", good.to_string(), key);
    assert_eq!(st, 200, "{t}");
    assert_usage(&v["usage"]);
    assert!(!s.stderr().contains("panicked"), "{}", s.stderr());
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    // One request at a time and none waiting: concurrent requests beyond it are refused.
    let s = smoke_server(&["--max-num-seqs", "1", "--max-queue", "0"]);
    let body = json!({"prompt": "abc", "max_tokens": 400, "temperature": 0}).to_string();
    let results: Vec<(u16, Option<String>, Value)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                sc.spawn(|| {
                    let (st, h, v, _) = post(&s, "/v1/completions", body.clone(), None);
                    let retry = h
                        .get("retry-after")
                        .map(|r| r.to_str().unwrap().to_string());
                    (st, retry, v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert!(!refused.is_empty(), "{results:?}");
    assert!(results.iter().any(|r| r.0 == 200), "{results:?}");
    assert!(
        results.iter().all(|r| r.0 == 200 || r.0 == 429),
        "{results:?}"
    );
    for r in refused {
        assert_eq!(r.1.as_deref(), Some("1"));
        assert_eq!(r.2["error"]["type"], "rate_limit_error");
    }
    let after = ok_json(
        &s,
        "/v1/completions",
        json!({"prompt": "abc", "max_tokens": 2}),
    );
    assert_usage(&after["usage"]);
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

/// The tiny Qwen3 fixture with the smoke byte tokenizer (as tests/it/generate.rs does),
/// copied into the project.
fn qwen3_dir(p: &Project) -> PathBuf {
    let dir = p.path("qwen3");
    crate::common::copy_dir(&fixture("qwen3"), &dir);
    bwb::model::load::byte_tokenizer(256 + 3)
        .unwrap()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    dir
}

#[test]
fn an_adapter_is_served_by_name_and_matches_generate_with_it() {
    let p = Project::new();
    let dir = qwen3_dir(&p);
    let adapter = fixture("qwen3").join("adapter");
    let gen = |with_adapter: bool| {
        let mut args = vec![
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--raw",
            "--json",
            "--max-new-tokens",
            "6",
            "--prompt",
            "abc",
        ];
        if with_adapter {
            args.extend(["--adapter", adapter.to_str().unwrap()]);
        }
        jsonl(&p.bwb(&args).ok().stdout())[0].clone()
    };
    let (want_base, want_tuned) = (gen(false), gen(true));
    let lora = format!("tuned={}", adapter.display());
    let s = Server::start(
        p,
        &[],
        &[
            "--model",
            dir.to_str().unwrap(),
            "--served-model-name",
            "base",
            "--lora-modules",
            &lora,
        ],
    );
    let models = get_json(&s, "/v1/models");
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{models}");
    assert_eq!(
        (data[0]["id"].as_str(), data[0]["parent"].as_str()),
        (Some("base"), None)
    );
    assert_eq!(
        (data[1]["id"].as_str(), data[1]["parent"].as_str()),
        (Some("tuned"), Some("base"))
    );
    for (name, want) in [("base", &want_base), ("tuned", &want_tuned)] {
        let v = ok_json(
            &s,
            "/v1/completions",
            json!({"model": name, "prompt": "abc", "max_tokens": 6, "temperature": 0}),
        );
        assert_eq!(v["model"], name);
        assert_eq!(v["choices"][0]["text"], want["text"], "{name}");
        assert_eq!(
            v["usage"]["completion_tokens"], want["completion_tokens"],
            "{name}"
        );
        assert_eq!(v["usage"]["prompt_tokens"], want["prompt_tokens"], "{name}");
    }
    assert_ne!(
        want_base["token_ids"], want_tuned["token_ids"],
        "the adapter must change greedy output"
    );
    // This directory has no chat template: chat answers 400, saying to use completions.
    let (st, _, v, t) = post(
        &s,
        "/v1/chat/completions",
        json!({"model": "tuned", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        None,
    );
    assert_error(st, 400, &v, &t);
    assert!(t.contains("/v1/completions"), "{t}");
}

fn smollm2() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (real users get SmolLM2 from the hub)",
            p.display()
        );
        None
    }
}

#[test]
fn smollm2_greedy_chat_and_completion_equal_bwb_generate() {
    let Some(gguf) = smollm2() else { return };
    let gguf = gguf.to_str().unwrap();
    let p = Project::new();
    let question = "What is the capital of France?";
    let chat_want = jsonl(
        &p.bwb(&[
            "generate",
            "--model",
            gguf,
            "--json",
            "--max-new-tokens",
            "12",
            "--prompt",
            question,
        ])
        .ok()
        .stdout(),
    )[0]
    .clone();
    let raw_want = jsonl(
        &p.bwb(&[
            "generate",
            "--model",
            gguf,
            "--raw",
            "--json",
            "--max-new-tokens",
            "12",
            "--prompt",
            "The capital of France is",
        ])
        .ok()
        .stdout(),
    )[0]
    .clone();
    let s = Server::start(p, &[], &["--model", gguf, "--served-model-name", "smollm2"]);
    let chat = ok_json(
        &s,
        "/v1/chat/completions",
        json!({
        "model": "smollm2", "messages": [{"role": "user", "content": question}], "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(chat["choices"][0]["message"]["content"], chat_want["text"]);
    assert_eq!(chat["usage"]["prompt_tokens"], chat_want["prompt_tokens"]);
    assert_eq!(
        chat["usage"]["completion_tokens"],
        chat_want["completion_tokens"]
    );
    let events = stream(
        &s,
        "/v1/chat/completions",
        json!({
        "model": "smollm2", "messages": [{"role": "user", "content": question}], "max_tokens": 12, "temperature": 0, "stream": true}),
    );
    let joined: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, chat_want["text"].as_str().unwrap());
    // One delta per token (real text: no token ends inside a character here).
    let deltas = events
        .iter()
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count();
    assert!(deltas > 1, "{events:?}");
    let cmpl = ok_json(
        &s,
        "/v1/completions",
        json!({
        "model": "smollm2", "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(cmpl["choices"][0]["text"], raw_want["text"]);
    assert_eq!(cmpl["usage"]["prompt_tokens"], raw_want["prompt_tokens"]);
}

const OPENAI_SCRIPT: &str = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="sekrit")
names = [m.id for m in client.models.list().data]
assert names == ["smoke"], names
chat = client.chat.completions.create(model="smoke", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0)
assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", chat
assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens
cmpl = client.completions.create(model="smoke", prompt=["abc", "de"], max_tokens=4, temperature=0)
assert [c.index for c in cmpl.choices] == [0, 1], cmpl
for endpoint in ("chat", "completions"):
    if endpoint == "chat":
        chunks = list(client.chat.completions.create(model="smoke", messages=[{"role": "user", "content": "Hello"}], max_tokens=5, temperature=0, stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == chat.choices[0].message.content, (text, chat)
        assert chunks[0].choices[0].delta.role == "assistant"
    else:
        chunks = list(client.completions.create(model="smoke", prompt="abc", max_tokens=4, temperature=0, stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        assert text == cmpl.choices[0].text, (text, cmpl)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0, chunks[-1]
lp = client.chat.completions.create(model="smoke", messages=[{"role": "user", "content": "Hello"}], max_tokens=3, temperature=0, logprobs=True, top_logprobs=3, extra_body={"ignore_eos": True})
content = lp.choices[0].logprobs.content
assert len(content) == 3 and all(len(t.top_logprobs) == 3 for t in content), lp
assert all(t.logprob == t.top_logprobs[0].logprob for t in content), lp
echo = client.completions.create(model="smoke", prompt=[[97, 98, 99]], max_tokens=0, echo=True, logprobs=1, temperature=0)
assert echo.choices[0].text == "abc" and echo.choices[0].logprobs.tokens == ["a", "b", "c"], echo
assert echo.choices[0].logprobs.token_logprobs[0] is None and echo.choices[0].logprobs.top_logprobs[0] is None, echo
assert all(l <= 0 for l in echo.choices[0].logprobs.token_logprobs[1:]), echo
try:
    client.chat.completions.create(model="smoke", messages=[{"role": "user", "content": "Hello"}], logprobs=True, top_logprobs=21)
    raise SystemExit("top_logprobs=21 was accepted")
except openai.BadRequestError as e:
    assert "top_logprobs" in str(e), e
try:
    client.chat.completions.create(model="smoke", messages=[{"role": "user", "content": "Hello"}], max_tokens=-1)
    raise SystemExit("max_tokens=-1 was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "max_tokens" in str(e), e
try:
    client.completions.create(model="gpt-nope", prompt="abc")
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError as e:
    assert "smoke" in str(e), e
try:
    openai.OpenAI(base_url=sys.argv[1] + "/v1", api_key="wrong").models.list()
    raise SystemExit("a wrong key was accepted")
except openai.AuthenticationError:
    pass
print("openai sdk ok")
"#;

/// The interpreter with the `openai` package (.ci/run installs it and sets
/// BWB_OPENAI_PYTHON), or None after a SKIP line; with BWB_REQUIRE_OPENAI_SDK=1 (CI) a
/// missing one fails.
fn openai_python() -> Option<String> {
    let py = std::env::var("BWB_OPENAI_PYTHON")
        .ok()
        .filter(|p| Path::new(p).exists());
    if py.is_none() {
        let hint = "install it with `python3 -m venv .ci/venv-openai && .ci/venv-openai/bin/pip install openai` and set BWB_OPENAI_PYTHON=.ci/venv-openai/bin/python";
        if std::env::var("BWB_REQUIRE_OPENAI_SDK").as_deref() == Ok("1") {
            panic!("BWB_OPENAI_PYTHON is unset or missing and BWB_REQUIRE_OPENAI_SDK=1; {hint}");
        }
        eprintln!("SKIP: no interpreter with the openai SDK; {hint}");
    }
    py
}

#[test]
fn the_official_openai_python_sdk_talks_to_the_server() {
    let Some(py) = openai_python() else { return };
    let s = smoke_server(&["--api-key", "sekrit"]);
    let script = s.project.path("sdk_check.py");
    std::fs::write(&script, OPENAI_SCRIPT).unwrap();
    let out = Command::new(&py)
        .arg(&script)
        .arg(&s.base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("openai sdk ok"),
        "stdout:\n{stdout}\nstderr:\n{}\nserver stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stderr()
    );
}

#[test]
fn qwen3_serves_with_thinking_off_unless_chat_template_kwargs_turn_it_on() {
    // The tiny Qwen3 fixture, the smoke byte tokenizer (ChatML specials) and Qwen3's real
    // chat template from ../shared.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/tokenizers/qwen3/tokenizer_config.json");
    let Ok(text) = std::fs::read_to_string(&shared) else {
        eprintln!("skipped: {} is absent", shared.display());
        return;
    };
    let cfg: Value = serde_json::from_str(&text).unwrap();
    let p = Project::new();
    let dir = p.path("qwen3");
    crate::common::copy_dir(&fixture("qwen3"), &dir);
    bwb::model::load::byte_tokenizer(256 + 3)
        .unwrap()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    let tc = json!({"chat_template": cfg["chat_template"], "eos_token": "<|im_end|>"});
    std::fs::write(dir.join("tokenizer_config.json"), tc.to_string()).unwrap();
    let s = Server::start(
        p,
        &[],
        &["--model", dir.to_str().unwrap(), "--served-model-name", "q"],
    );
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let off = ok_json(&s, "/tokenize", json!({"messages": msgs}));
    let on = ok_json(
        &s,
        "/tokenize",
        json!({"messages": msgs, "chat_template_kwargs": {"enable_thinking": true}}),
    );
    let text = |v: &Value| {
        ok_json(&s, "/detokenize", json!({"tokens": v["tokens"]}))["prompt"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        text(&off).ends_with("<think>\n\n</think>\n\n"),
        "{}",
        text(&off)
    );
    assert!(!text(&on).contains("<think>"), "{}", text(&on));
    // (/v1/chat/completions renders through the same function; this fixture's 256-token
    // vocabulary cannot embed the ChatML ids, so only the prompts are checked here.)
}

#[test]
fn concurrent_greedy_requests_batched_together_equal_each_served_alone() {
    let s = smoke_server(&["--max-num-seqs", "8"]);
    let prompts = [
        "a",
        "a longer prompt",
        "xyz xyz xyz",
        "the quick brown fox jumps",
    ];
    let body = |p: &str| json!({"prompt": p, "max_tokens": 8, "temperature": 0});
    let alone: Vec<Value> = prompts
        .iter()
        .map(|p| ok_json(&s, "/v1/completions", body(p))["choices"][0].clone())
        .collect();
    // Several rounds of simultaneous requests, so some share an engine batch.
    for _ in 0..3 {
        let together: Vec<Value> = std::thread::scope(|sc| {
            let hs: Vec<_> = prompts
                .iter()
                .map(|p| sc.spawn(|| ok_json(&s, "/v1/completions", body(p))["choices"][0].clone()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone);
    }
    // Requests arriving one by one while the earlier ones are mid-generation join the
    // running batch and still answer as alone.
    let staggered: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let body = &body;
                let s = &s;
                sc.spawn(move || {
                    std::thread::sleep(Duration::from_millis(3 * i as u64));
                    ok_json(s, "/v1/completions", body(p))["choices"][0].clone()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(staggered, alone);
}

/// `GET /metrics` as text.
fn metrics(s: &Server) -> String {
    let resp = client().get(s.url("/metrics")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "{ct}");
    resp.text().unwrap()
}

/// The value of one sample (`name{labels}`), 0 when absent.
fn sample(text: &str, key: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Poll /metrics until `key` reads `want` (or fail after 20 s).
fn wait_for_sample(s: &Server, key: &str, want: f64) -> String {
    let start = std::time::Instant::now();
    loop {
        let m = metrics(s);
        if sample(&m, key) == want {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{key} is not {want}:\n{m}\nserver stderr:\n{}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a client sees of one single-choice answer, streamed or not: text, finish reason,
/// usage (a streamed answer asks for it with `include_usage`).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    text: String,
    finish: String,
    usage: Value,
}

fn seen(s: &Server, path: &str, body: &Value) -> Seen {
    let chat = path.contains("chat");
    if body["stream"] != json!(true) {
        let v = ok_json(s, path, body.clone());
        let c = &v["choices"][0];
        let text = if chat {
            &c["message"]["content"]
        } else {
            &c["text"]
        };
        return Seen {
            text: text.as_str().unwrap().to_string(),
            finish: c["finish_reason"].as_str().unwrap().to_string(),
            usage: v["usage"].clone(),
        };
    }
    let events = stream(s, path, body.clone());
    let (last, chunks) = events.split_last().unwrap();
    assert_eq!(
        last["choices"],
        json!([]),
        "the usage chunk closes: {events:?}"
    );
    if chat {
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    }
    let (fin, deltas) = chunks.split_last().unwrap();
    let mut text = String::new();
    for d in deltas {
        assert!(d["choices"][0]["finish_reason"].is_null(), "{events:?}");
        let c = &d["choices"][0];
        text.push_str(
            if chat {
                &c["delta"]["content"]
            } else {
                &c["text"]
            }
            .as_str()
            .unwrap(),
        );
    }
    if let Some(stop) = body["stop"][0].as_str() {
        assert!(
            !text.contains(stop),
            "a stop string reached the client: {text:?}"
        );
    }
    Seen {
        text,
        finish: fin["choices"][0]["finish_reason"]
            .as_str()
            .unwrap()
            .to_string(),
        usage: last["usage"].clone(),
    }
}

/// Two ASCII graphic characters in a row from `text` (past its start), to use as a stop
/// string that greedy decoding reaches.
fn stop_in(text: &str) -> Option<String> {
    let cs: Vec<char> = text.chars().collect();
    cs.windows(2)
        .skip(2)
        .find(|w| w.iter().all(char::is_ascii_alphanumeric))
        .map(|w| w.iter().collect())
}

#[test]
fn thirty_two_mixed_requests_arriving_staggered_each_equal_the_same_request_served_alone() {
    // At most 8 running (the rest wait) and 12-token steps, so prompts prefill in chunks of
    // 12 − 8 = 4 tokens while other rows decode.
    let s = Server::start(
        Project::new(),
        &["--smoke-test", "-v"],
        &[
            "--model",
            "smoke",
            "--max-num-seqs",
            "8",
            "--max-batch-tokens",
            "12",
        ],
    );
    let prompts = [
        "a",
        "a longer prompt, long enough for several chunks",
        "xyz xyz xyz",
        "the quick brown fox jumps",
        "hi",
    ];
    let pre: Vec<Seen> = prompts
        .iter()
        .map(|p| {
            let b = json!({"prompt": p, "max_tokens": 60, "temperature": 0});
            seen(&s, "/v1/completions", &b)
        })
        .collect();
    let stops: Vec<Option<String>> = pre.iter().map(|a| stop_in(&a.text)).collect();
    let spec = |i: usize| -> (&'static str, Value) {
        let k = i % prompts.len();
        let mut b = json!({"max_tokens": 3 + (i * 7) % 45, "temperature": 0});
        let path = if i % 5 == 3 {
            b["messages"] = json!([{"role": "user", "content": prompts[k]}]);
            "/v1/chat/completions"
        } else {
            b["prompt"] = json!(prompts[k]);
            "/v1/completions"
        };
        if i % 4 == 1 {
            b["temperature"] = json!(0.9);
            b["seed"] = json!(i);
        }
        if let (2, Some(stop)) = (i % 3, &stops[k]) {
            b["stop"] = json!([stop]);
        }
        if i % 2 == 1 {
            b["stream"] = json!(true);
            b["stream_options"] = json!({"include_usage": true});
        }
        (path, b)
    };
    let alone: Vec<Seen> = (0..32)
        .map(|i| {
            let (path, b) = spec(i);
            seen(&s, path, &b)
        })
        .collect();
    let together: Vec<Seen> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32)
            .map(|i| {
                let s = &s;
                sc.spawn(move || {
                    std::thread::sleep(Duration::from_millis(5 * i as u64));
                    let (path, b) = spec(i);
                    seen(s, path, &b)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "request {i}: {}", spec(i).1);
    }
    assert!(stops.iter().any(Option::is_some), "{pre:?}");
    assert!(alone.iter().any(|a| a.finish == "stop"));
    assert!(alone.iter().any(|a| a.finish == "length"));
    // Requests joined running batches: some were admitted beside several running rows.
    let joined = s
        .stderr()
        .lines()
        .filter_map(|l| {
            l.split("rows); ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    assert!(
        joined >= 3,
        "no request joined a running batch:\n{}",
        s.stderr()
    );

    // /metrics agrees with what the clients saw.
    let all: Vec<&Seen> = pre.iter().chain(&alone).chain(&together).collect();
    let sum = |f: &dyn Fn(&Seen) -> u64| all.iter().map(|a| f(a)).sum::<u64>() as f64;
    let label = "{model_name=\"smoke\"}";
    let m = wait_for_sample(&s, &format!("bwb:num_requests_running{label}"), 0.0);
    let at = |name: &str| sample(&m, &format!("bwb:{name}{label}"));
    let n = all.len() as f64;
    let tokens = |a: &Seen| a.usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(at("num_requests_waiting"), 0.0, "{m}");
    assert_eq!(at("time_to_first_token_seconds_count"), n, "{m}");
    assert_eq!(at("e2e_request_latency_seconds_count"), n, "{m}");
    assert_eq!(at("generation_tokens_total"), sum(&tokens), "{m}");
    assert_eq!(
        at("prompt_tokens_total"),
        sum(&|a: &Seen| a.usage["prompt_tokens"].as_u64().unwrap()),
        "{m}"
    );
    assert_eq!(
        at("inter_token_latency_seconds_count"),
        sum(&|a: &Seen| tokens(a).saturating_sub(1)),
        "{m}"
    );
    let reasons = |r: &str| {
        let key =
            format!("bwb:request_success_total{{model_name=\"smoke\",finished_reason=\"{r}\"}}");
        sample(&m, &key)
    };
    let finished = |r: &str| all.iter().filter(|a| a.finish == r).count() as f64;
    assert_eq!(reasons("stop"), finished("stop"), "{m}");
    assert_eq!(reasons("length"), finished("length"), "{m}");
    let inf = "bwb:e2e_request_latency_seconds_bucket{model_name=\"smoke\",le=\"+Inf\"}";
    assert_eq!(sample(&m, inf), n, "{m}");
}

#[test]
fn a_client_that_disconnects_cancels_its_request_and_frees_its_row() {
    use std::io::Read;
    let s = smoke_server(&["--max-num-seqs", "4"]);
    let label = "{model_name=\"smoke\"}";
    let running = format!("bwb:num_requests_running{label}");
    let aborted = "bwb:request_success_total{model_name=\"smoke\",finished_reason=\"abort\"}";
    // Greedy "a" runs about a thousand tokens before the smoke model's EOS.
    let long = json!({"prompt": "a", "max_tokens": 3000, "temperature": 0});
    let mut body = long.clone();
    body["stream"] = json!(true);
    let mut resp = client()
        .post(s.url("/v1/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let mut buf = [0u8; 256];
    let got = resp.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..got]).starts_with("data: "));
    assert_eq!(sample(&metrics(&s), &running), 1.0);
    drop(resp);
    wait_for_sample(&s, &running, 0.0);
    let m = wait_for_sample(&s, aborted, 1.0);
    let generated = sample(&m, &format!("bwb:generation_tokens_total{label}"));
    assert!(
        generated < 900.0,
        "the request ran on after its client left: {m}"
    );
    // Others still complete, and a non-streaming client that gives up is cancelled too.
    let quick = json!({"prompt": "b", "max_tokens": 5, "temperature": 0});
    assert_usage(&ok_json(&s, "/v1/completions", quick.clone())["usage"]);
    let impatient = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let r = impatient
        .post(s.url("/v1/completions"))
        .header("content-type", "application/json")
        .body(long.to_string())
        .send();
    assert!(r.is_err(), "{r:?}");
    wait_for_sample(&s, aborted, 2.0);
    wait_for_sample(&s, &running, 0.0);
    assert_usage(&ok_json(&s, "/v1/completions", quick)["usage"]);
}

#[test]
fn phi3_rows_crossing_the_longrope_switch_equal_generate_alone_and_batched() {
    // The tiny Phi-3 fixture switches rope tables at position 32: a served row that crosses
    // it leaves the running batch, is prefilled again, and still matches `bwb generate`.
    let p = Project::new();
    let dir = p.path("phi3");
    crate::common::copy_dir(&fixture("phi3"), &dir);
    bwb::model::load::byte_tokenizer(256 + 3)
        .unwrap()
        .save(dir.join("tokenizer.json"), false)
        .unwrap();
    let prompt = "abcdefghijklmnopqrstuvwxyz";
    let out = p
        .bwb(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--raw",
            "--json",
            "--max-new-tokens",
            "20",
            "--prompt",
            prompt,
        ])
        .ok()
        .stdout();
    let want = jsonl(&out)[0].clone();
    let total =
        want["prompt_tokens"].as_u64().unwrap() + want["completion_tokens"].as_u64().unwrap();
    assert!(total > 33, "generation must cross position 32: {want}");
    let s = Server::start(
        p,
        &[],
        &[
            "--model",
            dir.to_str().unwrap(),
            "--max-num-seqs",
            "4",
            "--max-batch-tokens",
            "12",
        ],
    );
    let body = json!({"prompt": prompt, "max_tokens": 20, "temperature": 0});
    let other = json!({"prompt": "zz", "max_tokens": 20, "temperature": 0});
    let alone = ok_json(&s, "/v1/completions", body.clone());
    assert_eq!(alone["choices"][0]["text"], want["text"]);
    let (batched, _) = std::thread::scope(|sc| {
        let o = sc.spawn(|| ok_json(&s, "/v1/completions", other.clone()));
        std::thread::sleep(Duration::from_millis(5));
        let b = ok_json(&s, "/v1/completions", body.clone());
        (b, o.join().unwrap())
    });
    assert_eq!(batched["choices"][0]["text"], want["text"]);
    assert_eq!(batched["usage"], alone["usage"]);
}

#[test]
fn a_step_budget_not_above_max_num_seqs_is_refused_in_one_line() {
    let p = Project::new();
    let err = p
        .bwb(&[
            "--smoke-test",
            "serve",
            "--model",
            "smoke",
            "--port",
            "0",
            "--max-num-seqs",
            "8",
            "--max-batch-tokens",
            "8",
        ])
        .fails(1);
    assert!(
        err.contains("--max-batch-tokens 8 must exceed --max-num-seqs 8"),
        "{err}"
    );
}

#[test]
fn every_fixture_architecture_answers_as_alone_when_requests_join_a_running_batch() {
    for arch in ["qwen3", "gemma3", "llama"] {
        let p = Project::new();
        let dir = p.path(arch);
        crate::common::copy_dir(&fixture(arch), &dir);
        bwb::model::load::byte_tokenizer(256 + 3)
            .unwrap()
            .save(dir.join("tokenizer.json"), false)
            .unwrap();
        let out = p
            .bwb(&[
                "generate",
                "--model",
                dir.to_str().unwrap(),
                "--raw",
                "--json",
                "--max-new-tokens",
                "12",
                "--prompt",
                "hello there",
            ])
            .ok()
            .stdout();
        let want = jsonl(&out)[0]["text"].clone();
        let s = Server::start(
            p,
            &[],
            &[
                "--model",
                dir.to_str().unwrap(),
                "--max-num-seqs",
                "4",
                "--max-batch-tokens",
                "10",
            ],
        );
        let prompts = [
            "hello there",
            "a",
            "a much longer prompt than the others",
            "xyz",
        ];
        let body =
            |p: &str, i: usize| json!({"prompt": p, "max_tokens": 12 + 5 * i, "temperature": 0});
        let alone: Vec<Value> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| ok_json(&s, "/v1/completions", body(p, i))["choices"][0].clone())
            .collect();
        assert_eq!(alone[0]["text"], want, "{arch}");
        let together: Vec<Value> = std::thread::scope(|sc| {
            let hs: Vec<_> = prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let (s, body) = (&s, &body);
                    sc.spawn(move || {
                        std::thread::sleep(Duration::from_millis(2 * i as u64));
                        ok_json(s, "/v1/completions", body(p, i))["choices"][0].clone()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(together, alone, "{arch}");
    }
}

/// lm-evaluation-harness `local-completions` loglikelihood: the answer to
/// `{"prompt": ids, "max_tokens": 1, "echo": true, "logprobs": 1}` is read as the sum of
/// `token_logprobs[ctxlen:-1]` and whether each of those equals its `top_logprobs` maximum.
fn lm_eval_parse(choice: &Value, ctxlen: usize) -> (f64, bool) {
    let lps = choice["logprobs"]["token_logprobs"].as_array().unwrap();
    let tops = choice["logprobs"]["top_logprobs"].as_array().unwrap();
    let end = lps.len() - 1;
    let sum = lps[ctxlen..end].iter().map(|v| v.as_f64().unwrap()).sum();
    let greedy = lps[ctxlen..end]
        .iter()
        .zip(&tops[ctxlen..end])
        .all(|(lp, top)| {
            let max = top
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_f64().unwrap())
                .fold(f64::NEG_INFINITY, f64::max);
            lp.as_f64().unwrap() == max
        });
    (sum, greedy)
}

fn tokenize(s: &Server, text: &str) -> Vec<u64> {
    let v = ok_json(s, "/tokenize", json!({"prompt": text}));
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

#[test]
fn logprobs_are_log_probabilities_in_the_chat_and_legacy_shapes_streamed_or_not() {
    let s = smoke_server(&[]);
    let msgs = json!([{"role": "user", "content": "Hello"}]);
    let body = json!({"messages": msgs, "max_tokens": 6, "temperature": 0, "logprobs": true, "top_logprobs": 5, "ignore_eos": true});
    let chat = ok_json(&s, "/v1/chat/completions", body.clone());
    let content = chat["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(content.len(), 6, "ignore_eos runs to max_tokens: {chat}");
    assert_eq!(chat["usage"]["completion_tokens"], 6);
    for e in content {
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 5, "{e}");
        let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]), "sorted: {lps:?}");
        assert!(lps.iter().all(|&l| l <= 0.0 && l > -9999.0), "{lps:?}");
        assert!(lps.iter().map(|l| l.exp()).sum::<f64>() <= 1.0 + 1e-6);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(e["logprob"], top[0]["logprob"], "{e}");
        assert_eq!(e["token"], top[0]["token"]);
        let bytes: Vec<u8> = e["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(bytes, e["token"].as_str().unwrap().as_bytes());
    }
    // Streamed: the same entries, spread over the chunks.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = stream(&s, "/v1/chat/completions", streamed);
    let joined: Vec<Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["logprobs"]["content"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_eq!(&joined, content);
    // Without logprobs they are null; chat logprobs take a flag, completions a count.
    let plain = ok_json(
        &s,
        "/v1/chat/completions",
        json!({"messages": msgs, "max_tokens": 2}),
    );
    assert!(plain["choices"][0]["logprobs"].is_null());
    for (path, bad, param) in [
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "top_logprobs": 2}),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "logprobs": 3}),
            "logprobs",
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "logprobs": true}),
            "logprobs",
        ),
        (
            "/v1/completions",
            json!({"prompt": "abc", "logprobs": -1}),
            "logprobs",
        ),
        ("/v1/completions", json!({"prompt": [1, 99999]}), "prompt"),
    ] {
        let (st, _, v, t) = post(&s, path, bad.to_string(), None);
        assert_error(st, 400, &v, &t);
        assert_eq!(v["error"]["param"], param, "{bad}: {t}");
    }

    // Legacy shape: tokens, token_logprobs, top_logprobs dicts (k + the token), offsets.
    let cmpl = ok_json(
        &s,
        "/v1/completions",
        json!({"prompt": "abc", "max_tokens": 4, "temperature": 0, "logprobs": 3, "ignore_eos": true}),
    );
    let lp = &cmpl["choices"][0]["logprobs"];
    let toks = lp["tokens"].as_array().unwrap();
    assert_eq!(toks.len(), 4, "{cmpl}");
    let mut offset = 0;
    for (i, t) in toks.iter().enumerate() {
        assert_eq!(lp["text_offset"][i], offset);
        offset += t.as_str().unwrap().chars().count();
        let top = lp["top_logprobs"][i].as_object().unwrap();
        assert!(!top.is_empty() && top.len() <= 4, "{top:?}");
        let max = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert_eq!(lp["token_logprobs"][i].as_f64().unwrap(), max, "greedy");
    }
    let events = stream(
        &s,
        "/v1/completions",
        json!({"prompt": "abc", "max_tokens": 4, "temperature": 0, "logprobs": 3, "ignore_eos": true, "stream": true}),
    );
    let streamed: Vec<Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["logprobs"]["token_logprobs"].as_array())
        .flatten()
        .cloned()
        .collect();
    assert_eq!(&streamed, lp["token_logprobs"].as_array().unwrap());
}

/// Extend `context` (token ids) by up to 3 tokens, each the most likely printable-ASCII
/// token among the top 20 after what precedes it (the byte tokenizer's id for it is its byte),
/// with the logprob generation gives it and whether it was the most likely token.
fn scored_continuation(s: &Server, context: &[u64]) -> Vec<(u64, f64, bool)> {
    let mut out: Vec<(u64, f64, bool)> = Vec::new();
    for _ in 0..3 {
        let prompt: Vec<u64> = context
            .iter()
            .copied()
            .chain(out.iter().map(|t| t.0))
            .collect();
        let v = ok_json(
            s,
            "/v1/completions",
            json!({"prompt": prompt, "max_tokens": 1, "temperature": 0, "logprobs": 20, "ignore_eos": true}),
        );
        let top = v["choices"][0]["logprobs"]["top_logprobs"][0]
            .as_object()
            .unwrap()
            .clone();
        let max = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        let best = top
            .iter()
            .filter(|(k, _)| k.len() == 1 && k.as_bytes()[0].is_ascii_graphic())
            .map(|(k, v)| (k.as_bytes()[0] as u64, v.as_f64().unwrap()))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((id, lp)) = best else { break };
        out.push((id, lp, lp == max));
    }
    assert!(!out.is_empty(), "no printable token among the top 20");
    out
}

#[test]
fn echo_scores_the_prompt_as_generation_scores_the_continuation_and_lm_eval_reads_it() {
    // Prefill chunks of 5 − 2 = 3 tokens: the echoed prompt is scored across chunks.
    let s = smoke_server(&["--max-num-seqs", "2", "--max-batch-tokens", "5"]);
    let context = tokenize(&s, "The cat");
    let cont = scored_continuation(&s, &context);
    let full: Vec<u64> = context
        .iter()
        .copied()
        .chain(cont.iter().map(|t| t.0))
        .collect();
    // What lm-eval sends (max_tokens 0 and 1 both accepted), here two token-id prompts.
    for max_tokens in [0, 1] {
        let v = ok_json(
            &s,
            "/v1/completions",
            json!({"prompt": [full.clone(), context.clone()], "max_tokens": max_tokens, "echo": true,
                   "logprobs": 1, "temperature": 0, "seed": 1234, "ignore_eos": true}),
        );
        assert_eq!(v["choices"].as_array().unwrap().len(), 2, "{v}");
        assert_eq!(v["usage"]["prompt_tokens"], full.len() + context.len());
        assert_eq!(v["usage"]["completion_tokens"], 2 * max_tokens);
        let c = &v["choices"][0];
        let lps = c["logprobs"]["token_logprobs"].as_array().unwrap();
        assert_eq!(lps.len(), full.len() + max_tokens, "{v}");
        assert!(lps[0].is_null() && c["logprobs"]["top_logprobs"][0].is_null());
        assert!(lps[1..].iter().all(|l| l.as_f64().unwrap() <= 0.0));
        let prompt_text = ok_json(&s, "/detokenize", json!({"tokens": full}))["prompt"].clone();
        assert!(c["text"]
            .as_str()
            .unwrap()
            .starts_with(prompt_text.as_str().unwrap()));
        // The continuation's echoed logprobs are the ones generation gave it.
        for (i, &(_, want, _)) in cont.iter().enumerate() {
            let got = lps[context.len() + i].as_f64().unwrap();
            assert!((got - want).abs() < 1e-4, "token {i}: {got} vs {want}");
        }
        if max_tokens == 1 {
            let (sum, greedy) = lm_eval_parse(c, context.len());
            let want: f64 = cont.iter().map(|t| t.1).sum();
            assert!((sum - want).abs() < 1e-3, "{sum} vs {want}");
            assert_eq!(greedy, cont.iter().all(|t| t.2), "{v}");
        }
    }
}

#[test]
fn token_id_prompts_answer_as_their_text_and_tokenize_round_trips() {
    let s = smoke_server(&[]);
    let ids = tokenize(&s, "abc");
    let text = ok_json(&s, "/detokenize", json!({"tokens": ids}));
    assert_eq!(text["prompt"], "abc");
    let body = |prompt: Value| json!({"prompt": prompt, "max_tokens": 5, "temperature": 0});
    let by_text = ok_json(&s, "/v1/completions", body(json!("abc")));
    let by_ids = ok_json(&s, "/v1/completions", body(json!(ids)));
    assert_eq!(by_ids["choices"][0]["text"], by_text["choices"][0]["text"]);
    assert_eq!(by_ids["usage"], by_text["usage"]);
    let de = tokenize(&s, "de");
    let batch = ok_json(&s, "/v1/completions", body(json!([ids, de])));
    let alone = ok_json(&s, "/v1/completions", body(json!("de")));
    assert_eq!(batch["choices"][0]["text"], by_text["choices"][0]["text"]);
    assert_eq!(batch["choices"][1]["text"], alone["choices"][0]["text"]);
    let (st, _, v, t) = post(&s, "/v1/completions", body(json!([[]])).to_string(), None);
    assert_error(st, 400, &v, &t);
}

#[test]
fn max_model_len_defaults_to_the_models_context_and_longer_prompts_answer_400() {
    let p = Project::new();
    let dir = qwen3_dir(&p);
    let model = dir.to_str().unwrap().to_string();
    // Beyond the checkpoint's max_position_embeddings (256): a one-line startup error.
    let err = p
        .bwb(&[
            "serve",
            "--model",
            &model,
            "--max-model-len",
            "1000",
            "--port",
            "0",
        ])
        .fails(1);
    assert!(err.contains("1000") && err.contains("256"), "{err}");
    let s = Server::start(p, &[], &["--model", &model]);
    let models = get_json(&s, "/v1/models");
    assert_eq!(models["data"][0]["max_model_len"], 256);
    let ok = ok_json(
        &s,
        "/v1/completions",
        json!({"prompt": "a".repeat(200), "max_tokens": 2}),
    );
    assert_usage(&ok["usage"]);
    let (st, _, v, t) = post(
        &s,
        "/v1/completions",
        json!({"prompt": "a".repeat(300), "max_tokens": 2}).to_string(),
        None,
    );
    assert_error(st, 400, &v, &t);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("256") && msg.contains("300"), "{msg}");
}

/// One eval run's predictions, by example: (input messages, raw output, parsed prediction,
/// input and output tokens, generation).
fn predictions(p: &Project, model: &str, condition: &str) -> Vec<(String, Value)> {
    let path = format!("results/smoke/predictions/{model}/fpb/{condition}/seed-1.jsonl");
    let mut rows: Vec<(String, Value)> = jsonl(&p.read(&path))
        .into_iter()
        .map(|r| {
            let id = r["example_id"].as_str().unwrap().to_string();
            let keep = [
                "input_messages",
                "raw_output",
                "prediction",
                "input_tokens",
                "output_tokens",
                "generation",
                "error",
            ];
            (
                id,
                keep.iter()
                    .map(|k| (k.to_string(), r[*k].clone()))
                    .collect(),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[test]
fn bwb_eval_through_the_server_equals_local_eval_for_the_base_and_an_adapter() {
    let p = Project::new().set_env("OPENAI_API_KEY", "sekrit");
    for step in ["download", "prepare"] {
        p.bwb(&["--smoke-test", step, "--task", "fpb"]).ok();
    }
    let args = |cmd: &str| -> Vec<String> { cmd.split(' ').map(String::from).collect() };
    let train = args("--smoke-test train --model smoke --task fpb --condition lora-500");
    p.bwb(&train.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    // f32 on both sides (eval's default base is 4-bit; serve's is the weights as stored).
    let eval = |p: &Project, model: &str, condition: &str| {
        let cmd = format!(
            "--smoke-test eval --model {model} --task fpb --condition {condition} --seeds 1 --quant none"
        );
        p.bwb(&args(&cmd).iter().map(String::as_str).collect::<Vec<_>>())
            .ok();
    };
    eval(&p, "smoke", "zero-shot");
    eval(&p, "smoke", "lora-500");
    let adapter = p.path("checkpoints/smoke/smoke/fpb/lora-500/adapter");
    assert!(adapter.join("adapter_config.json").exists());
    let lora = format!("fpb={}", adapter.display());
    let s = Server::start(
        p,
        &["--smoke-test"],
        &[
            "--model",
            "smoke",
            "--lora-modules",
            &lora,
            "--api-key",
            "sekrit",
        ],
    );
    let p = &s.project;
    for (id, name) in [("served", "smoke"), ("served-fpb", "fpb")] {
        p.write(
            &format!("configs/models/{id}.yaml"),
            &format!(
                "id: {id}\nkind: api\nprovider: openai\napi_model: {name}\nbase_url: {}/v1\ngreedy: true\n",
                s.base
            ),
        );
        eval(p, id, "zero-shot");
    }
    let local = predictions(p, "smoke", "zero-shot");
    assert_eq!(local.len(), 15);
    assert!(local.iter().all(|r| r.1["generation"] == "greedy"));
    assert_eq!(predictions(p, "served", "zero-shot"), local);
    let tuned = predictions(p, "smoke", "lora-500");
    assert_ne!(tuned, local, "the adapter must change something");
    assert_eq!(predictions(p, "served-fpb", "zero-shot"), tuned);
}
