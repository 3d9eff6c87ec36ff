//! Readers for the formats datasets ship in (parquet, JSON, JSON Lines, CSV), all producing
//! JSON objects keyed by column name, and the raw JSONL store under data/raw/<task>/.

use std::io::BufRead;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{Map, Value};

use crate::config::RawFormat;
use crate::error::{Error, Result};

pub type Row = Map<String, Value>;

/// Read every row of one downloaded file. `label` names the file in errors (repo + path).
pub fn read_rows(path: &Path, format: RawFormat, label: &str) -> Result<Vec<Row>> {
    read_rows_hint(
        path,
        format,
        label,
        "the file is damaged or truncated: delete it from the hub cache and download again",
    )
}

/// [`read_rows`] with the advice its errors end with (a local file is fixed, not downloaded).
pub fn read_rows_hint(path: &Path, format: RawFormat, label: &str, hint: &str) -> Result<Vec<Row>> {
    let bad = |message: String| Error::BadFile {
        path: path.to_path_buf(),
        message: format!("{label}: {message}; {hint}"),
    };
    match format {
        RawFormat::Parquet => {
            let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
            let reader = SerializedFileReader::new(file)
                .map_err(|e| bad(format!("not a readable parquet file ({e})")))?;
            let iter = reader
                .get_row_iter(None)
                .map_err(|e| bad(format!("cannot read parquet rows ({e})")))?;
            let mut rows = Vec::new();
            for (i, row) in iter.enumerate() {
                let row = row.map_err(|e| bad(format!("row {i}: {e}")))?;
                match row.to_json_value() {
                    Value::Object(m) => rows.push(m),
                    other => return Err(bad(format!("row {i} is not a record: {other}"))),
                }
            }
            Ok(rows)
        }
        RawFormat::Json => {
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let value: Value =
                serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON ({e})")))?;
            let items = match value {
                Value::Array(items) => items,
                Value::Object(mut m) => match m.remove("data") {
                    Some(Value::Array(items)) => items,
                    _ => return Err(bad("expected a JSON array or {\"data\": [...]}".into())),
                },
                _ => return Err(bad("expected a JSON array of objects".into())),
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(m),
                    _ => Err(bad(format!("item {i} is not an object"))),
                })
                .collect()
        }
        RawFormat::Jsonl => read_jsonl(path),
        RawFormat::Csv => {
            let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
            let headers = reader
                .headers()
                .map_err(|e| bad(format!("no CSV header ({e})")))?
                .clone();
            let mut rows = Vec::new();
            for (i, rec) in reader.records().enumerate() {
                let rec = rec.map_err(|e| bad(format!("CSV record {} ({e})", i + 1)))?;
                let row = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                rows.push(row);
            }
            Ok(rows)
        }
    }
}

/// Read a JSON Lines file of objects; errors name the file and 1-based line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Row>> {
    let file = std::fs::File::open(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut rows = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::BadRow {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).map_err(|e| Error::BadRow {
            path: path.to_path_buf(),
            line: i + 1,
            message: format!("not valid JSON ({e}); the file is truncated or edited"),
        })?;
        match value {
            Value::Object(m) => rows.push(m),
            _ => {
                return Err(Error::BadRow {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: "expected a JSON object".into(),
                })
            }
        }
    }
    Ok(rows)
}
