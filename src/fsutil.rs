//! File writing that never leaves a half-written file: write a temp file beside the target,
//! fsync, then rename over it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Create `dir` and its parents, naming the path on failure.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Atomically replace `path` with whatever `fill` writes.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let wrap = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".bwb-tmp-")
        .tempfile_in(dir)
        .map_err(wrap)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w).map_err(wrap)?;
        w.flush().map_err(wrap)?;
    }
    tmp.as_file().sync_all().map_err(wrap)?;
    tmp.persist(path).map_err(|e| wrap(e.error))?;
    Ok(())
}

/// Atomically write bytes.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Atomically write one JSON value per line.
pub fn write_jsonl_atomic<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic(path, |w| {
        for row in rows {
            serde_json::to_writer(&mut *w, row)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Atomically write pretty JSON with a trailing newline.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// The complete lines of a JSONL file and how many torn ones followed them (0 or 1: a last
/// line without its newline, a write cut short); no lines when the file does not exist.
/// `what` names the contents in errors (`predictions`).
pub fn complete_lines(path: &Path, what: &str) -> Result<(Vec<String>, usize)> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Error::BadFile {
                path: path.to_path_buf(),
                message: format!("cannot read {what}: {e}"),
            })
        }
    };
    let mut lines: Vec<String> = text.split_terminator('\n').map(str::to_owned).collect();
    let torn = usize::from(!text.is_empty() && !text.ends_with('\n'));
    lines.truncate(lines.len() - torn);
    Ok((lines, torn))
}

/// What opening a [`JsonlFile`] does with one of its lines.
pub enum Line {
    Keep,
    /// Keep this line in its place instead.
    Replace(String),
    Drop,
}

/// A JSONL file that grows by appending: every line goes to the file in one `write` of the
/// whole line (newline included), so a killed process leaves at most one torn last line.
pub struct JsonlFile {
    path: PathBuf,
    file: std::fs::File,
}

impl JsonlFile {
    /// Open (creating) `path` for appending after sorting its lines with `sort`: a torn last
    /// line is dropped, and the file is rewritten atomically when any line is dropped or
    /// replaced. Returns the file and the number of lines dropped. `what` names the contents
    /// in errors (`predictions`).
    pub fn open(
        path: &Path,
        what: &str,
        mut sort: impl FnMut(&str) -> Result<Line>,
    ) -> Result<(Self, usize)> {
        let (lines, torn) = complete_lines(path, what)?;
        let mut kept: Vec<std::borrow::Cow<str>> = Vec::with_capacity(lines.len());
        let (mut dropped, mut changed) = (torn, false);
        for line in &lines {
            match sort(line)? {
                Line::Keep => kept.push(line.into()),
                Line::Replace(new) => {
                    kept.push(new.into());
                    changed = true;
                }
                Line::Drop => dropped += 1,
            }
        }
        if dropped > 0 || changed {
            write_atomic(path, |w| {
                for l in &kept {
                    w.write_all(l.as_bytes())?;
                    w.write_all(b"\n")?;
                }
                Ok(())
            })?;
        }
        if let Some(dir) = path.parent() {
            create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| Error::Write {
                path: path.to_path_buf(),
                source,
            })?;
        let path = path.to_path_buf();
        Ok((Self { path, file }, dropped))
    }

    /// Append `row` as one line, in a single write.
    pub fn append<T: serde::Serialize>(&mut self, row: &T) -> Result<()> {
        let wrap = |source| Error::Write {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(row).map_err(|e| wrap(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(wrap)?;
        self.file.flush().map_err(wrap)
    }
}

/// Every line of a JSONL file as a `T`; `what` names the contents in errors (`predictions`),
/// `one` a line (`a prediction`).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    one: &str,
) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("cannot read {what}: {e}"),
    })?;
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::BadRow {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("not {one}: {e}"),
            })
        })
        .collect()
}
