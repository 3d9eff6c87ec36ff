//! ROUGE as Google's `rouge-score` 0.1.2 computes it with `use_stemmer=False`:
//! `RougeScorer(['rouge1', 'rouge2', 'rougeL']).score(target, prediction)`.
//! Arguments come in that order: the reference first, the model output second.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::harmonic_mean;

/// One ROUGE score; precision is against the prediction, recall against the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub fmeasure: f64,
}

impl Score {
    const ZERO: Score = Score {
        precision: 0.0,
        recall: 0.0,
        fmeasure: 0.0,
    };
}

/// rouge-score's default tokenizer without stemmer: Python `str.lower()`, every run of
/// characters other than `[a-z0-9]` becomes a separator, empty pieces are dropped. Non-ASCII
/// letters therefore split words (`"café"` → `["caf"]`) and CJK text has no tokens.
pub fn tokenize(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// ROUGE-N: clipped n-gram overlap (`Σ min(count_target, count_prediction)`), divided by the
/// prediction's n-gram count for precision and the target's for recall (each at least 1, so
/// an empty side scores 0.0). `n = 0` scores 0.0 (rouge-score rejects it).
pub fn rouge_n(target: &str, prediction: &str, n: usize) -> Score {
    if n == 0 {
        return Score::ZERO;
    }
    let target = tokenize(target);
    let prediction = tokenize(prediction);
    let target_ngrams = ngram_counts(&target, n);
    let prediction_ngrams = ngram_counts(&prediction, n);
    let overlap: usize = target_ngrams
        .iter()
        .map(|(g, &c)| c.min(prediction_ngrams.get(g).copied().unwrap_or(0)))
        .sum();
    let target_total: usize = target_ngrams.values().sum();
    let prediction_total: usize = prediction_ngrams.values().sum();
    let precision = overlap as f64 / prediction_total.max(1) as f64;
    let recall = overlap as f64 / target_total.max(1) as f64;
    Score {
        precision,
        recall,
        fmeasure: harmonic_mean(precision, recall),
    }
}

/// ROUGE-L (`rougeL`, not the summary-level `rougeLsum`): the longest common token
/// subsequence over the prediction's length (precision) and the target's (recall); 0.0 when
/// either side has no tokens.
pub fn rouge_l(target: &str, prediction: &str) -> Score {
    let target = tokenize(target);
    let prediction = tokenize(prediction);
    if target.is_empty() || prediction.is_empty() {
        return Score::ZERO;
    }
    let lcs = lcs_len(&target, &prediction);
    let precision = lcs as f64 / prediction.len() as f64;
    let recall = lcs as f64 / target.len() as f64;
    Score {
        precision,
        recall,
        fmeasure: harmonic_mean(precision, recall),
    }
}

/// `RougeScorer.score_multi(targets, prediction)` for one ROUGE type: the score against the
/// first target with the highest F-measure (numpy `argmax`). `None` with no targets (where
/// rouge-score raises). `score` is one of [`rouge_n`] (with its `n` bound) or [`rouge_l`].
pub fn score_multi(
    targets: &[String],
    prediction: &str,
    score: impl Fn(&str, &str) -> Score,
) -> Option<Score> {
    let mut best: Option<Score> = None;
    for t in targets {
        let s = score(t, prediction);
        if best.is_none_or(|b| s.fmeasure > b.fmeasure) {
            best = Some(s);
        }
    }
    best
}

fn ngram_counts(tokens: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}

/// Longest common subsequence length, two rows of the DP table at a time.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            row[j + 1] = if x == y {
                prev[j] + 1
            } else {
                row[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_keeps_only_ascii_alphanumerics() {
        assert_eq!(
            tokenize("Hello, World! café_42"),
            ["hello", "world", "caf", "42"]
        );
        assert!(tokenize("?! 東京").is_empty());
        // The Kelvin sign lowercases to ASCII k.
        assert_eq!(tokenize("\u{212a}9"), ["k9"]);
    }

    #[test]
    fn lcs_and_ngrams() {
        let s = rouge_l("a b c d e", "a c e");
        assert_eq!((s.precision, s.recall), (1.0, 0.6));
        let s = rouge_n("the the the", "the", 1);
        assert_eq!((s.precision, s.recall), (1.0, 1.0 / 3.0));
        assert_eq!(rouge_n("a b", "a b", 0), Score::ZERO);
        assert_eq!(rouge_n("a", "a", 2), Score::ZERO);
        assert_eq!(rouge_l("", ""), Score::ZERO);
    }

    #[test]
    fn score_multi_keeps_the_first_best_target() {
        let targets = vec!["a b".to_string(), "a b c".to_string(), "a b".to_string()];
        let s = score_multi(&targets, "a b c", rouge_l).unwrap();
        assert_eq!(s.fmeasure, 1.0);
        let s = score_multi(&targets, "a", |t, p| rouge_n(t, p, 1)).unwrap();
        assert_eq!(s.recall, 0.5);
        assert_eq!(score_multi(&[], "a", rouge_l), None);
    }
}
