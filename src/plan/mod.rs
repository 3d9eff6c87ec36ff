//! Sweeps: a manifest of cells (one model × task × condition each, one `bwb run --manifest M
//! --cell ID` each) and the files an existing engine runs them with — SkyPilot managed jobs
//! ([`skypilot`]) or Slurm job arrays ([`slurm`]). bwb never schedules machines itself;
//! `bwb collect` merges the finished cells' results into one report.

pub mod cell_sync;
pub mod skypilot;
pub mod slurm;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The manifest's file name inside a sweep folder.
pub const MANIFEST: &str = "manifest.jsonl";
/// Written last in a cell's results folder: the cell finished.
pub const DONE_MARKER: &str = "bwb-cell-done.json";
/// Written when a cell's run failed (removed when it is rerun).
pub const FAILED_MARKER: &str = "bwb-cell-failed.json";
/// The secrets every cell may need: the hub token and the API providers' keys.
pub const SECRETS: [&str; 4] = [
    "HF_TOKEN",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
];

/// Which engine runs the cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Skypilot,
    Slurm,
}

/// One line of manifest.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Hash of model, task, condition, seeds, smoke and the config and prompt files' contents.
    pub cell_id: String,
    pub model: String,
    pub task: String,
    pub condition: String,
    /// The eval seeds (run_defaults.yaml `eval_seeds`, the first `--seeds`).
    pub seeds: Vec<u64>,
    pub smoke: bool,
    /// Local models need a GPU; API-only cells do not.
    pub needs_gpu: bool,
    pub allow_code_execution: bool,
    /// The `bwb` arguments that run this cell on its own (`bwb` itself left out).
    pub args: Vec<String>,
    /// Where the cell's results go: a local folder, `hf:ORG/REPO`, `s3://…` or `r2://…`.
    pub results: String,
}

/// Where results go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Results {
    Local(PathBuf),
    /// `hf:ORG/REPO` (holds `ORG/REPO`): a hub dataset repo. Each cell pulls its folder from
    /// `cells/<cell_id>/` before it starts and pushes it there while it runs and when done.
    Hub(String),
    /// `s3://…`, `r2://…` or `gs://…`: a bucket the engine mounts as a folder (SkyPilot's
    /// `file_mounts`, at [`BUCKET_MOUNT`]); the cell finds it through [`RESULTS_DIR_ENV`].
    Bucket(String),
}

/// Where the SkyPilot task mounts a bucket results location.
pub const BUCKET_MOUNT: &str = "/bwb-results";
/// The folder a bucket results location is mounted at, on the machine running a cell.
pub const RESULTS_DIR_ENV: &str = "BWB_RESULTS_DIR";
/// The repo folder holding each cell's folder, for hub results.
pub const HUB_CELLS: &str = "cells/";

impl Results {
    pub fn parse(s: &str) -> Result<Results> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::Config(
                "--results ``: give a folder, hf:ORG/REPO, s3://BUCKET/PATH or r2://BUCKET/PATH"
                    .into(),
            ));
        }
        if let Some(repo) = s.strip_prefix("hf:") {
            let ok = repo.split('/').count() == 2 && repo.split('/').all(|p| !p.is_empty());
            if !ok {
                return Err(Error::Config(format!(
                    "--results {s}: a hub location is hf:ORG/REPO"
                )));
            }
            return Ok(Results::Hub(repo.to_string()));
        }
        if ["s3://", "r2://", "gs://"].iter().any(|p| s.starts_with(p)) {
            return Ok(Results::Bucket(s.to_string()));
        }
        if s.contains("://") {
            return Err(Error::Config(format!(
                "--results {s}: unknown scheme; give a folder, hf:ORG/REPO, s3://… or r2://…"
            )));
        }
        Ok(Results::Local(PathBuf::from(s)))
    }

    /// The folder holding the cells' folders on this machine: a local location itself, a
    /// bucket where it is mounted ([`RESULTS_DIR_ENV`]), a hub repo's local copy under
    /// `root/sweep-cells/`.
    pub fn local_dir(&self, root: &Path) -> Result<PathBuf> {
        match self {
            Results::Local(p) => Ok(p.clone()),
            Results::Hub(_) => Ok(root.join("sweep-cells")),
            Results::Bucket(url) => match std::env::var_os(RESULTS_DIR_ENV) {
                Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
                _ => Err(Error::Config(format!(
                    "results at {url} are reached through a mounted folder: mount the bucket (the SkyPilot task mounts it at {BUCKET_MOUNT}) and set {RESULTS_DIR_ENV} to that folder"
                ))),
            },
        }
    }
}

/// The cell's id: the first 16 hex digits of a SHA-256 over what decides its results.
pub fn cell_id(
    model: &str,
    task: &str,
    condition: &str,
    seeds: &[u64],
    smoke: bool,
    config_files: &[(String, Vec<u8>)],
) -> String {
    let mut h = Sha256::new();
    let seeds: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    for part in [model, task, condition, &seeds.join(","), &smoke.to_string()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for (name, bytes) in config_files {
        h.update(name.as_bytes());
        h.update([0]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The config and prompt files a cell's results depend on, with their bytes: the model's and
/// task's configs, the model's training config (when it has one), pricing, and the task's
/// prompt templates (prompts/<task>/, sorted).
pub fn config_files(root: &Path, model: &str, task: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut wanted = vec![
        (format!("configs/models/{model}.yaml"), false),
        (format!("configs/tasks/{task}.yaml"), true),
        (format!("configs/training/{model}.yaml"), false),
        ("configs/pricing.yaml".to_string(), false),
    ];
    let prompts = root.join("prompts").join(task);
    if let Ok(rd) = std::fs::read_dir(&prompts) {
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        wanted.extend(
            names
                .into_iter()
                .map(|n| (format!("prompts/{task}/{n}"), true)),
        );
    }
    let mut out = Vec::new();
    for (rel, required) in wanted {
        let path = root.join(&rel);
        match std::fs::read(&path) {
            Ok(b) => out.push((rel, b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {}
            Err(e) => {
                return Err(Error::BadFile {
                    path,
                    message: format!("cannot read it to hash the cell ({e})"),
                })
            }
        }
    }
    Ok(out)
}

/// Read a manifest: every line a [`Cell`].
pub fn read_manifest(path: &Path) -> Result<Vec<Cell>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::MissingInput(format!(
            "{}: cannot read the sweep manifest ({e}); write one with `bwb plan --out DIR`",
            path.display()
        ))
    })?;
    let mut cells = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cell: Cell = serde_json::from_str(line).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            message: format!(
                "line {}: not a manifest cell ({e}); rewrite it with `bwb plan`",
                i + 1
            ),
        })?;
        cells.push(cell);
    }
    Ok(cells)
}

/// Look a cell up by id.
pub fn find_cell<'a>(cells: &'a [Cell], manifest: &Path, id: &str) -> Result<&'a Cell> {
    cells.iter().find(|c| c.cell_id == id).ok_or_else(|| {
        Error::Config(format!(
            "--cell {id}: no such cell in {} ({} cells); use a cell_id from that file",
            manifest.display(),
            cells.len()
        ))
    })
}

/// Quote a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// What the engine files need besides the cells.
#[derive(Debug, Clone)]
pub struct EngineFiles<'a> {
    /// The sweep's name (its folder's name).
    pub sweep: &'a str,
    pub cells: &'a [Cell],
    /// SkyPilot accelerator candidates (`H100:1`, …).
    pub accelerators: &'a [String],
    /// The container images of GPU and CPU cells (`docker:` is added).
    pub image: &'a str,
    pub cpu_image: &'a str,
    /// Cells at once (Slurm `%K`).
    pub max_parallel: usize,
    /// The project root on the machines that run the cells (Slurm), holding configs/.
    pub root: &'a Path,
}

/// The files a plan writes: (name relative to the sweep folder, contents, executable).
pub fn engine_files(engine: Engine, f: &EngineFiles<'_>) -> Result<Vec<(String, String, bool)>> {
    match engine {
        Engine::Skypilot => skypilot::files(f),
        Engine::Slurm => Ok(slurm::files(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_id_changes_with_every_input() {
        let files = vec![("tasks/fpb.yaml".to_string(), b"a".to_vec())];
        let base = cell_id("m", "fpb", "zero-shot", &[1], false, &files);
        assert_eq!(base.len(), 16);
        assert_eq!(base, cell_id("m", "fpb", "zero-shot", &[1], false, &files));
        let other = vec![("tasks/fpb.yaml".to_string(), b"b".to_vec())];
        for id in [
            cell_id("n", "fpb", "zero-shot", &[1], false, &files),
            cell_id("m", "mbpp", "zero-shot", &[1], false, &files),
            cell_id("m", "fpb", "5-shot", &[1], false, &files),
            cell_id("m", "fpb", "zero-shot", &[1, 2], false, &files),
            cell_id("m", "fpb", "zero-shot", &[1], true, &files),
            cell_id("m", "fpb", "zero-shot", &[1], false, &other),
        ] {
            assert_ne!(id, base);
        }
    }

    #[test]
    fn results_locations_parse() {
        assert_eq!(
            Results::parse("hf:org/repo").unwrap(),
            Results::Hub("org/repo".into())
        );
        assert_eq!(
            Results::parse("r2://bucket/bwb").unwrap(),
            Results::Bucket("r2://bucket/bwb".into())
        );
        assert!(Results::parse("hf:org").is_err());
        assert!(Results::parse("ftp://x").is_err());
        assert_eq!(
            Results::parse("out/cells").unwrap(),
            Results::Local("out/cells".into())
        );
    }

    #[test]
    fn shell_quote_quotes_only_when_needed() {
        assert_eq!(shell_quote("abc-1"), "abc-1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
