//! Running a planned experiment: the same prompt → backend → prediction file → scorer path
//! as `bwb eval` (so the same response cache, retries, cost limit and resumption), into
//! results/experiments/<id>/predictions/<dataset config>.jsonl; then the per-example rows
//! and the summary in the context benchmark's shapes (`output.rs`).

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::backend::api::{ApiBackend, ApiOptions};
use crate::backend::local::LocalBackend;
use crate::backend::Backend;
use crate::config::{ModelConfig, ModelKind, TaskConfig};
use crate::data::Example;
use crate::eval::predictions::Prediction;
use crate::eval::{self, Condition, Job};
use crate::model::{adapter, load};
use crate::paths::{display, Paths};
use crate::prompt::task::TaskPrompt;
use crate::settings::{EngineSettings, Settings};

use super::compression;
use super::output::{self, Row};
use super::plan::{ModelRef, Planned};

/// How experiments run (resolved once by the command).
pub struct RunOptions<'a> {
    pub paths: &'a Paths,
    pub hub: &'a crate::settings::HubSettings,
    pub engine: &'a EngineSettings,
    pub api: &'a ApiOptions,
    /// Local: prompts per generate call.
    pub batch_size: usize,
    pub verbose: bool,
}

/// What one experiment produced.
#[derive(Debug, Clone)]
pub struct Done {
    pub id: String,
    pub summary: PathBuf,
    pub spent_usd: f64,
}

/// results/experiments/<id>/
pub fn experiment_dir(paths: &Paths, id: &str) -> PathBuf {
    paths.results().join("experiments").join(id)
}

/// The prepared examples of `config`'s raw split `split`, `num_examples` of them drawn with
/// `seed` (all when None), in the split's order.
pub fn sample(
    paths: &Paths,
    config: &TaskConfig,
    split: &str,
    num_examples: Option<usize>,
    seed: u64,
) -> crate::error::Result<Vec<Example>> {
    let all = crate::data::prepare::read_split(paths, &config.id, split)?;
    // Smoke runs take at most the config's smoke sample, like `bwb eval`.
    let cap = if paths.smoke {
        config.smoke.test_sample_size
    } else {
        usize::MAX
    };
    let want = num_examples.unwrap_or(usize::MAX).min(cap);
    let Some(n) = Some(want).filter(|&n| n < all.len()) else {
        return Ok(all);
    };
    let mut idx: Vec<usize> = (0..all.len()).collect();
    let mut rng = crate::data::sample::rng(seed, "experiment");
    crate::data::sample::shuffle(&mut idx, &mut rng);
    idx.truncate(n);
    idx.sort_unstable();
    Ok(idx.into_iter().map(|i| all[i].clone()).collect())
}

/// Download (offline from the fixtures in smoke runs) and prepare `config` unless its
/// prepared data is there already.
fn ensure_prepared(settings: &Settings, config: &TaskConfig) -> Result<()> {
    let paths = &settings.paths;
    if paths
        .prepared(&config.id)
        .join(crate::data::download::MANIFEST)
        .exists()
    {
        return Ok(());
    }
    let hub = crate::commands::hub_for(settings)?;
    crate::data::download::download(&hub, config, &paths.root, &paths.raw(&config.id))
        .with_context(|| format!("downloading dataset `{}`", config.id))?;
    crate::data::prepare::prepare_eval_only(config, paths)
        .with_context(|| format!("preparing dataset `{}`", config.id))?;
    Ok(())
}

/// The backend an experiment's model runs on.
fn backend(
    settings: &Settings,
    p: &Planned<'_>,
    opts: &RunOptions<'_>,
) -> Result<Box<dyn Backend>> {
    match &p.model {
        ModelRef::Api {
            provider,
            api_model,
            config_id,
        } => {
            let model = match config_id {
                Some(id) => settings.configs.model(id)?.clone(),
                None => ModelConfig {
                    id: p.model.name(),
                    kind: ModelKind::Api,
                    arch: None,
                    hf_repo: None,
                    revision: None,
                    gguf: None,
                    training: None,
                    chat_template_kwargs: Default::default(),
                    random_init: None,
                    shape: None,
                    provider: Some(*provider),
                    api_model: Some(api_model.clone()),
                    base_url: None,
                    greedy: false,
                },
            };
            let mut pricing = settings.configs.pricing.clone();
            match &p.price {
                Some(price) => {
                    pricing.api.insert(model.id.clone(), price.clone());
                }
                None => {
                    pricing.api.remove(&model.id);
                }
            }
            let mut api = opts.api.clone();
            if let Some(c) = p.concurrency {
                api.concurrency = c;
            }
            Ok(Box::new(ApiBackend::new(
                &model,
                &settings.env,
                &pricing,
                api,
            )?))
        }
        ModelRef::Local { spec, adapter } => {
            let lora = match adapter {
                Some(dir) => {
                    let d = std::path::Path::new(dir);
                    let plan = adapter::check_base(d, spec, &settings.configs)
                        .and_then(|()| adapter::load(d, &opts.engine.device.open()?))
                        .with_context(|| format!("experiment `{}`: adapter {dir}", p.id))?;
                    Some(plan)
                }
                None => None,
            };
            let m = load::load_named(spec, &settings.configs, &settings.hub, opts.engine, lora)?;
            Ok(Box::new(LocalBackend::new(
                m,
                opts.batch_size,
                p.model.name(),
            )))
        }
    }
}

/// Run one experiment end to end; returns where its summary is.
pub fn run_experiment(settings: &Settings, p: &Planned<'_>, opts: &RunOptions<'_>) -> Result<Done> {
    let dir = experiment_dir(&settings.paths, &p.id);
    for e in &p.entries {
        ensure_prepared(settings, e.config)?;
    }
    let backend = backend(settings, p, opts)?;
    let compressor = match &p.compression {
        Some(c) => Some(crate::compress::build(
            c,
            settings,
            opts.engine,
            opts.api,
            opts.batch_size,
        )?),
        None => None,
    };
    let name = p.model.name();
    let mut spent = 0.0;
    let mut per_entry: Vec<(String, Vec<Row>)> = Vec::new();
    for e in &p.entries {
        let mut task = e.config.clone();
        if let Some(m) = p.max_tokens {
            task.max_new_tokens = m;
        }
        let test = sample(&settings.paths, &task, &p.split, p.num_examples, p.seed)?;
        let (gen_test, records) = match &compressor {
            Some(c) => {
                let file = dir.join("compression").join(format!("{}.jsonl", task.id));
                let concurrency = p.concurrency.unwrap_or(opts.api.concurrency);
                let records = compression::compress_all(c.as_ref(), &test, &file, concurrency)
                    .with_context(|| format!("compressing `{}` with {}", task.id, c.name()))?;
                (compression::apply(&test, &records), records)
            }
            None => (test.clone(), HashMap::new()),
        };
        let prompt = TaskPrompt::load(&settings.paths.prompts(), &task)?;
        let path = dir.join("predictions").join(format!("{}.jsonl", task.id));
        let job = Job {
            backend: backend.as_ref(),
            model: &name,
            task: &task,
            prompt: &prompt,
            condition: Condition::ZeroShot,
            seed: p.seed,
            draw: 0,
            test: &gen_test,
            shots: Vec::new(),
            path: path.clone(),
            progress: settings.progress(),
        };
        let out = eval::run(&job).with_context(|| format!("dataset `{}`", task.id))?;
        spent += out.spent_usd;
        println!(
            "{}/{}: {} examples ({} already done, {} generated, {} errors) → {}",
            p.id,
            task.id,
            out.examples,
            out.skipped,
            out.written,
            out.errors,
            display(&settings.paths.root, &path)
        );
        let preds = latest(&path, &test)?;
        let rows = output::rows(&task, p, &test, &preds, &records, opts)?;
        per_entry.push((task.id.clone(), rows));
    }
    let summary = output::write(settings, p, &dir, &per_entry)?;
    Ok(Done {
        id: p.id.clone(),
        summary,
        spent_usd: spent,
    })
}

/// The prediction of each sampled example (the file may hold more: an earlier, larger
/// sample; a retried error's later line wins).
fn latest(path: &std::path::Path, test: &[Example]) -> Result<Vec<Option<Prediction>>> {
    let mut by_id: HashMap<String, Prediction> = HashMap::new();
    for p in crate::eval::predictions::read(path)? {
        by_id.insert(p.example_id.clone(), p);
    }
    Ok(test.iter().map(|e| by_id.remove(&e.id)).collect())
}
