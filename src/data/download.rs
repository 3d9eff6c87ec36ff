//! `bwb download`: fetch a task's raw files from the Hugging Face hub through `hf-hub`
//! (honouring HF_HOME / HF_HUB_CACHE, HF_TOKEN, HF_HUB_OFFLINE, HF_ENDPOINT), read them as
//! they ship (parquet, JSON, CSV) and store each raw split as data/raw/<task>/<split>.jsonl,
//! plus a manifest recording where they came from and how many rows each has.
//!
//! Smoke runs use the same code against tests/fixtures/hub, a directory in the hub-cache
//! layout (`datasets--org--name/{refs,snapshots}/…`), offline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};
use serde::{Deserialize, Serialize};

use crate::config::TaskConfig;
use crate::data::raw;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::settings::HubSettings;

/// Where a task's raw data came from; written to data/raw/<task>/manifest.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawManifest {
    pub task: String,
    pub repo: String,
    pub revision: String,
    /// Commit the revision resolved to in the hub cache, when known.
    pub commit: Option<String>,
    /// Raw split → files (paths inside the repo) and row count.
    pub splits: BTreeMap<String, RawSplitRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawSplitRecord {
    pub files: Vec<String>,
    pub rows: usize,
}

pub const MANIFEST: &str = "manifest.json";

/// The hub, as far as one download needs it: the cache, and the network unless offline.
pub struct Hub {
    cache: Cache,
    cache_dir: PathBuf,
    api: Option<Api>,
}

impl Hub {
    pub fn new(settings: &HubSettings) -> Result<Hub> {
        let cache = Cache::new(settings.cache_dir.clone());
        let api = if settings.offline {
            None
        } else {
            let mut builder = ApiBuilder::from_cache(cache.clone())
                .with_token(settings.token.clone())
                .with_progress(true);
            if let Some(ep) = &settings.endpoint {
                builder = builder.with_endpoint(ep.clone());
            }
            Some(
                builder
                    .build()
                    .map_err(|e| Error::Download(format!("cannot set up the hub client: {e}")))?,
            )
        };
        Ok(Hub {
            cache,
            cache_dir: settings.cache_dir.clone(),
            api,
        })
    }

    fn repo(task: &TaskConfig) -> Repo {
        Repo::with_revision(
            task.source.repo_id().to_string(),
            RepoType::Dataset,
            task.source.revision_name().to_string(),
        )
    }

    /// Commit hash the revision points to in the cache, if the cache has it.
    fn cached_commit(&self, repo: &Repo) -> Option<String> {
        let path = self
            .cache_dir
            .join(repo.folder_name())
            .join("refs")
            .join(repo.revision());
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Concrete file paths for the patterns of one split (a `*` matches within a segment).
    fn resolve(&self, task: &TaskConfig, patterns: &[String]) -> Result<Vec<String>> {
        let repo = Self::repo(task);
        let mut out = Vec::new();
        for pattern in patterns {
            if !pattern.contains('*') {
                out.push(pattern.clone());
                continue;
            }
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    Error::Config(format!(
                        "config `{}`: bad file pattern `{pattern}`: {e}",
                        task.id
                    ))
                })?
                .compile_matcher();
            let listing = match &self.api {
                Some(api) => {
                    let info = api.repo(repo.clone()).info().map_err(|e| {
                        Error::Download(format!(
                            "listing {}@{}: {e}; check the network and HF_TOKEN, or set HF_HUB_OFFLINE=1 to use the cache",
                            task.source.repo_id(), task.source.revision_name()
                        ))
                    })?;
                    info.siblings.into_iter().map(|s| s.rfilename).collect()
                }
                None => self.list_cached(&repo)?,
            };
            let mut matched: Vec<String> =
                listing.into_iter().filter(|f| glob.is_match(f)).collect();
            matched.sort();
            if matched.is_empty() {
                return Err(Error::Download(format!(
                    "no file of {}@{} matches `{pattern}`{}",
                    task.source.repo_id(),
                    task.source.revision_name(),
                    if self.api.is_none() {
                        format!(
                            " in the hub cache {} (HF_HUB_OFFLINE is set)",
                            self.cache_dir.display()
                        )
                    } else {
                        String::new()
                    }
                )));
            }
            out.extend(matched);
        }
        Ok(out)
    }

    /// Every file of the cached snapshot, as repo-relative paths with `/`.
    fn list_cached(&self, repo: &Repo) -> Result<Vec<String>> {
        let Some(commit) = self.cached_commit(repo) else {
            return Err(self.not_cached(repo, "its snapshot"));
        };
        let snapshot = self
            .cache_dir
            .join(repo.folder_name())
            .join("snapshots")
            .join(commit);
        let mut out = Vec::new();
        walk(&snapshot, &snapshot, &mut out);
        Ok(out)
    }

    fn not_cached(&self, repo: &Repo, file: &str) -> Error {
        Error::Download(format!(
            "HF_HUB_OFFLINE is set and {} {}@{} ({file}) is not in the hub cache {}; unset HF_HUB_OFFLINE to download it",
            if repo.url().starts_with("datasets/") { "dataset" } else { "model" },
            repo.url().trim_start_matches("datasets/"),
            repo.revision(),
            self.cache_dir.display()
        ))
    }

    /// Every file of a repo at its revision: the hub's listing online, the cached snapshot
    /// offline.
    pub fn list_files(&self, repo: &Repo) -> Result<Vec<String>> {
        match &self.api {
            Some(api) => {
                let info = api.repo(repo.clone()).info().map_err(|e| {
                    Error::Download(format!(
                        "listing {}@{}: {e}; check the network and HF_TOKEN, or set HF_HUB_OFFLINE=1 to use the cache",
                        repo.url(),
                        repo.revision()
                    ))
                })?;
                Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
            }
            None => self.list_cached(repo),
        }
    }

    /// Local path of one file of any repo: from the cache, else downloaded into it.
    pub fn get_file(&self, repo: &Repo, file: &str) -> Result<PathBuf> {
        if let Some(path) = self.cache.repo(repo.clone()).get(file) {
            return Ok(path);
        }
        match &self.api {
            None => Err(self.not_cached(repo, file)),
            Some(api) => api.repo(repo.clone()).get(file).map_err(|e| {
                Error::Download(format!(
                    "downloading {file} of {}@{}: {e}; check the network, HF_TOKEN for gated repos, or set HF_HUB_OFFLINE=1 to use the cache",
                    repo.url(),
                    repo.revision()
                ))
            }),
        }
    }

    /// Local path of one file: from the cache, else downloaded into it.
    fn get(&self, task: &TaskConfig, file: &str) -> Result<PathBuf> {
        let repo = Self::repo(task);
        if let Some(path) = self.cache.repo(repo.clone()).get(file) {
            return Ok(path);
        }
        match &self.api {
            None => Err(self.not_cached(&repo, file)),
            Some(api) => api.repo(repo).get(file).map_err(|e| {
                Error::Download(format!(
                    "downloading {file} of dataset {}@{}: {e}; check the network, HF_TOKEN for gated datasets, or set HF_HUB_OFFLINE=1 to use the cache",
                    task.source.repo_id(), task.source.revision_name()
                ))
            }),
        }
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(base, &path, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            let parts: Vec<_> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push(parts.join("/"));
        }
    }
}

/// Download one task or dataset into `raw_dir` (data/raw/<id>/). Returns the manifest
/// written. A local `source.path` has nothing to download: see [`download`].
pub fn download_task(hub: &Hub, task: &TaskConfig, raw_dir: &Path) -> Result<RawManifest> {
    if let Some(path) = &task.source.path {
        return Err(Error::Config(format!(
            "`{}` reads the local file `{path}` (source.path): there is nothing to download; `bwb prepare` reads it directly",
            task.id
        )));
    }
    fsutil::create_dir_all(raw_dir)?;
    // A missing manifest marks a download in progress: remove the old one before writing.
    match std::fs::remove_file(raw_dir.join(MANIFEST)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Write {
                path: raw_dir.join(MANIFEST),
                source,
            })
        }
    }
    let mut splits = BTreeMap::new();
    for (split, spec) in &task.source.splits {
        let files = hub.resolve(task, &spec.files)?;
        let mut rows = Vec::new();
        for file in &files {
            let local = hub.get(task, file)?;
            let label = format!(
                "{}@{} {file}",
                task.source.repo_id(),
                task.source.revision_name()
            );
            rows.extend(raw::read_rows(&local, task.source.raw_format(), &label)?);
        }
        tracing::info!(
            "{}: {split}: {} rows from {} file(s)",
            task.id,
            rows.len(),
            files.len()
        );
        fsutil::write_jsonl_atomic(&raw_dir.join(format!("{split}.jsonl")), &rows)?;
        splits.insert(
            split.clone(),
            RawSplitRecord {
                files,
                rows: rows.len(),
            },
        );
    }
    let manifest = RawManifest {
        task: task.id.clone(),
        repo: task.source.repo_id().to_string(),
        revision: task.source.revision_name().to_string(),
        commit: hub.cached_commit(&Hub::repo(task)),
        splits,
    };
    // The manifest goes last: its presence means every split file above is complete.
    fsutil::write_json_atomic(&raw_dir.join(MANIFEST), &manifest)?;
    Ok(manifest)
}

/// What `bwb download` did for one config.
pub enum Downloaded {
    Hub(RawManifest),
    /// A local `source.path`: nothing copied; `bwb prepare` reads this file directly.
    Local(PathBuf),
}

/// `bwb download` for one task or dataset: a hub source goes through [`download_task`]; a
/// local file is only checked to exist.
pub fn download(hub: &Hub, task: &TaskConfig, root: &Path, raw_dir: &Path) -> Result<Downloaded> {
    match task.source.local_file(root) {
        Some(file) if file.is_file() => Ok(Downloaded::Local(file)),
        Some(file) => Err(Error::MissingInput(format!(
            "{}: the local file named by `source.path` of `{}` does not exist; paths are relative to the project root {}",
            file.display(),
            task.id,
            root.display()
        ))),
        None => download_task(hub, task, raw_dir).map(Downloaded::Hub),
    }
}
