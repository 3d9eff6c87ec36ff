//! Progress of a long loop (training steps, evaluated examples): an indicatif bar when
//! stderr is a terminal, otherwise one plain log line every `--log-every` seconds and one at
//! the end, so a job log (RunPod, SkyPilot, CI, `nohup`) shows the run moving.
//!
//! Log lines go through `tracing` under the target `bwb::progress`, which the default log
//! filter lets through at `info` (src/logging.rs): they carry the subscriber's timestamp and
//! read like
//! `train smoke/fpb/lora-500: 12/40 steps (30%), epoch 1/2, loss 2.3456, …, elapsed 0:00:23, ETA 0:00:54`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// `--log-every` when not given: a line every 30 s.
pub const DEFAULT_LOG_EVERY: Duration = Duration::from_secs(30);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// An indicatif bar on stderr.
    Bar,
    /// A log line at most every `every` (zero: on every update), and one at the end.
    Log { every: Duration },
    /// Nothing (library callers, tests).
    #[default]
    Hidden,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, else log lines every `every`.
    pub fn for_stderr(every: Duration) -> Self {
        if std::io::stderr().is_terminal() {
            Self::Bar
        } else {
            Self::Log { every }
        }
    }
}

type Clock = Box<dyn Fn() -> Instant + Send>;
type Writer = Box<dyn FnMut(&str) + Send>;

enum Out {
    Bar(indicatif::ProgressBar),
    Log {
        every: Duration,
        last: Instant,
        write: Writer,
    },
    Hidden,
}

/// One loop's progress: `pos` of `total` `unit`s, with a caller-made message of figures.
pub struct Progress {
    label: String,
    unit: &'static str,
    total: u64,
    pos: u64,
    /// Position when this process started on the loop (a resumed run starts above 0); the
    /// ETA uses the rate since then.
    start_pos: u64,
    started: Instant,
    msg: String,
    out: Out,
    clock: Clock,
}

impl Progress {
    /// Progress of `label` over `total` `unit`s (see [`Progress::starting_at`] to resume).
    pub fn new(
        mode: ProgressMode,
        label: impl Into<String>,
        unit: &'static str,
        total: u64,
    ) -> Self {
        let out = match mode {
            ProgressMode::Bar => {
                let bar = indicatif::ProgressBar::new(total);
                let template =
                    format!("{{bar:30}} {{pos}}/{{len}} {unit} {{msg}} [{{elapsed_precise}} < {{eta_precise}}]");
                if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                    bar.set_style(style);
                }
                Out::Bar(bar)
            }
            ProgressMode::Log { every } => Out::Log {
                every,
                last: Instant::now(),
                write: Box::new(|line: &str| tracing::info!(target: "bwb::progress", "{line}")),
            },
            ProgressMode::Hidden => Out::Hidden,
        };
        let mut p = Self {
            label: label.into(),
            unit,
            total,
            pos: 0,
            start_pos: 0,
            started: Instant::now(),
            msg: String::new(),
            out,
            clock: Box::new(Instant::now),
        };
        p.restart();
        p
    }

    /// Start at `pos` (a resumed loop).
    pub fn starting_at(mut self, pos: u64) -> Self {
        self.pos = pos;
        self.start_pos = pos;
        if let Out::Bar(bar) = &self.out {
            bar.set_position(pos);
        }
        self
    }

    /// Read the time from `clock` instead of the system clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + 'static) -> Self {
        self.clock = Box::new(clock);
        self.restart();
        self
    }

    /// Send log lines to `write` instead of `tracing` (tests).
    pub fn with_writer(mut self, write: impl FnMut(&str) + Send + 'static) -> Self {
        if let Out::Log { write: w, .. } = &mut self.out {
            *w = Box::new(write);
        }
        self
    }

    fn restart(&mut self) {
        let now = (self.clock)();
        self.started = now;
        if let Out::Log { last, .. } = &mut self.out {
            *last = now;
        }
    }

    /// Now at `pos`, with `msg` as the figures; a log line when one is due.
    pub fn update(&mut self, pos: u64, msg: String) {
        self.pos = pos;
        self.msg = msg;
        let now = (self.clock)();
        let line = self.line(now, false);
        match &mut self.out {
            Out::Bar(bar) => {
                bar.set_position(pos);
                bar.set_message(self.msg.clone());
            }
            Out::Log { every, last, write } => {
                if now.saturating_duration_since(*last) >= *every {
                    *last = now;
                    write(&line);
                }
            }
            Out::Hidden => {}
        }
    }

    /// A phase without steps (validation): the bar's message, or a log line now.
    pub fn phase(&mut self, msg: &str) {
        match &mut self.out {
            Out::Bar(bar) => bar.set_message(msg.to_string()),
            Out::Log { write, .. } => write(&format!("{}: {msg}", self.label)),
            Out::Hidden => {}
        }
    }

    /// A line of its own (an epoch's scores): above the bar, or a log line.
    pub fn note(&mut self, text: &str) {
        match &mut self.out {
            Out::Bar(bar) => bar.println(text),
            Out::Log { write, .. } => write(&format!("{}: {text}", self.label)),
            Out::Hidden => tracing::debug!("{}: {text}", self.label),
        }
    }

    /// The loop ended: clear the bar, or write the last line.
    pub fn finish(&mut self) {
        self.end(false);
    }

    /// The loop stopped before the end (it resumes later): keep the bar, or write the last
    /// line.
    pub fn abandon(&mut self) {
        self.end(true);
    }

    /// The loop failed: clear the bar and write no line (the error says what happened).
    pub fn discard(&mut self) {
        if let Out::Bar(bar) = &self.out {
            bar.finish_and_clear();
        }
    }

    fn end(&mut self, abandoned: bool) {
        let line = self.line((self.clock)(), true);
        match &mut self.out {
            Out::Bar(bar) if abandoned => bar.abandon(),
            Out::Bar(bar) => bar.finish_and_clear(),
            Out::Log { write, .. } => write(&line),
            Out::Hidden => {}
        }
    }

    /// `label: pos/total unit (pct%), msg, elapsed H:MM:SS, ETA H:MM:SS` (at the end:
    /// `…, done in H:MM:SS` or `…, stopped after H:MM:SS`).
    fn line(&self, now: Instant, end: bool) -> String {
        let elapsed = now.saturating_duration_since(self.started);
        let mut s = format!("{}: {}/{} {}", self.label, self.pos, self.total, self.unit);
        if let Some(pct) = (self.pos.min(self.total) * 100).checked_div(self.total) {
            s += &format!(" ({pct}%)");
        }
        if !self.msg.is_empty() {
            s += ", ";
            s += &self.msg;
        }
        if end {
            let how = if self.pos >= self.total {
                "done in"
            } else {
                "stopped after"
            };
            s += &format!(", {how} {}", clock_time(elapsed));
            return s;
        }
        let done = self.pos.saturating_sub(self.start_pos);
        let left = self.total.saturating_sub(self.pos);
        let eta = if left == 0 {
            "0:00:00".to_string()
        } else if done == 0 || elapsed.is_zero() {
            "?".to_string()
        } else {
            let secs = elapsed.as_secs_f64() / done as f64 * left as f64;
            clock_time(Duration::from_secs_f64(secs.min(1e9)))
        };
        s += &format!(", elapsed {}, ETA {eta}", clock_time(elapsed));
        s
    }
}

/// `H:MM:SS`.
fn clock_time(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Shared<T> = Arc<Mutex<T>>;

    /// A progress in log mode with a hand-moved clock and captured lines.
    fn logged(every: u64, total: u64) -> (Progress, Shared<Duration>, Shared<Vec<String>>) {
        let t0 = Instant::now();
        let offset = Arc::new(Mutex::new(Duration::ZERO));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (o, l) = (offset.clone(), lines.clone());
        let p = Progress::new(
            ProgressMode::Log {
                every: Duration::from_secs(every),
            },
            "train m/t/c",
            "steps",
            total,
        )
        .with_clock(move || t0 + *o.lock().unwrap())
        .with_writer(move |line| l.lock().unwrap().push(line.to_string()));
        (p, offset, lines)
    }

    #[test]
    fn a_line_per_interval_and_one_at_the_end() {
        let (mut p, clock, lines) = logged(30, 10);
        for step in 1..=10u64 {
            *clock.lock().unwrap() = Duration::from_secs(step * 10);
            p.update(step, format!("loss {step}"));
        }
        p.finish();
        let lines = lines.lock().unwrap();
        // Due at 30 s, 60 s and 90 s, then the end.
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(
            lines[0],
            "train m/t/c: 3/10 steps (30%), loss 3, elapsed 0:00:30, ETA 0:01:10"
        );
        assert!(lines[2].starts_with("train m/t/c: 9/10 steps (90%), loss 9"));
        assert_eq!(
            lines[3],
            "train m/t/c: 10/10 steps (100%), loss 10, done in 0:01:40"
        );
        assert!(lines.iter().all(|l| l.is_ascii()), "{lines:?}");
    }

    #[test]
    fn zero_interval_logs_every_update() {
        let (mut p, _clock, lines) = logged(0, 3);
        for step in 1..=3 {
            p.update(step, String::new());
        }
        p.abandon();
        assert_eq!(lines.lock().unwrap().len(), 4);
        p.discard();
        assert_eq!(lines.lock().unwrap().len(), 4, "a failed loop adds no line");
    }

    #[test]
    fn a_resumed_loop_estimates_from_its_own_rate() {
        let (p, clock, lines) = logged(0, 100);
        let mut p = p.starting_at(50);
        *clock.lock().unwrap() = Duration::from_secs(10);
        p.update(60, String::new());
        p.abandon();
        let lines = lines.lock().unwrap();
        // 10 steps in 10 s, 40 left.
        assert_eq!(
            lines[0],
            "train m/t/c: 60/100 steps (60%), elapsed 0:00:10, ETA 0:00:40"
        );
        assert_eq!(
            lines[1],
            "train m/t/c: 60/100 steps (60%), stopped after 0:00:10"
        );
    }

    #[test]
    fn phases_and_notes_are_lines_of_their_own() {
        let (mut p, _clock, lines) = logged(3600, 2);
        p.phase("epoch 1: validating");
        p.note("epoch 1: val loss 0.5");
        assert_eq!(
            *lines.lock().unwrap(),
            [
                "train m/t/c: epoch 1: validating",
                "train m/t/c: epoch 1: val loss 0.5"
            ]
        );
    }

    #[test]
    fn clock_time_is_hours_minutes_seconds() {
        assert_eq!(clock_time(Duration::from_secs(3 * 3600 + 62)), "3:01:02");
        assert_eq!(clock_time(Duration::from_millis(999)), "0:00:00");
    }
}
