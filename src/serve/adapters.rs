//! Served LoRA adapters: loading one onto the running base model (its base checked, its
//! tensors attached beside the others'), the `--adapter-dir` walk over `bwb train`'s
//! checkpoints, and vLLM's runtime routes `POST /v1/load_lora_adapter`
//! `{"lora_name", "lora_path"}` and `POST /v1/unload_lora_adapter` `{"lora_name"}`
//! (behind `--allow-runtime-lora`; success is vLLM's plain-text line, failure OpenAI's error
//! envelope). Unloading an adapter that requests use lets them finish; new ones get 404.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::api::{self, ApiError};
use super::{AppState, ServedModel};
use crate::config::Configs;
use crate::error::{Error, Result};
use crate::model::adapter;
use crate::model::linear::ServedLora;
use crate::model::load::LoadedModel;
use crate::train::checkpoint::FINAL_DIR;

/// Loads PEFT adapter directories for one base model.
pub struct AdapterLoader {
    /// The base as `--model` named it (what the adapter's `base_model_name_or_path` must name).
    pub spec: String,
    pub configs: Arc<Configs>,
    pub model: Arc<LoadedModel>,
}

impl AdapterLoader {
    /// The adapter in `dir`, ready to serve beside others on the base: refused when it names
    /// another known base model or its tensors do not fit the base's layers.
    pub fn load(&self, dir: &Path) -> Result<ServedLora> {
        if !dir.is_dir() {
            return Err(Error::MissingInput(format!(
                "adapter directory {} does not exist",
                dir.display()
            )));
        }
        adapter::check_base(dir, &self.spec, &self.configs)?;
        let plan = adapter::load(dir, &self.model.device)?;
        plan.served(self.model.model.linears(), self.model.dtype)
            .map_err(|e| Error::BadFile {
                path: dir.to_path_buf(),
                message: crate::error::first_line(&e),
            })
    }
}

/// Every finished adapter `bwb train` left under `dir` (`<model>/<task>/<condition>/adapter`,
/// as `checkpoints/` holds them), named `<model>/<task>/<condition>`, sorted by name.
pub fn trained_adapters(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let subdirs = |d: &Path| -> Result<Vec<(String, PathBuf)>> {
        let rd = std::fs::read_dir(d)
            .map_err(|e| Error::MissingInput(format!("--adapter-dir {}: {e}", d.display())))?;
        let mut v: Vec<(String, PathBuf)> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .filter_map(|p| Some((p.file_name()?.to_str()?.to_string(), p)))
            .filter(|(n, _)| !n.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut out = Vec::new();
    for (model, m) in subdirs(dir)? {
        for (task, t) in subdirs(&m)? {
            for (cond, c) in subdirs(&t)? {
                let a = c.join(FINAL_DIR);
                if a.join(adapter::CONFIG_FILE).is_file() && a.join(adapter::WEIGHTS_FILE).is_file()
                {
                    out.push((format!("{model}/{task}/{cond}"), a));
                }
            }
        }
    }
    Ok(out)
}

impl AppState {
    /// Serve `lora` under `name` from now on (refused when the name is taken).
    pub(super) fn add_adapter(
        &self,
        name: &str,
        root: &str,
        lora: ServedLora,
    ) -> std::result::Result<(), ApiError> {
        let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
        if served.iter().any(|m| m.name == name) {
            return Err(user_error(format!(
                "The lora adapter '{name}' has already been loaded."
            )));
        }
        let id = self.next_adapter.fetch_add(1, Ordering::Relaxed);
        self.engine
            .attach(id, Arc::new(lora))
            .map_err(|_| ApiError::internal("the engine thread has stopped"))?;
        let parent = served.first().map(|b| b.name.clone());
        served.push(ServedModel {
            name: name.to_string(),
            parent,
            root: root.to_string(),
            adapter: Some(id),
            metrics: self.metrics.index(name),
        });
        Ok(())
    }

    /// The routes answer only with `--allow-runtime-lora`.
    fn check_runtime_lora(&self, headers: &HeaderMap) -> std::result::Result<(), ApiError> {
        self.check_auth(headers)?;
        if self.opts.allow_runtime_lora {
            return Ok(());
        }
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "loading and unloading adapters at run time is off; start `bwb serve` with \
                      --allow-runtime-lora"
                .into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("runtime_lora_disabled"),
        })
    }
}

/// A 400 in vLLM's wording for its LoRA routes.
fn user_error(message: String) -> ApiError {
    ApiError {
        kind: "InvalidUserInput",
        ..ApiError::bad_request(message, None)
    }
}

#[derive(Deserialize)]
struct LoadRequest {
    #[serde(default)]
    lora_name: Option<String>,
    #[serde(default)]
    lora_path: Option<String>,
}

pub(super) async fn load_lora_adapter(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    load_inner(st, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn load_inner(
    st: Arc<AppState>,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<Response, ApiError> {
    st.check_runtime_lora(headers)?;
    let req: LoadRequest = api::parse(body)?;
    let (Some(name), Some(path)) = (
        req.lora_name.filter(|s| !s.is_empty()),
        req.lora_path.filter(|s| !s.is_empty()),
    ) else {
        return Err(user_error(
            "Both 'lora_name' and 'lora_path' must be provided.".into(),
        ));
    };
    if st.served().iter().any(|m| m.name == name) {
        return Err(user_error(format!(
            "The lora adapter '{name}' has already been loaded."
        )));
    }
    // Reading the tensors is blocking file work: off the async workers.
    let st2 = st.clone();
    let dir = PathBuf::from(&path);
    let loaded = tokio::task::spawn_blocking(move || st2.loader.load(&dir))
        .await
        .map_err(|e| ApiError::internal(format!("loading the adapter: {e}")))?;
    let lora = loaded.map_err(|e| {
        let status = match e {
            Error::MissingInput(_) => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            kind: if status == StatusCode::NOT_FOUND {
                "NotFoundError"
            } else {
                "BadRequestError"
            },
            ..ApiError::bad_request(crate::error::first_line(&e), Some("lora_path"))
        }
    })?;
    st.add_adapter(&name, &path, lora)?;
    tracing::info!("loaded LoRA adapter `{name}` from {path}");
    Ok(format!("Success: LoRA adapter '{name}' added successfully.").into_response())
}

#[derive(Deserialize)]
struct UnloadRequest {
    #[serde(default)]
    lora_name: Option<String>,
}

pub(super) async fn unload_lora_adapter(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    unload_inner(&st, &headers, &body).unwrap_or_else(IntoResponse::into_response)
}

fn unload_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> std::result::Result<Response, ApiError> {
    st.check_runtime_lora(headers)?;
    let req: UnloadRequest = api::parse(body)?;
    let Some(name) = req.lora_name.filter(|s| !s.is_empty()) else {
        return Err(user_error("'lora_name' must be provided.".into()));
    };
    let mut served = st.served.write().unwrap_or_else(|e| e.into_inner());
    let Some(i) = served.iter().position(|m| m.name == name) else {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "NotFoundError",
            ..user_error(format!("The lora adapter '{name}' cannot be found."))
        });
    };
    let Some(id) = served[i].adapter else {
        return Err(user_error(format!(
            "'{name}' is the base model; only LoRA adapters can be unloaded."
        )));
    };
    // Retired under the lock: every job already submitted for it is ahead in the queue.
    st.engine
        .retire(id)
        .map_err(|_| ApiError::internal("the engine thread has stopped"))?;
    served.remove(i);
    tracing::info!("unloaded LoRA adapter `{name}`");
    Ok(format!("Success: LoRA adapter '{name}' removed successfully.").into_response())
}
