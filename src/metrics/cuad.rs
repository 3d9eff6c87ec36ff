//! CUAD (contract clause extraction): span overlap for one question, clause detection and
//! AUPR over a set of questions.
//!
//! A prediction is the list of spans the model extracted for one clause type of one contract;
//! an empty list means "the clause is absent".

pub use super::Prf;
use super::{ratio_or_zero, squad};

/// SQuAD token F1 ([`squad::token_f1`]) between all predicted spans joined with a space and all
/// gold spans joined with a space. Both without tokens (no answer) → 1.0; exactly one → 0.0.
/// A span that normalises to nothing (`"the"`, `"!"`) counts as no answer.
pub fn token_f1(pred_spans: &[String], gold_spans: &[String]) -> f64 {
    squad::token_f1(&pred_spans.join(" "), &gold_spans.join(" "))
}

/// SQuAD exact match ([`squad::exact_match`]) of the joined, normalised spans: 1.0 when both
/// are empty, order of spans matters.
pub fn exact_match(pred_spans: &[String], gold_spans: &[String]) -> f64 {
    squad::exact_match(&pred_spans.join(" "), &gold_spans.join(" "))
}

/// Clause detection as a binary classification, positive = "the clause is present":
/// sklearn `precision_recall_fscore_support(y_true, y_pred, average='binary', zero_division=0)`.
/// Every undefined ratio (no predicted positives, no true positives, empty input) is 0.0.
pub fn answer_detection(y_true_has_answer: &[bool], y_pred_has_answer: &[bool]) -> Prf {
    debug_assert_eq!(y_true_has_answer.len(), y_pred_has_answer.len());
    let (mut tp, mut true_sum, mut pred_sum) = (0usize, 0usize, 0usize);
    for (&t, &p) in y_true_has_answer.iter().zip(y_pred_has_answer) {
        tp += usize::from(t && p);
        true_sum += usize::from(t);
        pred_sum += usize::from(p);
    }
    let tp = tp as f64;
    Prf {
        precision: ratio_or_zero(tp, pred_sum as f64),
        recall: ratio_or_zero(tp, true_sum as f64),
        f1: ratio_or_zero(2.0 * tp, (true_sum + pred_sum) as f64),
    }
}

/// Area under the precision-recall curve as sklearn's `average_precision_score`:
/// `Σ (Rₙ − Rₙ₋₁) · Pₙ` over the distinct score thresholds from the highest down, without
/// interpolation. Tied scores form one threshold, so their order never matters.
///
/// Conventions: no positive row (including empty input) → 0.0 (sklearn warns and returns 0.0
/// as of 1.9; older releases returned NaN). A NaN score ranks below every other score, as if
/// it were −∞ (sklearn rejects NaN). `y_true` and `scores` must have equal lengths.
pub fn aupr(y_true: &[bool], scores: &[f64]) -> f64 {
    debug_assert_eq!(y_true.len(), scores.len());
    // 1. (score, positive), NaN → −∞ and −0.0 → 0.0 so `==` and the sort agree.
    let mut rows: Vec<(f64, bool)> = scores
        .iter()
        .zip(y_true)
        .map(|(&s, &t)| {
            (
                if s.is_nan() {
                    f64::NEG_INFINITY
                } else {
                    s + 0.0
                },
                t,
            )
        })
        .collect();
    let positives = rows.iter().filter(|r| r.1).count();
    if positives == 0 {
        return 0.0;
    }
    // 2. highest score first; one (recall, precision) point after each group of ties.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut terms = Vec::new();
    let (mut tp, mut seen, mut prev_recall) = (0usize, 0usize, 0.0);
    let mut rest = rows.as_slice();
    while let Some(&(score, _)) = rest.first() {
        let group = rest.iter().take_while(|r| r.0 == score).count();
        tp += rest[..group].iter().filter(|r| r.1).count();
        seen += group;
        rest = &rest[group..];
        let recall = tp as f64 / positives as f64;
        let precision = tp as f64 / seen as f64;
        terms.push((recall - prev_recall) * precision);
        prev_recall = recall;
    }
    // 3. sklearn sums from the lowest threshold up.
    terms.iter().rev().sum::<f64>().max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn spans_empty_conventions() {
        assert_eq!(token_f1(&[], &[]), 1.0);
        assert_eq!(token_f1(&s(&["the"]), &[]), 1.0);
        assert_eq!(token_f1(&s(&["x"]), &[]), 0.0);
        assert_eq!(exact_match(&[], &[]), 1.0);
        assert_eq!(exact_match(&[], &s(&["x"])), 0.0);
    }

    #[test]
    fn detection_all_zero_when_undefined() {
        let zero = Prf {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        };
        assert_eq!(answer_detection(&[], &[]), zero);
        assert_eq!(answer_detection(&[false, false], &[false, false]), zero);
    }

    #[test]
    fn aupr_edge_cases() {
        assert_eq!(aupr(&[], &[]), 0.0);
        assert_eq!(aupr(&[false, false], &[0.2, 0.1]), 0.0);
        // All tied: one threshold, precision = prevalence.
        assert_eq!(aupr(&[true, false, false, false], &[0.5; 4]), 0.25);
        // NaN ranks last: same as −∞.
        let with_nan = aupr(&[true, false, true], &[f64::NAN, 0.3, 0.9]);
        let with_inf = aupr(&[true, false, true], &[f64::NEG_INFINITY, 0.3, 0.9]);
        assert_eq!(with_nan, with_inf);
        assert!((with_nan - (0.5 + 0.5 * 2.0 / 3.0)).abs() < 1e-15);
        // Infinite scores are ordinary scores; −0.0 ties with 0.0.
        assert_eq!(
            aupr(&[true, false], &[f64::INFINITY, f64::NEG_INFINITY]),
            1.0
        );
        assert_eq!(aupr(&[true, false], &[0.0, -0.0]), 0.5);
    }
}
