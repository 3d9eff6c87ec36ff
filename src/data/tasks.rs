//! Raw row → `Example`, one converter per answer kind. Every check names the field and the
//! value so a malformed row is reported with its file and line by the caller.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{AnswerKind, TaskConfig};
use crate::data::raw::Row;
use crate::data::{Answer, Example, Span};

/// Convert one raw row. `split` and `index` give rows without their own id a stable one.
/// Errors are messages without location; the caller adds file and line.
pub fn to_example(
    task: &TaskConfig,
    split: &str,
    index: usize,
    row: &Row,
) -> Result<Example, String> {
    let f = Fields { task, row };
    match task.answer.kind {
        AnswerKind::Label => label_example(&f, split, index),
        AnswerKind::Spans => spans_example(&f),
        AnswerKind::Choice => choice_example(&f),
        AnswerKind::Code => code_example(&f),
        AnswerKind::Text | AnswerKind::List | AnswerKind::Retrieval | AnswerKind::Summary => {
            crate::data::context::context_example(task, split, index, row)
        }
    }
}

struct Fields<'a> {
    task: &'a TaskConfig,
    row: &'a Row,
}

impl Fields<'_> {
    fn raw(&self, ours: &str) -> Result<&Value, String> {
        let col = self.task.column(ours);
        match self.row.get(col) {
            None => Err(format!("column `{col}` is missing")),
            Some(Value::Null) => Err(format!("column `{col}` is null")),
            Some(v) => Ok(v),
        }
    }

    fn str(&self, ours: &str) -> Result<String, String> {
        match self.raw(ours)? {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!(
                "column `{}` should be text, found {other}",
                self.task.column(ours)
            )),
        }
    }

    /// A text column that may be null (treated as empty).
    fn str_or_empty(&self, ours: &str) -> Result<String, String> {
        match self.row.get(self.task.column(ours)) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(_) => self.str(ours),
        }
    }

    fn int(&self, ours: &str) -> Result<i64, String> {
        let col = self.task.column(ours);
        match self.raw(ours)? {
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| format!("column `{col}` should be an integer, found {n}")),
            Value::String(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("column `{col}` should be an integer, found {s:?}")),
            other => Err(format!(
                "column `{col}` should be an integer, found {other}"
            )),
        }
    }

    fn str_list(&self, ours: &str) -> Result<Vec<String>, String> {
        let col = self.task.column(ours);
        match self.row.get(col) {
            None => Err(format!("column `{col}` is missing")),
            Some(Value::Null) => Ok(Vec::new()),
            // A CSV cell holding a JSON list (bring-your-own data).
            Some(Value::String(s)) if s.trim_start().starts_with('[') => json_string_list(col, s),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(format!("column `{col}` should hold text, found {other}")),
                })
                .collect(),
            Some(other) => Err(format!("column `{col}` should be a list, found {other}")),
        }
    }
}

fn not_empty(name: &str, s: String) -> Result<String, String> {
    if s.trim().is_empty() {
        Err(format!("column `{name}` is empty"))
    } else {
        Ok(s)
    }
}

fn label_example(f: &Fields, split: &str, index: usize) -> Result<Example, String> {
    let labels = &f.task.answer.labels;
    let text = not_empty(f.task.column("text"), f.str("text")?)?;
    let col = f.task.column("label");
    // ClassLabel columns hold the index; CSV/JSON exports sometimes hold the name.
    let label = match f.raw("label")? {
        Value::String(s) if labels.contains(s) => s.clone(),
        Value::String(s) if s.trim().parse::<i64>().is_err() => {
            return Err(format!(
                "column `{col}` = {s:?} is not one of the {} labels ({}) nor an index",
                labels.len(),
                labels.join(", ")
            ))
        }
        _ => {
            let i = f.int("label")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| labels.get(i))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "column `{col}` = {i} is outside the {} labels (0..{})",
                        labels.len(),
                        labels.len() - 1
                    )
                })?
        }
    };
    Ok(Example {
        id: format!("{split}-{index:06}"),
        task: f.task.id.clone(),
        inputs: BTreeMap::from([("text".to_string(), text)]),
        answer: Answer::Label {
            label: label.clone(),
        },
        target: label.clone(),
        stratum: Some(label),
    })
}

fn spans_example(f: &Fields) -> Result<Example, String> {
    let id = not_empty("id", f.str("id")?)?;
    let context = not_empty(f.task.column("context"), f.str("context")?)?;
    let question = not_empty(f.task.column("question"), f.str("question")?)?;
    let title = f.str_or_empty("title")?;
    let col = f.task.column("answers");
    // A CSV cell holds the struct as JSON text (bring-your-own data).
    let parsed = match f.raw("answers")? {
        Value::String(s) if s.trim_start().starts_with('{') => serde_json::from_str(s)
            .map_err(|e| format!("column `{col}` is not JSON {{text, answer_start}} ({e})"))?,
        other => other.clone(),
    };
    let answers = match &parsed {
        Value::Object(m) => m,
        other => {
            return Err(format!(
                "column `{col}` should be {{text, answer_start}}, found {other}"
            ))
        }
    };
    let texts: Vec<String> = match answers.get("text") {
        Some(Value::Array(v)) => v
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{col}.text` holds {x}"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => return Err(format!("`{col}.text` should be a list, found {other}")),
    };
    let starts: Vec<usize> = match answers.get("answer_start") {
        Some(Value::Array(v)) => v
            .iter()
            .map(|x| {
                x.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| format!("`{col}.answer_start` holds {x}"))
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Null) | None => Vec::new(),
        Some(other) => {
            return Err(format!(
                "`{col}.answer_start` should be a list, found {other}"
            ))
        }
    };
    if texts.len() != starts.len() {
        return Err(format!(
            "`{col}` has {} texts but {} answer_start offsets",
            texts.len(),
            starts.len()
        ));
    }
    let n_chars = context.chars().count();
    let mut spans: Vec<Span> = Vec::new();
    for (text, start) in texts.into_iter().zip(starts) {
        if start + text.chars().count() > n_chars {
            return Err(format!(
                "`{col}` span at {start} ({} chars) runs past the end of the context ({n_chars} chars)",
                text.chars().count()
            ));
        }
        let span = Span { text, start };
        if !spans.contains(&span) {
            spans.push(span);
        }
    }
    let no_answer = f.task.answer.no_answer.clone().unwrap_or_default();
    let target = if spans.is_empty() {
        no_answer
    } else {
        spans
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let stratum = if spans.is_empty() {
        "absent"
    } else {
        "present"
    };
    Ok(Example {
        id,
        task: f.task.id.clone(),
        inputs: BTreeMap::from([
            ("title".to_string(), title),
            ("context".to_string(), context),
            ("question".to_string(), question),
        ]),
        answer: Answer::Spans { spans },
        target,
        stratum: Some(stratum.to_string()),
    })
}

fn choice_example(f: &Fields) -> Result<Example, String> {
    let letters = &f.task.answer.options;
    let id = not_empty("id", f.str("id")?)?;
    let question = not_empty(f.task.column("question"), f.str("question")?)?;
    let mut inputs = BTreeMap::from([("question".to_string(), question)]);
    let mut texts = Vec::new();
    for (letter, col) in letters.iter().zip(&f.task.answer.option_columns) {
        let text = match f.row.get(col) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None => return Err(format!("column `{col}` is missing")),
            Some(Value::Null) => return Err(format!("column `{col}` is null")),
            Some(other) => return Err(format!("column `{col}` should be text, found {other}")),
        };
        inputs.insert(format!("option_{}", letter.to_lowercase()), text.clone());
        texts.push(text);
    }
    let options = letters
        .iter()
        .zip(&texts)
        .map(|(l, t)| format!("{l}. {t}"))
        .collect::<Vec<_>>()
        .join("\n");
    inputs.insert("options".to_string(), options);
    let col = f.task.column("answer");
    // The option index, or (bring-your-own data) the option letter itself.
    let i = match f.raw("answer")? {
        Value::String(s) if letters.iter().any(|l| l.eq_ignore_ascii_case(s.trim())) => letters
            .iter()
            .position(|l| l.eq_ignore_ascii_case(s.trim()))
            .map_or(-1, |k| k as i64),
        _ => f.int("answer")?,
    };
    let Some(k) = usize::try_from(i).ok().filter(|k| *k < letters.len()) else {
        return Err(format!(
            "column `{col}` = {i} is not an option index 0..{} (unlabelled rows, such as MedMCQA's test split, cannot be used)",
            letters.len() - 1
        ));
    };
    let letter = letters[k].clone();
    Ok(Example {
        id,
        task: f.task.id.clone(),
        inputs,
        answer: Answer::Choice {
            option: letter.clone(),
            text: texts[k].clone(),
        },
        target: letter.clone(),
        stratum: Some(letter),
    })
}

fn code_example(f: &Fields) -> Result<Example, String> {
    let id = f.str("task_id")?;
    let text = not_empty(f.task.column("text"), f.str("text")?)?;
    // MBPP stores code with CRLF line endings; models see and write LF.
    let code = not_empty(f.task.column("code"), f.str("code")?)?.replace("\r\n", "\n");
    let tests = f.str_list("test_list")?;
    if tests.is_empty() {
        return Err(format!(
            "column `{}` is empty: nothing to check a solution with",
            f.task.column("test_list")
        ));
    }
    let setup = f.str_or_empty("test_setup_code")?.replace("\r\n", "\n");
    let challenge_tests = f.str_list("challenge_test_list")?;
    Ok(Example {
        id,
        task: f.task.id.clone(),
        inputs: BTreeMap::from([
            ("text".to_string(), text),
            ("tests".to_string(), tests.join("\n")),
        ]),
        answer: Answer::Code {
            reference: code.clone(),
            tests,
            setup,
            challenge_tests,
        },
        target: code,
        stratum: None,
    })
}

/// A cell holding a JSON list of strings (how a CSV file carries a list column).
pub(crate) fn json_string_list(col: &str, s: &str) -> Result<Vec<String>, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("column `{col}` should hold text, found {other}")),
            })
            .collect(),
        _ => Err(format!(
            "column `{col}` starts with `[` but is not a JSON list of strings: {s:?}"
        )),
    }
}
