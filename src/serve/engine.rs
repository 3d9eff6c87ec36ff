//! The engine thread: one OS thread owns the models and runs generation, fed by a queue of
//! jobs; each job's answer goes back on its own one-shot channel, so the HTTP side never
//! blocks on the engine.
//!
//! This slice batches statically: the thread takes the oldest waiting job, adds later waiting
//! jobs for the same model with the same (greedy) parameters up to `max_num_seqs` rows, runs
//! them as one `LoadedModel::generate` batch and answers each. Sampled jobs run alone, so a
//! row's seed never depends on its batch-mates. Continuous batching is a later slice.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::model::generate::{Completion, GenParams};
use crate::model::load::LoadedModel;

/// One request's rows (prompt token ids, `n` copies each) for one served model.
pub struct Job {
    pub model: usize,
    pub rows: Vec<Vec<u32>>,
    pub params: GenParams,
    pub reply: oneshot::Sender<Result<Vec<Completion>, String>>,
    /// Counts this job in flight until the engine drops it (answered or failed).
    _in_flight: InFlight,
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
    /// Queue a job; the answer arrives on the returned receiver.
    pub fn submit(
        &self,
        model: usize,
        rows: Vec<Vec<u32>>,
        params: GenParams,
    ) -> Result<oneshot::Receiver<Result<Vec<Completion>, String>>, SubmitError> {
        let prev = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        if prev >= self.capacity {
            return Err(SubmitError::QueueFull);
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            model,
            rows,
            params,
            reply,
            _in_flight: guard,
        };
        self.tx.send(job).map_err(|_| SubmitError::EngineGone)?;
        Ok(rx)
    }
}

/// Start the engine thread over `models`; `max_num_seqs` caps the rows of one batch and
/// `max_queue` the requests waiting beyond them.
pub fn start(
    models: Vec<Arc<LoadedModel>>,
    max_num_seqs: usize,
    max_queue: usize,
) -> std::io::Result<EngineHandle> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("bwb-engine".into())
        .spawn(move || engine_loop(&models, &rx, max_num_seqs))?;
    Ok(EngineHandle {
        tx,
        in_flight: Arc::new(AtomicUsize::new(0)),
        capacity: max_num_seqs + max_queue,
    })
}

fn same_batch(a: &Job, b: &Job) -> bool {
    let (p, q) = (&a.params, &b.params);
    a.model == b.model
        && p.temperature == 0.0
        && q.temperature == 0.0
        && p.max_new_tokens == q.max_new_tokens
        && p.stop == q.stop
}

fn engine_loop(models: &[Arc<LoadedModel>], rx: &mpsc::Receiver<Job>, max_num_seqs: usize) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match rx.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return, // every handle dropped: the server is shutting down
            }
        }
        waiting.extend(rx.try_iter());
        let Some(first) = waiting.pop_front() else {
            continue;
        };
        // 1. the batch: the oldest job plus later compatible ones, FCFS, up to max_num_seqs rows.
        let mut rows = first.rows.len();
        let mut batch = vec![first];
        let mut i = 0;
        while i < waiting.len() {
            if same_batch(&batch[0], &waiting[i]) && rows + waiting[i].rows.len() <= max_num_seqs {
                rows += waiting[i].rows.len();
                if let Some(job) = waiting.remove(i) {
                    batch.push(job);
                }
            } else {
                i += 1;
            }
        }
        // 2. generate every row in one call, then hand each job its rows.
        let prompts: Vec<Vec<u32>> = batch.iter().flat_map(|j| j.rows.iter().cloned()).collect();
        let model = &models[batch[0].model];
        tracing::debug!(
            "engine batch: {} requests, {} rows",
            batch.len(),
            prompts.len()
        );
        // A panic inside the engine answers this batch with an error and keeps serving.
        let params = &batch[0].params;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            model.generate(&prompts, params)
        }))
        .map_err(|_| "the engine panicked on this batch".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let mut outs = match result {
            Ok(v) => v.into_iter(),
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.clone()));
                }
                continue;
            }
        };
        for job in batch {
            let mine: Vec<Completion> = outs.by_ref().take(job.rows.len()).collect();
            // A closed receiver means the client left; nothing to answer.
            let _ = job.reply.send(Ok(mine));
        }
    }
}
