//! Set-valued answers (e.g. "list every drug mentioned"): exact set match and item-level
//! precision / recall / F1. Two conventions:
//!
//! * [`set_scores`] — ours (no outside reference): SQuAD-normalised, de-duplicated items;
//! * [`ethic_set_scores`] — ETHIC's `calculate_f1_score` (github.com/dmis-lab/ETHIC,
//!   `utils.py`), on the items of [`ethic_split`].
//!
//! # How ETHIC scores its four configs (`utils.py` `calculate_score`, `write_score_file`)
//!
//! Every config's headline is the mean of a per-example score over the test set (overall and
//! per domain). An output the API refused (`"FAILED"`) scores 0 in Recalling and Attributing
//! (Organizing's `"FAILED"` branch raises a `TypeError`, unpacking `0`).
//!
//! | config | per-example score | bwb |
//! |---|---|---|
//! | Recalling | `calculate_f1_score(prediction, answer)`: the raw output split on `[;,]\s*`, each item `lower().strip(".").strip()`, de-duplicated; gold items normalised the same way (duplicates kept); `f1_score` (precision and recall recorded) | `list` kind, `set_f1` ([`ethic_set_scores`]) |
//! | Summarizing | no reference comparison: GPT-4o (`gpt-4o-2024-08-06`) rates each section's summary for consistency, faithfulness and relevance on 1–5, weighted by the top-10 token probabilities, averaged over sections and the three criteria (`parse_score_for_summarizing`, key `weighted`) | not reproducible without that judge; a `summary` task on it would be a different metric |
//! | Organizing | `lcs_score`: the digit runs (`\d+`) of the output and of the gold order, longest common subsequence length / number of gold digit runs (order matters; not a set metric; a gold without digits divides by zero) | neither `list` nor `retrieval` computes it |
//! | Attributing | the digit runs of the text after `Related Segments:` or `Core IDs:` (rest of that line; the whole output if absent), de-duplicated, against the first digit run of each gold answer (`"None"` if it has none), through `calculate_f1_score`; headline `f1_score` | `retrieval` kind with `k` unset: its extractor takes the digit runs of that line in order, de-duplicated, and `retrieval_f1` equals ETHIC's F1 when the gold ids are distinct |
//!
//! ETHIC's split keeps empty items: an empty output is one item `""` (precision 0), and a
//! trailing comma adds a `""` item that counts as a false positive. Gold lists are never empty
//! in ETHIC; with no gold items precision, recall and F1 are 0.

use std::collections::{BTreeSet, HashSet};

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

/// ETHIC's `re.split(r"[;,]\s*", model_answer)`: pieces between `;` / `,`, whitespace after
/// each separator dropped, empty pieces kept (`""` → `[""]`, `"a,"` → `["a", ""]`). `\s` is
/// Python's `str.isspace()` set.
pub fn ethic_split(answer: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut piece = String::new();
    let mut chars = answer.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ';' || c == ',' {
            out.push(std::mem::take(&mut piece));
            while chars.next_if(|&c| is_py_space(c)).is_some() {}
        } else {
            piece.push(c);
        }
    }
    out.push(piece);
    out
}

/// ETHIC's item key: `item.lower().strip(".").strip()` — dots stripped before whitespace, so
/// `" x. "` keeps its dot (`"x."`) while `" x."` does not (`"x"`).
pub fn ethic_item(item: &str) -> String {
    item.to_lowercase()
        .trim_matches('.')
        .trim_matches(is_py_space)
        .to_string()
}

/// The counts behind [`ethic_set_scores`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthicCounts {
    /// Distinct predicted items that are gold items (ETHIC's `tp`).
    pub hits: usize,
    /// Distinct predicted items that are not (`fp`).
    pub extra: usize,
    /// Gold items, duplicates included, less the hits (`fn`).
    pub missing: usize,
    /// Whether the distinct predicted items are exactly the distinct gold items.
    pub sets_equal: bool,
}

/// Counts of `calculate_f1_score(answer, label_list)` for `pred` = [`ethic_split`]`(answer)`.
pub fn ethic_counts(pred: &[String], gold: &[String]) -> EthicCounts {
    let pred: BTreeSet<String> = pred.iter().map(|s| ethic_item(s)).collect();
    let gold: Vec<String> = gold.iter().map(|s| ethic_item(s)).collect();
    let hits = pred.iter().filter(|p| gold.contains(p)).count();
    let gold_set: BTreeSet<&String> = gold.iter().collect();
    EthicCounts {
        hits,
        extra: pred.len() - hits,
        missing: gold.len().saturating_sub(hits),
        sets_equal: pred.iter().eq(gold_set),
    }
}

/// ETHIC's `calculate_f1_score`: precision = hits / distinct predicted items, recall = hits /
/// gold items (duplicates counted), F1 their harmonic mean; each 0.0 where its denominator is
/// 0. Pass the output through [`ethic_split`] first. `exact_match` is ours (ETHIC has none):
/// 1.0 when the distinct normalised items on both sides are the same set.
pub fn ethic_set_scores(pred: &[String], gold: &[String]) -> SetScores {
    let c = ethic_counts(pred, gold);
    let precision = super::ratio_or_zero(c.hits as f64, (c.hits + c.extra) as f64);
    let recall = super::ratio_or_zero(c.hits as f64, (c.hits + c.missing) as f64);
    SetScores {
        exact_match: if c.sets_equal { 1.0 } else { 0.0 },
        precision,
        recall,
        f1: super::harmonic_mean(precision, recall),
    }
}

/// Python's `str.isspace()` (also `\s` in a `str` regex): Unicode `White_Space` plus the
/// separators U+001C..U+001F.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
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

    #[test]
    fn ethic_split_and_items_follow_python() {
        assert_eq!(ethic_split(""), [""]);
        assert_eq!(ethic_split("a,  b;c,"), ["a", "b", "c", ""]);
        assert_eq!(ethic_item(" X. "), "x.");
        assert_eq!(ethic_item(" X."), "x");
        let r = ethic_set_scores(&ethic_split("Aspirin, aspirin., x"), &s(&["aspirin", "y"]));
        assert_eq!((r.precision, r.recall, r.exact_match), (0.5, 0.5, 0.0));
        let r = ethic_set_scores(&ethic_split(""), &[]);
        assert_eq!((r.f1, r.exact_match), (0.0, 0.0));
        // Duplicate gold items count in recall's denominator.
        let r = ethic_set_scores(&s(&["a"]), &s(&["a", "a"]));
        assert_eq!((r.recall, r.exact_match), (0.5, 1.0));
    }
}
