//! Single-label classification: accuracy and per-class / macro / weighted F1 with the semantics
//! of scikit-learn's `accuracy_score` and
//! `f1_score(y_true, y_pred, labels=labels, average=…, zero_division=0)`.
//!
//! A `None` prediction means the output held no valid answer: it is always wrong, counts as
//! a false negative of its row's true label and as a false positive of nothing (sklearn with a
//! sentinel label outside `labels`). Likewise a true or predicted value outside `labels` is
//! still a row (it lowers accuracy and, as a prediction, the recall of the true label) but has
//! no per-class entry. Labels are compared as exact strings.
//!
//! `y_true` and `y_pred` must have equal lengths (see the [module conventions](super)).
//! Empty input, or an empty `labels`, scores 0.0 everywhere, where sklearn would warn or fail.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::ratio_or_zero;

/// One label's scores (sklearn `precision_recall_fscore_support(average=None)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerClass {
    pub label: String,
    /// True positives / rows predicted as `label`; 0.0 if it was never predicted.
    pub precision: f64,
    /// True positives / rows whose true label is `label`; 0.0 if there are none.
    pub recall: f64,
    /// `2·tp / (support + predicted)`; 0.0 if the label is neither true nor predicted.
    pub f1: f64,
    /// Rows whose true label is `label`.
    pub support: usize,
}

/// Fraction of rows whose prediction equals the true label; `None` predictions are wrong.
/// 0.0 for no rows.
pub fn accuracy(y_true: &[&str], y_pred: &[Option<&str>]) -> f64 {
    debug_assert_eq!(
        y_true.len(),
        y_pred.len(),
        "y_true and y_pred differ in length"
    );
    let n = y_true.len().min(y_pred.len());
    let correct = y_true
        .iter()
        .zip(y_pred)
        .filter(|(t, p)| **p == Some(**t))
        .count();
    ratio_or_zero(correct as f64, n as f64)
}

/// Precision, recall, F1 and support for every entry of `labels`, in that order. A label listed
/// twice is reported twice (and so weighs twice in [`macro_f1`]); pass distinct labels.
pub fn per_class(labels: &[&str], y_true: &[&str], y_pred: &[Option<&str>]) -> Vec<PerClass> {
    debug_assert_eq!(
        y_true.len(),
        y_pred.len(),
        "y_true and y_pred differ in length"
    );
    #[derive(Default, Clone, Copy)]
    struct Counts {
        tp: usize,
        true_sum: usize,
        pred_sum: usize,
    }
    let mut counts: HashMap<&str, Counts> =
        labels.iter().map(|l| (*l, Counts::default())).collect();
    for (t, p) in y_true.iter().zip(y_pred) {
        if let Some(c) = counts.get_mut(t) {
            c.true_sum += 1;
        }
        if let Some(c) = p.and_then(|p| counts.get_mut(p)) {
            c.pred_sum += 1;
        }
        if *p == Some(*t) {
            if let Some(c) = counts.get_mut(t) {
                c.tp += 1;
            }
        }
    }
    labels
        .iter()
        .map(|label| {
            let c = counts.get(label).copied().unwrap_or_default();
            let tp = c.tp as f64;
            PerClass {
                label: (*label).to_string(),
                precision: ratio_or_zero(tp, c.pred_sum as f64),
                recall: ratio_or_zero(tp, c.true_sum as f64),
                f1: ratio_or_zero(2.0 * tp, (c.true_sum + c.pred_sum) as f64),
                support: c.true_sum,
            }
        })
        .collect()
}

/// Unweighted mean of the per-class F1 over `labels` (labels never seen count as 0.0).
pub fn macro_f1(labels: &[&str], y_true: &[&str], y_pred: &[Option<&str>]) -> f64 {
    let classes = per_class(labels, y_true, y_pred);
    let sum: f64 = classes.iter().map(|c| c.f1).sum();
    ratio_or_zero(sum, classes.len() as f64)
}

/// Mean of the per-class F1 weighted by support. 0.0 when no row's true label is in `labels`
/// (sklearn then takes the unweighted mean, which is 0.0 too: every F1 is 0).
pub fn weighted_f1(labels: &[&str], y_true: &[&str], y_pred: &[Option<&str>]) -> f64 {
    let classes = per_class(labels, y_true, y_pred);
    let total: usize = classes.iter().map(|c| c.support).sum();
    let weighted: f64 = classes.iter().map(|c| c.f1 * c.support as f64).sum();
    ratio_or_zero(weighted, total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_zero_not_nan() {
        assert_eq!(accuracy(&[], &[]), 0.0);
        assert_eq!(macro_f1(&["a"], &[], &[]), 0.0);
        assert_eq!(weighted_f1(&["a"], &[], &[]), 0.0);
        assert_eq!(macro_f1(&[], &["a"], &[Some("a")]), 0.0);
        assert!(per_class(&[], &["a"], &[Some("a")]).is_empty());
    }

    #[test]
    fn none_is_always_wrong() {
        let y_true = ["a", "b"];
        let y_pred = [None, Some("b")];
        assert_eq!(accuracy(&y_true, &y_pred), 0.5);
        let classes = per_class(&["a", "b"], &y_true, &y_pred);
        assert_eq!((classes[0].recall, classes[0].precision), (0.0, 0.0));
        assert_eq!((classes[1].recall, classes[1].precision), (1.0, 1.0));
        assert_eq!(macro_f1(&["a", "b"], &y_true, &y_pred), 0.5);
    }

    #[test]
    fn duplicate_labels_are_reported_per_entry() {
        let classes = per_class(&["a", "a"], &["a"], &[Some("a")]);
        assert_eq!(classes.len(), 2);
        assert_eq!(classes[1].f1, 1.0);
        assert_eq!(classes[1].support, 1);
    }
}
