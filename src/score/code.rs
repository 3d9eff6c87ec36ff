//! Code answers (MBPP): a Python function, checked by running the task's asserts in bwb's
//! sandbox. Metrics: pass@1 with the unbiased estimator of Chen et al. (2021) over each
//! example's predictions, and exact match of the normalised code against the reference
//! solution — the metric training validation selects by, since choosing an epoch must not
//! run model-written code.

use std::collections::BTreeMap;

use super::{answer_text, first_line, mismatch, ErrorClass, Judged};
use super::{MetricId, Parsed, Row, Scorer};
use crate::data::Answer;
use crate::exec::{ExecResult, Outcome};
use crate::metrics::{code, stats};

pub const METRICS: &[MetricId] = &[MetricId::PassAt1, MetricId::ExactMatch];

pub struct CodeScorer;

impl Scorer for CodeScorer {
    fn extract(&self, raw: &str) -> Parsed {
        Parsed::Code {
            code: extract_code(raw),
        }
    }

    fn judge(&self, parsed: &Parsed, gold: &Answer, _: &str, exec: Option<&ExecResult>) -> Judged {
        let (Parsed::Code { .. }, Answer::Code { .. }) = (parsed, gold) else {
            return mismatch(parsed, gold);
        };
        let Some(r) = exec else {
            return Judged::new(ErrorClass::NotExecuted, 0.0, "code was not executed");
        };
        let class = match r.outcome {
            Outcome::Passed => ErrorClass::Correct,
            Outcome::SyntaxError => ErrorClass::SyntaxError,
            Outcome::RuntimeError => ErrorClass::RuntimeError,
            Outcome::FailedAssertion => ErrorClass::FailedAssertion,
            Outcome::Timeout => ErrorClass::Timeout,
        };
        let score = if r.outcome == Outcome::Passed {
            1.0
        } else {
            0.0
        };
        Judged::new(class, score, first_line(&r.detail, 200))
    }

    fn metric_ids(&self) -> &'static [MetricId] {
        METRICS
    }

    fn metrics(&self, rows: &[Row<'_>]) -> Vec<(MetricId, f64)> {
        // pass@1 with the unbiased estimator over each example's predictions.
        let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut em = Vec::with_capacity(rows.len());
        for r in rows {
            let e = per.entry(r.example_id).or_insert((0, 0));
            e.0 += 1;
            if r.class == ErrorClass::Correct {
                e.1 += 1;
            }
            if let (Parsed::Code { code }, Answer::Code { reference, .. }) = (r.parsed, r.gold) {
                em.push(f64::from(u8::from(normalize(code) == normalize(reference))));
            }
        }
        let pass: Vec<f64> = per
            .values()
            .map(|&(n, c)| code::pass_at_k(n, c, 1))
            .collect();
        vec![
            (MetricId::PassAt1, stats::mean(&pass).unwrap_or(0.0)),
            (MetricId::ExactMatch, stats::mean(&em).unwrap_or(0.0)),
        ]
    }

    fn score_name(&self) -> &'static str {
        "passed"
    }

    fn needs_execution(&self) -> bool {
        true
    }

    fn validation_metric(&self, primary: MetricId) -> MetricId {
        match primary {
            MetricId::PassAt1 => MetricId::ExactMatch,
            other => other,
        }
    }
}

/// Lower-case, trimmed, without surrounding quotes or trailing punctuation.
pub fn normalize(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '`')
        .trim_end_matches(['.', '!', ',', ';', ':'])
        .trim()
        .to_lowercase()
}

/// The code of the first ```python block (else the first fenced block, else the whole
/// output), without the fences.
pub fn extract_code(raw: &str) -> String {
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

    #[test]
    fn code_blocks() {
        assert_eq!(
            extract_code("Here:\n```python\ndef f(x):\n    return x\n```\nDone."),
            "def f(x):\n    return x"
        );
        assert_eq!(
            extract_code("```\nprint(1)\n```\n```python\ndef g(): pass\n```"),
            "def g(): pass"
        );
        assert_eq!(
            extract_code("def h():\n    return 2\n"),
            "def h():\n    return 2"
        );
        assert_eq!(
            extract_code("```python\ndef cut(:\n    re"),
            "def cut(:\n    re"
        );
    }

    #[test]
    fn normalize_strips_case_space_and_punctuation() {
        assert_eq!(normalize("  Positive.\n"), "positive");
        assert_eq!(normalize("\"neutral\""), "neutral");
    }

    #[test]
    fn pass_at_1_averages_each_examples_draws() {
        let gold = Answer::Code {
            reference: "def f(): return 1".into(),
            tests: vec![],
            setup: String::new(),
            challenge_tests: vec![],
        };
        let p = Parsed::Code {
            code: "def f(): return 1".into(),
        };
        let row = |id, class| Row {
            example_id: id,
            parsed: &p,
            gold: &gold,
            class,
            score: 0.0,
        };
        let rows = [
            row("a", ErrorClass::Correct),
            row("a", ErrorClass::FailedAssertion),
            row("b", ErrorClass::Correct),
        ];
        let m = CodeScorer.metrics(&rows);
        assert_eq!(m[0], (MetricId::PassAt1, 0.75));
        assert_eq!(m[1], (MetricId::ExactMatch, 1.0));
    }
}
