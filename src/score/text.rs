//! Free-text answers (HotpotQA, LongBench QA, MS MARCO, FinanceBench): exact match and token
//! F1, each the best over the gold answers, with the rules of the task's
//! [`TextConvention`]:
//!
//! | convention | F1 | best over golds | no gold answers |
//! |---|---|---|---|
//! | `squad` | [`squad::token_f1`] (empty vs empty = 1) | [`squad::max_over_golds`] | scored against `""` |
//! | `hotpotqa` | [`hotpotqa::f1`] (yes/no/noanswer rule, empty vs empty = 0) | [`squad::max_over_golds`] (the script has one gold) | scored against `""` |
//! | `longbench` | [`longbench::qa_f1`] (empty vs empty = 0) | [`longbench::max_over_golds`] | 0 |
//!
//! Exact match is SQuAD's (`hotpot_evaluate_v1.py`'s `exact_match_score` is the same
//! function; LongBench has none), taken over the golds the same way as F1.
//!
//! Extraction: a `<think>` block and an "Answer:"-style prefix are removed (`answer_text`);
//! where a later line starts with "Answer:" / "Final answer:" (after chain-of-thought), the
//! text after the last such marker is kept. Then, per convention:
//! * `squad`, `hotpotqa`: the first non-empty line only. Both references score extracted
//!   spans, which have no second line; what a chat model writes after its answer is
//!   explanation, and scoring it would only dilute precision.
//! * `longbench`: the whole text, as LongBench's `eval.py` scores its QA datasets (it keeps
//!   only the first line for trec, triviaqa, samsum and lsht, its few-shot tasks, not for QA).

use super::{answer_text, first_line, mean_per_example, mismatch, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::config::TextConvention;
use crate::data::Answer;
use crate::exec::ExecResult;
use crate::metrics::{hotpotqa, longbench, squad};

/// Headline candidate first; also the order of [`Scorer::metrics`].
pub const METRICS: &[MetricId] = &[MetricId::F1, MetricId::ExactMatch];

pub struct TextScorer {
    convention: TextConvention,
}

impl TextScorer {
    pub fn new(convention: TextConvention) -> Self {
        Self { convention }
    }
}

/// One prediction's exact match and token F1 against its gold answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextScores {
    pub exact_match: f64,
    pub f1: f64,
}

/// The scores of `pred` against `golds` under `convention` (see the module table).
pub fn scores(convention: TextConvention, pred: &str, golds: &[String]) -> TextScores {
    match convention {
        TextConvention::Squad => TextScores {
            exact_match: squad::max_over_golds(squad::exact_match, pred, golds),
            f1: squad::max_over_golds(squad::token_f1, pred, golds),
        },
        TextConvention::Hotpotqa => TextScores {
            exact_match: squad::max_over_golds(hotpotqa::exact_match, pred, golds),
            f1: squad::max_over_golds(hotpotqa::f1, pred, golds),
        },
        TextConvention::Longbench => TextScores {
            exact_match: longbench::max_over_golds(squad::exact_match, pred, golds),
            f1: longbench::max_over_golds(longbench::qa_f1, pred, golds),
        },
    }
}

impl Scorer for TextScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Text {
            text: answer(self.convention, raw),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, _: &str, _: Option<&ExecResult>) -> Judged {
        let (Parsed::Text { text }, Answer::Text { answers }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        let s = scores(self.convention, text, answers);
        let gold_shown = answers.first().map_or(String::new(), |g| first_line(g, 60));
        if s.f1 >= 1.0 {
            Judged::new(ErrorClass::Correct, s.f1, "")
        } else if squad::normalize_answer(text).is_empty() {
            Judged::new(
                ErrorClass::NoAnswer,
                s.f1,
                "no answer left after extraction",
            )
        } else if s.f1 > 0.0 {
            let detail = format!("token F1 {:.3}; gold `{gold_shown}`", s.f1);
            Judged::new(ErrorClass::PartialAnswer, s.f1, detail)
        } else {
            let detail = format!("`{}`; gold `{gold_shown}`", first_line(text, 60));
            Judged::new(ErrorClass::WrongAnswer, 0.0, detail)
        }
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        mean_per_example(rows, METRICS, |r| match (r.parsed, r.gold) {
            (Parsed::Text { text }, Answer::Text { answers }) => {
                let s = scores(self.convention, text, answers);
                Some(vec![s.f1, s.exact_match])
            }
            _ => None,
        })
    }

    fn score_name(&self) -> &'static str {
        "token_f1"
    }

    fn score_is_binary(&self) -> bool {
        false
    }
}

/// The answer text of `raw` under `convention` (see the module doc).
pub fn answer(convention: TextConvention, raw: &str) -> String {
    let text = after_answer_marker(answer_text(raw));
    match convention {
        TextConvention::Squad | TextConvention::Hotpotqa => text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
            .to_string(),
        TextConvention::Longbench => text.trim().to_string(),
    }
}

/// The text after the last line-initial "Answer:" / "Final answer:" (markdown `*`/`#`
/// before it allowed), or all of `text` when no line starts so.
fn after_answer_marker(text: &str) -> &str {
    let mut out = text;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let head = line.trim_start_matches(|c: char| c.is_whitespace() || c == '*' || c == '#');
        for marker in ["final answer:", "answer:"] {
            if head
                .get(..marker.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(marker))
            {
                let start = offset + (line.len() - head.len()) + marker.len();
                out = text[start..].trim_start_matches(|c: char| c.is_whitespace() || c == '*');
                break;
            }
        }
        offset += line.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golds(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extraction_per_convention() {
        let raw = "<think>hmm</think>\nAnswer: Paris\nIt is the capital.";
        assert_eq!(answer(TextConvention::Squad, raw), "Paris");
        assert_eq!(
            answer(TextConvention::Longbench, raw),
            "Paris\nIt is the capital."
        );
        let cot = "France's capital is Paris.\n**Final Answer:** Paris";
        assert_eq!(answer(TextConvention::Hotpotqa, cot), "Paris");
        assert_eq!(answer(TextConvention::Squad, "\n\n  yes \n"), "yes");
        assert_eq!(answer(TextConvention::Squad, ""), "");
        assert_eq!(answer(TextConvention::Squad, "Answer:"), "");
        assert_eq!(answer(TextConvention::Squad, "ünswer: é"), "ünswer: é");
    }

    #[test]
    fn conventions_differ_on_empty_and_yes_no() {
        let s = scores(TextConvention::Squad, "", &golds(&[""]));
        assert_eq!((s.exact_match, s.f1), (1.0, 1.0));
        let s = scores(TextConvention::Longbench, "", &golds(&[""]));
        assert_eq!((s.exact_match, s.f1), (1.0, 0.0));
        let s = scores(TextConvention::Hotpotqa, "yes", &golds(&["yes it is"]));
        assert_eq!(s.f1, 0.0);
        let s = scores(TextConvention::Squad, "yes", &golds(&["yes it is"]));
        assert_eq!(s.f1, 0.5);
        let s = scores(TextConvention::Longbench, "x", &[]);
        assert_eq!((s.exact_match, s.f1), (0.0, 0.0));
    }

    #[test]
    fn classes_follow_f1() {
        let sc = TextScorer::new(TextConvention::Squad);
        let gold = Answer::Text {
            answers: golds(&["the red dog", "Rex"]),
        };
        let class = |raw: &str| sc.judge(&sc.extract(raw), &gold, raw, None).class;
        assert_eq!(class("Rex."), ErrorClass::Correct);
        assert_eq!(class("a red cat"), ErrorClass::PartialAnswer);
        assert_eq!(class("Fido"), ErrorClass::WrongAnswer);
        assert_eq!(class("<think>…</think> "), ErrorClass::NoAnswer);
        let j = sc.judge(&Parsed::List { items: vec![] }, &gold, "", None);
        assert_eq!(j.class, ErrorClass::Unparseable);
    }
}
