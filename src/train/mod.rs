//! QLoRA training: `Example → tokenized (loss on the answer) → length-grouped batches →
//! QLinear model → AdamW over the adapter Vars → checkpoint → PEFT adapter`.
//!
//! The loop, top to bottom: tokenise; plan each epoch's micro-batches (seeded by epoch);
//! for each optimizer step, run `gradient_accumulation` micro-batches, each contributing
//! `Σ CE / (answer tokens in the whole step)` so the step's loss is the mean over its answer
//! tokens however they are split; clip the global gradient norm; AdamW at the scheduled lr.
//! After each epoch: validation loss and the task metric on greedy answers; the best epoch
//! (metric, ties → lower loss) is kept and becomes the final adapter; optional early stop.
//! Checkpoints (see [`checkpoint`]) make a rerun resume exactly where it stopped.
//! Progress shows as a bar on a terminal or as periodic log lines ([`crate::progress`]);
//! each step's and epoch's figures also go to a JSONL file ([`metrics_log`]).

pub mod batch;
pub mod checkpoint;
pub mod merge;
pub mod metrics_log;
pub mod optim;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::Serialize;

use crate::config::{TaskConfig, TrainingConfig};
use crate::data::Example;
use crate::error::{Error, Result};
use crate::model::adapter::AdapterConfig;
use crate::model::load::LoadedModel;
use crate::model::weights::LoraPlan;
use crate::model::ForwardCtx;
use crate::progress::{Progress, ProgressMode};
use crate::prompt::task::TaskPrompt;
use batch::{epoch_batches, make_batch, tokenize, Tokenized, Truncations};
use checkpoint::{EpochRecord, Status, TrainState};
use metrics_log::{EpochMetrics, MetricsLine, MetricsLog, StepMetrics};
use optim::AdamW;
use validate::ValScores;

/// `lora-500`: the first 500 prepared training examples; `lora-full`: all of them (already
/// capped by `training_cap` when prepared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Lora500,
    LoraFull,
}

impl Condition {
    pub const NAMES: &'static str = "lora-500, lora-full or all";

    /// `all` → both, in order.
    pub fn parse_list(s: &str) -> Result<Vec<Condition>> {
        match s {
            "lora-500" => Ok(vec![Self::Lora500]),
            "lora-full" => Ok(vec![Self::LoraFull]),
            "all" => Ok(vec![Self::Lora500, Self::LoraFull]),
            other => Err(Error::Config(format!(
                "--condition {other}: expected {}",
                Self::NAMES
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Lora500 => "lora-500",
            Self::LoraFull => "lora-full",
        }
    }

    /// The training examples this condition uses.
    pub fn select(self, mut train: Vec<Example>) -> Vec<Example> {
        if self == Self::Lora500 {
            train.truncate(500);
        }
        train
    }
}

/// The LoRA plan of a training config (new adapter, A seeded by `seed`).
pub fn lora_plan(hp: &TrainingConfig, seed: u64) -> LoraPlan {
    LoraPlan {
        r: hp.lora.r,
        alpha: hp.lora.alpha,
        dropout: hp.lora.dropout as f32,
        use_rslora: hp.lora.use_rslora,
        target_modules: hp.lora.target_modules.clone(),
        init_seed: seed,
        adapter: None,
    }
}

/// Mid-epoch checkpoint interval in optimizer steps (`bwb train --save-every`, `bwb run`).
pub const DEFAULT_SAVE_EVERY: usize = 100;

/// Knobs that do not change the result (so they are not part of the fingerprint).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Save a mid-epoch checkpoint every this many optimizer steps (epoch ends always save).
    pub save_every: Option<usize>,
    /// Stop (after checkpointing) once this many optimizer steps are done in total.
    pub stop_at_step: Option<usize>,
    /// How progress is shown: a bar, periodic log lines, or nothing.
    pub progress: ProgressMode,
    /// Append each step's and epoch's figures to this JSONL file ([`metrics_log`]).
    pub metrics: Option<PathBuf>,
    /// Prompts per generate call during validation.
    pub val_batch_size: usize,
    /// Also hand each metrics line to this sink (a tracker); a resumed run first replays the
    /// lines it keeps from before its checkpoint.
    pub sink: Option<std::sync::Arc<dyn metrics_log::MetricsSink>>,
}

/// One training run.
pub struct Job<'a> {
    /// Loaded with [`lora_plan`]`(hp, seed)`.
    pub model: &'a LoadedModel,
    /// The base model as the user named it (checkpoint paths, the resume fingerprint).
    pub base_model: String,
    /// The base as adapter_config.json's `base_model_name_or_path` names it for PEFT and vLLM
    /// ([`crate::model::adapter::peft_base`]: the hub repo id of a model config).
    pub peft_base: String,
    pub task: &'a TaskConfig,
    pub prompt: &'a TaskPrompt,
    pub hp: &'a TrainingConfig,
    pub seed: u64,
    pub train: &'a [Example],
    pub val: &'a [Example],
    /// checkpoints/<model>/<task>/<condition>/
    pub dir: PathBuf,
    pub opts: RunOptions,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// false: stopped at `stop_at_step`; rerun to continue.
    pub finished: bool,
    /// Already finished before this invocation (nothing was trained).
    pub was_done: bool,
    pub adapter_dir: Option<PathBuf>,
    pub state: TrainState,
    pub truncated: TruncationCounts,
    pub train_examples: usize,
    pub val_examples: usize,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct TruncationCounts {
    pub prompt: usize,
    pub answer: usize,
}

/// What identifies a run: a checkpoint made with anything else is refused on resume.
fn fingerprint(job: &Job, rows: &[Tokenized]) -> serde_json::Value {
    // FNV-1a over every training sequence: the data as the model sees it.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in rows {
        for &id in r.ids.iter().chain(std::iter::once(&(r.n_prompt as u32))) {
            for b in id.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    serde_json::json!({
        "base_model": job.base_model,
        "model_origin": job.model.origin,
        "dtype": format!("{:?}", job.model.dtype),
        "task": job.task.id,
        "seed": job.seed,
        "hyperparameters": job.hp,
        "train_examples": rows.len(),
        "train_tokens_hash": format!("{h:016x}"),
    })
}

/// Dropout seed of micro-batch `j` of optimizer step `step`.
fn step_seed(seed: u64, step: usize, j: usize) -> u64 {
    let mut x = seed ^ 0x5851_F42D_4C95_7F2D;
    for v in [step as u64, j as u64] {
        x = (x ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 29;
    }
    x
}

fn params_of(m: &LoadedModel) -> Vec<Var> {
    m.lora_vars
        .iter()
        .flat_map(|(_, a, b)| [a.clone(), b.clone()])
        .collect()
}

/// Train (or resume, or report an already finished run).
pub fn run(job: &Job) -> Result<Outcome> {
    let started = Instant::now();
    let hp = job.hp;
    let data = Data::new(job)?;
    let params = params_of(job.model);
    let mut opt = AdamW::new(params.clone(), hp.weight_decay)?;
    let mut state = resume(job, &data, &mut opt)?;
    if state.status == Status::Done {
        return Ok(data.outcome(state, true, true));
    }
    if stop_due(job, &state) {
        return Ok(data.outcome(state, false, false));
    }

    let mut t = Trainer::new(job, &data, params, opt, &state)?;
    while state.epoch < hp.epochs {
        let batches = epoch_batches(&data.lens, hp.batch_size, job.seed, state.epoch);
        let steps: Vec<&[Vec<usize>]> = batches.chunks(hp.gradient_accumulation).collect();
        while state.step_in_epoch < steps.len() {
            let micro = steps[state.step_in_epoch];
            let done = t.optimizer_step(&mut state, micro)?;
            t.report_step(&state, &done)?;
            if state.step_in_epoch == steps.len() {
                break; // the epoch's end validates and checkpoints
            }
            let stop = stop_due(job, &state);
            let periodic = job
                .opts
                .save_every
                .is_some_and(|n| n > 0 && state.step.is_multiple_of(n));
            if stop || periodic {
                t.save(&mut state)?;
            }
            if stop {
                t.progress.abandon();
                return Ok(data.outcome(state, false, false));
            }
        }
        t.end_of_epoch(&mut state, steps.len())?;
        if state.epoch < hp.epochs {
            t.save(&mut state)?;
            if stop_due(job, &state) {
                t.progress.abandon();
                return Ok(data.outcome(state, false, false));
            }
        }
    }
    t.finish(&mut state)?;
    tracing::debug!("trained in {:.1}s", started.elapsed().as_secs_f64());
    Ok(data.outcome(state, true, false))
}

/// `--stop-at-step` reached.
fn stop_due(job: &Job, state: &TrainState) -> bool {
    job.opts.stop_at_step.is_some_and(|s| state.step >= s)
}

/// The tokenised data and the run's step arithmetic.
struct Data {
    rows: Vec<Tokenized>,
    val_rows: Vec<Tokenized>,
    /// Token count of each training row (for length-grouped batches).
    lens: Vec<usize>,
    truncated: TruncationCounts,
    /// Optimizer steps in the whole run, and of them the warm-up.
    total: usize,
    warmup: usize,
    /// Where the final adapter goes.
    adapter_dir: PathBuf,
}

impl Data {
    fn new(job: &Job) -> Result<Self> {
        let hp = job.hp;
        if job.model.lora_vars.is_empty() {
            return Err(Error::Config(
                "the model has no LoRA parameters; load it with train::lora_plan".into(),
            ));
        }
        if job.train.is_empty() {
            return Err(Error::MissingInput(format!(
                "task `{}` has no training examples; run `bwb prepare --task {}` again",
                job.task.id, job.task.id
            )));
        }
        let (rows, t) = tokenize(job.model, job.prompt, job.train, hp.max_seq_length)?;
        let (val_rows, _) = tokenize(job.model, job.prompt, job.val, hp.max_seq_length)?;
        warn_truncations(&t, rows.len(), hp.max_seq_length);
        let micro_per_epoch = rows.len().div_ceil(hp.batch_size);
        let steps_per_epoch = micro_per_epoch.div_ceil(hp.gradient_accumulation);
        let total = steps_per_epoch * hp.epochs;
        Ok(Self {
            lens: rows.iter().map(Tokenized::len).collect(),
            rows,
            val_rows,
            truncated: TruncationCounts {
                prompt: t.prompt,
                answer: t.answer,
            },
            total,
            warmup: optim::warmup_steps(hp.warmup_ratio, total),
            adapter_dir: job.dir.join(checkpoint::FINAL_DIR),
        })
    }

    fn outcome(&self, state: TrainState, finished: bool, was_done: bool) -> Outcome {
        Outcome {
            finished,
            was_done,
            adapter_dir: finished.then(|| self.adapter_dir.clone()),
            state,
            truncated: self.truncated,
            train_examples: self.rows.len(),
            val_examples: self.val_rows.len(),
        }
    }
}

/// The state to continue from: the latest checkpoint (its optimizer and adapter restored),
/// refused when it was made with other settings; or a fresh start.
fn resume(job: &Job, data: &Data, opt: &mut AdamW) -> Result<TrainState> {
    let fp = fingerprint(job, &data.rows);
    let Some((ck, state)) = checkpoint::latest(&job.dir)? else {
        return Ok(TrainState::new(fp, job.seed, data.total));
    };
    if let Some(why) = checkpoint::fingerprint_mismatch(&state.fingerprint, &fp) {
        return Err(Error::Config(format!(
            "cannot resume {}: {why}; rerun with the original settings, or delete {} to start over",
            ck.display(),
            job.dir.display()
        )));
    }
    checkpoint::restore(&ck, &job.model.lora_vars, opt, &state)?;
    if state.step > 0 {
        tracing::info!("resuming {} at step {}", job.dir.display(), state.step);
    }
    Ok(state)
}

/// What one optimizer step did.
struct StepDone {
    /// Mean cross-entropy over the step's answer tokens.
    loss: f64,
    lr: f64,
    /// Before clipping.
    grad_norm: f64,
    /// Non-padding tokens.
    tokens: usize,
    seconds: f64,
}

/// A run in progress: everything besides its [`TrainState`].
struct Trainer<'a> {
    job: &'a Job<'a>,
    data: &'a Data,
    adapter_cfg: AdapterConfig,
    params: Vec<Var>,
    opt: AdamW,
    progress: Progress,
    metrics: Option<MetricsLog>,
    /// Wall time since the last save (added to the state when saving).
    wall_mark: Instant,
}

impl<'a> Trainer<'a> {
    fn new(
        job: &'a Job<'a>,
        data: &'a Data,
        params: Vec<Var>,
        opt: AdamW,
        state: &TrainState,
    ) -> Result<Self> {
        let condition = job
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = format!(
            "train {}/{}/{condition}",
            crate::paths::model_name(&job.base_model),
            job.task.id
        );
        let progress = Progress::new(job.opts.progress, label, "steps", data.total as u64)
            .starting_at(state.step as u64);
        let metrics = match &job.opts.metrics {
            Some(path) => Some(MetricsLog::open(path, state.step)?),
            None => None,
        };
        if let (Some(sink), Some(path)) = (&job.opts.sink, &job.opts.metrics) {
            if state.step > 0 {
                for line in metrics_log::read(path)? {
                    sink.record(&line);
                }
            }
        }
        Ok(Self {
            job,
            data,
            adapter_cfg: AdapterConfig::for_plan(&lora_plan(job.hp, job.seed), &job.peft_base),
            params,
            opt,
            progress,
            metrics,
            wall_mark: Instant::now(),
        })
    }

    /// One optimizer step over the micro-batches `micro`: accumulate their gradients, clip
    /// the global norm, AdamW at the scheduled lr; the state counts the step.
    fn optimizer_step(&mut self, state: &mut TrainState, micro: &[Vec<usize>]) -> Result<StepDone> {
        let t0 = Instant::now();
        let hp = self.job.hp;
        let (mut grads, loss, tokens) = self.accumulate_grads(state.step, micro)?;
        let grad_norm = optim::clip(&mut grads, hp.max_grad_norm)?;
        let lr = optim::lr_at(
            hp.lr_schedule,
            hp.lr,
            state.step,
            self.data.warmup,
            self.data.total,
        );
        self.opt.step(&grads, lr)?;
        let seconds = t0.elapsed().as_secs_f64();
        state.step += 1;
        state.step_in_epoch += 1;
        state.rng.next_step = state.step;
        state.epoch_loss_sum += loss;
        state.tokens += tokens as u64;
        state.train_seconds += seconds;
        Ok(StepDone {
            loss,
            lr,
            grad_norm,
            tokens,
            seconds,
        })
    }

    /// Gradients of step `step` summed over its micro-batches, each contributing
    /// `Σ CE / (answer tokens in the whole step)`, so the step's loss is the mean over its
    /// answer tokens however they are split. Returns (grads, loss, non-padding tokens).
    fn accumulate_grads(
        &self,
        step: usize,
        micro: &[Vec<usize>],
    ) -> Result<(Vec<Tensor>, f64, usize)> {
        let (m, rows) = (self.job.model, &self.data.rows);
        let denom: usize = micro.iter().flatten().map(|&i| rows[i].n_answer()).sum();
        let mut acc: Vec<Option<Tensor>> = vec![None; self.params.len()];
        let (mut loss_sum, mut tokens) = (0.0, 0);
        for (j, mb) in micro.iter().enumerate() {
            let refs: Vec<&Tokenized> = mb.iter().map(|&i| &rows[i]).collect();
            let batch = make_batch(&refs, m.pad_id, &m.device)?;
            tokens += batch.n_tokens;
            if batch.n_targets == 0 {
                continue;
            }
            let ctx = ForwardCtx {
                train: true,
                seed: step_seed(self.job.seed, step, j),
                ..Default::default()
            };
            let loss = validate::batch_loss(m, &batch, &ctx, denom.max(1) as f64)?;
            loss_sum += loss.to_scalar::<f32>()? as f64;
            let grads = loss.backward()?;
            for (slot, p) in acc.iter_mut().zip(&self.params) {
                if let Some(g) = grads.get(p.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(a) => (a + g)?,
                        None => g.clone(),
                    });
                }
            }
        }
        let grads = acc
            .into_iter()
            .zip(&self.params)
            .map(|(g, p)| match g {
                Some(g) => Ok(g),
                None => p.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<_>>()?;
        Ok((grads, loss_sum, tokens))
    }

    /// The step's figures: the progress bar or log line, and a line of the metrics file.
    fn report_step(&mut self, state: &TrainState, s: &StepDone) -> Result<()> {
        let tps = state.tokens as f64 / state.train_seconds.max(1e-9);
        self.progress.update(
            state.step as u64,
            format!(
                "epoch {}/{}, loss {:.4}, lr {:.2e}, grad norm {:.3}, {tps:.0} tokens/s",
                state.epoch + 1,
                self.job.hp.epochs,
                s.loss,
                s.lr,
                s.grad_norm
            ),
        );
        let line = MetricsLine::Step(StepMetrics {
            step: state.step,
            epoch: state.epoch + 1,
            loss: s.loss,
            lr: s.lr,
            grad_norm: s.grad_norm,
            tokens: s.tokens,
            tokens_per_s: s.tokens as f64 / s.seconds.max(1e-9),
            elapsed_s: self.elapsed(state),
        });
        self.append(&line)
    }

    /// End of an epoch: validation loss and task metric; the epoch's adapter is kept when it
    /// is the best so far (metric, ties → lower loss); early stopping.
    fn end_of_epoch(&mut self, state: &mut TrainState, steps: usize) -> Result<()> {
        let (job, hp) = (self.job, self.job.hp);
        self.progress
            .phase(&format!("epoch {}: validating", state.epoch + 1));
        let val = validation(job, &self.data.val_rows)?;
        let rec = EpochRecord {
            epoch: state.epoch + 1,
            step: state.step,
            train_loss: state.epoch_loss_sum / steps.max(1) as f64,
            val,
        };
        let metric = validate::metric_name(job.task);
        self.progress.note(&format!(
            "epoch {}: train loss {:.4}, val loss {:.4}, val {metric} {:.4}",
            rec.epoch, rec.train_loss, val.loss, val.metric
        ));
        let best = state.best.is_none_or(|b| val.better_than(&b.val));
        self.append(&MetricsLine::Epoch(EpochMetrics {
            step: rec.step,
            epoch: rec.epoch,
            train_loss: rec.train_loss,
            val_loss: val.loss,
            val_metric: val.metric,
            metric: metric.to_string(),
            best,
            elapsed_s: self.elapsed(state),
        }))?;
        if best {
            checkpoint::write_dir(&job.dir, &checkpoint::epoch_dir(rec.epoch), |d| {
                crate::model::adapter::save(d, &self.adapter_cfg, &job.model.lora_vars)?;
                crate::fsutil::write_json_atomic(&d.join("scores.json"), &rec)
            })?;
            state.best = Some(rec);
            state.epochs_since_best = 0;
        } else {
            state.epochs_since_best += 1;
        }
        state.history.push(rec);
        state.epoch += 1;
        state.rng.epoch = state.epoch;
        state.step_in_epoch = 0;
        state.epoch_loss_sum = 0.0;
        if let Some(p) = hp.early_stopping_patience {
            if state.epoch < hp.epochs && state.epochs_since_best >= p {
                tracing::info!(
                    "early stop after epoch {}: no improvement in {p}",
                    state.epoch
                );
                state.stopped_early = true;
                state.epoch = hp.epochs;
            }
        }
        Ok(())
    }

    /// Done: the best epoch's adapter becomes the final one.
    fn finish(&mut self, state: &mut TrainState) -> Result<()> {
        let best = state
            .best
            .ok_or_else(|| Error::Config("training finished without a validated epoch".into()))?;
        let best_dir = self.job.dir.join(checkpoint::epoch_dir(best.epoch));
        checkpoint::write_dir(&self.job.dir, checkpoint::FINAL_DIR, |d| {
            for f in [
                crate::model::adapter::CONFIG_FILE,
                crate::model::adapter::WEIGHTS_FILE,
                "scores.json",
            ] {
                std::fs::copy(best_dir.join(f), d.join(f)).map_err(|source| Error::Write {
                    path: d.join(f),
                    source,
                })?;
            }
            Ok(())
        })?;
        state.status = Status::Done;
        self.save(state)?;
        self.progress.finish();
        Ok(())
    }

    /// Checkpoint (optimizer state, adapter, `latest.json`), counting the wall time.
    fn save(&mut self, state: &mut TrainState) -> Result<()> {
        state.wall_seconds += self.wall_mark.elapsed().as_secs_f64();
        self.wall_mark = Instant::now();
        checkpoint::save(
            &self.job.dir,
            &self.adapter_cfg,
            &self.job.model.lora_vars,
            &self.opt,
            state,
        )
    }

    /// Training wall time so far, across resumes.
    fn elapsed(&self, state: &TrainState) -> f64 {
        state.wall_seconds + self.wall_mark.elapsed().as_secs_f64()
    }

    fn append(&mut self, line: &MetricsLine) -> Result<()> {
        if let Some(sink) = &self.job.opts.sink {
            sink.record(line);
        }
        match &mut self.metrics {
            Some(log) => log.append(line),
            None => Ok(()),
        }
    }
}

fn validation(job: &Job, val_rows: &[Tokenized]) -> Result<ValScores> {
    let m = job.model;
    let loss = validate::loss(m, val_rows, job.hp.batch_size)?;
    let preds = validate::generate_answers(
        m,
        job.prompt,
        job.val,
        job.task.max_new_tokens,
        job.opts.val_batch_size.max(1),
    )?;
    let metric = validate::score(job.task, job.val, &preds);
    Ok(ValScores { loss, metric })
}

fn warn_truncations(t: &Truncations, n: usize, max_len: usize) {
    if t.prompt > 0 {
        tracing::warn!(
            "{} of {n} training prompts were cut from the left to fit max_seq_length {max_len}",
            t.prompt
        );
    }
    if t.answer > 0 {
        tracing::warn!(
            "{} of {n} training answers do not fit max_seq_length {max_len} and were cut; raise max_seq_length",
            t.answer
        );
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_memory_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// results/training/<model>_<task>_<condition>.json
#[derive(Debug, Serialize)]
pub struct TrainingRecord<'a> {
    pub model: &'a str,
    pub model_origin: &'a str,
    pub task: &'a str,
    pub condition: &'a str,
    pub seed: u64,
    pub metric: &'a str,
    pub train_examples: usize,
    pub val_examples: usize,
    pub steps: usize,
    pub epochs_run: usize,
    pub stopped_early: bool,
    pub wall_seconds: f64,
    pub train_seconds: f64,
    pub tokens: u64,
    /// Non-padding tokens per second of training steps.
    pub tokens_per_second: f64,
    pub peak_memory_bytes: Option<u64>,
    pub best: Option<EpochRecord>,
    pub last: Option<EpochRecord>,
    pub history: &'a [EpochRecord],
    pub truncated: TruncationCounts,
    pub adapter: Option<&'a Path>,
    pub hyperparameters: &'a TrainingConfig,
    /// The training file the hyperparameters came from (before the task's overrides), e.g.
    /// `configs/training/qwen3-8b.yaml`.
    pub training_config: &'a str,
    pub device: String,
    pub dtype: String,
}

impl<'a> TrainingRecord<'a> {
    pub fn new(
        job: &'a Job,
        out: &'a Outcome,
        model_name: &'a str,
        condition: &'a str,
        training_config: &'a str,
    ) -> Self {
        let s = &out.state;
        Self {
            model: model_name,
            model_origin: &job.model.origin,
            task: &job.task.id,
            condition,
            seed: job.seed,
            metric: validate::metric_name(job.task).as_str(),
            train_examples: out.train_examples,
            val_examples: out.val_examples,
            steps: s.step,
            epochs_run: s.history.len(),
            stopped_early: s.stopped_early,
            wall_seconds: s.wall_seconds,
            train_seconds: s.train_seconds,
            tokens: s.tokens,
            tokens_per_second: s.tokens as f64 / s.train_seconds.max(1e-9),
            peak_memory_bytes: peak_memory_bytes(),
            best: s.best,
            last: s.history.last().copied(),
            history: &s.history,
            truncated: out.truncated,
            adapter: out.adapter_dir.as_deref(),
            hyperparameters: job.hp,
            training_config,
            device: format!("{:?}", job.model.device),
            dtype: format!("{:?}", job.model.dtype),
        }
    }
}
