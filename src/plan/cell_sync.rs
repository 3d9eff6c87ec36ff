//! A sweep cell's folder mirrored in a hub dataset repo (`--results hf:ORG/REPO`), under
//! `cells/<cell_id>/`: pulled before the cell starts (so a preempted spot job restarted on a
//! fresh machine resumes from the checkpoints and predictions it pushed), pushed every
//! [`PUSH_EVERY_ENV`] seconds while it runs, after a failure, and last after the completion
//! marker. One writer per cell folder, so a pull keeps every file already present locally.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::backend::api::RetryPolicy;
use crate::error::{Error, Result};
use crate::hub::sync::{pull_dir, push_dir, DirSync, SyncReport};
use crate::settings::HubSettings;

use super::HUB_CELLS;

/// Seconds between pushes while a cell runs (default [`PUSH_EVERY_DEFAULT`]; 0 turns the
/// periodic push off).
pub const PUSH_EVERY_ENV: &str = "BWB_CELL_PUSH_EVERY";
pub const PUSH_EVERY_DEFAULT: u64 = 600;

/// Not mirrored: `data/` (the cell prepares its datasets again from the hub cache).
fn skip(rel: &str) -> bool {
    rel.starts_with("data/")
}

#[derive(Clone)]
pub struct CellSync {
    hub: HubSettings,
    repo: String,
    prefix: String,
    dir: PathBuf,
    retry: RetryPolicy,
}

impl CellSync {
    /// Cell `cell_id`'s folder `dir`, mirrored in dataset repo `repo` (ORG/NAME).
    pub fn new(
        hub: &HubSettings,
        repo: &str,
        cell_id: &str,
        dir: &Path,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            hub: hub.clone(),
            repo: repo.to_string(),
            prefix: format!("{HUB_CELLS}{cell_id}/"),
            dir: dir.to_path_buf(),
            retry,
        }
    }

    fn spec(&self) -> DirSync<'_> {
        DirSync {
            repo: &self.repo,
            local: &self.dir,
            prefix: &self.prefix,
            skip: &skip,
            retry: self.retry.clone(),
        }
    }

    fn label(&self) -> String {
        format!("hf:{}/{}", self.repo, self.prefix)
    }

    /// Fetch what the repo holds for this cell and this machine lacks.
    pub fn pull(&self) -> Result<SyncReport> {
        let r = pull_dir(&self.hub, &self.spec(), true).map_err(|e| self.context("pulling", e))?;
        if !r.transferred.is_empty() {
            println!(
                "sync: {} file(s) of this cell pulled from {}",
                r.transferred.len(),
                self.label()
            );
        }
        Ok(r)
    }

    /// Push the cell's folder (one commit, none when nothing changed).
    pub fn push(&self, why: &str) -> Result<SyncReport> {
        let title = format!("bwb cell {}: {{n}} file(s) ({why})", self.cell_id());
        let r =
            push_dir(&self.hub, &self.spec(), &title).map_err(|e| self.context("pushing", e))?;
        if !r.transferred.is_empty() {
            println!(
                "sync: {} file(s) of this cell pushed to {} ({why})",
                r.transferred.len(),
                self.label()
            );
        }
        Ok(r)
    }

    fn cell_id(&self) -> &str {
        self.prefix
            .trim_start_matches(HUB_CELLS)
            .trim_end_matches('/')
    }

    fn context(&self, what: &str, e: Error) -> Error {
        Error::Download(format!(
            "{what} cell {} at {}: {e}",
            self.cell_id(),
            self.label()
        ))
    }

    /// Push every `every` in the background until the returned guard is dropped. A failed
    /// periodic push is a warning: the next one (or the final push) sends it again.
    pub fn push_every(&self, every: Option<Duration>) -> Pusher {
        let Some(every) = every else {
            return Pusher { stop: None };
        };
        let (stop, rx) = mpsc::channel::<()>();
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("bwb-cell-push".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    if let Err(e) = me.push("periodic") {
                        tracing::warn!("{e}");
                    }
                }
            });
        match thread {
            Ok(t) => Pusher {
                stop: Some((stop, t)),
            },
            Err(e) => {
                tracing::warn!(
                    "cannot start the periodic push ({e}); the cell pushes when it ends"
                );
                Pusher { stop: None }
            }
        }
    }
}

/// [`PUSH_EVERY_ENV`] as a period; `None` when set to 0.
pub fn push_period() -> Result<Option<Duration>> {
    let secs = match std::env::var(PUSH_EVERY_ENV) {
        Ok(v) => v.trim().parse::<u64>().map_err(|_| {
            Error::Config(format!(
                "{PUSH_EVERY_ENV}={v}: give whole seconds between pushes (0 turns them off)"
            ))
        })?,
        Err(_) => PUSH_EVERY_DEFAULT,
    };
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// Stops the periodic push (and waits for one in progress) when dropped.
pub struct Pusher {
    stop: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Drop for Pusher {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.stop.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_not_mirrored_and_the_prefix_names_the_cell() {
        assert!(skip("data/smoke/prepared/fpb/test.jsonl"));
        assert!(!skip("results/smoke/predictions/m/fpb/5-shot/seed-1.jsonl"));
        assert!(!skip(
            "checkpoints/m/fpb/lora/step-000010/adapter_model.safetensors"
        ));
        let hub = HubSettings {
            cache_dir: PathBuf::from("/tmp/x"),
            token: None,
            offline: false,
            endpoint: None,
        };
        let s = CellSync::new(
            &hub,
            "org/r",
            "abc123",
            Path::new("/w"),
            RetryPolicy::default(),
        );
        assert_eq!(s.cell_id(), "abc123");
        assert_eq!(s.label(), "hf:org/r/cells/abc123/");
    }
}
