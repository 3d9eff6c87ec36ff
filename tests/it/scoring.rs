//! The one scoring path: training validation, `bwb classify`'s per-example classes and the
//! summaries' metrics agree on the same completions, for every answer kind — and each agrees
//! with values worked out by hand (scikit-learn / CUAD / MBPP conventions), so changing any
//! one of the three users alone fails here.

use std::collections::BTreeMap;
use std::path::Path;

use bwb::config::{Configs, TaskConfig};
use bwb::data::{Answer, Example, Span};
use bwb::eval::predictions::{Generation, Prediction, PredictionFile};
use bwb::eval::Condition;
use bwb::paths::Paths;
use bwb::prompt::chat_template::Message;
use bwb::report::{self, summary::Summary};
use bwb::score::{ErrorClass, MetricId};
use bwb::train::validate;

use crate::common::{jsonl, REPO};

fn configs() -> Configs {
    Configs::load(&Path::new(REPO).join("configs")).unwrap()
}

fn example(task: &str, i: usize, answer: Answer) -> Example {
    Example {
        id: format!("{task}-{i}"),
        task: task.into(),
        inputs: BTreeMap::new(),
        answer,
        target: String::new(),
        stratum: None,
    }
}

/// Greedy predictions of `raws` as `bwb eval` writes them (extracted by the task's scorer).
fn write_predictions(root: &Path, task: &TaskConfig, examples: &[Example], raws: &[&str]) {
    let paths = Paths::new(root, false);
    let path = paths.predictions("m", &task.id, "zero-shot", 1);
    let mut file = PredictionFile::open(&path, Generation::Greedy).unwrap();
    let scorer = bwb::score::scorer(task);
    for (ex, raw) in examples.iter().zip(raws) {
        file.append(&Prediction {
            id: ex.id.clone(),
            example_id: ex.id.clone(),
            model: "m".into(),
            task: task.id.clone(),
            condition: Condition::ZeroShot,
            seed: 1,
            generation: Generation::Greedy,
            input_messages: vec![Message::user("q")],
            raw_output: raw.to_string(),
            prediction: scorer.extract(raw),
            gold: ex.answer.clone(),
            input_tokens: 10,
            output_tokens: 2,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            latency_ms: 5.0,
            compute_ms: Some(5.0),
            cost_usd: None,
            error: None,
            finish_reason: None,
            windows: 1,
            from_cache: false,
        })
        .unwrap();
    }
}

/// Validation's score, the summary's headline of the same metric, and the classes.
fn three_ways(
    task: &TaskConfig,
    examples: &[Example],
    raws: &[&str],
) -> (f64, Summary, Vec<ErrorClass>) {
    let raw_strings: Vec<String> = raws.iter().map(|s| s.to_string()).collect();
    let val = validate::score(task, examples, &raw_strings);
    let root = tempfile::tempdir().unwrap();
    write_predictions(root.path(), task, examples, raws);
    let paths = Paths::new(root.path(), false);
    let opts = report::Options {
        allow_code_execution: true,
        seeds: vec![1, 2, 3],
        ..report::Options::default()
    };
    let r = report::classify_task(&paths, &configs(), task, &opts)
        .unwrap()
        .unwrap();
    let summary = r.summaries[0].1.clone();
    let classified = jsonl(
        &std::fs::read_to_string(
            root.path()
                .join(format!("results/classified/m_{}_zero-shot.jsonl", task.id)),
        )
        .unwrap(),
    );
    let mut by_id: Vec<(String, ErrorClass)> = classified
        .iter()
        .map(|c| {
            (
                c["example_id"].as_str().unwrap().to_string(),
                serde_json::from_value(c["class"].clone()).unwrap(),
            )
        })
        .collect();
    by_id.sort_by(|a, b| a.0.cmp(&b.0));
    let mut classes = Vec::new();
    for ex in examples {
        let c = by_id.iter().find(|(id, _)| *id == ex.id).unwrap().1;
        classes.push(c);
    }
    (val, summary, classes)
}

fn headline(s: &Summary, m: MetricId) -> f64 {
    s.metrics[m.as_str()].mean
}

#[test]
fn label_scoring_agrees_across_validation_classify_and_summary() {
    let configs = configs();
    let task = configs.task("fpb").unwrap();
    let gold = [
        "negative", "negative", "neutral", "neutral", "positive", "positive",
    ];
    let examples: Vec<Example> = gold
        .iter()
        .enumerate()
        .map(|(i, g)| {
            example(
                "fpb",
                i,
                Answer::Label {
                    label: g.to_string(),
                },
            )
        })
        .collect();
    let raws = [
        "negative",
        "Negative.",
        "Sentiment: neutral",
        "negative",
        "bullish",
        "neutral",
    ];
    let (val, s, classes) = three_ways(task, &examples, &raws);
    // sklearn f1_score(average="macro", labels=[negative, neutral, positive]):
    // negative P 2/3 R 1 → 0.8; neutral P 1/2 R 1/2 → 0.5; positive 0.
    let want = (0.8 + 0.5 + 0.0) / 3.0;
    assert_eq!(validate::metric_name(task), MetricId::MacroF1);
    assert!((val - want).abs() < 1e-12, "validation {val}");
    assert_eq!(headline(&s, MetricId::MacroF1), val);
    assert!((headline(&s, MetricId::Accuracy) - 3.0 / 6.0).abs() < 1e-12);
    use ErrorClass::*;
    assert_eq!(
        classes,
        [
            Correct,
            Correct,
            Correct,
            WrongLabel,
            LabelOutsideSet,
            WrongLabel
        ]
    );
    assert_eq!(s.error_classes[&Correct], 3);
}

#[test]
fn choice_scoring_agrees_across_validation_classify_and_summary() {
    let configs = configs();
    let task = configs.task("medmcqa").unwrap();
    let gold = ["A", "B", "C", "D"];
    let examples: Vec<Example> = gold
        .iter()
        .enumerate()
        .map(|(i, g)| {
            example(
                "medmcqa",
                i,
                Answer::Choice {
                    option: g.to_string(),
                    text: String::new(),
                },
            )
        })
        .collect();
    let raws = ["A", "(B) aspirin", "D", "I do not know"];
    let (val, s, classes) = three_ways(task, &examples, &raws);
    assert_eq!(val, 0.5);
    assert_eq!(headline(&s, MetricId::Accuracy), val);
    use ErrorClass::*;
    assert_eq!(classes, [Correct, Correct, WrongOption, NoOption]);
}

#[test]
fn span_scoring_agrees_across_validation_classify_and_summary() {
    let configs = configs();
    let task = configs.task("cuad").unwrap();
    let span = |t: &str| Answer::Spans {
        spans: vec![Span {
            text: t.into(),
            start: 0,
        }],
    };
    let examples = vec![
        example("cuad", 0, span("governed by the laws of Delaware")),
        example("cuad", 1, span("term of five years")),
        example("cuad", 2, Answer::Spans { spans: vec![] }),
        example("cuad", 3, span("exclusive license")),
    ];
    let no = task.answer.no_answer.clone().unwrap();
    let raws = [
        "\"governed by the laws of Delaware\"",
        "\"term of five years and renewal\"",
        no.as_str(),
        no.as_str(),
    ];
    let (val, s, classes) = three_ways(task, &examples, &raws);
    // Token F1 (SQuAD normalisation drops articles/punctuation): 1; P 4/6 R 4/4 → 0.8;
    // rightly none: 1; missed: 0.
    let want = (1.0 + 0.8 + 1.0 + 0.0) / 4.0;
    assert!((val - want).abs() < 1e-12, "validation {val}");
    assert_eq!(headline(&s, MetricId::CuadF1), val);
    assert_eq!(headline(&s, MetricId::ExactMatch), 0.5);
    use ErrorClass::*;
    assert_eq!(classes, [Correct, PartialSpan, Correct, MissedClause]);
}

#[test]
fn code_scoring_agrees_across_validation_classify_and_summary() {
    let configs = configs();
    let task = configs.task("mbpp").unwrap();
    let gold = |reference: &str, test: &str| Answer::Code {
        reference: reference.into(),
        tests: vec![test.into()],
        setup: String::new(),
        challenge_tests: vec![],
    };
    let examples = vec![
        example(
            "mbpp",
            0,
            gold("def f(x):\n    return x + 1", "assert f(1) == 2"),
        ),
        example(
            "mbpp",
            1,
            gold("def g(x):\n    return 2 * x", "assert g(2) == 4"),
        ),
        example("mbpp", 2, gold("def h():\n    return 0", "assert h() == 0")),
    ];
    let raws = [
        "```python\ndef f(x):\n    return x + 1\n```",
        "```python\ndef g(x):\n    return x + x\n```",
        "```python\ndef h():\n    return 1\n```",
    ];
    let (val, s, classes) = three_ways(task, &examples, &raws);
    // Validation never runs model code: exact match against the reference (1 of 3).
    assert_eq!(validate::metric_name(task), MetricId::ExactMatch);
    assert!((val - 1.0 / 3.0).abs() < 1e-12, "validation {val}");
    assert_eq!(headline(&s, MetricId::ExactMatch), val);
    // Classify runs them: two pass.
    assert!((headline(&s, MetricId::PassAt1) - 2.0 / 3.0).abs() < 1e-12);
    use ErrorClass::*;
    assert_eq!(classes, [Correct, Correct, FailedAssertion]);
}

#[test]
fn a_metric_the_answer_kind_does_not_compute_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(
        &Path::new(REPO).join("configs"),
        &dir.path().join("configs"),
    );
    let path = dir.path().join("configs/tasks/fpb.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("metric_id:"))
        .unwrap()
        + 1;
    std::fs::write(
        &path,
        text.replace("metric_id: macro_f1", "metric_id: pass_at_1"),
    )
    .unwrap();
    let err = Configs::load(&dir.path().join("configs"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("fpb.yaml:{line}:")) && err.contains("`pass_at_1`"),
        "{err}"
    );
    assert!(
        err.contains("accuracy, macro_f1, weighted_f1") && !err.contains('\n'),
        "{err}"
    );

    std::fs::write(
        &path,
        text.replace("metric_id: macro_f1", "metric_id: macro_f2"),
    )
    .unwrap();
    let err = Configs::load(&dir.path().join("configs"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("fpb.yaml:{line}:")) && err.contains("macro_f2"),
        "{err}"
    );
    assert!(err.contains("weighted_f1") && !err.contains('\n'), "{err}");
}
