//! Retrieval: precision / recall / F1 of a ranked list at a cut-off. Items are document ids
//! compared as exact strings (no normalisation). There is no outside reference for the
//! cut-off; the conventions below are ours. With no cut-off and distinct relevant ids the
//! scores are ETHIC Attributing's `calculate_f1_score` on extracted ids (checked in
//! tests/it/metrics.rs through `score::retrieval::passage_ids`).

use std::collections::HashSet;

pub use super::Prf;

/// Scores the first `k` retrieved ids (all of them for `None`; fewer if the list is shorter)
/// against the relevant ids.
///
/// * precision = distinct relevant ids among those considered / number considered: a repeated
///   id is a hit once and wastes the other slots.
/// * recall = distinct relevant ids among those considered / number of distinct relevant ids.
/// * F1 = harmonic mean, 0.0 when both are 0.
///
/// Conventions as in [`super::sets::set_scores`]: nothing considered and nothing relevant →
/// all 1.0; exactly one of the two empty → all 0.0. `k = Some(0)` considers nothing.
pub fn prf_at_k(retrieved: &[String], relevant: &[String], k: Option<usize>) -> Prf {
    let considered = &retrieved[..k.map_or(retrieved.len(), |k| k.min(retrieved.len()))];
    let relevant: HashSet<&str> = relevant.iter().map(String::as_str).collect();
    let hits = considered
        .iter()
        .map(String::as_str)
        .filter(|id| relevant.contains(id))
        .collect::<HashSet<_>>()
        .len();
    Prf::from_counts(hits, considered.len(), relevant.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn cut_off_and_duplicates() {
        let r = prf_at_k(&s(&["d1", "d1", "d2", "d3"]), &s(&["d1", "d3"]), Some(2));
        assert_eq!((r.precision, r.recall), (0.5, 0.5));
        let r = prf_at_k(&s(&["d1"]), &s(&["d1"]), Some(10));
        assert_eq!(r.f1, 1.0);
        let r = prf_at_k(&s(&["d1"]), &s(&["d1"]), Some(0));
        assert_eq!(r.f1, 0.0);
        assert_eq!(prf_at_k(&[], &[], None).f1, 1.0);
        assert_eq!(prf_at_k(&s(&["d1"]), &[], Some(0)).f1, 1.0);
    }
}
