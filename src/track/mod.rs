//! Experiment tracking: runs, params, metrics and artifacts sent to an MLflow tracking server
//! ([`mlflow`], its REST API) from the events train, eval and classify already produce.
//!
//! Tracking never fails or slows the benchmark. Every call only queues an operation (a bounded
//! queue; when it is full the operation is dropped and counted); one background thread sends
//! them with short timeouts and a small retry policy. The first failure is one warning; at the
//! end of the command [`Tracker::finish`] waits a bounded time for the queue to drain and
//! reports what was not logged, which the command prints as one line. A server that keeps
//! failing is not waited for at the end.
//!
//! ```text
//! let tracker = Tracker::new(&settings.tracking);          // off: every call is a no-op
//! let run = tracker.start_run("train smoke/fpb/lora-500", tags, params);
//! run.log_metrics(&[("loss", 0.7), ("lr", 1e-4)], step);
//! run.log_artifact_dir(&adapter_dir, "adapter");
//! run.end(RunStatus::Finished);                             // dropped un-ended: FAILED
//! let report = tracker.finish();                            // end of the command
//! ```

pub mod langsmith;
pub mod mlflow;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use mlflow::{Auth, RunStatus};
use mlflow::{CallError, CallResult, Client, Metric, RunInfo};

use crate::train::metrics_log::{MetricsLine, MetricsSink};

/// Default tracking server (`mlflow server`'s own default address).
pub const DEFAULT_URI: &str = "http://127.0.0.1:5000";
/// Default experiment name.
pub const DEFAULT_EXPERIMENT: &str = "bwb";
/// Operations queued before new ones are dropped (a step's metrics are one operation).
pub const QUEUE_CAPACITY: usize = 10_000;

/// Tracking as resolved by `settings.rs` (CLI > env > run_defaults.yaml `tracking:` > default).
#[derive(Debug, Clone)]
pub struct TrackingSettings {
    /// `--mlflow` / `--no-mlflow`, `BWB_MLFLOW`, `tracking.mlflow`; off by default.
    pub enabled: bool,
    /// `--mlflow-uri`, `MLFLOW_TRACKING_URI`, `tracking.mlflow_uri`.
    pub uri: String,
    /// `--mlflow-experiment`, `MLFLOW_EXPERIMENT_NAME`, `tracking.mlflow_experiment`.
    pub experiment: String,
    /// `MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`.
    pub auth: Option<Auth>,
    /// Each API call's limit (`BWB_MLFLOW_TIMEOUT_S`, default 5 s); uploads get more.
    pub request_timeout: Duration,
    /// How long the end of a command waits for queued calls (`BWB_MLFLOW_FLUSH_S`, default
    /// 30 s; a failing server is not waited for).
    pub flush_timeout: Duration,
    /// Tagged on every run (`bwb.smoke`).
    pub smoke: bool,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            uri: DEFAULT_URI.into(),
            experiment: DEFAULT_EXPERIMENT.into(),
            auth: None,
            request_timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(30),
            smoke: false,
        }
    }
}

/// Attempts per call while the server answers, and the first backoff (doubling). Once a call
/// has failed every attempt, later calls get one attempt until one succeeds again, so a dead
/// server costs one timeout per call, in the background.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// What one kind of thing counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Runs = 0,
    Metrics = 1,
    Params = 2,
    Tags = 3,
    Artifacts = 4,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::Runs, "runs"),
    (Kind::Metrics, "metrics"),
    (Kind::Params, "params"),
    (Kind::Tags, "tags"),
    (Kind::Artifacts, "artifacts"),
];

#[derive(Debug, Default)]
struct Counts {
    queued: [AtomicU64; 5],
    logged: [AtomicU64; 5],
}

impl Counts {
    fn queue(&self, k: Kind, n: usize) {
        self.queued[k as usize].fetch_add(n as u64, Ordering::Relaxed);
    }
    fn log(&self, k: Kind, n: usize) {
        self.logged[k as usize].fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What a command's tracking came to ([`Tracker::finish`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub uri: String,
    pub experiment: String,
    /// Logged: runs created, metric points, params, tags, artifact files.
    pub logged: Vec<(&'static str, u64)>,
    /// Queued but not logged (server down, refused, queue full, or still queued at the
    /// flush deadline), by kind.
    pub not_logged: Vec<(&'static str, u64)>,
}

impl Report {
    fn count(v: &[(&'static str, u64)], kind: &str) -> u64 {
        v.iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
    pub fn logged(&self, kind: &str) -> u64 {
        Self::count(&self.logged, kind)
    }
    pub fn not_logged(&self, kind: &str) -> u64 {
        Self::count(&self.not_logged, kind)
    }
    pub fn complete(&self) -> bool {
        self.not_logged.iter().all(|(_, n)| *n == 0)
    }

    /// The one line a command prints at its end: what reached the server, or what did not
    /// (`mlflow: not logged: 0 runs, 40 metrics, 25 params, 3 artifacts …`).
    pub fn line(&self) -> String {
        if self.complete() {
            return format!(
                "mlflow: logged {} run(s) with {} metrics, {} params and {} artifacts to {} (experiment `{}`)",
                self.logged("runs"),
                self.logged("metrics"),
                self.logged("params"),
                self.logged("artifacts"),
                self.uri,
                self.experiment
            );
        }
        let mut parts: Vec<String> = ["runs", "metrics", "params", "artifacts"]
            .iter()
            .map(|k| format!("{} {k}", self.not_logged(k)))
            .collect();
        let tags = self.not_logged("tags");
        if tags > 0 {
            parts.push(format!("{tags} tags"));
        }
        format!(
            "mlflow: not logged: {} (tracking server {}); the benchmark's own results are complete",
            parts.join(", "),
            self.uri
        )
    }
}

/// One queued operation. Runs are named by a local number until the server gives an id.
enum Op {
    Start {
        run: u64,
        name: String,
        tags: Vec<(String, String)>,
        params: Vec<(String, String)>,
        start: i64,
    },
    Log {
        run: u64,
        metrics: Vec<Metric>,
        params: Vec<(String, String)>,
        tags: Vec<(String, String)>,
    },
    Artifact {
        run: u64,
        local: PathBuf,
        rel: String,
    },
    End {
        run: u64,
        status: RunStatus,
        end: i64,
    },
    Shutdown,
}

struct Inner {
    tx: SyncSender<Op>,
    counts: Arc<Counts>,
    /// Set at [`Tracker::finish`]: a failing server is no longer waited for.
    closing: Arc<AtomicBool>,
    queue_full_warned: AtomicBool,
    next_run: AtomicU64,
    done: Mutex<Option<Receiver<()>>>,
    uri: String,
    experiment: String,
    flush_timeout: Duration,
}

/// The tracking of one command: a no-op when tracking is off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tracker {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(i) => write!(f, "Tracker({}, experiment {})", i.uri, i.experiment),
            None => f.write_str("Tracker(off)"),
        }
    }
}

impl Tracker {
    /// Tracking off.
    pub fn disabled() -> Tracker {
        Tracker { inner: None }
    }

    /// Start the background sender when tracking is on (nothing is contacted yet).
    pub fn new(s: &TrackingSettings) -> Tracker {
        Self::with_policy(s, RetryPolicy::default())
    }

    pub fn with_policy(s: &TrackingSettings, retry: RetryPolicy) -> Tracker {
        if !s.enabled {
            return Tracker::disabled();
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let (done_tx, done_rx) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let closing = Arc::new(AtomicBool::new(false));
        let client = Client::new(&s.uri, s.auth.clone(), s.request_timeout);
        let mut worker = Worker {
            client,
            experiment: s.experiment.clone(),
            experiment_id: None,
            runs: HashMap::new(),
            counts: counts.clone(),
            closing: closing.clone(),
            retry,
            failing: false,
            warned: false,
            uri: s.uri.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("bwb-mlflow".into())
            .spawn(move || {
                worker.run(rx);
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            tracing::warn!("mlflow: cannot start the tracking thread ({e}); tracking is off");
            return Tracker::disabled();
        }
        Tracker {
            inner: Some(Arc::new(Inner {
                tx,
                counts,
                closing,
                queue_full_warned: AtomicBool::new(false),
                next_run: AtomicU64::new(1),
                done: Mutex::new(Some(done_rx)),
                uri: s.uri.clone(),
                experiment: s.experiment.clone(),
                flush_timeout: s.flush_timeout,
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queue `op`, counting what it carries; a full queue drops it (counted as not logged).
    fn send(&self, op: Op, counted: &[(Kind, usize)]) {
        let Some(inner) = &self.inner else { return };
        for &(k, n) in counted {
            inner.counts.queue(k, n);
        }
        match inner.tx.try_send(op) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if !inner.queue_full_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "mlflow: {} calls are waiting for {}; newer metrics are dropped (counted at the end) so the benchmark does not wait",
                        QUEUE_CAPACITY,
                        inner.uri
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Create a run named `name` in the experiment, with `tags` (plus `bwb.smoke` and the
    /// run name) and `params`.
    pub fn start_run(
        &self,
        name: &str,
        tags: Vec<(String, String)>,
        params: Vec<(String, String)>,
    ) -> Run {
        let id = match &self.inner {
            Some(i) => i.next_run.fetch_add(1, Ordering::Relaxed),
            None => 0,
        };
        let params = dedup(params);
        let tags = dedup(tags);
        let counted = [(Kind::Runs, 1), (Kind::Params, params.len())];
        self.send(
            Op::Start {
                run: id,
                name: name.to_string(),
                tags,
                params,
                start: mlflow::now_ms(),
            },
            &counted,
        );
        Run {
            logger: RunLogger {
                tracker: self.clone(),
                id,
            },
            ended: false,
        }
    }

    /// [`Tracker::finish`] and its one line: printed when everything was logged, a warning
    /// otherwise; nothing for a disabled tracker.
    pub fn finish_and_report(&self) {
        if !self.enabled() {
            return;
        }
        let report = self.finish();
        if report.complete() {
            println!("{}", report.line());
        } else {
            tracing::warn!("{}", report.line());
        }
    }

    /// End of the command: wait (at most the flush timeout; not at all for a server that
    /// keeps failing) for queued calls, and count what was not logged.
    pub fn finish(&self) -> Report {
        let Some(inner) = &self.inner else {
            return Report::default();
        };
        inner.closing.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + inner.flush_timeout;
        // The queue may be full: retry the shutdown until the deadline.
        let mut op = Op::Shutdown;
        loop {
            match inner.tx.try_send(op) {
                Ok(()) => break,
                Err(TrySendError::Full(o)) if Instant::now() < deadline => {
                    op = o;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => break,
            }
        }
        if let Ok(mut done) = inner.done.lock() {
            if let Some(rx) = done.take() {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = rx.recv_timeout(left);
            }
        }
        let c = &inner.counts;
        let mut logged = Vec::new();
        let mut not_logged = Vec::new();
        for (k, name) in KINDS {
            let q = c.queued[k as usize].load(Ordering::Relaxed);
            let l = c.logged[k as usize].load(Ordering::Relaxed);
            logged.push((name, l));
            not_logged.push((name, q.saturating_sub(l)));
        }
        Report {
            uri: inner.uri.clone(),
            experiment: inner.experiment.clone(),
            logged,
            not_logged,
        }
    }
}

/// Logs to one run. Cheap to clone (the training loop holds one as its metrics sink).
#[derive(Clone, Debug)]
pub struct RunLogger {
    tracker: Tracker,
    id: u64,
}

impl RunLogger {
    /// Whether anything is sent (tracking on).
    pub fn tracker_enabled(&self) -> bool {
        self.tracker.enabled()
    }

    /// Metric points at one step (an optimizer step in training; 0 for one-off figures).
    pub fn log_metrics(&self, metrics: &[(&str, f64)], step: i64) {
        if !self.tracker.enabled() || metrics.is_empty() {
            return;
        }
        let ts = mlflow::now_ms();
        let metrics: Vec<Metric> = metrics
            .iter()
            .map(|(k, v)| Metric {
                key: (*k).to_string(),
                value: *v,
                timestamp: ts,
                step,
            })
            .collect();
        self.log(metrics, Vec::new(), Vec::new());
    }

    /// Params (written once: MLflow refuses a second value for a key).
    pub fn log_params(&self, params: Vec<(String, String)>) {
        self.log(Vec::new(), dedup(params), Vec::new());
    }

    pub fn set_tags(&self, tags: Vec<(String, String)>) {
        self.log(Vec::new(), Vec::new(), dedup(tags));
    }

    fn log(
        &self,
        metrics: Vec<Metric>,
        params: Vec<(String, String)>,
        tags: Vec<(String, String)>,
    ) {
        if metrics.is_empty() && params.is_empty() && tags.is_empty() {
            return;
        }
        let counted = [
            (Kind::Metrics, metrics.len()),
            (Kind::Params, params.len()),
            (Kind::Tags, tags.len()),
        ];
        self.tracker.send(
            Op::Log {
                run: self.id,
                metrics,
                params,
                tags,
            },
            &counted,
        );
    }

    /// Upload `local` as `<dir>/<its file name>` (`dir` empty: at the artifact root).
    pub fn log_artifact(&self, local: &Path, dir: &str) {
        if !self.tracker.enabled() {
            return;
        }
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.queue_artifact(local.to_path_buf(), join(dir, &name));
    }

    /// Upload every file under `local` as `<dir>/<relative path>`.
    pub fn log_artifact_dir(&self, local: &Path, dir: &str) {
        if !self.tracker.enabled() {
            return;
        }
        let mut files = Vec::new();
        walk(local, "", &mut files);
        files.sort();
        for (rel, path) in files {
            self.queue_artifact(path, join(dir, &rel));
        }
    }

    fn queue_artifact(&self, local: PathBuf, rel: String) {
        self.tracker.send(
            Op::Artifact {
                run: self.id,
                local,
                rel,
            },
            &[(Kind::Artifacts, 1)],
        );
    }
}

impl MetricsSink for RunLogger {
    /// Training's stream: each optimizer step's loss, lr, grad norm and tokens/s, each
    /// epoch's losses and validation metric (`val_<metric>`), at the optimizer step.
    fn record(&self, line: &MetricsLine) {
        match line {
            MetricsLine::Step(s) => self.log_metrics(
                &[
                    ("loss", s.loss),
                    ("lr", s.lr),
                    ("grad_norm", s.grad_norm),
                    ("tokens_per_s", s.tokens_per_s),
                ],
                s.step as i64,
            ),
            MetricsLine::Epoch(e) => {
                let val_metric = format!("val_{}", e.metric);
                self.log_metrics(
                    &[
                        ("epoch", e.epoch as f64),
                        ("train_loss", e.train_loss),
                        ("val_loss", e.val_loss),
                        (val_metric.as_str(), e.val_metric),
                    ],
                    e.step as i64,
                )
            }
        }
    }
}

/// A run being logged. Ended by [`Run::end`]; dropped without it (an error unwound the
/// command) it ends FAILED.
#[derive(Debug)]
pub struct Run {
    logger: RunLogger,
    ended: bool,
}

impl std::ops::Deref for Run {
    type Target = RunLogger;
    fn deref(&self) -> &RunLogger {
        &self.logger
    }
}

impl Run {
    /// A clone of the logger (the training loop's metrics sink).
    pub fn logger(&self) -> RunLogger {
        self.logger.clone()
    }

    pub fn end(mut self, status: RunStatus) {
        self.ended = true;
        self.send_end(status);
    }

    fn send_end(&self, status: RunStatus) {
        self.logger.tracker.send(
            Op::End {
                run: self.logger.id,
                status,
                end: mlflow::now_ms(),
            },
            &[],
        );
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.ended {
            self.send_end(RunStatus::Failed);
        }
    }
}

/// The common tags of a bwb run: `bwb.command`, `bwb.model`, `bwb.task`, `bwb.condition`
/// (empty values left out) and `bwb.smoke`.
pub fn bwb_tags(
    command: &str,
    model: &str,
    task: &str,
    condition: &str,
    smoke: bool,
) -> Vec<(String, String)> {
    let mut tags = vec![("bwb.command".to_string(), command.to_string())];
    for (k, v) in [
        ("bwb.model", model),
        ("bwb.task", task),
        ("bwb.condition", condition),
    ] {
        if !v.is_empty() {
            tags.push((k.to_string(), v.to_string()));
        }
    }
    tags.push(("bwb.smoke".into(), smoke.to_string()));
    tags.push(("bwb.version".into(), env!("CARGO_PKG_VERSION").into()));
    tags
}

/// A JSON value flattened into `a.b.c` params (arrays as their JSON text).
pub fn flatten_params(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_params(&key, v, out);
            }
        }
        serde_json::Value::Null => out.push((prefix.to_string(), "None".into())),
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// One run as a search returns it (`bwb experiments`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub run_id: String,
    pub name: String,
    /// RUNNING, FINISHED, FAILED or KILLED.
    pub status: String,
    /// Milliseconds since the Unix epoch.
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub tags: std::collections::BTreeMap<String, String>,
    pub params: std::collections::BTreeMap<String, String>,
    /// Each metric's latest value.
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// The runs of the configured experiment matching `filter` (MLflow's search syntax, e.g.
/// ``tags.`bwb.task` = 'fpb' and metrics.weighted_f1 > 0.8``; empty: all), newest first, at
/// most `max`. Synchronous and not retried: for commands about tracking itself, whose errors
/// are theirs to report. An experiment that does not exist yet has no runs.
pub fn search_runs(
    settings: &TrackingSettings,
    filter: &str,
    max: usize,
) -> std::result::Result<Vec<RunRecord>, CallError> {
    let client = Client::new(
        &settings.uri,
        settings.auth.clone(),
        settings.request_timeout,
    )?;
    let Some(exp) = client.find_experiment(&settings.experiment)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    while out.len() < max {
        let page = client.search_runs(
            std::slice::from_ref(&exp),
            filter,
            (max - out.len()).min(1000),
            token.as_deref(),
        )?;
        let page: mlflow::SearchPage = serde_json::from_value(page).map_err(|e| CallError {
            transient: false,
            code: None,
            message: format!("runs/search: unexpected answer ({e})"),
        })?;
        out.extend(page.runs.iter().map(run_record));
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(t) if !page.runs.is_empty() => token = Some(t),
            _ => break,
        }
    }
    out.truncate(max);
    Ok(out)
}

fn run_record(v: &serde_json::Value) -> RunRecord {
    let info = &v["info"];
    let s = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_string();
    let num = |x: &serde_json::Value| {
        x.as_i64()
            .or_else(|| x.as_str().and_then(|t| t.parse().ok()))
    };
    let kv = |x: &serde_json::Value| {
        x.as_array()
            .map(|a| a.iter().map(|e| (s(&e["key"]), s(&e["value"]))).collect())
            .unwrap_or_default()
    };
    let metrics = v["data"]["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let value = match &m["value"] {
                        serde_json::Value::String(t) => match t.as_str() {
                            "Infinity" => f64::INFINITY,
                            "-Infinity" => f64::NEG_INFINITY,
                            _ => f64::NAN,
                        },
                        x => x.as_f64().unwrap_or(f64::NAN),
                    };
                    (s(&m["key"]), value)
                })
                .collect()
        })
        .unwrap_or_default();
    RunRecord {
        run_id: s(&info["run_id"]),
        name: s(&info["run_name"]),
        status: s(&info["status"]),
        start_time: num(&info["start_time"]).unwrap_or(0),
        end_time: num(&info["end_time"]),
        tags: kv(&v["data"]["tags"]),
        params: kv(&v["data"]["params"]),
        metrics,
    }
}

/// An enum's name as it appears in bwb's JSON files (`test_resamples`, `api`).
pub fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// First value of each key wins (MLflow refuses two values of a param in one call).
fn dedup(v: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    v.into_iter()
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

fn join(dir: &str, rel: &str) -> String {
    let dir = dir.trim_matches('/');
    if dir.is_empty() {
        rel.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let rel = join(prefix, &name);
        if path.is_dir() {
            walk(&path, &rel, out);
        } else if path.is_file() {
            out.push((rel, path));
        }
    }
}

/// The background sender: owns the client and the local run number → server run map.
struct Worker {
    client: CallResult<Client>,
    experiment: String,
    experiment_id: Option<String>,
    /// None: the run could not be created; its later calls are counted as not logged.
    runs: HashMap<u64, Option<RunInfo>>,
    counts: Arc<Counts>,
    closing: Arc<AtomicBool>,
    retry: RetryPolicy,
    /// The last call failed every attempt: one attempt per call until one succeeds.
    failing: bool,
    warned: bool,
    uri: String,
}

/// Metric points sent together at most (several log-batch calls).
const COALESCE_METRICS: usize = 5000;

impl Worker {
    fn run(&mut self, rx: Receiver<Op>) {
        let mut pending: Option<Op> = None;
        loop {
            let op = match pending.take() {
                Some(op) => op,
                None => match rx.recv() {
                    Ok(op) => op,
                    Err(_) => return,
                },
            };
            match op {
                Op::Shutdown => return,
                Op::Start {
                    run,
                    name,
                    tags,
                    params,
                    start,
                } => self.start(run, &name, tags, params, start),
                Op::Log {
                    run,
                    mut metrics,
                    mut params,
                    mut tags,
                } => {
                    // Coalesce the queued calls of the same run into few requests.
                    while metrics.len() < COALESCE_METRICS {
                        match rx.try_recv() {
                            Ok(Op::Log {
                                run: r,
                                metrics: m,
                                params: p,
                                tags: t,
                            }) if r == run => {
                                metrics.extend(m);
                                params.extend(p);
                                tags.extend(t);
                            }
                            Ok(other) => {
                                pending = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.log(run, metrics, dedup(params), dedup(tags));
                }
                Op::Artifact { run, local, rel } => {
                    let Some(info) = self.info(run) else { continue };
                    let ok = self.call(&format!("artifact {rel}"), |c| {
                        c.upload_artifact(&info, &rel, &local)
                    });
                    if ok.is_some() {
                        self.counts.log(Kind::Artifacts, 1);
                    }
                }
                Op::End { run, status, end } => {
                    if let Some(info) = self.info(run) {
                        self.call("runs/update", |c| c.end_run(&info.run_id, status, end));
                    }
                }
            }
        }
    }

    fn info(&self, run: u64) -> Option<RunInfo> {
        self.runs.get(&run).cloned().flatten()
    }

    fn start(
        &mut self,
        run: u64,
        name: &str,
        mut tags: Vec<(String, String)>,
        params: Vec<(String, String)>,
        start: i64,
    ) {
        if self.experiment_id.is_none() {
            let exp = self.experiment.clone();
            self.experiment_id = self.call("experiments", |c| c.experiment_id(&exp));
        }
        let Some(exp) = self.experiment_id.clone() else {
            self.runs.insert(run, None);
            return;
        };
        tags.push(("mlflow.runName".into(), name.to_string()));
        tags.push(("mlflow.source.name".into(), "bwb".into()));
        tags.push(("mlflow.source.type".into(), "LOCAL".into()));
        let info = self.call("runs/create", |c| c.create_run(&exp, name, start, &tags));
        if info.is_some() {
            self.counts.log(Kind::Runs, 1);
        }
        self.runs.insert(run, info);
        self.log(run, Vec::new(), params, Vec::new());
    }

    fn log(
        &mut self,
        run: u64,
        metrics: Vec<Metric>,
        params: Vec<(String, String)>,
        tags: Vec<(String, String)>,
    ) {
        let Some(info) = self.info(run) else { return };
        for b in mlflow::batches(metrics, params, tags) {
            let sent = self.call("runs/log-batch", |c| {
                c.log_batch(&info.run_id, &b.metrics, &b.params, &b.tags)
            });
            if sent.is_some() {
                self.counts.log(Kind::Metrics, b.metrics.len());
                self.counts.log(Kind::Params, b.params.len());
                self.counts.log(Kind::Tags, b.tags.len());
            }
        }
    }

    /// One call under the retry policy; None (after one warning per command) when it failed.
    fn call<T>(&mut self, what: &str, f: impl Fn(&Client) -> CallResult<T>) -> Option<T> {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => {
                let e = e.clone();
                self.fail(what, &e);
                return None;
            }
        };
        // Closing with a failing server: do not wait for it.
        if self.failing && self.closing.load(Ordering::Relaxed) {
            return None;
        }
        let attempts = if self.failing {
            1
        } else {
            self.retry.attempts.max(1)
        };
        let mut delay = self.retry.backoff;
        let mut last = None;
        for attempt in 1..=attempts {
            match f(&client) {
                Ok(v) => {
                    self.failing = false;
                    return Some(v);
                }
                Err(e) => {
                    // No retries once the command is over: the flush is bounded.
                    let again =
                        e.transient && attempt < attempts && !self.closing.load(Ordering::Relaxed);
                    last = Some(e);
                    if !again {
                        break;
                    }
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
        if let Some(e) = last {
            if e.transient {
                self.failing = true;
            }
            self.fail(what, &e);
        }
        None
    }

    fn fail(&mut self, what: &str, e: &CallError) {
        if !self.warned {
            self.warned = true;
            tracing::warn!(
                "mlflow: tracking server {} failed ({}); the benchmark carries on and what is not logged is counted at the end",
                self.uri,
                if e.message.starts_with(what) {
                    e.message.clone()
                } else {
                    format!("{what}: {}", e.message)
                }
            );
        } else {
            tracing::debug!("mlflow: {what}: {}", e.message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_costs_nothing_and_everything_is_counted() {
        // Port 9 on localhost: nothing listens; connections are refused at once.
        let s = TrackingSettings {
            enabled: true,
            uri: "http://127.0.0.1:9".into(),
            flush_timeout: Duration::from_secs(5),
            ..TrackingSettings::default()
        };
        let t0 = Instant::now();
        let tracker = Tracker::new(&s);
        let run = tracker.start_run("r", vec![], vec![("a".into(), "1".into())]);
        for step in 1..=50 {
            run.log_metrics(&[("loss", 1.0), ("lr", 0.1)], step);
        }
        run.log_artifact(Path::new("Cargo.toml"), "");
        run.end(RunStatus::Finished);
        let report = tracker.finish();
        assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
        assert_eq!(report.not_logged("runs"), 1);
        assert_eq!(report.not_logged("metrics"), 100);
        assert_eq!(report.not_logged("params"), 1);
        assert_eq!(report.not_logged("artifacts"), 1);
        assert!(!report.complete());
        let line = report.line();
        assert!(
            line.starts_with("mlflow: not logged: 1 runs, 100 metrics, 1 params, 1 artifacts"),
            "{line}"
        );
    }

    #[test]
    fn off_is_a_no_op() {
        let tracker = Tracker::new(&TrackingSettings::default());
        assert!(!tracker.enabled());
        let run = tracker.start_run("r", vec![], vec![]);
        run.log_metrics(&[("x", 1.0)], 0);
        drop(run);
        assert_eq!(tracker.finish(), Report::default());
    }

    #[test]
    fn params_flatten_with_dotted_keys() {
        let v = serde_json::json!({"lr": 1e-4, "lora": {"r": 4, "targets": ["q", "v"]}, "x": null});
        let mut out = Vec::new();
        flatten_params("", &v, &mut out);
        out.sort();
        assert_eq!(
            out,
            vec![
                ("lora.r".to_string(), "4".to_string()),
                ("lora.targets".into(), r#"["q","v"]"#.into()),
                ("lr".into(), "0.0001".into()),
                ("x".into(), "None".into()),
            ]
        );
    }
}
