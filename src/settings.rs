//! Settings resolved in exactly one place, with one precedence for every value:
//! command line > process environment > `.env` in the project root > config file > default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::GlobalArgs;
use crate::config::Configs;
use crate::error::{Error, Result};
use crate::paths::Paths;

/// Where a resolved value came from (shown with --verbose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Cli,
    Env,
    DotEnv,
    File,
    Default,
}

/// The environment as bwb sees it: process variables over `.env` entries.
#[derive(Debug, Clone, Default)]
pub struct Env {
    process: BTreeMap<String, String>,
    dotenv: BTreeMap<String, String>,
}

impl Env {
    /// Process environment plus `<root>/.env` when present. A malformed .env is an error.
    pub fn load(root: &Path) -> Result<Env> {
        let process = std::env::vars().collect();
        let path = root.join(".env");
        let mut dotenv = BTreeMap::new();
        if path.exists() {
            let iter = dotenvy::from_path_iter(&path).map_err(|e| Error::BadFile {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for item in iter {
                let (k, v) = item.map_err(|e| Error::BadFile {
                    path: path.clone(),
                    message: format!("{e}; lines must look like NAME=value"),
                })?;
                dotenv.insert(k, v);
            }
        }
        Ok(Env { process, dotenv })
    }

    /// Only the given variables (tests).
    pub fn from_pairs(process: &[(&str, &str)], dotenv: &[(&str, &str)]) -> Env {
        let m = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Env {
            process: m(process),
            dotenv: m(dotenv),
        }
    }

    /// A non-empty value and where it came from.
    pub fn get(&self, key: &str) -> Option<(&str, Origin)> {
        if let Some(v) = self.process.get(key).filter(|v| !v.is_empty()) {
            return Some((v, Origin::Env));
        }
        self.dotenv
            .get(key)
            .filter(|v| !v.is_empty())
            .map(|v| (v.as_str(), Origin::DotEnv))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<(T, Origin)>>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some((v, origin)) => v
                .trim()
                .parse::<T>()
                .map(|t| Some((t, origin)))
                .map_err(|e| {
                    Error::Config(format!("environment variable {key}={v:?} is invalid: {e}"))
                }),
        }
    }

    fn flag(&self, key: &str) -> Result<Option<(bool, Origin)>> {
        match self.get(key) {
            None => Ok(None),
            Some((v, origin)) => match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(Some((true, origin))),
                "0" | "false" | "no" | "off" => Ok(Some((false, origin))),
                _ => Err(Error::Config(format!(
                    "environment variable {key}={v:?} is invalid: use 1/0, true/false, yes/no or on/off"
                ))),
            },
        }
    }
}

/// `cli` > `env` > `file` > `default`.
pub fn layered<T>(
    cli: Option<T>,
    env: Option<(T, Origin)>,
    file: Option<T>,
    default: T,
) -> (T, Origin) {
    if let Some(v) = cli {
        return (v, Origin::Cli);
    }
    if let Some(v) = env {
        return v;
    }
    if let Some(v) = file {
        return (v, Origin::File);
    }
    (default, Origin::Default)
}

/// Hugging Face hub access, as the `huggingface_hub` Python library reads it.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// Hub cache directory (`$HF_HOME/hub`, default `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    /// HF_HUB_OFFLINE: only the local cache is used.
    pub offline: bool,
    /// HF_ENDPOINT: another hub (a mirror, or a local test server).
    pub endpoint: Option<String>,
}

/// Everything a command needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    pub configs: Configs,
    pub env: Env,
    pub verbose: bool,
    /// Seed for data preparation and training.
    pub seed: u64,
    pub n_eval_seeds: usize,
    pub hub: HubSettings,
}

impl Settings {
    /// Resolve the global flags against the environment, .env and configs.
    pub fn resolve(global: &GlobalArgs) -> Result<Settings> {
        let root = match &global.root {
            Some(r) => r.clone(),
            None => match std::env::var_os("BWB_ROOT").filter(|v| !v.is_empty()) {
                Some(r) => PathBuf::from(r),
                None => std::env::current_dir().map_err(|e| {
                    Error::Config(format!("cannot read the current directory: {e}"))
                })?,
            },
        };
        let env = Env::load(&root)?;
        Settings::resolve_with(global, root, env)
    }

    /// As [`Settings::resolve`] with an explicit root and environment.
    pub fn resolve_with(global: &GlobalArgs, root: PathBuf, env: Env) -> Result<Settings> {
        let configs_dir = root.join("configs");
        if !configs_dir.is_dir() {
            return Err(Error::Config(format!(
                "{} has no configs/ directory; run bwb from the project root or pass --root DIR",
                root.display()
            )));
        }
        let mut configs = Configs::load(&configs_dir)?;
        check_prompts(&root, &configs)?;
        let (smoke, _) = layered(
            global.smoke_test.then_some(true),
            env.flag("BWB_SMOKE_TEST")?,
            None,
            false,
        );
        if smoke {
            for t in configs.tasks.values_mut() {
                if let Some(n) = t.smoke.max_new_tokens {
                    t.max_new_tokens = n;
                }
            }
        }
        let (seed, _) = layered(
            None,
            env.parse::<u64>("BWB_SEED")?,
            Some(configs.run_defaults.seed),
            42,
        );
        let (n_eval_seeds, _) = layered(
            None,
            env.parse::<usize>("BWB_N_EVAL_SEEDS")?,
            Some(configs.run_defaults.n_eval_seeds),
            3,
        );
        let hub = resolve_hub(&env)?;
        Ok(Settings {
            paths: Paths::new(root, smoke),
            configs,
            env,
            verbose: global.verbose,
            seed,
            n_eval_seeds,
            hub,
        })
    }

    /// A command's own `--seed` over the resolved one.
    pub fn seed_or(&self, cli: Option<u64>) -> u64 {
        cli.unwrap_or(self.seed)
    }
}

/// Every task's prompt files exist (they are read at evaluation time; fail early).
fn check_prompts(root: &Path, configs: &Configs) -> Result<()> {
    for task in configs.tasks.values() {
        for (field, name) in [
            ("system", &task.prompts.system),
            ("user", &task.prompts.user),
        ] {
            let path = root.join("prompts").join(&task.id).join(name);
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "configs/tasks/{}.yaml: field `prompts.{field}` names {}, which does not exist",
                    task.id,
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

fn resolve_hub(env: &Env) -> Result<HubSettings> {
    let hf_home = match env.get("HF_HOME") {
        Some((v, _)) => PathBuf::from(v),
        None => {
            let (home, _) = layered(
                None,
                env.get("XDG_CACHE_HOME")
                    .map(|(v, o)| (PathBuf::from(v), o)),
                None,
                env.get("HOME")
                    .map(|(h, _)| PathBuf::from(h).join(".cache"))
                    .unwrap_or_else(|| PathBuf::from(".cache")),
            );
            home.join("huggingface")
        }
    };
    let (cache_dir, _) = layered(
        None,
        env.get("HF_HUB_CACHE").map(|(v, o)| (PathBuf::from(v), o)),
        None,
        hf_home.join("hub"),
    );
    let token = env.get("HF_TOKEN").map(|(v, _)| v.to_string()).or_else(|| {
        std::fs::read_to_string(hf_home.join("token"))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    });
    let offline = env.flag("HF_HUB_OFFLINE")?.map(|(v, _)| v).unwrap_or(false);
    let endpoint = env
        .get("HF_ENDPOINT")
        .map(|(v, _)| v.trim_end_matches('/').to_string());
    Ok(HubSettings {
        cache_dir,
        token,
        offline,
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layered_precedence() {
        let env = Some((2, Origin::Env));
        assert_eq!(layered(Some(1), env, Some(3), 4), (1, Origin::Cli));
        assert_eq!(layered(None, env, Some(3), 4), (2, Origin::Env));
        assert_eq!(layered(None, None, Some(3), 4), (3, Origin::File));
        assert_eq!(layered(None::<i32>, None, None, 4), (4, Origin::Default));
    }

    #[test]
    fn process_env_beats_dotenv_and_empty_is_unset() {
        let env = Env::from_pairs(
            &[("A", "1"), ("B", "")],
            &[("A", "2"), ("B", "3"), ("C", "4")],
        );
        assert_eq!(env.get("A"), Some(("1", Origin::Env)));
        assert_eq!(env.get("B"), Some(("3", Origin::DotEnv)));
        assert_eq!(env.get("C"), Some(("4", Origin::DotEnv)));
        assert_eq!(env.get("D"), None);
    }

    #[test]
    fn hub_settings_follow_huggingface_hub() {
        let env = Env::from_pairs(&[("HOME", "/home/u")], &[]);
        let hub = resolve_hub(&env).unwrap();
        assert_eq!(
            hub.cache_dir,
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
        assert!(!hub.offline && hub.endpoint.is_none());

        let env = Env::from_pairs(
            &[
                ("HF_HOME", "/hf"),
                ("HF_HUB_OFFLINE", "1"),
                ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ],
            &[("HF_TOKEN", "hf_secret")],
        );
        let hub = resolve_hub(&env).unwrap();
        assert_eq!(hub.cache_dir, PathBuf::from("/hf/hub"));
        assert!(hub.offline);
        assert_eq!(hub.token.as_deref(), Some("hf_secret"));
        assert_eq!(hub.endpoint.as_deref(), Some("http://127.0.0.1:9"));

        let env = Env::from_pairs(&[("HF_HUB_OFFLINE", "maybe")], &[]);
        let err = resolve_hub(&env).unwrap_err().to_string();
        assert!(
            err.contains("HF_HUB_OFFLINE") && err.contains("maybe"),
            "{err}"
        );
    }
}
