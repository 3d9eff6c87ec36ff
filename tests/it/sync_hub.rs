//! A stand-in for the hub's write API on 127.0.0.1, for `bwb sync`: create repo, tree listing
//! (paginated), preupload, LFS batch / storage PUT / verify, NDJSON commit, and file download
//! (`resolve`, with the headers hf-hub needs). It checks what it receives and records every
//! departure from what the real hub expects in `violations`; tests assert that list is empty.
//! Faults can be injected: commits that fail with 500 (before or after applying) and 429s
//! with Retry-After.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

pub const TOKEN: &str = "hf_sync_test_token_0123456789";

#[derive(Clone, Debug)]
pub struct StoredFile {
    pub content: Vec<u8>,
    /// sha256 when committed as an LFS file.
    pub lfs: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Commit {
    pub summary: String,
    pub description: String,
    /// Paths the commit wrote, with whether each was an `lfsFile` line.
    pub files: Vec<(String, bool)>,
}

#[derive(Default, Debug)]
pub struct RepoState {
    pub private: bool,
    pub kind: String,
    pub files: BTreeMap<String, StoredFile>,
    pub commits: Vec<Commit>,
}

#[derive(Default)]
pub struct Hub {
    pub repos: HashMap<String, RepoState>,
    /// LFS storage by sha256.
    pub lfs: HashMap<String, Vec<u8>>,
    /// Storage PUTs received.
    pub lfs_puts: usize,
    /// `(method, path)` of every request.
    pub requests: Vec<(String, String)>,
    /// Every request body (checked for the token).
    pub bodies: Vec<Vec<u8>>,
    pub violations: Vec<String>,
    /// The next this many commits answer 500 without applying.
    pub fail_commits: usize,
    /// The next this many commits are applied, then answer 500 (the answer is lost).
    pub lose_commit_answers: usize,
    /// The next this many preuploads answer 429 with `Retry-After: 1`.
    pub throttle_preuploads: usize,
    /// Entries per tree page.
    pub page: usize,
    /// Objects larger than this are uploaded in parts of this size (multipart).
    pub multipart_chunk: Option<usize>,
    /// Parts received, by (oid, part number).
    pub parts: HashMap<(String, usize), Vec<u8>>,
}

pub struct HubServer {
    pub endpoint: String,
    pub state: Arc<Mutex<Hub>>,
}

impl HubServer {
    pub fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.state.lock().unwrap()
    }
}

#[derive(Clone)]
struct Ctx {
    state: Arc<Mutex<Hub>>,
    endpoint: String,
}

pub fn start() -> HubServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Hub {
        page: 3,
        ..Hub::default()
    }));
    let ctx = Ctx {
        state: state.clone(),
        endpoint: endpoint.clone(),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().fallback(handle).with_state(ctx);
            axum::serve(listener, app).await.unwrap();
        });
    });
    HubServer { endpoint, state }
}

fn sha256(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn git_sha1(b: &[u8]) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

fn pointer(oid: &str, size: usize) -> Vec<u8> {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n")
        .into_bytes()
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(ctx): State<Ctx>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut hub = ctx.state.lock().unwrap();
    let path = uri.path().to_string();
    hub.requests.push((method.to_string(), path.clone()));
    hub.bodies.push(body.to_vec());
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The storage URL is not the hub: a token sent there leaks.
    if let Some(oid) = path.strip_prefix("/lfs-storage/") {
        if auth.is_some() {
            hub.violations
                .push("Authorization sent to the LFS storage URL".into());
        }
        if headers.get("x-storage-signature").is_none() {
            hub.violations
                .push("the upload action's headers were not sent".into());
        }
        if sha256(&body) != oid {
            hub.violations
                .push(format!("LFS PUT body does not hash to {oid}"));
            return reply(StatusCode::BAD_REQUEST, json!({"error": "bad sha"}));
        }
        hub.lfs_puts += 1;
        hub.lfs.insert(oid.to_string(), body.to_vec());
        return reply(StatusCode::OK, json!({}));
    }
    if let Some(rest) = path.strip_prefix("/lfs-part/") {
        if auth.is_some() {
            hub.violations
                .push("Authorization sent to an LFS part URL".into());
        }
        let (oid, n) = rest.split_once('/').unwrap_or((rest, "0"));
        let n: usize = n.parse().unwrap_or(0);
        hub.parts.insert((oid.to_string(), n), body.to_vec());
        let mut r = reply(StatusCode::OK, json!({}));
        r.headers_mut()
            .insert("etag", format!("\"etag-{n}\"").parse().unwrap());
        return r;
    }
    if let Some(oid) = path.strip_prefix("/lfs-complete/") {
        if auth.is_some() {
            hub.violations
                .push("Authorization sent to the LFS completion URL".into());
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if v["oid"] != oid {
            hub.violations
                .push(format!("completion names {}", v["oid"]));
        }
        let mut whole = Vec::new();
        for (i, part) in v["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let n = i + 1;
            if part["partNumber"] != n || part["etag"] != format!("\"etag-{n}\"") {
                hub.violations.push(format!("completion part {part}"));
            }
            whole.extend(
                hub.parts
                    .get(&(oid.to_string(), n))
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        if sha256(&whole) != oid {
            hub.violations
                .push(format!("the parts of {oid} do not hash to it"));
            return reply(StatusCode::BAD_REQUEST, json!({"error": "bad parts"}));
        }
        hub.lfs_puts += 1;
        hub.lfs.insert(oid.to_string(), whole);
        return reply(StatusCode::OK, json!({}));
    }
    if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        hub.violations
            .push(format!("{method} {path}: Authorization {auth:?}"));
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Invalid credentials"}),
        );
    }
    if path == "/api/repos/create" && method == Method::POST {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (Some(org), Some(name)) = (v["organization"].as_str(), v["name"].as_str()) else {
            hub.violations.push(format!("create repo body {v}"));
            return reply(StatusCode::BAD_REQUEST, json!({"error": "bad body"}));
        };
        let id = format!("{org}/{name}");
        if hub.repos.contains_key(&id) {
            return reply(
                StatusCode::CONFLICT,
                json!({"error": "You already created this dataset repo"}),
            );
        }
        let kind = v["type"].as_str().unwrap_or("model").to_string();
        if kind == "space" && v["sdk"] != "static" {
            hub.violations
                .push(format!("space created with sdk {}", v["sdk"]));
        }
        let private = v["private"].as_bool().unwrap_or(false);
        let mut files = BTreeMap::new();
        files.insert(
            ".gitattributes".to_string(),
            StoredFile {
                content: b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
                lfs: None,
            },
        );
        hub.repos.insert(
            id.clone(),
            RepoState {
                private,
                kind,
                files,
                commits: Vec::new(),
            },
        );
        return reply(
            StatusCode::OK,
            json!({"url": format!("{}/datasets/{id}", ctx.endpoint)}),
        );
    }
    let api = path
        .strip_prefix("/api/datasets/")
        .map(|r| ("dataset", r))
        .or_else(|| path.strip_prefix("/api/models/").map(|r| ("model", r)))
        .or_else(|| path.strip_prefix("/api/spaces/").map(|r| ("space", r)));
    if let Some((kind, rest)) = api {
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        if parts.len() < 4 {
            return reply(StatusCode::NOT_FOUND, json!({"error": "no route"}));
        }
        let id = format!("{}/{}", parts[0], parts[1]);
        let (op, rev) = (parts[2], parts[3]);
        if rev != "main" {
            hub.violations.push(format!("{op} on revision {rev}"));
        }
        match hub.repos.get(&id).map(|r| r.kind.clone()) {
            None => {
                return reply(
                    StatusCode::NOT_FOUND,
                    json!({"error": "Repository not found"}),
                )
            }
            Some(k) if k != kind => {
                hub.violations
                    .push(format!("the {kind} API used on the {k} repo {id}"));
                return reply(StatusCode::NOT_FOUND, json!({"error": "wrong type"}));
            }
            Some(_) => {}
        }
        return match (op, method) {
            ("tree", Method::GET) => tree(&mut hub, &ctx, &id, uri.query().unwrap_or("")),
            ("preupload", Method::POST) => preupload(&mut hub, &body),
            ("commit", Method::POST) => commit(&mut hub, &id, &headers, &body),
            _ => reply(StatusCode::NOT_FOUND, json!({"error": "no route"})),
        };
    }
    if let Some(rest) = path.strip_prefix("/lfs-verify/") {
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let oid = v["oid"].as_str().unwrap_or("");
        if oid != rest {
            hub.violations.push(format!("verify of {rest} names {oid}"));
        }
        let ok = hub
            .lfs
            .get(oid)
            .is_some_and(|b| Some(b.len() as u64) == v["size"].as_u64());
        if !ok {
            hub.violations
                .push(format!("verify of {oid}: not stored with that size"));
            return reply(StatusCode::NOT_FOUND, json!({"error": "not uploaded"}));
        }
        return reply(StatusCode::OK, json!({"success": true}));
    }
    if let Some(rest) = path.strip_suffix(".git/info/lfs/objects/batch") {
        let id = rest
            .strip_prefix("/datasets/")
            .or_else(|| rest.strip_prefix("/spaces/"))
            .unwrap_or(rest.trim_start_matches('/'))
            .to_string();
        if method != Method::POST {
            return reply(StatusCode::NOT_FOUND, json!({}));
        }
        return lfs_batch(&mut hub, &ctx, &id, &headers, &body);
    }
    if let Some(rest) = path.strip_prefix("/datasets/") {
        if let Some((id, tail)) = rest.split_once("/resolve/") {
            let (rev, file) = tail.split_once('/').unwrap_or((tail, ""));
            return resolve(&hub, id, rev, file, &headers);
        }
    }
    reply(StatusCode::NOT_FOUND, json!({"error": "no route"}))
}

fn tree(hub: &mut Hub, ctx: &Ctx, id: &str, query: &str) -> Response {
    if !query.contains("recursive=true") {
        hub.violations
            .push(format!("tree without recursive=true: {query}"));
    }
    let cursor: usize = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("cursor="))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let repo = &hub.repos[id];
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (p, f) in &repo.files {
        let mut d = p.as_str();
        while let Some((parent, _)) = d.rsplit_once('/') {
            dirs.insert(parent.to_string());
            d = parent;
        }
        let mut e = json!({"type": "file", "path": p, "size": f.content.len()});
        match &f.lfs {
            Some(oid) => {
                e["oid"] = json!(git_sha1(&pointer(oid, f.content.len())));
                e["lfs"] = json!({"oid": oid, "size": f.content.len(), "pointerSize": 134});
            }
            None => e["oid"] = json!(git_sha1(&f.content)),
        }
        entries.push(e);
    }
    entries.extend(
        dirs.into_iter()
            .map(|d| json!({"type": "directory", "path": d, "oid": "0"})),
    );
    let page: Vec<Value> = entries
        .iter()
        .skip(cursor)
        .take(hub.page)
        .cloned()
        .collect();
    let mut resp = reply(StatusCode::OK, Value::Array(page));
    if cursor + hub.page < entries.len() {
        let next = format!(
            "<{}/api/{}s/{id}/tree/main?recursive=true&expand=false&cursor={}>; rel=\"next\"",
            ctx.endpoint,
            repo.kind,
            cursor + hub.page
        );
        resp.headers_mut().insert("link", next.parse().unwrap());
    }
    resp
}

fn preupload(hub: &mut Hub, body: &[u8]) -> Response {
    if hub.throttle_preuploads > 0 {
        hub.throttle_preuploads -= 1;
        let mut r = reply(StatusCode::TOO_MANY_REQUESTS, json!({"error": "slow down"}));
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return r;
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(files) = v["files"].as_array() else {
        hub.violations.push(format!("preupload body {v}"));
        return reply(StatusCode::BAD_REQUEST, json!({"error": "bad body"}));
    };
    let mut out = Vec::new();
    for f in files {
        let path = f["path"].as_str().unwrap_or("");
        let size = f["size"].as_u64().unwrap_or(0);
        let sample = base64::engine::general_purpose::STANDARD
            .decode(f["sample"].as_str().unwrap_or("?"))
            .unwrap_or_default();
        if sample.len() as u64 != size.min(512) {
            hub.violations.push(format!(
                "preupload {path}: sample of {} bytes",
                sample.len()
            ));
        }
        // The hub's rule: the repo's LFS patterns, large files, or binary samples.
        let lfs = path.ends_with(".safetensors") || size > 10_000_000 || sample.contains(&0);
        out.push(json!({"path": path, "uploadMode": if lfs { "lfs" } else { "regular" }, "shouldIgnore": false, "oid": null}));
    }
    reply(StatusCode::OK, json!({"files": out, "commitOid": "0"}))
}

fn lfs_batch(hub: &mut Hub, ctx: &Ctx, id: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    for h in ["accept", "content-type"] {
        if headers.get(h).and_then(|v| v.to_str().ok()) != Some("application/vnd.git-lfs+json") {
            hub.violations.push(format!("LFS batch {h} header"));
        }
    }
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if v["operation"] != "upload" || v["hash_algo"] != "sha256" {
        hub.violations.push(format!("LFS batch body {v}"));
    }
    if !hub.repos.contains_key(id) {
        return reply(
            StatusCode::NOT_FOUND,
            json!({"message": "Repository not found"}),
        );
    }
    let mut objects = Vec::new();
    for o in v["objects"].as_array().cloned().unwrap_or_default() {
        let oid = o["oid"].as_str().unwrap_or("").to_string();
        let size = o["size"].as_u64().unwrap_or(0);
        if oid.len() != 64 || !oid.chars().all(|c| c.is_ascii_hexdigit()) {
            hub.violations
                .push(format!("LFS oid `{oid}` is not a sha256"));
        }
        if hub.lfs.contains_key(&oid) {
            objects.push(json!({"oid": oid, "size": size}));
        } else if let Some(chunk) = hub.multipart_chunk.filter(|&c| size as usize > c) {
            let mut header = serde_json::Map::new();
            header.insert("chunk_size".into(), json!(chunk.to_string()));
            for n in 1..=(size as usize).div_ceil(chunk) {
                header.insert(
                    format!("{n:05}"),
                    json!(format!("{}/lfs-part/{oid}/{n}", ctx.endpoint)),
                );
            }
            objects.push(json!({"oid": oid, "size": size, "actions": {
                "upload": {"href": format!("{}/lfs-complete/{oid}", ctx.endpoint), "header": header},
                "verify": {"href": format!("{}/lfs-verify/{oid}", ctx.endpoint), "header": {}},
            }}));
        } else {
            objects.push(
                json!({"oid": oid, "size": size, "authenticated": true, "actions": {
                    "upload": {"href": format!("{}/lfs-storage/{oid}", ctx.endpoint),
                               "header": {"x-storage-signature": "sig"}},
                    "verify": {"href": format!("{}/lfs-verify/{oid}", ctx.endpoint),
                               "header": {"x-verify-token": "v"}},
                }}),
            );
        }
    }
    (
        StatusCode::OK,
        [("content-type", "application/vnd.git-lfs+json")],
        json!({"transfer": "basic", "objects": objects}).to_string(),
    )
        .into_response()
}

fn commit(hub: &mut Hub, id: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-ndjson") {
        hub.violations.push("commit content-type".into());
    }
    if hub.fail_commits > 0 {
        hub.fail_commits -= 1;
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "Internal Error"}),
        );
    }
    let text = String::from_utf8_lossy(body).into_owned();
    let mut lines = text.lines();
    let header: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    if header["key"] != "header" || !header["value"]["summary"].is_string() {
        hub.violations.push(format!("commit header line {header}"));
        return reply(StatusCode::BAD_REQUEST, json!({"error": "no header"}));
    }
    let mut writes = Vec::new();
    for l in lines {
        let v: Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => {
                hub.violations.push(format!("commit line not JSON: {e}"));
                return reply(StatusCode::BAD_REQUEST, json!({"error": "bad line"}));
            }
        };
        let path = v["value"]["path"].as_str().unwrap_or("").to_string();
        match v["key"].as_str() {
            Some("file") => {
                if v["value"]["encoding"] != "base64" {
                    hub.violations
                        .push(format!("{path}: encoding {}", v["value"]["encoding"]));
                }
                let Ok(content) = base64::engine::general_purpose::STANDARD
                    .decode(v["value"]["content"].as_str().unwrap_or("?"))
                else {
                    hub.violations
                        .push(format!("{path}: content is not base64"));
                    return reply(StatusCode::BAD_REQUEST, json!({"error": "bad base64"}));
                };
                writes.push((path, StoredFile { content, lfs: None }));
            }
            Some("lfsFile") => {
                let oid = v["value"]["oid"].as_str().unwrap_or("").to_string();
                if v["value"]["algo"] != "sha256" {
                    hub.violations
                        .push(format!("{path}: algo {}", v["value"]["algo"]));
                }
                let Some(content) = hub.lfs.get(&oid).cloned() else {
                    hub.violations
                        .push(format!("{path}: LFS object {oid} was never uploaded"));
                    return reply(
                        StatusCode::BAD_REQUEST,
                        json!({"error": "missing LFS object"}),
                    );
                };
                if v["value"]["size"].as_u64() != Some(content.len() as u64) {
                    hub.violations
                        .push(format!("{path}: LFS size {}", v["value"]["size"]));
                }
                writes.push((
                    path,
                    StoredFile {
                        content,
                        lfs: Some(oid),
                    },
                ));
            }
            other => hub.violations.push(format!("commit line key {other:?}")),
        }
    }
    let repo = hub.repos.get_mut(id).unwrap();
    repo.commits.push(Commit {
        summary: header["value"]["summary"].as_str().unwrap_or("").into(),
        description: header["value"]["description"].as_str().unwrap_or("").into(),
        files: writes
            .iter()
            .map(|(p, f)| (p.clone(), f.lfs.is_some()))
            .collect(),
    });
    for (p, f) in writes {
        repo.files.insert(p, f);
    }
    let n = repo.commits.len();
    if hub.lose_commit_answers > 0 {
        hub.lose_commit_answers -= 1;
        return reply(
            StatusCode::BAD_GATEWAY,
            json!({"error": "upstream timed out"}),
        );
    }
    reply(
        StatusCode::OK,
        json!({"commitOid": format!("{n:040x}"), "commitUrl": format!("https://hub/datasets/{id}/commit/{n:040x}")}),
    )
}

fn resolve(hub: &Hub, id: &str, rev: &str, file: &str, headers: &HeaderMap) -> Response {
    let Some(repo) = hub.repos.get(id) else {
        return reply(StatusCode::NOT_FOUND, json!({}));
    };
    let Some(f) = repo.files.get(file) else {
        return reply(StatusCode::NOT_FOUND, json!({"error": "Entry not found"}));
    };
    let bytes = &f.content;
    let (start, end) = match headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
    {
        Some("0-0") => (0, 1.min(bytes.len())),
        Some(r) => (
            r.split('-')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
                .min(bytes.len()),
            bytes.len(),
        ),
        None => (0, bytes.len()),
    };
    let etag = f.lfs.clone().unwrap_or_else(|| git_sha1(bytes));
    let commit = format!("{:040x}", repo.commits.len());
    let _ = rev;
    (
        StatusCode::PARTIAL_CONTENT,
        [
            ("x-repo-commit", commit),
            ("etag", format!("\"{etag}\"")),
            (
                "content-range",
                format!("bytes {start}-{}/{}", end.saturating_sub(1), bytes.len()),
            ),
        ],
        bytes[start..end].to_vec(),
    )
        .into_response()
}
