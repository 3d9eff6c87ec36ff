//! Label answers (classification: BANKING77, FPB, LEDGAR): one label out of the task's set.
//! Metrics follow scikit-learn: `accuracy_score`, `f1_score(average="macro" | "weighted",
//! labels=<the task's labels>, zero_division=0)`; an output naming no label counts as wrong.

use super::{answer_line, answer_text, first_line, mismatch, norm, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::ExecResult;
use crate::metrics::classification as c;

pub const METRICS: &[MetricId] = &[MetricId::Accuracy, MetricId::MacroF1, MetricId::WeightedF1];

pub struct LabelScorer {
    task: String,
    labels: Vec<String>,
}

impl LabelScorer {
    pub fn new(task: &str, labels: &[String]) -> Self {
        Self {
            task: task.to_string(),
            labels: labels.to_vec(),
        }
    }
}

impl Scorer for LabelScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Label {
            label: label(&self.labels, raw),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, raw: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::Label { label }, Answer::Label { label: gold }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        match label {
            Some(l) if l == gold => Judged::correct(),
            Some(l) => Judged::new(
                ErrorClass::WrongLabel,
                0.0,
                format!("said `{l}`, gold `{gold}`"),
            ),
            None => {
                let said = answer_line(raw);
                if said.is_empty() {
                    Judged::new(ErrorClass::Unparseable, 0.0, "empty answer")
                } else if looks_like_a_label(&said) {
                    Judged::new(
                        ErrorClass::LabelOutsideSet,
                        0.0,
                        format!(
                            "`{}` is not a label of {}",
                            first_line(&said, 80),
                            self.task
                        ),
                    )
                } else {
                    Judged::new(
                        ErrorClass::Unparseable,
                        0.0,
                        format!("no label in `{}`", first_line(&said, 80)),
                    )
                }
            }
        }
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        let labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        let mut y_true = Vec::with_capacity(rows.len());
        let mut y_pred = Vec::with_capacity(rows.len());
        for r in rows {
            if let (Answer::Label { label: gold }, Parsed::Label { label }) = (r.gold, r.parsed) {
                y_true.push(gold.as_str());
                y_pred.push(label.as_deref());
            }
        }
        vec![
            (MetricId::Accuracy, c::accuracy(&y_true, &y_pred)),
            (MetricId::MacroF1, c::macro_f1(&labels, &y_true, &y_pred)),
            (
                MetricId::WeightedF1,
                c::weighted_f1(&labels, &y_true, &y_pred),
            ),
        ]
    }

    fn score_name(&self) -> &'static str {
        "correct"
    }
}

/// The task label the output names: an exact (normalised) match of the first line, else the
/// longest label that occurs as whole words in the output, earliest first.
pub fn label(labels: &[String], raw: &str) -> Option<String> {
    let text = answer_text(raw);
    let first = norm(text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    let normed: Vec<String> = labels.iter().map(|l| norm(l)).collect();
    if let Some(i) = normed.iter().position(|l| *l == first) {
        return Some(labels[i].clone());
    }
    let hay = format!(" {} ", norm(text));
    let mut best: Option<(usize, usize, usize)> = None; // (position, -len as rank, index)
    for (i, l) in normed.iter().enumerate() {
        if l.is_empty() {
            continue;
        }
        if let Some(pos) = hay.find(&format!(" {l} ")) {
            let cand = (pos, usize::MAX - l.len(), i);
            if best.is_none_or(|b| cand < b) {
                best = Some(cand);
            }
        }
    }
    best.map(|(_, _, i)| labels[i].clone())
}

/// A short phrase (a few words, no sentence) reads as an attempted label.
fn looks_like_a_label(s: &str) -> bool {
    let words = s.split_whitespace().count();
    words <= 6 && s.chars().count() <= 60 && !s.ends_with('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_normalise_to_the_label_set() {
        let l = labels(&["negative", "neutral", "positive"]);
        assert_eq!(label(&l, "Positive.").as_deref(), Some("positive"));
        assert_eq!(label(&l, "  \"neutral\"\n").as_deref(), Some("neutral"));
        assert_eq!(
            label(&l, "Sentiment: NEGATIVE").as_deref(),
            Some("negative")
        );
        assert_eq!(
            label(&l, "The sentiment is positive overall.").as_deref(),
            Some("positive")
        );
        assert_eq!(label(&l, "bullish"), None);
        let b = labels(&["card_arrival", "card_arrival_late", "Refund_not_showing_up"]);
        assert_eq!(label(&b, "card arrival").as_deref(), Some("card_arrival"));
        assert_eq!(
            label(&b, "I think card_arrival_late").as_deref(),
            Some("card_arrival_late")
        );
        assert_eq!(
            label(&b, "refund_not_showing_up").as_deref(),
            Some("Refund_not_showing_up")
        );
        assert_eq!(
            label(&b, "<think>card arrival?</think>\nrefund not showing up").as_deref(),
            Some("Refund_not_showing_up")
        );
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
    fn outputs_outside_the_label_set_are_told_apart() {
        let s = LabelScorer::new("fpb", &labels(&["negative", "neutral", "positive"]));
        let gold = Answer::Label {
            label: "positive".into(),
        };
        let class = |raw: &str| s.judge(&s.extract(raw), &gold, raw, None).class;
        assert_eq!(class("Positive."), ErrorClass::Correct);
        assert_eq!(class("neutral"), ErrorClass::WrongLabel);
        assert_eq!(class("bullish"), ErrorClass::LabelOutsideSet);
        assert_eq!(class(""), ErrorClass::Unparseable);
        assert_eq!(
            class("I cannot tell what this sentence is about, it could be many things"),
            ErrorClass::Unparseable
        );
    }
}
