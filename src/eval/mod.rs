//! Evaluation: one generation of the whole test set by one condition of one model →
//! a resumable prediction file.
//!
//! `Example → messages (zero-shot, 5-shot or the LoRA model's zero-shot prompt) → Backend →
//! raw output → extracted answer → results/predictions/<model>/<task>/<condition>/seed-<k>.jsonl`.
//! Examples already in the file are skipped. Greedy backends generate the test set once per
//! model × condition (the eval seeds resample it at scoring time); sampling backends generate
//! it once per seed ([`predictions::Generation`]).

pub mod compressed;
pub mod predictions;
pub mod sample;
pub mod windows;

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Completion, Request, Usage};
use crate::config::{AnswerKind, TaskConfig};
use crate::data::Example;
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressMode};
use crate::prompt::chat_template::Message;
use crate::prompt::task::TaskPrompt;
use crate::score::{Parsed, Scorer};
use predictions::{Generation, Prediction, PredictionFile};

/// Demonstrations in a few-shot prompt.
pub const N_SHOTS: usize = 5;

/// Prompts per generate call of a local model (`bwb eval --batch-size`, `bwb run`).
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// An evaluation condition, serialised by its name (`zero-shot`, `5-shot`, `lora-500`,
/// `lora-full`) and ordered by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Condition {
    #[serde(rename = "zero-shot")]
    ZeroShot,
    #[serde(rename = "5-shot")]
    FiveShot,
    /// The best adapter of a training condition.
    #[serde(rename = "lora-500")]
    Lora500,
    #[serde(rename = "lora-full")]
    LoraFull,
}

impl PartialOrd for Condition {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Condition {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Condition {
    pub const NAMES: &'static str =
        "zero-shot, 5-shot, lora (lora-500 and lora-full), lora-500, lora-full or all";

    pub fn name(self) -> &'static str {
        match self {
            Self::ZeroShot => "zero-shot",
            Self::FiveShot => "5-shot",
            Self::Lora500 => "lora-500",
            Self::LoraFull => "lora-full",
        }
    }

    /// The condition a stored name (a results directory, a record) stands for.
    pub fn from_name(name: &str) -> Option<Condition> {
        [
            Self::ZeroShot,
            Self::FiveShot,
            Self::Lora500,
            Self::LoraFull,
        ]
        .into_iter()
        .find(|c| c.name() == name)
    }

    pub fn is_lora(self) -> bool {
        matches!(self, Self::Lora500 | Self::LoraFull)
    }

    /// Parse `--condition`. API models have no LoRA conditions: `all` means zero-shot and
    /// 5-shot for them, and asking for lora is an error naming the model.
    /// A comma-separated list is the union of its parts, in order, without repeats.
    pub fn parse(s: &str, api_model: Option<&str>) -> Result<Vec<Condition>> {
        if s.contains(',') {
            let mut out = Vec::new();
            for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                for c in Self::parse(part, api_model)? {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
            }
            if out.is_empty() {
                return Err(Error::Config(format!(
                    "--condition {s}: expected {}",
                    Self::NAMES
                )));
            }
            return Ok(out);
        }
        let all = match api_model {
            Some(_) => vec![Self::ZeroShot, Self::FiveShot],
            None => vec![
                Self::ZeroShot,
                Self::FiveShot,
                Self::Lora500,
                Self::LoraFull,
            ],
        };
        let out = match s.trim() {
            "zero-shot" | "zeroshot" | "0-shot" => vec![Self::ZeroShot],
            "5-shot" | "five-shot" | "few-shot" => vec![Self::FiveShot],
            "lora" => vec![Self::Lora500, Self::LoraFull],
            "lora-500" => vec![Self::Lora500],
            "lora-full" => vec![Self::LoraFull],
            "all" => all,
            other => {
                return Err(Error::Config(format!(
                    "--condition {other}: expected {}",
                    Self::NAMES
                )))
            }
        };
        if let Some(m) = api_model {
            if out.iter().any(|c| c.is_lora()) {
                return Err(Error::Config(format!(
                    "--condition {s}: `{m}` is an API model and has no LoRA adapter; use zero-shot, 5-shot or all"
                )));
            }
        }
        Ok(out)
    }
}

/// Characters of contract a CUAD demonstration shows: five whole contracts would not fit
/// any context, so a shot shows the passage around its first answer.
pub const SHOT_CONTEXT_CHARS: usize = 1500;

/// A demonstration as shown in a 5-shot prompt: span examples with a long context are cut
/// to [`SHOT_CONTEXT_CHARS`] around their first span, and the target keeps only the spans
/// that remain visible.
pub fn shot_view(ex: &Example, no_answer: &str) -> Example {
    let (crate::data::Answer::Spans { spans }, Some(ctx)) = (&ex.answer, ex.inputs.get("context"))
    else {
        return ex.clone();
    };
    let chars: Vec<char> = ctx.chars().collect();
    if chars.len() <= SHOT_CONTEXT_CHARS {
        return ex.clone();
    }
    let start = spans
        .first()
        .map(|s| s.start.saturating_sub(SHOT_CONTEXT_CHARS / 4))
        .unwrap_or(0)
        .min(chars.len() - SHOT_CONTEXT_CHARS);
    let end = start + SHOT_CONTEXT_CHARS;
    let mut out = ex.clone();
    out.inputs
        .insert("context".into(), chars[start..end].iter().collect());
    let visible: Vec<&str> = spans
        .iter()
        .filter(|s| s.start >= start && s.start + s.text.chars().count() <= end)
        .map(|s| s.text.as_str())
        .collect();
    out.target = if visible.is_empty() {
        no_answer.to_string()
    } else {
        visible.join("\n")
    };
    out
}

/// The conversation for one example: system + user, with `shots` as alternating user /
/// assistant turns in between.
pub fn messages(prompt: &TaskPrompt, shots: &[&Example], ex: &Example) -> Result<Vec<Message>> {
    let mut m = prompt.messages(ex)?;
    if shots.is_empty() {
        return Ok(m);
    }
    let question = m.split_off(1);
    for s in shots {
        let user = prompt
            .messages(s)?
            .into_iter()
            .find(|x| x.role == "user")
            .ok_or_else(|| {
                Error::Config(format!(
                    "task `{}`: the prompt has no user message",
                    ex.task
                ))
            })?;
        m.push(user);
        m.push(Message::assistant(s.target.clone()));
    }
    m.extend(question);
    Ok(m)
}

/// The generation a backend makes of a test set.
pub fn generation_of(backend: &dyn Backend) -> Generation {
    if backend.samples() {
        Generation::Sampled
    } else {
        Generation::Greedy
    }
}

/// The seeds that need a generation of their own: every seed for a sampling backend, the
/// first for a greedy one (its 5-shot demonstrations; the others resample at scoring time).
pub fn generation_seeds(generation: Generation, seeds: &[u64]) -> &[u64] {
    match generation {
        Generation::Sampled => seeds,
        _ => &seeds[..seeds.len().min(1)],
    }
}

/// One run: one generation of the test set by a condition of a model on a task.
pub struct Job<'a> {
    pub backend: &'a dyn Backend,
    /// Model name in records and paths.
    pub model: &'a str,
    pub task: &'a TaskConfig,
    pub prompt: &'a TaskPrompt,
    pub condition: Condition,
    /// The generation's seed (it chose the 5-shot demonstrations).
    pub seed: u64,
    /// Which generation of the run this is (0, 1, …; sampling backends draw anew for each).
    pub draw: u64,
    pub test: &'a [Example],
    /// Demonstrations (5-shot), empty otherwise.
    pub shots: Vec<&'a Example>,
    /// The prediction file.
    pub path: PathBuf,
    /// How progress is shown: a bar, periodic log lines, or nothing.
    pub progress: ProgressMode,
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub path: PathBuf,
    pub generation: Generation,
    /// Test examples (each generated once).
    pub examples: usize,
    /// Examples finished by an earlier run.
    pub skipped: usize,
    /// Lines written by this run (errors included).
    pub written: usize,
    pub errors: usize,
    /// Inferences run (windows count one each).
    pub inferences: usize,
    pub requests_sent: usize,
    pub cache_hits: usize,
    pub spent_usd: f64,
}

/// One example to infer: its messages and its window messages.
struct Unit<'a> {
    ex: &'a Example,
    messages: Vec<Message>,
    windows: Vec<Vec<Message>>,
    done: Vec<Option<Completion>>,
    /// The context was cut to fit.
    truncated: bool,
}

/// The fewest contract tokens a window may hold.
pub const MIN_WINDOW_TOKENS: usize = 64;

/// The prompt of a long-context example (QA, lists, retrieval, summaries) whose context
/// does not fit `max_seq_length − max_new_tokens`: the middle of the context is cut out, as
/// LongBench does, keeping its head and tail. Returns the messages and whether anything was
/// cut. Backends that cannot count tokens (API models) get the full context; their own
/// limit errors become per-example errors.
fn fit_context(job: &Job<'_>, ex: &Example, full: Vec<Message>) -> Result<(Vec<Message>, bool)> {
    let Some((key, context)) = ex.long_input() else {
        return Ok((full, false));
    };
    let Some(total) = job.backend.count_tokens(&full)? else {
        return Ok((full, false));
    };
    let budget = job
        .task
        .max_seq_length
        .saturating_sub(job.task.max_new_tokens);
    if total <= budget {
        return Ok((full, false));
    }
    let chars: Vec<char> = context.chars().collect();
    let with = |keep: usize| -> Result<Vec<Message>> {
        let head = keep / 2;
        let text: String = chars[..head]
            .iter()
            .chain(&chars[chars.len() - (keep - head)..])
            .collect();
        let mut e = ex.clone();
        e.inputs.insert(key.clone(), text);
        messages(job.prompt, &job.shots, &e)
    };
    // Tokens of everything but the context, then keep the share of the context that fits;
    // tokens per character are not uniform, so correct by the measured excess (a few passes).
    let overhead = job.backend.count_tokens(&with(0)?)?.unwrap_or(0);
    let mut keep = chars.len();
    let mut tokens = total;
    for _ in 0..8 {
        if overhead >= budget {
            break;
        }
        let ctx_tokens = tokens.saturating_sub(overhead).max(1) as f64;
        let room = (budget - overhead) as f64;
        keep = ((keep as f64) * (room / ctx_tokens) * 0.98).floor() as usize;
        let m = with(keep)?;
        tokens = job.backend.count_tokens(&m)?.unwrap_or(0);
        if tokens <= budget {
            return Ok((m, true));
        }
    }
    Err(Error::Config(format!(
        "task `{}` example `{}`: the prompt takes {overhead} tokens without its `{key}` ({tokens} with {keep} characters of it), but max_seq_length {} − max_new_tokens {} leaves {budget}; raise max_seq_length in the dataset's config",
        job.task.id, ex.id, job.task.max_seq_length, job.task.max_new_tokens
    )))
}

/// Window messages for a spans task whose prompt does not fit `max_seq_length` (one entry,
/// the full prompt, when it fits or the backend cannot count tokens).
fn window_messages(job: &Job<'_>, ex: &Example, full: &[Message]) -> Result<Vec<Vec<Message>>> {
    let one = || Ok(vec![full.to_vec()]);
    if job.task.answer.kind != AnswerKind::Spans {
        return one();
    }
    let Some(context) = ex.inputs.get("context") else {
        return one();
    };
    let Some(total) = job.backend.count_tokens(full)? else {
        return one();
    };
    let budget = job
        .task
        .max_seq_length
        .saturating_sub(job.task.max_new_tokens);
    if total <= budget {
        return one();
    }
    let mut empty = ex.clone();
    empty.inputs.insert("context".into(), String::new());
    // Demonstrations must leave room for a useful window of the contract: drop shots from the
    // end until a quarter of the budget (at least MIN_WINDOW_TOKENS) is left for it.
    let want_room = (budget / 4).max(MIN_WINDOW_TOKENS).min(budget);
    let mut shots: Vec<&Example> = job.shots.clone();
    let mut overhead;
    loop {
        overhead = job
            .backend
            .count_tokens(&messages(job.prompt, &shots, &empty)?)?
            .unwrap_or(0);
        if budget.saturating_sub(overhead) >= want_room || shots.is_empty() {
            break;
        }
        shots.pop();
    }
    if shots.len() < job.shots.len() {
        tracing::warn!(
            "task `{}` example `{}`: {} demonstrations leave no room for the contract in max_seq_length {}; using {}",
            job.task.id,
            ex.id,
            job.shots.len(),
            job.task.max_seq_length,
            shots.len()
        );
    }
    let room = budget.saturating_sub(overhead);
    if room < MIN_WINDOW_TOKENS.min(budget) {
        return Err(Error::Config(format!(
            "task `{}` example `{}`: the prompt without the contract takes {overhead} tokens, leaving {room} of max_seq_length {} − max_new_tokens {} for it; raise max_seq_length in configs/tasks/{}.yaml",
            job.task.id,
            ex.id,
            job.task.max_seq_length,
            job.task.max_new_tokens,
            job.task.id
        )));
    }
    let chars = windows::window_chars(
        context.chars().count(),
        total.saturating_sub(overhead),
        room,
    );
    windows::split(context, chars)
        .into_iter()
        .map(|w| {
            let mut e = ex.clone();
            e.inputs.insert("context".into(), w);
            messages(job.prompt, &shots, &e)
        })
        .collect()
}

/// Run one job: skip finished examples, infer the rest, append a line per example as it
/// finishes.
pub fn run(job: &Job<'_>) -> Result<Outcome> {
    let generation = generation_of(job.backend);
    let scorer = crate::score::scorer(job.task);
    let mut file = PredictionFile::open(&job.path, generation)?;
    let mut out = Outcome {
        path: job.path.clone(),
        generation,
        examples: job.test.len(),
        ..Outcome::default()
    };
    let mut units: Vec<Unit<'_>> = Vec::new();
    for ex in job.test {
        if file.is_done(&ex.id) {
            out.skipped += 1;
            continue;
        }
        units.push(Unit {
            ex,
            messages: Vec::new(),
            windows: Vec::new(),
            done: Vec::new(),
            truncated: false,
        });
    }
    let sample = (generation == Generation::Sampled).then_some(job.draw);
    let mut requests = Vec::new();
    let mut owner: Vec<(usize, usize)> = Vec::new();
    for (ui, u) in units.iter_mut().enumerate() {
        u.messages = messages(job.prompt, &job.shots, u.ex)?;
        if job.task.answer.kind.is_long_context() {
            let full = std::mem::take(&mut u.messages);
            (u.messages, u.truncated) = fit_context(job, u.ex, full)?;
        }
        u.windows = window_messages(job, u.ex, &u.messages)?;
        u.done = vec![None; u.windows.len()];
        for (wi, m) in u.windows.iter().enumerate() {
            requests.push(Request {
                key: owner.len(),
                messages: m.clone(),
                max_new_tokens: job.task.max_new_tokens,
                sample,
            });
            owner.push((ui, wi));
        }
    }
    out.inferences = requests.len();
    if requests.is_empty() {
        return Ok(out);
    }
    let label = format!(
        "eval {}/{}/{}/seed-{}",
        job.model,
        job.task.id,
        job.condition.name(),
        job.seed
    );
    let mut progress = Progress::new(job.progress, label, "examples", units.len() as u64);
    let t0 = Instant::now();
    let mut out_tokens = 0u64;
    let mut cost = 0.0f64;
    let mut sink = |c: Completion| -> Result<()> {
        let (ui, wi) = *owner
            .get(c.key)
            .ok_or_else(|| Error::Config(format!("backend returned unknown request {}", c.key)))?;
        out_tokens += c.usage.output_tokens;
        if !c.from_cache {
            cost += c.cost_usd.unwrap_or(0.0);
        }
        let u = &mut units[ui];
        u.done[wi] = Some(c);
        if u.done.iter().any(Option::is_none) {
            return Ok(());
        }
        let done: Vec<Completion> = u.done.iter_mut().filter_map(Option::take).collect();
        let mut p = prediction(job, scorer.as_ref(), generation, u.ex, &u.messages, &done);
        p.truncated = u.truncated;
        if p.error.is_some() {
            out.errors += 1;
        }
        file.append(&p)?;
        out.written += 1;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        progress.update(
            out.written as u64,
            format!(
                "{} errors, {:.2} examples/s, {:.1} tokens/s, ${cost:.4}",
                out.errors,
                out.written as f64 / secs,
                out_tokens as f64 / secs
            ),
        );
        Ok(())
    };
    let res = job.backend.generate(requests, &mut sink);
    match &res {
        Ok(_) => progress.finish(),
        Err(_) => progress.discard(),
    }
    let stats = res?;
    out.requests_sent = stats.requests_sent;
    out.cache_hits = stats.cache_hits;
    out.spent_usd = stats.spent_usd;
    Ok(out)
}

/// The prediction line of one example from its window completions.
fn prediction(
    job: &Job<'_>,
    scorer: &dyn Scorer,
    generation: Generation,
    ex: &Example,
    input: &[Message],
    done: &[Completion],
) -> Prediction {
    let mut usage = Usage::default();
    let mut latency_ms = 0.0;
    let mut compute_ms: Option<f64> = Some(0.0);
    let mut cost: Option<f64> = Some(0.0);
    for c in done {
        usage.add(&c.usage);
        latency_ms += c.latency_ms;
        compute_ms = compute_ms.zip(c.compute_ms).map(|(a, b)| a + b);
        cost = match (cost, c.cost_usd) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    let raw_output = if done.len() == 1 {
        done[0].text.clone()
    } else {
        done.iter()
            .map(|c| c.text.as_str())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let prediction = if done.len() > 1 {
        let per: Vec<Vec<String>> = done
            .iter()
            .map(|c| match scorer.extract(&c.text) {
                Parsed::Spans { spans } => spans,
                _ => Vec::new(),
            })
            .collect();
        Parsed::Spans {
            spans: windows::merge_spans(&per),
        }
    } else {
        scorer.extract(&raw_output)
    };
    let error = done.iter().find_map(|c| c.error.clone());
    Prediction {
        id: ex.id.clone(),
        example_id: ex.id.clone(),
        model: job.model.to_string(),
        task: job.task.id.clone(),
        condition: job.condition,
        seed: job.seed,
        generation,
        input_messages: input.to_vec(),
        raw_output,
        prediction,
        gold: ex.answer.clone(),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cached_input_tokens: usage.cached_input_tokens,
        reasoning_tokens: usage.reasoning_tokens,
        latency_ms,
        compute_ms,
        cost_usd: cost,
        error,
        finish_reason: done.last().and_then(|c| c.finish_reason.clone()),
        windows: done.len(),
        from_cache: done.iter().all(|c| c.from_cache),
        truncated: false,
    }
}
