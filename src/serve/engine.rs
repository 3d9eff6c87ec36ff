//! The engine thread: one OS thread owns the model and runs continuous batching, fed by a
//! queue of jobs; each job's events (text deltas, finished rows, an error) go back on its own
//! channel as they happen, so the HTTP side never blocks on the engine and streams tokens as
//! they are decoded.
//!
//! Every engine step:
//! 1. drops the sequences of requests whose client went away (their receiver is closed),
//!    freeing their rows of the KV cache;
//! 2. admits waiting requests first come, first served while their rows fit in
//!    `max_num_seqs` (a request that does not fit waits, and so do the ones behind it)
//!    and, with `max_loras`, while their adapter is running or fewer than `max_loras`
//!    adapters are (a request for another adapter waits; the ones behind it may go first);
//! 3. decodes one token for every running sequence in ONE batch whatever its served model:
//!    the rows share one KV cache (left-padded: a row's own slots are contiguous and masked
//!    padding fills the rest) and the base weights, and each linear layer adds each
//!    adapter's LoRA delta to that adapter's rows only (base-model rows get none);
//! 4. spends the rest of the `max_batch_tokens` budget on prefill chunks of admitted
//!    sequences, FCFS. A sequence prefills into its own cache in chunks of
//!    `max_batch_tokens − max_num_seqs` tokens (so a chunk always fits beside a full decode
//!    step, and chunk boundaries never depend on batch-mates); when its prompt is in, its
//!    first token is sampled and its cache joins the running batch. (A Phi-3
//!    longrope row longer than the rope switch is prefilled whole, and a running row that
//!    reaches the switch leaves the batch to be prefilled again, as `generate` does.)
//!
//! Each row samples with its own RNG (the request's seed plus the row's index), so its output
//! does not depend on its batch-mates. An error or a panic during a step fails every running
//! request with that message and the engine keeps serving the waiting ones.
//!
//! Adapters attach and retire through the same queue as jobs, so a job always finds the
//! adapter it names; a retired adapter's weights are dropped once no request uses it (the
//! ones already queued or running finish with it).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc as tmpsc;

use super::metrics::{Latency, Metrics};
use crate::model::generate::{self, Completion, FinishReason, GenParams, Row, TokenLogprob};
use crate::model::linear::{LoraRows, ServedLora};
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
    /// The served model's index in the metrics.
    pub model: usize,
    /// The LoRA adapter its rows use (None: the base model).
    pub adapter: Option<usize>,
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
    pub adapter: Option<usize>,
    pub rows: Vec<Vec<u32>>,
    pub params: GenParams,
    pub stream: bool,
    pub prompt_tokens: usize,
}

/// What the engine thread receives, in order.
enum Msg {
    Job(Job),
    /// Serve this adapter under this id from now on.
    Attach(usize, Arc<ServedLora>),
    /// No new job names this id; drop its weights once no request uses it.
    Retire(usize),
}

/// The HTTP side's handle: submit jobs without blocking, refuse when the queue is full.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Msg>,
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
            adapter: s.adapter,
            rows: s.rows,
            params: s.params,
            stream: s.stream,
            prompt_tokens: s.prompt_tokens,
            events,
            arrived: Instant::now(),
            _in_flight: guard,
        };
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| SubmitError::EngineGone)?;
        Ok(rx)
    }

    /// Serve `lora` under adapter id `id`; jobs submitted after this call may name it.
    pub fn attach(&self, id: usize, lora: Arc<ServedLora>) -> Result<(), SubmitError> {
        self.tx
            .send(Msg::Attach(id, lora))
            .map_err(|_| SubmitError::EngineGone)
    }

    /// Stop serving adapter `id` once the jobs already submitted for it are answered.
    pub fn retire(&self, id: usize) -> Result<(), SubmitError> {
        self.tx
            .send(Msg::Retire(id))
            .map_err(|_| SubmitError::EngineGone)
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
    /// Distinct LoRA adapters among the running rows (None: no cap).
    pub max_loras: Option<usize>,
}

impl Limits {
    /// Prefill chunk length: what a step leaves beside a full decode batch.
    fn chunk(&self) -> usize {
        self.max_batch_tokens
            .saturating_sub(self.max_num_seqs)
            .max(1)
    }
}

/// Start the engine thread over the base `model`; adapters come with [`EngineHandle::attach`].
pub fn start(
    model: Arc<LoadedModel>,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> std::io::Result<EngineHandle> {
    let (tx, rx) = mpsc::channel::<Msg>();
    std::thread::Builder::new()
        .name("bwb-engine".into())
        .spawn(move || Engine::new(model, limits, metrics).run(&rx))?;
    Ok(EngineHandle {
        tx,
        in_flight: Arc::new(AtomicUsize::new(0)),
        capacity: limits.max_num_seqs.saturating_add(limits.max_queue),
    })
}

/// An admitted request; its sequences refer to it by id.
struct Request {
    model: usize,
    adapter: Option<usize>,
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

/// The running rows (of every served model) and their shared cache.
#[derive(Default)]
struct Batch {
    cache: Cache,
    seqs: Vec<Seq>,
}

struct Engine {
    model: Arc<LoadedModel>,
    limits: Limits,
    metrics: Arc<Metrics>,
    /// Attached adapters by id.
    loras: HashMap<usize, Arc<ServedLora>>,
    /// Adapters to drop once no request uses them.
    retiring: HashSet<usize>,
    waiting: VecDeque<Job>,
    requests: HashMap<u64, Request>,
    next_req: u64,
    prefilling: VecDeque<Seq>,
    batch: Batch,
}

impl Engine {
    fn new(model: Arc<LoadedModel>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Self {
            model,
            limits,
            metrics,
            loras: HashMap::new(),
            retiring: HashSet::new(),
            waiting: VecDeque::new(),
            requests: HashMap::new(),
            next_req: 0,
            prefilling: VecDeque::new(),
            batch: Batch::default(),
        }
    }

    fn accept(&mut self, msg: Msg) {
        match msg {
            Msg::Job(job) => self.waiting.push_back(job),
            Msg::Attach(id, lora) => {
                self.loras.insert(id, lora);
            }
            Msg::Retire(id) => {
                self.retiring.insert(id);
            }
        }
    }

    /// Drop the weights of retired adapters no waiting or admitted request uses.
    fn drop_retired(&mut self) {
        if self.retiring.is_empty() {
            return;
        }
        let used: HashSet<usize> = (self.requests.values().map(|r| r.adapter))
            .chain(self.waiting.iter().map(|j| j.adapter))
            .flatten()
            .collect();
        let done: Vec<usize> = self.retiring.difference(&used).copied().collect();
        for id in done {
            self.retiring.remove(&id);
            self.loras.remove(&id);
            tracing::debug!("engine: adapter {id} unloaded");
        }
    }

    fn run(mut self, rx: &mpsc::Receiver<Msg>) {
        loop {
            self.drop_retired();
            if self.requests.is_empty() && self.waiting.is_empty() {
                self.set_gauges();
                match rx.recv() {
                    Ok(msg) => self.accept(msg),
                    Err(_) => return, // every handle dropped: the server is shutting down
                }
            }
            while let Ok(msg) = rx.try_recv() {
                self.accept(msg);
            }
            if self.requests.is_empty() && self.waiting.is_empty() {
                continue;
            }
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
        let decoded = self.decode()?;
        self.prefill(self.limits.max_batch_tokens.saturating_sub(decoded))?;
        self.set_gauges();
        Ok(())
    }

    fn set_gauges(&self) {
        let mut running = vec![0; self.metrics.len()];
        let mut waiting = vec![0; self.metrics.len()];
        for r in self.requests.values() {
            if let Some(c) = running.get_mut(r.model) {
                *c += 1;
            }
        }
        for j in &self.waiting {
            if let Some(c) = waiting.get_mut(j.model) {
                *c += 1;
            }
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
        self.batch = Batch::default();
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
        self.retain_rows(live)?;
        Ok(())
    }

    /// Keep the rows of the batch that `keep` says (freeing the others' cache rows) and
    /// return the others.
    fn retain_rows(&mut self, keep: impl Fn(&Seq) -> bool) -> crate::error::Result<Vec<Seq>> {
        let batch = &mut self.batch;
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
            generate::keep_rows(&mut batch.cache, &idx, &self.model.device)?;
            // Columns before the oldest remaining row's first slot are padding in every row.
            let needed = kept.iter().map(|s| s.pos() as usize).max().unwrap_or(0);
            batch
                .cache
                .trim_front(batch.cache.len().saturating_sub(needed))?;
        }
        batch.seqs = kept;
        Ok(gone)
    }

    /// Admit waiting requests FCFS while their rows fit beside the running ones; with
    /// `max_loras`, a request for an adapter beyond the cap is passed over (it keeps its
    /// place) and the ones behind it may go first.
    fn admit(&mut self) -> crate::error::Result<()> {
        let mut rows = self.prefilling.len() + self.batch.seqs.len();
        let mut active: HashSet<usize> = self.requests.values().filter_map(|r| r.adapter).collect();
        let mut i = 0;
        while let Some(job) = self.waiting.get(i) {
            if rows > 0 && rows + job.rows.len() > self.limits.max_num_seqs {
                break;
            }
            if let Some(a) = job.adapter {
                if !self.loras.contains_key(&a) {
                    // Unloaded before it arrived: answer it, and the server goes on.
                    if let Some(job) = self.waiting.remove(i) {
                        let _ = job.events.send(Event::Error(format!(
                            "the adapter this request names was unloaded (id {a})"
                        )));
                    }
                    continue;
                }
                let full = self.limits.max_loras.is_some_and(|m| active.len() >= m);
                if full && !active.contains(&a) {
                    i += 1;
                    continue;
                }
                active.insert(a);
            }
            let Some(job) = self.waiting.remove(i) else {
                break;
            };
            rows += job.rows.len();
            self.start(job, rows)?;
        }
        Ok(())
    }

    /// Make an admitted job a request whose rows go to prefill.
    fn start(&mut self, job: Job, rows: usize) -> crate::error::Result<()> {
        let id = self.next_req;
        self.next_req += 1;
        self.metrics.add_prompt_tokens(job.model, job.prompt_tokens);
        tracing::debug!(
            "engine: admitted request {id} ({} rows); {rows} rows running",
            job.rows.len()
        );
        // Nothing to run unless the prompt itself is scored (echo with logprobs).
        let zero = job.params.max_new_tokens == 0 && job.params.prompt_logprobs.is_none();
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
                cache: self.model.model.new_cache(),
                sent: 0,
                last_token: Instant::now(),
            })
            .collect();
        if seqs.is_empty() {
            return Ok(()); // nothing to generate; dropping the job closes its channel
        }
        self.requests.insert(
            id,
            Request {
                model: job.model,
                adapter: job.adapter,
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
        Ok(())
    }

    /// The adapter of each of `seqs`' requests (None: the base model).
    fn adapters_of<'s>(&self, seqs: impl Iterator<Item = &'s Seq>) -> Vec<Option<usize>> {
        seqs.map(|s| self.requests.get(&s.req).and_then(|r| r.adapter))
            .collect()
    }

    /// Decode one token for every running row in one batch; returns how many rows ran.
    fn decode(&mut self) -> crate::error::Result<usize> {
        let model = self.model.clone();
        self.rope_rebuild(&model)?;
        if self.batch.seqs.is_empty() {
            return Ok(0);
        }
        let adapters = self.adapters_of(self.batch.seqs.iter());
        let models: HashSet<usize> = (self.batch.seqs.iter())
            .filter_map(|s| self.requests.get(&s.req).map(|r| r.model))
            .collect();
        let groups = lora_rows(&self.loras, &adapters, &model.device)?;
        self.metrics.decode_step(models.len(), groups.len());
        let batch = &mut self.batch;
        let feed: Vec<u32> = batch
            .seqs
            .iter()
            .map(|s| s.state.last().unwrap_or(model.pad_id))
            .collect();
        let pos: Vec<i64> = batch.seqs.iter().map(Seq::pos).collect();
        let ctx = ForwardCtx {
            loras: &groups,
            ..Default::default()
        };
        let logits = generate::decode_step(
            &model.model,
            &model.device,
            &mut batch.cache,
            feed,
            pos,
            &ctx,
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
            let done = self.retain_rows(|s| !finished.contains(&(s.req, s.row)))?;
            for seq in done {
                self.finish_seq(seq)?;
            }
        }
        Ok(n)
    }

    /// Rows about to cross the model's rope switch (Phi-3 longrope) leave the batch to be
    /// prefilled again from scratch (prompt plus tokens so far), as `generate` does.
    fn rope_rebuild(&mut self, model: &LoadedModel) -> crate::error::Result<()> {
        let Some(at) = model.model.rope_switch_at() else {
            return Ok(());
        };
        let out = self.retain_rows(|s| s.pos() != at as i64)?;
        for mut seq in out.into_iter().rev() {
            seq.done = 0;
            seq.cache = model.model.new_cache();
            self.prefilling.push_front(seq);
        }
        Ok(())
    }

    /// Prefill admitted sequences FCFS, chunk by chunk, within `budget` tokens; a sequence
    /// whose prompt is in takes its first token and joins the running batch.
    fn prefill(&mut self, mut budget: usize) -> crate::error::Result<()> {
        let chunk = self.limits.chunk();
        let model = self.model.clone();
        let mut spent = 0;
        while let Some(seq) = self.prefilling.front() {
            let Some((adapter, prompt_k, zero)) = self.requests.get(&seq.req).map(|r| {
                (
                    r.adapter,
                    r.params.prompt_logprobs,
                    r.params.max_new_tokens == 0,
                )
            }) else {
                self.prefilling.pop_front();
                continue;
            };
            let groups = lora_rows(&self.loras, &[adapter], &model.device)?;
            let Some(seq) = self.prefilling.front_mut() else {
                break;
            };
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
            let ctx = ForwardCtx {
                loras: &groups,
                ..Default::default()
            };
            let score =
                prompt_k.and_then(|k| seq.state.prompt_score(&seq.prompt, seq.done, end, k));
            let (logits, scored) = generate::extend_row(
                &model.model,
                &model.device,
                &mut seq.cache,
                (&target[seq.done..end], seq.done),
                &ctx,
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
                let batch = &mut self.batch;
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
        let model = &self.model;
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

/// The row groups of a batch whose rows use `adapters` (None: the base model, no group):
/// one group per adapter, with its row indices unless it has every row.
fn lora_rows<'a>(
    loras: &'a HashMap<usize, Arc<ServedLora>>,
    adapters: &[Option<usize>],
    device: &candle_core::Device,
) -> crate::error::Result<Vec<LoraRows<'a>>> {
    let mut ids: Vec<usize> = adapters.iter().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut groups = Vec::with_capacity(ids.len());
    for id in ids {
        let lora = loras.get(&id).ok_or_else(|| {
            crate::error::Error::Config(format!("adapter {id} is not loaded in the engine"))
        })?;
        let rows: Vec<u32> = (0..adapters.len() as u32)
            .filter(|&i| adapters[i as usize] == Some(id))
            .collect();
        let rows = match rows.len() == adapters.len() {
            true => None,
            false => Some(candle_core::Tensor::new(rows.as_slice(), device)?),
        };
        groups.push(LoraRows { lora, rows });
    }
    Ok(groups)
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
    use crate::config::{Arch, RandomInit};
    use crate::model::load::{self, LoadOptions, ModelSource};

    fn engine(max_loras: Option<usize>) -> Engine {
        let init = RandomInit {
            hidden_size: 16,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 8,
            vocab_size: 260,
            seed: 0,
        };
        let src = ModelSource::Random {
            arch: Arch::Qwen3,
            init,
        };
        let model = Arc::new(load::load(&src, &LoadOptions::default()).unwrap());
        let limits = Limits {
            max_num_seqs: 8,
            max_batch_tokens: 16,
            max_queue: 8,
            max_loras,
        };
        let mut e = Engine::new(model, limits, Arc::new(Metrics::new(vec!["m".into()])));
        for id in [0, 1] {
            let lora = ServedLora {
                scale: 1.0,
                layers: HashMap::new(),
            };
            e.accept(Msg::Attach(id, Arc::new(lora)));
        }
        e
    }

    fn job(adapter: Option<usize>) -> (Msg, tmpsc::UnboundedReceiver<Event>) {
        let (events, rx) = tmpsc::unbounded_channel();
        let params = GenParams {
            max_new_tokens: 4,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            stop: Vec::new(),
            ..GenParams::default()
        };
        let job = Job {
            model: 0,
            adapter,
            rows: vec![vec![1, 2, 3]],
            params,
            stream: false,
            prompt_tokens: 3,
            events,
            arrived: Instant::now(),
            _in_flight: InFlight(Arc::new(AtomicUsize::new(1))),
        };
        (Msg::Job(job), rx)
    }

    fn admitted(e: &Engine) -> Vec<Option<usize>> {
        let mut v: Vec<Option<usize>> = e.requests.values().map(|r| r.adapter).collect();
        v.sort();
        v
    }

    #[test]
    fn max_loras_passes_over_another_adapter_without_blocking_the_requests_behind() {
        let mut e = engine(Some(1));
        let mut rxs = Vec::new();
        for a in [Some(0), Some(1), None, Some(0), Some(1), Some(7)] {
            let (msg, rx) = job(a);
            rxs.push(rx);
            e.accept(msg);
        }
        e.admit().unwrap();
        // Adapter 1 waits (in order); the base and adapter 0 behind it run.
        assert_eq!(admitted(&e), [None, Some(0), Some(0)]);
        let waiting: Vec<Option<usize>> = e.waiting.iter().map(|j| j.adapter).collect();
        assert_eq!(waiting, [Some(1), Some(1)]);
        // A job for an adapter the engine does not hold is answered with an error.
        assert!(matches!(rxs[5].try_recv(), Ok(Event::Error(m)) if m.contains("unloaded")));
        // Retired while requests wait for it: kept until they are done.
        e.accept(Msg::Retire(1));
        e.drop_retired();
        assert!(e.loras.contains_key(&1));
        // Adapter 0's requests finish: adapter 1's are admitted beside the base.
        e.requests.retain(|_, r| r.adapter != Some(0));
        e.prefilling.retain(|s| e.requests.contains_key(&s.req));
        e.admit().unwrap();
        assert_eq!(admitted(&e), [None, Some(1), Some(1)]);
        e.requests.clear();
        e.prefilling.clear();
        e.drop_retired();
        assert!(!e.loras.contains_key(&1) && e.loras.contains_key(&0));
    }

    #[test]
    fn without_max_loras_every_adapter_is_admitted_fcfs() {
        let mut e = engine(None);
        let mut rxs = Vec::new();
        for a in [Some(0), Some(1), None] {
            let (msg, rx) = job(a);
            rxs.push(rx);
            e.accept(msg);
        }
        e.admit().unwrap();
        assert_eq!(admitted(&e), [None, Some(0), Some(1)]);
        // One step decodes every row in one batch and records the mix.
        while !e.prefilling.is_empty() {
            e.step().unwrap();
        }
        e.step().unwrap();
        let m = e.metrics.render();
        assert!(
            m.contains("bwb:decode_steps_total{served_models=\"1\",lora_adapters=\"2\"}"),
            "{m}"
        );
    }

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
