//! Resumable prediction files: `results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl`,
//! one JSON line per example, appended as each example finishes.
//!
//! Crash safety without a journal: every line goes to the file in one `write` of the whole
//! line (newline included) and nothing else ever writes to it, so a `kill -9` leaves at most
//! one torn last line. Opening the file drops a torn or unparsable tail and any line that
//! recorded an error (so the example is tried again), rewriting the file atomically when
//! anything was dropped; the ids left are "finished" and are never written twice.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::extract::Parsed;
use crate::data::Answer;
use crate::error::{Error, Result};
use crate::prompt::chat_template::Message;

/// One prediction line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Unique within the file: the example id, or `<id>#<n>` for the n-th draw of the same
    /// example in a bootstrap resample.
    pub id: String,
    pub example_id: String,
    pub model: String,
    pub task: String,
    pub condition: String,
    pub seed: u64,
    pub input_messages: Vec<Message>,
    pub raw_output: String,
    pub prediction: Parsed,
    pub gold: Answer,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cached_input_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
    pub latency_ms: f64,
    /// Compute time attributable to this example (local models: its share of each batch's
    /// wall time); None for API models. TCO turns it into GPU-hours.
    #[serde(default)]
    pub compute_ms: Option<f64>,
    /// None: unknown (local models, or an API model without a price).
    pub cost_usd: Option<f64>,
    pub error: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Inferences behind this prediction (CUAD sliding windows; 1 otherwise).
    #[serde(default = "one")]
    pub windows: usize,
    /// Answered from the response cache (nothing was sent or spent).
    #[serde(default)]
    pub from_cache: bool,
}

fn one() -> usize {
    1
}

/// An open prediction file: the finished ids, and an append handle.
pub struct PredictionFile {
    pub path: PathBuf,
    file: File,
    done: HashSet<String>,
    /// Lines dropped when opening (torn tail, errors to retry).
    pub dropped: usize,
}

impl PredictionFile {
    /// Open (creating) `path`, recovering from an interrupted run.
    pub fn open(path: &Path) -> Result<Self> {
        let write_err = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut kept: Vec<&str> = Vec::new();
        let mut done = HashSet::new();
        let mut dropped = 0;
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::BadFile {
                    path: path.to_path_buf(),
                    message: format!("cannot read predictions: {e}"),
                })
            }
        };
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let torn = i + 1 == n && !complete;
            match serde_json::from_str::<Prediction>(line) {
                Ok(p) if !torn && p.error.is_none() && !done.contains(&p.id) => {
                    done.insert(p.id);
                    kept.push(line);
                }
                _ => dropped += 1,
            }
        }
        if dropped > 0 {
            tracing::info!(
                "{}: dropped {dropped} unfinished, failed or torn line(s); they will be redone",
                path.display()
            );
            crate::fsutil::write_atomic(path, |w| {
                for l in &kept {
                    w.write_all(l.as_bytes())?;
                    w.write_all(b"\n")?;
                }
                Ok(())
            })?;
        }
        if let Some(dir) = path.parent() {
            crate::fsutil::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(write_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            done,
            dropped,
        })
    }

    pub fn is_done(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    pub fn done_count(&self) -> usize {
        self.done.len()
    }

    /// Append one prediction in a single write. A second line for an id is refused.
    pub fn append(&mut self, p: &Prediction) -> Result<()> {
        if self.done.contains(&p.id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(p).map_err(|e| Error::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })?;
        self.file.flush().map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })?;
        if p.error.is_none() {
            self.done.insert(p.id.clone());
        }
        Ok(())
    }
}

/// Every valid line of a prediction file (for summaries and tests).
pub fn read(path: &Path) -> Result<Vec<Prediction>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot read predictions: {e}"),
    })?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::BadRow {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("not a prediction: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(id: &str, error: Option<&str>) -> Prediction {
        Prediction {
            id: id.into(),
            example_id: id.into(),
            model: "m".into(),
            task: "fpb".into(),
            condition: "zero-shot".into(),
            seed: 1,
            input_messages: vec![Message::user("x")],
            raw_output: "positive".into(),
            prediction: Parsed::Label {
                label: Some("positive".into()),
            },
            gold: Answer::Label {
                label: "positive".into(),
            },
            input_tokens: 3,
            output_tokens: 1,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            latency_ms: 1.0,
            compute_ms: None,
            cost_usd: None,
            error: error.map(str::to_owned),
            finish_reason: None,
            windows: 1,
            from_cache: false,
        }
    }

    #[test]
    fn torn_tail_and_error_lines_are_dropped_and_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/seed-1.jsonl");
        let mut f = PredictionFile::open(&path).unwrap();
        f.append(&pred("a", None)).unwrap();
        f.append(&pred("b", Some("HTTP 400"))).unwrap();
        f.append(&pred("a", None)).unwrap();
        drop(f);
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line_c = serde_json::to_string(&pred("c", None)).unwrap();
        text.push_str(&line_c[..line_c.len() / 2]);
        std::fs::write(&path, &text).unwrap();

        let mut f = PredictionFile::open(&path).unwrap();
        assert_eq!(f.dropped, 2);
        assert!(f.is_done("a") && !f.is_done("b") && !f.is_done("c"));
        f.append(&pred("b", None)).unwrap();
        f.append(&pred("c", None)).unwrap();
        drop(f);
        let ids: Vec<String> = read(&path).unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }
}
