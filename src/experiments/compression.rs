//! `mode: compressed`: each sampled example's context compressed before generation, once
//! (results/experiments/<id>/compression/<config>.jsonl keeps every answer, so a rerun sends
//! only what is missing), `concurrency` requests at a time.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::compress::{CompressError, Compressed, Compressor};
use crate::data::Example;

/// One example's compression, as stored and reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub method: String,
    /// The input that was compressed (`context`, or ETHIC's `user_msg`).
    pub field: String,
    #[serde(default)]
    pub result: Option<Compressed>,
    #[serde(default)]
    pub error: Option<String>,
}

fn question_of(ex: &Example) -> &str {
    ["question", "query", "input"]
        .iter()
        .find_map(|k| ex.inputs.get(*k))
        .map_or("", String::as_str)
}

/// What the workers share: the next example to take, their records, the first fatal error.
struct Shared {
    next: AtomicUsize,
    out: Mutex<Vec<Record>>,
    fatal: Mutex<Option<String>>,
}

/// Take examples until none is left or a fatal error stops everyone.
fn worker(c: &dyn Compressor, todo: &[&Example], sh: &Shared) {
    loop {
        let i = sh.next.fetch_add(1, Ordering::SeqCst);
        let Some(ex) = todo.get(i) else { break };
        if sh.fatal.lock().map(|f| f.is_some()).unwrap_or(true) {
            break;
        }
        let Some((field, text)) = ex.long_input() else {
            continue;
        };
        let record = |result, error| Record {
            id: ex.id.clone(),
            method: c.name().into(),
            field: field.clone(),
            result,
            error,
        };
        let rec = match c.compress(text, question_of(ex)) {
            Ok(res) => record(Some(res), None),
            Err(CompressError {
                fatal: true,
                message,
            }) => {
                if let Ok(mut f) = sh.fatal.lock() {
                    f.get_or_insert(message);
                }
                break;
            }
            Err(CompressError { message, .. }) => record(None, Some(message)),
        };
        if let Ok(mut o) = sh.out.lock() {
            o.push(rec);
        }
    }
}

/// Compress every example of `test` not already in `path`; returns every record by id.
pub fn compress_all(
    c: &dyn Compressor,
    test: &[Example],
    path: &Path,
    concurrency: usize,
) -> Result<HashMap<String, Record>> {
    let mut done: HashMap<String, Record> = HashMap::new();
    if path.exists() {
        for r in crate::fsutil::read_jsonl::<Record>(
            path,
            "compression records",
            "a compression record",
        )? {
            // Errors are retried, like failed predictions.
            if r.error.is_none() && r.method == c.name() {
                done.insert(r.id.clone(), r);
            }
        }
    }
    let todo: Vec<&Example> = test.iter().filter(|e| !done.contains_key(&e.id)).collect();
    let shared = Shared {
        next: AtomicUsize::new(0),
        out: Mutex::new(Vec::new()),
        fatal: Mutex::new(None),
    };
    std::thread::scope(|s| {
        for _ in 0..concurrency.max(1).min(todo.len().max(1)) {
            s.spawn(|| worker(c, &todo, &shared));
        }
    });
    let Shared { out, fatal, .. } = shared;
    let new = out.into_inner().unwrap_or_default();
    if !new.is_empty() {
        let mut all: Vec<Record> = done.values().cloned().chain(new.iter().cloned()).collect();
        let order: HashMap<&str, usize> = test
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.as_str(), i))
            .collect();
        all.sort_by_key(|r| order.get(r.id.as_str()).copied().unwrap_or(usize::MAX));
        crate::fsutil::write_atomic(path, |w| {
            for r in &all {
                serde_json::to_writer(&mut *w, r)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
    }
    if let Some(m) = fatal.into_inner().ok().flatten() {
        bail!("{m}");
    }
    for r in new {
        done.insert(r.id.clone(), r);
    }
    Ok(done)
}

/// The examples generation sees: compressed inputs in place of the originals; examples whose
/// compression failed are left out (their rows carry the error).
pub fn apply(test: &[Example], records: &HashMap<String, Record>) -> Vec<Example> {
    test.iter()
        .filter_map(|ex| match records.get(&ex.id) {
            Some(Record {
                result: Some(c),
                field,
                ..
            }) => {
                let mut e = ex.clone();
                e.inputs.insert(field.clone(), c.text.clone());
                Some(e)
            }
            Some(_) => None,
            None => Some(ex.clone()),
        })
        .collect()
}
