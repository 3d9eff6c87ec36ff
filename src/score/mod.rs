//! Scoring: one scorer per answer kind owns the whole path from a model's raw output to the
//! task's metrics — extraction → error class → per-example score → aggregate metrics.
//!
//! Nothing else scores: `bwb eval` extracts with [`Scorer::extract`], `bwb classify` judges
//! with [`Scorer::judge`], summaries aggregate with [`Scorer::metrics`], and training
//! validation runs the same three on generated answers ([`score_outputs`]).
//!
//! Adding an answer kind: one file here with a type implementing [`Scorer`], its variants in
//! [`AnswerKind`](crate::config::AnswerKind), [`Parsed`] and [`Answer`], and one line in
//! [`scorer`].

pub mod choice;
pub mod code;
pub mod label;
pub mod list;
pub mod retrieval;
pub mod spans;
pub mod summary;
pub mod text;

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{AnswerKind, TaskConfig};
use crate::data::{Answer, Example};
use crate::exec::ExecResult;

/// A parsed prediction; `None` where the output holds no valid answer. Stored next to the
/// raw output in prediction files, so scoring never re-parses text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parsed {
    Label {
        label: Option<String>,
    },
    Choice {
        option: Option<String>,
    },
    /// Empty: the model says the clause is absent.
    Spans {
        spans: Vec<String>,
    },
    Code {
        code: String,
    },
    /// The answer text, reasoning and "Answer:" prefixes removed.
    Text {
        text: String,
    },
    List {
        items: Vec<String>,
    },
    /// Passage ids in the model's ranked order.
    Retrieval {
        ids: Vec<String>,
    },
    Summary {
        text: String,
    },
}

impl Parsed {
    /// Whether the output was understood (a label or letter was found).
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Label { label } => label.is_some(),
            Self::Choice { option } => option.is_some(),
            Self::Spans { .. }
            | Self::Code { .. }
            | Self::Text { .. }
            | Self::List { .. }
            | Self::Retrieval { .. }
            | Self::Summary { .. } => true,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Label { .. } => "label",
            Self::Choice { .. } => "choice",
            Self::Spans { .. } => "spans",
            Self::Code { .. } => "code",
            Self::Text { .. } => "text",
            Self::List { .. } => "list",
            Self::Retrieval { .. } => "retrieval",
            Self::Summary { .. } => "summary",
        }
    }
}

/// Every metric a task can be scored and selected by (`metric_id` in configs/tasks/*.yaml).
/// Which ones a task computes depends on its answer kind ([`Scorer::metric_ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MetricId {
    #[serde(rename = "accuracy")]
    Accuracy,
    #[serde(rename = "macro_f1")]
    MacroF1,
    #[serde(rename = "weighted_f1")]
    WeightedF1,
    #[serde(rename = "cuad_f1")]
    CuadF1,
    #[serde(rename = "exact_match")]
    ExactMatch,
    #[serde(rename = "answer_detection_f1")]
    AnswerDetectionF1,
    #[serde(rename = "answer_detection_precision")]
    AnswerDetectionPrecision,
    #[serde(rename = "answer_detection_recall")]
    AnswerDetectionRecall,
    #[serde(rename = "aupr")]
    Aupr,
    #[serde(rename = "pass_at_1")]
    PassAt1,
    #[serde(rename = "f1")]
    F1,
    #[serde(rename = "rouge1")]
    Rouge1,
    #[serde(rename = "rouge2")]
    Rouge2,
    #[serde(rename = "rougeL")]
    RougeL,
    #[serde(rename = "bertscore_precision")]
    BertscorePrecision,
    #[serde(rename = "bertscore_recall")]
    BertscoreRecall,
    #[serde(rename = "bertscore_f1")]
    BertscoreF1,
    #[serde(rename = "set_exact_match")]
    SetExactMatch,
    #[serde(rename = "set_precision")]
    SetPrecision,
    #[serde(rename = "set_recall")]
    SetRecall,
    #[serde(rename = "set_f1")]
    SetF1,
    #[serde(rename = "retrieval_precision")]
    RetrievalPrecision,
    #[serde(rename = "retrieval_recall")]
    RetrievalRecall,
    #[serde(rename = "retrieval_f1")]
    RetrievalF1,
}

impl MetricId {
    pub const ALL: [MetricId; 24] = [
        Self::Accuracy,
        Self::MacroF1,
        Self::WeightedF1,
        Self::CuadF1,
        Self::ExactMatch,
        Self::AnswerDetectionF1,
        Self::AnswerDetectionPrecision,
        Self::AnswerDetectionRecall,
        Self::Aupr,
        Self::PassAt1,
        Self::F1,
        Self::Rouge1,
        Self::Rouge2,
        Self::RougeL,
        Self::BertscorePrecision,
        Self::BertscoreRecall,
        Self::BertscoreF1,
        Self::SetExactMatch,
        Self::SetPrecision,
        Self::SetRecall,
        Self::SetF1,
        Self::RetrievalPrecision,
        Self::RetrievalRecall,
        Self::RetrievalF1,
    ];

    /// The serialised name, e.g. `macro_f1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::MacroF1 => "macro_f1",
            Self::WeightedF1 => "weighted_f1",
            Self::CuadF1 => "cuad_f1",
            Self::ExactMatch => "exact_match",
            Self::AnswerDetectionF1 => "answer_detection_f1",
            Self::AnswerDetectionPrecision => "answer_detection_precision",
            Self::AnswerDetectionRecall => "answer_detection_recall",
            Self::Aupr => "aupr",
            Self::PassAt1 => "pass_at_1",
            Self::F1 => "f1",
            Self::Rouge1 => "rouge1",
            Self::Rouge2 => "rouge2",
            Self::RougeL => "rougeL",
            Self::BertscorePrecision => "bertscore_precision",
            Self::BertscoreRecall => "bertscore_recall",
            Self::BertscoreF1 => "bertscore_f1",
            Self::SetExactMatch => "set_exact_match",
            Self::SetPrecision => "set_precision",
            Self::SetRecall => "set_recall",
            Self::SetF1 => "set_f1",
            Self::RetrievalPrecision => "retrieval_precision",
            Self::RetrievalRecall => "retrieval_recall",
            Self::RetrievalF1 => "retrieval_f1",
        }
    }
}

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every prediction's error class (`correct` included). Classes per answer kind:
///
/// - label: `correct`, `wrong_label`, `label_outside_set` (a short answer that names no
///   label), `unparseable` (no answer found at all);
/// - choice: `correct`, `wrong_option`, `no_option`;
/// - spans: `correct` (token F1 = 1, or rightly no clause), `missed_clause` (a clause exists,
///   none found), `false_positive` (no clause exists, one was claimed), `partial_span`
///   (0 < F1 < 1), `wrong_span` (spans found, none overlapping);
/// - code: `correct` (every assert passed), `syntax_error`, `runtime_error`,
///   `failed_assertion`, `timeout`, `not_executed`;
/// - text: `correct` (token F1 = 1), `partial_answer` (0 < F1 < 1),
///   `wrong_answer` (F1 = 0), `no_answer` (nothing left to score after extraction);
/// - list: `correct` (every item right, none missing), `missing_items` (no wrong item, some
///   gold items missing), `extra_items` (every gold item found, plus wrong ones),
///   `wrong_items` (wrong items and missing ones), `no_answer`;
/// - retrieval: the list classes over passage ids within the cut-off `k`;
/// - summary: `correct` (ROUGE-L F at least [`summary::LOW_OVERLAP`]), `low_overlap` (below
///   it), `no_answer` (no ROUGE token in the output);
/// - any kind: `request_error` — the request failed after retries; such predictions are left
///   out of every metric (rerun `bwb eval` to retry them) and counted.
///
/// Serialised in snake_case and ordered by that name, as results files always were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    Correct,
    WrongLabel,
    LabelOutsideSet,
    Unparseable,
    WrongOption,
    NoOption,
    MissedClause,
    FalsePositive,
    PartialSpan,
    WrongSpan,
    SyntaxError,
    RuntimeError,
    FailedAssertion,
    Timeout,
    NotExecuted,
    WrongAnswer,
    PartialAnswer,
    NoAnswer,
    MissingItems,
    ExtraItems,
    WrongItems,
    LowOverlap,
    RequestError,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Correct => "correct",
            Self::WrongLabel => "wrong_label",
            Self::LabelOutsideSet => "label_outside_set",
            Self::Unparseable => "unparseable",
            Self::WrongOption => "wrong_option",
            Self::NoOption => "no_option",
            Self::MissedClause => "missed_clause",
            Self::FalsePositive => "false_positive",
            Self::PartialSpan => "partial_span",
            Self::WrongSpan => "wrong_span",
            Self::SyntaxError => "syntax_error",
            Self::RuntimeError => "runtime_error",
            Self::FailedAssertion => "failed_assertion",
            Self::Timeout => "timeout",
            Self::NotExecuted => "not_executed",
            Self::WrongAnswer => "wrong_answer",
            Self::PartialAnswer => "partial_answer",
            Self::NoAnswer => "no_answer",
            Self::MissingItems => "missing_items",
            Self::ExtraItems => "extra_items",
            Self::WrongItems => "wrong_items",
            Self::LowOverlap => "low_overlap",
            Self::RequestError => "request_error",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialOrd for ErrorClass {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ErrorClass {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// One answered prediction judged: its class, its per-example score in [0, 1] (the
/// per-example form of the headline metric) and one line saying why.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub class: ErrorClass,
    pub score: f64,
    pub detail: String,
}

impl Judged {
    fn new(class: ErrorClass, score: f64, detail: impl Into<String>) -> Self {
        Self {
            class,
            score,
            detail: detail.into(),
        }
    }

    fn correct() -> Self {
        Self::new(ErrorClass::Correct, 1.0, "")
    }
}

/// One judged prediction as the aggregate metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub example_id: &'a str,
    pub parsed: &'a Parsed,
    pub gold: &'a Answer,
    pub class: ErrorClass,
    pub score: f64,
}

/// The scoring of one answer kind. Implementations are pure: the same rows give the same
/// metrics, in the order of [`Scorer::metric_ids`].
pub trait Scorer: Send + Sync {
    /// A model's raw output → the answer form.
    fn extract(&self, raw: &str) -> Parsed;

    /// Class and score of one answered prediction. `exec` is the sandbox result of a code
    /// answer (None for other kinds).
    fn judge(&self, parsed: &Parsed, gold: &Answer, raw: &str, exec: Option<&ExecResult>)
        -> Judged;

    /// The metrics this kind computes, headline candidates first.
    fn metric_ids(&self) -> &'static [MetricId];

    /// Every metric of [`Scorer::metric_ids`] over `rows` (request errors already removed).
    ///
    /// For the text, list, retrieval and summary kinds every metric is the mean over `rows` of
    /// a per-example value (0 for a row whose prediction does not match the gold kind), so
    /// `metrics(&[row])` is that row's per-example metric set and the metrics of a set of rows
    /// are the means of theirs. (Not so for label, spans: macro F1, AUPR and answer detection
    /// are set-level.)
    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)>;

    /// The name of the per-example score (in paired comparisons).
    fn score_name(&self) -> &'static str;

    /// Whether the per-example score is right/wrong (so McNemar applies).
    fn score_is_binary(&self) -> bool {
        true
    }

    /// Whether judging needs the model-written program run in the sandbox.
    fn needs_execution(&self) -> bool {
        false
    }

    /// The metric training validation selects epochs by, for a task headlined by `primary`:
    /// `primary` itself unless computing it would run model-written code.
    fn validation_metric(&self, primary: MetricId) -> MetricId {
        primary
    }
}

/// The scorer for `task` — the one registration point of answer kinds.
pub fn scorer(task: &TaskConfig) -> Box<dyn Scorer> {
    let a = &task.answer;
    match a.kind {
        AnswerKind::Label => Box::new(label::LabelScorer::new(&task.id, &a.labels)),
        AnswerKind::Choice => Box::new(choice::ChoiceScorer::new(&a.options)),
        AnswerKind::Spans => Box::new(spans::SpansScorer::new(a.no_answer.as_deref())),
        AnswerKind::Code => Box::new(code::CodeScorer),
        AnswerKind::Text => Box::new(text::TextScorer::new(a.convention)),
        AnswerKind::List => Box::new(list::ListScorer),
        AnswerKind::Retrieval => Box::new(retrieval::RetrievalScorer::new(a.k)),
        AnswerKind::Summary => Box::new(summary::SummaryScorer),
    }
}

/// The value of `id` in a metrics list.
pub fn metric_value(metrics: &[(MetricId, f64)], id: MetricId) -> Option<f64> {
    metrics.iter().find(|(m, _)| *m == id).map(|(_, v)| *v)
}

/// Score raw completions of `examples` without running code: extract, judge, aggregate —
/// what training validation reports. Returns every metric of the task's scorer.
pub fn score_outputs(
    task: &TaskConfig,
    examples: &[Example],
    outputs: &[String],
) -> Vec<(MetricId, f64)> {
    let s = scorer(task);
    let parsed: Vec<Parsed> = outputs.iter().map(|o| s.extract(o)).collect();
    let judged: Vec<Judged> = examples
        .iter()
        .zip(&parsed)
        .zip(outputs)
        .map(|((ex, p), raw)| s.judge(p, &ex.answer, raw, None))
        .collect();
    let rows: Vec<Row<'_>> = examples
        .iter()
        .zip(&parsed)
        .zip(&judged)
        .map(|((ex, p), j)| Row {
            example_id: &ex.id,
            parsed: p,
            gold: &ex.answer,
            class: j.class,
            score: j.score,
        })
        .collect();
    s.metrics(&rows)
}

/// A prediction whose form does not match the gold answer's (a task changed kind between
/// eval and classify).
fn mismatch(parsed: &Parsed, gold: &Answer) -> Judged {
    let gold_kind = match gold {
        Answer::Label { .. } => "label",
        Answer::Choice { .. } => "choice",
        Answer::Spans { .. } => "spans",
        Answer::Code { .. } => "code",
        Answer::Text { .. } => "text",
        Answer::List { .. } => "list",
        Answer::Retrieval { .. } => "retrieval",
        Answer::Summary { .. } => "summary",
    };
    Judged::new(
        ErrorClass::Unparseable,
        0.0,
        format!(
            "prediction kind {} does not match the gold answer kind {gold_kind}",
            parsed.kind()
        ),
    )
}

fn mean_score(rows: &[Row<'_>]) -> f64 {
    let v: Vec<f64> = rows.iter().map(|r| r.score).collect();
    crate::metrics::stats::mean(&v).unwrap_or(0.0)
}

/// Per-metric means over `rows` of `per_example` (a value per metric of `ids`, in that
/// order; `None` — a kind mismatch — counts as all zeros). All zeros for no rows.
fn mean_per_example(
    rows: &[Row<'_>],
    ids: &[MetricId],
    per_example: impl Fn(&Row<'_>) -> Option<Vec<f64>>,
) -> Vec<(MetricId, f64)> {
    let mut columns = vec![Vec::with_capacity(rows.len()); ids.len()];
    for r in rows {
        let values = per_example(r).unwrap_or_else(|| vec![0.0; ids.len()]);
        debug_assert_eq!(values.len(), ids.len());
        for (column, v) in columns.iter_mut().zip(values) {
            column.push(v);
        }
    }
    ids.iter()
        .zip(&columns)
        .map(|(&id, c)| (id, crate::metrics::stats::mean(c).unwrap_or(0.0)))
        .collect()
}

/// Lower case, `_`/`-` as spaces, runs of non-alphanumerics collapsed: "Card_Arrival." and
/// "card arrival" compare equal.
fn norm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

/// Strip reasoning blocks, markdown emphasis and an "Answer:"-style prefix.
fn answer_text(raw: &str) -> &str {
    let mut s = raw;
    // A leftover <think>…</think> block (Qwen3 with thinking on).
    if let Some(i) = s.rfind("</think>") {
        s = &s[i + "</think>".len()..];
    }
    let s = s.trim();
    for prefix in [
        "answer:",
        "final answer:",
        "label:",
        "intent:",
        "category:",
        "sentiment:",
    ] {
        if s.len() >= prefix.len()
            && s.is_char_boundary(prefix.len())
            && s[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return s[prefix.len()..].trim();
        }
    }
    s
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

/// At most `max` characters of the first line of `s`.
pub fn first_line(s: &str, max: usize) -> String {
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
    fn first_line_truncates_on_char_boundaries() {
        assert_eq!(first_line("ééééé\nx", 3), "ééé…");
        assert_eq!(first_line("ab", 3), "ab");
    }

    #[test]
    fn names_round_trip_and_classes_sort_by_name() {
        for m in MetricId::ALL {
            let s = serde_json::to_string(&m).unwrap();
            assert_eq!(s, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<MetricId>(&s).unwrap(), m);
        }
        let mut classes = [
            ErrorClass::WrongLabel,
            ErrorClass::Correct,
            ErrorClass::RequestError,
        ];
        classes.sort();
        let names: Vec<&str> = classes.iter().map(|c| c.as_str()).collect();
        assert_eq!(names, ["correct", "request_error", "wrong_label"]);
        assert_eq!(
            serde_json::to_string(&ErrorClass::LabelOutsideSet).unwrap(),
            "\"label_outside_set\""
        );
    }

    #[test]
    fn every_task_config_names_a_metric_its_scorer_computes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let configs = crate::config::Configs::load(&dir).unwrap();
        for task in configs.tasks.values() {
            let s = scorer(task);
            assert!(s.metric_ids().contains(&task.metric_id), "{}", task.id);
            assert_eq!(
                s.metric_ids().len(),
                s.metrics(&[]).len(),
                "{}: metrics in metric_ids order",
                task.id
            );
        }
    }
}
