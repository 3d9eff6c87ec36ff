//! CUAD sliding windows: a contract whose prompt does not fit the model's `max_seq_length`
//! is split into overlapping windows of the context, one inference each; the answers are
//! aggregated per question (the clause is present if any window finds it; spans merged).

/// Fraction of a window repeated at the start of the next, so a clause cut by one window's
/// edge lies whole in its neighbour.
pub const OVERLAP: f64 = 0.25;

/// Split `context` into windows of about `window_chars` characters overlapping by
/// [`OVERLAP`], cut at whitespace where one is near. One window when it fits.
pub fn split(context: &str, window_chars: usize) -> Vec<String> {
    let chars: Vec<char> = context.chars().collect();
    let n = chars.len();
    let w = window_chars.max(16);
    if n <= w {
        return vec![context.to_string()];
    }
    let stride = ((w as f64) * (1.0 - OVERLAP)).max(1.0) as usize;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let mut end = (start + w).min(n);
        if end < n {
            // Back up to a whitespace within the last tenth of the window.
            let floor = end - w / 10;
            if let Some(ws) = (floor..end).rev().find(|&i| chars[i].is_whitespace()) {
                end = ws;
            }
        }
        out.push(chars[start..end].iter().collect());
        if end >= n {
            break;
        }
        let mut next = start + stride;
        // Start on a word boundary too.
        while next < end && !chars[next - 1].is_whitespace() && next > start + stride - w / 10 {
            next -= 1;
        }
        start = next.max(start + 1);
    }
    out
}

/// Characters per window so that the prompt fits: `budget` tokens for the context, at the
/// context's own chars-per-token ratio, with a 10% margin for tokenisation differences
/// between windows.
pub fn window_chars(context_chars: usize, context_tokens: usize, budget_tokens: usize) -> usize {
    let ratio = context_chars as f64 / context_tokens.max(1) as f64;
    ((budget_tokens as f64) * ratio * 0.9).floor().max(16.0) as usize
}

/// Union of the windows' spans in first-seen order; a span contained in another (the same
/// clause seen whole in one window and cut in an overlapping one) is merged into it.
pub fn merge_spans(per_window: &[Vec<String>]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for s in per_window.iter().flatten() {
        let t = s.trim();
        if !t.is_empty() && !all.iter().any(|a| a == t) {
            all.push(t.to_string());
        }
    }
    let keep: Vec<bool> = all
        .iter()
        .enumerate()
        .map(|(i, s)| {
            !all.iter()
                .enumerate()
                .any(|(j, o)| j != i && o.len() > s.len() && o.contains(s.as_str()))
        })
        .collect();
    all.into_iter()
        .zip(keep)
        .filter_map(|(s, k)| k.then_some(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_and_cover_the_context() {
        let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
        let ctx = words.join(" ");
        let wins = split(&ctx, 200);
        assert!(wins.len() > 3);
        for w in &wins {
            assert!(w.chars().count() <= 200);
        }
        // Every word lies whole inside some window, and neighbours share text.
        for word in &words {
            assert!(
                wins.iter().any(|w| w.split_whitespace().any(|x| x == word)),
                "{word} lost"
            );
        }
        for pair in wins.windows(2) {
            let last = pair[0].split_whitespace().last().unwrap();
            assert!(pair[1].contains(last), "no overlap: {pair:?}");
        }
        assert_eq!(split("short", 200), vec!["short"]);
    }

    #[test]
    fn spans_union_and_merge() {
        let merged = merge_spans(&[
            vec!["governed by the laws of Delaware".into()],
            vec![],
            vec!["the laws of Delaware".into(), "Term of five years".into()],
            vec!["Term of five years".into()],
        ]);
        assert_eq!(
            merged,
            vec!["governed by the laws of Delaware", "Term of five years"]
        );
        assert!(merge_spans(&[vec![], vec![]]).is_empty());
        assert_eq!(window_chars(4000, 1000, 100), 360);
    }
}
