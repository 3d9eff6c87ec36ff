//! User-facing errors. Every message says what went wrong, where (file, line, field, value)
//! and what to do next, on one line.

use std::path::PathBuf;

/// Errors a user can cause and fix. Internal failures travel as `anyhow` context instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("unknown {kind} `{value}`; valid {kind}s: {valid}")]
    Unknown {
        kind: &'static str,
        value: String,
        valid: String,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("{path} line {line}: {message}")]
    BadRow {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    MissingInput(String),
    #[error("cannot write {path}: {source}; check that the directory exists and is writable")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Download(String),
    /// A tensor operation failed (shape mismatch, device error, …).
    #[error("{}", first_line(.0))]
    Candle(#[from] candle_core::Error),
    #[error("`bwb {0}` is not implemented yet")]
    NotImplemented(&'static str),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The whole chain on one line: `outer: inner: innermost`, without repeating a message that
/// already contains its cause.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out.replace('\n', " ")
}

/// 2 for "this stage does not exist yet" (like a usage error), 1 for everything else.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<Error>() {
        Some(Error::NotImplemented(_)) => 2,
        _ => 1,
    }
}

/// The first line of an error's message: candle appends a backtrace to its errors when
/// RUST_BACKTRACE is set, which must not reach a one-line error.
pub fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}
