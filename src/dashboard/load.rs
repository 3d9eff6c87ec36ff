//! Read results/summaries/*.json and check what the dashboard relies on: each file parses as
//! a `Summary`, its primary metric is among its metrics, its task can name a file, each task
//! has one primary metric, and no model × task × condition appears twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::report::summary::Summary;

/// A summary and the file it came from (for messages).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub summary: Summary,
}

/// Task names that would collide with the files every build writes.
const RESERVED: [&str; 3] = ["index", "summaries", "experiments"];

/// Every `*.json` summary in `dir`, sorted by (task, model, condition). Hidden files (such as
/// an atomic write in progress) are skipped; the CSV siblings are not read.
pub fn load_summaries(dir: &Path) -> Result<Vec<Loaded>> {
    let none = || {
        Error::MissingInput(format!(
            "no summaries in {}; run `bwb classify --task all` first",
            dir.display()
        ))
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(none()),
        Err(e) => {
            return Err(Error::BadFile {
                path: dir.to_path_buf(),
                message: format!("cannot list summaries: {e}; check the directory's permissions"),
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::BadFile {
                path: dir.to_path_buf(),
                message: format!("cannot list summaries: {e}"),
            })?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".json") && !name.starts_with('.') && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(none());
    }
    files.sort();

    let mut loaded = files
        .into_iter()
        .map(read_one)
        .collect::<Result<Vec<_>>>()?;
    loaded.sort_by(|a, b| key(&a.summary).cmp(&key(&b.summary)));
    check_consistent(&loaded)?;
    Ok(loaded)
}

/// Every results/experiments/<id>/summary.json (`bwb experiments`), sorted by experiment id;
/// none when the directory does not exist. A file that is not a JSON object with an
/// `experiment_id` is an error naming it.
pub fn load_experiments(dir: &Path) -> Result<Vec<serde_json::Value>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::BadFile {
                path: dir.to_path_buf(),
                message: format!("cannot list experiments: {e}; check the directory's permissions"),
            })
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path().join("summary.json")))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bad = |message: String| Error::BadFile {
                path: path.clone(),
                message,
            };
            let text = std::fs::read_to_string(&path)
                .map_err(|e| bad(format!("cannot read experiment summary: {e}")))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "not JSON ({e}); rerun `bwb experiments` for it or delete the file"
                ))
            })?;
            if !v["experiment_id"].is_string() {
                return Err(bad(
                    "no `experiment_id`: not an experiment summary; rerun `bwb experiments`".into(),
                ));
            }
            Ok(v)
        })
        .collect()
}

fn key(s: &Summary) -> (&str, &str, &str) {
    (&s.task, &s.model, s.condition.name())
}

fn read_one(path: PathBuf) -> Result<Loaded> {
    let bad = |message: String| Error::BadFile {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| bad(format!("cannot read summary: {e}; check its permissions")))?;
    let summary: Summary = serde_json::from_str(&text).map_err(|e| {
        // serde names a missing field but not the field of a value of the wrong type.
        let at = match json_path_at(&text, e.line(), e.column()) {
            Some(p) if e.is_data() => format!(" (in field `{p}`)"),
            _ => String::new(),
        };
        bad(format!(
            "not a valid summary: {e}{at}; rewrite it with `bwb classify --task <its task>` or delete it"
        ))
    })?;
    if !summary.metrics.contains_key(&summary.primary_metric) {
        let have: Vec<&str> = summary.metrics.keys().map(String::as_str).collect();
        return Err(bad(format!(
            "field `primary_metric`: `{}` is not among `metrics` ({}); rewrite it with `bwb classify --task {}`",
            summary.primary_metric,
            have.join(", "),
            summary.task
        )));
    }
    if !is_file_stem(&summary.task) {
        return Err(bad(format!(
            "field `task`: `{}` cannot name a dashboard file; use letters, digits, `-`, `_` or `.`, not starting with `.`, and not {}",
            summary.task,
            RESERVED.join(" or ")
        )));
    }
    Ok(Loaded { path, summary })
}

fn is_file_stem(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && !RESERVED.contains(&s)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// One primary metric per task; one summary per model × task × condition.
fn check_consistent(loaded: &[Loaded]) -> Result<()> {
    let mut first_of_task: BTreeMap<&str, &Loaded> = BTreeMap::new();
    for pair in loaded.windows(2) {
        if key(&pair[0].summary) == key(&pair[1].summary) {
            let (task, model, condition) = key(&pair[1].summary);
            return Err(Error::BadFile {
                path: pair[1].path.clone(),
                message: format!(
                    "{model} × {task} × {condition} is also summarised in {}; delete the stale one",
                    pair[0].path.display()
                ),
            });
        }
    }
    for l in loaded {
        let first = first_of_task.entry(&l.summary.task).or_insert(l);
        if first.summary.primary_metric != l.summary.primary_metric {
            return Err(Error::BadFile {
                path: l.path.clone(),
                message: format!(
                    "field `primary_metric`: `{}` but {} has `{}` for task {}; rewrite both with `bwb classify --task {}`",
                    l.summary.primary_metric,
                    first.path.display(),
                    first.summary.primary_metric,
                    l.summary.task,
                    l.summary.task
                ),
            });
        }
    }
    Ok(())
}

/// The path (`metrics.accuracy.mean`, `seeds[1]`) of the value that ends at 1-based
/// `line`/`column` of syntactically valid JSON — where serde reports a data error.
fn json_path_at(text: &str, line: usize, column: usize) -> Option<String> {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let end = (line_start + column).min(text.len());
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut in_string, mut escaped, mut start) = (false, false, 0);
    let mut last_string: Option<&str> = None;
    for (i, &b) in bytes.iter().enumerate().take(end) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    last_string = text.get(start + 1..i);
                }
                _ => {}
            }
            continue;
        }
        match (b, stack.last_mut()) {
            (b'"', _) => (in_string, start) = (true, i),
            (b'{', _) => stack.push(Frame::Object(None)),
            (b'[', _) => stack.push(Frame::Array(0)),
            (b'}' | b']', _) => {
                stack.pop();
            }
            (b':', Some(Frame::Object(key))) => *key = last_string.take().map(str::to_string),
            (b',', Some(Frame::Object(key))) => *key = None,
            (b',', Some(Frame::Array(n))) => *n += 1,
            _ => {}
        }
    }
    let mut path = String::new();
    for frame in &stack {
        match frame {
            Frame::Object(Some(k)) if path.is_empty() => path.push_str(k),
            Frame::Object(Some(k)) => path.push_str(&format!(".{k}")),
            Frame::Object(None) => break,
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
        }
    }
    (!path.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::json_path_at;

    /// Where serde_json reports a type error in `text`, and the path found there.
    fn path_of_error(text: &str) -> Option<String> {
        let e = serde_json::from_str::<crate::report::summary::Summary>(text).unwrap_err();
        json_path_at(text, e.line(), e.column())
    }

    #[test]
    fn json_path_names_the_offending_value() {
        assert_eq!(path_of_error(r#"{"model": 1}"#).as_deref(), Some("model"));
        let pretty = "{\n  \"model\": \"m\",\n  \"model_kind\": \"local\",\n  \"task\": \"t\",\n  \"condition\": \"zero-shot\",\n  \"primary_metric\": \"a\",\n  \"seeds\": [1, \"two\"]\n}";
        assert_eq!(path_of_error(pretty).as_deref(), Some("seeds[1]"));
        // Conditions, model kinds and error classes are enums: an unknown one is named.
        let unknown = pretty.replace("zero-shot", "sixteen-shot");
        assert_eq!(path_of_error(&unknown).as_deref(), Some("condition"));
        let nested = r#"{"metrics": {"accuracy": {"mean": "high"}}}"#;
        assert_eq!(
            path_of_error(nested).as_deref(),
            Some("metrics.accuracy.mean")
        );
        // A key with an escaped quote, and a missing field (reported at the object's end).
        let missing = r#"{"metrics": {"a\"b": {"mean": 0.5}}}"#;
        assert_eq!(path_of_error(missing).as_deref(), Some("metrics.a\\\"b"));
    }
}
