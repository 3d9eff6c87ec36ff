//! SQuAD answer scoring, as the official evaluation scripts define it (`evaluate-v1.1.py`,
//! `evaluate-v2.0.py`: `normalize_answer`, `compute_exact`, `compute_f1`,
//! `metric_max_over_ground_truths`).

use std::collections::HashMap;

/// The official `normalize_answer`: Python `str.lower()`, drop the 32 ASCII punctuation
/// characters of `string.punctuation`, replace the whole words `a`, `an`, `the` by a space
/// (`re.sub(r"\b(a|an|the)\b", " ", …)`), then join the whitespace-separated tokens with one
/// space.
///
/// "Whole word" follows Python's Unicode `\b`: the article is a maximal run of word characters.
/// Word characters are approximated by `char::is_alphanumeric` (Python counts `isalnum()` and
/// `_`, and `_` is already gone as punctuation); the two differ only on combining vowel signs
/// (Unicode `Other_Alphabetic`, e.g. Devanagari matras) right next to an article. Whitespace is
/// Python's `str.split()` set: Unicode `White_Space` plus the separators U+001C..U+001F.
pub fn normalize_answer(s: &str) -> String {
    // 1. lower, 2. remove punctuation
    let text: String = s
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // 3. remove articles, 4. fix whitespace
    let mut out = String::with_capacity(text.len());
    for token in split_whitespace(&remove_articles(&text)) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}

/// `normalize_answer(pred) == normalize_answer(gold)` as 1.0 or 0.0.
pub fn exact_match(pred: &str, gold: &str) -> f64 {
    if normalize_answer(pred) == normalize_answer(gold) {
        1.0
    } else {
        0.0
    }
}

/// SQuAD v2.0's token F1 between the normalised, whitespace-split answers: the tokens in
/// common count with multiplicity (`Counter(gold) & Counter(pred)`). If either side has no
/// tokens (empty, or only punctuation and articles) the answer is "no answer": 1.0 when both
/// are, 0.0 otherwise.
pub fn token_f1(pred: &str, gold: &str) -> f64 {
    let pred = normalize_answer(pred);
    let gold = normalize_answer(gold);
    let pred_tokens: Vec<&str> = split_whitespace(&pred).collect();
    let gold_tokens: Vec<&str> = split_whitespace(&gold).collect();
    if pred_tokens.is_empty() || gold_tokens.is_empty() {
        return if pred_tokens == gold_tokens { 1.0 } else { 0.0 };
    }
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for &t in &gold_tokens {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut num_same = 0usize;
    for t in &pred_tokens {
        if let Some(left) = gold_counts.get_mut(t).filter(|n| **n > 0) {
            *left -= 1;
            num_same += 1;
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = num_same as f64 / pred_tokens.len() as f64;
    let recall = num_same as f64 / gold_tokens.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// The best `metric(pred, gold)` over the gold answers (`metric_max_over_ground_truths`).
/// With no gold answers the question is unanswerable and `pred` is scored against `""`
/// (SQuAD v2.0's fallback). Golds are used as given; v2.0's script additionally drops golds
/// that normalise to nothing, which callers can do before calling.
pub fn max_over_golds(metric: fn(&str, &str) -> f64, pred: &str, golds: &[String]) -> f64 {
    if golds.is_empty() {
        return metric(pred, "");
    }
    golds
        .iter()
        .map(|gold| metric(pred, gold))
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Python's `\w` after punctuation removal (see [`normalize_answer`]).
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python's `str.isspace()`: Rust's `White_Space` misses the information separators.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|t| !t.is_empty())
}

/// `re.sub(r"\b(a|an|the)\b", " ", text)`: a maximal run of word characters that is exactly
/// an article becomes one space.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(is_word) {
        out.push_str(&rest[..start]);
        let word = &rest[start..];
        let len = word.find(|c| !is_word(c)).unwrap_or(word.len());
        match &word[..len] {
            "a" | "an" | "the" => out.push(' '),
            w => out.push_str(w),
        }
        rest = &word[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_follows_the_official_order() {
        assert_eq!(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
        assert_eq!(normalize_answer("a.n"), "");
        assert_eq!(normalize_answer("theater anthem"), "theater anthem");
        assert_eq!(normalize_answer("the’s"), "’s");
        assert_eq!(normalize_answer(""), "");
    }

    #[test]
    fn f1_counts_tokens_with_multiplicity() {
        // pred "dog dog dog" vs gold "dog cat": 1 in common, p = 1/3, r = 1/2.
        let f1 = token_f1("dog dog dog", "dog cat");
        assert!((f1 - 0.4).abs() < 1e-15);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("the", "a"), 1.0);
        assert_eq!(token_f1("", "x"), 0.0);
        assert_eq!(token_f1("x", "!!"), 0.0);
    }

    #[test]
    fn max_over_no_golds_scores_against_empty() {
        assert_eq!(max_over_golds(exact_match, "", &[]), 1.0);
        assert_eq!(max_over_golds(token_f1, "Paris", &[]), 0.0);
        let golds = vec!["cat".to_string(), "the red dog".to_string()];
        assert_eq!(max_over_golds(exact_match, "red dog", &golds), 1.0);
    }
}
