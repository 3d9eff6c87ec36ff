//! Answer extraction: a model's raw output → the task's answer form, stored next to the raw
//! output so scoring never re-parses text. Each parser is forgiving about wrapping (quotes,
//! "Answer:", trailing punctuation, markdown) and strict about the answer itself: a label
//! must be one of the task's labels, a letter one of its options.

use serde::{Deserialize, Serialize};

use crate::config::{AnswerKind, TaskConfig};

/// A parsed prediction; `None` where the output holds no valid answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parsed {
    Label {
        label: Option<String>,
    },
    Choice {
        option: Option<String>,
    },
    /// Empty: the model says the clause is absent.
    Spans {
        spans: Vec<String>,
    },
    Code {
        code: String,
    },
}

impl Parsed {
    /// Whether the output was understood (a label or letter was found).
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Label { label } => label.is_some(),
            Self::Choice { option } => option.is_some(),
            Self::Spans { .. } | Self::Code { .. } => true,
        }
    }
}

/// Parse `raw` for `task`.
pub fn extract(task: &TaskConfig, raw: &str) -> Parsed {
    match task.answer.kind {
        AnswerKind::Label => Parsed::Label {
            label: label(&task.answer.labels, raw),
        },
        AnswerKind::Choice => Parsed::Choice {
            option: choice(&task.answer.options, raw),
        },
        AnswerKind::Spans => Parsed::Spans {
            spans: spans(task.answer.no_answer.as_deref().unwrap_or(""), raw),
        },
        AnswerKind::Code => Parsed::Code { code: code(raw) },
    }
}

/// Lower case, `_`/`-` as spaces, runs of non-alphanumerics collapsed: "Card_Arrival." and
/// "card arrival" compare equal.
fn norm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

/// Strip reasoning blocks, markdown emphasis and an "Answer:"-style prefix.
fn answer_text(raw: &str) -> &str {
    let mut s = raw;
    // A leftover <think>…</think> block (Qwen3 with thinking on).
    if let Some(i) = s.rfind("</think>") {
        s = &s[i + "</think>".len()..];
    }
    let s = s.trim();
    for prefix in [
        "answer:",
        "final answer:",
        "label:",
        "intent:",
        "category:",
        "sentiment:",
    ] {
        if s.len() >= prefix.len()
            && s.is_char_boundary(prefix.len())
            && s[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return s[prefix.len()..].trim();
        }
    }
    s
}

/// The task label the output names: an exact (normalised) match of the first line, else the
/// longest label that occurs as whole words in the output, earliest first.
pub fn label(labels: &[String], raw: &str) -> Option<String> {
    let text = answer_text(raw);
    let first = norm(text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""));
    let normed: Vec<String> = labels.iter().map(|l| norm(l)).collect();
    if let Some(i) = normed.iter().position(|l| *l == first) {
        return Some(labels[i].clone());
    }
    let hay = format!(" {} ", norm(text));
    let mut best: Option<(usize, usize, usize)> = None; // (position, -len as rank, index)
    for (i, l) in normed.iter().enumerate() {
        if l.is_empty() {
            continue;
        }
        if let Some(pos) = hay.find(&format!(" {l} ")) {
            let cand = (pos, usize::MAX - l.len(), i);
            if best.is_none_or(|b| cand < b) {
                best = Some(cand);
            }
        }
    }
    best.map(|(_, _, i)| labels[i].clone())
}

/// The option letter the output names: "B", "(B)", "B.", "B) text", "Answer: B", "option B".
pub fn choice(options: &[String], raw: &str) -> Option<String> {
    let text = answer_text(raw);
    let is_opt = |t: &str| options.iter().find(|o| o.eq_ignore_ascii_case(t)).cloned();
    // Tokens of letters/digits; the first one that is an option letter standing alone.
    let tokens: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    // The first token: an upper-case letter, or any case when it is the whole answer ("b").
    if let Some(first) = tokens.first() {
        let upper = first.chars().all(|c| c.is_ascii_uppercase());
        if upper || tokens.len() == 1 {
            if let Some(o) = is_opt(first) {
                return Some(o);
            }
        }
    }
    for w in tokens.windows(2) {
        if ["option", "answer", "choice"].contains(&w[0].to_lowercase().as_str()) {
            if let Some(o) = is_opt(w[1]) {
                return Some(o);
            }
        }
    }
    // Upper-case single letters only from here: a lower-case "a" is usually the article.
    tokens
        .iter()
        .find(|t| t.len() == 1 && t.chars().all(|c| c.is_ascii_uppercase()) && is_opt(t).is_some())
        .and_then(|t| is_opt(t))
}

/// Quoted passages, one per line; the no-answer phrase (anywhere in a short answer) means none.
pub fn spans(no_answer: &str, raw: &str) -> Vec<String> {
    let text = answer_text(raw);
    let na = norm(no_answer);
    let whole = norm(text);
    if whole.is_empty() || (!na.is_empty() && whole.starts_with(&na)) {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut l = line.trim();
        // Bullets and numbering.
        l = l.trim_start_matches(['-', '*', '•']).trim_start();
        if let Some(rest) = l.split_once(['.', ')']).and_then(|(n, rest)| {
            (!n.is_empty() && n.len() <= 3 && n.chars().all(|c| c.is_ascii_digit())).then_some(rest)
        }) {
            l = rest.trim_start();
        }
        let l = l
            .trim_matches(|c: char| c == '"' || c == '“' || c == '”' || c == '`')
            .trim();
        if l.is_empty() || (!na.is_empty() && norm(l) == na) {
            continue;
        }
        if !out.iter().any(|s| s == l) {
            out.push(l.to_string());
        }
    }
    out
}

/// The code of the first ```python block (else the first fenced block, else the whole
/// output), without the fences.
pub fn code(raw: &str) -> String {
    let text = answer_text(raw);
    let blocks = fenced_blocks(text);
    let pick = blocks
        .iter()
        .find(|(lang, _)| lang.eq_ignore_ascii_case("python") || lang.eq_ignore_ascii_case("py"))
        .or_else(|| blocks.first());
    match pick {
        Some((_, body)) => body.trim_matches('\n').to_string(),
        None => {
            // An unterminated block (generation cut at max_new_tokens): keep what came.
            match text.find("```") {
                Some(i) => {
                    let rest = &text[i + 3..];
                    let body = rest.split_once('\n').map(|(_, b)| b).unwrap_or("");
                    body.trim_matches('\n').to_string()
                }
                None => text.trim().to_string(),
            }
        }
    }
}

/// (language, body) of every closed ``` block.
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let Some((lang, body_start)) = after.split_once('\n') else {
            break;
        };
        let Some(close) = body_start.find("```") else {
            break;
        };
        out.push((lang.trim().to_string(), body_start[..close].to_string()));
        rest = &body_start[close + 3..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_normalise_to_the_label_set() {
        let l = labels(&["negative", "neutral", "positive"]);
        assert_eq!(label(&l, "Positive.").as_deref(), Some("positive"));
        assert_eq!(label(&l, "  \"neutral\"\n").as_deref(), Some("neutral"));
        assert_eq!(
            label(&l, "Sentiment: NEGATIVE").as_deref(),
            Some("negative")
        );
        assert_eq!(
            label(&l, "The sentiment is positive overall.").as_deref(),
            Some("positive")
        );
        assert_eq!(label(&l, "bullish"), None);
        let b = labels(&["card_arrival", "card_arrival_late", "Refund_not_showing_up"]);
        assert_eq!(label(&b, "card arrival").as_deref(), Some("card_arrival"));
        assert_eq!(
            label(&b, "I think card_arrival_late").as_deref(),
            Some("card_arrival_late")
        );
        assert_eq!(
            label(&b, "refund_not_showing_up").as_deref(),
            Some("Refund_not_showing_up")
        );
        assert_eq!(
            label(&b, "<think>card arrival?</think>\nrefund not showing up").as_deref(),
            Some("Refund_not_showing_up")
        );
    }

    #[test]
    fn option_letters() {
        let o = labels(&["A", "B", "C", "D"]);
        for (raw, want) in [
            ("B", Some("B")),
            ("(c)", Some("C")),
            ("D. Aspirin", Some("D")),
            ("Answer: A", Some("A")),
            ("The correct option is C because", Some("C")),
            ("I believe the answer is B.", Some("B")),
            ("a drug", None),
            ("b", Some("B")),
            ("", None),
        ] {
            assert_eq!(choice(&o, raw).as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn span_lists() {
        let na = "No relevant clause.";
        assert!(spans(na, "No relevant clause.").is_empty());
        assert!(spans(na, "no relevant clause").is_empty());
        assert!(spans(na, "").is_empty());
        assert_eq!(
            spans(na, "- \"This Agreement is governed by Delaware law.\"\n2. Term: five years\n\n- Term: five years"),
            vec!["This Agreement is governed by Delaware law.", "Term: five years"]
        );
    }

    #[test]
    fn code_blocks() {
        assert_eq!(
            code("Here:\n```python\ndef f(x):\n    return x\n```\nDone."),
            "def f(x):\n    return x"
        );
        assert_eq!(
            code("```\nprint(1)\n```\n```python\ndef g(): pass\n```"),
            "def g(): pass"
        );
        assert_eq!(code("def h():\n    return 2\n"), "def h():\n    return 2");
        assert_eq!(code("```python\ndef cut(:\n    re"), "def cut(:\n    re");
    }
}
