//! Settings resolved in exactly one place, with one precedence for every value:
//! command line > process environment > `.env` in the project root > config file > default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::DType;

use crate::backend::api::{ApiOptions, RetryPolicy};
use crate::cli::{ApiArgs, DeviceArgs, EngineArgs, GlobalArgs};
use crate::config::Configs;
use crate::error::{Error, Result};
use crate::kernels::KernelSwitches;
use crate::model::device::{self, DeviceSpec};
use crate::model::QuantFormat;
use crate::paths::Paths;
use crate::progress::ProgressMode;
use crate::track::{Auth, TrackingSettings};

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
        // Variables that are not UTF-8 cannot be bwb's; skip them rather than panic.
        let process = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
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

    pub fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<Option<(T, Origin)>>
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

    pub fn flag(&self, key: &str) -> Result<Option<(bool, Origin)>> {
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

/// How a frozen base is stored (`--quant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseStorage {
    /// As the checkpoint stores it: HF weights dense in the compute dtype, a GGUF in its own
    /// blocks.
    AsStored,
    /// `--quant none`: dense in the compute dtype, a GGUF's own blocks dequantised.
    Dense,
    /// HF weights quantised to this format at load time; a GGUF keeps its own blocks.
    Quantized(QuantFormat),
}

impl BaseStorage {
    /// The `--quant` value this stands for (`default` when none was given).
    pub fn name(self) -> &'static str {
        match self {
            Self::AsStored => "default",
            Self::Dense => "none",
            Self::Quantized(f) => f.name(),
        }
    }
}

/// Which command runs a local model: the one place that states each command's `--quant`
/// default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineUse {
    /// `bwb train` (and `run`'s train stage): QLoRA trains on a 4-bit base.
    Train,
    /// `bwb eval` (and `run`'s eval stage): the same 4-bit base the adapters were trained on.
    Eval,
    /// `bwb bench train`: QLoRA, as `bwb train`.
    BenchTrain,
    /// `bwb generate`: the weights as stored.
    Generate,
    /// `bwb bench infer`: the weights as stored.
    BenchInfer,
    /// `bwb serve`: the weights as stored, as `bwb generate`.
    Serve,
}

impl EngineUse {
    /// `--quant` when not given.
    pub fn default_storage(self) -> BaseStorage {
        match self {
            Self::Train | Self::Eval | Self::BenchTrain => BaseStorage::Quantized(QuantFormat::Q4K),
            Self::Generate | Self::BenchInfer | Self::Serve => BaseStorage::AsStored,
        }
    }
}

/// How local models run, resolved from the engine flags and the environment.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub device: DeviceSpec,
    pub dtype: DType,
    pub storage: BaseStorage,
    /// Where quantised bases are cached (None: no cache): `BWB_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/bwb/quantized`, else `~/.cache/bwb/quantized`; `off` disables it.
    pub quant_cache: Option<PathBuf>,
}

/// Longest `--request-timeout` / `--exec-timeout` (and their variables): 24 hours.
pub const MAX_TIMEOUT_S: f64 = 86_400.0;

/// `value` seconds from `what` (a flag or variable) as a duration: positive, finite and at
/// most [`MAX_TIMEOUT_S`], or a one-line error naming `what`.
pub fn timeout_secs(what: &str, value: f64) -> Result<Duration> {
    let shown = if value.is_finite() && value.abs() >= 1e9 {
        format!("{value:e}") // 1e300, not 300 digits
    } else {
        value.to_string()
    };
    if !(value.is_finite() && value > 0.0 && value <= MAX_TIMEOUT_S) {
        return Err(Error::Config(format!(
            "{what} {shown}: must be a positive number of seconds, at most {MAX_TIMEOUT_S} (24 hours)"
        )));
    }
    Duration::try_from_secs_f64(value).map_err(|e| Error::Config(format!("{what} {shown}: {e}")))
}

/// How a resolved value is named in an error: the flag, or the variable and where it was set.
fn source_name(origin: Origin, flag: &str, var: &str) -> String {
    match origin {
        Origin::Env => format!("{var} (environment)"),
        Origin::DotEnv => format!("{var} (.env)"),
        Origin::Cli | Origin::File | Origin::Default => flag.to_string(),
    }
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
    /// Fused kernels on or off (`BWB_KERNELS`, `BWB_ATTENTION_TC`).
    pub kernels: KernelSwitches,
    /// Interval of the progress lines written where stderr is not a terminal.
    pub log_every: Duration,
    /// Experiment tracking (MLflow).
    pub tracking: TrackingSettings,
    /// The global flags as given (for settings another file layers in later).
    pub global: GlobalArgs,
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
            for t in configs
                .tasks
                .values_mut()
                .chain(configs.datasets.values_mut())
            {
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
        let kernels = resolve_kernels(&env)?;
        let log_every = resolve_log_every(global.log_every, &env)?;
        let mut tracking = resolve_tracking(global, &env, &configs.run_defaults.tracking)?;
        tracking.smoke = smoke;
        Ok(Settings {
            paths: Paths::new(root, smoke),
            configs,
            env,
            verbose: global.verbose,
            seed,
            n_eval_seeds,
            hub,
            kernels,
            log_every,
            tracking,
            global: global.clone(),
        })
    }

    /// Tracking with another file layer in place of run_defaults.yaml's (an experiments
    /// file's `defaults.tracking`, its unset fields falling back to run_defaults.yaml): the
    /// command line and environment still win.
    pub fn tracking_with(&self, file: &crate::config::TrackingFile) -> Result<TrackingSettings> {
        let base = &self.configs.run_defaults.tracking;
        let merged = crate::config::TrackingFile {
            mlflow: file.mlflow.or(base.mlflow),
            mlflow_uri: file.mlflow_uri.clone().or_else(|| base.mlflow_uri.clone()),
            mlflow_experiment: file
                .mlflow_experiment
                .clone()
                .or_else(|| base.mlflow_experiment.clone()),
        };
        let mut t = resolve_tracking(&self.global, &self.env, &merged)?;
        t.smoke = self.paths.smoke;
        Ok(t)
    }

    /// How train and eval show progress: a bar on a terminal, else lines every `log_every`.
    pub fn progress(&self) -> ProgressMode {
        ProgressMode::for_stderr(self.log_every)
    }

    /// A command's own `--seed` over the resolved one.
    pub fn seed_or(&self, cli: Option<u64>) -> u64 {
        cli.unwrap_or(self.seed)
    }

    /// The first `n` of run_defaults.yaml `eval_seeds` (`--seeds`, else `default`).
    pub fn eval_seeds(&self, cli: Option<usize>, default: usize) -> Result<&[u64]> {
        let n = cli.unwrap_or(default);
        let all = &self.configs.run_defaults.eval_seeds;
        if n == 0 || n > all.len() {
            return Err(Error::Config(format!(
                "--seeds {n}: must be between 1 and the {} seeds listed in configs/run_defaults.yaml `eval_seeds`; add seeds there for more",
                all.len()
            )));
        }
        Ok(&all[..n])
    }

    /// The engine flags of a command that runs a local model for `usage`.
    pub fn engine(&self, args: &EngineArgs, usage: EngineUse) -> Result<EngineSettings> {
        let storage = match args.quant.as_deref() {
            None => usage.default_storage(),
            Some(q) => {
                match QuantFormat::parse(q).map_err(|m| Error::Config(format!("--quant: {m}")))? {
                    Some(f) => BaseStorage::Quantized(f),
                    None => BaseStorage::Dense,
                }
            }
        };
        let (device, dtype) = resolve_device(&args.device)?;
        Ok(EngineSettings {
            device,
            dtype,
            storage,
            quant_cache: quant_cache_dir(&self.env),
        })
    }

    /// The API flags over `BWB_API_*` / `BWB_MAX_COST_USD` (environment, then .env) over
    /// the defaults.
    pub fn api(&self, args: &ApiArgs) -> Result<ApiOptions> {
        resolve_api(args, &self.env, &self.paths)
    }

    /// How hub uploads (`bwb sync`, `--auto-upload`) retry: `BWB_HUB_MAX_ATTEMPTS` and
    /// `BWB_HUB_BACKOFF_MS` over the API client's defaults.
    pub fn hub_retry(&self) -> Result<RetryPolicy> {
        let mut retry = RetryPolicy::default();
        if let Some((n, _)) = self.env.parse::<u32>("BWB_HUB_MAX_ATTEMPTS")? {
            retry.max_attempts = n.max(1);
        }
        if let Some((ms, _)) = self.env.parse::<u64>("BWB_HUB_BACKOFF_MS")? {
            retry.base = Duration::from_millis(ms);
        }
        Ok(retry)
    }
}

/// `--device` (default: a GPU when built with CUDA and one is present) and `--dtype`
/// (default: f32).
pub fn resolve_device(args: &DeviceArgs) -> Result<(DeviceSpec, DType)> {
    Ok((
        DeviceSpec::parse(args.device.as_deref())?,
        device::parse_dtype(args.dtype.as_deref().unwrap_or("f32"))?,
    ))
}

fn resolve_api(args: &ApiArgs, env: &Env, paths: &Paths) -> Result<ApiOptions> {
    let d = ApiOptions::default();
    let (concurrency, origin) = layered(
        args.concurrency,
        env.parse::<usize>("BWB_API_CONCURRENCY")?,
        None,
        d.concurrency,
    );
    if concurrency == 0 {
        return Err(Error::Config(format!(
            "{} 0: must be at least 1",
            source_name(origin, "--concurrency", "BWB_API_CONCURRENCY")
        )));
    }
    let (timeout, origin) = layered(
        args.request_timeout,
        env.parse::<f64>("BWB_API_TIMEOUT_S")?,
        None,
        d.timeout.as_secs_f64(),
    );
    let timeout = timeout_secs(
        &source_name(origin, "--request-timeout", "BWB_API_TIMEOUT_S"),
        timeout,
    )?;
    let (max_cost_usd, origin) = layered(
        args.max_cost_usd.map(Some),
        env.parse::<f64>("BWB_MAX_COST_USD")?
            .map(|(v, o)| (Some(v), o)),
        None,
        None,
    );
    if let Some(c) = max_cost_usd.filter(|c| !(c.is_finite() && *c >= 0.0)) {
        return Err(Error::Config(format!(
            "{} {c}: must be a number ≥ 0",
            source_name(origin, "--max-cost-usd", "BWB_MAX_COST_USD")
        )));
    }
    let mut retry = RetryPolicy::default();
    if let Some((n, _)) = env.parse::<u32>("BWB_API_MAX_ATTEMPTS")? {
        retry.max_attempts = n.max(1);
    }
    if let Some((ms, _)) = env.parse::<u64>("BWB_API_BACKOFF_MS")? {
        retry.base = Duration::from_millis(ms);
    }
    Ok(ApiOptions {
        concurrency,
        timeout,
        retry,
        max_cost_usd,
        cache_dir: (!args.no_cache).then(|| paths.results().join("api-cache")),
    })
}

/// MLflow tracking: `--mlflow`/`--no-mlflow` > `BWB_MLFLOW` > `tracking.mlflow` > off; the
/// server `--mlflow-uri` > `MLFLOW_TRACKING_URI` > `tracking.mlflow_uri` > 127.0.0.1:5000;
/// the experiment `--mlflow-experiment` > `MLFLOW_EXPERIMENT_NAME` > `tracking.mlflow_experiment`
/// > `bwb`. Credentials as MLflow reads them. The URI is checked only when tracking is on.
fn resolve_tracking(
    global: &GlobalArgs,
    env: &Env,
    file: &crate::config::TrackingFile,
) -> Result<TrackingSettings> {
    let d = TrackingSettings::default();
    let cli_on = if global.mlflow {
        Some(true)
    } else if global.no_mlflow {
        Some(false)
    } else {
        None
    };
    let (enabled, _) = layered(cli_on, env.flag("BWB_MLFLOW")?, file.mlflow, false);
    let owned = |v: Option<(&str, Origin)>| v.map(|(v, o)| (v.trim().to_string(), o));
    let (uri, uri_origin) = layered(
        global.mlflow_uri.clone(),
        owned(env.get("MLFLOW_TRACKING_URI")),
        file.mlflow_uri.clone(),
        d.uri.clone(),
    );
    let (experiment, exp_origin) = layered(
        global.mlflow_experiment.clone(),
        owned(env.get("MLFLOW_EXPERIMENT_NAME")),
        file.mlflow_experiment.clone(),
        d.experiment.clone(),
    );
    let auth = match env.get("MLFLOW_TRACKING_TOKEN") {
        Some((t, _)) => Some(Auth::Token(t.to_string())),
        None => match (
            env.get("MLFLOW_TRACKING_USERNAME"),
            env.get("MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some((u, _)), Some((p, _))) => Some(Auth::Basic {
                user: u.to_string(),
                password: p.to_string(),
            }),
            _ => None,
        },
    };
    let secs = |var: &str, default: Duration| -> Result<Duration> {
        match env.parse::<f64>(var)? {
            Some((v, _)) => timeout_secs(var, v),
            None => Ok(default),
        }
    };
    let request_timeout = secs("BWB_MLFLOW_TIMEOUT_S", d.request_timeout)?;
    let flush_timeout = secs("BWB_MLFLOW_FLUSH_S", d.flush_timeout)?;
    if enabled {
        let name = |o: Origin, flag: &str, var: &str| match o {
            Origin::File => format!("configs/run_defaults.yaml `tracking.{flag}`"),
            _ => source_name(o, &format!("--{}", flag.replace('_', "-")), var),
        };
        crate::track::mlflow::parse_base(&uri).map_err(|m| {
            Error::Config(format!(
                "{}: {m}",
                name(uri_origin, "mlflow_uri", "MLFLOW_TRACKING_URI")
            ))
        })?;
        if experiment.trim().is_empty() {
            return Err(Error::Config(format!(
                "{}: the MLflow experiment name is empty",
                name(exp_origin, "mlflow_experiment", "MLFLOW_EXPERIMENT_NAME")
            )));
        }
    }
    Ok(TrackingSettings {
        enabled,
        uri,
        experiment,
        auth,
        request_timeout,
        flush_timeout,
        smoke: false,
    })
}

/// `BWB_KERNELS`: `off` (or `0`/`false`/`no`/`composed`) runs the composed candle ops;
/// `BWB_ATTENTION_TC=off`: the CUDA attention forward on CUDA cores.
fn resolve_kernels(env: &Env) -> Result<KernelSwitches> {
    let d = KernelSwitches::default();
    let fused = match env.get("BWB_KERNELS") {
        None => d.fused,
        Some((v, _)) => match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" | "fused" => true,
            "0" | "false" | "no" | "off" | "composed" => false,
            _ => {
                return Err(Error::Config(format!(
                    "environment variable BWB_KERNELS={v:?} is invalid: use on or off (composed)"
                )))
            }
        },
    };
    let (attention_tensor_cores, _) = layered(
        None,
        env.flag("BWB_ATTENTION_TC")?,
        None,
        d.attention_tensor_cores,
    );
    Ok(KernelSwitches {
        fused,
        attention_tensor_cores,
    })
}

/// Where quantised bases are cached (see [`EngineSettings::quant_cache`]).
fn quant_cache_dir(env: &Env) -> Option<PathBuf> {
    if let Some((d, _)) = env.get("BWB_CACHE_DIR") {
        return (d != "off").then(|| PathBuf::from(d));
    }
    let base = env
        .get("XDG_CACHE_HOME")
        .map(|(v, _)| PathBuf::from(v))
        .or_else(|| {
            env.get("HOME")
                .map(|(h, _)| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("bwb").join("quantized"))
}

/// Every task's and dataset's prompt files exist (they are read at evaluation time; fail
/// early).
fn check_prompts(root: &Path, configs: &Configs) -> Result<()> {
    let tasks = configs.tasks.values().map(|t| ("tasks", t));
    let datasets = configs.datasets.values().map(|d| ("datasets", d));
    for (dir, task) in tasks.chain(datasets) {
        for (field, name) in [
            ("system", &task.prompts.system),
            ("user", &task.prompts.user),
        ] {
            let path = root.join("prompts").join(&task.id).join(name);
            if !path.is_file() {
                return Err(Error::Config(format!(
                    "configs/{dir}/{}.yaml: field `prompts.{field}` names {}, which does not exist",
                    task.id,
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

/// `--log-every` > `BWB_LOG_EVERY` > 30 s; a number of seconds ≥ 0.
fn resolve_log_every(cli: Option<f64>, env: &Env) -> Result<Duration> {
    let (secs, origin) = layered(
        cli,
        env.parse::<f64>("BWB_LOG_EVERY")?,
        None,
        crate::progress::DEFAULT_LOG_EVERY.as_secs_f64(),
    );
    let name = match origin {
        Origin::Cli => "--log-every".to_string(),
        _ => format!("BWB_LOG_EVERY={secs}"),
    };
    // At most a year: `Duration` cannot hold every f64.
    if !(0.0..=3.2e7).contains(&secs) {
        return Err(Error::Config(format!(
            "{name}: must be a number of seconds from 0 (every step) to 32000000"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
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

    fn api_with(args: &ApiArgs, env: &Env) -> Result<ApiOptions> {
        resolve_api(args, env, &Paths::new(PathBuf::from("/p"), false))
    }

    #[test]
    fn api_settings_flag_over_env_over_dotenv_over_default() {
        let none = ApiArgs::default();
        let o = api_with(&none, &Env::default()).unwrap();
        assert_eq!(o.concurrency, 8);
        assert_eq!(o.timeout, Duration::from_secs(120));
        assert_eq!(o.max_cost_usd, None);
        assert_eq!(o.cache_dir, Some(PathBuf::from("/p/results/api-cache")));
        let env = Env::from_pairs(
            &[("BWB_API_CONCURRENCY", "3"), ("BWB_API_MAX_ATTEMPTS", "0")],
            &[
                ("BWB_API_CONCURRENCY", "5"),
                ("BWB_API_TIMEOUT_S", "7.5"),
                ("BWB_MAX_COST_USD", "2"),
                ("BWB_API_BACKOFF_MS", "20"),
            ],
        );
        let o = api_with(&none, &env).unwrap();
        assert_eq!(o.concurrency, 3);
        assert_eq!(o.timeout, Duration::from_millis(7500));
        assert_eq!(o.max_cost_usd, Some(2.0));
        assert_eq!(o.retry.max_attempts, 1);
        assert_eq!(o.retry.base, Duration::from_millis(20));
        let args = ApiArgs {
            concurrency: Some(1),
            request_timeout: Some(2.0),
            max_cost_usd: Some(0.5),
            no_cache: true,
        };
        let o = api_with(&args, &env).unwrap();
        assert_eq!(
            (o.concurrency, o.timeout, o.max_cost_usd, o.cache_dir),
            (1, Duration::from_secs(2), Some(0.5), None)
        );
    }

    #[test]
    fn huge_timeouts_are_one_line_errors_naming_their_source() {
        // Regression: 1e300 panicked in Duration::from_secs_f64.
        let args = ApiArgs {
            request_timeout: Some(1e300),
            ..ApiArgs::default()
        };
        let err = api_with(&args, &Env::default()).unwrap_err().to_string();
        assert!(err.starts_with("--request-timeout 1e300"), "{err}");
        assert!(err.contains("at most 86400"), "{err}");
        let env = Env::from_pairs(&[("BWB_API_TIMEOUT_S", "1e300")], &[]);
        let err = api_with(&ApiArgs::default(), &env).unwrap_err().to_string();
        assert!(
            err.contains("BWB_API_TIMEOUT_S (environment) 1e300"),
            "{err}"
        );
        let env = Env::from_pairs(&[], &[("BWB_API_TIMEOUT_S", "inf")]);
        let err = api_with(&ApiArgs::default(), &env).unwrap_err().to_string();
        assert!(err.contains("BWB_API_TIMEOUT_S (.env) inf"), "{err}");
        let env = Env::from_pairs(&[("BWB_MAX_COST_USD", "-1")], &[]);
        let err = api_with(&ApiArgs::default(), &env).unwrap_err().to_string();
        assert!(err.contains("BWB_MAX_COST_USD (environment) -1"), "{err}");
        let env = Env::from_pairs(&[("BWB_API_CONCURRENCY", "many")], &[]);
        let err = api_with(&ApiArgs::default(), &env).unwrap_err().to_string();
        assert!(err.contains("BWB_API_CONCURRENCY=\"many\""), "{err}");
        assert_eq!(
            timeout_secs("--exec-timeout", 86_400.0).unwrap().as_secs(),
            86_400
        );
        for bad in [0.0, -1.0, 86_400.5, 1e300, f64::NAN] {
            let err = timeout_secs("--exec-timeout", bad).unwrap_err().to_string();
            assert!(err.starts_with("--exec-timeout"), "{err}");
        }
    }

    #[test]
    fn kernel_switches_and_quant_cache_read_env_and_dotenv() {
        let k = resolve_kernels(&Env::default()).unwrap();
        assert_eq!(k, KernelSwitches::default());
        let env = Env::from_pairs(
            &[],
            &[("BWB_KERNELS", "composed"), ("BWB_ATTENTION_TC", "off")],
        );
        let k = resolve_kernels(&env).unwrap();
        assert!(!k.fused && !k.attention_tensor_cores);
        let env = Env::from_pairs(&[("BWB_KERNELS", "on")], &[("BWB_KERNELS", "off")]);
        assert!(resolve_kernels(&env).unwrap().fused);
        let env = Env::from_pairs(&[("BWB_KERNELS", "sometimes")], &[]);
        let err = resolve_kernels(&env).unwrap_err().to_string();
        assert!(
            err.contains("BWB_KERNELS") && err.contains("sometimes"),
            "{err}"
        );

        let env = Env::from_pairs(&[("HOME", "/home/u")], &[]);
        assert_eq!(
            quant_cache_dir(&env),
            Some(PathBuf::from("/home/u/.cache/bwb/quantized"))
        );
        // Regression: BWB_CACHE_DIR in .env was ignored.
        let env = Env::from_pairs(&[("HOME", "/home/u")], &[("BWB_CACHE_DIR", "/c")]);
        assert_eq!(quant_cache_dir(&env), Some(PathBuf::from("/c")));
        let env = Env::from_pairs(&[("XDG_CACHE_HOME", "/x")], &[("BWB_CACHE_DIR", "off")]);
        assert_eq!(quant_cache_dir(&env), None);
        let env = Env::from_pairs(&[("XDG_CACHE_HOME", "/x")], &[]);
        assert_eq!(
            quant_cache_dir(&env),
            Some(PathBuf::from("/x/bwb/quantized"))
        );
    }

    #[test]
    fn quant_defaults_are_4_bit_for_qlora_and_as_stored_for_inference() {
        use EngineUse::*;
        let q4k = BaseStorage::Quantized(QuantFormat::Q4K);
        for (usage, want) in [
            (Train, q4k),
            (Eval, q4k),
            (BenchTrain, q4k),
            (Generate, BaseStorage::AsStored),
            (BenchInfer, BaseStorage::AsStored),
            (Serve, BaseStorage::AsStored),
        ] {
            assert_eq!(usage.default_storage(), want, "{usage:?}");
        }
    }

    #[test]
    fn log_every_flag_over_env_over_default_and_bounded() {
        let none = Env::default();
        let env = Env::from_pairs(&[("BWB_LOG_EVERY", "5")], &[]);
        let secs = |cli, env: &Env| resolve_log_every(cli, env).map(|d| d.as_secs_f64());
        assert_eq!(secs(None, &none).unwrap(), 30.0);
        assert_eq!(secs(None, &env).unwrap(), 5.0);
        assert_eq!(secs(Some(0.0), &env).unwrap(), 0.0);
        for bad in [-1.0, 1e300, f64::NAN, f64::INFINITY] {
            let err = resolve_log_every(Some(bad), &none).unwrap_err().to_string();
            assert!(
                err.starts_with("--log-every") && err.contains("seconds"),
                "{err}"
            );
        }
        let env = Env::from_pairs(&[], &[("BWB_LOG_EVERY", "-3")]);
        let err = resolve_log_every(None, &env).unwrap_err().to_string();
        assert!(err.contains("BWB_LOG_EVERY=-3"), "{err}");
        let env = Env::from_pairs(&[("BWB_LOG_EVERY", "soon")], &[]);
        let err = resolve_log_every(None, &env).unwrap_err().to_string();
        assert!(
            err.contains("BWB_LOG_EVERY") && err.contains("soon"),
            "{err}"
        );
    }

    fn global(mlflow: Option<bool>, uri: Option<&str>, exp: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            smoke_test: false,
            verbose: false,
            root: None,
            log_every: None,
            mlflow: mlflow == Some(true),
            no_mlflow: mlflow == Some(false),
            mlflow_uri: uri.map(str::to_string),
            mlflow_experiment: exp.map(str::to_string),
        }
    }

    #[test]
    fn tracking_is_off_by_default_and_flag_over_env_over_file_over_default() {
        use crate::config::TrackingFile;
        let none = TrackingFile::default();
        let t = resolve_tracking(&global(None, None, None), &Env::default(), &none).unwrap();
        assert!(!t.enabled);
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("http://127.0.0.1:5000", "bwb")
        );
        let file = TrackingFile {
            mlflow: Some(true),
            mlflow_uri: Some("http://file:1".into()),
            mlflow_experiment: Some("from-file".into()),
        };
        let t = resolve_tracking(&global(None, None, None), &Env::default(), &file).unwrap();
        assert!(t.enabled);
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("http://file:1", "from-file")
        );
        let env = Env::from_pairs(
            &[
                ("BWB_MLFLOW", "0"),
                ("MLFLOW_TRACKING_URI", "http://env:2"),
                ("MLFLOW_TRACKING_TOKEN", "tok-secret"),
            ],
            &[("MLFLOW_EXPERIMENT_NAME", "from-dotenv")],
        );
        let t = resolve_tracking(&global(None, None, None), &env, &file).unwrap();
        assert!(!t.enabled);
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("http://env:2", "from-dotenv")
        );
        assert!(matches!(&t.auth, Some(Auth::Token(x)) if x == "tok-secret"));
        assert!(!format!("{t:?}").contains("tok-secret"));
        let cli = global(Some(true), Some("http://cli:3"), Some("from-cli"));
        let t = resolve_tracking(&cli, &env, &file).unwrap();
        assert!(t.enabled);
        assert_eq!(
            (t.uri.as_str(), t.experiment.as_str()),
            ("http://cli:3", "from-cli")
        );
        let t = resolve_tracking(&global(Some(false), None, None), &Env::default(), &file);
        assert!(!t.unwrap().enabled);
        // A URI bwb cannot use is an error only when tracking is on, naming its source.
        let env = Env::from_pairs(&[("MLFLOW_TRACKING_URI", "databricks")], &[]);
        assert!(resolve_tracking(&global(None, None, None), &env, &none).is_ok());
        let err = resolve_tracking(&global(Some(true), None, None), &env, &none)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("MLFLOW_TRACKING_URI (environment)"),
            "{err}"
        );
        let bad_file = TrackingFile {
            mlflow: Some(true),
            mlflow_uri: Some("file:///m".into()),
            ..TrackingFile::default()
        };
        let err = resolve_tracking(&global(None, None, None), &Env::default(), &bad_file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tracking.mlflow_uri"), "{err}");
        let env = Env::from_pairs(
            &[
                ("MLFLOW_TRACKING_USERNAME", "me"),
                ("MLFLOW_TRACKING_PASSWORD", "pw-secret"),
            ],
            &[],
        );
        let t = resolve_tracking(&global(None, None, None), &env, &none).unwrap();
        assert!(matches!(&t.auth, Some(Auth::Basic { user, .. }) if user == "me"));
        assert!(!format!("{t:?}").contains("pw-secret"));
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
