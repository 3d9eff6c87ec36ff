//! `bwb sync`: one private hub **dataset** repo per project mirrors the project's outputs at
//! the same paths they have locally (`checkpoints/<model>/<task>/<condition>/adapter/…`,
//! `results/predictions/…`, …), so `--direction down` on a fresh machine restores each file
//! where bwb looks for it. (A dataset repo, because most of what it holds is results; a
//! pushed adapter meant for PEFT users gets its own model repo, `bwb train --auto-upload`.)
//!
//! Up lists the remote (tree API), uploads only files that are new or whose content differs
//! (LFS sha256, else git blob sha1), sends LFS objects first and then makes **one** commit.
//! A commit whose answer is lost (5xx, connection) is never blindly retried: the remote is
//! listed again and only what is still missing is committed, so an interrupted sync run
//! again converges without a duplicate commit, and nothing changed means no commit.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};
use sha2::Digest;

use super::client::{CommitFile, CommitOutcome, HubClient, RemoteFile, RepoKind, Token};
use crate::backend::api::RetryPolicy;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::settings::HubSettings;

/// What to sync (`--what`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum What {
    /// checkpoints/<model>/<task>/<condition>/adapter/ (the trained PEFT adapters)
    Adapters,
    /// results/predictions/ and results/classified/
    Predictions,
    /// results/summaries/ and results/experiments/
    Summaries,
    /// results/training/ (training records and per-step metrics)
    Training,
    /// data/prepared/
    Prepared,
    /// All of the above
    All,
}

impl What {
    pub const EACH: [What; 5] = [
        What::Adapters,
        What::Predictions,
        What::Summaries,
        What::Training,
        What::Prepared,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Adapters => "adapters",
            Self::Predictions => "predictions",
            Self::Summaries => "summaries",
            Self::Training => "training",
            Self::Prepared => "prepared",
            Self::All => "all",
        }
    }

    fn expand(self) -> Vec<What> {
        if self == What::All {
            What::EACH.to_vec()
        } else {
            vec![self]
        }
    }

    /// The folders (relative to the project root, `/`-separated) holding this kind.
    fn dirs(self, ns: &str) -> Vec<String> {
        match self {
            Self::Adapters => vec![format!("checkpoints/{ns}")],
            Self::Predictions => vec![
                format!("results/{ns}predictions/"),
                format!("results/{ns}classified/"),
            ],
            Self::Summaries => vec![
                format!("results/{ns}summaries/"),
                format!("results/{ns}experiments/"),
            ],
            Self::Training => vec![format!("results/{ns}training/")],
            Self::Prepared => vec![format!("data/{ns}prepared/")],
            Self::All => vec![],
        }
    }

    /// Whether the project-relative path `rel` is one of this kind's files.
    fn covers(self, rel: &str, ns: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if name.starts_with('.') {
            return false; // temporary files (.bwb-tmp-*) and the like
        }
        self.dirs(ns).iter().any(|d| {
            let Some(rest) = rel.strip_prefix(d.as_str()) else {
                return false;
            };
            match self {
                // <model>/<task>/<condition>/adapter/<file>: the final adapter only, not the
                // resumable step checkpoints.
                Self::Adapters => {
                    let parts: Vec<&str> = rest.split('/').collect();
                    parts.len() == 5 && parts[3] == crate::train::checkpoint::FINAL_DIR
                }
                _ => !rest.is_empty(),
            }
        })
    }
}

/// `--direction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Up,
    Down,
}

pub struct SyncOptions {
    pub what: What,
    pub direction: Direction,
    /// ORG/NAME of the dataset repo.
    pub repo: String,
    pub dry_run: bool,
    /// Create the repo public (default: private).
    pub public: bool,
    pub retry: RetryPolicy,
}

/// What a sync did (or would do, with `--dry-run`).
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Project-relative paths sent or fetched (would be, on a dry run).
    pub transferred: Vec<String>,
    /// Files already the same on both sides.
    pub unchanged: usize,
    /// LFS objects uploaded (up).
    pub lfs_uploaded: usize,
    /// The commit made (up), if any.
    pub commit: Option<String>,
}

/// A local file and its content hashes.
struct LocalFile {
    rel: String,
    bytes: Vec<u8>,
    sha256: String,
    git_sha1: String,
}

fn hashes(bytes: &[u8]) -> (String, String) {
    let sha256 = hex(&sha2::Sha256::digest(bytes));
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    (sha256, hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether a remote file holds these bytes.
fn same(remote: &RemoteFile, sha256: &str, git_sha1: &str) -> bool {
    match &remote.lfs_sha256 {
        Some(s) => s == sha256,
        None => remote.oid == git_sha1,
    }
}

fn namespace(paths: &Paths) -> &'static str {
    if paths.smoke {
        "smoke/"
    } else {
        ""
    }
}

fn selected(whats: &[What], rel: &str, ns: &str) -> bool {
    whats.iter().any(|w| w.covers(rel, ns))
}

/// The local files of these kinds, sorted by path.
fn local_files(paths: &Paths, whats: &[What]) -> Result<Vec<LocalFile>> {
    let ns = namespace(paths);
    let mut rels = BTreeSet::new();
    for w in whats {
        for d in w.dirs(ns) {
            walk(&paths.root, &paths.root.join(&d), &mut rels);
        }
    }
    rels.into_iter()
        .filter(|r| selected(whats, r, ns))
        .map(|rel| read_local(&paths.root.join(&rel), rel))
        .collect()
}

/// The file at `abs`, to be stored at repo path `rel`.
fn read_local(abs: &Path, rel: String) -> Result<LocalFile> {
    let bytes = std::fs::read(abs).map_err(|e| {
        Error::MissingInput(format!("{}: cannot read it to sync: {e}", abs.display()))
    })?;
    let (sha256, git_sha1) = hashes(&bytes);
    Ok(LocalFile {
        rel,
        bytes,
        sha256,
        git_sha1,
    })
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let parts: Vec<_> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.insert(parts.join("/"));
        }
    }
}

/// The hub token, or an error saying how to provide one.
pub fn token(hub: &HubSettings) -> Result<Token> {
    hub.token.clone().map(Token::new).ok_or_else(|| {
        Error::Config(
            "no Hugging Face token: set HF_TOKEN (in the environment or .env) or run `huggingface-cli login`, which writes $HF_HOME/token; `bwb sync` needs a token with write access".into(),
        )
    })
}

fn endpoint(hub: &HubSettings) -> String {
    hub.endpoint
        .clone()
        .unwrap_or_else(|| "https://huggingface.co".into())
}

/// `bwb sync`.
pub fn sync(paths: &Paths, hub: &HubSettings, opts: &SyncOptions) -> Result<SyncReport> {
    super::check_repo_id(&opts.repo, "--repo")?;
    if hub.offline {
        return Err(Error::Config(
            "HF_HUB_OFFLINE is set: `bwb sync` needs the hub; unset HF_HUB_OFFLINE".into(),
        ));
    }
    let client = HubClient::new(
        &endpoint(hub),
        token(hub)?,
        &opts.repo,
        RepoKind::Dataset,
        opts.retry.clone(),
    )?;
    match opts.direction {
        Direction::Up => up(paths, &client, opts),
        Direction::Down => down(paths, hub, &client, opts),
    }
}

fn kinds_label(whats: &[What]) -> String {
    whats
        .iter()
        .map(|w| w.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The local files that differ from (or are missing in) the remote listing.
fn changed<'a>(local: &'a [LocalFile], remote: &[RemoteFile]) -> Vec<&'a LocalFile> {
    let by_path: HashMap<&str, &RemoteFile> = remote.iter().map(|r| (r.path.as_str(), r)).collect();
    local
        .iter()
        .filter(|f| {
            !by_path
                .get(f.rel.as_str())
                .is_some_and(|r| same(r, &f.sha256, &f.git_sha1))
        })
        .collect()
}

fn up(paths: &Paths, client: &HubClient, opts: &SyncOptions) -> Result<SyncReport> {
    let whats = opts.what.expand();
    let local = local_files(paths, &whats)?;
    let title = format!("bwb sync: {{n}} file(s) ({})", kinds_label(&whats));
    push(client, &local, &title, opts)
}

/// Upload `files` (repo path, content) to a repo made with `client` (created, private
/// unless `public`, when missing): only what differs, in one commit titled `title`.
pub fn upload_files(
    client: &HubClient,
    files: Vec<(String, Vec<u8>)>,
    title: &str,
    public: bool,
    retry: RetryPolicy,
) -> Result<SyncReport> {
    let local: Vec<LocalFile> = files
        .into_iter()
        .map(|(rel, bytes)| {
            let (sha256, git_sha1) = hashes(&bytes);
            LocalFile {
                rel,
                bytes,
                sha256,
                git_sha1,
            }
        })
        .collect();
    let opts = SyncOptions {
        what: What::All,
        direction: Direction::Up,
        repo: client.repo.clone(),
        dry_run: false,
        public,
        retry,
    };
    push(client, &local, title, &opts)
}

/// The client for `repo` of `kind` with the hub settings' endpoint and token.
pub fn client(
    hub: &HubSettings,
    repo: &str,
    kind: RepoKind,
    retry: RetryPolicy,
) -> Result<HubClient> {
    super::check_repo_id(repo, "repo")?;
    if hub.offline {
        return Err(Error::Config(
            "HF_HUB_OFFLINE is set: uploading needs the hub; unset HF_HUB_OFFLINE".into(),
        ));
    }
    HubClient::new(&endpoint(hub), token(hub)?, repo, kind, retry)
}

/// `title`'s `{n}` becomes the number of files committed.
fn push(
    client: &HubClient,
    local: &[LocalFile],
    title: &str,
    opts: &SyncOptions,
) -> Result<SyncReport> {
    let remote = client.list()?;
    let exists = remote.is_some();
    let remote = remote.unwrap_or_default();
    let todo = changed(local, &remote);
    let mut report = SyncReport {
        transferred: todo.iter().map(|f| f.rel.clone()).collect(),
        unchanged: local.len() - todo.len(),
        ..SyncReport::default()
    };
    if todo.is_empty() || opts.dry_run {
        return Ok(report);
    }
    if !exists {
        client.create_repo(!opts.public)?;
    }
    let modes = client.preupload(
        &todo
            .iter()
            .map(|f| (f.rel.as_str(), f.bytes.as_slice()))
            .collect::<Vec<_>>(),
    )?;
    let mut files = Vec::new();
    for (f, (lfs, ignored)) in todo.iter().zip(modes) {
        if ignored {
            tracing::warn!(
                "{}: the hub ignores this path (its .gitignore); not uploaded",
                f.rel
            );
            continue;
        }
        files.push(CommitFile {
            path: f.rel.clone(),
            content: f.bytes.clone(),
            sha256: f.sha256.clone(),
            lfs,
        });
    }
    report.transferred = files.iter().map(|f| f.path.clone()).collect();
    let lfs: Vec<&CommitFile> = files.iter().filter(|f| f.lfs).collect();
    report.lfs_uploaded = client.upload_lfs(&lfs)?;

    let summary = title.replace("{n}", &files.len().to_string());
    let description = files
        .iter()
        .map(|f| {
            format!(
                "- {} ({} bytes{})",
                f.path,
                f.content.len(),
                if f.lfs { ", LFS" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rng = rand::rng();
    let mut failures = 0u32;
    loop {
        match client.commit(&summary, &description, &files)? {
            CommitOutcome::Done { oid, url } => {
                report.commit = Some(if url.is_empty() { oid } else { url });
                return Ok(report);
            }
            CommitOutcome::Unknown(why) => {
                failures += 1;
                // It may have landed: commit only what the remote still lacks.
                let remote = client.list()?.unwrap_or_default();
                let by_path: HashMap<&str, &RemoteFile> =
                    remote.iter().map(|r| (r.path.as_str(), r)).collect();
                files.retain(|f| {
                    !by_path.get(f.path.as_str()).is_some_and(|r| {
                        let (sha256, sha1) = hashes(&f.content);
                        same(r, &sha256, &sha1)
                    })
                });
                if files.is_empty() {
                    tracing::info!("the commit landed despite the error ({why})");
                    return Ok(report);
                }
                if failures >= opts.retry.max_attempts {
                    return Err(Error::Download(format!(
                        "committing to {} failed: {why}; run the same `bwb sync` again: files already uploaded are not sent twice",
                        client.label()
                    )));
                }
                std::thread::sleep(opts.retry.delay(failures, None, &mut rng));
            }
        }
    }
}

/// `rel` as a path inside the project, or an error for one that would leave it.
fn inside(root: &Path, rel: &str, repo: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::Download(format!(
            "{repo}: the remote path `{rel}` is not a plain relative path; refusing to write it"
        )));
    }
    Ok(root.join(p))
}

fn down(
    paths: &Paths,
    hub: &HubSettings,
    client: &HubClient,
    opts: &SyncOptions,
) -> Result<SyncReport> {
    let whats = opts.what.expand();
    let ns = namespace(paths);
    let remote = client.list()?.ok_or_else(|| {
        Error::Download(format!(
            "{} does not exist or this token cannot see it; check --repo, HF_TOKEN, and that `bwb sync --direction up` ran",
            client.label()
        ))
    })?;
    let mut report = SyncReport::default();
    let mut todo = Vec::new();
    for r in remote.iter().filter(|r| selected(&whats, &r.path, ns)) {
        let abs = inside(&paths.root, &r.path, &client.label())?;
        let up_to_date = std::fs::read(&abs).is_ok_and(|b| {
            let (sha256, sha1) = hashes(&b);
            same(r, &sha256, &sha1)
        });
        if up_to_date {
            report.unchanged += 1;
        } else {
            todo.push((r, abs));
        }
    }
    report.transferred = todo.iter().map(|(r, _)| r.path.clone()).collect();
    if !opts.dry_run {
        fetch(hub, client, &opts.retry, &todo)?;
    }
    Ok(report)
}

/// One local folder mirrored under a prefix of a dataset repo (a sweep cell's folder under
/// `cells/<cell_id>/`).
pub struct DirSync<'a> {
    /// ORG/NAME of the dataset repo.
    pub repo: &'a str,
    pub local: &'a Path,
    /// Repo path prefix, ending in `/`.
    pub prefix: &'a str,
    /// Folder-relative (`/`-separated) paths left out both ways.
    pub skip: &'a dyn Fn(&str) -> bool,
    pub retry: RetryPolicy,
}

/// Push every file under `d.local` (but temporary dot-files and `skip`ped ones) to
/// `d.prefix` in one commit (none when nothing changed); the repo is created private when
/// missing.
pub fn push_dir(hub: &HubSettings, d: &DirSync<'_>, title: &str) -> Result<SyncReport> {
    let client = client(hub, d.repo, RepoKind::Dataset, d.retry.clone())?;
    let mut rels = BTreeSet::new();
    walk(d.local, d.local, &mut rels);
    let local = rels
        .into_iter()
        .filter(|rel| !(d.skip)(rel) && !rel.split('/').any(|part| part.starts_with('.')))
        .map(|rel| read_local(&d.local.join(&rel), format!("{}{rel}", d.prefix)))
        .collect::<Result<Vec<_>>>()?;
    let opts = SyncOptions {
        what: What::All,
        direction: Direction::Up,
        repo: d.repo.to_string(),
        dry_run: false,
        public: false,
        retry: d.retry.clone(),
    };
    push(&client, &local, title, &opts)
}

/// Fetch the files under `d.prefix` into `d.local`. A missing repo is an empty one. With
/// `keep_local`, files already present locally are kept as they are (on the machine that
/// wrote them they are at least as new as what it pushed).
pub fn pull_dir(hub: &HubSettings, d: &DirSync<'_>, keep_local: bool) -> Result<SyncReport> {
    let client = client(hub, d.repo, RepoKind::Dataset, d.retry.clone())?;
    let remote = client.list()?.unwrap_or_default();
    let mut report = SyncReport::default();
    let mut todo = Vec::new();
    for r in &remote {
        let Some(rel) = r.path.strip_prefix(d.prefix) else {
            continue;
        };
        if (d.skip)(rel) {
            continue;
        }
        let abs = inside(d.local, rel, &client.label())?;
        let keep = match std::fs::read(&abs) {
            Ok(b) => {
                keep_local || {
                    let (sha256, sha1) = hashes(&b);
                    same(r, &sha256, &sha1)
                }
            }
            Err(_) => false,
        };
        if keep {
            report.unchanged += 1;
        } else {
            todo.push((r, abs));
        }
    }
    report.transferred = todo.iter().map(|(r, _)| r.path.clone()).collect();
    fetch(hub, &client, &d.retry, &todo)?;
    Ok(report)
}

/// Download each remote file to its local path (checked against the hub's hash, written
/// atomically).
fn fetch(
    hub: &HubSettings,
    client: &HubClient,
    retry: &RetryPolicy,
    todo: &[(&RemoteFile, PathBuf)],
) -> Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let mut builder = ApiBuilder::from_cache(hf_hub::Cache::new(hub.cache_dir.clone()))
        .with_token(hub.token.clone())
        .with_endpoint(endpoint(hub))
        .with_progress(false);
    if let Some(n) = retry.max_attempts.checked_sub(1) {
        builder = builder.with_retries(n as usize);
    }
    let api = builder
        .build()
        .map_err(|e| Error::Download(format!("cannot set up the hub client: {e}")))?;
    let repo = api.repo(Repo::with_revision(
        client.repo.clone(),
        RepoType::Dataset,
        client.revision.clone(),
    ));
    for (r, abs) in todo {
        let cached = repo.download(&r.path).map_err(|e| {
            Error::Download(format!(
                "downloading {} from {}: {e}; check the network and HF_TOKEN, then run the same `bwb sync` again",
                r.path,
                client.label()
            ))
        })?;
        let bytes = std::fs::read(&cached).map_err(|e| {
            Error::Download(format!(
                "{}: cannot read the download: {e}",
                cached.display()
            ))
        })?;
        let (sha256, sha1) = hashes(&bytes);
        if !same(r, &sha256, &sha1) {
            return Err(Error::Download(format!(
                "{} from {}: the downloaded content does not match the hub's hash; run the same `bwb sync` again",
                r.path,
                client.label()
            )));
        }
        crate::fsutil::write_bytes_atomic(abs, &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_covers_its_paths_in_its_namespace() {
        let a = "checkpoints/qwen3-8b/fpb/lora-500/adapter/adapter_model.safetensors";
        assert!(What::Adapters.covers(a, ""));
        assert!(!What::Adapters.covers(
            "checkpoints/qwen3-8b/fpb/lora-500/step-000120/adapter_model.safetensors",
            ""
        ));
        assert!(!What::Adapters.covers(
            "checkpoints/qwen3-8b/fpb/lora-500/adapter/.bwb-tmp-1.safetensors",
            ""
        ));
        let s = "checkpoints/smoke/smoke/fpb/lora-500/adapter/adapter_config.json";
        assert!(What::Adapters.covers(s, "smoke/"));
        assert!(!What::Adapters.covers(s, ""));
        assert!(What::Predictions.covers("results/predictions/m/t/c/seed-0.jsonl", ""));
        assert!(!What::Predictions.covers("results/smoke/predictions/m/t/c/seed-0.jsonl", ""));
        assert!(What::Predictions.covers("results/smoke/predictions/m/t/c/seed-0.jsonl", "smoke/"));
        assert!(What::Summaries.covers("results/summaries/fpb.json", ""));
        assert!(What::Training.covers("results/training/a_b_c.json", ""));
        assert!(What::Prepared.covers("data/prepared/fpb/test.jsonl", ""));
        assert!(!What::Prepared.covers("data/raw/fpb/test.jsonl", ""));
    }

    #[test]
    fn git_blob_sha1_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            hashes(b"hello\n").1,
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn remote_paths_stay_inside_the_project() {
        let root = Path::new("/p");
        assert_eq!(
            inside(root, "results/a.json", "r").unwrap(),
            PathBuf::from("/p/results/a.json")
        );
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(inside(root, bad, "r").is_err(), "{bad}");
        }
    }
}
