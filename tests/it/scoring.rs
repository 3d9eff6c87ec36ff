//! The one scoring path: training validation, `bwb classify`'s per-example classes and the
//! summaries' metrics agree on the same completions, for every answer kind — and each agrees
//! with values worked out by hand (scikit-learn / CUAD / MBPP / HotpotQA / ETHIC / rouge-score
//! conventions), so changing any one of the three users alone fails here. For the text, list,
//! retrieval and summary kinds every metric is also checked to be the mean of the per-example
//! metric sets (`scorer.metrics(&[row])`).

use std::collections::BTreeMap;
use std::path::Path;

use bwb::config::{AnswerKind, Configs, TaskConfig, TextConvention};
use bwb::data::{Answer, Example, Span};
use bwb::eval::predictions::{Generation, Prediction, PredictionFile};
use bwb::eval::Condition;
use bwb::paths::Paths;
use bwb::prompt::chat_template::Message;
use bwb::report::{self, summary::Summary};
use bwb::score::{ErrorClass, MetricId, Parsed, Row};
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
            truncated: false,
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

/// A task of `kind` headlined by `metric` (no shipped config uses these kinds yet): medmcqa's
/// config with its answer spec replaced.
fn task_of_kind(
    id: &str,
    kind: AnswerKind,
    metric: MetricId,
    convention: TextConvention,
    k: Option<usize>,
) -> TaskConfig {
    let mut task = configs().task("medmcqa").unwrap().clone();
    task.id = id.into();
    task.metric_id = metric;
    task.answer.kind = kind;
    task.answer.options.clear();
    task.answer.option_columns.clear();
    task.answer.convention = convention;
    task.answer.k = k;
    task
}

/// Extract → judge → `metrics(&[row])` per example: the judged score is the first metric
/// (the per-example score), and the mean of the per-example sets is `score_outputs`'s
/// metrics. Returns the per-example sets.
fn per_example_agreement(task: &TaskConfig, examples: &[Example], raws: &[&str]) -> Vec<Vec<f64>> {
    let s = bwb::score::scorer(task);
    let mut per_example = Vec::new();
    for (ex, raw) in examples.iter().zip(raws) {
        let parsed: Parsed = s.extract(raw);
        let j = s.judge(&parsed, &ex.answer, raw, None);
        let row = Row {
            example_id: &ex.id,
            parsed: &parsed,
            gold: &ex.answer,
            class: j.class,
            score: j.score,
        };
        let m = s.metrics(&[row]);
        let ids: Vec<MetricId> = m.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, s.metric_ids(), "{}", ex.id);
        assert_eq!(
            m[0].1, j.score,
            "{}: judged score is the first metric",
            ex.id
        );
        per_example.push(m.iter().map(|(_, v)| *v).collect::<Vec<f64>>());
    }
    let raw_strings: Vec<String> = raws.iter().map(|s| s.to_string()).collect();
    let all = bwb::score::score_outputs(task, examples, &raw_strings);
    for (i, (id, v)) in all.iter().enumerate() {
        let mean = per_example.iter().map(|m| m[i]).sum::<f64>() / per_example.len() as f64;
        assert!((v - mean).abs() < 1e-12, "{id}: {v} vs mean of rows {mean}");
    }
    per_example
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-12, "{what}: got {got}, want {want}");
}

#[test]
fn text_scoring_agrees_across_validation_classify_and_summary() {
    let task = task_of_kind(
        "qa",
        AnswerKind::Text,
        MetricId::F1,
        TextConvention::Hotpotqa,
        None,
    );
    let text = |golds: &[&str]| Answer::Text {
        answers: golds.iter().map(|g| g.to_string()).collect(),
    };
    let examples = vec![
        example("qa", 0, text(&["Paris"])),
        example("qa", 1, text(&["the red dog", "Rex"])),
        example("qa", 2, text(&["yes"])),
        example("qa", 3, text(&["no"])),
    ];
    let raws = [
        "<think>France</think>Answer: Paris",
        "a red cat\nIt barked.",
        "yes it is",
        "",
    ];
    let rows = per_example_agreement(&task, &examples, &raws);
    // [f1, exact_match] per example: "red cat" vs "red dog" P 1/2 R 1/2; HotpotQA gives a
    // yes/no gold no partial credit (SQuAD would give 0.5).
    assert_eq!(
        rows,
        [[1.0, 1.0], [0.5, 0.0], [0.0, 0.0], [0.0, 0.0]].map(Vec::from)
    );
    let (val, s, classes) = three_ways(&task, &examples, &raws);
    close(val, 1.5 / 4.0, "validation f1");
    assert_eq!(headline(&s, MetricId::F1), val);
    close(headline(&s, MetricId::ExactMatch), 0.25, "exact_match");
    use ErrorClass::*;
    assert_eq!(classes, [Correct, PartialAnswer, WrongAnswer, NoAnswer]);
}

#[test]
fn list_scoring_agrees_across_validation_classify_and_summary() {
    let task = task_of_kind(
        "ethic",
        AnswerKind::List,
        MetricId::SetF1,
        TextConvention::Squad,
        None,
    );
    let list = |items: &[&str]| Answer::List {
        items: items.iter().map(|g| g.to_string()).collect(),
    };
    let examples = vec![
        example("ethic", 0, list(&["aspirin", "ibuprofen"])),
        example("ethic", 1, list(&["aspirin", "ibuprofen"])),
        example("ethic", 2, list(&["x", "y", "z"])),
        example("ethic", 3, list(&["x"])),
    ];
    let raws = ["Aspirin, ibuprofen.", "aspirin", "x; w", "x, y,"];
    let rows = per_example_agreement(&task, &examples, &raws);
    // [set_f1, set_exact_match, set_precision, set_recall] with ETHIC's rules: the trailing
    // comma's empty item is a false positive (P 1/3).
    let want = [
        [1.0, 1.0, 1.0, 1.0],
        [2.0 / 3.0, 0.0, 1.0, 0.5],
        [0.4, 0.0, 0.5, 1.0 / 3.0],
        [0.5, 0.0, 1.0 / 3.0, 1.0],
    ];
    for (got, want) in rows.iter().zip(want) {
        for (g, w) in got.iter().zip(want) {
            close(*g, w, "per-example list metric");
        }
    }
    let (val, s, classes) = three_ways(&task, &examples, &raws);
    close(
        val,
        (1.0 + 2.0 / 3.0 + 0.4 + 0.5) / 4.0,
        "validation set_f1",
    );
    assert_eq!(headline(&s, MetricId::SetF1), val);
    close(
        headline(&s, MetricId::SetExactMatch),
        0.25,
        "set_exact_match",
    );
    close(
        headline(&s, MetricId::SetPrecision),
        (2.5 + 1.0 / 3.0) / 4.0,
        "precision",
    );
    close(
        headline(&s, MetricId::SetRecall),
        (2.5 + 1.0 / 3.0) / 4.0,
        "recall",
    );
    use ErrorClass::*;
    assert_eq!(classes, [Correct, MissingItems, WrongItems, ExtraItems]);
}

#[test]
fn retrieval_scoring_agrees_across_validation_classify_and_summary() {
    let task = task_of_kind(
        "marco",
        AnswerKind::Retrieval,
        MetricId::RetrievalF1,
        TextConvention::Squad,
        Some(2),
    );
    let relevant = |ids: &[&str]| Answer::Retrieval {
        relevant: ids.iter().map(|g| g.to_string()).collect(),
    };
    let examples = vec![
        example("marco", 0, relevant(&["3", "7"])),
        example("marco", 1, relevant(&["1", "2"])),
        example("marco", 2, relevant(&["4"])),
        example("marco", 3, relevant(&["2", "6"])),
    ];
    let raws = [
        "[7], [3]",
        "1, 5, 2",
        "Passage 4, then passage 9",
        "I cannot tell.",
    ];
    let rows = per_example_agreement(&task, &examples, &raws);
    // [retrieval_f1, precision, recall] of the first k = 2 ids.
    let want = [
        [1.0, 1.0, 1.0],
        [0.5, 0.5, 0.5],
        [2.0 / 3.0, 0.5, 1.0],
        [0.0, 0.0, 0.0],
    ];
    for (got, want) in rows.iter().zip(want) {
        for (g, w) in got.iter().zip(want) {
            close(*g, w, "per-example retrieval metric");
        }
    }
    let (val, s, classes) = three_ways(&task, &examples, &raws);
    close(
        val,
        (1.0 + 0.5 + 2.0 / 3.0) / 4.0,
        "validation retrieval_f1",
    );
    assert_eq!(headline(&s, MetricId::RetrievalF1), val);
    close(headline(&s, MetricId::RetrievalPrecision), 0.5, "precision");
    close(headline(&s, MetricId::RetrievalRecall), 0.625, "recall");
    use ErrorClass::*;
    assert_eq!(classes, [Correct, WrongItems, ExtraItems, NoAnswer]);
}

#[test]
fn summary_scoring_agrees_across_validation_classify_and_summary() {
    let task = task_of_kind(
        "qmsum",
        AnswerKind::Summary,
        MetricId::RougeL,
        TextConvention::Squad,
        None,
    );
    let refs = |r: &[&str]| Answer::Summary {
        references: r.iter().map(|g| g.to_string()).collect(),
    };
    let examples = vec![
        example("qmsum", 0, refs(&["the team agreed on the budget"])),
        example(
            "qmsum",
            1,
            refs(&["the team agreed on the budget", "budget approved"]),
        ),
        example("qmsum", 2, refs(&["budget approved"])),
        example("qmsum", 3, refs(&["budget approved"])),
    ];
    let raws = [
        "Summary: The team agreed on the budget.",
        "the budget was approved",
        "Lunch was served at noon",
        "",
    ];
    let rows = per_example_agreement(&task, &examples, &raws);
    // [rougeL, rouge1, rouge2], each the best reference (rouge-score's score_multi): example 1
    // takes ROUGE-1/L 2/3 from "budget approved" and ROUGE-2 0.25 ("the budget") from the other.
    let want = [
        [1.0, 1.0, 1.0],
        [2.0 / 3.0, 2.0 / 3.0, 0.25],
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ];
    for (got, want) in rows.iter().zip(want) {
        for (g, w) in got.iter().zip(want) {
            close(*g, w, "per-example rouge");
        }
    }
    let (val, s, classes) = three_ways(&task, &examples, &raws);
    close(val, 5.0 / 12.0, "validation rougeL");
    assert_eq!(headline(&s, MetricId::RougeL), val);
    close(headline(&s, MetricId::Rouge1), 5.0 / 12.0, "rouge1");
    close(headline(&s, MetricId::Rouge2), 1.25 / 4.0, "rouge2");
    use ErrorClass::*;
    assert_eq!(classes, [Correct, Correct, LowOverlap, NoAnswer]);
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

#[test]
fn metric_ids_of_the_new_kinds_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(
        &Path::new(REPO).join("configs"),
        &dir.path().join("configs"),
    );
    let path = dir.path().join("configs/tasks/medmcqa.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let as_kind = |kind: &str, metric: &str| {
        let mut t = text
            .replace("kind: choice", &format!("kind: {kind}"))
            .replace("metric_id: accuracy", &format!("metric_id: {metric}"));
        if kind == "retrieval" {
            // The prompt must number the passages the gold ids refer to.
            t.push_str("context_layout: passages\n");
        }
        std::fs::write(&path, t).unwrap();
        Configs::load(&dir.path().join("configs")).map(|c| c.task("medmcqa").unwrap().clone())
    };
    for (kind, good, bad, valid) in [
        ("text", "f1", "rougeL", "f1, exact_match"),
        (
            "list",
            "set_f1",
            "f1",
            "set_f1, set_exact_match, set_precision, set_recall",
        ),
        (
            "retrieval",
            "retrieval_recall",
            "set_recall",
            "retrieval_f1, retrieval_precision, retrieval_recall",
        ),
        ("summary", "rouge2", "exact_match", "rougeL, rouge1, rouge2"),
    ] {
        let task = as_kind(kind, good).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(task.metric_id.as_str(), good);
        let err = as_kind(kind, bad).unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{bad}` is not computed for {kind} answers"))
                && err.contains(valid),
            "{err}"
        );
    }
}
