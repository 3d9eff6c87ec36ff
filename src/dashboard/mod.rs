//! `bwb dashboard`: results/summaries/*.json → dashboard-data/*.json and a static site.
//!
//! Flow: `load` reads and checks every summary → `build` groups them by task and writes
//! `dashboard-data/{summaries,index,<task>}.json` → `site` writes the page (assets embedded in
//! the binary) and `data.js`, which carries the same data as a script so the page works from
//! `file://` (where fetching local JSON is blocked) as well as from any static host.

mod load;
mod site;
mod time;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::paths::Paths;
use crate::report::summary::Summary;

pub use load::{load_summaries, Loaded};
pub use time::rfc3339_utc;

/// What one build wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// dashboard-data/ (or dashboard-data/smoke/).
    pub data_dir: PathBuf,
    /// site/ (or site/smoke/); open `index.html` in a browser.
    pub site_dir: PathBuf,
    pub summaries: usize,
    pub tasks: usize,
}

/// site/, or site/smoke/ for a smoke run, beside the other outputs.
pub fn site(paths: &Paths) -> PathBuf {
    let base = paths.root.join("site");
    if paths.smoke {
        base.join("smoke")
    } else {
        base
    }
}

/// A model and whether it runs locally or behind an API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct ModelEntry {
    pub name: String,
    pub kind: String,
}

/// One task: its headline metric and where its data lives.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEntry {
    pub name: String,
    pub primary_metric: String,
    /// `<task>.json` in the data directory.
    pub file: String,
    pub summaries: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub summaries: usize,
    pub tasks: usize,
    pub models: usize,
    pub conditions: usize,
}

/// dashboard-data/index.json.
#[derive(Debug, Clone, Serialize)]
pub struct Index {
    /// RFC 3339, UTC.
    pub generated_at: String,
    pub models: Vec<ModelEntry>,
    pub tasks: Vec<TaskEntry>,
    pub conditions: Vec<String>,
    /// Every distinct pricing date among the summaries (normally one).
    pub prices_as_of: Vec<String>,
    pub counts: Counts,
}

/// dashboard-data/<task>.json.
#[derive(Debug, Clone, Serialize)]
pub struct TaskData<'a> {
    pub task: &'a str,
    pub primary_metric: &'a str,
    pub summaries: Vec<&'a Summary>,
}

/// Everything the page gets, as `window.BWB_DATA` in data.js.
#[derive(Debug, Serialize)]
struct PageData<'a> {
    index: &'a Index,
    tasks: &'a [TaskData<'a>],
    /// `bwb experiments` summaries (results/experiments/<id>/summary.json), by id.
    experiments: &'a [serde_json::Value],
}

/// Read every summary and write dashboard-data/ and the site.
pub fn build(paths: &Paths) -> Result<Built> {
    let experiments = load::load_experiments(&paths.results().join("experiments"))?;
    let loaded = match load_summaries(&paths.results().join("summaries")) {
        Err(Error::MissingInput(_)) if !experiments.is_empty() => Vec::new(),
        other => other?,
    };
    let summaries: Vec<Summary> = loaded.into_iter().map(|l| l.summary).collect();

    // 1. Group by task; `load` sorted by (task, model, condition) and checked that each
    //    task has one primary metric.
    let mut by_task: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for s in &summaries {
        by_task.entry(s.task.as_str()).or_default().push(s);
    }
    let tasks: Vec<TaskData> = by_task
        .into_iter()
        .map(|(task, summaries)| TaskData {
            task,
            primary_metric: summaries[0].primary_metric.as_str(),
            summaries,
        })
        .collect();
    let index = index_of(&summaries, &tasks, time::now_rfc3339_utc());

    // 2. dashboard-data/: the whole set, the index, one file per task; then drop the
    //    per-task files of tasks that are gone.
    let data_dir = paths.dashboard_data();
    fsutil::write_json_atomic(&data_dir.join("summaries.json"), &summaries)?;
    fsutil::write_json_atomic(&data_dir.join("index.json"), &index)?;
    for (t, entry) in tasks.iter().zip(&index.tasks) {
        fsutil::write_json_atomic(&data_dir.join(&entry.file), t)?;
    }
    fsutil::write_json_atomic(&data_dir.join("experiments.json"), &experiments)?;
    let keep: BTreeSet<&str> = index
        .tasks
        .iter()
        .map(|t| t.file.as_str())
        .chain(["summaries.json", "index.json", "experiments.json"])
        .collect();
    remove_stale_json(&data_dir, &keep)?;

    // 3. site/: the embedded assets plus data.js.
    let site_dir = site(paths);
    let page = PageData {
        index: &index,
        tasks: &tasks,
        experiments: &experiments,
    };
    site::write(&site_dir, &page)?;

    Ok(Built {
        data_dir,
        site_dir,
        summaries: summaries.len(),
        tasks: tasks.len(),
    })
}

fn index_of(summaries: &[Summary], tasks: &[TaskData], generated_at: String) -> Index {
    let models: BTreeSet<ModelEntry> = summaries
        .iter()
        .map(|s| ModelEntry {
            name: s.model.clone(),
            kind: s.model_kind.as_str().to_string(),
        })
        .collect();
    let conditions: BTreeSet<&str> = summaries.iter().map(|s| s.condition.name()).collect();
    let prices: BTreeSet<&str> = summaries
        .iter()
        .map(|s| s.prices_as_of.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let tasks: Vec<TaskEntry> = tasks
        .iter()
        .map(|t| TaskEntry {
            name: t.task.to_string(),
            primary_metric: t.primary_metric.to_string(),
            file: format!("{}.json", t.task),
            summaries: t.summaries.len(),
        })
        .collect();
    Index {
        generated_at,
        counts: Counts {
            summaries: summaries.len(),
            tasks: tasks.len(),
            models: models.len(),
            conditions: conditions.len(),
        },
        models: models.into_iter().collect(),
        tasks,
        conditions: conditions.into_iter().map(str::to_string).collect(),
        prices_as_of: prices.into_iter().map(str::to_string).collect(),
    }
}

/// Remove `*.json` files in `dir` that this build did not write (tasks no longer present).
fn remove_stale_json(dir: &Path, keep: &BTreeSet<&str>) -> Result<()> {
    let io = |source| Error::Write {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".json") && !name.starts_with('.') && !keep.contains(name) {
            std::fs::remove_file(&path).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}
