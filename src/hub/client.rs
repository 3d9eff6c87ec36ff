//! The hub's HTTP API for uploads, as `huggingface_hub` speaks it (`hf_api.py`,
//! `_commit_api.py`, `lfs.py`): create a repo, list its files, ask which files go through
//! LFS (preupload), upload LFS objects (batch → PUT → verify) and make one commit (NDJSON).
//! Downloads go through `hf-hub` (`hub::sync`).
//!
//! The token travels only in `Authorization` headers to the hub itself, never to the LFS
//! storage URLs the hub hands out, and never into a message: [`Token`] prints as
//! `[redacted]`, and error bodies quoted in messages have it masked.

use std::time::Duration;

use base64::Engine;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::api::client::retry_after;
use crate::backend::api::RetryPolicy;
use crate::error::{Error, Result};

/// A hub token that never prints.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(s: String) -> Token {
        Token(s)
    }
    /// `s` with the token masked, for anything quoted from a server.
    pub fn redact(&self, s: &str) -> String {
        if self.0.is_empty() {
            s.to_string()
        } else {
            s.replace(&self.0, "[redacted]")
        }
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `model` or `dataset` (the hub's `repo_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
    /// A static Space (`sdk: static`): HTML served as is.
    Space,
}

impl RepoKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Dataset => "dataset",
            Self::Space => "space",
        }
    }
    /// The prefix of its URLs on the hub (`datasets/` or none).
    pub fn url_prefix(self) -> &'static str {
        match self {
            Self::Model => "",
            Self::Dataset => "datasets/",
            Self::Space => "spaces/",
        }
    }
}

/// One file of the remote repo, as the tree API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    /// Git blob sha1 (of the pointer file for an LFS file).
    pub oid: String,
    /// The content's sha256 for an LFS file.
    pub lfs_sha256: Option<String>,
}

/// One file a commit adds or replaces.
pub struct CommitFile {
    pub path: String,
    pub content: Vec<u8>,
    pub sha256: String,
    /// Uploaded through LFS (the commit line names its sha256) rather than inline.
    pub lfs: bool,
}

/// What a commit call ended with.
pub enum CommitOutcome {
    Done {
        oid: String,
        url: String,
    },
    /// The server failed (5xx, network): the commit may or may not have landed. The caller
    /// lists the repo again and commits only what is still missing.
    Unknown(String),
}

/// A client of one hub repo.
pub struct HubClient {
    http: Client,
    endpoint: String,
    token: Token,
    pub repo: String,
    pub kind: RepoKind,
    pub revision: String,
    retry: RetryPolicy,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    lfs: Option<TreeLfs>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
}

impl HubClient {
    pub fn new(
        endpoint: &str,
        token: Token,
        repo: &str,
        kind: RepoKind,
        retry: RetryPolicy,
    ) -> Result<HubClient> {
        let http = Client::builder()
            .timeout(Duration::from_secs(600))
            .user_agent(concat!("bwb/", env!("CARGO_PKG_VERSION"), "; hf_hub/rust"))
            .build()
            .map_err(|e| Error::Download(format!("cannot set up the HTTP client: {e}")))?;
        Ok(HubClient {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            repo: repo.to_string(),
            kind,
            revision: "main".into(),
            retry,
        })
    }

    /// `datasets/org/name` (or `org/name` for a model).
    pub fn label(&self) -> String {
        format!("{}{}", self.kind.url_prefix(), self.repo)
    }

    fn api(&self, what: &str) -> String {
        format!(
            "{}/api/{}s/{}/{what}",
            self.endpoint,
            self.kind.name(),
            self.repo
        )
    }

    fn authed(&self, rb: RequestBuilder) -> RequestBuilder {
        rb.bearer_auth(&self.token.0)
    }

    /// Send with retries on 429, 5xx and transport errors (`retry_5xx` false: only 429),
    /// honouring Retry-After. Returns the last response, or the transport error as text.
    fn send(
        &self,
        what: &str,
        retry_5xx: bool,
        build: &dyn Fn() -> RequestBuilder,
    ) -> std::result::Result<Response, String> {
        let mut rng = rand::rng();
        let mut failures = 0u32;
        loop {
            let outcome = build().send();
            let (retryable, wait_hint, last) = match outcome {
                Ok(resp) => {
                    let s = resp.status();
                    let retryable =
                        s == StatusCode::TOO_MANY_REQUESTS || (retry_5xx && s.is_server_error());
                    if !retryable {
                        return Ok(resp);
                    }
                    let hint = retry_after(resp.headers());
                    (true, hint, Ok(resp))
                }
                Err(e) => (retry_5xx, None, Err(crate::error::first_line(&e))),
            };
            failures += 1;
            if !retryable || failures >= self.retry.max_attempts {
                return last;
            }
            let delay = self.retry.delay(failures, wait_hint, &mut rng);
            tracing::debug!(
                "hub: {what}: attempt {failures} failed; retrying in {:.1} s",
                delay.as_secs_f64()
            );
            std::thread::sleep(delay);
        }
    }

    /// An error for a response that is not a success, with the server's message (token
    /// masked) and what to do.
    fn failed(&self, what: &str, resp: Response) -> Error {
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-error-message")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.text().unwrap_or_default();
        let message = code.unwrap_or_else(|| {
            serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| body.chars().take(300).collect())
        });
        let hint = match status.as_u16() {
            401 => "; the token was refused: check HF_TOKEN (or $HF_HOME/token)",
            403 => "; the token may not write to this repo: use a write token with access to it",
            404 => "; check --repo and that the token can see it",
            _ => "",
        };
        Error::Download(format!(
            "hub {what} for {}: HTTP {status}: {}{hint}",
            self.label(),
            self.token.redact(message.trim())
        ))
    }

    fn transport(&self, what: &str, e: String) -> Error {
        Error::Download(format!(
            "hub {what} for {}: {}; check the network and HF_ENDPOINT ({})",
            self.label(),
            self.token.redact(&e),
            self.endpoint
        ))
    }

    fn json_of(&self, what: &str, resp: Response) -> Result<Value> {
        if !resp.status().is_success() {
            return Err(self.failed(what, resp));
        }
        let bytes = resp.bytes().map_err(|e| {
            Error::Download(format!(
                "hub {what} for {}: reading the answer: {}",
                self.label(),
                crate::error::first_line(&e)
            ))
        })?;
        serde_json::from_slice::<Value>(&bytes).map_err(|e| {
            Error::Download(format!(
                "hub {what} for {}: the answer is not JSON: {e}",
                self.label()
            ))
        })
    }

    /// Every file of the repo at its revision; `None` when the repo (or its revision) does
    /// not exist.
    pub fn list(&self) -> Result<Option<Vec<RemoteFile>>> {
        let mut out = Vec::new();
        let mut url = format!(
            "{}?recursive=true&expand=false",
            self.api(&format!("tree/{}", self.revision))
        );
        loop {
            let resp = self
                .send("listing", true, &|| self.authed(self.http.get(&url)))
                .map_err(|e| self.transport("listing", e))?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let next = next_link(resp.headers());
            let v = self.json_of("listing", resp)?;
            let entries: Vec<TreeEntry> = serde_json::from_value(v).map_err(|e| {
                Error::Download(format!(
                    "hub listing for {}: unexpected answer: {e}",
                    self.label()
                ))
            })?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| RemoteFile {
                        path: e.path,
                        size: e.size,
                        oid: e.oid,
                        lfs_sha256: e.lfs.map(|l| l.oid),
                    }),
            );
            match next {
                Some(n) => url = n,
                None => return Ok(Some(out)),
            }
        }
    }

    /// Create the repo (private unless `public`); one that already exists is fine.
    pub fn create_repo(&self, private: bool) -> Result<()> {
        let (org, name) = self.repo.split_once('/').unwrap_or(("", &self.repo));
        let mut body = json!({"name": name, "private": private, "type": self.kind.name()});
        if !org.is_empty() {
            body["organization"] = json!(org);
        }
        if self.kind == RepoKind::Space {
            body["sdk"] = json!("static");
        }
        let url = format!("{}/api/repos/create", self.endpoint);
        let resp = self
            .send("create repo", true, &|| {
                self.authed(self.http.post(&url))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
            })
            .map_err(|e| self.transport("create repo", e))?;
        if resp.status().is_success() || resp.status() == StatusCode::CONFLICT {
            return Ok(());
        }
        Err(self.failed("create repo", resp))
    }

    /// Which of these files the hub wants through LFS (`uploadMode: lfs`), and which it
    /// ignores (`shouldIgnore`, e.g. by its .gitignore). Returns `(lfs, ignored)` per file.
    pub fn preupload(&self, files: &[(&str, &[u8])]) -> Result<Vec<(bool, bool)>> {
        let mut out = Vec::with_capacity(files.len());
        for chunk in files.chunks(256) {
            let payload: Vec<Value> = chunk
                .iter()
                .map(|(path, bytes)| {
                    let sample = &bytes[..bytes.len().min(512)];
                    json!({
                        "path": path,
                        "size": bytes.len(),
                        "sample": base64::engine::general_purpose::STANDARD.encode(sample),
                    })
                })
                .collect();
            let body = json!({ "files": payload });
            let url = self.api(&format!("preupload/{}", self.revision));
            let resp = self
                .send("preupload", true, &|| {
                    self.authed(self.http.post(&url))
                        .header("Content-Type", "application/json")
                        .body(body.to_string())
                })
                .map_err(|e| self.transport("preupload", e))?;
            let v = self.json_of("preupload", resp)?;
            let answers = v.get("files").and_then(Value::as_array).ok_or_else(|| {
                Error::Download(format!(
                    "hub preupload for {}: the answer has no `files` list",
                    self.label()
                ))
            })?;
            for (path, _) in chunk {
                let a = answers
                    .iter()
                    .find(|a| a.get("path").and_then(Value::as_str) == Some(path));
                let lfs = a
                    .and_then(|a| a.get("uploadMode"))
                    .and_then(Value::as_str)
                    .is_some_and(|m| m == "lfs");
                let ignored = a
                    .and_then(|a| a.get("shouldIgnore"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                out.push((lfs, ignored));
            }
        }
        Ok(out)
    }

    /// Upload LFS objects the hub does not have yet (batch API; an object it already holds
    /// comes back without actions and is skipped). Returns how many were sent.
    pub fn upload_lfs(&self, files: &[&CommitFile]) -> Result<usize> {
        let mut sent = 0;
        let url = format!(
            "{}/{}{}.git/info/lfs/objects/batch",
            self.endpoint,
            self.kind.url_prefix(),
            self.repo
        );
        for chunk in files.chunks(256) {
            let objects: Vec<Value> = chunk
                .iter()
                .map(|f| json!({"oid": f.sha256, "size": f.content.len()}))
                .collect();
            let body = json!({
                "operation": "upload",
                "transfers": ["basic", "multipart"],
                "objects": objects,
                "hash_algo": "sha256",
                "ref": {"name": self.revision},
            });
            let resp = self
                .send("LFS batch", true, &|| {
                    self.authed(self.http.post(&url))
                        .header("Accept", "application/vnd.git-lfs+json")
                        .header("Content-Type", "application/vnd.git-lfs+json")
                        .body(body.to_string())
                })
                .map_err(|e| self.transport("LFS batch", e))?;
            let v = self.json_of("LFS batch", resp)?;
            let answers = v
                .get("objects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for f in chunk {
                let Some(obj) = answers
                    .iter()
                    .find(|o| o.get("oid").and_then(Value::as_str) == Some(&f.sha256))
                else {
                    return Err(Error::Download(format!(
                        "hub LFS batch for {}: no answer for {} (sha256 {})",
                        self.label(),
                        f.path,
                        f.sha256
                    )));
                };
                if let Some(err) = obj.get("error") {
                    return Err(Error::Download(format!(
                        "hub LFS batch for {}: {} refused: {}",
                        self.label(),
                        f.path,
                        self.token.redact(&err.to_string())
                    )));
                }
                let Some(actions) = obj.get("actions") else {
                    continue; // already on the hub
                };
                if let Some(up) = actions.get("upload") {
                    self.lfs_put(f, up)?;
                    sent += 1;
                }
                if let Some(verify) = actions.get("verify") {
                    self.lfs_verify(f, verify)?;
                }
            }
        }
        Ok(sent)
    }

    fn lfs_put(&self, f: &CommitFile, action: &Value) -> Result<()> {
        let href = action.get("href").and_then(Value::as_str).ok_or_else(|| {
            Error::Download(format!(
                "hub LFS batch for {}: the upload action for {} has no href",
                self.label(),
                f.path
            ))
        })?;
        let headers = action_headers(action);
        if let Some((_, chunk)) = headers.iter().find(|(k, _)| k == "chunk_size") {
            return self.lfs_multipart(f, href, chunk, &headers);
        }
        // The storage URL is not the hub: no token goes there.
        let resp = self
            .send("LFS upload", true, &|| {
                let mut rb = self.http.put(href).body(f.content.clone());
                for (k, v) in &headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                rb
            })
            .map_err(|e| self.transport("LFS upload", e))?;
        if !resp.status().is_success() {
            return Err(self.failed(&format!("LFS upload of {}", f.path), resp));
        }
        Ok(())
    }

    /// A large object in parts, as the hub asks with `chunk_size` and numbered part URLs in
    /// the upload action's header: PUT each part (no token: storage URLs), then POST the parts'
    /// ETags to the action's href to complete it.
    fn lfs_multipart(
        &self,
        f: &CommitFile,
        href: &str,
        chunk: &str,
        headers: &[(String, String)],
    ) -> Result<()> {
        let bad = |m: String| {
            Error::Download(format!(
                "hub LFS upload for {}: {}: {m}",
                self.label(),
                f.path
            ))
        };
        let chunk: usize = chunk
            .parse()
            .ok()
            .filter(|&c| c > 0)
            .ok_or_else(|| bad(format!("chunk_size `{chunk}` is not a positive number")))?;
        let mut parts: Vec<(u32, &str)> = headers
            .iter()
            .filter_map(|(k, v)| Some((k.parse::<u32>().ok()?, v.as_str())))
            .collect();
        parts.sort();
        if parts.len() != f.content.len().div_ceil(chunk) {
            return Err(bad(format!(
                "{} part URLs for {} bytes in chunks of {chunk}",
                parts.len(),
                f.content.len()
            )));
        }
        let mut etags = Vec::with_capacity(parts.len());
        for (i, (_, url)) in parts.iter().enumerate() {
            let end = ((i + 1) * chunk).min(f.content.len());
            let body = f.content[i * chunk..end].to_vec();
            let resp = self
                .send("LFS part upload", true, &|| {
                    self.http.put(*url).body(body.clone())
                })
                .map_err(|e| self.transport("LFS part upload", e))?;
            if !resp.status().is_success() {
                return Err(self.failed(&format!("LFS part {} of {}", i + 1, f.path), resp));
            }
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad(format!("part {} came back without an ETag", i + 1)))?;
            etags.push(json!({"partNumber": i + 1, "etag": etag}));
        }
        let body = json!({"oid": f.sha256, "parts": etags});
        let resp = self
            .send("LFS multipart completion", true, &|| {
                self.http
                    .post(href)
                    .header("Accept", "application/vnd.git-lfs+json")
                    .header("Content-Type", "application/vnd.git-lfs+json")
                    .body(body.to_string())
            })
            .map_err(|e| self.transport("LFS multipart completion", e))?;
        if !resp.status().is_success() {
            return Err(self.failed(&format!("LFS multipart completion of {}", f.path), resp));
        }
        Ok(())
    }

    fn lfs_verify(&self, f: &CommitFile, action: &Value) -> Result<()> {
        let Some(href) = action.get("href").and_then(Value::as_str) else {
            return Ok(());
        };
        let headers = action_headers(action);
        let body = json!({"oid": f.sha256, "size": f.content.len()});
        let resp = self
            .send("LFS verify", true, &|| {
                let mut rb = self
                    .authed(self.http.post(href))
                    .header("Content-Type", "application/json")
                    .body(body.to_string());
                for (k, v) in &headers {
                    rb = rb.header(k.as_str(), v.as_str());
                }
                rb
            })
            .map_err(|e| self.transport("LFS verify", e))?;
        if !resp.status().is_success() {
            return Err(self.failed(&format!("LFS verify of {}", f.path), resp));
        }
        Ok(())
    }

    /// One commit adding or replacing `files` (inline ones base64-encoded, LFS ones by
    /// sha256 and size, uploaded before). 429 is retried; a 5xx or a lost connection is
    /// [`CommitOutcome::Unknown`], since the commit may have landed.
    pub fn commit(
        &self,
        summary: &str,
        description: &str,
        files: &[CommitFile],
    ) -> Result<CommitOutcome> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut body = String::new();
        let mut line = |v: Value| {
            body.push_str(&v.to_string());
            body.push('\n');
        };
        line(json!({"key": "header", "value": {"summary": summary, "description": description}}));
        for f in files {
            if f.lfs {
                line(json!({"key": "lfsFile", "value": {
                    "path": f.path, "algo": "sha256", "oid": f.sha256, "size": f.content.len(),
                }}));
            } else {
                line(json!({"key": "file", "value": {
                    "content": b64.encode(&f.content), "path": f.path, "encoding": "base64",
                }}));
            }
        }
        let url = self.api(&format!("commit/{}", self.revision));
        let resp = match self.send("commit", false, &|| {
            self.authed(self.http.post(&url))
                .header("Content-Type", "application/x-ndjson")
                .body(body.clone())
        }) {
            Ok(r) => r,
            Err(e) => return Ok(CommitOutcome::Unknown(self.token.redact(&e))),
        };
        let status = resp.status();
        if status.is_server_error() {
            let text = resp.text().unwrap_or_default();
            return Ok(CommitOutcome::Unknown(format!(
                "HTTP {status}: {}",
                self.token.redact(text.trim())
            )));
        }
        let v = self.json_of("commit", resp)?;
        let get = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(CommitOutcome::Done {
            oid: get("commitOid"),
            url: get("commitUrl"),
        })
    }
}

fn action_headers(action: &Value) -> Vec<(String, String)> {
    action
        .get("header")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `rel="next"` URL of a `Link` header (the tree API's pagination).
fn next_link(h: &reqwest::header::HeaderMap) -> Option<String> {
    let link = h.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_print() {
        let t = Token::new("hf_secret".into());
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert_eq!(t.redact("bad hf_secret here"), "bad [redacted] here");
    }

    #[test]
    fn next_page_comes_from_the_link_header() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "link",
            "<https://hub/api/datasets/a/b/tree/main?cursor=x>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://hub/api/datasets/a/b/tree/main?cursor=x")
        );
        assert_eq!(next_link(&reqwest::header::HeaderMap::new()), None);
    }
}
