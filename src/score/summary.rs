//! Free-text summaries (QMSum): ROUGE-1, ROUGE-2 and ROUGE-L F-measure of Google's
//! `rouge-score` (no stemmer; [`rouge`]), each the best over the reference summaries
//! (`RougeScorer.score_multi`), averaged over examples. The per-example score is ROUGE-L F.
//!
//! LongBench scores QMSum with the `rouge` package's ROUGE-L F instead (see
//! [`crate::metrics::longbench`]); bwb uses rouge-score for every summary task.
//!
//! Extraction: a `<think>` block, an "Answer:"-style prefix and a leading "Summary:" are
//! removed; the rest, every line, is the summary.
//!
//! Classes: a summary has no right or wrong, so `correct` means "no error flagged": ROUGE-L F
//! at least [`LOW_OVERLAP`]. Below it the class is `low_overlap`; an output with no ROUGE
//! token at all (empty, or only non-ASCII text, which rouge-score's tokenizer drops) is
//! `no_answer`.

use super::{answer_text, mean_per_example, mismatch, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::ExecResult;
use crate::metrics::rouge;

/// Headline candidate first; also the order of [`Scorer::metrics`].
pub const METRICS: &[MetricId] = &[MetricId::RougeL, MetricId::Rouge1, MetricId::Rouge2];

/// The ROUGE-L F below which a summary is `low_overlap`. Unrelated English prose already
/// shares function words with a reference and scores around 0.1, while the models LongBench
/// reports on QMSum average 0.15–0.25; below 0.1 a summary has little to do with the
/// meeting.
pub const LOW_OVERLAP: f64 = 0.1;

pub struct SummaryScorer;

/// ROUGE-1, ROUGE-2 and ROUGE-L F-measures of `summary`, each the best over `references`
/// (all 0.0 with no references).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummaryScores {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

pub fn scores(summary: &str, references: &[String]) -> SummaryScores {
    let f = |s: Option<rouge::Score>| s.map_or(0.0, |s| s.fmeasure);
    SummaryScores {
        rouge1: f(rouge::score_multi(references, summary, |t, p| {
            rouge::rouge_n(t, p, 1)
        })),
        rouge2: f(rouge::score_multi(references, summary, |t, p| {
            rouge::rouge_n(t, p, 2)
        })),
        rouge_l: f(rouge::score_multi(references, summary, rouge::rouge_l)),
    }
}

impl Scorer for SummaryScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Summary {
            text: summary_text(raw).to_string(),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, _: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::Summary { text }, Answer::Summary { references }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        let s = scores(text, references);
        if rouge::tokenize(text).is_empty() {
            return Judged::new(
                ErrorClass::NoAnswer,
                s.rouge_l,
                "no ROUGE token in the output",
            );
        }
        if s.rouge_l >= LOW_OVERLAP {
            return Judged::new(ErrorClass::Correct, s.rouge_l, "");
        }
        let detail = format!(
            "ROUGE-L F {:.3} (ROUGE-1 {:.3}) < {LOW_OVERLAP}",
            s.rouge_l, s.rouge1
        );
        Judged::new(ErrorClass::LowOverlap, s.rouge_l, detail)
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        mean_per_example(rows, METRICS, |r| match (r.parsed, r.gold) {
            (Parsed::Summary { text }, Answer::Summary { references }) => {
                let s = scores(text, references);
                Some(vec![s.rouge_l, s.rouge1, s.rouge2])
            }
            _ => None,
        })
    }

    fn score_name(&self) -> &'static str {
        "rougeL"
    }

    fn score_is_binary(&self) -> bool {
        false
    }
}

/// The summary in `raw`: reasoning and prefixes removed (see the module doc).
fn summary_text(raw: &str) -> &str {
    let s = answer_text(raw);
    let prefix = "summary:";
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => s[prefix.len()..].trim(),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_reference_per_metric_and_classes() {
        let refs = vec![
            "the team agreed on the budget".to_string(),
            "budget agreed".to_string(),
        ];
        let s = scores("budget agreed", &refs);
        assert_eq!((s.rouge1, s.rouge2, s.rouge_l), (1.0, 1.0, 1.0));
        assert_eq!(scores("x", &[]).rouge_l, 0.0);
        let gold = Answer::Summary { references: refs };
        let judge = |raw: &str| SummaryScorer.judge(&SummaryScorer.extract(raw), &gold, raw, None);
        let j = judge("Summary: The team agreed on the budget.");
        assert_eq!((j.class, j.score), (ErrorClass::Correct, 1.0));
        assert_eq!(judge("Lunch was served").class, ErrorClass::LowOverlap);
        assert_eq!(judge("<think>…</think>").class, ErrorClass::NoAnswer);
        assert_eq!(judge("会議").class, ErrorClass::NoAnswer);
    }
}
