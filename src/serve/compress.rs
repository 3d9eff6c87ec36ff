//! `POST /compress/raw/` (`bwb serve --compressor METHOD`): ScaleDown's compression API on
//! bwb's own compressors, so a ScaleDown client (bwb's included: `SCALEDOWN_BASE_URL`) can
//! point at bwb.
//!
//! Request: `{"context", "prompt", "model", "scaledown": {"rate": "auto" | 0<r<1}}` (only
//! `context` is required; `model` names the LLM the client will call and is echoed, not
//! used). Answer: `{"successful": true, "results": {"compressed_prompt",
//! "original_prompt_tokens", "compressed_prompt_tokens", "compression_ratio", "latency_ms"}}`
//! with ScaleDown's `compression_ratio` convention, original / compressed. With `--api-key`
//! the key goes in `x-api-key` (as ScaleDown) or `Authorization: Bearer`. A bad body is a
//! 400 and a wrong key a 401, both `{"successful": false, "error": "..."}`. Compression runs
//! on tokio's blocking pool, never on a worker.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::compress::{Compressor, Rate};

/// The compressor a server exposes.
#[derive(Clone)]
pub struct Service {
    pub compressor: Arc<dyn Compressor>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("compressor", &self.compressor.name())
            .finish()
    }
}

struct Shared {
    service: Service,
    api_key: Option<String>,
}

/// The compression routes, to merge into a server's router.
pub fn routes(service: Service, api_key: Option<String>) -> Router {
    let st = Arc::new(Shared { service, api_key });
    Router::new()
        .route("/compress/raw/", post(compress_raw))
        .route("/compress/raw", post(compress_raw))
        .with_state(st)
}

/// A compression-only server (no `--model`): /health and the compression routes.
pub fn run_only(
    service: Service,
    host: &str,
    port: u16,
    api_key: Option<String>,
) -> anyhow::Result<()> {
    let what = format!("the {} compressor", service.compressor.name());
    let router = Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .merge(routes(service, api_key))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see POST /compress/raw/",
            )
        });
    super::listen(router, host, port, &what)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"successful": false, "error": message}))).into_response()
}

fn authorised(key: &Option<String>, headers: &HeaderMap) -> bool {
    let Some(key) = key else { return true };
    let get = |h| {
        headers
            .get(h)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    get("x-api-key") == Some(key.as_str())
        || get(header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "))
            == Some(key.as_str())
}

/// The body's context, prompt and rate, or what is wrong with it.
fn parse(body: &[u8]) -> Result<(String, String, Rate), String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("the body must be a JSON object with `context`".into());
    };
    let text = |k: &str, required: bool| match obj.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None => Err(format!("field `{k}` is required (a string)")),
        Some(other) => Err(format!("field `{k}` must be a string, not {other}")),
    };
    let context = text("context", true)?;
    let prompt = text("prompt", false)?;
    text("model", false)?;
    let rate = match obj.get("scaledown") {
        None | Some(Value::Null) => Rate::Auto,
        Some(Value::Object(s)) => match s.get("rate") {
            None | Some(Value::Null) => Rate::Auto,
            Some(r) => Rate::parse(r).map_err(|m| format!("field `scaledown.rate`: {m}"))?,
        },
        Some(other) => {
            return Err(format!(
                "field `scaledown` must be an object like {{\"rate\": 0.5}}, not {other}"
            ))
        }
    };
    Ok((context, prompt, rate))
}

async fn compress_raw(State(st): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorised(&st.api_key, &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (header x-api-key)",
        );
    }
    let (context, prompt, rate) = match parse(&body) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let c = st.service.compressor.clone();
    let done = tokio::task::spawn_blocking(move || c.compress_at(&context, &prompt, rate)).await;
    match done {
        Ok(Ok(r)) => Json(json!({
            "successful": true,
            "results": {
                "compressed_prompt": r.text,
                "original_prompt_tokens": r.original_tokens,
                "compressed_prompt_tokens": r.compressed_tokens,
                "compression_ratio": if r.compressed_tokens == 0 { 0.0 } else { r.original_tokens as f64 / r.compressed_tokens as f64 },
                "latency_ms": r.latency_ms,
            }
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the compressor stopped: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_like_scaledown_and_bad_ones_say_why() {
        let (c, p, r) = parse(
            br#"{"context": "a b", "prompt": "q?", "model": "gpt-4o", "scaledown": {"rate": 0.3}}"#,
        )
        .unwrap();
        assert_eq!(
            (c.as_str(), p.as_str(), r),
            ("a b", "q?", Rate::Fraction(0.3))
        );
        assert_eq!(parse(br#"{"context": "x"}"#).unwrap().2, Rate::Auto);
        for (body, says) in [
            (&b"{\"context\": "[..], "not JSON"),
            (b"[1]", "JSON object"),
            (b"{\"prompt\": \"q\"}", "`context` is required"),
            (b"{\"context\": 3}", "`context` must be a string"),
            (
                b"{\"context\": \"x\", \"scaledown\": {\"rate\": 2}}",
                "scaledown.rate",
            ),
            (
                b"{\"context\": \"x\", \"scaledown\": 0.5}",
                "`scaledown` must be an object",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
