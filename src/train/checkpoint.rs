//! Checkpoints under `checkpoints/<model>/<task>/<condition>/`:
//!
//! ```text
//! latest.json                  {"checkpoint": "step-000120"}: the one complete checkpoint to resume
//! step-000120/                 adapter_config.json + adapter_model.safetensors (PEFT),
//!                              optimizer.safetensors (AdamW moments), train_state.json
//! epoch-2/                     the best epoch's adapter so far (PEFT) + scores.json
//! adapter/                     the final adapter (a copy of the best epoch's), when done
//! ```
//!
//! A kill at any moment never corrupts a checkpoint: every directory is written under a
//! temporary name and renamed into place, and only then does `latest.json` (itself replaced
//! atomically) point at it. Older directories are deleted after the pointer moves.
//!
//! RNG state: every random draw in training derives from `(seed, epoch)` (the shuffle) or
//! `(seed, step, micro-batch)` (LoRA dropout), so the step counters in train_state.json are
//! the whole RNG state and a resumed run draws exactly what an uninterrupted one would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::optim::AdamW;
use super::validate::ValScores;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::model::adapter::{self, AdapterConfig};
use crate::model::weights::LoraVars;

pub const LATEST: &str = "latest.json";
pub const STATE_FILE: &str = "train_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const FINAL_DIR: &str = "adapter";
/// Bumped when the checkpoint layout changes; older checkpoints are refused.
pub const FORMAT: u32 = 1;

/// Scores of one finished epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Optimizer steps done at the end of this epoch.
    pub step: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    pub val: ValScores,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Training,
    Done,
}

/// The counters from which every random draw derives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    /// The shuffle of epoch `e` uses stream `train/epoch-e` of `seed`.
    pub epoch: usize,
    /// Dropout masks of step `s`, micro-batch `j` use seed `mix(seed, s, j)`.
    pub next_step: usize,
}

/// Everything besides tensors that a resume needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub format: u32,
    /// What this run is (base model, data, hyperparameters); a resume must match it.
    pub fingerprint: serde_json::Value,
    pub status: Status,
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// The epoch in progress (0-based; `epochs` when finished).
    pub epoch: usize,
    /// Optimizer steps done within `epoch`.
    pub step_in_epoch: usize,
    pub rng: RngState,
    /// Sum of step losses within `epoch` (for its mean training loss).
    pub epoch_loss_sum: f64,
    pub history: Vec<EpochRecord>,
    pub best: Option<EpochRecord>,
    pub epochs_since_best: usize,
    pub stopped_early: bool,
    /// Non-padding tokens trained on, and seconds spent in training steps, over all runs.
    pub tokens: u64,
    pub train_seconds: f64,
    /// Wall seconds over all invocations (steps, validation, checkpoints).
    pub wall_seconds: f64,
}

impl TrainState {
    pub fn new(fingerprint: serde_json::Value, seed: u64, total_steps: usize) -> Self {
        Self {
            format: FORMAT,
            fingerprint,
            status: Status::Training,
            step: 0,
            total_steps,
            epoch: 0,
            step_in_epoch: 0,
            rng: RngState {
                seed,
                epoch: 0,
                next_step: 0,
            },
            epoch_loss_sum: 0.0,
            history: Vec::new(),
            best: None,
            epochs_since_best: 0,
            stopped_early: false,
            tokens: 0,
            train_seconds: 0.0,
            wall_seconds: 0.0,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Latest {
    checkpoint: String,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        message: format!("{e}; delete this checkpoint directory to start over"),
    }
}

/// Write a directory atomically: fill a temporary sibling, then rename it to `dir/name`
/// (replacing a stale directory of that name that nothing points at).
pub fn write_dir(
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    fsutil::create_dir_all(dir)?;
    let wrap = |path: &Path, source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = tempfile::Builder::new()
        .prefix(".bwb-tmp-")
        .tempdir_in(dir)
        .map_err(|e| wrap(dir, e))?;
    fill(tmp.path())?;
    let target = dir.join(name);
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(|e| wrap(&target, e))?;
    }
    let tmp_path = tmp.keep();
    std::fs::rename(&tmp_path, &target).map_err(|e| wrap(&target, e))?;
    // Make the rename durable before anything points at it.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}

/// Save a full checkpoint (adapter, optimizer, state) and point `latest.json` at it.
pub fn save(
    dir: &Path,
    cfg: &AdapterConfig,
    vars: &LoraVars,
    opt: &AdamW,
    state: &TrainState,
) -> Result<()> {
    let name = format!("step-{:06}", state.step);
    write_dir(dir, &name, |tmp| {
        adapter::save(tmp, cfg, vars)?;
        save_optimizer(&tmp.join(OPTIMIZER_FILE), vars, opt)?;
        fsutil::write_json_atomic(&tmp.join(STATE_FILE), state)
    })?;
    fsutil::write_json_atomic(
        &dir.join(LATEST),
        &Latest {
            checkpoint: name.clone(),
        },
    )?;
    prune(
        dir,
        &name,
        state.best.map(|b| epoch_dir(b.epoch)).as_deref(),
    );
    Ok(())
}

/// The directory name of epoch `e`'s adapter.
pub fn epoch_dir(e: usize) -> String {
    format!("epoch-{e}")
}

/// Delete step and epoch directories other than the current ones, and stale temporaries.
/// Failures only cost disk space, so they are logged, not raised.
fn prune(dir: &Path, keep_step: &str, keep_epoch: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale = (name.starts_with("step-") && name != keep_step)
            || (name.starts_with("epoch-") && Some(name.as_str()) != keep_epoch)
            || name.starts_with(".bwb-tmp-");
        if stale && e.path().is_dir() {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!("cannot remove old checkpoint {}: {err}", e.path().display());
            }
        }
    }
}

fn param_names(vars: &LoraVars) -> Vec<String> {
    vars.iter()
        .flat_map(|(m, _, _)| {
            [
                format!("base_model.model.{m}.lora_A.weight"),
                format!("base_model.model.{m}.lora_B.weight"),
            ]
        })
        .collect()
}

fn save_optimizer(path: &Path, vars: &LoraVars, opt: &AdamW) -> Result<()> {
    let mut t: HashMap<String, Tensor> = HashMap::new();
    for (i, name) in param_names(vars).into_iter().enumerate() {
        t.insert(format!("{name}.exp_avg"), opt.m[i].to_device(&Device::Cpu)?);
        t.insert(
            format!("{name}.exp_avg_sq"),
            opt.v[i].to_device(&Device::Cpu)?,
        );
    }
    candle_core::safetensors::save(&t, path).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// The state of the checkpoint `latest.json` points at, if any.
pub fn latest(dir: &Path) -> Result<Option<(PathBuf, TrainState)>> {
    let p = dir.join(LATEST);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&p, e)),
    };
    let l: Latest = serde_json::from_str(&text).map_err(|e| io_err(&p, e))?;
    let ck = dir.join(&l.checkpoint);
    let sp = ck.join(STATE_FILE);
    let text = std::fs::read_to_string(&sp).map_err(|e| io_err(&sp, e))?;
    let state: TrainState = serde_json::from_str(&text).map_err(|e| io_err(&sp, e))?;
    if state.format != FORMAT {
        return Err(io_err(
            &sp,
            format!(
                "checkpoint format {} is not this bwb's format {FORMAT}",
                state.format
            ),
        ));
    }
    Ok(Some((ck, state)))
}

/// Load a checkpoint's adapter weights into `vars` and its moments into `opt`.
pub fn restore(ck: &Path, vars: &LoraVars, opt: &mut AdamW, state: &TrainState) -> Result<()> {
    let device = opt
        .params()
        .first()
        .map(|v| v.device().clone())
        .unwrap_or(Device::Cpu);
    let wp = ck.join(adapter::WEIGHTS_FILE);
    let w = candle_core::safetensors::load(&wp, &device).map_err(|e| io_err(&wp, e))?;
    let op = ck.join(OPTIMIZER_FILE);
    let o = candle_core::safetensors::load(&op, &device).map_err(|e| io_err(&op, e))?;
    let params: Vec<Var> = opt.params().to_vec();
    for (i, name) in param_names(vars).into_iter().enumerate() {
        let get = |m: &HashMap<String, Tensor>, key: &str, path: &Path| {
            m.get(key).cloned().ok_or_else(|| {
                io_err(
                    path,
                    format!("tensor `{key}` is missing; the checkpoint was made for another model"),
                )
            })
        };
        params[i].set(&get(&w, &name, &wp)?)?;
        opt.m[i] = get(&o, &format!("{name}.exp_avg"), &op)?;
        opt.v[i] = get(&o, &format!("{name}.exp_avg_sq"), &op)?;
    }
    opt.step = state.step;
    Ok(())
}

/// Where a resume's fingerprint differs from this run's, as `field: was X, now Y`.
pub fn fingerprint_mismatch(saved: &serde_json::Value, now: &serde_json::Value) -> Option<String> {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let null = serde_json::Value::Null;
                    if let Some(d) = walk(&p, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null))
                    {
                        return Some(d);
                    }
                }
                None
            }
            _ if a == b => None,
            _ => Some(format!("{path}: checkpoint has {a}, this run has {b}")),
        }
    }
    walk("", saved, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mismatch_names_the_nested_field() {
        let a = json!({"base_model": "smoke", "hp": {"lr": 0.001, "epochs": 1}});
        let b = json!({"base_model": "smoke", "hp": {"lr": 0.002, "epochs": 1}});
        assert_eq!(
            fingerprint_mismatch(&a, &b).unwrap(),
            "hp.lr: checkpoint has 0.001, this run has 0.002"
        );
        assert_eq!(fingerprint_mismatch(&a, &a), None);
    }
}
