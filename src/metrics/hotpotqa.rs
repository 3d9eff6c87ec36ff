//! HotpotQA answer scoring, as its official evaluation script defines it
//! (`hotpot_evaluate_v1.py` in github.com/hotpotqa/hotpot: `normalize_answer`, `f1_score`,
//! `exact_match_score`).
//!
//! The normalisation is SQuAD's ([`squad::normalize_answer`], the same function word for word).
//! Token F1 differs from SQuAD's in two places:
//! * a normalised prediction or gold of `yes`, `no` or `noanswer` that differs from the other
//!   side scores 0 (so "yes" never earns partial credit against "yes it is");
//! * there is no empty-answer rule: nothing in common — empty against empty included — is 0.
//!
//! The official script scores one gold answer per question; bwb's text scorer takes the best
//! over several with [`squad::max_over_golds`].

use std::collections::HashMap;

use super::{squad, Prf};

/// Normalised answers that only score when both sides are the same one.
const SPECIAL: [&str; 3] = ["yes", "no", "noanswer"];

/// `exact_match_score`: `normalize_answer(pred) == normalize_answer(gold)` as 1.0 or 0.0
/// (identical to [`squad::exact_match`]).
pub fn exact_match(pred: &str, gold: &str) -> f64 {
    squad::exact_match(pred, gold)
}

/// `f1_score(prediction, ground_truth)`: its `(f1, precision, recall)`, all 0.0 where the
/// script returns `ZERO_METRIC` (a differing yes/no/noanswer side, or no token in common).
/// Tokens in common count with multiplicity (`Counter(pred) & Counter(gold)`).
pub fn scores(pred: &str, gold: &str) -> Prf {
    let pred = squad::normalize_answer(pred);
    let gold = squad::normalize_answer(gold);
    let zero = Prf {
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
    };
    if pred != gold && (SPECIAL.contains(&pred.as_str()) || SPECIAL.contains(&gold.as_str())) {
        return zero;
    }
    // `normalize_answer` joins tokens with single ASCII spaces.
    let pred_tokens: Vec<&str> = pred.split(' ').filter(|t| !t.is_empty()).collect();
    let gold_tokens: Vec<&str> = gold.split(' ').filter(|t| !t.is_empty()).collect();
    let num_same = common_tokens(&pred_tokens, &gold_tokens);
    if num_same == 0 {
        return zero;
    }
    let precision = num_same as f64 / pred_tokens.len() as f64;
    let recall = num_same as f64 / gold_tokens.len() as f64;
    Prf {
        precision,
        recall,
        f1: (2.0 * precision * recall) / (precision + recall),
    }
}

/// The F1 of [`scores`].
pub fn f1(pred: &str, gold: &str) -> f64 {
    scores(pred, gold).f1
}

/// `sum((Counter(a) & Counter(b)).values())`.
pub(crate) fn common_tokens(a: &[&str], b: &[&str]) -> usize {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for &t in b {
        *counts.entry(t).or_default() += 1;
    }
    let mut same = 0;
    for t in a {
        if let Some(left) = counts.get_mut(t).filter(|n| **n > 0) {
            *left -= 1;
            same += 1;
        }
    }
    same
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_no_never_earn_partial_credit() {
        assert_eq!(f1("yes", "yes it is"), 0.0);
        assert_eq!(f1("Yes.", "yes"), 1.0);
        assert_eq!(f1("no answer", "noanswer"), 0.0);
        assert_eq!(f1("", ""), 0.0);
        assert_eq!(exact_match("", ""), 1.0);
        let s = scores("the red dog", "red dog barked");
        assert_eq!((s.precision, s.recall), (1.0, 2.0 / 3.0));
    }
}
