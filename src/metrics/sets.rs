//! Set-valued answers (e.g. "list every drug mentioned"): exact set match and item-level
//! precision / recall / F1 on normalised, de-duplicated items. There is no outside reference;
//! the conventions below are ours.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{squad, Prf};

/// Scores of one predicted set against one gold set, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SetScores {
    /// 1.0 when the normalised sets are equal.
    pub exact_match: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// An item's comparison key: SQuAD's [`squad::normalize_answer`] (case, punctuation, articles
/// and whitespace do not matter).
pub fn normalize_item(s: &str) -> String {
    squad::normalize_answer(s)
}

/// Scores `pred` against `gold` after normalising every item, dropping items that normalise
/// to nothing (`""`, `"the"`, `"!"`) and removing duplicates.
///
/// Conventions: both sets empty → every score 1.0 (correctly answered "none"); exactly one
/// empty → every score 0.0; otherwise precision = |P ∩ G| / |P|, recall = |P ∩ G| / |G|,
/// F1 their harmonic mean (0.0 when both are 0).
pub fn set_scores(pred: &[String], gold: &[String]) -> SetScores {
    let pred = item_set(pred);
    let gold = item_set(gold);
    let hits = pred.intersection(&gold).count();
    let prf = Prf::from_counts(hits, pred.len(), gold.len());
    SetScores {
        exact_match: if pred == gold { 1.0 } else { 0.0 },
        precision: prf.precision,
        recall: prf.recall,
        f1: prf.f1,
    }
}

fn item_set(items: &[String]) -> HashSet<String> {
    items
        .iter()
        .map(|s| normalize_item(s))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn empty_conventions() {
        let all = |x: f64| SetScores {
            exact_match: x,
            precision: x,
            recall: x,
            f1: x,
        };
        assert_eq!(set_scores(&[], &[]), all(1.0));
        assert_eq!(set_scores(&s(&["the", "!"]), &[]), all(1.0));
        assert_eq!(set_scores(&[], &s(&["x"])), all(0.0));
        assert_eq!(set_scores(&s(&["x"]), &[]), all(0.0));
    }

    #[test]
    fn duplicates_after_normalisation_count_once() {
        let r = set_scores(&s(&["The Aspirin", "aspirin.", "x"]), &s(&["aspirin"]));
        assert_eq!((r.precision, r.recall, r.exact_match), (0.5, 1.0, 0.0));
    }
}
