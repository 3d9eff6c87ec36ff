//! BERTScore agrees with the `bert_score` package on tests/fixtures/metrics/bertscore.json
//! (written by scripts/make_bertscore_fixtures.py): the tiny random BERT and DistilBERT in
//! tests/fixtures/models/, and the real all-MiniLM-L6-v2 from ../shared (skipped, with a
//! message, when ../shared is absent; `BWB_SHARED=/path/to/shared` points elsewhere).

use std::path::{Path, PathBuf};

use bwb::metrics::bertscore::{BertScoreOptions, BertScorer};
use bwb::metrics::Prf;
use candle_core::Device;
use serde::Deserialize;

use crate::common::REPO;

/// bert_score computes in f32 (and sums in another order).
const TOL: f64 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    versions: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    model: String,
    layer: usize,
    idf: bool,
    baseline: Option<String>,
    candidates: Vec<String>,
    references: Vec<Vec<String>>,
    /// `[P, R, F]` per candidate; `None` = NaN in bert_score (we return 0 there).
    prf: Vec<[Option<f64>; 3]>,
}

fn fixture() -> Fixture {
    let path = Path::new(REPO).join("tests/fixtures/metrics/bertscore.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let f: Fixture = serde_json::from_str(&text).unwrap();
    assert!(f.versions["bert_score"].is_string());
    f
}

fn shared_dir() -> PathBuf {
    std::env::var_os("BWB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(REPO).join("../shared"))
}

fn model_dir(model: &str) -> Option<PathBuf> {
    let dir = match model {
        "all-minilm-l6-v2" => shared_dir().join("models/all-minilm-l6-v2"),
        other => Path::new(REPO).join("tests/fixtures/models").join(other),
    };
    dir.is_dir().then_some(dir)
}

fn scorer(case: &Case, dir: &Path, batch_size: usize) -> BertScorer {
    let opts = BertScoreOptions {
        layer: Some(case.layer),
        idf: case.idf,
        rescale_with_baseline: case.baseline.is_some(),
        baseline_path: case.baseline.as_ref().map(|b| dir.join(b)),
        batch_size,
    };
    BertScorer::from_dir(dir, &opts, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", case.name))
}

/// Every case of `models`, all mismatches reported at once. Returns how many values matched.
fn check_models(models: &[&str], batch_size: usize) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for case in fixture()
        .cases
        .iter()
        .filter(|c| models.contains(&c.model.as_str()))
    {
        let Some(dir) = model_dir(&case.model) else {
            eprintln!(
                "skipped {}: model directory absent (../shared not mounted)",
                case.name
            );
            continue;
        };
        let got = scorer(case, &dir, batch_size)
            .score(&case.candidates, &case.references)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(got.len(), case.prf.len(), "{}", case.name);
        for (i, (g, want)) in got.iter().zip(&case.prf).enumerate() {
            let g = [g.precision, g.recall, g.f1];
            for (k, what) in ["P", "R", "F"].iter().enumerate() {
                count += 1;
                let want = want[k].unwrap_or(0.0);
                if (g[k] - want).abs() > TOL {
                    failures.push(format!(
                        "{} #{i} {what}: got {}, want {want}",
                        case.name, g[k]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

#[test]
fn bertscore_tiny_bert_matches_bert_score() {
    let n = check_models(&["tiny-bert"], 64);
    assert!(n > 100, "only {n} values checked");
}

#[test]
fn bertscore_tiny_distilbert_matches_bert_score() {
    let n = check_models(&["tiny-distilbert"], 64);
    assert!(n > 50, "only {n} values checked");
}

/// Padding masks: a batch of one sentence at a time gives the same scores as one padded
/// batch (guards the attention mask and the per-row cut of the hidden states).
#[test]
fn bertscore_padding_does_not_change_scores() {
    check_models(&["tiny-bert", "tiny-distilbert"], 1);
    check_models(&["tiny-bert"], 3);
}

#[test]
fn bertscore_minilm_matches_bert_score() {
    if model_dir("all-minilm-l6-v2").is_none() {
        eprintln!(
            "skipped: {} is absent (../shared not mounted)",
            shared_dir().join("models/all-minilm-l6-v2").display()
        );
        return;
    }
    let n = check_models(&["all-minilm-l6-v2"], 64);
    assert!(n > 50, "only {n} values checked");
}

fn tiny() -> PathBuf {
    Path::new(REPO).join("tests/fixtures/models/tiny-bert")
}

fn err_of(opts: BertScoreOptions) -> String {
    BertScorer::from_dir(&tiny(), &opts, &Device::Cpu)
        .unwrap_err()
        .to_string()
}

#[test]
fn bertscore_option_errors_name_the_fix() {
    let err = err_of(BertScoreOptions::default());
    assert!(
        err.contains("no default layer") && err.contains("layer"),
        "{err}"
    );
    let err = err_of(BertScoreOptions {
        layer: Some(4),
        ..Default::default()
    });
    assert!(
        err.contains("layer 4 is out of range") && err.contains("0..=3"),
        "{err}"
    );
    let err = err_of(BertScoreOptions {
        layer: Some(2),
        rescale_with_baseline: true,
        ..Default::default()
    });
    assert!(
        err.contains("no baseline is known") && err.contains("baseline_path"),
        "{err}"
    );
    let err = err_of(BertScoreOptions {
        layer: Some(2),
        rescale_with_baseline: true,
        baseline_path: Some(tiny().join("missing.tsv")),
        ..Default::default()
    });
    assert!(err.contains("missing.tsv"), "{err}");
}

#[test]
fn bertscore_input_errors_and_empty_sides() {
    let opts = BertScoreOptions {
        layer: Some(2),
        ..Default::default()
    };
    let s = BertScorer::from_dir(&tiny(), &opts, &Device::Cpu).unwrap();
    let err = s.score(&["a".into()], &[]).unwrap_err().to_string();
    assert!(err.contains("1 candidates but 0 reference lists"), "{err}");
    let err = s.score(&["a".into()], &[vec![]]).unwrap_err().to_string();
    assert!(err.contains("candidate 0 has no reference"), "{err}");
    let zero = Prf {
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
    };
    let got = s
        .score(
            &["".into(), "the cat".into()],
            &[vec!["the cat".into()], vec![" \n".into()]],
        )
        .unwrap();
    assert_eq!(got, vec![zero, zero]);
    // idf from a single reference: every reference token has df = M, so recall's weights sum
    // to 0 (bert_score: NaN); we give 0, never NaN.
    let idf = BertScorer::from_dir(
        &tiny(),
        &BertScoreOptions { idf: true, ..opts },
        &Device::Cpu,
    )
    .unwrap();
    let got = idf
        .score(&["the dog".into()], &[vec!["the cat".into()]])
        .unwrap();
    assert_eq!(got[0].recall, 0.0);
    assert!(got[0].precision > 0.0 && !got[0].precision.is_nan());
}

/// A bert_score model name resolves to its hub repo (here from an offline hub cache holding
/// the tiny DistilBERT under `distilbert/distilbert-base-uncased`), takes bert_score's default
/// layer (5, out of range for the tiny model) and the embedded baseline of that model.
#[test]
fn bertscore_known_name_resolves_through_the_hub_cache() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache
        .path()
        .join("models--distilbert--distilbert-base-uncased");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    let tiny_distil = Path::new(REPO).join("tests/fixtures/models/tiny-distilbert");
    crate::common::copy_dir(&tiny_distil, &repo.join("snapshots").join(commit));
    let hub = bwb::settings::HubSettings {
        cache_dir: cache.path().to_path_buf(),
        token: None,
        offline: true,
        endpoint: None,
    };
    let load = |opts: BertScoreOptions| {
        BertScorer::load("distilbert-base-uncased", &hub, &opts, &Device::Cpu)
    };
    let err = load(BertScoreOptions::default()).unwrap_err().to_string();
    assert!(err.contains("layer 5 is out of range"), "{err}");

    let (cands, refs) = (
        vec!["the cat sat".to_string()],
        vec![vec!["a cat sat".to_string()]],
    );
    let opts = BertScoreOptions {
        layer: Some(2),
        ..Default::default()
    };
    let raw = load(opts.clone()).unwrap().score(&cands, &refs).unwrap()[0];
    let local = BertScorer::from_dir(&tiny_distil, &opts, &Device::Cpu).unwrap();
    assert_eq!(local.score(&cands, &refs).unwrap()[0], raw);
    let rescaled = load(BertScoreOptions {
        rescale_with_baseline: true,
        ..opts
    })
    .unwrap()
    .score(&cands, &refs)
    .unwrap()[0];
    // bert_score's rescale_baseline/en/distilbert-base-uncased.tsv, row 2
    let b = [0.42905498, 0.4290923, 0.42735597];
    let want = [raw.precision, raw.recall, raw.f1]
        .iter()
        .zip(b)
        .map(|(s, b)| (s - b) / (1.0 - b))
        .collect::<Vec<_>>();
    let got = [rescaled.precision, rescaled.recall, rescaled.f1];
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
    }
}

/// The tiny model re-saved under other checkpoint conventions: its tensors renamed by
/// `rename`, plus an unused head tensor, in a copy of its directory.
fn resaved(model: &str, rename: impl Fn(&str) -> String, extra: &str) -> tempfile::TempDir {
    let src = Path::new(REPO).join("tests/fixtures/models").join(model);
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&src, dir.path());
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut renamed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .iter()
        .map(|(k, v)| (rename(k), v.clone()))
        .collect();
    renamed.insert(
        extra.to_string(),
        candle_core::Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&renamed, dir.path().join("model.safetensors")).unwrap();
    dir
}

/// Checkpoints with the task-model prefix (`bert.`, `distilbert.`: what `*ForMaskedLM`
/// saves, e.g. the hub's distilbert-base-uncased), original BERT's LayerNorm `gamma`/`beta`,
/// and unused head tensors load to the same encoder.
#[test]
fn bertscore_checkpoint_prefixes_and_gamma_beta_load_the_same_model() {
    let (cands, refs) = (
        vec!["the cat sat on the mat".to_string()],
        vec![vec!["a dog ran in the park".to_string()]],
    );
    let opts = BertScoreOptions {
        layer: Some(2),
        ..Default::default()
    };
    let score = |dir: &Path| {
        BertScorer::from_dir(dir, &opts, &Device::Cpu)
            .unwrap()
            .score(&cands, &refs)
            .unwrap()
    };
    let bert = resaved(
        "tiny-bert",
        |k| {
            format!(
                "bert.{}",
                k.replace("LayerNorm.weight", "LayerNorm.gamma")
                    .replace("LayerNorm.bias", "LayerNorm.beta")
            )
        },
        "cls.predictions.bias",
    );
    assert_eq!(score(bert.path()), score(&tiny()));
    let distil = resaved(
        "tiny-distilbert",
        |k| format!("distilbert.{k}"),
        "vocab_projector.bias",
    );
    let plain = Path::new(REPO).join("tests/fixtures/models/tiny-distilbert");
    assert_eq!(score(distil.path()), score(&plain));
}
