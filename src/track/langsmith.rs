//! LangSmith traces for `bwb experiments`: one root run per experiment and a child run per
//! example (the prompt messages, the prediction and gold, tokens, latency, cost), posted
//! through `POST {endpoint}/runs/batch`, and every metric of an example as feedback on its run
//! (`POST {endpoint}/feedback`). Runs carry `trace_id` (the root's id) and `dotted_order`
//! (`<start as %Y%m%dT%H%M%S%6fZ><run id>`, a child's prefixed by its parent's and a dot) as
//! the API requires.
//!
//! On with `--langsmith` or `LANGSMITH_TRACING=true`; the key from `LANGSMITH_API_KEY`, the
//! server from `LANGSMITH_ENDPOINT`, the project from `--langsmith-project` /
//! `LANGSMITH_PROJECT` (default `bwb`). Like MLflow tracking it never fails the benchmark: a
//! request that fails after a retry is counted and reported in one line.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::settings::Env;

/// The hosted service.
pub const DEFAULT_ENDPOINT: &str = "https://api.smith.langchain.com";
/// Runs per `/runs/batch` request.
const BATCH: usize = 100;

/// A configured LangSmith client.
pub struct LangSmith {
    endpoint: String,
    key: String,
    pub project: String,
    http: reqwest::blocking::Client,
}

impl std::fmt::Debug for LangSmith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LangSmith")
            .field("endpoint", &self.endpoint)
            .field("project", &self.project)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// What one experiment's upload did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logged {
    pub runs: usize,
    pub feedback: usize,
    pub failed_runs: usize,
    pub failed_feedback: usize,
    /// The first failure, scrubbed of the key.
    pub first_error: Option<String>,
}

impl Logged {
    /// One line for the command's output.
    pub fn line(&self, project: &str) -> String {
        if self.failed_runs + self.failed_feedback == 0 {
            format!(
                "langsmith: logged {} runs and {} feedback scores to project `{project}`",
                self.runs, self.feedback
            )
        } else {
            format!(
                "langsmith: not logged: {} runs, {} feedback scores ({})",
                self.failed_runs,
                self.failed_feedback,
                self.first_error.as_deref().unwrap_or("unknown error")
            )
        }
    }
}

/// One example as traced: its prompt, answer and numbers.
#[derive(Debug, Clone)]
pub struct Example {
    pub id: String,
    pub messages: Value,
    pub pred: String,
    pub gold: Value,
    pub metadata: Value,
    pub latency_ms: f64,
    pub error: Option<String>,
    pub metrics: Vec<(String, f64)>,
}

impl LangSmith {
    /// None when tracing is off; an error when it is on without a key or with a bad URL.
    pub fn from_env(env: &Env, on: bool, project: Option<&str>) -> Result<Option<LangSmith>> {
        let tracing_env = env
            .get("LANGSMITH_TRACING")
            .is_some_and(|(v, _)| matches!(v.trim().to_lowercase().as_str(), "1" | "true" | "yes"));
        if !(on || tracing_env) {
            return Ok(None);
        }
        let Some((key, _)) = env.get("LANGSMITH_API_KEY") else {
            return Err(Error::Config(
                "LangSmith tracing is on but LANGSMITH_API_KEY is not set: export it or add it to .env, or drop --langsmith / LANGSMITH_TRACING".into(),
            ));
        };
        let endpoint = env
            .get("LANGSMITH_ENDPOINT")
            .map(|(v, _)| v.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::Config(format!(
                "LANGSMITH_ENDPOINT `{endpoint}` must start with http:// or https://"
            )));
        }
        let project = project
            .map(str::to_string)
            .or_else(|| env.get("LANGSMITH_PROJECT").map(|(v, _)| v.to_string()))
            .unwrap_or_else(|| "bwb".to_string());
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Some(LangSmith {
            endpoint,
            key: key.trim().to_string(),
            project,
            http,
        }))
    }

    /// POST `body` to `path`, one retry; Err(message) scrubbed of the key.
    fn post(&self, path: &str, body: &Value) -> std::result::Result<(), String> {
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            let r = self
                .http
                .post(format!("{}{path}", self.endpoint))
                .header("x-api-key", &self.key)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send();
            match r {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let text: String = resp.text().unwrap_or_default().chars().take(200).collect();
                    last = format!("POST {path}: HTTP {status}: {text}");
                    if !(status == 429 || status >= 500) {
                        break;
                    }
                }
                Err(e) => last = format!("POST {path}: {e}"),
            }
        }
        Err(last.replace(&self.key, "[redacted]"))
    }

    /// Trace one experiment: the root run (its summary as outputs) and one child per example,
    /// then each example's metrics as feedback.
    pub fn log_experiment(&self, name: &str, summary: &Value, examples: &[Example]) -> Logged {
        let root_id = Uuid::new_v4();
        let start = Utc::now();
        let root_dotted = segment(start, root_id);
        let total_ms: f64 = examples.iter().map(|e| e.latency_ms).sum();
        let mut runs = vec![json!({
            "id": root_id.to_string(),
            "trace_id": root_id.to_string(),
            "dotted_order": root_dotted,
            "name": name,
            "run_type": "chain",
            "session_name": self.project,
            "start_time": iso(start),
            "end_time": iso(start + ms(total_ms)),
            "inputs": {"experiment": summary["experiment_id"], "model": summary["model"], "dataset": summary["dataset"], "task": summary["task"], "mode": summary["mode"]},
            "outputs": {"summary": summary},
            "extra": {"metadata": {"bwb.command": "experiments"}},
        })];
        let mut children = Vec::new();
        let mut t = start;
        for ex in examples {
            // Children start in turn after the root, each lasting its latency.
            t += TimeDelta::microseconds(1);
            let id = Uuid::new_v4();
            children.push((id, &ex.metrics));
            let mut run = json!({
                "id": id.to_string(),
                "trace_id": root_id.to_string(),
                "parent_run_id": root_id.to_string(),
                "dotted_order": format!("{root_dotted}.{}", segment(t, id)),
                "name": ex.id,
                "run_type": "llm",
                "session_name": self.project,
                "start_time": iso(t),
                "end_time": iso(t + ms(ex.latency_ms)),
                "inputs": {"messages": ex.messages},
                "outputs": {"pred": ex.pred, "gold": ex.gold},
                "extra": {"metadata": ex.metadata},
            });
            if let Some(e) = &ex.error {
                run["error"] = json!(e);
            }
            runs.push(run);
        }
        let mut out = Logged::default();
        for chunk in runs.chunks(BATCH) {
            match self.post("/runs/batch", &json!({"post": chunk, "patch": []})) {
                Ok(()) => out.runs += chunk.len(),
                Err(e) => {
                    out.failed_runs += chunk.len();
                    out.first_error.get_or_insert(e);
                }
            }
        }
        if out.failed_runs > 0 {
            // Feedback on runs the server never got would only fail too.
            out.failed_feedback = children.iter().map(|(_, m)| m.len()).sum();
            return out;
        }
        for (id, metrics) in children {
            for (key, score) in metrics.iter() {
                let body = json!({"id": Uuid::new_v4().to_string(), "run_id": id.to_string(), "key": key, "score": score, "feedback_source": {"type": "api"}});
                match self.post("/feedback", &body) {
                    Ok(()) => out.feedback += 1,
                    Err(e) => {
                        out.failed_feedback += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
        }
        out
    }
}

fn ms(v: f64) -> TimeDelta {
    TimeDelta::microseconds((v.max(0.0) * 1e3).round() as i64)
}

/// ISO 8601 with microseconds, UTC.
fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// One `dotted_order` segment: the start time as `%Y%m%dT%H%M%S%6fZ`, then the run id.
fn segment(t: DateTime<Utc>, id: Uuid) -> String {
    format!("{}{id}", t.format("%Y%m%dT%H%M%S%6fZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_order_segments_are_time_then_id() {
        let t = DateTime::parse_from_rfc3339("2026-12-06T09:05:01.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = Uuid::nil();
        assert_eq!(
            segment(t, id),
            "20261206T090501123456Z00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(iso(t), "2026-12-06T09:05:01.123456Z");
        assert_eq!(ms(1.5), TimeDelta::microseconds(1500));
    }

    #[test]
    fn tracing_needs_a_key_and_is_off_by_default() {
        let env = Env::default();
        assert!(LangSmith::from_env(&env, false, None).unwrap().is_none());
        let err = LangSmith::from_env(&env, true, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("LANGSMITH_API_KEY"), "{err}");
    }
}
