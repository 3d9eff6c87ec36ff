//! Multiple-choice answers (MedMCQA): one option letter. Metric: accuracy.

use super::{answer_line, answer_text, first_line, mean_score, mismatch, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::ExecResult;

pub const METRICS: &[MetricId] = &[MetricId::Accuracy];

pub struct ChoiceScorer {
    options: Vec<String>,
}

impl ChoiceScorer {
    pub fn new(options: &[String]) -> Self {
        Self {
            options: options.to_vec(),
        }
    }
}

impl Scorer for ChoiceScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Choice {
            option: choice(&self.options, raw),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, raw: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::Choice { option }, Answer::Choice { option: gold, .. }) = (parsed, gold)
        else {
            return mismatch(parsed, gold);
        };
        match option {
            Some(o) if o.eq_ignore_ascii_case(gold) => Judged::correct(),
            Some(o) => Judged::new(
                ErrorClass::WrongOption,
                0.0,
                format!("chose {o}, gold {gold}"),
            ),
            None => Judged::new(
                ErrorClass::NoOption,
                0.0,
                format!(
                    "no option letter in `{}`",
                    first_line(&answer_line(raw), 80)
                ),
            ),
        }
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        vec![(MetricId::Accuracy, mean_score(rows))]
    }

    fn score_name(&self) -> &'static str {
        "correct"
    }
}

/// The option letter the output names: "B", "(B)", "B.", "B) text", "Answer: B", "option B".
pub fn choice(options: &[String], raw: &str) -> Option<String> {
    let text = answer_text(raw);
    let is_opt = |t: &str| options.iter().find(|o| o.eq_ignore_ascii_case(t)).cloned();
    // Tokens of letters/digits; the first one that is an option letter standing alone.
    let tokens: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    // The first token: an upper-case letter, or any case when it is the whole answer ("b").
    if let Some(first) = tokens.first() {
        let upper = first.chars().all(|c| c.is_ascii_uppercase());
        if upper || tokens.len() == 1 {
            if let Some(o) = is_opt(first) {
                return Some(o);
            }
        }
    }
    for w in tokens.windows(2) {
        if ["option", "answer", "choice"].contains(&w[0].to_lowercase().as_str()) {
            if let Some(o) = is_opt(w[1]) {
                return Some(o);
            }
        }
    }
    // Upper-case single letters only from here: a lower-case "a" is usually the article.
    tokens
        .iter()
        .find(|t| t.len() == 1 && t.chars().all(|c| c.is_ascii_uppercase()) && is_opt(t).is_some())
        .and_then(|t| is_opt(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_letters() {
        let o: Vec<String> = ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect();
        for (raw, want) in [
            ("B", Some("B")),
            ("(c)", Some("C")),
            ("D. Aspirin", Some("D")),
            ("Answer: A", Some("A")),
            ("The correct option is C because", Some("C")),
            ("I believe the answer is B.", Some("B")),
            ("a drug", None),
            ("b", Some("B")),
            ("", None),
        ] {
            assert_eq!(choice(&o, raw).as_deref(), want, "{raw:?}");
        }
    }
}
