//! Raw row → `Example` for the context-benchmark answer kinds (text, list, retrieval,
//! summary): prompt inputs named by the config's `inputs` (default `question`, `context`),
//! the `context` column rendered by its `context_layout`, and the gold answer from the
//! `answers` column (retrieval: from the selected passages). Errors name the column and the
//! value; the caller adds file and line.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::{AnswerKind, ContextLayout, ListItems, TaskConfig};
use crate::data::raw::Row;
use crate::data::tasks::json_string_list;
use crate::data::{Answer, Example};

/// One passage of a `passages` context, with its gold relevance.
struct Passage {
    text: String,
    selected: bool,
}

/// Convert one row of a text / list / retrieval / summary task.
pub fn context_example(
    task: &TaskConfig,
    split: &str,
    index: usize,
    row: &Row,
) -> Result<Example, String> {
    let col = |ours: &str| task.column(ours).to_string();
    let id = example_id(task, row, split, index)?;
    let mut inputs = BTreeMap::new();
    let mut passages = Vec::new();
    for name in task.input_names() {
        let column = col(&name);
        let value = present(row, &column)?;
        let text = if name == "context" {
            match task.context_layout {
                ContextLayout::Plain => text_of(&column, value)?,
                ContextLayout::TitledParagraphs => titled_paragraphs(&column, value)?,
                ContextLayout::EvidencePages => evidence_pages(&column, value)?,
                ContextLayout::Passages => {
                    passages = read_passages(task, &column, value)?;
                    number_passages(&passages)
                }
            }
        } else {
            text_of(&column, value)?
        };
        if text.trim().is_empty() {
            return Err(format!("column `{column}` is empty"));
        }
        inputs.insert(name, text);
    }
    let (answer, target) = gold(task, row, &passages)?;
    let stratum = match task.columns.get("stratum") {
        Some(c) => Some(text_of(c, present(row, c)?)?),
        None => None,
    };
    Ok(Example {
        id,
        task: task.id.clone(),
        inputs,
        answer,
        target,
        stratum,
    })
}

/// The dataset's own id (`id`, or the column `columns.id` names); a row without an `id`
/// column, when the config does not map one, gets `<split>-<index>`.
fn example_id(task: &TaskConfig, row: &Row, split: &str, index: usize) -> Result<String, String> {
    let column = task.column("id");
    if row.get(column).is_none() && !task.columns.contains_key("id") {
        return Ok(format!("{split}-{index:06}"));
    }
    let id = text_of(column, present(row, column)?)?;
    if id.trim().is_empty() {
        return Err(format!("column `{column}` (the example id) is empty"));
    }
    Ok(id)
}

fn present<'a>(row: &'a Row, column: &str) -> Result<&'a Value, String> {
    match row.get(column) {
        None => Err(format!("column `{column}` is missing")),
        Some(Value::Null) => Err(format!("column `{column}` is null")),
        Some(v) => Ok(v),
    }
}

/// A text (or number) value.
fn text_of(column: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "column `{column}` should be text, found {}",
            short(other)
        )),
    }
}

/// A value for an error message, cut to 120 characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// A list of strings, or one string (a JSON-list string, as in a CSV cell, is a list).
fn strings(column: &str, v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) if s.trim_start().starts_with('[') => json_string_list(column, s),
        Value::String(_) | Value::Number(_) => Ok(vec![text_of(column, v)?]),
        Value::Array(items) => items.iter().map(|x| text_of(column, x)).collect(),
        other => Err(format!(
            "column `{column}` should be text or a list of text, found {}",
            short(other)
        )),
    }
}

/// A field of a struct value as a list (`{title: [..]}`), for struct-of-lists columns.
fn field_list<'a>(column: &str, m: &'a Map<String, Value>, f: &str) -> Result<&'a [Value], String> {
    match m.get(f) {
        Some(Value::Array(v)) => Ok(v),
        Some(other) => Err(format!(
            "`{column}.{f}` should be a list, found {}",
            short(other)
        )),
        None => Err(format!("`{column}` has no field `{f}`")),
    }
}

/// HotpotQA's context: `{title: [t..], sentences: [[s..]..]}` (the hub's parquet), or a list
/// of `[title, [sentences]]` pairs / `{title, sentences}` records (the original JSON).
fn titled_paragraphs(column: &str, v: &Value) -> Result<String, String> {
    let pairs: Vec<(&Value, &Value)> = match v {
        Value::Object(m) => {
            let titles = field_list(column, m, "title")?;
            let sentences = field_list(column, m, "sentences")?;
            if titles.len() != sentences.len() {
                return Err(format!(
                    "`{column}` has {} titles but {} sentence lists",
                    titles.len(),
                    sentences.len()
                ));
            }
            titles.iter().zip(sentences).collect()
        }
        Value::Array(items) => items
            .iter()
            .map(|p| match p {
                Value::Array(pair) if pair.len() == 2 => Ok((&pair[0], &pair[1])),
                Value::Object(m) => match (m.get("title"), m.get("sentences")) {
                    (Some(t), Some(s)) => Ok((t, s)),
                    _ => Err(format!(
                        "`{column}` item has no title / sentences: {}",
                        short(p)
                    )),
                },
                other => Err(format!(
                    "`{column}` item should be [title, sentences], found {}",
                    short(other)
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "column `{column}` should be {{title, sentences}}, found {}",
                short(other)
            ))
        }
    };
    let mut blocks = Vec::new();
    for (title, sentences) in pairs {
        let title = text_of(&format!("{column}.title"), title)?;
        // HotpotQA's sentences carry their own leading spaces: joined as they are.
        let body = strings(&format!("{column}.sentences"), sentences)?.concat();
        blocks.push(format!("{title}\n{}", body.trim()));
    }
    if blocks.is_empty() {
        return Err(format!("column `{column}` has no paragraphs"));
    }
    Ok(blocks.join("\n\n"))
}

/// MS MARCO's passages: `{is_selected: [..], passage_text: [..], url: [..]}` (the hub's
/// parquet) or a list of `{is_selected, passage_text}` records. The selection flag's
/// column is `is_selected` unless `columns.is_selected` renames it.
fn read_passages(task: &TaskConfig, column: &str, v: &Value) -> Result<Vec<Passage>, String> {
    let flag_name = task.column("is_selected");
    let flag = |x: &Value| -> Result<bool, String> {
        match x {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
            Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
            Value::String(s) if s == "0" || s == "1" => Ok(s == "1"),
            other => Err(format!(
                "`{column}.{flag_name}` should be 0 or 1, found {}",
                short(other)
            )),
        }
    };
    let text = |x: &Value| text_of(&format!("{column}.passage_text"), x);
    let passages: Vec<Passage> = match v {
        Value::Object(m) => {
            let texts = field_list(column, m, "passage_text")?;
            let flags = field_list(column, m, flag_name)?;
            if texts.len() != flags.len() {
                return Err(format!(
                    "`{column}` has {} passage_text but {} {flag_name}",
                    texts.len(),
                    flags.len()
                ));
            }
            texts
                .iter()
                .zip(flags)
                .map(|(t, s)| {
                    Ok(Passage {
                        text: text(t)?,
                        selected: flag(s)?,
                    })
                })
                .collect::<Result<_, String>>()?
        }
        Value::Array(items) => items
            .iter()
            .map(|p| match (p.get("passage_text"), p.get(flag_name)) {
                (Some(t), Some(s)) => Ok(Passage {
                    text: text(t)?,
                    selected: flag(s)?,
                }),
                _ => Err(format!(
                    "`{column}` item has no passage_text / {flag_name}: {}",
                    short(p)
                )),
            })
            .collect::<Result<_, String>>()?,
        other => {
            return Err(format!(
                "column `{column}` should be {{passage_text, {flag_name}}}, found {}",
                short(other)
            ))
        }
    };
    if passages.is_empty() {
        return Err(format!("column `{column}` has no passages"));
    }
    Ok(passages)
}

/// `[1] first passage`, blank line, `[2] …`: the numbers retrieval answers with.
fn number_passages(passages: &[Passage]) -> String {
    passages
        .iter()
        .enumerate()
        .map(|(i, p)| format!("[{}] {}", i + 1, p.text.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// FinanceBench's evidence: each distinct full page (`evidence_text_full_page`, else
/// `evidence_text`), headed `[doc_name, page N]`.
fn evidence_pages(column: &str, v: &Value) -> Result<String, String> {
    let items = match v {
        Value::Array(items) => items,
        other => {
            return Err(format!(
                "column `{column}` should be a list of evidence records, found {}",
                short(other)
            ))
        }
    };
    let mut seen = Vec::new();
    let mut blocks = Vec::new();
    for item in items {
        let Value::Object(m) = item else {
            return Err(format!(
                "`{column}` item should be a record, found {}",
                short(item)
            ));
        };
        let field = |f: &str| match m.get(f) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(x) => text_of(&format!("{column}.{f}"), x),
        };
        let mut page = field("evidence_text_full_page")?;
        if page.trim().is_empty() {
            page = field("evidence_text")?;
        }
        let key = (field("doc_name")?, field("evidence_page_num")?);
        if page.trim().is_empty() || seen.contains(&key) {
            continue;
        }
        blocks.push(format!("[{}, page {}]\n{}", key.0, key.1, page.trim()));
        seen.push(key);
    }
    if blocks.is_empty() {
        return Err(format!("column `{column}` has no evidence text"));
    }
    Ok(blocks.join("\n\n"))
}

/// The gold answer and the target text.
fn gold(task: &TaskConfig, row: &Row, passages: &[Passage]) -> Result<(Answer, String), String> {
    if task.answer.kind == AnswerKind::Retrieval {
        let relevant: Vec<String> = passages
            .iter()
            .enumerate()
            .filter(|(_, p)| p.selected)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        let target = if relevant.is_empty() {
            "None".to_string()
        } else {
            relevant.join(", ")
        };
        return Ok((Answer::Retrieval { relevant }, target));
    }
    let column = task.column("answers");
    let value = present(row, column)?;
    match task.answer.kind {
        AnswerKind::List => {
            let items = list_items(column, value, task.answer.items)?;
            // ETHIC scores an empty gold list as the answer "None".
            let target = if items.is_empty() {
                "None".to_string()
            } else {
                items.join(", ")
            };
            Ok((Answer::List { items }, target))
        }
        AnswerKind::Summary => {
            let references = non_empty(column, strings(column, value)?)?;
            let target = references[0].clone();
            Ok((Answer::Summary { references }, target))
        }
        _ => {
            let answers = non_empty(column, strings(column, value)?)?;
            let target = answers[0].clone();
            Ok((Answer::Text { answers }, target))
        }
    }
}

/// Trimmed, without empty strings; an error when nothing is left.
fn non_empty(column: &str, v: Vec<String>) -> Result<Vec<String>, String> {
    let out: Vec<String> = v
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if out.is_empty() {
        return Err(format!("column `{column}` holds no gold answer"));
    }
    Ok(out)
}

/// A list task's gold items (may be empty: ETHIC Attributing has rows with none).
fn list_items(column: &str, v: &Value, mode: ListItems) -> Result<Vec<String>, String> {
    let is_list = matches!(v, Value::Array(_))
        || matches!(v, Value::String(s) if s.trim_start().starts_with('['));
    let raw = strings(column, v)?;
    let items: Vec<String> = match (mode, is_list) {
        (ListItems::Text, true) => raw,
        (ListItems::Text, false) => raw
            .iter()
            .flat_map(|s| s.split([',', ';', '\n']))
            .map(str::to_string)
            .collect(),
        (ListItems::Numbers, false) => raw.iter().flat_map(|s| numbers(s)).collect(),
        (ListItems::Numbers, true) => raw
            .iter()
            .map(|s| {
                numbers(s)
                    .into_iter()
                    .next()
                    .ok_or_else(|| format!("column `{column}` item {s:?} holds no number"))
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(items
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Every run of ASCII digits in `s`, in order.
fn numbers(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_order() {
        assert_eq!(numbers("3, 1 -> 12; 7"), ["3", "1", "12", "7"]);
        let v = serde_json::json!(["Segment 4", "Segment 12"]);
        assert_eq!(
            list_items("a", &v, ListItems::Numbers).unwrap(),
            ["4", "12"]
        );
        let v = serde_json::json!("alpha; beta, gamma");
        assert_eq!(
            list_items("a", &v, ListItems::Text).unwrap(),
            ["alpha", "beta", "gamma"]
        );
    }
}
