//! Where every output goes. `--smoke-test` moves all outputs under a parallel `smoke/`
//! namespace so a smoke run can never overwrite real results; configs and prompts are shared
//! and only ever read.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    /// Project root: holds configs/, prompts/, and the output folders.
    pub root: PathBuf,
    pub smoke: bool,
    /// Where the output folders (data/, checkpoints/, results/, dashboard-data/) go: the root,
    /// or one sweep cell's own folder (`bwb run --manifest M --cell ID`).
    pub out: PathBuf,
}

impl Paths {
    pub fn new(root: impl Into<PathBuf>, smoke: bool) -> Self {
        let root = root.into();
        Self {
            out: root.clone(),
            root,
            smoke,
        }
    }

    /// The same configs and prompts, every output under `out` instead of the root.
    pub fn with_out(&self, out: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            ..self.clone()
        }
    }

    fn output(&self, top: &str) -> PathBuf {
        let base = self.out.join(top);
        if self.smoke {
            base.join("smoke")
        } else {
            base
        }
    }

    pub fn configs(&self) -> PathBuf {
        self.root.join("configs")
    }
    pub fn prompts(&self) -> PathBuf {
        self.root.join("prompts")
    }
    pub fn data(&self) -> PathBuf {
        self.output("data")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.output("checkpoints")
    }
    pub fn results(&self) -> PathBuf {
        self.output("results")
    }
    pub fn dashboard_data(&self) -> PathBuf {
        self.output("dashboard-data")
    }
    /// data/raw/<task>/ — one JSONL per raw split, as downloaded.
    pub fn raw(&self, task: &str) -> PathBuf {
        self.data().join("raw").join(task)
    }
    /// data/prepared/<task>/ — train/val/test JSONL of `Example` records.
    pub fn prepared(&self, task: &str) -> PathBuf {
        self.data().join("prepared").join(task)
    }
    /// results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl (eval writes,
    /// classify reads).
    pub fn predictions(&self, model: &str, task: &str, condition: &str, seed: u64) -> PathBuf {
        self.results()
            .join("predictions")
            .join(model)
            .join(task)
            .join(condition)
            .join(format!("seed-{seed}.jsonl"))
    }
    /// checkpoints/<model>/<task>/<condition>/ — a training run's checkpoints and, once
    /// finished, its adapter.
    pub fn run_dir(&self, model: &str, task: &str, condition: &str) -> PathBuf {
        self.checkpoints().join(model).join(task).join(condition)
    }
    /// results/training/<model>_<task>_<condition>.json — the record of a finished training.
    pub fn training_record(&self, model: &str, task: &str, condition: &str) -> PathBuf {
        self.results()
            .join("training")
            .join(format!("{model}_{task}_{condition}.json"))
    }
    /// results/training/<model>_<task>_<condition>.metrics.jsonl — a training run's figures
    /// per optimizer step and per epoch, appended as it trains.
    pub fn training_metrics(&self, model: &str, task: &str, condition: &str) -> PathBuf {
        self.results()
            .join("training")
            .join(format!("{model}_{task}_{condition}.metrics.jsonl"))
    }
    /// The hub-cache-layout fixtures that smoke runs download from.
    pub fn smoke_hub_cache(&self) -> PathBuf {
        self.root.join("tests").join("fixtures").join("hub")
    }
}

/// `path` relative to `root` when it lies inside it, for shorter messages.
pub fn display(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Separates a model's name from a variant of it in result paths: `bwb eval --compress`
/// writes `gpt-5.4-mini+selective-0.5` for gpt-5.4-mini with its contexts compressed, so the
/// report shows the variant beside the model.
pub const VARIANT_SEP: char = '+';

/// The model a result-path name belongs to (the name itself when it is no variant).
pub fn base_model(name: &str) -> &str {
    name.split_once(VARIANT_SEP).map_or(name, |(base, _)| base)
}

/// The name a model goes by in checkpoint and result paths (`bwb train` and `bwb eval` agree):
/// its config id, or the file or directory name of a local model.
pub fn model_name(spec: &str) -> String {
    let p = Path::new(spec);
    if !p.exists() {
        return spec.to_string();
    }
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    stem.chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
