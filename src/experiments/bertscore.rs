//! BERTScore for an experiment's rows, when its metrics ask for it: one encoder load per
//! dataset config, every answered example scored in batches against its gold answers or
//! reference summaries (max over references, as `bert_score` does).

use anyhow::{Context, Result};

use crate::config::TaskConfig;
use crate::data::Answer;
use crate::metrics::bertscore::{BertScoreOptions, BertScorer};
use crate::score::MetricId;

use super::output::Row;
use super::plan::Planned;
use super::run::RunOptions;

/// bert_score's default English model (layer 5).
const DEFAULT_MODEL: &str = "distilbert-base-uncased";

const IDS: [MetricId; 3] = [
    MetricId::BertscorePrecision,
    MetricId::BertscoreRecall,
    MetricId::BertscoreF1,
];

/// Add the requested BERTScore metrics to every answered row.
pub fn add(
    task: &TaskConfig,
    plan: &Planned<'_>,
    rows: &mut [Row],
    opts: &RunOptions<'_>,
) -> Result<()> {
    if !plan.metrics.iter().any(|m| IDS.contains(m)) {
        return Ok(());
    }
    let mut cands = Vec::new();
    let mut refs = Vec::new();
    let mut at = Vec::new();
    let test = crate::data::prepare::read_split(opts.paths, &task.id, &plan.split)?;
    let gold: std::collections::HashMap<&str, &Answer> =
        test.iter().map(|e| (e.id.as_str(), &e.answer)).collect();
    for (i, r) in rows.iter().enumerate() {
        if r.error.is_some() {
            continue;
        }
        let refs_of = match gold.get(r.id.as_str()) {
            Some(Answer::Text { answers }) => answers.clone(),
            Some(Answer::Summary { references }) => references.clone(),
            _ => continue,
        };
        let cand = match &r.parsed {
            Some(crate::score::Parsed::Text { text } | crate::score::Parsed::Summary { text }) => {
                text.clone()
            }
            _ => r.pred.clone(),
        };
        cands.push(cand);
        refs.push(refs_of);
        at.push(i);
    }
    if cands.is_empty() {
        return Ok(());
    }
    let spec = plan.bertscore.clone().unwrap_or_default();
    let model = spec.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let options = BertScoreOptions {
        layer: spec.num_layers,
        idf: spec.idf,
        rescale_with_baseline: spec.rescale_with_baseline,
        baseline_path: spec.baseline_path.clone(),
        ..BertScoreOptions::default()
    };
    let device = opts.engine.device.open()?;
    let scorer = BertScorer::load(model, opts.hub, &options, &device).with_context(|| {
        format!(
            "loading the BERTScore encoder `{model}` for experiment `{}` (set `defaults.bertscore.model` to a local directory offline)",
            plan.id
        )
    })?;
    let scores = scorer.score(&cands, &refs)?;
    for (i, s) in at.into_iter().zip(scores) {
        for (m, v) in [
            (MetricId::BertscorePrecision, s.precision),
            (MetricId::BertscoreRecall, s.recall),
            (MetricId::BertscoreF1, s.f1),
        ] {
            if plan.metrics.contains(&m) {
                rows[i].metrics.insert(m.as_str().to_string(), v);
            }
        }
    }
    Ok(())
}
