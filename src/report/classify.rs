//! Per-example scoring and error classes.
//!
//! Every prediction gets one class and one score in [0, 1]: the per-example form of the
//! task's headline metric (right/wrong for labels and options, token F1 for clause
//! extraction, passed/failed for code). Classes per answer kind:
//!
//! - label: `correct`, `wrong_label`, `label_outside_set` (a short answer that names no
//!   label), `unparseable` (no answer found at all);
//! - choice: `correct`, `wrong_option`, `no_option`;
//! - spans: `correct` (token F1 = 1, or rightly no clause), `missed_clause` (a clause exists,
//!   none found), `false_positive` (no clause exists, one was claimed), `partial_span`
//!   (0 < F1 < 1), `wrong_span` (spans found, none overlapping);
//! - code: `correct` (every assert passed), `syntax_error`, `runtime_error`,
//!   `failed_assertion`, `timeout`;
//! - any kind: `request_error` — the request failed after retries; such predictions are left
//!   out of every metric (rerun `bwb eval` to retry them) and counted here.

use serde::{Deserialize, Serialize};

use crate::config::{AnswerKind, TaskConfig};
use crate::data::Answer;
use crate::eval::extract::Parsed;
use crate::eval::predictions::Prediction;
use crate::exec::{ExecResult, Outcome};
use crate::metrics;

pub const CORRECT: &str = "correct";
pub const REQUEST_ERROR: &str = "request_error";

/// One prediction's class and score, written to results/classified/.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    pub id: String,
    pub example_id: String,
    pub seed: u64,
    pub class: String,
    /// Per-example score of the headline metric, in [0, 1]; None for request errors.
    pub score: Option<f64>,
    /// One line saying why (the wrong label given, the failing assert, …).
    pub detail: String,
}

/// The name of the per-example score for a task (used in comparisons).
pub fn score_name(task: &TaskConfig) -> &'static str {
    match task.answer.kind {
        AnswerKind::Label | AnswerKind::Choice => "correct",
        AnswerKind::Spans => "token_f1",
        AnswerKind::Code => "passed",
    }
}

/// Whether the per-example score is right/wrong (so McNemar applies).
pub fn score_is_binary(task: &TaskConfig) -> bool {
    !matches!(task.answer.kind, AnswerKind::Spans)
}

/// Class and score of one prediction. `exec` is the execution result for code tasks (None
/// for other kinds, or when the prediction is a request error).
pub fn classify(task: &TaskConfig, p: &Prediction, exec: Option<&ExecResult>) -> Classified {
    let (class, score, detail) = match &p.error {
        Some(e) => (REQUEST_ERROR, None, first_line(e, 200)),
        None => {
            let (c, s, d) = class_of(task, p, exec);
            (c, Some(s), d)
        }
    };
    Classified {
        id: p.id.clone(),
        example_id: p.example_id.clone(),
        seed: p.seed,
        class: class.to_string(),
        score,
        detail,
    }
}

fn class_of(
    task: &TaskConfig,
    p: &Prediction,
    exec: Option<&ExecResult>,
) -> (&'static str, f64, String) {
    match (&p.prediction, &p.gold) {
        (Parsed::Label { label }, Answer::Label { label: gold }) => match label {
            Some(l) if l == gold => (CORRECT, 1.0, String::new()),
            Some(l) => ("wrong_label", 0.0, format!("said `{l}`, gold `{gold}`")),
            None => {
                let said = answer_line(&p.raw_output);
                if said.is_empty() {
                    ("unparseable", 0.0, "empty answer".into())
                } else if looks_like_a_label(&said) {
                    (
                        "label_outside_set",
                        0.0,
                        format!("`{}` is not a label of {}", first_line(&said, 80), task.id),
                    )
                } else {
                    (
                        "unparseable",
                        0.0,
                        format!("no label in `{}`", first_line(&said, 80)),
                    )
                }
            }
        },
        (Parsed::Choice { option }, Answer::Choice { option: gold, .. }) => match option {
            Some(o) if o.eq_ignore_ascii_case(gold) => (CORRECT, 1.0, String::new()),
            Some(o) => ("wrong_option", 0.0, format!("chose {o}, gold {gold}")),
            None => (
                "no_option",
                0.0,
                format!(
                    "no option letter in `{}`",
                    first_line(&answer_line(&p.raw_output), 80)
                ),
            ),
        },
        (Parsed::Spans { spans }, Answer::Spans { spans: gold }) => {
            let gold: Vec<String> = gold.iter().map(|s| s.text.clone()).collect();
            let f1 = metrics::cuad::token_f1(spans, &gold);
            let class = match (spans.is_empty(), gold.is_empty()) {
                (true, true) => CORRECT,
                (true, false) => "missed_clause",
                (false, true) => "false_positive",
                (false, false) if f1 >= 1.0 => CORRECT,
                (false, false) if f1 > 0.0 => "partial_span",
                (false, false) => "wrong_span",
            };
            let detail = match class {
                CORRECT => String::new(),
                "missed_clause" => format!("{} gold span(s), none found", gold.len()),
                "false_positive" => format!("{} span(s) claimed, none exist", spans.len()),
                _ => format!("token F1 {f1:.3}"),
            };
            (class, f1, detail)
        }
        (Parsed::Code { .. }, Answer::Code { .. }) => match exec {
            Some(r) => {
                let class = match r.outcome {
                    Outcome::Passed => CORRECT,
                    Outcome::SyntaxError => "syntax_error",
                    Outcome::RuntimeError => "runtime_error",
                    Outcome::FailedAssertion => "failed_assertion",
                    Outcome::Timeout => "timeout",
                };
                let score = if r.outcome == Outcome::Passed {
                    1.0
                } else {
                    0.0
                };
                (class, score, first_line(&r.detail, 200))
            }
            None => ("not_executed", 0.0, "code was not executed".into()),
        },
        (pred, gold) => (
            "unparseable",
            0.0,
            format!(
                "prediction kind {} does not match the gold answer kind {}",
                parsed_kind(pred),
                answer_kind(gold)
            ),
        ),
    }
}

fn parsed_kind(p: &Parsed) -> &'static str {
    match p {
        Parsed::Label { .. } => "label",
        Parsed::Choice { .. } => "choice",
        Parsed::Spans { .. } => "spans",
        Parsed::Code { .. } => "code",
    }
}

fn answer_kind(a: &Answer) -> &'static str {
    match a {
        Answer::Label { .. } => "label",
        Answer::Choice { .. } => "choice",
        Answer::Spans { .. } => "spans",
        Answer::Code { .. } => "code",
    }
}

/// The first non-empty line of the answer, after any `<think>` block.
fn answer_line(raw: &str) -> String {
    let s = match raw.rfind("</think>") {
        Some(i) => &raw[i + "</think>".len()..],
        None => raw,
    };
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}

/// A short phrase (a few words, no sentence) reads as an attempted label.
fn looks_like_a_label(s: &str) -> bool {
    let words = s.split_whitespace().count();
    words <= 6 && s.chars().count() <= 60 && !s.ends_with('?')
}

/// At most `max` characters of the first line of `s`.
fn first_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_line_skips_reasoning_and_blank_lines() {
        assert_eq!(answer_line("<think>x\ny</think>\n\n  refund \n"), "refund");
        assert_eq!(answer_line(""), "");
    }

    #[test]
    fn short_phrases_are_labels_sentences_are_not() {
        assert!(looks_like_a_label("card swallowed"));
        assert!(!looks_like_a_label(
            "I am not sure which category this message belongs to, sorry"
        ));
        assert!(!looks_like_a_label("which one?"));
    }

    #[test]
    fn first_line_truncates_on_char_boundaries() {
        assert_eq!(first_line("ééééé\nx", 3), "ééé…");
        assert_eq!(first_line("ab", 3), "ab");
    }
}
