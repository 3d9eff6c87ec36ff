//! The model-free half of the local compressors: the context cut into token spans, the
//! lexical units (token / phrase / sentence) those spans group into, which spans are forced,
//! and the budget rule that drops the least informative units until a token target is met.
//! Pure functions on hand-made inputs, so the selection is tested without a model.

use std::ops::Range;

/// What the local compressors score and drop as one piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// Each model token on its own.
    Token,
    /// A whitespace-delimited word (with its punctuation).
    Word,
    /// Up to [`PHRASE_WORDS`] words between punctuation marks (Selective Context's default
    /// level; a chunker-free stand-in for its noun phrases).
    #[default]
    Phrase,
    /// A sentence (ends at `.`, `!`, `?` before whitespace, or at a newline).
    Sentence,
}

/// Longest phrase, in words.
pub const PHRASE_WORDS: usize = 4;

impl Unit {
    pub const NAMES: &'static str = "token, word, phrase, sentence";

    pub fn parse(s: &str) -> Result<Unit, String> {
        match s.trim().to_lowercase().as_str() {
            "token" | "tokens" => Ok(Unit::Token),
            "word" | "words" => Ok(Unit::Word),
            "phrase" | "phrases" => Ok(Unit::Phrase),
            "sentence" | "sentences" => Ok(Unit::Sentence),
            other => Err(format!("unknown unit `{other}`; valid: {}", Self::NAMES)),
        }
    }
}

/// The byte span of each token in `text`, from its start to the next token's start (so a
/// token owns the whitespace after it and the spans tile the text): `starts` are the
/// tokens' start offsets as the tokenizer reports them.
pub fn spans(text: &str, starts: &[usize]) -> Vec<Range<usize>> {
    let snap = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let mut cuts: Vec<usize> = starts.iter().map(|&s| snap(s)).collect();
    if let Some(first) = cuts.first_mut() {
        *first = 0;
    }
    // Offsets never go backwards in the text we slice.
    for i in 1..cuts.len() {
        cuts[i] = cuts[i].max(cuts[i - 1]);
    }
    (0..cuts.len())
        .map(|i| cuts[i]..cuts.get(i + 1).copied().unwrap_or(text.len()))
        .collect()
}

/// The unit index of each span.
pub fn units(text: &str, spans: &[Range<usize>], unit: Unit) -> Vec<usize> {
    let mut out = Vec::with_capacity(spans.len());
    let mut id = 0;
    let mut words = 0;
    for (i, s) in spans.iter().enumerate() {
        if i > 0 {
            let prev = &text[spans[i - 1].clone()];
            let here = &text[s.clone()];
            // A whitespace-only token joins the word after it.
            let word_start = here.starts_with(char::is_whitespace)
                || (prev.ends_with(char::is_whitespace) && !prev.trim().is_empty());
            let sentence_end =
                prev.contains('\n') || (word_start && prev.trim_end().ends_with(['.', '!', '?']));
            let phrase_end = sentence_end || prev.trim_end().ends_with([',', ';', ':', '(', ')']);
            let new = match unit {
                Unit::Token => true,
                Unit::Word => word_start,
                Unit::Sentence => sentence_end && word_start,
                Unit::Phrase => word_start && (phrase_end || words >= PHRASE_WORDS),
            };
            if word_start {
                words += 1;
            }
            if new {
                id += 1;
                words = 1;
            }
        } else {
            words = 1;
        }
        out.push(id);
    }
    out
}

/// Spans that overlap an occurrence of any `force` string (or, with `numbers`, hold a digit):
/// these always survive.
pub fn forced(text: &str, spans: &[Range<usize>], force: &[String], numbers: bool) -> Vec<bool> {
    let mut hits: Vec<Range<usize>> = Vec::new();
    for f in force.iter().filter(|f| !f.is_empty()) {
        hits.extend(text.match_indices(f.as_str()).map(|(i, m)| i..i + m.len()));
    }
    spans
        .iter()
        .map(|s| {
            (numbers && text[s.clone()].contains(|c: char| c.is_ascii_digit()))
                || hits.iter().any(|h| h.start < s.end && s.start < h.end)
        })
        .collect()
}

/// One candidate for dropping: its token count, its score (higher is more informative) and
/// whether it must stay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub tokens: usize,
    pub score: f64,
    pub forced: bool,
}

/// Which pieces to keep so that the kept tokens come as close to `target` as the pieces
/// allow: the lowest-scoring unforced pieces go first (ties: the earlier one), and a piece is
/// dropped only while dropping it brings the total closer to the target (so a long piece that
/// would overshoot is skipped for shorter ones after it). Deterministic.
pub fn keep(pieces: &[Piece], target: usize) -> Vec<bool> {
    let total: usize = pieces.iter().map(|p| p.tokens).sum();
    let mut keep = vec![true; pieces.len()];
    let mut left = total.saturating_sub(target) as i64;
    let mut order: Vec<usize> = (0..pieces.len()).filter(|&i| !pieces[i].forced).collect();
    order.sort_by(|&a, &b| pieces[a].score.total_cmp(&pieces[b].score).then(a.cmp(&b)));
    for i in order {
        if left <= 0 {
            break;
        }
        let n = pieces[i].tokens as i64;
        if n < 2 * left {
            keep[i] = false;
            left -= n;
        }
    }
    keep
}

/// Group per-span values into per-unit pieces: token counts, the mean span score (so long
/// units are not kept for their length alone) and forced when any span is.
pub fn pieces(unit_of: &[usize], scores: &[f64], forced: &[bool]) -> Vec<Piece> {
    let n = unit_of.last().map_or(0, |u| u + 1);
    let mut out = vec![
        Piece {
            tokens: 0,
            score: 0.0,
            forced: false
        };
        n
    ];
    for ((&u, &s), &f) in unit_of.iter().zip(scores).zip(forced) {
        let p = &mut out[u];
        p.tokens += 1;
        p.score += s;
        p.forced |= f;
    }
    for p in &mut out {
        p.score /= p.tokens.max(1) as f64;
    }
    out
}

/// The text of the kept spans, in order.
pub fn join(text: &str, spans: &[Range<usize>], keep: impl Fn(usize) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, s) in spans.iter().enumerate() {
        if keep(i) {
            out.push_str(&text[s.clone()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(tokens: usize, score: f64) -> Piece {
        Piece {
            tokens,
            score,
            forced: false,
        }
    }

    #[test]
    fn lowest_scores_go_first_and_forced_pieces_stay() {
        let mut p: Vec<Piece> = [5.0, 1.0, 3.0, 0.5, 4.0]
            .iter()
            .map(|&s| piece(1, s))
            .collect();
        assert_eq!(keep(&p, 3), vec![true, false, true, false, true]);
        p[3].forced = true;
        assert_eq!(keep(&p, 3), vec![true, false, false, true, true]);
        // Every piece forced: nothing can go, whatever the target.
        let all: Vec<Piece> = p.iter().map(|x| Piece { forced: true, ..*x }).collect();
        assert_eq!(keep(&all, 0), vec![true; 5]);
        // Equal scores: the earlier piece goes first.
        let tie = vec![piece(1, 1.0), piece(1, 1.0), piece(1, 2.0)];
        assert_eq!(keep(&tie, 2), vec![false, true, true]);
    }

    #[test]
    fn a_long_piece_that_would_overshoot_is_skipped_for_shorter_ones() {
        // 20 tokens, target 14: drop 6. The lowest piece has 12 tokens (dropping it lands 6
        // below the target, no closer than 6 above), so the 4- and 2-token pieces go instead.
        let p = vec![piece(12, 0.1), piece(4, 0.2), piece(2, 0.3), piece(2, 0.9)];
        let k = keep(&p, 14);
        assert_eq!(k, vec![true, false, false, true]);
        let kept: usize = p
            .iter()
            .zip(&k)
            .filter(|(_, k)| **k)
            .map(|(p, _)| p.tokens)
            .sum();
        assert_eq!(kept, 14);
        // Dropping the 12-token piece is closer when 7 must go (5 below vs 7 above).
        assert_eq!(keep(&p, 13), vec![false, true, true, true]);
    }

    #[test]
    fn spans_tile_the_text_and_units_group_them() {
        let text = "The cat sat, on the big red mat today. It slept!\nDone";
        // Word-start offsets as a byte-level BPE reports them (the space is not in a token).
        let mut starts = vec![0];
        for (i, c) in text.char_indices() {
            if i > 0 && !c.is_whitespace() && text[..i].ends_with([' ', '\n']) {
                starts.push(i);
            }
            if [',', '.', '!'].contains(&c) {
                starts.push(i);
            }
        }
        let sp = spans(text, &starts);
        assert_eq!(join(text, &sp, |_| true), text);
        assert_eq!(&text[sp[1].clone()], "cat ");
        let sentences = units(text, &sp, Unit::Sentence);
        let words: Vec<&str> = sp.iter().map(|s| &text[s.clone()]).collect();
        let sentence_of = |w: &str| sentences[words.iter().position(|x| x.trim() == w).unwrap()];
        assert_eq!(sentence_of("The"), sentence_of("today"));
        assert_eq!(sentence_of("It"), sentence_of("slept"));
        assert!(sentence_of("It") > sentence_of("today"));
        assert!(sentence_of("Done") > sentence_of("slept"));
        let phrases = units(text, &sp, Unit::Phrase);
        let phrase_of = |w: &str| phrases[words.iter().position(|x| x.trim() == w).unwrap()];
        // `,` ends a phrase; more than four words start a new one.
        assert_eq!(phrase_of("The"), phrase_of("sat"));
        assert_ne!(phrase_of("sat"), phrase_of("on"));
        assert_eq!(phrase_of("on"), phrase_of("red"));
        assert_ne!(phrase_of("red"), phrase_of("mat"));
        let w = units(text, &sp, Unit::Word);
        let sat = words.iter().position(|x| x.trim() == "sat").unwrap();
        // `sat` and its comma are one word; `on` the next.
        assert_eq!((w[sat], w[sat + 1], w[sat + 2]), (2, 2, 3));
        let tokens = units(text, &sp, Unit::Token);
        assert_eq!(tokens, (0..sp.len()).collect::<Vec<_>>());
    }

    #[test]
    fn forced_strings_and_numbers_mark_the_spans_they_touch() {
        let text = "pay 42 dollars to Acme Corp now";
        let starts = [0, 4, 7, 15, 18, 23, 28];
        let sp = spans(text, &starts);
        let f = forced(text, &sp, &["Acme Corp".to_string()], false);
        assert_eq!(f, vec![false, false, false, false, true, true, false]);
        let n = forced(text, &sp, &[], true);
        assert_eq!(n, vec![false, true, false, false, false, false, false]);
    }

    #[test]
    fn pieces_average_scores_and_carry_forced() {
        let p = pieces(&[0, 0, 1], &[1.0, 3.0, 5.0], &[false, true, false]);
        assert_eq!(
            p,
            vec![
                Piece {
                    tokens: 2,
                    score: 2.0,
                    forced: true
                },
                piece(1, 5.0)
            ]
        );
        assert_eq!(Unit::parse("Sentences"), Ok(Unit::Sentence));
        assert!(Unit::parse("clause")
            .unwrap_err()
            .contains("token, word, phrase, sentence"));
    }
}
