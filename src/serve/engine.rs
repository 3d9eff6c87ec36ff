//! The engine thread: one OS thread owns the models and runs continuous batching, fed by a
//! queue of jobs; each job's events (text deltas, finished rows, an error) go back on its own
//! channel as they happen, so the HTTP side never blocks on the engine and streams tokens as
//! they are decoded.
//!
//! Every engine step:
//! 1. drops the sequences of requests whose client went away (their receiver is closed),
//!    freeing their rows of the KV cache;
//! 2. admits waiting requests first come, first served while their rows fit in
//!    `max_num_seqs` (a request that does not fit waits, and so do the ones behind it);
//! 3. decodes one token for every running sequence, one batch per served model (each
//!    model's running rows share one KV cache, left-padded: a row's own slots are contiguous
//!    and masked padding fills the rest);
//! 4. spends the rest of the `max_batch_tokens` budget on prefill chunks of admitted
//!    sequences, FCFS. A sequence prefills into its own cache in chunks of
//!    `max_batch_tokens − max_num_seqs` tokens (so a chunk always fits beside a full decode
//!    step, and chunk boundaries never depend on batch-mates); when its prompt is in, its
//!    first token is sampled and its cache joins the model's running batch. (A Phi-3
//!    longrope row longer than the rope switch is prefilled whole, and a running row that
//!    reaches the switch leaves the batch to be prefilled again, as `generate` does.)
//!
//! Each row samples with its own RNG (the request's seed plus the row's index), so its output
//! does not depend on its batch-mates. An error or a panic during a step fails every running
//! request with that message and the engine keeps serving the waiting ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc as tmpsc;

use super::metrics::{Latency, Metrics};
use crate::model::generate::{self, Completion, FinishReason, GenParams, Row, TokenLogprob};
use crate::model::load::LoadedModel;
use crate::model::{Cache, ForwardCtx};

/// What the engine tells a request, in order.
#[derive(Debug)]
pub enum Event {
    /// Text row `row` adds (streaming requests only): never part of a stop string, never a
    /// partial UTF-8 character; with the logprob entries of the prompt and generated tokens
    /// not sent before (when the request asks for logprobs).
    Delta {
        row: usize,
        text: String,
        prompt_logprobs: Vec<TokenLogprob>,
        logprobs: Vec<TokenLogprob>,
    },
    /// Row `row` is finished.
    Done { row: usize, completion: Completion },
    /// The request failed; no more events follow.
    Error(String),
}

/// One request's rows (prompt token ids, `n` copies each) for one served model.
pub struct Job {
    pub model: usize,
    pub rows: Vec<Vec<u32>>,
    pub params: GenParams,
    /// Send `Event::Delta`s as tokens are decoded.
    pub stream: bool,
    /// The request's prompt tokens as `usage` counts them (for the metrics).
    pub prompt_tokens: usize,
    events: tmpsc::UnboundedSender<Event>,
    arrived: Instant,
    /// Counts this job in flight until the engine drops it (answered, failed or cancelled).
    _in_flight: InFlight,
}

/// What `EngineHandle::submit` needs besides the rows.
pub struct Submit {
    pub model: usize,
    pub rows: Vec<Vec<u32>>,
    pub params: GenParams,
    pub stream: bool,
    pub prompt_tokens: usize,
}

/// The HTTP side's handle: submit jobs without blocking, refuse when the queue is full.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Job>,
    /// Requests accepted and not yet answered (waiting or running).
    in_flight: Arc<AtomicUsize>,
    /// `max_num_seqs + max_queue`: more in flight answers 429.
    capacity: usize,
}

/// Why a job was not queued.
pub enum SubmitError {
    QueueFull,
    EngineGone,
}

/// Decrements the in-flight count when a job is answered (or dropped).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EngineHandle {
    /// Queue a job; its events arrive on the returned receiver. Dropping the receiver
    /// cancels the job at the engine's next step.
    pub fn submit(&self, s: Submit) -> Result<tmpsc::UnboundedReceiver<Event>, SubmitError> {
        let prev = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        if prev >= self.capacity {
            return Err(SubmitError::QueueFull);
        }
        let (events, rx) = tmpsc::unbounded_channel();
        let job = Job {
            model: s.model,
            rows: s.rows,
            params: s.params,
            stream: s.stream,
            prompt_tokens: s.prompt_tokens,
            events,
            arrived: Instant::now(),
            _in_flight: guard,
        };
        self.tx.send(job).map_err(|_| SubmitError::EngineGone)?;
        Ok(rx)
    }
}

/// The engine's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Rows (running and prefilling sequences) at once.
    pub max_num_seqs: usize,
    /// Tokens one step may run: one per decoding row plus prefill chunks.
    pub max_batch_tokens: usize,
    /// Requests that may wait beyond the running ones before 429.
    pub max_queue: usize,
}

impl Limits {
    /// Prefill chunk length: what a step leaves beside a full decode batch.
    fn chunk(&self) -> usize {
        self.max_batch_tokens
            .saturating_sub(self.max_num_seqs)
            .max(1)
    }
}

/// Start the engine thread over `models`.
pub fn start(
    models: Vec<Arc<LoadedModel>>,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> std::io::Result<EngineHandle> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("bwb-engine".into())
        .spawn(move || Engine::new(&models, limits, metrics).run(&rx))?;
    Ok(EngineHandle {
        tx,
        in_flight: Arc::new(AtomicUsize::new(0)),
        capacity: limits.max_num_seqs.saturating_add(limits.max_queue),
    })
}

/// An admitted request; its sequences refer to it by id.
struct Request {
    model: usize,
    params: GenParams,
    stream: bool,
    events: tmpsc::UnboundedSender<Event>,
    arrived: Instant,
    first_token: bool,
    rows_left: usize,
    _in_flight: InFlight,
}

/// One row of an admitted request.
struct Seq {
    req: u64,
    row: usize,
    prompt: Vec<u32>,
    /// Tokens of `target()` already in `cache` (while prefilling).
    done: usize,
    /// The sequence's own cache while it prefills; moved into the batch afterwards.
    cache: Cache,
    state: Row,
    /// Bytes of the text already streamed.
    sent: usize,
    last_token: Instant,
}

impl Seq {
    /// What prefill must put in the cache: the prompt, plus the tokens so far when a rope
    /// switch forces a rebuild.
    fn target(&self) -> Vec<u32> {
        [self.prompt.as_slice(), self.state.out.token_ids.as_slice()].concat()
    }

    /// Position of the newest token (the one fed next).
    fn pos(&self) -> i64 {
        (self.prompt.len() + self.state.out.token_ids.len()) as i64 - 1
    }
}

/// One served model's running rows and their shared cache.
#[derive(Default)]
struct Batch {
    cache: Cache,
    seqs: Vec<Seq>,
}

struct Engine<'a> {
    models: &'a [Arc<LoadedModel>],
    limits: Limits,
    metrics: Arc<Metrics>,
    ctx: ForwardCtx,
    waiting: VecDeque<Job>,
    requests: HashMap<u64, Request>,
    next_req: u64,
    prefilling: VecDeque<Seq>,
    batches: Vec<Batch>,
}

impl<'a> Engine<'a> {
    fn new(models: &'a [Arc<LoadedModel>], limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            models,
            limits,
            metrics,
            ctx: ForwardCtx::default(),
            waiting: VecDeque::new(),
            requests: HashMap::new(),
            next_req: 0,
            prefilling: VecDeque::new(),
            batches: models.iter().map(|_| Batch::default()).collect(),
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Job>) {
        loop {
            if self.requests.is_empty() && self.waiting.is_empty() {
                self.set_gauges();
                match rx.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return, // every handle dropped: the server is shutting down
                }
            }
            self.waiting.extend(rx.try_iter());
            // A panic inside a step fails the running requests and the engine keeps serving.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step()));
            let err = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the engine panicked on this batch".to_string(),
            };
            tracing::warn!("engine step failed: {err}");
            self.fail_all(&err);
        }
    }

    fn step(&mut self) -> crate::error::Result<()> {
        self.drop_cancelled()?;
        self.admit()?;
        let mut decoded = 0;
        for m in 0..self.batches.len() {
            decoded += self.decode_model(m)?;
        }
        self.prefill(self.limits.max_batch_tokens.saturating_sub(decoded))?;
        self.set_gauges();
        Ok(())
    }

    fn set_gauges(&self) {
        let mut running = vec![0; self.models.len()];
        let mut waiting = vec![0; self.models.len()];
        for r in self.requests.values() {
            running[r.model] += 1;
        }
        for j in &self.waiting {
            waiting[j.model] += 1;
        }
        self.metrics.set_gauges(&running, &waiting);
    }

    /// Answer every admitted request with `err` and forget them.
    fn fail_all(&mut self, err: &str) {
        for (_, r) in self.requests.drain() {
            let _ = r.events.send(Event::Error(err.to_string()));
            self.metrics.finished(r.model, "error");
        }
        self.prefilling.clear();
        self.batches.iter_mut().for_each(|b| *b = Batch::default());
        self.set_gauges();
    }

    /// Drop waiting jobs and running sequences whose client went away.
    fn drop_cancelled(&mut self) -> crate::error::Result<()> {
        self.waiting.retain(|j| !j.events.is_closed());
        let gone: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, r)| r.events.is_closed())
            .map(|(&id, _)| id)
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for id in &gone {
            if let Some(r) = self.requests.remove(id) {
                self.metrics.finished(r.model, "abort");
            }
        }
        tracing::debug!("engine: {} requests cancelled by their clients", gone.len());
        let live = |s: &Seq| !gone.contains(&s.req);
        self.prefilling.retain(live);
        for m in 0..self.batches.len() {
            self.retain_rows(m, live)?;
        }
        Ok(())
    }

    /// Keep the rows of model `m`'s batch that `keep` says (freeing the others' cache rows)
    /// and return the others.
    fn retain_rows(
        &mut self,
        m: usize,
        keep: impl Fn(&Seq) -> bool,
    ) -> crate::error::Result<Vec<Seq>> {
        let batch = &mut self.batches[m];
        if batch.seqs.iter().all(&keep) {
            return Ok(Vec::new());
        }
        let (mut kept, mut idx, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (j, s) in std::mem::take(&mut batch.seqs).into_iter().enumerate() {
            if keep(&s) {
                kept.push(s);
                idx.push(j);
            } else {
                gone.push(s);
            }
        }
        if kept.is_empty() {
            batch.cache = Cache::default();
        } else {
            generate::keep_rows(&mut batch.cache, &idx, &self.models[m].device)?;
            // Columns before the oldest remaining row's first slot are padding in every row.
            let needed = kept.iter().map(|s| s.pos() as usize).max().unwrap_or(0);
            batch
                .cache
                .trim_front(batch.cache.len().saturating_sub(needed))?;
        }
        batch.seqs = kept;
        Ok(gone)
    }

    /// Admit waiting requests FCFS while their rows fit beside the running ones.
    fn admit(&mut self) -> crate::error::Result<()> {
        let mut rows =
            self.prefilling.len() + self.batches.iter().map(|b| b.seqs.len()).sum::<usize>();
        while let Some(job) = self.waiting.front() {
            if rows > 0 && rows + job.rows.len() > self.limits.max_num_seqs {
                break;
            }
            let Some(job) = self.waiting.pop_front() else {
                break;
            };
            rows += job.rows.len();
            let id = self.next_req;
            self.next_req += 1;
            self.metrics.add_prompt_tokens(job.model, job.prompt_tokens);
            tracing::debug!(
                "engine: admitted request {id} ({} rows); {rows} rows running",
                job.rows.len()
            );
            // Nothing to run unless the prompt itself is scored (echo with logprobs).
            let zero = job.params.max_new_tokens == 0 && job.params.prompt_logprobs.is_none();
            let model = &self.models[job.model];
            let seqs: Vec<Seq> = job
                .rows
                .into_iter()
                .enumerate()
                .map(|(i, prompt)| Seq {
                    req: id,
                    row: i,
                    state: Row::new(prompt.len(), job.params.seed.wrapping_add(i as u64)),
                    prompt,
                    done: 0,
                    cache: model.model.new_cache(),
                    sent: 0,
                    last_token: Instant::now(),
                })
                .collect();
            if seqs.is_empty() {
                continue; // nothing to generate; dropping the job closes its channel
            }
            self.requests.insert(
                id,
                Request {
                    model: job.model,
                    stream: job.stream,
                    events: job.events,
                    arrived: job.arrived,
                    first_token: false,
                    rows_left: seqs.len(),
                    _in_flight: job._in_flight,
                    params: job.params,
                },
            );
            for seq in seqs {
                if zero {
                    self.finish_seq(seq)?;
                } else {
                    self.prefilling.push_back(seq);
                }
            }
        }
        Ok(())
    }

    /// Decode one token for every running row of model `m`; returns how many rows ran.
    fn decode_model(&mut self, m: usize) -> crate::error::Result<usize> {
        let model = self.models[m].clone();
        self.rope_rebuild(m, &model)?;
        let batch = &mut self.batches[m];
        if batch.seqs.is_empty() {
            return Ok(0);
        }
        let feed: Vec<u32> = batch
            .seqs
            .iter()
            .map(|s| s.state.last().unwrap_or(model.pad_id))
            .collect();
        let pos: Vec<i64> = batch.seqs.iter().map(Seq::pos).collect();
        let logits = generate::decode_step(
            &model.model,
            &model.device,
            &mut batch.cache,
            feed,
            pos,
            &self.ctx,
        )?;
        let n = batch.seqs.len();
        let mut finished = Vec::new();
        for (seq, row_logits) in batch.seqs.iter_mut().zip(&logits) {
            let Some(req) = self.requests.get_mut(&seq.req) else {
                continue;
            };
            if take_token(seq, req, row_logits, &model, &self.metrics)? {
                finished.push((seq.req, seq.row));
            }
        }
        if !finished.is_empty() {
            let done = self.retain_rows(m, |s| !finished.contains(&(s.req, s.row)))?;
            for seq in done {
                self.finish_seq(seq)?;
            }
        }
        Ok(n)
    }

    /// Rows about to cross the model's rope switch (Phi-3 longrope) leave the batch to be
    /// prefilled again from scratch (prompt plus tokens so far), as `generate` does.
    fn rope_rebuild(&mut self, m: usize, model: &LoadedModel) -> crate::error::Result<()> {
        let Some(at) = model.model.rope_switch_at() else {
            return Ok(());
        };
        let out = self.retain_rows(m, |s| s.pos() != at as i64)?;
        for mut seq in out.into_iter().rev() {
            seq.done = 0;
            seq.cache = model.model.new_cache();
            self.prefilling.push_front(seq);
        }
        Ok(())
    }

    /// Prefill admitted sequences FCFS, chunk by chunk, within `budget` tokens; a sequence
    /// whose prompt is in takes its first token and joins its model's batch.
    fn prefill(&mut self, mut budget: usize) -> crate::error::Result<()> {
        let chunk = self.limits.chunk();
        let mut spent = 0;
        while let Some(seq) = self.prefilling.front_mut() {
            let Some((m, prompt_k, zero)) = self.requests.get(&seq.req).map(|r| {
                (
                    r.model,
                    r.params.prompt_logprobs,
                    r.params.max_new_tokens == 0,
                )
            }) else {
                self.prefilling.pop_front();
                continue;
            };
            let model = self.models[m].clone();
            let target = seq.target();
            // Phi-3 picks its rope table per forward by the row's largest position, so a
            // row past the switch is prefilled whole (as `generate` does), over budget if
            // it comes first in the step.
            let whole = model
                .model
                .rope_switch_at()
                .is_some_and(|at| target.len() > at);
            let end = match whole {
                true => target.len(),
                false => target.len().min((seq.done / chunk + 1) * chunk),
            };
            let len = end - seq.done;
            if len > budget && spent > 0 {
                break;
            }
            let score =
                prompt_k.and_then(|k| seq.state.prompt_score(&seq.prompt, seq.done, end, k));
            let (logits, scored) = generate::extend_row(
                &model.model,
                &model.device,
                &mut seq.cache,
                (&target[seq.done..end], seq.done),
                &self.ctx,
                score,
            )?;
            seq.state.add_prompt_logprobs(scored);
            budget = budget.saturating_sub(len);
            spent += len;
            seq.done = end;
            if end < target.len() {
                continue;
            }
            let Some(mut seq) = self.prefilling.pop_front() else {
                break;
            };
            let Some(req) = self.requests.get_mut(&seq.req) else {
                continue;
            };
            if zero || take_token(&mut seq, req, &logits, &model, &self.metrics)? {
                self.finish_seq(seq)?;
            } else {
                let batch = &mut self.batches[m];
                batch.cache.append_rows(std::mem::take(&mut seq.cache))?;
                batch.seqs.push(seq);
            }
        }
        Ok(())
    }

    /// Answer a finished row (its last text delta when streaming, then `Done`); the request
    /// is answered and forgotten after its last row.
    fn finish_seq(&mut self, seq: Seq) -> crate::error::Result<()> {
        let Some(req) = self.requests.get_mut(&seq.req) else {
            return Ok(());
        };
        let model = &self.models[req.model];
        let (row, sent, mut state) = (seq.row, seq.sent, seq.state);
        let (prompt_logprobs, logprobs) = state.take_new_logprobs();
        let completion = state.finish(&|ids| model.decode(ids))?;
        let text = match completion.text.get(sent..) {
            Some(t) => t.to_string(),
            None => String::new(),
        };
        if req.stream && !(text.is_empty() && prompt_logprobs.is_empty() && logprobs.is_empty()) {
            let _ = req.events.send(Event::Delta {
                row,
                text,
                prompt_logprobs,
                logprobs,
            });
        }
        let reason = completion.finish_reason;
        let _ = req.events.send(Event::Done { row, completion });
        req.rows_left -= 1;
        if req.rows_left == 0 {
            let e2e = req.arrived.elapsed().as_secs_f64();
            self.metrics.observe(req.model, Latency::EndToEnd, e2e);
            self.metrics.finished(req.model, reason_label(reason));
            self.requests.remove(&seq.req);
        }
        Ok(())
    }
}

fn reason_label(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// Sample `seq`'s next token from its logits and record it (metrics, a streamed delta);
/// true when the row is finished.
fn take_token(
    seq: &mut Seq,
    req: &mut Request,
    logits: &[f32],
    model: &LoadedModel,
    metrics: &Metrics,
) -> crate::error::Result<bool> {
    let decode = |ids: &[u32]| model.decode(ids);
    let before = seq.state.out.token_ids.len();
    let reason = seq
        .state
        .step(logits, &req.params, &model.eos_ids, &decode)?;
    let now = Instant::now();
    if seq.state.out.token_ids.len() > before {
        metrics.add_generation_tokens(req.model, 1);
        if before > 0 {
            let gap = now.duration_since(seq.last_token).as_secs_f64();
            metrics.observe(req.model, Latency::InterToken, gap);
        }
    }
    if !req.first_token {
        req.first_token = true;
        let ttft = now.duration_since(req.arrived).as_secs_f64();
        metrics.observe(req.model, Latency::FirstToken, ttft);
    }
    seq.last_token = now;
    if reason.is_some() {
        return Ok(true);
    }
    if req.stream {
        let text = decode(&seq.state.out.token_ids)?;
        let safe = safe_len(&text, &req.params.stop);
        if safe > seq.sent && text.is_char_boundary(seq.sent) {
            let piece = text[seq.sent..safe].to_string();
            seq.sent = safe;
            let (prompt_logprobs, logprobs) = seq.state.take_new_logprobs();
            let _ = req.events.send(Event::Delta {
                row: seq.row,
                text: piece,
                prompt_logprobs,
                logprobs,
            });
        }
    }
    Ok(false)
}

/// How much of a row's text may be streamed: not a trailing partial UTF-8 character
/// (decoded as U+FFFD) and not a trailing piece that could still grow into a stop string.
pub fn safe_len(text: &str, stop: &[String]) -> usize {
    let t = text.trim_end_matches('\u{FFFD}');
    let hold = stop
        .iter()
        .flat_map(|s| {
            (1..s.len())
                .filter(|&k| s.is_char_boundary(k) && t.ends_with(&s[..k]))
                .max()
        })
        .max()
        .unwrap_or(0);
    t.len() - hold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_len_holds_back_partial_stop_strings_and_characters() {
        let stop = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(safe_len("hello", &stop), 5);
        assert_eq!(safe_len("hello E", &stop), 6);
        assert_eq!(safe_len("hello EN", &stop), 6);
        assert_eq!(safe_len("a\n", &stop), 1);
        assert_eq!(safe_len("ab\u{FFFD}", &stop), 2);
        assert_eq!(safe_len("hello", &[]), 5);
        assert_eq!(safe_len("café", &["é!".to_string()]), "caf".len());
    }
}
