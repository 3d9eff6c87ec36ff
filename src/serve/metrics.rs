//! `GET /metrics`: Prometheus text exposition, named after vLLM's metrics with a `bwb:`
//! prefix and labelled `model_name` per served model (the base and each adapter).
//!
//! The engine thread records into [`Metrics`]; the gauges (requests running and waiting) are
//! set after every engine step and when the engine goes idle. `bwb:decode_steps_total`
//! counts decode steps by how many served models and LoRA adapters their one batch mixed.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Latency buckets in seconds (vLLM's time-to-first-token buckets, which cover the others).
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations at most `BUCKETS[i]` (not cumulative).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        if let Some(i) = BUCKETS.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

/// One served model's numbers.
#[derive(Debug, Clone, Default)]
struct ModelMetrics {
    running: usize,
    waiting: usize,
    prompt_tokens: u64,
    generation_tokens: u64,
    /// Finished requests by finish reason (`stop`, `length`, `abort`, `error`).
    finished: BTreeMap<&'static str, u64>,
    ttft: Histogram,
    itl: Histogram,
    e2e: Histogram,
}

/// Which histogram an observation goes to.
#[derive(Debug, Clone, Copy)]
pub enum Latency {
    /// Arrival to the request's first generated token.
    FirstToken,
    /// Between two consecutive tokens of one sequence.
    InterToken,
    /// Arrival to the request's last token.
    EndToEnd,
}

/// The server's metrics, one set per served model (kept after an adapter is unloaded).
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone, Default)]
struct Inner {
    names: Vec<String>,
    models: Vec<ModelMetrics>,
    /// Decode steps by (served models, LoRA adapters) in their batch.
    steps: BTreeMap<(usize, usize), u64>,
}

impl Metrics {
    pub fn new(names: Vec<String>) -> Self {
        let models = vec![ModelMetrics::default(); names.len()];
        let inner = Mutex::new(Inner {
            names,
            models,
            steps: BTreeMap::new(),
        });
        Self { inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere mid-update; the numbers stay usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of served model `name`'s metrics, added if new.
    pub fn index(&self, name: &str) -> usize {
        let mut g = self.lock();
        if let Some(i) = g.names.iter().position(|n| n == name) {
            return i;
        }
        g.names.push(name.to_string());
        g.models.push(ModelMetrics::default());
        g.names.len() - 1
    }

    /// How many served models have metrics.
    pub fn len(&self) -> usize {
        self.lock().names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with(&self, model: usize, f: impl FnOnce(&mut ModelMetrics)) {
        if let Some(m) = self.lock().models.get_mut(model) {
            f(m);
        }
    }

    /// One decode step whose batch held rows of `models` served models and `loras` adapters.
    pub fn decode_step(&self, models: usize, loras: usize) {
        *self.lock().steps.entry((models, loras)).or_insert(0) += 1;
    }

    /// Requests running and waiting per model (indexed like the served models).
    pub fn set_gauges(&self, running: &[usize], waiting: &[usize]) {
        let mut g = self.lock();
        for (i, m) in g.models.iter_mut().enumerate() {
            m.running = running.get(i).copied().unwrap_or(0);
            m.waiting = waiting.get(i).copied().unwrap_or(0);
        }
    }

    pub fn add_prompt_tokens(&self, model: usize, n: usize) {
        self.with(model, |m| m.prompt_tokens += n as u64);
    }

    pub fn add_generation_tokens(&self, model: usize, n: usize) {
        self.with(model, |m| m.generation_tokens += n as u64);
    }

    pub fn finished(&self, model: usize, reason: &'static str) {
        self.with(model, |m| *m.finished.entry(reason).or_insert(0) += 1);
    }

    pub fn observe(&self, model: usize, which: Latency, seconds: f64) {
        self.with(model, |m| match which {
            Latency::FirstToken => m.ttft.observe(seconds),
            Latency::InterToken => m.itl.observe(seconds),
            Latency::EndToEnd => m.e2e.observe(seconds),
        });
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let g = self.lock().clone();
        let mut out = String::new();
        let mut family =
            |name: &str,
             kind: &str,
             help: &str,
             value: &dyn Fn(&str, &ModelMetrics, &mut String)| {
                let _ = writeln!(out, "# HELP bwb:{name} {help}\n# TYPE bwb:{name} {kind}");
                for (n, m) in g.names.iter().zip(&g.models) {
                    value(&format!("model_name=\"{}\"", escape(n)), m, &mut out);
                }
            };
        let gauge = |f: fn(&ModelMetrics) -> f64, name: &'static str| {
            move |l: &str, m: &ModelMetrics, o: &mut String| {
                let _ = writeln!(o, "bwb:{name}{{{l}}} {}", f(m));
            }
        };
        family(
            "num_requests_running",
            "gauge",
            "Requests in the running batch.",
            &gauge(|m| m.running as f64, "num_requests_running"),
        );
        family(
            "num_requests_waiting",
            "gauge",
            "Requests waiting to be admitted.",
            &gauge(|m| m.waiting as f64, "num_requests_waiting"),
        );
        family(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens of admitted requests.",
            &gauge(|m| m.prompt_tokens as f64, "prompt_tokens_total"),
        );
        family(
            "generation_tokens_total",
            "counter",
            "Generated tokens.",
            &gauge(|m| m.generation_tokens as f64, "generation_tokens_total"),
        );
        family(
            "request_success_total",
            "counter",
            "Finished requests by finish reason.",
            &|l: &str, m: &ModelMetrics, o: &mut String| {
                for (reason, c) in &m.finished {
                    let _ = writeln!(
                        o,
                        "bwb:request_success_total{{{l},finished_reason=\"{reason}\"}} {c}"
                    );
                }
            },
        );
        let hist = |f: fn(&ModelMetrics) -> &Histogram, name: &'static str| {
            move |l: &str, m: &ModelMetrics, o: &mut String| histogram(o, name, l, f(m))
        };
        family(
            "time_to_first_token_seconds",
            "histogram",
            "Time to the first generated token.",
            &hist(|m| &m.ttft, "time_to_first_token_seconds"),
        );
        family(
            "inter_token_latency_seconds",
            "histogram",
            "Time between two tokens of a sequence.",
            &hist(|m| &m.itl, "inter_token_latency_seconds"),
        );
        family(
            "e2e_request_latency_seconds",
            "histogram",
            "Arrival to the last token.",
            &hist(|m| &m.e2e, "e2e_request_latency_seconds"),
        );
        let name = "bwb:decode_steps_total";
        let _ = writeln!(
            out,
            "# HELP {name} Decode steps by the served models and LoRA adapters their one batch mixed.\n# TYPE {name} counter"
        );
        for ((models, loras), c) in &g.steps {
            let _ = writeln!(
                out,
                "{name}{{served_models=\"{models}\",lora_adapters=\"{loras}\"}} {c}"
            );
        }
        out
    }
}

fn histogram(o: &mut String, name: &str, labels: &str, h: &Histogram) {
    let mut acc = 0;
    for (i, b) in BUCKETS.iter().enumerate() {
        acc += h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(o, "bwb:{name}_bucket{{{labels},le=\"{b}\"}} {acc}");
    }
    let _ = writeln!(o, "bwb:{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(o, "bwb:{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(o, "bwb:{name}_count{{{labels}}} {}", h.count);
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_gauges_counters_and_cumulative_histograms_per_model() {
        let m = Metrics::new(vec!["base".into(), "a\"dapter".into()]);
        m.set_gauges(&[2, 0], &[1, 3]);
        m.add_prompt_tokens(0, 5);
        m.add_generation_tokens(1, 7);
        m.finished(0, "stop");
        m.observe(0, Latency::FirstToken, 0.003);
        m.observe(0, Latency::FirstToken, 0.5);
        m.decode_step(2, 1);
        m.decode_step(2, 1);
        assert_eq!(m.index("a\"dapter"), 1);
        assert_eq!(m.index("late"), 2);
        m.add_prompt_tokens(2, 4);
        let t = m.render();
        assert!(
            t.contains("bwb:decode_steps_total{served_models=\"2\",lora_adapters=\"1\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("bwb:prompt_tokens_total{model_name=\"late\"} 4"),
            "{t}"
        );
        assert!(
            t.contains("bwb:num_requests_running{model_name=\"base\"} 2"),
            "{t}"
        );
        assert!(
            t.contains("bwb:num_requests_waiting{model_name=\"a\\\"dapter\"} 3"),
            "{t}"
        );
        assert!(
            t.contains("bwb:prompt_tokens_total{model_name=\"base\"} 5"),
            "{t}"
        );
        assert!(
            t.contains("bwb:generation_tokens_total{model_name=\"a\\\"dapter\"} 7"),
            "{t}"
        );
        assert!(
            t.contains("bwb:request_success_total{model_name=\"base\",finished_reason=\"stop\"} 1")
        );
        let b = "bwb:time_to_first_token_seconds_bucket{model_name=\"base\",";
        assert!(t.contains(&format!("{b}le=\"0.001\"}} 0")), "{t}");
        assert!(t.contains(&format!("{b}le=\"0.005\"}} 1")), "{t}");
        assert!(t.contains(&format!("{b}le=\"0.5\"}} 2")), "{t}");
        assert!(t.contains(&format!("{b}le=\"+Inf\"}} 2")), "{t}");
        assert!(t.contains("bwb:time_to_first_token_seconds_count{model_name=\"base\"} 2"));
        assert!(t.contains("# TYPE bwb:e2e_request_latency_seconds histogram"));
    }
}
