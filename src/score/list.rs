//! List answers compared as sets (ETHIC Recalling): ETHIC's `calculate_f1_score`
//! ([`sets::ethic_set_scores`]) — the output split on `;` / `,`, items lower-cased and stripped
//! of dots and whitespace, de-duplicated — plus our exact set match.
//!
//! Extraction removes a `<think>` block and an "Answer:"-style prefix (`answer_text`) and
//! splits the rest with [`sets::ethic_split`], keeping empty pieces as ETHIC does (an empty
//! output or a trailing comma is a `""` item, a false positive). ETHIC scores the raw output;
//! the prefix removal only matters for outputs that begin with such a prefix. Newlines do not
//! separate items (ETHIC's prompts ask for comma-separated lists).

use super::{answer_text, first_line, mean_per_example, mismatch, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::ExecResult;
use crate::metrics::sets;

/// Headline candidate first; also the order of [`Scorer::metrics`].
pub const METRICS: &[MetricId] = &[
    MetricId::SetF1,
    MetricId::SetExactMatch,
    MetricId::SetPrecision,
    MetricId::SetRecall,
];

pub struct ListScorer;

impl Scorer for ListScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::List {
            items: sets::ethic_split(answer_text(raw)),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, _: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::List { items }, Answer::List { items: gold }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        let s = sets::ethic_set_scores(items, gold);
        if s.f1 >= 1.0 {
            return Judged::new(ErrorClass::Correct, s.f1, "");
        }
        if items.iter().all(|i| sets::ethic_item(i).is_empty()) {
            let detail = format!("no item in `{}`", first_line(&items.join(","), 60));
            return Judged::new(ErrorClass::NoAnswer, s.f1, detail);
        }
        let c = sets::ethic_counts(items, gold);
        let class = match (c.extra, c.missing) {
            (0, _) => ErrorClass::MissingItems,
            (_, 0) => ErrorClass::ExtraItems,
            _ => ErrorClass::WrongItems,
        };
        let detail = format!(
            "{} of {} gold item(s) found, {} extra",
            c.hits,
            c.hits + c.missing,
            c.extra
        );
        Judged::new(class, s.f1, detail)
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        mean_per_example(rows, METRICS, |r| match (r.parsed, r.gold) {
            (Parsed::List { items }, Answer::List { items: gold }) => {
                let s = sets::ethic_set_scores(items, gold);
                Some(vec![s.f1, s.exact_match, s.precision, s.recall])
            }
            _ => None,
        })
    }

    fn score_name(&self) -> &'static str {
        "set_f1"
    }

    fn score_is_binary(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(raw: &str, gold: &[&str]) -> Judged {
        let gold = Answer::List {
            items: gold.iter().map(|s| s.to_string()).collect(),
        };
        ListScorer.judge(&ListScorer.extract(raw), &gold, raw, None)
    }

    #[test]
    fn classes_by_what_is_missing_or_extra() {
        assert_eq!(
            judge("Answer: B, a.", &["a", "b"]).class,
            ErrorClass::Correct
        );
        let j = judge("a", &["a", "b"]);
        assert_eq!((j.class, j.score), (ErrorClass::MissingItems, 2.0 / 3.0));
        assert_eq!(judge("a, b, c", &["a", "b"]).class, ErrorClass::ExtraItems);
        // A trailing comma is an empty item: a false positive, as in ETHIC.
        assert_eq!(judge("a, b,", &["a", "b"]).class, ErrorClass::ExtraItems);
        assert_eq!(judge("a, c", &["a", "b"]).class, ErrorClass::WrongItems);
        assert_eq!(judge("c", &["a", "b"]).class, ErrorClass::WrongItems);
        assert_eq!(judge(" ", &["a"]).class, ErrorClass::NoAnswer);
        assert_eq!(judge("., ;", &["a"]).class, ErrorClass::NoAnswer);
    }

    #[test]
    fn extraction_keeps_ethic_pieces() {
        let Parsed::List { items } = ListScorer.extract("<think>x, y</think>\nA;  B,") else {
            panic!("not a list");
        };
        assert_eq!(items, ["A", "B", ""]);
    }
}
