//! Clause extraction (CUAD): zero or more quoted spans, or the task's no-answer phrase.
//! Metrics as CUAD's evaluation: SQuAD token F1 on the joined spans (`cuad_f1`), exact match,
//! answer detection (does the model say a clause exists) as binary P/R/F1, and AUPR.

use super::{answer_text, mean_score, mismatch, norm, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::ExecResult;
use crate::metrics::{cuad, stats};

pub const METRICS: &[MetricId] = &[
    MetricId::CuadF1,
    MetricId::ExactMatch,
    MetricId::AnswerDetectionF1,
    MetricId::AnswerDetectionPrecision,
    MetricId::AnswerDetectionRecall,
    MetricId::Aupr,
];

pub struct SpansScorer {
    no_answer: String,
}

impl SpansScorer {
    pub fn new(no_answer: Option<&str>) -> Self {
        Self {
            no_answer: no_answer.unwrap_or("").to_string(),
        }
    }
}

fn gold_texts(gold: &[crate::data::Span]) -> Vec<String> {
    gold.iter().map(|s| s.text.clone()).collect()
}

impl Scorer for SpansScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Spans {
            spans: spans(&self.no_answer, raw),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, _: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::Spans { spans }, Answer::Spans { spans: gold }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        let gold = gold_texts(gold);
        let f1 = cuad::token_f1(spans, &gold);
        let class = match (spans.is_empty(), gold.is_empty()) {
            (true, true) => ErrorClass::Correct,
            (true, false) => ErrorClass::MissedClause,
            (false, true) => ErrorClass::FalsePositive,
            (false, false) if f1 >= 1.0 => ErrorClass::Correct,
            (false, false) if f1 > 0.0 => ErrorClass::PartialSpan,
            (false, false) => ErrorClass::WrongSpan,
        };
        let detail = match class {
            ErrorClass::Correct => String::new(),
            ErrorClass::MissedClause => format!("{} gold span(s), none found", gold.len()),
            ErrorClass::FalsePositive => format!("{} span(s) claimed, none exist", spans.len()),
            _ => format!("token F1 {f1:.3}"),
        };
        Judged::new(class, f1, detail)
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        let mut em = Vec::with_capacity(rows.len());
        let mut has_true = Vec::with_capacity(rows.len());
        let mut has_pred = Vec::with_capacity(rows.len());
        for r in rows {
            if let (Answer::Spans { spans: gold }, Parsed::Spans { spans }) = (r.gold, r.parsed) {
                let gold = gold_texts(gold);
                em.push(cuad::exact_match(spans, &gold));
                has_true.push(!gold.is_empty());
                has_pred.push(!spans.is_empty());
            }
        }
        let det = cuad::answer_detection(&has_true, &has_pred);
        let scores: Vec<f64> = has_pred.iter().map(|&b| f64::from(u8::from(b))).collect();
        vec![
            (MetricId::CuadF1, mean_score(rows)),
            (MetricId::ExactMatch, stats::mean(&em).unwrap_or(0.0)),
            (MetricId::AnswerDetectionF1, det.f1),
            (MetricId::AnswerDetectionPrecision, det.precision),
            (MetricId::AnswerDetectionRecall, det.recall),
            (MetricId::Aupr, cuad::aupr(&has_true, &scores)),
        ]
    }

    fn score_name(&self) -> &'static str {
        "token_f1"
    }

    fn score_is_binary(&self) -> bool {
        false
    }
}

/// Quoted passages, one per line; the no-answer phrase (anywhere in a short answer) means none.
pub fn spans(no_answer: &str, raw: &str) -> Vec<String> {
    let text = answer_text(raw);
    let na = norm(no_answer);
    let whole = norm(text);
    if whole.is_empty() || (!na.is_empty() && whole.starts_with(&na)) {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut l = line.trim();
        // Bullets and numbering.
        l = l.trim_start_matches(['-', '*', '•']).trim_start();
        if let Some(rest) = l.split_once(['.', ')']).and_then(|(n, rest)| {
            (!n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit())).then_some(rest)
        }) {
            l = rest.trim_start();
        }
        let l = l
            .trim_matches(|c: char| c == '"' || c == '“' || c == '”' || c == '`')
            .trim();
        if l.is_empty() || (!na.is_empty() && norm(l) == na) {
            continue;
        }
        if !out.iter().any(|s| s == l) {
            out.push(l.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_lists() {
        let na = "No relevant clause.";
        assert!(spans(na, "No relevant clause.").is_empty());
        assert!(spans(na, "no relevant clause").is_empty());
        assert!(spans(na, "").is_empty());
        assert_eq!(
            spans(na, "- \"This Agreement is governed by Delaware law.\"\n2. Term: five years\n\n- Term: five years"),
            vec!["This Agreement is governed by Delaware law.", "Term: five years"]
        );
    }
}
