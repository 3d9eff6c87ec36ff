//! `bwb prepare`: data/raw/<task>/ → data/prepared/<task>/{train,val,test}.jsonl of `Example`.
//!
//! 1. Read each raw split; check its row count against the download manifest (always) and
//!    the real dataset's count from the task config (real runs), so a truncated download
//!    fails loudly.
//! 2. Convert rows to `Example`s; a malformed row is an error naming file and line.
//! 3. Test: the configured raw split sampled to `test_sample_size`, or held out of train.
//! 4. Validation: the configured raw split sampled to `val_size`, or held out of train.
//! 5. Train: the rest, in a seeded order whose every prefix is stratified (so `lora-500`
//!    is the first 500 lines), capped at `training_cap`.
//!    Every split is stratified by label; `balance_strata` makes strata equal (CUAD 50/50).
//!
//! Same raw data + same seed → byte-identical files.
//!
//! Eval-only datasets (configs/datasets/, no train split) go through [`prepare_eval_only`]:
//! each raw split whole, in file order, as data/prepared/<id>/<raw split>.jsonl; the
//! experiments runner reads [`eval_split_path`] / [`read_eval_split`].
//! A local `source.path` (bring your own data) is read directly instead of data/raw/.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{RawFormat, TaskConfig, LOCAL_SPLIT};
use crate::data::download::{RawManifest, RawSplitRecord, MANIFEST};
use crate::data::{raw, sample, tasks, Example};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::paths::Paths;

/// Written to data/prepared/<task>/manifest.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedManifest {
    pub task: String,
    pub seed: u64,
    pub source_repo: String,
    pub source_revision: String,
    pub source_commit: Option<String>,
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// Examples `lora-500` trains on: the first `train_500` lines of train.jsonl.
    pub train_500: usize,
    pub training_cap: usize,
    /// Examples per stratum in each split.
    pub strata: BTreeMap<String, BTreeMap<String, usize>>,
    /// Rows of each raw split read (a local file's count is reported here).
    #[serde(default)]
    pub raw_rows: BTreeMap<String, usize>,
}

/// Written to data/prepared/<dataset>/manifest.json for an eval-only dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalManifest {
    pub task: String,
    pub source_repo: String,
    pub source_revision: String,
    pub source_commit: Option<String>,
    /// The raw split experiments evaluate (`splits.test`).
    pub eval_split: String,
    /// Raw split → examples written to <split>.jsonl (every row, in file order).
    pub splits: BTreeMap<String, usize>,
}

pub const SPLITS: [&str; 3] = ["train", "val", "test"];

fn stratum(e: &Example) -> Option<String> {
    e.stratum.clone()
}

/// Where one config's raw rows are read from.
pub enum RawInput {
    /// data/raw/<id>/, as `bwb download` wrote it.
    Downloaded { dir: PathBuf, manifest: RawManifest },
    /// A local `source.path` (bring your own data), read once, directly.
    Local { file: PathBuf, rows: Vec<raw::Row> },
}

impl RawInput {
    /// The download manifest, or one describing the local file (revision `local`).
    pub fn manifest(&self, task: &TaskConfig) -> RawManifest {
        match self {
            RawInput::Downloaded { manifest, .. } => manifest.clone(),
            RawInput::Local { file, rows } => RawManifest {
                task: task.id.clone(),
                repo: file.display().to_string(),
                revision: "local".to_string(),
                commit: None,
                splits: BTreeMap::from([(
                    LOCAL_SPLIT.to_string(),
                    RawSplitRecord {
                        files: vec![file.display().to_string()],
                        rows: rows.len(),
                    },
                )]),
            },
        }
    }
}

/// Open a config's raw data: the download manifest, or the local file read whole.
pub fn open_raw(task: &TaskConfig, paths: &Paths, download_cmd: &str) -> Result<RawInput> {
    if let Some(file) = task.source.local_file(&paths.root) {
        if !file.is_file() {
            return Err(Error::MissingInput(format!(
                "{}: the local file named by `source.path` of `{}` does not exist; paths are relative to the project root {}",
                file.display(),
                task.id,
                paths.root.display()
            )));
        }
        let label = format!("`{}` source.path", task.id);
        let hint = "fix the file or point `source.path` at another";
        let rows = raw::read_rows_hint(&file, task.source.raw_format(), &label, hint)?;
        if rows.is_empty() {
            return Err(Error::BadFile {
                path: file,
                message: format!("has no rows; `{}` needs at least one", task.id),
            });
        }
        tracing::info!("{}: {} rows in {}", task.id, rows.len(), file.display());
        return Ok(RawInput::Local { file, rows });
    }
    let dir = paths.raw(&task.id);
    let manifest_path = dir.join(MANIFEST);
    let manifest: RawManifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: manifest_path.clone(),
            message: format!("{e}; run `{download_cmd}` again"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingInput(format!(
                "no raw data for `{}` in {}; run `{download_cmd}` first",
                task.id,
                dir.display()
            )))
        }
        Err(e) => {
            return Err(Error::BadFile {
                path: manifest_path,
                message: e.to_string(),
            })
        }
    };
    Ok(RawInput::Downloaded { dir, manifest })
}

/// Read one downloaded raw split, checking its row count against the manifest (always) and
/// the real dataset's (real runs).
fn downloaded_rows(
    task: &TaskConfig,
    dir: &Path,
    manifest: &RawManifest,
    split: &str,
    smoke: bool,
    download_cmd: &str,
) -> Result<(PathBuf, Vec<raw::Row>)> {
    let path = dir.join(format!("{split}.jsonl"));
    let Some(record) = manifest.splits.get(split) else {
        return Err(Error::MissingInput(format!(
            "{} has no raw split `{split}`; the config changed since the download: run `{download_cmd}`",
            dir.join(MANIFEST).display()
        )));
    };
    if !path.exists() {
        return Err(Error::MissingInput(format!(
            "{} is missing; run `{download_cmd}`",
            path.display()
        )));
    }
    let rows = raw::read_jsonl(&path)?;
    if rows.len() != record.rows {
        return Err(Error::BadFile {
            path: path.clone(),
            message: format!(
                "has {} rows but the download wrote {}; the file was truncated or edited: run `{download_cmd}`",
                rows.len(),
                record.rows
            ),
        });
    }
    let expected = task.source.splits.get(split).and_then(|s| s.rows);
    if let Some(expected) = expected.filter(|n| !smoke && rows.len() != *n) {
        return Err(Error::BadFile {
            path: path.clone(),
            message: format!(
                "has {} rows but {} `{split}` has {expected} (the `{}` config); the download is incomplete or the dataset changed: run `{download_cmd}`",
                rows.len(),
                task.source.repo_id(),
                task.id
            ),
        });
    }
    Ok((path, rows))
}

/// Read and convert one raw split; a bad row is an error naming the file, its line (row for
/// parquet / JSON files) and the column.
pub fn load_split(
    task: &TaskConfig,
    input: &RawInput,
    split: &str,
    smoke: bool,
    download_cmd: &str,
) -> Result<Vec<Example>> {
    let (path, rows, fix) = match input {
        RawInput::Downloaded { dir, manifest } => {
            let (path, rows) = downloaded_rows(task, dir, manifest, split, smoke, download_cmd)?;
            (
                path,
                std::borrow::Cow::Owned(rows),
                format!("fix the row or run `{download_cmd}` again"),
            )
        }
        RawInput::Local { file, rows } => (
            file.clone(),
            std::borrow::Cow::Borrowed(rows),
            "fix the row in the file".to_string(),
        ),
    };
    let local_format = matches!(input, RawInput::Local { .. }).then(|| task.source.raw_format());
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            tasks::to_example(task, split, i, row).map_err(|message| match local_format {
                Some(RawFormat::Parquet | RawFormat::Json) => Error::BadFile {
                    path: path.clone(),
                    message: format!("row {}: {message}; {fix}", i + 1),
                },
                // CSV: the header is line 1.
                Some(RawFormat::Csv) => Error::BadRow {
                    path: path.clone(),
                    line: i + 2,
                    message: format!("{message}; {fix}"),
                },
                _ => Error::BadRow {
                    path: path.clone(),
                    line: i + 1,
                    message: format!("{message}; {fix}"),
                },
            })
        })
        .collect()
}

/// Split one task's raw data into train/val/test examples (no I/O besides reading raw).
pub fn split_task(
    task: &TaskConfig,
    paths: &Paths,
    seed: u64,
) -> Result<(BTreeMap<&'static str, Vec<Example>>, RawManifest)> {
    let raw_dir = paths.raw(&task.id);
    let smoke_flag = if paths.smoke { " --smoke-test" } else { "" };
    let download_cmd = format!("bwb download --task {}{smoke_flag}", task.id);
    let input = open_raw(task, paths, &download_cmd)?;
    let manifest = input.manifest(task);
    let Some(train_split) = task.splits.train.clone() else {
        return Err(Error::Config(format!(
            "`{}` is an eval-only dataset (no `splits.train`): it has no train/val/test split to make; `bwb prepare` writes each raw split whole",
            task.id
        )));
    };
    let load = |split: &str| load_split(task, &input, split, paths.smoke, &download_cmd);
    let seed_for = |purpose: &str| sample::rng(seed, &format!("{}/{purpose}", task.id));
    let maybe_balance = |v: Vec<Example>, purpose: &str| {
        if task.balance_strata {
            sample::balance(v, stratum, &mut seed_for(purpose))
        } else {
            v
        }
    };

    let sizes = task.sizes(paths.smoke);
    let pool = maybe_balance(load(&train_split)?, "balance-train");
    // A split comes from its own raw split, or is held out of the training pool.
    let take = |raw: &Option<String>, n: usize, purpose: &str, pool: Vec<Example>| -> Result<_> {
        match raw {
            Some(s) if *s != train_split => {
                let all = maybe_balance(load(s)?, &format!("balance-{purpose}"));
                let taken = sample::stratified_take(all, n, stratum, &mut seed_for(purpose)).0;
                Ok((taken, pool))
            }
            _ => Ok(sample::stratified_take(
                pool,
                n,
                stratum,
                &mut seed_for(purpose),
            )),
        }
    };
    let (test, pool) = take(&task.splits.test, sizes.test, "test", pool)?;
    let (val, pool) = take(&task.splits.val, sizes.val, "val", pool)?;
    let mut train = sample::interleave(pool, stratum, &mut seed_for("train"));
    train.truncate(sizes.training_cap);

    for (name, split) in [("train", &train), ("val", &val), ("test", &test)] {
        if split.is_empty() {
            return Err(Error::MissingInput(format!(
                "task `{}`: the {name} split came out empty; the raw data in {} is too small for val_size {} and test_sample_size {}",
                task.id,
                raw_dir.display(),
                sizes.val,
                sizes.test
            )));
        }
    }
    // Ids must be unique across splits, or train/test leakage would go unnoticed.
    let mut seen = HashSet::new();
    for e in train.iter().chain(&val).chain(&test) {
        if !seen.insert(e.id.as_str()) {
            return Err(Error::BadFile {
                path: raw_dir.clone(),
                message: format!(
                    "example id `{}` occurs twice across train/val/test of task `{}`",
                    e.id, task.id
                ),
            });
        }
    }
    let mut out = BTreeMap::new();
    out.insert("train", train);
    out.insert("val", val);
    out.insert("test", test);
    Ok((out, manifest))
}

fn count_strata(v: &[Example]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in v {
        *m.entry(e.stratum.clone().unwrap_or_else(|| "-".into()))
            .or_insert(0) += 1;
    }
    m
}

/// Prepare one task and write its files. Returns the manifest written.
pub fn prepare_task(task: &TaskConfig, paths: &Paths, seed: u64) -> Result<PreparedManifest> {
    let (splits, raw_manifest) = split_task(task, paths, seed)?;
    let dir = paths.prepared(&task.id);
    clear_manifest(&dir)?;
    for name in SPLITS {
        fsutil::write_jsonl_atomic(&dir.join(format!("{name}.jsonl")), &splits[name])?;
    }
    let manifest = PreparedManifest {
        task: task.id.clone(),
        seed,
        source_repo: raw_manifest.repo,
        source_revision: raw_manifest.revision,
        source_commit: raw_manifest.commit,
        train: splits["train"].len(),
        val: splits["val"].len(),
        test: splits["test"].len(),
        train_500: splits["train"].len().min(500),
        training_cap: task.sizes(paths.smoke).training_cap,
        strata: SPLITS
            .iter()
            .map(|s| (s.to_string(), count_strata(&splits[s])))
            .collect(),
        raw_rows: raw_manifest
            .splits
            .iter()
            .map(|(k, v)| (k.clone(), v.rows))
            .collect(),
    };
    fsutil::write_json_atomic(&dir.join(MANIFEST), &manifest)?;
    Ok(manifest)
}

/// Remove `dir`'s manifest before rewriting it: a missing manifest marks a preparation in
/// progress.
fn clear_manifest(dir: &Path) -> Result<()> {
    fsutil::create_dir_all(dir)?;
    match std::fs::remove_file(dir.join(MANIFEST)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Write {
            path: dir.join(MANIFEST),
            source,
        }),
    }
}

/// Prepare an eval-only dataset: every raw split of `source.splits` becomes
/// data/[smoke/]prepared/<id>/<raw split>.jsonl holding all its rows as `Example`s (the
/// dataset's own ids, file order); the experiments runner samples from it. Returns the
/// manifest written.
pub fn prepare_eval_only(task: &TaskConfig, paths: &Paths) -> Result<EvalManifest> {
    let smoke_flag = if paths.smoke { " --smoke-test" } else { "" };
    let download_cmd = format!("bwb download --task {}{smoke_flag}", task.id);
    let input = open_raw(task, paths, &download_cmd)?;
    let raw_manifest = input.manifest(task);
    let mut splits = BTreeMap::new();
    for split in task.source.splits.keys() {
        let examples = load_split(task, &input, split, paths.smoke, &download_cmd)?;
        let mut seen = HashSet::new();
        if let Some(dup) = examples.iter().find(|e| !seen.insert(e.id.as_str())) {
            return Err(Error::BadFile {
                path: paths.raw(&task.id).join(format!("{split}.jsonl")),
                message: format!(
                    "example id `{}` occurs twice in raw split `{split}` of `{}`; ids must be unique (map `id` in `columns` to a unique column)",
                    dup.id, task.id
                ),
            });
        }
        splits.insert(split.clone(), examples);
    }
    let dir = paths.prepared(&task.id);
    clear_manifest(&dir)?;
    for (split, examples) in &splits {
        fsutil::write_jsonl_atomic(&dir.join(format!("{split}.jsonl")), examples)?;
    }
    let manifest = EvalManifest {
        task: task.id.clone(),
        source_repo: raw_manifest.repo,
        source_revision: raw_manifest.revision,
        source_commit: raw_manifest.commit,
        eval_split: task.splits.test.clone().unwrap_or_default(),
        splits: splits.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
    };
    fsutil::write_json_atomic(&dir.join(MANIFEST), &manifest)?;
    Ok(manifest)
}

/// The prepared file of an eval-only dataset's evaluated raw split (`splits.test`):
/// data/[smoke/]prepared/<id>/<splits.test>.jsonl.
pub fn eval_split_path(paths: &Paths, dataset: &TaskConfig) -> PathBuf {
    let split = dataset.splits.test.as_deref().unwrap_or(LOCAL_SPLIT);
    paths.prepared(&dataset.id).join(format!("{split}.jsonl"))
}

/// Every example of an eval-only dataset's evaluated split, in file order (what the
/// experiments runner samples from). Errors name the `bwb prepare` command to run.
pub fn read_eval_split(paths: &Paths, dataset: &TaskConfig) -> Result<Vec<Example>> {
    let split = dataset.splits.test.as_deref().unwrap_or(LOCAL_SPLIT);
    read_split(paths, &dataset.id, split)
}

/// Read a prepared split (for training and evaluation).
pub fn read_split(paths: &Paths, task: &str, split: &str) -> Result<Vec<Example>> {
    let path = paths.prepared(task).join(format!("{split}.jsonl"));
    if !paths.prepared(task).join(MANIFEST).exists() {
        let smoke = if paths.smoke { " --smoke-test" } else { "" };
        return Err(Error::MissingInput(format!(
            "no prepared data for task `{task}` in {}; run `bwb prepare --task {task}{smoke}` first",
            paths.prepared(task).display()
        )));
    }
    raw::read_jsonl(&path)?
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            serde_json::from_value(serde_json::Value::Object(row)).map_err(|e| Error::BadRow {
                path: path.clone(),
                line: i + 1,
                message: format!("not an Example ({e}); run `bwb prepare --task {task}` again"),
            })
        })
        .collect()
}
