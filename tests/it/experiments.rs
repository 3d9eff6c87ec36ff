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
