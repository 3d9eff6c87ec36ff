//! Finding and reading what `bwb eval` wrote: results/predictions/<model>/<task>/<condition>/
//! seed-*.jsonl, grouped per model × condition, keeping the one kind of generation a group
//! is scored on.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::eval::predictions::{Generation, Prediction};
use crate::eval::Condition;
use crate::paths::{display, Paths};

/// The predictions of one model × condition on a task.
pub struct Group {
    pub model: String,
    pub condition: Condition,
    /// What the predictions are: one greedy generation, sampled generations, or older
    /// bootstrap-draw files.
    pub generation: Generation,
    pub files: Vec<PathBuf>,
    pub preds: Vec<Prediction>,
}

/// Every model × condition with predictions for `task`, in (model, condition) order.
pub fn load_groups(paths: &Paths, task: &str) -> Result<Vec<Group>> {
    let root = paths.results().join("predictions");
    let mut groups = Vec::new();
    for model_dir in sorted_dirs(&root)? {
        let task_dir = model_dir.join(task);
        for cond_dir in sorted_dirs(&task_dir)? {
            let name = file_name(&cond_dir);
            let Some(condition) = Condition::from_name(&name) else {
                let shown = display(&paths.root, &cond_dir);
                tracing::warn!(
                    "{shown}: `{name}` is not a condition (zero-shot, 5-shot, lora-500, lora-full); skipped"
                );
                continue;
            };
            let files = seed_files(&cond_dir)?;
            let mut preds = Vec::new();
            for f in &files {
                preds.extend(read_predictions(paths, f)?);
            }
            let model = file_name(&model_dir);
            let Some(generation) = keep_one_generation(paths, &model, task, &mut preds) else {
                continue;
            };
            groups.push(Group {
                model,
                condition,
                generation,
                files,
                preds,
            });
        }
    }
    Ok(groups)
}

/// `seed-<k>.jsonl` files of a condition directory, sorted (files set aside as
/// `seed-<k>.bootstrap.jsonl` are not scored).
fn seed_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.strip_prefix("seed-")
                .and_then(|r| r.strip_suffix(".jsonl"))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Keep the predictions a group is scored on: a greedy generation over sampled ones over
/// older bootstrap draws; of a greedy generation, the first seed's (one per example). What is
/// left out is said in one line. None: nothing to score.
fn keep_one_generation(
    paths: &Paths,
    model: &str,
    task: &str,
    preds: &mut Vec<Prediction>,
) -> Option<Generation> {
    let generation = [
        Generation::Greedy,
        Generation::Sampled,
        Generation::BootstrapDraw,
    ]
    .into_iter()
    .find(|g| preds.iter().any(|p| p.generation == *g))?;
    let first_seed = preds
        .iter()
        .filter(|p| p.generation == generation)
        .map(|p| p.seed)
        .min()?;
    let before = preds.len();
    preds.retain(|p| {
        p.generation == generation && (generation != Generation::Greedy || p.seed == first_seed)
    });
    let left_out = before - preds.len();
    if left_out > 0 {
        let dir = paths.results().join("predictions").join(model).join(task);
        let shown = display(&paths.root, &dir);
        tracing::warn!(
            "{shown}: {left_out} prediction(s) of other generations left out; scoring the {} generation{}",
            generation.as_str(),
            if generation == Generation::Greedy {
                format!(" of seed {first_seed}")
            } else {
                "s".into()
            }
        );
    }
    Some(generation)
}

pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::BadFile {
            path: dir.to_path_buf(),
            message: format!("cannot list directory: {e}"),
        }),
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut d: Vec<PathBuf> = list(dir)?.into_iter().filter(|p| p.is_dir()).collect();
    d.sort();
    Ok(d)
}

/// Every prediction of a file; a torn last line (an eval killed mid-write) is skipped with a
/// warning, any other bad line is an error naming file and line.
fn read_predictions(paths: &Paths, path: &Path) -> Result<Vec<Prediction>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot read predictions: {e}"),
    })?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<Prediction>(line) {
            Ok(p) => out.push(p),
            Err(_) if i + 1 == lines.len() && !complete => {
                let shown = display(&paths.root, path);
                tracing::warn!(
                    "{shown}: last line is incomplete (an interrupted eval); skipped — rerun bwb eval to finish it"
                )
            }
            Err(e) => {
                return Err(Error::BadRow {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!(
                        "not a prediction: {e}; delete the line (or the file) and rerun bwb eval"
                    ),
                })
            }
        }
    }
    Ok(out)
}
