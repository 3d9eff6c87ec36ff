//! Passage retrieval (MS MARCO; ETHIC Attributing): the ids of the relevant passages among
//! those numbered in the context, in the model's ranked order. Metrics: precision, recall and
//! F1 of the first `k` ids ([`retrieval::prf_at_k`], `answer.k`; all of them when unset).
//!
//! Extraction: a `<think>` block and an "Answer:"-style prefix are removed (`answer_text`);
//! if a `Related Segments:` or `Core IDs:` label is present (ETHIC Attributing's output
//! format) only the text after the first one up to the end of its line counts — the whole
//! output otherwise, exactly as ETHIC's `re.search(r"(Related Segments|Core IDs):\s*(.+)")`.
//! Every run of ASCII digits in that text is an id (so `1, 3`, `[2]`, `Passage 4` and
//! `Segment 4` all work), in order of appearance, the repeats dropped. That is the `\d+` of
//! both ETHIC's Attributing and LongBench's `retrieval_score`; unlike Python's `\d` it skips
//! non-ASCII digits. A number that is not an id ("the top 3 are …") counts too, so prompts
//! should ask for the ids alone.

use super::{answer_text, mean_per_example, mismatch, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::ExecResult;
use crate::metrics::{retrieval, sets};

/// Headline candidate first; also the order of [`Scorer::metrics`].
pub const METRICS: &[MetricId] = &[
    MetricId::RetrievalF1,
    MetricId::RetrievalPrecision,
    MetricId::RetrievalRecall,
];

pub struct RetrievalScorer {
    k: Option<usize>,
}

impl RetrievalScorer {
    /// `k`: how many of the ranked ids count (all when `None`).
    pub fn new(k: Option<usize>) -> Self {
        Self { k }
    }
}

impl Scorer for RetrievalScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Retrieval {
            ids: passage_ids(raw),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, _: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::Retrieval { ids }, Answer::Retrieval { relevant }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        let s = retrieval::prf_at_k(ids, relevant, self.k);
        if s.f1 >= 1.0 {
            return Judged::new(ErrorClass::Correct, s.f1, "");
        }
        if ids.is_empty() {
            return Judged::new(ErrorClass::NoAnswer, s.f1, "no passage id in the output");
        }
        let class = if s.precision >= 1.0 {
            ErrorClass::MissingItems
        } else if s.recall >= 1.0 {
            ErrorClass::ExtraItems
        } else {
            ErrorClass::WrongItems
        };
        let considered = self.k.map_or(ids.len(), |k| k.min(ids.len()));
        let detail = format!(
            "ids [{}] of relevant [{}]: precision {:.3}, recall {:.3}",
            ids[..considered].join(", "),
            relevant.join(", "),
            s.precision,
            s.recall
        );
        Judged::new(class, s.f1, detail)
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        mean_per_example(rows, METRICS, |r| match (r.parsed, r.gold) {
            (Parsed::Retrieval { ids }, Answer::Retrieval { relevant }) => {
                let s = retrieval::prf_at_k(ids, relevant, self.k);
                Some(vec![s.f1, s.precision, s.recall])
            }
            _ => None,
        })
    }

    fn score_name(&self) -> &'static str {
        "retrieval_f1"
    }

    fn score_is_binary(&self) -> bool {
        false
    }
}

/// The passage ids of a raw output, ranked, without repeats (see the module doc).
pub fn passage_ids(raw: &str) -> Vec<String> {
    let text = answer_text(raw);
    let text = labelled_span(text).unwrap_or(text);
    let mut ids: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let run = &rest[start..];
        let len = run.find(|c: char| !c.is_ascii_digit()).unwrap_or(run.len());
        if !ids.iter().any(|id| id == &run[..len]) {
            ids.push(run[..len].to_string());
        }
        rest = &run[len..];
    }
    ids
}

/// Group 2 of ETHIC's `re.search(r"(Related Segments|Core IDs):\s*(.+)", text)`: after the
/// first label, whitespace (newlines included) skipped, the rest of that line. `None` where the
/// regex finds nothing: no label, or only newlines after it (`.+` needs a character other than
/// a newline).
fn labelled_span(text: &str) -> Option<&str> {
    let (at, len) = ["Related Segments:", "Core IDs:"]
        .iter()
        .filter_map(|m| text.find(m).map(|i| (i, m.len())))
        .min()?;
    let rest = &text[at + len..];
    if rest.chars().all(|c| c == '\n') {
        return None;
    }
    let start = rest.trim_start_matches(sets::is_py_space);
    Some(start.split('\n').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(raw: &str) -> Vec<String> {
        passage_ids(raw)
    }

    #[test]
    fn ids_in_ranked_order_without_repeats() {
        assert_eq!(ids("3, 1, 3"), ["3", "1"]);
        assert_eq!(ids("[2] [10]"), ["2", "10"]);
        assert_eq!(ids("Passage 4 then passage 7."), ["4", "7"]);
        assert_eq!(ids("<think>maybe 9</think>Answer: 5"), ["5"]);
        assert_eq!(
            ids("Segment 9 says so.\nRelated Segments: 4, 2"),
            ["4", "2"]
        );
        assert_eq!(ids("Related Segments:\n\n8"), ["8"]);
        assert_eq!(ids("1, 2\nRelated Segments:\n"), ["1", "2"]);
        // `\s*` crosses the newline, so the span is the next line: as in Python.
        assert_eq!(ids("Core IDs: \t \nRelated Segments: 3"), ["3"]);
        assert!(ids("5\nCore IDs: \t \nx").is_empty());
        assert!(ids("none of them").is_empty());
    }

    #[test]
    fn classes_within_the_cut_off() {
        let sc = RetrievalScorer::new(Some(2));
        let gold = Answer::Retrieval {
            relevant: vec!["1".into(), "2".into()],
        };
        let judge = |raw: &str| sc.judge(&sc.extract(raw), &gold, raw, None);
        assert_eq!(judge("2, 1, 9").class, ErrorClass::Correct);
        let j = judge("1");
        assert_eq!((j.class, j.score), (ErrorClass::MissingItems, 2.0 / 3.0));
        // 2 falls outside k = 2.
        assert_eq!(judge("1, 9, 2").class, ErrorClass::WrongItems);
        assert_eq!(judge("9, 8").class, ErrorClass::WrongItems);
        assert_eq!(judge("no idea").class, ErrorClass::NoAnswer);
        let sc = RetrievalScorer::new(None);
        let j = sc.judge(&sc.extract("1, 2, 3"), &gold, "", None);
        assert_eq!(j.class, ErrorClass::ExtraItems);
    }
}
