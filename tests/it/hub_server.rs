//! A minimal stand-in for the hub's HTTP API on 127.0.0.1, serving files from a directory in
//! the hub-cache layout: enough for hf-hub's real download path (`/api/.../revision/...` for
//! listings, `/{repo}/resolve/{rev}/{file}` with ranges, `x-repo-commit` and `etag` headers).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub struct HubServer {
    pub endpoint: String,
    /// Number of file-body requests served (not counting listings and metadata probes).
    pub downloads: Arc<AtomicUsize>,
    /// Every distinct `Authorization` header value received.
    pub auth: Arc<Mutex<Vec<String>>>,
}

/// Serve `cache` (a hub-cache layout directory) until the test process ends.
pub fn start(cache: PathBuf) -> HubServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let downloads = Arc::new(AtomicUsize::new(0));
    let auth = Arc::new(Mutex::new(Vec::new()));
    let (counter, seen) = (downloads.clone(), auth.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = handle(stream, &cache, &counter, &seen);
        }
    });
    HubServer {
        endpoint,
        downloads,
        auth,
    }
}

fn respond(
    mut s: TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )?;
    for (k, v) in headers {
        write!(s, "{k}: {v}\r\n")?;
    }
    s.write_all(b"\r\n")?;
    s.write_all(body)?;
    s.flush()
}

fn snapshot(cache: &Path, repo: &str, rev: &str) -> Option<(String, PathBuf)> {
    let folder = cache.join(format!("datasets--{}", repo.replace('/', "--")));
    let commit = std::fs::read_to_string(folder.join("refs").join(rev)).ok()?;
    let dir = folder.join("snapshots").join(&commit);
    Some((commit, dir))
}

fn list(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            list(&p, base, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

fn handle(
    stream: TcpStream,
    cache: &Path,
    downloads: &AtomicUsize,
    auth: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut range_start: Option<usize> = None;
    let mut probe = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("authorization:") {
            let value = line["authorization:".len()..].trim().to_string();
            let mut seen = auth.lock().unwrap();
            if !seen.contains(&value) {
                seen.push(value);
            }
        }
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            let v = v.trim();
            probe = v == "0-0";
            range_start = v.split('-').next().and_then(|s| s.parse().ok());
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    // Listing: /api/datasets/{org}/{name}/revision/{rev}
    if let Some(rest) = path.strip_prefix("/api/datasets/") {
        let (repo, rev) = rest.split_once("/revision/").unwrap();
        let rev = rev.replace("%2F", "/");
        let Some((commit, dir)) = snapshot(cache, repo, &rev) else {
            return respond(stream, "404 Not Found", &[], b"{}");
        };
        let mut files = Vec::new();
        list(&dir, &dir, &mut files);
        let siblings: Vec<_> = files
            .iter()
            .map(|f| serde_json::json!({"rfilename": f}))
            .collect();
        let body = serde_json::json!({"sha": commit, "siblings": siblings}).to_string();
        return respond(
            stream,
            "200 OK",
            &[("Content-Type".into(), "application/json".into())],
            body.as_bytes(),
        );
    }
    // File: /datasets/{org}/{name}/resolve/{rev}/{file}
    if let Some(rest) = path.strip_prefix("/datasets/") {
        let (repo, tail) = rest.split_once("/resolve/").unwrap();
        let (rev, file) = tail.split_once('/').unwrap();
        let rev = rev.replace("%2F", "/");
        let Some((commit, dir)) = snapshot(cache, repo, &rev) else {
            return respond(stream, "404 Not Found", &[], b"");
        };
        let Ok(bytes) = std::fs::read(dir.join(file)) else {
            return respond(stream, "404 Not Found", &[], b"");
        };
        let start = range_start.unwrap_or(0).min(bytes.len());
        let end = if probe {
            1.min(bytes.len())
        } else {
            bytes.len()
        };
        if !probe {
            downloads.fetch_add(1, Ordering::SeqCst);
        }
        let headers = vec![
            ("x-repo-commit".to_string(), commit),
            (
                "etag".to_string(),
                format!("\"{}-{}\"", file.replace('/', "_"), bytes.len()),
            ),
            (
                "Content-Range".to_string(),
                format!("bytes {start}-{}/{}", end.saturating_sub(1), bytes.len()),
            ),
        ];
        return respond(stream, "206 Partial Content", &headers, &bytes[start..end]);
    }
    respond(stream, "404 Not Found", &[], b"")
}
