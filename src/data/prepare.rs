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

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::TaskConfig;
use crate::data::download::{RawManifest, MANIFEST};
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
}

pub const SPLITS: [&str; 3] = ["train", "val", "test"];

fn stratum(e: &Example) -> Option<String> {
    e.stratum.clone()
}

/// Read and convert one raw split.
fn load_split(
    task: &TaskConfig,
    raw_dir: &Path,
    manifest: &RawManifest,
    split: &str,
    smoke: bool,
    download_cmd: &str,
) -> Result<Vec<Example>> {
    let path = raw_dir.join(format!("{split}.jsonl"));
    let Some(record) = manifest.splits.get(split) else {
        return Err(Error::MissingInput(format!(
            "{} has no raw split `{split}`; the task config changed since the download: run `{download_cmd}`",
            raw_dir.join(MANIFEST).display()
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
    let expected = task.source.splits.get(split).map(|s| s.rows).unwrap_or(0);
    if !smoke && rows.len() != expected {
        return Err(Error::BadFile {
            path: path.clone(),
            message: format!(
                "has {} rows but {} `{split}` has {expected} (configs/tasks/{}.yaml); the download is incomplete or the dataset changed: run `{download_cmd}`",
                rows.len(),
                task.source.repo,
                task.id
            ),
        });
    }
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            tasks::to_example(task, split, i, row).map_err(|message| Error::BadRow {
                path: path.clone(),
                line: i + 1,
                message: format!("{message}; fix the row or run `{download_cmd}` again"),
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
    let manifest_path = raw_dir.join(MANIFEST);
    let manifest: RawManifest = match std::fs::read_to_string(&manifest_path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| Error::BadFile {
            path: manifest_path.clone(),
            message: format!("{e}; run `{download_cmd}` again"),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingInput(format!(
                "no raw data for task `{}` in {}; run `{download_cmd}` first",
                task.id,
                raw_dir.display()
            )))
        }
        Err(e) => {
            return Err(Error::BadFile {
                path: manifest_path,
                message: e.to_string(),
            })
        }
    };
    let load =
        |split: &str| load_split(task, &raw_dir, &manifest, split, paths.smoke, &download_cmd);
    let seed_for = |purpose: &str| sample::rng(seed, &format!("{}/{purpose}", task.id));
    let maybe_balance = |v: Vec<Example>, purpose: &str| {
        if task.balance_strata {
            sample::balance(v, stratum, &mut seed_for(purpose))
        } else {
            v
        }
    };

    let sizes = task.sizes(paths.smoke);
    let pool = maybe_balance(load(&task.splits.train)?, "balance-train");
    // A split comes from its own raw split, or is held out of the training pool.
    let take = |raw: &Option<String>, n: usize, purpose: &str, pool: Vec<Example>| -> Result<_> {
        match raw {
            Some(s) if *s != task.splits.train => {
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
    fsutil::create_dir_all(&dir)?;
    // Remove the old manifest first: a missing manifest marks a preparation in progress.
    match std::fs::remove_file(dir.join(MANIFEST)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(Error::Write {
                path: dir.join(MANIFEST),
                source,
            })
        }
    }
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
    };
    fsutil::write_json_atomic(&dir.join(MANIFEST), &manifest)?;
    Ok(manifest)
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
