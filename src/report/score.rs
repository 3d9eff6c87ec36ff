//! Judging every prediction of a task with its scorer (running code answers in the sandbox
//! first), into the per-example records of results/classified/.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::load::Group;
use super::Options;
use crate::data::Answer;
use crate::error::{Error, Result};
use crate::eval::predictions::Prediction;
use crate::exec::ExecResult;
use crate::score::{first_line, ErrorClass, Parsed, Row, Scorer};

/// One prediction's class and score, written to results/classified/.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    pub id: String,
    pub example_id: String,
    pub seed: u64,
    pub class: ErrorClass,
    /// Per-example score of the headline metric, in [0, 1]; None for request errors.
    pub score: Option<f64>,
    /// One line saying why (the wrong label given, the failing assert, …).
    pub detail: String,
}

impl Classified {
    /// The row the aggregate metrics see; None for a request error.
    pub fn row<'a>(&'a self, p: &'a Prediction) -> Option<Row<'a>> {
        Some(Row {
            example_id: &self.example_id,
            parsed: &p.prediction,
            gold: &p.gold,
            class: self.class,
            score: self.score?,
        })
    }
}

/// Class and score of one prediction. `exec` is the execution result of a code answer.
pub fn classify(scorer: &dyn Scorer, p: &Prediction, exec: Option<&ExecResult>) -> Classified {
    let (class, score, detail) = match &p.error {
        Some(e) => (ErrorClass::RequestError, None, first_line(e, 200)),
        None => {
            let j = scorer.judge(&p.prediction, &p.gold, &p.raw_output, exec);
            (j.class, Some(j.score), j.detail)
        }
    };
    Classified {
        id: p.id.clone(),
        example_id: p.example_id.clone(),
        seed: p.seed,
        class,
        score,
        detail,
    }
}

/// Every group's predictions judged, in order. Code answers are run first, each distinct
/// (example, program) once across every group and seed. Returns the programs run.
pub fn classify_groups(
    scorer: &dyn Scorer,
    groups: &[Group],
    opts: &Options,
) -> Result<(Vec<Vec<Classified>>, usize)> {
    if !scorer.needs_execution() {
        let out = groups
            .iter()
            .map(|g| g.preds.iter().map(|p| classify(scorer, p, None)).collect())
            .collect();
        return Ok((out, 0));
    }
    let mut programs: Vec<Program<'_>> = Vec::new();
    let mut index: HashMap<(&str, &str), usize> = HashMap::new();
    for p in groups
        .iter()
        .flat_map(|g| &g.preds)
        .filter(|p| p.error.is_none())
    {
        if let (Parsed::Code { code }, Answer::Code { tests, setup, .. }) = (&p.prediction, &p.gold)
        {
            index
                .entry((p.example_id.as_str(), code.as_str()))
                .or_insert_with(|| {
                    programs.push(Program {
                        example_id: &p.example_id,
                        code,
                        setup,
                        tests,
                    });
                    programs.len() - 1
                });
        }
    }
    let results = run_programs(&programs, opts)?;
    let out = groups
        .iter()
        .map(|g| {
            g.preds
                .iter()
                .map(|p| {
                    let r = match &p.prediction {
                        Parsed::Code { code } => index
                            .get(&(p.example_id.as_str(), code.as_str()))
                            .map(|&i| &results[i]),
                        _ => None,
                    };
                    classify(scorer, p, r)
                })
                .collect()
        })
        .collect();
    Ok((out, programs.len()))
}

/// One distinct program to run.
struct Program<'a> {
    example_id: &'a str,
    code: &'a str,
    setup: &'a str,
    tests: &'a [String],
}

fn run_programs(programs: &[Program<'_>], opts: &Options) -> Result<Vec<ExecResult>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<ExecResult>>>> = programs
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, 16) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = programs.get(i) else {
                    break;
                };
                let r = crate::exec::run_tests(p.code, p.setup, p.tests, &opts.limits);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    programs
        .iter()
        .zip(slots)
        .map(|(p, slot)| {
            slot.into_inner().ok().flatten().ok_or_else(|| {
                Error::Config(format!("example {}: the program was not run", p.example_id))
            })?
        })
        .collect()
}

/// Per-example score (mean over a group's predictions of that example), request errors out.
pub fn per_example_scores(classified: &[Classified]) -> BTreeMap<String, f64> {
    let mut acc: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for c in classified {
        if let Some(s) = c.score {
            let e = acc.entry(c.example_id.clone()).or_insert((0.0, 0));
            e.0 += s;
            e.1 += 1;
        }
    }
    acc.into_iter()
        .map(|(k, (s, n))| (k, s / n as f64))
        .collect()
}
