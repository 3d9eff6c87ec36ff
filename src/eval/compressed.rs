//! `bwb eval --compress METHOD:RATE`: each example's long input (and each 5-shot
//! demonstration's) goes through a context compressor before the prompt is built. The
//! predictions are written under the model name `<model>+METHOD-RATE`, so the report and the
//! dashboard show the compressed run beside the uncompressed one on the same task and
//! condition. Every compression is kept in `results/compression/<variant>/<task>.<part>.jsonl`
//! (a rerun compresses only what is missing), the same records `bwb experiments` keeps.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::compress::{Compressor, Method, Rate, Spec};
use crate::data::Example;
use crate::experiments::compression::{self, Record};
use crate::paths::{Paths, VARIANT_SEP};

pub struct EvalCompression {
    compressor: Arc<dyn Compressor>,
    /// `selective-0.5`, `scaledown-auto`: the result name's suffix and the records' folder.
    pub variant: String,
    /// Contexts compressed at once (API methods; the local ones run one at a time).
    concurrency: usize,
}

impl EvalCompression {
    pub fn new(spec: &Spec, compressor: Arc<dyn Compressor>, api_concurrency: usize) -> Self {
        let rate = match spec.rate {
            Rate::Auto => "auto".to_string(),
            Rate::Fraction(r) => format!("{r}"),
        };
        let local = matches!(spec.method, Method::Selective | Method::Lingua);
        Self {
            compressor,
            variant: format!("{}-{rate}", spec.method.name()),
            concurrency: if local { 1 } else { api_concurrency.max(1) },
        }
    }

    /// The name results of model `model_name` compressed this way go under.
    pub fn result_name(&self, model_name: &str) -> String {
        format!("{model_name}{VARIANT_SEP}{}", self.variant)
    }

    fn records(&self, paths: &Paths, task: &str, part: &str) -> PathBuf {
        paths
            .results()
            .join("compression")
            .join(&self.variant)
            .join(format!("{task}.{part}.jsonl"))
    }

    /// `examples` with their long inputs compressed (`part`: `test` or `shots`, which keep
    /// separate records because ids repeat across splits). A context that cannot be compressed
    /// stops the run: its example would otherwise be missing from the predictions.
    pub fn apply(
        &self,
        paths: &Paths,
        task: &str,
        part: &str,
        examples: &[Example],
    ) -> Result<Vec<Example>> {
        let file = self.records(paths, task, part);
        let c = self.compressor.as_ref();
        let records = compression::compress_all(c, examples, &file, self.concurrency)?;
        let failed: Vec<&Record> = examples
            .iter()
            .filter_map(|e| records.get(&e.id))
            .filter(|r| r.result.is_none())
            .collect();
        if let Some(first) = failed.first() {
            bail!(
                "{} of {} {part} contexts of `{task}` could not be compressed with {} (example {}: {}); run the same command again to retry them (the compressed ones are kept)",
                failed.len(),
                examples.len(),
                self.variant,
                first.id,
                first.error.as_deref().unwrap_or("no result")
            );
        }
        let done: Vec<_> = examples
            .iter()
            .filter_map(|e| records.get(&e.id)?.result.as_ref())
            .collect();
        if !done.is_empty() {
            let orig: u64 = done.iter().map(|c| c.original_tokens).sum();
            let kept: u64 = done.iter().map(|c| c.compressed_tokens).sum();
            println!(
                "{task}: {} {part} contexts compressed with {}: {orig} → {kept} tokens ({:.1}% kept)",
                done.len(),
                self.variant,
                100.0 * crate::compress::ratio(orig, kept)
            );
        }
        Ok(compression::apply(examples, &records))
    }
}
