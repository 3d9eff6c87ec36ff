//! `bwb serve`: an OpenAI-compatible HTTP server (axum on tokio) in front of one engine
//! thread (`engine.rs`) that owns the base model; LoRA adapters attach to it beside each
//! other (`adapters.rs`), so requests for the base and every adapter share one batch.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /health`, `GET /metrics`, `POST /tokenize`, `POST /detokenize`, and with
//! `--allow-runtime-lora` `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter`. The
//! handlers parse and validate (every bad field is a 400 in OpenAI's envelope, see
//! `api.rs`), tokenise, submit a job to the engine queue and answer from its events (streamed
//! as they come, or collected) without blocking a tokio worker; a client that goes away
//! cancels its job.

pub mod adapters;
pub mod api;
pub mod compress;
pub mod engine;
pub mod metrics;
mod respond;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::model::generate::GenParams;
use crate::model::linear::ServedLora;
use crate::model::load::LoadedModel;
use crate::prompt::chat_template::Message;
use api::{ApiError, ChatMessage, Sampling};
use engine::{EngineHandle, Submit, SubmitError};
use metrics::Metrics;

/// `max_tokens` when a request gives none (capped at what the context leaves).
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// Most alternatives per token a request may ask for (vLLM's default `--max-logprobs`).
pub const MAX_LOGPROBS: i64 = 20;

/// One name the server answers to: the base model or an adapter (whose `parent` is the base).
#[derive(Debug, Clone)]
struct ServedModel {
    name: String,
    parent: Option<String>,
    /// `root` in /v1/models: the base's origin, an adapter's directory.
    root: String,
    /// The engine's id for the adapter; None for the base.
    adapter: Option<usize>,
    /// Its index in the metrics.
    metrics: usize,
}

/// What `bwb serve` serves: the base model under a name, the adapters given at start, and
/// how to load more.
pub struct Setup {
    pub base: Arc<LoadedModel>,
    pub base_name: String,
    /// (name, directory, weights) of each adapter served from the start.
    pub adapters: Vec<(String, String, ServedLora)>,
    pub loader: adapters::AdapterLoader,
}

/// Server settings, resolved by `commands/serve.rs`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    /// Rows (prompts × n) in one engine batch, and the most one request may ask for.
    pub max_num_seqs: usize,
    /// Requests that may wait beyond the running ones before the server answers 429.
    pub max_queue: usize,
    /// Prompt plus completion tokens a request may use.
    pub max_model_len: usize,
    /// Tokens one engine step may run (decode rows plus prefill chunks); above
    /// `max_num_seqs`.
    pub max_batch_tokens: usize,
    /// Distinct LoRA adapters in one engine batch (None: no cap).
    pub max_loras: Option<usize>,
    /// Serve `/v1/load_lora_adapter` and `/v1/unload_lora_adapter`.
    pub allow_runtime_lora: bool,
    /// `--compressor`: also serve `POST /compress/raw/` (`compress.rs`).
    pub compressor: Option<compress::Service>,
}

struct AppState {
    base: Arc<LoadedModel>,
    /// The base first, then the adapters, in load order.
    served: RwLock<Vec<ServedModel>>,
    loader: adapters::AdapterLoader,
    next_adapter: AtomicUsize,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    opts: ServeOptions,
    created: u64,
    next_id: AtomicU64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Start the engine thread, bind, print `bwb serve: listening on http://ADDR` on stdout
/// (the one line scripts wait for) and serve until the process ends.
pub fn run(setup: Setup, opts: ServeOptions) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(vec![setup.base_name.clone()]));
    let limits = engine::Limits {
        max_num_seqs: opts.max_num_seqs,
        max_batch_tokens: opts.max_batch_tokens,
        max_queue: opts.max_queue,
        max_loras: opts.max_loras,
    };
    let engine = engine::start(setup.base.clone(), limits, metrics.clone())?;
    let base = ServedModel {
        name: setup.base_name.clone(),
        parent: None,
        root: setup.base.origin.clone(),
        adapter: None,
        metrics: 0,
    };
    let state = Arc::new(AppState {
        base: setup.base,
        served: RwLock::new(vec![base]),
        loader: setup.loader,
        next_adapter: AtomicUsize::new(0),
        engine,
        metrics,
        opts,
        created: now(),
        next_id: AtomicU64::new(1),
    });
    for (name, root, lora) in setup.adapters {
        state
            .add_adapter(&name, &root, lora)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    let what = state.served_names().join(", ");
    let (host, port) = (state.opts.host.clone(), state.opts.port);
    listen(router(state), &host, port, &what)
}

/// Bind, print `bwb serve: listening on http://ADDR` on stdout (the one line scripts wait
/// for) and serve `router` until the process ends.
fn listen(router: Router, host: &str, port: u16, what: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host, port))
            .await
            .map_err(|e| anyhow::anyhow!("binding {host}:{port}: {e}"))?;
        let local = listener.local_addr()?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "bwb serve: listening on http://{local}")?;
            out.flush()?;
        }
        tracing::info!("serving {what} on http://{local}");
        axum::serve(listener, router).await?;
        Ok(())
    })
}

fn router(state: Arc<AppState>) -> Router {
    let r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/v1/load_lora_adapter", post(adapters::load_lora_adapter))
        .route(
            "/v1/unload_lora_adapter",
            post(adapters::unload_lora_adapter),
        )
        .fallback(not_found)
        .with_state(state.clone());
    match &state.opts.compressor {
        Some(c) => r.merge(compress::routes(c.clone(), state.opts.api_key.clone())),
        None => r,
    }
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such route; see /v1/models, /v1/chat/completions, /v1/completions".into(),
        kind: "invalid_request_error",
        param: None,
        code: None,
    }
}

impl AppState {
    /// With `--api-key`, every route but /health and /metrics (as vLLM) needs `Authorization: Bearer <key>`.
    fn check_auth(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(key) = &self.opts.api_key else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given == Some(key.as_str()) {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }

    /// The served models (a poisoned lock only means a panic elsewhere; the list is whole).
    fn served(&self) -> std::sync::RwLockReadGuard<'_, Vec<ServedModel>> {
        self.served.read().unwrap_or_else(|e| e.into_inner())
    }

    fn served_names(&self) -> Vec<String> {
        self.served().iter().map(|m| m.name.clone()).collect()
    }

    /// The served model a request names (the base when it names none).
    fn model(&self, name: Option<&str>) -> Result<ServedModel, ApiError> {
        let served = self.served();
        let found = match name {
            None => served.first(),
            Some(n) => served.iter().find(|m| m.name == n),
        };
        found
            .cloned()
            .ok_or_else(|| ApiError::model_not_found(name.unwrap_or(""), &self.served_names()))
    }

    fn id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", self.created)
    }
}

async fn list_models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = st.check_auth(&headers) {
        return e.into_response();
    }
    let data: Vec<Value> = st
        .served()
        .iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": st.created,
                "owned_by": "bwb",
                "root": m.root,
                "parent": m.parent,
                "max_model_len": st.opts.max_model_len,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// A message's text: a string, text parts joined, or empty for null.
fn message_text(m: &ChatMessage, i: usize) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match &m.content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => return Err(ApiError::bad_request(
                        "only text content parts ({\"type\": \"text\", \"text\": …}) are supported",
                        Some(&param),
                    )),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad_request(
            "content must be a string or a list of text parts",
            Some(&param),
        )),
    }
}

/// Token ids of a conversation through the model's chat template (generation prompt added
/// when asked); the model's own template kwargs (Qwen3: enable_thinking=false) are
/// overridden by the request's `chat_template_kwargs`.
fn chat_ids(
    m: &LoadedModel,
    name: &str,
    messages: &[ChatMessage],
    kwargs: Option<&BTreeMap<String, Value>>,
    add_generation_prompt: bool,
) -> Result<Vec<u32>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_request(
            "messages must hold at least one message",
            Some("messages"),
        ));
    }
    let Some(template) = &m.chat_template else {
        return Err(ApiError::bad_request(
            format!("model `{name}` has no chat template; use /v1/completions with a prompt"),
            Some("messages"),
        ));
    };
    let msgs = messages
        .iter()
        .enumerate()
        .map(|(i, msg)| Ok(Message::new(msg.role.clone(), message_text(msg, i)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut kw = m.chat_kwargs.clone();
    if let Some(k) = kwargs {
        kw.extend(k.iter().map(|(a, b)| (a.clone(), b.clone())));
    }
    let text = template
        .render(&msgs, add_generation_prompt, &kw)
        .map_err(|e| ApiError::bad_request(format!("chat template: {e}"), Some("messages")))?;
    encode(m, &text, false)
}

fn encode(m: &LoadedModel, text: &str, special: bool) -> Result<Vec<u32>, ApiError> {
    m.tokenizer
        .encode(text, special)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| ApiError::bad_request(format!("tokenising: {e}"), None))
}

/// What a generation request asks for, validated against the engine's limits.
struct Plan {
    params: GenParams,
    n: usize,
    stream: bool,
    include_usage: bool,
}

fn plan(
    s: &Sampling,
    prompts: &[Vec<u32>],
    opts: &ServeOptions,
    prompt_param: &str,
) -> Result<Plan, ApiError> {
    let bad = |msg: String, p: &str| ApiError::bad_request(msg, Some(p));
    let (max_tokens, mt_param) = match (s.max_completion_tokens, s.max_tokens) {
        (Some(v), _) => (Some(v), "max_completion_tokens"),
        (None, v) => (v, "max_tokens"),
    };
    if let Some(v) = max_tokens.filter(|&v| v < 0) {
        return Err(bad(
            format!("{mt_param} must be at least 0, got {v}"),
            mt_param,
        ));
    }
    let n = s.n.unwrap_or(1);
    if n < 1 {
        return Err(bad(format!("n must be at least 1, got {n}"), "n"));
    }
    let rows = (n as u64).saturating_mul(prompts.len() as u64);
    if rows > opts.max_num_seqs as u64 {
        return Err(bad(
            format!(
                "n × prompts = {rows} sequences exceeds this server's --max-num-seqs {}",
                opts.max_num_seqs
            ),
            "n",
        ));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && temperature >= 0.0) {
        return Err(bad(
            format!("temperature must be a number ≥ 0, got {temperature}"),
            "temperature",
        ));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(
            format!("top_p must be in (0, 1], got {top_p}"),
            "top_p",
        ));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let limit = opts.max_model_len;
    let wanted = max_tokens.map(|v| v as usize);
    let completion = wanted.unwrap_or(DEFAULT_MAX_TOKENS.min(limit.saturating_sub(longest)));
    let total = longest.saturating_add(completion);
    if longest >= limit || total > limit {
        return Err(bad(
            format!(
                "This model's maximum context length is {limit} tokens. However, you requested \
                 {} tokens ({longest} in the {prompt_param}, {completion} in the completion). \
                 Please reduce the length of the {prompt_param} or completion.",
                total
            ),
            prompt_param,
        ));
    }
    let seed = match s.seed {
        Some(v) => v as u64,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    };
    Ok(Plan {
        params: GenParams {
            max_new_tokens: completion,
            temperature,
            top_p,
            top_k: s.top_k.filter(|&k| k > 0).map(|k| k as usize).unwrap_or(0),
            seed,
            stop: s.stop.clone().map(api::Stop::into_vec).unwrap_or_default(),
            logprobs: None,
            prompt_logprobs: None,
            ignore_eos: s.ignore_eos.unwrap_or(false),
        },
        n: n as usize,
        stream: s.stream.unwrap_or(false),
        include_usage: s
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

/// `(logprobs, prompt_logprobs)` alternatives per token from a request's fields. Chat takes
/// `logprobs: true` and `top_logprobs: k` (which needs `logprobs: true`); completions take
/// `logprobs: k`, and with `echo` score the prompt too. `k` is at most [`MAX_LOGPROBS`].
fn logprobs_of(
    s: &Sampling,
    chat: bool,
    echo: bool,
) -> Result<(Option<usize>, Option<usize>), ApiError> {
    use api::LogprobsField::{Count, Flag};
    let bad = |m: String, p: &str| ApiError::bad_request(m, Some(p));
    let count = |v: i64, p: &str| match usize::try_from(v) {
        Ok(k) if v <= MAX_LOGPROBS => Ok(k),
        _ => Err(bad(
            format!("{p} must be between 0 and {MAX_LOGPROBS}, got {v}"),
            p,
        )),
    };
    if !chat {
        let k = match s.logprobs {
            None => None,
            Some(Count(v)) => Some(count(v, "logprobs")?),
            Some(Flag(b)) => {
                return Err(bad(
                    format!("logprobs must be an integer on /v1/completions (alternatives per token, 0 to {MAX_LOGPROBS}), got {b}"),
                    "logprobs",
                ))
            }
        };
        return Ok((k, k.filter(|_| echo)));
    }
    let on = match s.logprobs {
        None => false,
        Some(Flag(b)) => b,
        Some(Count(v)) => {
            return Err(bad(
                format!("logprobs must be true or false on /v1/chat/completions, got {v}; set top_logprobs for alternatives"),
                "logprobs",
            ))
        }
    };
    let top = match s.top_logprobs {
        None => 0,
        Some(_) if !on => {
            return Err(bad(
                "top_logprobs needs logprobs: true".into(),
                "top_logprobs",
            ))
        }
        Some(v) => count(v, "top_logprobs")?,
    };
    Ok((on.then_some(top), None))
}

/// A request's answer, filled in as its rows finish.
fn answer(
    st: &AppState,
    served: &ServedModel,
    chat: bool,
    prompts: &[Vec<u32>],
    plan: &Plan,
    echo: Vec<(String, Vec<u32>)>,
) -> respond::Answer {
    let m = st.base.clone();
    respond::Answer {
        id: st.id(if chat { "chatcmpl" } else { "cmpl" }),
        created: now(),
        model: served.name.clone(),
        chat,
        prompt_tokens: prompts.iter().map(Vec::len).sum(),
        outs: Vec::new(),
        logprobs: plan.params.logprobs,
        echo,
        n: plan.n,
        name_token: Arc::new(move |t| m.tokenizer.decode(&[t], false).unwrap_or_default()),
    }
}

/// Submit `prompts` × `n` rows and answer from the engine's events (JSON or SSE).
async fn run_job(
    st: &AppState,
    model: &ServedModel,
    prompts: &[Vec<u32>],
    plan: &Plan,
    answer: respond::Answer,
) -> Result<Response, ApiError> {
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), plan.n))
        .collect();
    let n_rows = rows.len();
    // Under the read lock: an unload (write lock) cannot slip between this check and the
    // job reaching the engine queue ahead of the adapter's retirement.
    let submitted = {
        let served = st.served();
        if !served.iter().any(|m| m.name == model.name) {
            let names: Vec<String> = served.iter().map(|m| m.name.clone()).collect();
            return Err(ApiError::model_not_found(&model.name, &names));
        }
        st.engine.submit(Submit {
            model: model.metrics,
            adapter: model.adapter,
            rows,
            params: plan.params.clone(),
            stream: plan.stream,
            prompt_tokens: answer.prompt_tokens,
        })
    };
    let rx = submitted.map_err(|e| match e {
        SubmitError::QueueFull => ApiError::queue_full(),
        SubmitError::EngineGone => ApiError::internal("the engine thread has stopped"),
    })?;
    respond::respond(answer, rx, n_rows, plan).await
}

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match chat_inner(&st, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn chat_inner(st: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    st.check_auth(headers)?;
    let req: api::ChatRequest = api::parse(body)?;
    let sampling: Sampling = api::parse(body)?;
    let served = st.model(req.model.as_deref())?;
    let ids = chat_ids(
        &st.base,
        &served.name,
        &req.messages,
        req.chat_template_kwargs.as_ref(),
        true,
    )?;
    let prompts = vec![ids];
    let mut plan = plan(&sampling, &prompts, &st.opts, "messages")?;
    (plan.params.logprobs, _) = logprobs_of(&sampling, true, false)?;
    let answer = answer(st, &served, true, &prompts, &plan, Vec::new());
    run_job(st, &served, &prompts, &plan, answer).await
}

async fn completions(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    match completions_inner(&st, &headers, &body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn completions_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    st.check_auth(headers)?;
    let req: api::CompletionRequest = api::parse(body)?;
    let sampling: Sampling = api::parse(body)?;
    let served = st.model(req.model.as_deref())?;
    let (prompts, texts): (Vec<Vec<u32>>, Vec<String>) = completion_prompts(&st.base, req.prompt)?
        .into_iter()
        .unzip();
    let echo = req.echo.unwrap_or(false);
    let mut plan = plan(&sampling, &prompts, &st.opts, "prompt")?;
    (plan.params.logprobs, plan.params.prompt_logprobs) = logprobs_of(&sampling, false, echo)?;
    let echo = match echo {
        true => texts.into_iter().zip(prompts.iter().cloned()).collect(),
        false => Vec::new(),
    };
    let answer = answer(st, &served, false, &prompts, &plan, echo);
    run_job(st, &served, &prompts, &plan, answer).await
}

/// A completions request's prompts as token ids, each with its text: a string as given
/// (tokenised with the tokenizer's special tokens, as `/tokenize` does), token ids checked
/// against the vocabulary and decoded (special tokens kept).
fn completion_prompts(
    m: &LoadedModel,
    prompt: api::Prompt,
) -> Result<Vec<(Vec<u32>, String)>, ApiError> {
    let out: Vec<(Vec<u32>, String)> = match prompt {
        api::Prompt::One(s) => vec![(encode(m, &s, true)?, s)],
        api::Prompt::Many(v) => v
            .into_iter()
            .map(|s| Ok((encode(m, &s, true)?, s)))
            .collect::<Result<_, ApiError>>()?,
        api::Prompt::Ids(ids) => vec![ids_prompt(m, ids)?],
        api::Prompt::ManyIds(v) => v
            .into_iter()
            .map(|ids| ids_prompt(m, ids))
            .collect::<Result<_, ApiError>>()?,
    };
    if out.is_empty() {
        return Err(ApiError::bad_request(
            "prompt must not be an empty list",
            Some("prompt"),
        ));
    }
    if let Some(i) = out.iter().position(|(ids, _)| ids.is_empty()) {
        return Err(ApiError::bad_request(
            format!("prompt {i} is empty (no tokens); give it some text or token ids"),
            Some("prompt"),
        ));
    }
    Ok(out)
}

fn ids_prompt(m: &LoadedModel, ids: Vec<u32>) -> Result<(Vec<u32>, String), ApiError> {
    check_vocab(m, &ids, "prompt")?;
    let text = m
        .tokenizer
        .decode(&ids, false)
        .map_err(|e| ApiError::bad_request(format!("decoding the prompt: {e}"), Some("prompt")))?;
    Ok((ids, text))
}

/// Every id must be in the model's vocabulary.
fn check_vocab(m: &LoadedModel, ids: &[u32], param: &str) -> Result<(), ApiError> {
    let vocab = m.vocab_size();
    match ids.iter().find(|&&t| t as usize >= vocab) {
        Some(t) => Err(ApiError::bad_request(
            format!("token id {t} is outside the vocabulary (size {vocab})"),
            Some(param),
        )),
        None => Ok(()),
    }
}

async fn tokenize(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = || -> Result<Response, ApiError> {
        st.check_auth(&headers)?;
        let req: api::TokenizeRequest = api::parse(&body)?;
        let served = st.model(req.model.as_deref())?;
        let tokens = match (&req.messages, &req.prompt) {
            (Some(msgs), _) => chat_ids(
                &st.base,
                &served.name,
                msgs,
                req.chat_template_kwargs.as_ref(),
                req.add_generation_prompt.unwrap_or(true),
            )?,
            (None, Some(p)) => encode(&st.base, p, req.add_special_tokens.unwrap_or(true))?,
            (None, None) => {
                return Err(ApiError::bad_request(
                    "give `prompt` (a string) or `messages`",
                    Some("prompt"),
                ))
            }
        };
        Ok(Json(json!({
            "count": tokens.len(),
            "max_model_len": st.opts.max_model_len,
            "tokens": tokens,
        }))
        .into_response())
    };
    run().unwrap_or_else(IntoResponse::into_response)
}

async fn detokenize(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let run = || -> Result<Response, ApiError> {
        st.check_auth(&headers)?;
        let req: api::DetokenizeRequest = api::parse(&body)?;
        st.model(req.model.as_deref())?;
        let m = &st.base;
        check_vocab(m, &req.tokens, "tokens")?;
        let text = m
            .decode(&req.tokens)
            .map_err(|e| ApiError::bad_request(e.to_string(), Some("tokens")))?;
        Ok(Json(json!({"prompt": text})).into_response())
    };
    run().unwrap_or_else(IntoResponse::into_response)
}
