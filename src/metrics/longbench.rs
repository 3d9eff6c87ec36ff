//! LongBench's English QA scoring (github.com/THUDM/LongBench, `LongBench/metrics.py`
//! `qa_f1_score`, and the loop of `LongBench/eval.py` `scorer` that takes the best score over
//! a question's gold answers).
//!
//! The normalisation is SQuAD's ([`squad::normalize_answer`], the same function word for
//! word); the F1 has no empty-answer rule: nothing in common — empty against empty included —
//! scores 0.
//!
//! Summaries: LongBench scores QMSum (and GovReport, MultiNews, SAMSum) with `rouge_score`,
//! the ROUGE-L F of the `rouge` package (`Rouge().get_scores`, its own tokenizer, 0 on an
//! exception such as an empty side). bwb scores summaries with Google's `rouge-score` instead
//! ([`super::rouge`]: ROUGE-1, ROUGE-2 and ROUGE-L F, max over the references): one ROUGE
//! implementation for every summary task, the one most papers report; numbers are therefore
//! close to but not the same as LongBench's leaderboard.

use super::{hotpotqa, squad};

/// `qa_f1_score(prediction, ground_truth)`: token F1 between the normalised,
/// whitespace-split answers, tokens in common counted with multiplicity; 0.0 when no token is
/// shared (an empty side included).
pub fn qa_f1(pred: &str, gold: &str) -> f64 {
    let pred = squad::normalize_answer(pred);
    let gold = squad::normalize_answer(gold);
    let pred_tokens: Vec<&str> = pred.split(' ').filter(|t| !t.is_empty()).collect();
    let gold_tokens: Vec<&str> = gold.split(' ').filter(|t| !t.is_empty()).collect();
    let num_same = hotpotqa::common_tokens(&pred_tokens, &gold_tokens);
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred_tokens.len() as f64;
    let recall = num_same as f64 / gold_tokens.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// `eval.py`'s `score = 0.; for ground_truth in ground_truths: score = max(score, …)`: the
/// best `metric(pred, gold)`, and 0.0 with no gold answers.
pub fn max_over_golds(metric: fn(&str, &str) -> f64, pred: &str, golds: &[String]) -> f64 {
    golds
        .iter()
        .map(|gold| metric(pred, gold))
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_against_empty_is_zero() {
        assert_eq!(qa_f1("", ""), 0.0);
        assert_eq!(qa_f1("the", "a"), 0.0);
        assert!((qa_f1("dog dog dog", "dog cat") - 0.4).abs() < 1e-15);
        assert_eq!(max_over_golds(qa_f1, "x", &[]), 0.0);
        let golds = vec!["cat".to_string(), "the red dog".to_string()];
        assert_eq!(max_over_golds(qa_f1, "red dog", &golds), 1.0);
    }
}
