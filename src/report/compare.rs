//! Paired comparisons between two model × condition groups of a task, on the examples both
//! scored: a paired bootstrap of the mean difference, and McNemar's test where the
//! per-example score is right/wrong.

use std::collections::BTreeMap;

use super::summary::{Comparison, McnemarSummary};
use super::{BOOTSTRAP_SEED, RESAMPLES};
use crate::eval::Condition;
use crate::metrics::stats;
use crate::score::Scorer;

/// Paired comparison of `a` with `b` (the per-example scores of model `model` under
/// `condition`); None when they share no example.
pub fn compare(
    scorer: &dyn Scorer,
    a: &BTreeMap<String, f64>,
    b: &BTreeMap<String, f64>,
    model: &str,
    condition: Condition,
) -> Option<Comparison> {
    let (xa, xb): (Vec<f64>, Vec<f64>) = a
        .iter()
        .filter_map(|(id, &sa)| b.get(id).map(|&sb| (sa, sb)))
        .unzip();
    if xa.is_empty() {
        return None;
    }
    let pb = stats::paired_bootstrap(&xa, &xb, RESAMPLES, BOOTSTRAP_SEED)?;
    let mcnemar = scorer.score_is_binary().then(|| {
        // Examples scored over several generations count as right when right on average.
        let only_a = xa
            .iter()
            .zip(&xb)
            .filter(|(x, y)| **x >= 0.5 && **y < 0.5)
            .count() as u64;
        let only_b = xa
            .iter()
            .zip(&xb)
            .filter(|(x, y)| **x < 0.5 && **y >= 0.5)
            .count() as u64;
        let m = stats::mcnemar(only_a, only_b);
        McnemarSummary {
            only_a,
            only_b,
            statistic: m.statistic,
            p_value: m.p_value,
            exact: m.exact,
        }
    });
    Some(Comparison {
        model: model.to_string(),
        condition,
        score: scorer.score_name().to_string(),
        n_paired: xa.len(),
        mean_diff: pb.mean_diff,
        ci_low: pb.ci_low,
        ci_high: pb.ci_high,
        p_value: pb.p_value,
        mcnemar,
    })
}
