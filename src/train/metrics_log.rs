//! The per-step record of a training run: results/training/<model>_<task>_<condition>.metrics.jsonl,
//! one JSON object per optimizer step (`"kind": "step"`) and per validated epoch
//! (`"kind": "epoch"`), appended as the run goes (a tracker can follow the same stream).
//!
//! Each line goes to the file in one `write`, so a killed run leaves at most one torn last
//! line. A resumed run redoes the steps after its checkpoint: opening the file for a run at
//! step `s` drops every line of a later step (and a torn tail), so each step is in the file
//! once, as the run that checkpointed it computed it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::fsutil::{JsonlFile, Line};

/// One line of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricsLine {
    Step(StepMetrics),
    Epoch(EpochMetrics),
}

impl MetricsLine {
    /// Optimizer steps done when the line was written.
    pub fn step(&self) -> usize {
        match self {
            Self::Step(s) => s.step,
            Self::Epoch(e) => e.step,
        }
    }
}

/// One optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based: the step just taken.
    pub step: usize,
    /// 1-based epoch the step belongs to.
    pub epoch: usize,
    /// Mean cross-entropy over the step's answer tokens.
    pub loss: f64,
    /// Learning rate the step used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Non-padding tokens in the step.
    pub tokens: usize,
    /// This step's tokens per second.
    pub tokens_per_s: f64,
    /// Training wall time so far, across resumes.
    pub elapsed_s: f64,
}

/// One validated epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Optimizer steps done at the end of the epoch.
    pub step: usize,
    /// 1-based.
    pub epoch: usize,
    /// Mean step loss over the epoch.
    pub train_loss: f64,
    pub val_loss: f64,
    /// The task metric on greedy validation answers, named by `metric`.
    pub val_metric: f64,
    pub metric: String,
    /// The best epoch so far (its adapter is kept).
    pub best: bool,
    pub elapsed_s: f64,
}

/// Where each line also goes as the run writes it (an experiment tracker); it must not block.
pub trait MetricsSink: std::fmt::Debug + Send + Sync {
    fn record(&self, line: &MetricsLine);
}

/// The metrics file of a run, open for appending.
pub struct MetricsLog(JsonlFile);

impl MetricsLog {
    /// Open (creating) `path` for a run that continues from optimizer step `step` (0: a
    /// fresh run), dropping the lines of later steps and a torn or unreadable line.
    pub fn open(path: &Path, step: usize) -> Result<Self> {
        let (file, dropped) = JsonlFile::open(path, "training metrics", |line| {
            let earlier = serde_json::from_str::<MetricsLine>(line).is_ok_and(|l| l.step() <= step);
            Ok(if earlier { Line::Keep } else { Line::Drop })
        })?;
        if dropped > 0 {
            tracing::debug!(
                "{}: dropped {dropped} line(s) past step {step}; those steps are redone",
                path.display()
            );
        }
        Ok(Self(file))
    }

    /// Append one line in a single write.
    pub fn append(&mut self, line: &MetricsLine) -> Result<()> {
        self.0.append(line)
    }
}

/// Every line of a metrics file (tests, trackers).
pub fn read(path: &Path) -> Result<Vec<MetricsLine>> {
    crate::fsutil::read_jsonl(path, "training metrics", "a training metrics line")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn step(n: usize) -> MetricsLine {
        MetricsLine::Step(StepMetrics {
            step: n,
            epoch: 1,
            loss: 1.0 / n as f64,
            lr: 1e-3,
            grad_norm: 0.5,
            tokens: 100,
            tokens_per_s: 1000.0,
            elapsed_s: n as f64,
        })
    }

    fn epoch(n: usize, at: usize) -> MetricsLine {
        MetricsLine::Epoch(EpochMetrics {
            step: at,
            epoch: n,
            train_loss: 0.5,
            val_loss: 0.6,
            val_metric: 0.7,
            metric: "macro_f1".into(),
            best: true,
            elapsed_s: 9.0,
        })
    }

    #[test]
    fn lines_carry_their_kind_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("training/m_t_c.metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        log.append(&step(1)).unwrap();
        log.append(&epoch(1, 1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["kind"], "step");
        assert_eq!(first["grad_norm"], 0.5);
        assert!(text.lines().nth(1).unwrap().contains(r#""kind":"epoch""#));
        assert_eq!(read(&path).unwrap(), [step(1), epoch(1, 1)]);
    }

    #[test]
    fn a_resume_drops_the_steps_after_its_checkpoint_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.metrics.jsonl");
        let mut log = MetricsLog::open(&path, 0).unwrap();
        for l in [
            step(1),
            step(2),
            epoch(1, 2),
            step(3),
            step(4),
            epoch(2, 4),
            step(5),
        ] {
            log.append(&l).unwrap();
        }
        drop(log);
        // Killed mid-write of step 6 after the checkpoint at step 3.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"kind":"step","step":6,"ep"#).unwrap();
        drop(f);

        let mut log = MetricsLog::open(&path, 3).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            [step(1), step(2), epoch(1, 2), step(3)]
        );
        log.append(&step(4)).unwrap();
        assert_eq!(read(&path).unwrap().last(), Some(&step(4)));

        // A fresh run (no checkpoint) starts the file over.
        MetricsLog::open(&path, 0).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
