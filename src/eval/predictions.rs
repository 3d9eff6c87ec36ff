//! Resumable prediction files: `results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl`,
//! one JSON line per example, appended as each example finishes.
//!
//! A file is one generation of the whole test set, each example once ([`Generation`]).
//! Files written before that (each seed a bootstrap draw of the test set, ids `<id>#2` for a
//! repeated draw) still load and are scored as they were; a greedy run reuses such a file's
//! completions (a repeated draw shares the one completion of its example, so nothing is lost
//! when the repeats are dropped), a sampled run sets it aside as `seed-<k>.bootstrap.jsonl`.
//!
//! Crash safety without a journal: every line goes to the file in one `write` of the whole
//! line (newline included) and nothing else ever writes to it, so a `kill -9` leaves at most
//! one torn last line. Opening the file drops a torn or unparsable tail and any line that
//! recorded an error (so the example is tried again), rewriting the file atomically when
//! anything was dropped; the ids left are "finished" and are never written twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Condition;
use crate::data::Answer;
use crate::error::{Error, Result};
use crate::fsutil::{complete_lines, JsonlFile, Line};
use crate::prompt::chat_template::Message;
use crate::score::Parsed;

/// How the lines of a prediction file relate to the test set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    /// Greedy decoding: the whole test set generated once per model × condition; the eval
    /// seeds resample it at scoring time (no generation per seed).
    Greedy,
    /// Sampling (temperature > 0): each seed is an independent generation of the whole test
    /// set.
    Sampled,
    /// Written by an earlier bwb: each seed's file is a bootstrap draw of the test set.
    #[default]
    BootstrapDraw,
}

impl Generation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Greedy => "greedy",
            Self::Sampled => "sampled",
            Self::BootstrapDraw => "bootstrap_draw",
        }
    }
}

/// One prediction line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Unique within the file: the example id (files written by an earlier bwb: `<id>#<n>`
    /// for the n-th draw of the same example in a bootstrap resample).
    pub id: String,
    pub example_id: String,
    pub model: String,
    pub task: String,
    pub condition: Condition,
    /// The seed of this generation (5-shot: it chose the demonstrations).
    pub seed: u64,
    /// Absent in files written before whole-test-set generation.
    #[serde(default)]
    pub generation: Generation,
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
    /// The context was cut in the middle to fit the model's window (long-context datasets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

fn one() -> usize {
    1
}

/// An open prediction file: the finished ids, and an append handle.
pub struct PredictionFile {
    pub path: PathBuf,
    file: JsonlFile,
    done: HashSet<String>,
    /// Lines dropped when opening (torn tail, errors to retry).
    pub dropped: usize,
}

impl PredictionFile {
    /// Open (creating) `path` for a run of `generation`, recovering from an interrupted run
    /// and upgrading a bootstrap-draw file of an earlier bwb (see the module docs).
    pub fn open(path: &Path, generation: Generation) -> Result<Self> {
        let foreign = |p: &Prediction| {
            p.generation != generation
                && !(p.generation == Generation::BootstrapDraw && generation == Generation::Greedy)
        };
        let (lines, _) = complete_lines(path, "predictions")?;
        if lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Prediction>(l).ok())
            .any(|p| foreign(&p))
        {
            set_aside(path)?;
        }
        let mut done = HashSet::new();
        let (mut upgraded, mut repeats) = (0usize, 0usize);
        let (file, removed) = JsonlFile::open(path, "predictions", |line| {
            Ok(match serde_json::from_str::<Prediction>(line) {
                Ok(p) if p.error.is_none() && !done.contains(&p.id) => {
                    if p.generation == generation {
                        done.insert(p.id);
                        Line::Keep
                    } else if p.id != p.example_id {
                        // A repeated bootstrap draw: the same completion as its example's line.
                        repeats += 1;
                        Line::Drop
                    } else {
                        let p = Prediction { generation, ..p };
                        let line = to_line(path, &p)?;
                        done.insert(p.id);
                        upgraded += 1;
                        Line::Replace(line)
                    }
                }
                _ => Line::Drop,
            })
        })?;
        let dropped = removed - repeats;
        if upgraded + repeats > 0 {
            tracing::info!(
                "{}: written by an earlier bwb as a bootstrap draw; kept its {upgraded} completion(s) as one {} generation of the test set (dropped {repeats} repeated draw(s) of the same completions)",
                path.display(),
                generation.as_str()
            );
        }
        if dropped > 0 {
            tracing::info!(
                "{}: dropped {dropped} unfinished, failed or torn line(s); they will be redone",
                path.display()
            );
        }
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
        self.file.append(p)?;
        if p.error.is_none() {
            self.done.insert(p.id.clone());
        }
        Ok(())
    }
}

fn to_line(path: &Path, p: &Prediction) -> Result<String> {
    serde_json::to_string(p).map_err(|e| Error::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// Move a prediction file of another kind of generation out of the way (kept, not scored):
/// `seed-1.jsonl` → `seed-1.bootstrap.jsonl` (`.bootstrap-2.jsonl`, … if taken).
fn set_aside(path: &Path) -> Result<()> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut k = 1;
    let target = loop {
        let name = if k == 1 {
            format!("{stem}.bootstrap.jsonl")
        } else {
            format!("{stem}.bootstrap-{k}.jsonl")
        };
        let t = path.with_file_name(name);
        if !t.exists() {
            break t;
        }
        k += 1;
    };
    std::fs::rename(path, &target).map_err(|source| Error::Write {
        path: target.clone(),
        source,
    })?;
    tracing::info!(
        "{}: predictions of another kind of generation; moved to {} (kept, not scored) and generating anew",
        path.display(),
        target.display()
    );
    Ok(())
}

/// The examples a run of `generation` would find finished in `path`, read without changing
/// the file (what [`PredictionFile::open`] would keep; a file of another kind counts none).
pub fn finished_ids(path: &Path, generation: Generation) -> Result<HashSet<String>> {
    let (lines, _) = complete_lines(path, "predictions")?;
    let mut done = HashSet::new();
    for line in &lines {
        let Ok(p) = serde_json::from_str::<Prediction>(line) else {
            continue;
        };
        let finished = p.error.is_none();
        if p.generation == generation {
            if finished {
                done.insert(p.id);
            }
        } else if p.generation == Generation::BootstrapDraw && generation == Generation::Greedy {
            if finished && p.id == p.example_id {
                done.insert(p.id);
            }
        } else {
            return Ok(HashSet::new()); // set aside when opened
        }
    }
    Ok(done)
}

/// Every valid line of a prediction file (for summaries and tests).
pub fn read(path: &Path) -> Result<Vec<Prediction>> {
    crate::fsutil::read_jsonl(path, "predictions", "a prediction")
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
            condition: Condition::ZeroShot,
            seed: 1,
            generation: Generation::Greedy,
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
            truncated: false,
        }
    }

    #[test]
    fn torn_tail_and_error_lines_are_dropped_and_ids_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/seed-1.jsonl");
        let mut f = PredictionFile::open(&path, Generation::Greedy).unwrap();
        f.append(&pred("a", None)).unwrap();
        f.append(&pred("b", Some("HTTP 400"))).unwrap();
        f.append(&pred("a", None)).unwrap();
        drop(f);
        let mut text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line_c = serde_json::to_string(&pred("c", None)).unwrap();
        text.push_str(&line_c[..line_c.len() / 2]);
        std::fs::write(&path, &text).unwrap();

        let mut f = PredictionFile::open(&path, Generation::Greedy).unwrap();
        assert_eq!(f.dropped, 2);
        assert!(f.is_done("a") && !f.is_done("b") && !f.is_done("c"));
        f.append(&pred("b", None)).unwrap();
        f.append(&pred("c", None)).unwrap();
        drop(f);
        let ids: Vec<String> = read(&path).unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    /// A bootstrap-draw file of an earlier bwb (no `generation` field, repeated draws).
    fn legacy_file(path: &Path) {
        let mut text = String::new();
        for (id, ex) in [("a", "a"), ("b", "b"), ("a#2", "a")] {
            let mut v = serde_json::to_value(pred(ex, None)).unwrap();
            v["id"] = serde_json::json!(id);
            v.as_object_mut().unwrap().remove("generation");
            text.push_str(&v.to_string());
            text.push('\n');
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn old_bootstrap_files_load_and_a_greedy_run_keeps_their_completions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/seed-1.jsonl");
        legacy_file(&path);
        let old = read(&path).unwrap();
        assert_eq!(old.len(), 3);
        assert!(old
            .iter()
            .all(|p| p.generation == Generation::BootstrapDraw));

        let f = PredictionFile::open(&path, Generation::Greedy).unwrap();
        assert!(f.is_done("a") && f.is_done("b") && !f.is_done("a#2"));
        assert_eq!(f.done_count(), 2);
        drop(f);
        let now = read(&path).unwrap();
        let ids: Vec<&str> = now.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(now.iter().all(|p| p.generation == Generation::Greedy));
    }

    #[test]
    fn a_sampled_run_sets_an_old_file_aside_and_starts_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/seed-2.jsonl");
        legacy_file(&path);
        let before = std::fs::read(&path).unwrap();
        let f = PredictionFile::open(&path, Generation::Sampled).unwrap();
        assert_eq!(f.done_count(), 0);
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        let kept = dir.path().join("p/seed-2.bootstrap.jsonl");
        assert_eq!(std::fs::read(&kept).unwrap(), before, "nothing lost");
    }
}
