//! Command-line interface (clap derive). Parsing only: values are resolved against the
//! environment and config files in `settings.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bwb",
    version,
    about = "Benchmark small QLoRA fine-tuned open models against frontier API models",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Run tiny and offline: fixture datasets, the random `smoke` model, and every output
    /// under data/smoke, checkpoints/smoke, results/smoke, dashboard-data/smoke [env: BWB_SMOKE_TEST]
    #[arg(long, global = true)]
    pub smoke_test: bool,
    /// Debug logging (RUST_LOG overrides)
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
    /// Project root holding configs/ and prompts/ [env: BWB_ROOT] [default: current directory]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where stderr is not a terminal (job logs, CI, nohup): a progress line every this many
    /// seconds during train and eval, 0 for every step [env: BWB_LOG_EVERY] [default: 30]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub log_every: Option<f64>,
    /// train, eval, classify and run: log params, metrics and artifacts to an MLflow tracking
    /// server (never fails or slows the benchmark) [env: BWB_MLFLOW] [default: run_defaults.yaml
    /// `tracking.mlflow`, else off]
    #[arg(long, global = true, overrides_with = "no_mlflow")]
    pub mlflow: bool,
    /// Do not log to MLflow, whatever the environment or run_defaults.yaml say
    #[arg(long, global = true, overrides_with = "mlflow")]
    pub no_mlflow: bool,
    /// The MLflow tracking server [env: MLFLOW_TRACKING_URI] [default: run_defaults.yaml
    /// `tracking.mlflow_uri`, else http://127.0.0.1:5000]
    #[arg(long, global = true, value_name = "URI")]
    pub mlflow_uri: Option<String>,
    /// The MLflow experiment runs go to, created when missing [env: MLFLOW_EXPERIMENT_NAME]
    /// [default: run_defaults.yaml `tracking.mlflow_experiment`, else bwb]
    #[arg(long, global = true, value_name = "NAME")]
    pub mlflow_experiment: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Download a task's raw dataset from the Hugging Face hub into data/raw/<task>/
    Download(TaskArgs),
    /// Turn raw data into data/prepared/<task>/{train,val,test}.jsonl
    Prepare(PrepareArgs),
    /// Fine-tune a local model with QLoRA
    Train(TrainArgs),
    /// Evaluate a model on a task under zero-shot, 5-shot or LoRA
    Eval(EvalArgs),
    /// Score predictions, classify errors and write summaries
    Classify(ClassifyArgs),
    /// Build dashboard data and the static site (and publish it to a static hub Space)
    Dashboard(DashboardArgs),
    /// Run every stage in order for the given models × tasks × conditions
    Run(RunArgs),
    /// Plan a sweep over many machines: a manifest of cells (model × task × condition) and
    /// the SkyPilot or Slurm files that run each as `bwb run --manifest M --cell ID`
    Plan(PlanArgs),
    /// Merge a finished sweep's cells into the summaries and dashboard one `bwb run` writes
    Collect(CollectArgs),
    /// Generate completions from a local model
    Generate(GenerateArgs),
    /// Write a model with a LoRA adapter merged into its weights (HF layout)
    Export(ExportArgs),
    /// Serve a local model and its LoRA adapters over an OpenAI-compatible HTTP API
    Serve(ServeArgs),
    /// Run the context benchmark's experiments file (QA, retrieval, summarization datasets
    /// against API and local models)
    Experiments(ExperimentsArgs),
    /// Mirror the project's outputs (adapters, predictions, summaries, training records,
    /// prepared data) into a private Hugging Face hub dataset repo, or restore them from it
    Sync(SyncArgs),
    /// Benchmarks (not tests): throughput of the engine
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Also upload the site to this static Hugging Face Space, ORG/SPACE (created private when
    /// missing; only changed files are committed). Needs HF_TOKEN
    #[arg(long, value_name = "ORG/SPACE")]
    pub publish: Option<String>,
    /// With --publish: create the Space public instead of private
    #[arg(long, requires = "publish")]
    pub public: bool,
}

/// `bwb sync`. Also from the environment only: BWB_HUB_MAX_ATTEMPTS (attempts per hub
/// request, default 8) and BWB_HUB_BACKOFF_MS (first backoff, default 500).
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// What to sync: each kind lives at the same path locally and in the repo
    #[arg(long, value_enum, default_value = "all")]
    pub what: crate::hub::sync::What,
    /// up: commit new or changed local files to the repo (one commit, nothing if nothing
    /// changed); down: restore the repo's files into this project
    #[arg(long, value_enum)]
    pub direction: crate::hub::sync::Direction,
    /// The hub dataset repo, ORG/NAME (created private on the first up) [env: BWB_HUB_REPO]
    #[arg(long, value_name = "ORG/NAME")]
    pub repo: Option<String>,
    /// List what would be uploaded or downloaded; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Create the repo public instead of private (only when up creates it)
    #[arg(long)]
    pub public: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Prefill and decode tokens/s for a model, batch size and prompt length
    Infer(BenchInferArgs),
    /// LoRA training tokens/s, step time, FLOP rate and peak memory for a model, sequence
    /// length and batch size
    Train(BenchTrainArgs),
    /// Check every fused kernel against the composed ops it replaces on a device (the GPU
    /// test run), then time fused vs composed; `--dtype` is the timed inputs' (the checks
    /// cover f32 and bf16 always)
    Kernels(BenchKernelsArgs),
    /// Load-test any OpenAI-compatible server (bwb serve, vLLM, …) with streaming requests:
    /// TTFT, TPOT, inter-token and end-to-end latency, throughput and goodput; or a
    /// ScaleDown-style `/compress/raw/` endpoint (`--endpoint compress`)
    Serve(BenchServeArgs),
    /// Local context compressor throughput (context tokens/s) for a method, scoring model,
    /// context length and batch
    Compress(BenchCompressArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchCompressArgs {
    #[command(flatten)]
    pub bench: BenchModelArgs,
    /// selective or lingua
    #[arg(long, default_value = "selective")]
    pub method: String,
    /// Tokens of the synthetic context (the model's tokenizer counts them)
    #[arg(long, default_value_t = 2048)]
    pub context_tokens: usize,
    /// Windows (selective) or sentences (lingua's coarse step) per forward pass
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Share of the context's tokens kept, in (0, 1)
    #[arg(long, default_value_t = 0.5)]
    pub rate: f64,
    /// Timed repetitions (after one warm-up); the median is reported
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Which route `bwb bench serve` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeEndpoint {
    /// `POST /v1/chat/completions` (the prompt as one user message)
    Chat,
    /// `POST /v1/completions`
    Completions,
    /// `POST /compress/raw/` (ScaleDown's request and response JSON)
    Compress,
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("load").required(true).multiple(true).args(["concurrency", "request_rate"])))]
pub struct BenchServeArgs {
    /// The server's base URL, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted)
    #[arg(long)]
    pub url: String,
    /// The `model` field; repeat it to spread requests round-robin over several models or
    /// adapters (mixed-adapter traffic)
    #[arg(long, required = true, value_name = "NAME")]
    pub model: Vec<String>,
    /// Requests in flight at most (alone: all requests queue at once, C at a time)
    #[arg(long, value_name = "C", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub concurrency: Option<usize>,
    /// Mean arrivals per second (Poisson, or gamma with --burstiness); with --concurrency,
    /// arrivals beyond C in flight wait
    #[arg(long, value_name = "R")]
    pub request_rate: Option<f64>,
    /// Gamma shape of the inter-arrival times: 1 is Poisson, below 1 burstier, above 1 more
    /// even
    #[arg(
        long,
        value_name = "B",
        default_value_t = 1.0,
        requires = "request_rate"
    )]
    pub burstiness: f64,
    /// Requests to send
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub requests: usize,
    /// Prompt tokens per request (exact when the server answers /tokenize, else words)
    #[arg(long, value_name = "L", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub prompt_len: usize,
    /// `max_tokens` per request, sent with `ignore_eos` (unused by --endpoint compress)
    #[arg(long, value_name = "T", default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_tokens: usize,
    /// Service-level objectives for goodput, in ms: `ttft=MS,tpot=MS[,e2el=MS]`
    #[arg(long, value_name = "KEY=MS,…")]
    pub slo: Option<String>,
    #[arg(long, value_enum, default_value_t = ServeEndpoint::Completions)]
    pub endpoint: ServeEndpoint,
    /// Seed of the prompts and the arrival times
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// --endpoint compress: `scaledown.rate`, `auto` or a number between 0 and 1
    #[arg(long, value_name = "RATE", default_value = "auto")]
    pub compress_rate: String,
    /// Sent as `Authorization: Bearer KEY` (`x-api-key` for --endpoint compress) [env: BWB_BENCH_API_KEY]
    #[arg(
        long,
        env = "BWB_BENCH_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Seconds one request may take before it counts as failed
    #[arg(long, value_name = "S", default_value_t = 600)]
    pub timeout: u64,
    /// Print the result as one JSON object on one line instead of the table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchKernelsArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Tokens in the timed shapes (Qwen3-8B widths), at least 1
    #[arg(long, default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub tokens: usize,
    /// Timed repetitions (after one warm-up); the median is reported
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Only the checks
    #[arg(long)]
    pub no_timing: bool,
    /// Print each check and timing as one JSON object per line
    #[arg(long)]
    pub json: bool,
}

/// `--random-weights` and its scale-down overrides, shared by the bench commands.
#[derive(Debug, Clone, Args)]
pub struct RandomWeightArgs {
    /// Build the config id's published shape (`shape:` in configs/models/<id>.yaml) with
    /// seeded random weights instead of loading a checkpoint: nothing is downloaded
    #[arg(long)]
    pub random_weights: bool,
    /// With --random-weights: build only N decoder layers (quick CPU runs)
    #[arg(long, value_name = "N", requires = "random_weights")]
    pub layers: Option<usize>,
    /// With --random-weights: vocabulary size N instead of the real one (at least 259)
    #[arg(long, value_name = "N", requires = "random_weights")]
    pub vocab: Option<usize>,
}

/// The model a benchmark runs, and how: shared by `bench infer` and `bench train`.
#[derive(Debug, Clone, Args)]
pub struct BenchModelArgs {
    /// Model config id (configs/models/), local HF directory, or .gguf file
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub random: RandomWeightArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BenchTrainArgs {
    #[command(flatten)]
    pub bench: BenchModelArgs,
    /// Rows per optimizer step; a comma-separated list runs each on the one loaded model
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub batch_size: Vec<usize>,
    /// Tokens per row (random ids, no padding; every position carries loss)
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    /// Timed optimizer steps (after one warm-up step); the median is reported
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// LoRA rank (alpha = 2 r) on every attention and MLP projection
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Print each result as one JSON object per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchInferArgs {
    #[command(flatten)]
    pub bench: BenchModelArgs,
    /// Rows per batch; a comma-separated list runs each on the one loaded model
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batch_size: Vec<usize>,
    /// Prompt tokens per row
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    /// Tokens decoded per row (no early stop)
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    /// Timed repetitions (after one warm-up); the median is reported
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print each result as one JSON object per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Base model: config id, local HF directory or .gguf file
    #[arg(long)]
    pub model: String,
    /// The PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)
    #[arg(long, value_name = "DIR")]
    pub adapter: PathBuf,
    /// Write the merged model (config.json, model.safetensors, tokenizer files) to this new directory
    #[arg(long, value_name = "OUT")]
    pub merge: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct TaskArgs {
    /// Task id (banking77, cuad, ledgar, fpb, medmcqa, mbpp), a comma-separated list, or `all`
    #[arg(long, required = true)]
    pub task: String,
}

#[derive(Debug, Clone, Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub task: TaskArgs,
    /// Seed for splitting and sampling [env: BWB_SEED] [default: run_defaults.yaml `seed`]
    #[arg(long)]
    pub seed: Option<u64>,
}

/// What `bwb train` and `bwb eval` run: a model, tasks and conditions.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Model config id (local, or an API model for eval), hub id, local HF directory or .gguf
    /// file
    #[arg(long)]
    pub model: String,
    /// Task id, a comma-separated list, or `all`
    #[arg(long)]
    pub task: String,
    /// zero-shot, 5-shot, lora (lora-500 and lora-full), lora-500, lora-full or all. Training
    /// takes the LoRA ones (all: both); API models have only zero-shot and 5-shot
    #[arg(long, default_value = "all")]
    pub condition: String,
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Seed for LoRA init, shuffling and dropout [env: BWB_SEED] [default: run_defaults.yaml `seed`]
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Also checkpoint every N optimizer steps within an epoch (epoch ends always checkpoint)
    #[arg(long, value_name = "N", default_value_t = crate::train::DEFAULT_SAVE_EVERY)]
    pub save_every: usize,
    /// Stop with a checkpoint once N optimizer steps are done in total; rerun to continue
    #[arg(long, value_name = "N")]
    pub stop_at_step: Option<usize>,
    /// Push each adapter once trained to its own private hub model repo,
    /// ORG/bwb-<model>-<task>-<condition>, with a model card (needs HF_TOKEN and --hub-org).
    /// Never in smoke runs
    #[arg(long)]
    pub auto_upload: bool,
    /// The hub user or organisation --auto-upload pushes to [env: BWB_HUB_ORG]
    #[arg(long, value_name = "ORG")]
    pub hub_org: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Eval seeds (the first N of run_defaults.yaml `eval_seeds`): a greedy model generates the
    /// test set once and is resampled N times when scored; a sampling model generates it once
    /// per seed [env: BWB_N_EVAL_SEEDS] [default: run_defaults.yaml `n_eval_seeds`]
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Local: prompts per generate call
    #[arg(long, default_value_t = crate::eval::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Compress each example's long input (and 5-shot demonstrations) first:
    /// METHOD[:RATE] with METHOD selective, lingua, scaledown or scaledown-summarize and RATE
    /// auto or a fraction in (0, 1); results go under the model name `<model>+METHOD-RATE`,
    /// so the report shows them beside the uncompressed run
    #[arg(long, value_name = "METHOD:RATE")]
    pub compress: Option<String>,
    /// The local compressor's scoring model (config id, hub id, HF directory or .gguf), or
    /// the model ScaleDown compresses for [default: HuggingFaceTB/SmolLM2-135M-Instruct]
    #[arg(long, value_name = "MODEL", requires = "compress")]
    pub compress_model: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// How API models are called, shared by `eval` and `run`. Also from the environment only:
/// BWB_API_MAX_ATTEMPTS (attempts per request, default 8) and BWB_API_BACKOFF_MS (first
/// backoff, default 500).
#[derive(Debug, Clone, Default, Args)]
pub struct ApiArgs {
    /// API: requests in flight at once [env: BWB_API_CONCURRENCY] [default: 8]
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// API: stop cleanly once this run has spent this many USD [env: BWB_MAX_COST_USD]
    #[arg(long, value_name = "USD")]
    pub max_cost_usd: Option<f64>,
    /// API: seconds before a request is abandoned and retried, at most 86400
    /// [env: BWB_API_TIMEOUT_S] [default: 120]
    #[arg(long, value_name = "SECONDS")]
    pub request_timeout: Option<f64>,
    /// API: do not read or write the response cache (results/api-cache/)
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ClassifyArgs {
    /// Task id, a comma-separated list, or `all`
    #[arg(long)]
    pub task: String,
    /// Bootstrap resamples (the first N of run_defaults.yaml `eval_seeds`) a greedy
    /// generation's spread is taken over [env: BWB_N_EVAL_SEEDS] [default: run_defaults.yaml
    /// `n_eval_seeds`]
    #[arg(long)]
    pub seeds: Option<usize>,
    #[command(flatten)]
    pub exec: ExecArgs,
}

/// Running model-written code (MBPP), shared by `classify` and `run`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Run model-written Python (MBPP) to score it, each program in its own sandboxed process
    /// (time, memory, file-size and process limits; no network where the OS allows)
    #[arg(long)]
    pub allow_code_execution: bool,
    /// Wall-clock seconds each program may run, at most 86400
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub exec_timeout: f64,
    /// Programs run at once [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub exec_jobs: Option<usize>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Comma-separated model ids [default: run_defaults.yaml `models`; smoke: `smoke.models`]
    #[arg(long)]
    pub models: Option<String>,
    /// Comma-separated task ids or `all` [default: run_defaults.yaml `tasks`; smoke: `smoke.tasks`]
    #[arg(long)]
    pub tasks: Option<String>,
    /// Comma-separated conditions [default: run_defaults.yaml `conditions`; smoke: `smoke.conditions`]
    #[arg(long)]
    pub conditions: Option<String>,
    /// Number of seeded test resamples per evaluation [default: run_defaults.yaml
    /// `n_eval_seeds`; smoke: `smoke.n_eval_seeds`]
    #[arg(long)]
    pub seeds: Option<usize>,
    /// A sweep manifest (`bwb plan`): run the one cell named by --cell, resumably, into its own
    /// results folder; models, tasks, conditions and seeds come from the cell
    #[arg(long, value_name = "FILE", requires = "cell", conflicts_with_all = ["models", "tasks", "conditions", "seeds"])]
    pub manifest: Option<PathBuf>,
    /// The cell_id of the manifest line to run
    #[arg(long, value_name = "ID", requires = "manifest")]
    pub cell: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The engine that runs the cells: SkyPilot managed jobs or Slurm job arrays
    #[arg(long, value_enum)]
    pub engine: crate::plan::Engine,
    /// Comma-separated model ids [default: as `bwb run`]
    #[arg(long)]
    pub models: Option<String>,
    /// Comma-separated task ids or `all` [default: as `bwb run`]
    #[arg(long)]
    pub tasks: Option<String>,
    /// Comma-separated conditions [default: as `bwb run`]
    #[arg(long)]
    pub conditions: Option<String>,
    /// Number of eval seeds [default: as `bwb run`]
    #[arg(long)]
    pub seeds: Option<usize>,
    /// SkyPilot: the accelerators a GPU cell may run on, any one of them
    #[arg(long, value_name = "LIST", default_value = "H100:1,A100-80GB:1,L40S:1")]
    pub accelerators: String,
    /// Where each cell's results go: a folder (shared storage), hf:ORG/REPO, s3://… or r2://…
    /// (pushed by `bwb sync`) [default: OUT/results]
    #[arg(long, value_name = "LOCATION")]
    pub results: Option<String>,
    /// The sweep folder to write (sweeps/<id>/; its name is the sweep's id)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// SkyPilot: the container image GPU cells run in
    #[arg(long, value_name = "IMAGE", default_value = "bwb:cuda")]
    pub image: String,
    /// SkyPilot: the container image API-only cells run in
    #[arg(long, value_name = "IMAGE", default_value = "bwb:cpu")]
    pub cpu_image: String,
    /// Slurm: array tasks running at once
    #[arg(long, value_name = "K", default_value_t = 8)]
    pub max_parallel: usize,
    /// Cells score model-written code (MBPP) in bwb's sandbox
    #[arg(long)]
    pub allow_code_execution: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CollectArgs {
    /// The sweep folder `bwb plan` wrote (holds manifest.jsonl)
    #[arg(long, value_name = "DIR")]
    pub sweep: PathBuf,
    /// Where the cells' results folders are: a folder, or hf:ORG/REPO (their results are
    /// pulled from its cells/ into sweep-cells/) [default: the manifest's results location]
    #[arg(long, value_name = "DIR|hf:ORG/REPO")]
    pub from: Option<String>,
    /// Report the finished cells even when some are missing or failed
    #[arg(long)]
    pub partial: bool,
    #[command(flatten)]
    pub exec: ExecArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExperimentsArgs {
    /// The experiments file [default: configs/experiments.yaml]
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Run only this experiment (repeatable)
    #[arg(long = "experiment-id", value_name = "ID")]
    pub experiment_id: Vec<String>,
    /// Run only experiments with this tag (repeatable: any of them)
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Run the selected experiments concurrently [default: the file's `defaults.parallel`]
    #[arg(long, conflicts_with = "serial_experiments")]
    pub parallel_experiments: bool,
    /// Run the selected experiments one after another
    #[arg(long)]
    pub serial_experiments: bool,
    /// Check the file and print the plan (experiments, examples, tokens, cost); send nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Trace every example to LangSmith (LANGSMITH_API_KEY, LANGSMITH_ENDPOINT)
    /// [env: LANGSMITH_TRACING=true]
    #[arg(long)]
    pub langsmith: bool,
    /// The LangSmith project [env: LANGSMITH_PROJECT] [default: bwb]
    #[arg(long, value_name = "NAME")]
    pub langsmith_project: Option<String>,
    /// Then push the results and summaries (results/experiments/, results/summaries/) to this
    /// hub dataset repo, ORG/NAME, as `bwb sync --what summaries --direction up` does (created
    /// private when missing; only changed files are committed). Needs HF_TOKEN
    #[arg(long, value_name = "ORG/NAME")]
    pub upload_hf: Option<String>,
    /// Local: prompts per generate call
    #[arg(long, default_value_t = crate::eval::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// How to run a local model: shared by every command that runs one (train, eval, run,
/// generate, bench). Resolved by `Settings::engine`, which also reads BWB_CACHE_DIR.
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// Local models: frozen-base storage, none, q4k, q4_0 or q4_1 [default: q4k for train,
    /// eval, run and bench train (the 4-bit QLoRA base); none for generate, serve and bench infer;
    /// a GGUF keeps its own blocks unless none]
    #[arg(long, value_name = "FORMAT")]
    pub quant: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Where and in which dtype a model computes: shared by the engine commands and
/// `bench kernels`.
#[derive(Debug, Clone, Default, Args)]
pub struct DeviceArgs {
    /// Compute dtype: f32, bf16 or f16 [default: f32]
    #[arg(long)]
    pub dtype: Option<String>,
    /// cpu, cuda or cuda:N [default: cuda when built with it and a GPU is present, else cpu]
    #[arg(long)]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Model config id (configs/models/), local HF directory, or .gguf file (optional with
    /// --compressor: a compression-only server)
    #[arg(long, required_unless_present = "compressor")]
    pub model: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Serve a PEFT LoRA adapter directory under NAME (repeatable; `model: NAME` picks it)
    #[arg(long = "lora-modules", value_name = "NAME=PATH", num_args = 1..)]
    pub lora_modules: Vec<String>,
    /// The name clients use for the base model [default: the --model argument]
    #[arg(long, value_name = "NAME")]
    pub served_model_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port; 0 picks a free one (the bound address is printed on stdout)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on every route but /health and /metrics [env: BWB_API_KEY]
    #[arg(long, env = "BWB_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Sequences (prompts × n) in one engine batch, and the most one request may ask for
    #[arg(long, default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_num_seqs: usize,
    /// Requests that may wait beyond the running ones; more answer 429 with Retry-After
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Prompt plus completion tokens one request may use; longer prompts answer 400
    /// [default: the model's context length (config.json `max_position_embeddings`, GGUF
    /// `context_length`), else 4096]
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_model_len: Option<usize>,
    /// Tokens one engine step may run: one per decoding sequence plus prefill chunks of
    /// `max_batch_tokens − max_num_seqs` tokens [default: max(2048, 2 × max_num_seqs)]
    #[arg(long, value_name = "N")]
    pub max_batch_tokens: Option<usize>,
    /// Serve every adapter `bwb train` finished under DIR (e.g. checkpoints/) as
    /// `<model>/<task>/<condition>`; adapters of another base model are skipped
    #[arg(long, value_name = "DIR")]
    pub adapter_dir: Option<PathBuf>,
    /// Distinct LoRA adapters in one engine batch; requests for another adapter wait while
    /// others go ahead [default: no cap]
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_loras: Option<usize>,
    /// Answer POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's routes)
    #[arg(long)]
    pub allow_runtime_lora: bool,
    /// Also serve ScaleDown's `POST /compress/raw/` with this method: selective, lingua,
    /// scaledown, scaledown-summarize
    #[arg(long, value_name = "METHOD")]
    pub compressor: Option<String>,
    /// The compressor's scoring model (local methods) [default: HuggingFaceTB/SmolLM2-135M-Instruct]
    #[arg(long, value_name = "MODEL", requires = "compressor")]
    pub compressor_model: Option<String>,
    /// The rate a request with `"rate": "auto"` (or none) gets: a number in (0, 1) or auto (0.5)
    #[arg(long, value_name = "RATE", requires = "compressor")]
    pub compressor_rate: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// Model config id (configs/models/), local HF directory, or .gguf file
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors)
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Feed the prompt as is, without the model's chat template
    #[arg(long)]
    pub raw: bool,
    /// System message (chat mode)
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling mass (1.0 = off)
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off)
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Sampling seed
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the completion contains this text (repeatable)
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// One JSON object per line: text, token_ids, finish_reason, prompt_tokens, completion_tokens
    #[arg(long)]
    pub json: bool,
    /// A prompt (repeatable; all prompts run as one batch)
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
}
