//! `bwb export --model M --adapter DIR --merge OUT`: the base with the adapter folded in,
//! as an HF model directory.

use anyhow::{Context, Result};

use crate::cli::ExportArgs;
use crate::model::load;
use crate::paths::display;
use crate::settings::Settings;

pub fn export(settings: &Settings, args: &ExportArgs) -> Result<()> {
    let (source, _) = load::resolve(&args.model, &settings.configs, &settings.hub)?;
    let r = crate::train::merge::export_merged(&source, &args.adapter, &args.merge)
        .with_context(|| format!("bwb export --model {}", args.model))?;
    println!(
        "merged {} adapted weights of {} into {} ({})",
        r.merged,
        args.adapter.display(),
        display(&settings.paths.root, &r.out),
        r.files.join(", ")
    );
    Ok(())
}
