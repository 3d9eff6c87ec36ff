//! Every metric agrees with its reference implementation (scikit-learn, rouge-score, the
//! official SQuAD script, numpy, statsmodels, scipy, the Codex paper's estimator, HotpotQA's,
//! LongBench's and ETHIC's evaluation code) on the cases in tests/fixtures/metrics/*.json,
//! written by scripts/make_metric_fixtures.py and scripts/make_context_metric_fixtures.py.
//! Each test checks every case and reports all mismatches at once, by case name.

use std::path::Path;

use bwb::metrics::{
    classification, code, cuad, hotpotqa, longbench, retrieval, rouge, sets, squad, stats,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::common::REPO;

/// Tolerance for values computed by the same formula in the same order (only rounding of the
/// last operations may differ).
const EXACT: f64 = 1e-12;
/// Tolerance for values the reference sums in another order (numpy pairwise sums).
const CLOSE: f64 = 1e-9;

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = Path::new(REPO).join("tests/fixtures/metrics").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap();
    assert!(value["versions"].is_object(), "{name}: no versions");
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Collects mismatches; panics with all of them when dropped via [`Checks::finish`].
#[derive(Default)]
struct Checks {
    failures: Vec<String>,
    count: usize,
}

impl Checks {
    /// `got` within `tol` of `want`, absolutely or relative to `want`.
    fn close(&mut self, case: &str, what: &str, got: f64, want: f64, tol: f64) {
        self.count += 1;
        let ok = (got - want).abs() <= tol || (got - want).abs() <= tol * want.abs();
        if !ok {
            self.failures
                .push(format!("{case}: {what}: got {got:e}, want {want:e}"));
        }
    }

    /// `got` within `rel` of `want` relative to `want` (p-values span hundreds of decades).
    fn relative(&mut self, case: &str, what: &str, got: f64, want: f64, rel: f64) {
        self.count += 1;
        let ok = got == want || (got - want).abs() <= rel * want.abs();
        if !ok {
            self.failures
                .push(format!("{case}: {what}: got {got:e}, want {want:e}"));
        }
    }

    fn equal<T: PartialEq + std::fmt::Debug>(&mut self, case: &str, what: &str, got: T, want: T) {
        self.count += 1;
        if got != want {
            self.failures
                .push(format!("{case}: {what}: got {got:?}, want {want:?}"));
        }
    }

    fn finish(self, min_count: usize) {
        assert!(
            self.failures.is_empty(),
            "{} of {} checks failed:\n{}",
            self.failures.len(),
            self.count,
            self.failures.join("\n")
        );
        assert!(self.count >= min_count, "only {} checks ran", self.count);
    }
}

// --- squad ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct SquadFixture {
    pairs: Vec<SquadPair>,
    max_over_golds: Vec<SquadMax>,
}

#[derive(Deserialize)]
struct SquadPair {
    name: String,
    pred: String,
    gold: String,
    normalized_pred: String,
    normalized_gold: String,
    exact_match: f64,
    f1: f64,
}

#[derive(Deserialize)]
struct SquadMax {
    name: String,
    pred: String,
    golds: Vec<String>,
    exact_match: f64,
    f1: f64,
}

#[test]
fn squad_matches_the_official_script() {
    let fx: SquadFixture = fixture("squad.json");
    let mut checks = Checks::default();
    for c in &fx.pairs {
        let n = &c.name;
        checks.equal(
            n,
            "normalize(pred)",
            squad::normalize_answer(&c.pred),
            c.normalized_pred.clone(),
        );
        checks.equal(
            n,
            "normalize(gold)",
            squad::normalize_answer(&c.gold),
            c.normalized_gold.clone(),
        );
        checks.close(
            n,
            "exact_match",
            squad::exact_match(&c.pred, &c.gold),
            c.exact_match,
            EXACT,
        );
        checks.close(n, "f1", squad::token_f1(&c.pred, &c.gold), c.f1, EXACT);
    }
    for c in &fx.max_over_golds {
        let n = &c.name;
        let em = squad::max_over_golds(squad::exact_match, &c.pred, &c.golds);
        let f1 = squad::max_over_golds(squad::token_f1, &c.pred, &c.golds);
        checks.close(n, "max exact_match", em, c.exact_match, EXACT);
        checks.close(n, "max f1", f1, c.f1, EXACT);
    }
    checks.finish(300);
}

// --- classification ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct ClassificationFixture {
    cases: Vec<ClassificationCase>,
}

#[derive(Deserialize)]
struct ClassificationCase {
    name: String,
    labels: Vec<String>,
    y_true: Vec<String>,
    y_pred: Vec<Option<String>>,
    accuracy: f64,
    macro_f1: f64,
    weighted_f1: f64,
    per_class: Vec<classification::PerClass>,
}

#[test]
fn classification_matches_sklearn() {
    let fx: ClassificationFixture = fixture("classification.json");
    let mut checks = Checks::default();
    for c in &fx.cases {
        let n = &c.name;
        let labels: Vec<&str> = c.labels.iter().map(String::as_str).collect();
        let y_true: Vec<&str> = c.y_true.iter().map(String::as_str).collect();
        let y_pred: Vec<Option<&str>> = c.y_pred.iter().map(Option::as_deref).collect();
        let acc = classification::accuracy(&y_true, &y_pred);
        checks.close(n, "accuracy", acc, c.accuracy, EXACT);
        let macro_f1 = classification::macro_f1(&labels, &y_true, &y_pred);
        checks.close(n, "macro_f1", macro_f1, c.macro_f1, CLOSE);
        let weighted_f1 = classification::weighted_f1(&labels, &y_true, &y_pred);
        checks.close(n, "weighted_f1", weighted_f1, c.weighted_f1, CLOSE);
        let got = classification::per_class(&labels, &y_true, &y_pred);
        checks.equal(n, "per_class len", got.len(), c.per_class.len());
        for (g, w) in got.iter().zip(&c.per_class) {
            let what = |m: &str| format!("{} {m}", w.label);
            checks.equal(n, &what("label"), &g.label, &w.label);
            checks.close(n, &what("precision"), g.precision, w.precision, EXACT);
            checks.close(n, &what("recall"), g.recall, w.recall, EXACT);
            checks.close(n, &what("f1"), g.f1, w.f1, EXACT);
            checks.equal(n, &what("support"), g.support, w.support);
        }
    }
    checks.finish(300);
}

// --- cuad -------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CuadFixture {
    spans: Vec<SpanCase>,
    detection: Vec<DetectionCase>,
    aupr: Vec<AuprCase>,
}

#[derive(Deserialize)]
struct SpanCase {
    name: String,
    pred_spans: Vec<String>,
    gold_spans: Vec<String>,
    f1: f64,
    exact_match: f64,
}

#[derive(Deserialize)]
struct DetectionCase {
    name: String,
    y_true: Vec<bool>,
    y_pred: Vec<bool>,
    precision: f64,
    recall: f64,
    f1: f64,
}

#[derive(Deserialize)]
struct AuprCase {
    name: String,
    y_true: Vec<bool>,
    scores: Vec<f64>,
    aupr: f64,
}

#[test]
fn cuad_matches_squad_and_sklearn() {
    let fx: CuadFixture = fixture("cuad.json");
    let mut checks = Checks::default();
    for c in &fx.spans {
        let n = &c.name;
        checks.close(
            n,
            "span f1",
            cuad::token_f1(&c.pred_spans, &c.gold_spans),
            c.f1,
            EXACT,
        );
        let em = cuad::exact_match(&c.pred_spans, &c.gold_spans);
        checks.close(n, "span exact_match", em, c.exact_match, EXACT);
    }
    for c in &fx.detection {
        let n = &c.name;
        let got = cuad::answer_detection(&c.y_true, &c.y_pred);
        checks.close(n, "detection precision", got.precision, c.precision, EXACT);
        checks.close(n, "detection recall", got.recall, c.recall, EXACT);
        checks.close(n, "detection f1", got.f1, c.f1, EXACT);
    }
    for c in &fx.aupr {
        checks.close(
            &c.name,
            "aupr",
            cuad::aupr(&c.y_true, &c.scores),
            c.aupr,
            CLOSE,
        );
    }
    checks.finish(100);
}

// --- code -------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CodeFixture {
    cases: Vec<PassAtKCase>,
}

#[derive(Deserialize)]
struct PassAtKCase {
    n: usize,
    c: usize,
    k: usize,
    pass_at_k: f64,
}

#[test]
fn pass_at_k_matches_the_codex_estimator() {
    let fx: CodeFixture = fixture("code.json");
    let mut checks = Checks::default();
    for c in &fx.cases {
        let name = format!("n={} c={} k={}", c.n, c.c, c.k);
        checks.close(
            &name,
            "pass@k",
            code::pass_at_k(c.n, c.c, c.k),
            c.pass_at_k,
            EXACT,
        );
    }
    checks.finish(100);
}

// --- rouge ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct RougeFixture {
    cases: Vec<RougeCase>,
}

#[derive(Deserialize)]
struct RougeCase {
    name: String,
    target: String,
    prediction: String,
    target_tokens: Vec<String>,
    prediction_tokens: Vec<String>,
    rouge1: [f64; 3],
    rouge2: [f64; 3],
    rouge3: [f64; 3],
    #[serde(rename = "rougeL")]
    rouge_l: [f64; 3],
}

#[test]
fn rouge_matches_rouge_score() {
    let fx: RougeFixture = fixture("rouge.json");
    let mut checks = Checks::default();
    for c in &fx.cases {
        let n = &c.name;
        checks.equal(
            n,
            "target tokens",
            rouge::tokenize(&c.target),
            c.target_tokens.clone(),
        );
        let prediction_tokens = rouge::tokenize(&c.prediction);
        checks.equal(
            n,
            "prediction tokens",
            prediction_tokens,
            c.prediction_tokens.clone(),
        );
        let scores = [
            (
                "rouge1",
                rouge::rouge_n(&c.target, &c.prediction, 1),
                c.rouge1,
            ),
            (
                "rouge2",
                rouge::rouge_n(&c.target, &c.prediction, 2),
                c.rouge2,
            ),
            (
                "rouge3",
                rouge::rouge_n(&c.target, &c.prediction, 3),
                c.rouge3,
            ),
            (
                "rougeL",
                rouge::rouge_l(&c.target, &c.prediction),
                c.rouge_l,
            ),
        ];
        for (kind, got, [p, r, f]) in scores {
            checks.close(n, &format!("{kind} precision"), got.precision, p, EXACT);
            checks.close(n, &format!("{kind} recall"), got.recall, r, EXACT);
            checks.close(n, &format!("{kind} fmeasure"), got.fmeasure, f, EXACT);
        }
    }
    checks.finish(300);
}

// --- sets and retrieval -----------------------------------------------------------------------

#[derive(Deserialize)]
struct SetsFixture {
    cases: Vec<SetsCase>,
}

#[derive(Deserialize)]
struct SetsCase {
    name: String,
    pred: Vec<String>,
    gold: Vec<String>,
    exact_match: f64,
    precision: f64,
    recall: f64,
    f1: f64,
}

#[test]
fn sets_match_the_python_conventions() {
    let fx: SetsFixture = fixture("sets.json");
    let mut checks = Checks::default();
    for c in &fx.cases {
        let n = &c.name;
        let got = sets::set_scores(&c.pred, &c.gold);
        checks.close(n, "exact_match", got.exact_match, c.exact_match, EXACT);
        checks.close(n, "precision", got.precision, c.precision, EXACT);
        checks.close(n, "recall", got.recall, c.recall, EXACT);
        checks.close(n, "f1", got.f1, c.f1, EXACT);
    }
    checks.finish(80);
}

#[derive(Deserialize)]
struct RetrievalFixture {
    cases: Vec<RetrievalCase>,
}

#[derive(Deserialize)]
struct RetrievalCase {
    name: String,
    retrieved: Vec<String>,
    relevant: Vec<String>,
    k: Option<usize>,
    precision: f64,
    recall: f64,
    f1: f64,
}

#[test]
fn retrieval_matches_the_python_conventions() {
    let fx: RetrievalFixture = fixture("retrieval.json");
    let mut checks = Checks::default();
    for c in &fx.cases {
        let n = &c.name;
        let got = retrieval::prf_at_k(&c.retrieved, &c.relevant, c.k);
        checks.close(n, "precision", got.precision, c.precision, EXACT);
        checks.close(n, "recall", got.recall, c.recall, EXACT);
        checks.close(n, "f1", got.f1, c.f1, EXACT);
    }
    checks.finish(60);
}

// --- hotpotqa, longbench, ethic ---------------------------------------------------------------

#[derive(Deserialize)]
struct HotpotFixture {
    pairs: Vec<HotpotPair>,
}

#[derive(Deserialize)]
struct HotpotPair {
    name: String,
    pred: String,
    gold: String,
    normalized_pred: String,
    exact_match: f64,
    f1: f64,
    precision: f64,
    recall: f64,
}

#[test]
fn hotpotqa_matches_hotpot_evaluate_v1() {
    let fx: HotpotFixture = fixture("hotpotqa.json");
    let mut checks = Checks::default();
    for c in &fx.pairs {
        let n = &c.name;
        let norm = squad::normalize_answer(&c.pred);
        checks.equal(n, "normalize(pred)", norm, c.normalized_pred.clone());
        let em = hotpotqa::exact_match(&c.pred, &c.gold);
        checks.close(n, "exact_match", em, c.exact_match, EXACT);
        let got = hotpotqa::scores(&c.pred, &c.gold);
        checks.close(n, "f1", got.f1, c.f1, EXACT);
        checks.close(n, "precision", got.precision, c.precision, EXACT);
        checks.close(n, "recall", got.recall, c.recall, EXACT);
        checks.close(n, "f1()", hotpotqa::f1(&c.pred, &c.gold), c.f1, EXACT);
    }
    checks.finish(400);
}

#[derive(Deserialize)]
struct LongbenchFixture {
    pairs: Vec<LongbenchPair>,
    max_over_golds: Vec<LongbenchMax>,
}

#[derive(Deserialize)]
struct LongbenchPair {
    name: String,
    pred: String,
    gold: String,
    normalized_pred: String,
    qa_f1: f64,
}

#[derive(Deserialize)]
struct LongbenchMax {
    name: String,
    pred: String,
    golds: Vec<String>,
    qa_f1: f64,
}

#[test]
fn longbench_matches_its_metrics_and_eval_loop() {
    let fx: LongbenchFixture = fixture("longbench.json");
    let mut checks = Checks::default();
    for c in &fx.pairs {
        let n = &c.name;
        let norm = squad::normalize_answer(&c.pred);
        checks.equal(n, "normalize(pred)", norm, c.normalized_pred.clone());
        let f1 = longbench::qa_f1(&c.pred, &c.gold);
        checks.close(n, "qa_f1", f1, c.qa_f1, EXACT);
    }
    for c in &fx.max_over_golds {
        let got = longbench::max_over_golds(longbench::qa_f1, &c.pred, &c.golds);
        checks.close(&c.name, "max qa_f1", got, c.qa_f1, EXACT);
    }
    checks.finish(150);
}

#[derive(Deserialize)]
struct EthicFixture {
    recalling: Vec<EthicRecalling>,
    attributing: Vec<EthicAttributing>,
}

#[derive(Deserialize)]
struct EthicRecalling {
    name: String,
    prediction: String,
    labels: Vec<String>,
    precision: f64,
    recall: f64,
    f1: f64,
}

#[derive(Deserialize)]
struct EthicAttributing {
    name: String,
    prediction: String,
    answer: Vec<String>,
    precision: f64,
    recall: f64,
    f1: f64,
}

#[test]
fn ethic_sets_match_calculate_f1_score() {
    let fx: EthicFixture = fixture("ethic.json");
    let mut checks = Checks::default();
    for c in &fx.recalling {
        let n = &c.name;
        let got = sets::ethic_set_scores(&sets::ethic_split(&c.prediction), &c.labels);
        checks.close(n, "precision", got.precision, c.precision, EXACT);
        checks.close(n, "recall", got.recall, c.recall, EXACT);
        checks.close(n, "f1", got.f1, c.f1, EXACT);
    }
    checks.finish(120);
}

/// ETHIC's Attributing score is the retrieval scorer's P/R/F1 with `k` unset, gold ids being
/// the first number of each gold answer.
#[test]
fn ethic_attributing_is_retrieval_at_no_cut_off() {
    let fx: EthicFixture = fixture("ethic.json");
    let mut checks = Checks::default();
    for c in &fx.attributing {
        let n = &c.name;
        let ids = bwb::score::retrieval::passage_ids(&c.prediction);
        let relevant: Vec<String> = c
            .answer
            .iter()
            .map(|a| {
                let digits: String = a
                    .chars()
                    .skip_while(|c| !c.is_ascii_digit())
                    .take_while(char::is_ascii_digit)
                    .collect();
                if digits.is_empty() {
                    "None".to_string()
                } else {
                    digits
                }
            })
            .collect();
        let got = retrieval::prf_at_k(&ids, &relevant, None);
        checks.close(n, "precision", got.precision, c.precision, EXACT);
        checks.close(n, "recall", got.recall, c.recall, EXACT);
        checks.close(n, "f1", got.f1, c.f1, EXACT);
    }
    checks.finish(90);
}

#[derive(Deserialize)]
struct RougeMultiFixture {
    cases: Vec<RougeMultiCase>,
}

#[derive(Deserialize)]
struct RougeMultiCase {
    name: String,
    targets: Vec<String>,
    prediction: String,
    rouge1: [f64; 3],
    rouge2: [f64; 3],
    #[serde(rename = "rougeL")]
    rouge_l: [f64; 3],
}

#[test]
fn rouge_score_multi_matches_rouge_score() {
    let fx: RougeMultiFixture = fixture("rouge_multi.json");
    let mut checks = Checks::default();
    for c in &fx.cases {
        let n = &c.name;
        let (t, p) = (&c.targets, c.prediction.as_str());
        let scores = [
            (
                "rouge1",
                rouge::score_multi(t, p, |t, p| rouge::rouge_n(t, p, 1)),
                c.rouge1,
            ),
            (
                "rouge2",
                rouge::score_multi(t, p, |t, p| rouge::rouge_n(t, p, 2)),
                c.rouge2,
            ),
            (
                "rougeL",
                rouge::score_multi(t, p, rouge::rouge_l),
                c.rouge_l,
            ),
        ];
        for (kind, got, [p, r, f]) in scores {
            let Some(got) = got else {
                checks.equal(n, kind, "None", "a score");
                continue;
            };
            checks.close(n, &format!("{kind} precision"), got.precision, p, EXACT);
            checks.close(n, &format!("{kind} recall"), got.recall, r, EXACT);
            checks.close(n, &format!("{kind} fmeasure"), got.fmeasure, f, EXACT);
        }
    }
    checks.finish(250);
}

// --- stats ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct StatsFixture {
    samples: Vec<SampleCase>,
    mcnemar: Vec<McnemarCase>,
    erfc: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct SampleCase {
    name: String,
    values: Vec<f64>,
    mean: f64,
    std: Option<f64>,
    percentiles: Vec<(f64, f64)>,
}

#[derive(Deserialize)]
struct McnemarCase {
    b: u64,
    c: u64,
    exact: bool,
    statistic: f64,
    p_value: f64,
}

#[test]
fn stats_match_numpy_scipy_statsmodels() {
    let fx: StatsFixture = fixture("stats.json");
    let mut checks = Checks::default();
    for c in &fx.samples {
        let n = &c.name;
        match stats::mean(&c.values) {
            Some(m) => checks.close(n, "mean", m, c.mean, EXACT),
            None => checks.equal(n, "mean", None, Some(c.mean)),
        }
        match (stats::std(&c.values), c.std) {
            (Some(got), Some(want)) => checks.close(n, "std", got, want, EXACT),
            (got, want) => checks.equal(n, "std", got, want),
        }
        for &(q, want) in &c.percentiles {
            match stats::percentile(&c.values, q) {
                Some(got) => checks.close(n, &format!("percentile {q}"), got, want, EXACT),
                None => checks.equal(n, &format!("percentile {q}"), None, Some(want)),
            }
        }
    }
    for c in &fx.mcnemar {
        let n = format!("mcnemar b={} c={}", c.b, c.c);
        let got = stats::mcnemar(c.b, c.c);
        checks.equal(&n, "exact", got.exact, c.exact);
        checks.equal(&n, "b, c", (got.b, got.c), (c.b, c.c));
        checks.relative(&n, "statistic", got.statistic, c.statistic, EXACT);
        checks.relative(&n, "p_value", got.p_value, c.p_value, 1e-11);
    }
    for &(x, want) in &fx.erfc {
        checks.relative(&format!("erfc({x})"), "value", stats::erfc(x), want, 1e-12);
    }
    checks.finish(300);
}
