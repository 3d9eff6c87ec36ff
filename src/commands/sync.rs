//! `bwb sync`: mirror the project's outputs into a hub dataset repo, or restore them.

use anyhow::Result;

use crate::cli::SyncArgs;
use crate::error::Error;
use crate::hub::sync::{self, Direction, SyncOptions};
use crate::settings::Settings;

pub fn sync(settings: &Settings, args: &SyncArgs) -> Result<()> {
    let repo = match &args.repo {
        Some(r) => r.clone(),
        None => settings
            .env
            .get("BWB_HUB_REPO")
            .map(|(v, _)| v.trim().to_string())
            .ok_or_else(|| {
                Error::Config(
                    "no hub repo: name it with --repo ORG/NAME (or BWB_HUB_REPO in the environment or .env)"
                        .into(),
                )
            })?,
    };
    let retry = settings.hub_retry()?;
    let opts = SyncOptions {
        what: args.what,
        direction: args.direction,
        repo: repo.clone(),
        dry_run: args.dry_run,
        public: args.public,
        retry,
    };
    let report = sync::sync(&settings.paths, &settings.hub, &opts)?;
    let (verb, prep) = match (args.direction, args.dry_run) {
        (Direction::Up, false) => ("uploaded", "to"),
        (Direction::Up, true) => ("would upload", "to"),
        (Direction::Down, false) => ("downloaded", "from"),
        (Direction::Down, true) => ("would download", "from"),
    };
    for path in &report.transferred {
        println!("{verb} {path}");
    }
    let mut line = format!(
        "{} {} file(s) {prep} datasets/{repo} ({}); {} already up to date",
        verb,
        report.transferred.len(),
        args.what.name(),
        report.unchanged
    );
    if args.direction == Direction::Up && !args.dry_run {
        match &report.commit {
            Some(c) => line.push_str(&format!("; {} via LFS; commit {c}", report.lfs_uploaded)),
            None if report.transferred.is_empty() => line.push_str("; nothing to commit"),
            None => {}
        }
    }
    println!("{line}");
    Ok(())
}
