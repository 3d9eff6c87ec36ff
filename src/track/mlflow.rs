//! A small client for MLflow's REST API (the calls `mlflow.MlflowClient` makes against a
//! tracking server): experiments by name, runs, batched metrics / params / tags, run status,
//! and artifacts through the server's artifact proxy (`mlflow server --serve-artifacts`,
//! MLflow's default since 2.0).
//!
//! Every call is one blocking request with the client's short timeout; retrying and
//! backgrounding are the caller's ([`super::Tracker`]). Credentials live only in request
//! headers; error messages carry the server's `error_code` and message, never a header.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::{json, Value};

/// MLflow's limits on one `runs/log-batch` request (`mlflow/utils/validation.py`, 3.x).
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// Longest param value MLflow stores (6000 characters since 2.x; older servers: 500).
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
/// Longest tag value.
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
/// Longest metric / param / tag key.
pub const MAX_KEY_LENGTH: usize = 250;
/// Largest `runs/log-batch` body MLflow accepts (1 MB); batches keep below this much text.
const BATCH_BYTES: usize = 900_000;

/// How the server wants to be authenticated (MLflow's own variables).
#[derive(Clone)]
pub enum Auth {
    /// `MLFLOW_TRACKING_TOKEN`: `Authorization: Bearer …`.
    Token(String),
    /// `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`: HTTP basic auth.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token([redacted])"),
            Self::Basic { user, .. } => write!(f, "Basic({user}, [redacted])"),
        }
    }
}

/// A failed call: whether trying again may help, and a one-line reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// Connection refused / reset, timeout, 429 or 5xx: the server may recover.
    pub transient: bool,
    /// MLflow's `error_code` when the server answered with one (`RESOURCE_DOES_NOT_EXIST`).
    pub code: Option<String>,
    pub message: String,
}

impl CallError {
    fn permanent(message: String) -> Self {
        Self {
            transient: false,
            code: None,
            message,
        }
    }
}

pub type CallResult<T> = std::result::Result<T, CallError>;

/// One metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    pub step: i64,
}

/// What `runs/create` returned that later calls need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts` when the server proxies artifacts.
    pub artifact_uri: String,
}

/// How a run ended (`runs/update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "FINISHED",
            Self::Failed => "FAILED",
            Self::Killed => "KILLED",
        }
    }
}

/// A tracking server at one base URL.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    auth: Option<Auth>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Client {
    /// A client for the server at `uri` (http or https); `timeout` bounds each call
    /// (connect included: a server that is down answers quickly or not at all).
    pub fn new(uri: &str, auth: Option<Auth>, timeout: Duration) -> CallResult<Client> {
        let base = parse_base(uri).map_err(CallError::permanent)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| CallError::permanent(format!("cannot build an HTTP client: {e}")))?;
        Ok(Client { http, base, auth })
    }

    /// The server's base URL (no credentials: those never live in the URL).
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// `<base>/<path segments>` with each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut p) = url.path_segments_mut() {
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        url
    }

    fn api(&self, method: &str) -> Url {
        let mut segs = vec!["api", "2.0", "mlflow"];
        segs.extend(method.split('/'));
        self.url(&segs)
    }

    fn authed(&self, rb: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.auth {
            Some(Auth::Token(t)) => rb.bearer_auth(t),
            Some(Auth::Basic { user, password }) => rb.basic_auth(user, Some(password)),
            None => rb,
        }
    }

    fn send(&self, what: &str, rb: reqwest::blocking::RequestBuilder) -> CallResult<Value> {
        let resp = self.authed(rb).send().map_err(|e| CallError {
            transient: true,
            code: None,
            message: format!("{what}: {}", transport_reason(e)),
        })?;
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        if status.is_success() {
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).map_err(|e| {
                CallError::permanent(format!("{what}: the server's answer is not JSON ({e})"))
            });
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = body["error_code"].as_str().map(str::to_string);
        let message = body["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(CallError {
            transient: status.as_u16() == 429 || status.is_server_error(),
            message: format!(
                "{what}: HTTP {}{}: {}",
                status.as_u16(),
                code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
                message.replace('\n', " ")
            ),
            code,
        })
    }

    fn post(&self, method: &str, body: &Value) -> CallResult<Value> {
        let rb = self
            .http
            .post(self.api(method))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        self.send(method, rb)
    }

    fn get(&self, method: &str, query: &[(&str, &str)]) -> CallResult<Value> {
        let rb = self.http.get(self.api(method)).query(query);
        self.send(method, rb)
    }

    /// `GET /health`: the server is up.
    pub fn health(&self) -> CallResult<()> {
        let rb = self.http.get(self.url(&["health"]));
        let resp = self.authed(rb).send().map_err(|e| CallError {
            transient: true,
            code: None,
            message: format!("health: {}", transport_reason(e)),
        })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(CallError {
                transient: true,
                code: None,
                message: format!("health: HTTP {}", resp.status().as_u16()),
            })
        }
    }

    /// The id of experiment `name`, created when it does not exist (a concurrent creator
    /// winning the race is fine).
    pub fn experiment_id(&self, name: &str) -> CallResult<String> {
        if let Some(id) = self.find_experiment(name)? {
            return Ok(id);
        }
        match self.post("experiments/create", &json!({ "name": name })) {
            Ok(v) => v["experiment_id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    CallError::permanent(
                        "experiments/create: no experiment_id in the answer".into(),
                    )
                }),
            Err(e) if e.code.as_deref() == Some("RESOURCE_ALREADY_EXISTS") => self
                .find_experiment(name)?
                .ok_or_else(|| CallError::permanent(format!("experiment `{name}` vanished"))),
            Err(e) => Err(e),
        }
    }

    /// The id of experiment `name`, or None when there is none.
    pub fn find_experiment(&self, name: &str) -> CallResult<Option<String>> {
        match self.get("experiments/get-by-name", &[("experiment_name", name)]) {
            Ok(v) => Ok(v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string)),
            Err(e) if e.code.as_deref() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `runs/create` with a name, start time and tags.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time: i64,
        tags: &[(String, String)],
    ) -> CallResult<RunInfo> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": clip(k, MAX_KEY_LENGTH), "value": clip(v, MAX_TAG_VAL_LENGTH) }))
            .collect();
        let v = self.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_time,
                "tags": tags,
            }),
        )?;
        let info = &v["run"]["info"];
        let field = |k: &str| {
            info[k].as_str().map(str::to_string).ok_or_else(|| {
                CallError::permanent(format!("runs/create: no run.info.{k} in the answer"))
            })
        };
        Ok(RunInfo {
            run_id: field("run_id")?,
            experiment_id: field("experiment_id")?,
            artifact_uri: field("artifact_uri")?,
        })
    }

    /// One `runs/log-batch` call; the caller keeps it within MLflow's limits ([`batches`]).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> CallResult<()> {
        let metrics: Vec<Value> = metrics
            .iter()
            .map(|m| {
                json!({
                    "key": clip(&m.key, MAX_KEY_LENGTH),
                    "value": metric_value(m.value),
                    "timestamp": m.timestamp,
                    "step": m.step,
                })
            })
            .collect();
        let kv = |v: &[(String, String)], max: usize| -> Vec<Value> {
            v.iter()
                .map(|(k, v)| json!({ "key": clip(k, MAX_KEY_LENGTH), "value": clip(v, max) }))
                .collect()
        };
        self.post(
            "runs/log-batch",
            &json!({
                "run_id": run_id,
                "metrics": metrics,
                "params": kv(params, MAX_PARAM_VAL_LENGTH),
                "tags": kv(tags, MAX_TAG_VAL_LENGTH),
            }),
        )
        .map(|_| ())
    }

    /// `runs/update`: status and end time.
    pub fn end_run(&self, run_id: &str, status: RunStatus, end_time: i64) -> CallResult<()> {
        self.post(
            "runs/update",
            &json!({ "run_id": run_id, "status": status.as_str(), "end_time": end_time }),
        )
        .map(|_| ())
    }

    /// Where the artifact proxy keeps `run`'s file `rel` (a `/`-separated path), or why it
    /// cannot: only `mlflow-artifacts:` roots go through the tracking server.
    pub fn artifact_url(&self, run: &RunInfo, rel: &str) -> CallResult<Url> {
        let Some(rest) = run.artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(CallError::permanent(format!(
                "the run's artifact root is {}, which bwb cannot write; start the server with --serve-artifacts (MLflow's default) so artifacts go through it",
                run.artifact_uri
            )));
        };
        // `mlflow-artifacts://host:port/<path>` names another server; `mlflow-artifacts:/<path>`
        // this one.
        let (host, path) = match rest.strip_prefix("//") {
            Some(r) => match r.find('/') {
                Some(i) => (Some(&r[..i]), &r[i..]),
                None => (Some(r), ""),
            },
            None => (None, rest),
        };
        let mut segs = vec!["api", "2.0", "mlflow-artifacts", "artifacts"];
        segs.extend(path.split('/').filter(|s| !s.is_empty()));
        segs.extend(rel.split('/').filter(|s| !s.is_empty()));
        let mut url = self.url(&segs);
        if let Some(h) = host.filter(|h| !h.is_empty()) {
            let (name, port) = match h.rsplit_once(':') {
                Some((n, p)) => (n, p.parse::<u16>().ok()),
                None => (h, None),
            };
            let bad =
                |_| CallError::permanent(format!("bad artifact host in {}", run.artifact_uri));
            url.set_host(Some(name)).map_err(bad)?;
            url.set_port(port).map_err(|_| {
                CallError::permanent(format!("bad artifact port in {}", run.artifact_uri))
            })?;
        }
        Ok(url)
    }

    /// Upload one file as `rel` under the run's artifact root (`PUT` to the artifact proxy,
    /// streamed from disk).
    pub fn upload_artifact(&self, run: &RunInfo, rel: &str, local: &Path) -> CallResult<()> {
        let url = self.artifact_url(run, rel)?;
        let file = std::fs::File::open(local)
            .map_err(|e| CallError::permanent(format!("cannot read {}: {e}", local.display())))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A large file needs longer than a metric call: 1 s per 10 MB on top.
        let timeout = Duration::from_secs(30 + len / 10_000_000);
        let rb = self
            .http
            .put(url)
            .timeout(timeout)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len)
            .body(reqwest::blocking::Body::sized(file, len));
        self.send(&format!("artifact {rel}"), rb).map(|_| ())
    }

    /// `runs/search` over `experiment_ids`, newest first (one page of at most `max_results`;
    /// `page_token` from the previous page's `next_page_token`). The raw answer: `runs` and
    /// `next_page_token`.
    pub fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
        max_results: usize,
        page_token: Option<&str>,
    ) -> CallResult<Value> {
        let mut body = json!({
            "experiment_ids": experiment_ids,
            "filter": filter,
            "max_results": max_results,
            "order_by": ["attributes.start_time DESC"],
        });
        if let Some(t) = page_token {
            body["page_token"] = json!(t);
        }
        self.post("runs/search", &body)
    }
}

/// The tracking URI as a base URL: http or https only (MLflow's `file:` / `databricks`
/// stores need MLflow's own client).
pub fn parse_base(uri: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(uri.trim())
        .map_err(|e| format!("MLflow tracking URI {uri:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "MLflow tracking URI {uri:?}: bwb talks to a tracking server over http(s), e.g. http://127.0.0.1:5000 (start one with `mlflow server`)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "MLflow tracking URI: put credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN), not in the URI".into(),
        );
    }
    Ok(url)
}

/// A metric value in protobuf's JSON mapping: non-finite values as the strings MLflow's
/// server parses (`NaN`, `Infinity`, `-Infinity`).
fn metric_value(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        json!(v)
    }
}

/// At most `max` characters (MLflow counts characters), cut at a character boundary.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Why a request never got an answer, in words (no URL: it is printed once elsewhere).
fn transport_reason(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        msg
    }
}

/// One `runs/log-batch` request's share.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
}

/// Split metrics, params and tags into requests within MLflow's limits: at most 100 params,
/// 100 tags and 1000 metrics, 1000 entities in all. Params and tags go first (a run's params
/// before its metrics, as MLflow's own client sends them).
pub fn batches(
    mut metrics: Vec<Metric>,
    mut params: Vec<(String, String)>,
    mut tags: Vec<(String, String)>,
) -> Vec<Batch> {
    let mut out = Vec::new();
    metrics.reverse();
    params.reverse();
    tags.reverse();
    while !(metrics.is_empty() && params.is_empty() && tags.is_empty()) {
        let mut b = Batch::default();
        // Long values (up to 6000 + 8000 characters each) also bound a batch by size; the
        // first entry always goes, so every batch makes progress.
        let mut bytes = 0;
        // UTF-8 bytes (at most 4 per clipped character), doubled for JSON escapes.
        let size = |(k, v): &(String, String), max: usize| {
            64 + 2 * (k.len().min(MAX_KEY_LENGTH * 4) + v.len().min(max * 4))
        };
        while b.params.len() < MAX_PARAMS_TAGS_PER_BATCH {
            match params.pop() {
                Some(p)
                    if b.params.is_empty()
                        || bytes + size(&p, MAX_PARAM_VAL_LENGTH) <= BATCH_BYTES =>
                {
                    bytes += size(&p, MAX_PARAM_VAL_LENGTH);
                    b.params.push(p);
                }
                Some(p) => {
                    params.push(p);
                    break;
                }
                None => break,
            }
        }
        while b.tags.len() < MAX_PARAMS_TAGS_PER_BATCH {
            match tags.pop() {
                Some(t)
                    if (b.params.is_empty() && b.tags.is_empty())
                        || bytes + size(&t, MAX_TAG_VAL_LENGTH) <= BATCH_BYTES =>
                {
                    bytes += size(&t, MAX_TAG_VAL_LENGTH);
                    b.tags.push(t);
                }
                Some(t) => {
                    tags.push(t);
                    break;
                }
                None => break,
            }
        }
        let room =
            (MAX_ENTITIES_PER_BATCH - b.params.len() - b.tags.len()).min(MAX_METRICS_PER_BATCH);
        while b.metrics.len() < room {
            match metrics.pop() {
                Some(m) => b.metrics.push(m),
                None => break,
            }
        }
        out.push(b);
    }
    out
}

/// `runs/search` answers, as far as `bwb experiments` needs them.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchPage {
    #[serde(default)]
    pub runs: Vec<Value>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: usize) -> Metric {
        Metric {
            key: format!("k{i}"),
            value: i as f64,
            timestamp: 0,
            step: i as i64,
        }
    }

    fn kv(n: usize, p: &str) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("{p}{i}"), i.to_string())).collect()
    }

    #[test]
    fn batches_stay_within_mlflows_limits_and_keep_order() {
        let out = batches((0..2500).map(m).collect(), kv(250, "p"), kv(30, "t"));
        for b in &out {
            assert!(b.params.len() <= MAX_PARAMS_TAGS_PER_BATCH);
            assert!(b.tags.len() <= MAX_PARAMS_TAGS_PER_BATCH);
            assert!(b.metrics.len() <= MAX_METRICS_PER_BATCH);
            assert!(b.params.len() + b.tags.len() + b.metrics.len() <= MAX_ENTITIES_PER_BATCH);
        }
        // 1: 100 p + 30 t + 870 m; 2: 100 p + 900 m; 3: 50 p + 730 m.
        let shape: Vec<_> = out
            .iter()
            .map(|b| (b.params.len(), b.tags.len(), b.metrics.len()))
            .collect();
        assert_eq!(shape, [(100, 30, 870), (100, 0, 900), (50, 0, 730)]);
        let keys: Vec<i64> = out
            .iter()
            .flat_map(|b| b.metrics.iter().map(|m| m.step))
            .collect();
        assert_eq!(keys, (0..2500).collect::<Vec<i64>>());
        assert_eq!(out[2].params.last().unwrap().0, "p249");
        assert!(batches(vec![], vec![], vec![]).is_empty());
        // Long values: each batch's text stays under MLflow's 1 MB request limit.
        let long: Vec<(String, String)> = (0..100)
            .map(|i| (format!("p{i}"), "x".repeat(MAX_PARAM_VAL_LENGTH)))
            .collect();
        let tags: Vec<(String, String)> = (0..100)
            .map(|i| (format!("t{i}"), "é".repeat(MAX_TAG_VAL_LENGTH)))
            .collect();
        let out = batches(vec![m(0)], long, tags);
        assert!(out.len() > 1);
        for b in &out {
            let body: usize = b
                .params
                .iter()
                .chain(&b.tags)
                .map(|(k, v)| k.len() + v.len())
                .sum();
            assert!(body < 1_000_000, "{body}");
        }
        let n: usize = out.iter().map(|b| b.params.len() + b.tags.len()).sum();
        assert_eq!(n, 200);
    }

    #[test]
    fn values_are_clipped_by_characters_and_non_finite_metrics_are_strings() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(
            clip(&"é".repeat(7000), MAX_PARAM_VAL_LENGTH)
                .chars()
                .count(),
            6000
        );
        assert_eq!(metric_value(f64::NAN), json!("NaN"));
        assert_eq!(metric_value(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(metric_value(0.5), json!(0.5));
    }

    #[test]
    fn tracking_uris_are_http_without_credentials() {
        assert!(parse_base("http://127.0.0.1:5000").is_ok());
        assert!(parse_base("https://mlflow.example.com/prefix/").is_ok());
        for bad in [
            "file:///tmp/mlruns",
            "databricks",
            "127.0.0.1:5000",
            "http://u:secret@h:5000",
        ] {
            let err = parse_base(bad).unwrap_err();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn artifact_urls_follow_mlflows_proxy_layout() {
        let c = Client::new(
            "http://127.0.0.1:5000/mlflow/",
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        let run = RunInfo {
            run_id: "abc".into(),
            experiment_id: "1".into(),
            artifact_uri: "mlflow-artifacts:/1/abc/artifacts".into(),
        };
        assert_eq!(
            c.artifact_url(&run, "adapter/a b.json").unwrap().as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/adapter/a%20b.json"
        );
        let other = RunInfo {
            artifact_uri: "mlflow-artifacts://store:6000/1/abc/artifacts".into(),
            ..run.clone()
        };
        assert_eq!(
            c.artifact_url(&other, "x.json").unwrap().as_str(),
            "http://store:6000/mlflow/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/x.json"
        );
        let local = RunInfo {
            artifact_uri: "/srv/mlruns/1/abc/artifacts".into(),
            ..run
        };
        let err = c.artifact_url(&local, "x").unwrap_err();
        assert!(
            !err.transient && err.message.contains("--serve-artifacts"),
            "{err}"
        );
        assert_eq!(
            c.api("runs/log-batch").as_str(),
            "http://127.0.0.1:5000/mlflow/api/2.0/mlflow/runs/log-batch"
        );
    }

    #[test]
    fn credentials_never_print() {
        let a = Auth::Basic {
            user: "me".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
        assert!(!format!("{:?}", Auth::Token("tok123".into())).contains("tok123"));
    }
}
