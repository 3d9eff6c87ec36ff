//! Baseline vs compressed context on the same examples: each `mode: compressed` experiment is
//! paired with a baseline experiment of the same model, dataset configs, split, seed and
//! sample size run by the same command, and compared example by example — tokens sent,
//! each metric with a paired bootstrap (compressed − baseline: mean difference, 95 % interval,
//! p-value), latency including the compression step, and total cost including the
//! compressor's. The result goes into the compressed experiment's summary.json
//! (`vs_baseline`) and is printed side by side.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::output::rows_file;
use super::plan::Planned;
use super::run::experiment_dir;
use crate::metrics::stats;
use crate::paths::Paths;

/// Bootstrap resamples of the paired comparison.
const RESAMPLES: usize = 1000;

/// Whether two experiments ran the same examples through the same model.
fn same_examples(a: &Planned<'_>, b: &Planned<'_>) -> bool {
    let configs = |p: &Planned<'_>| -> Vec<String> {
        p.entries.iter().map(|e| e.config.id.clone()).collect()
    };
    a.model.name() == b.model.name()
        && configs(a) == configs(b)
        && a.split == b.split
        && a.seed == b.seed
        && a.num_examples == b.num_examples
}

/// Each compressed experiment with its baseline (the first matching one in file order).
pub fn pairs<'p, 'a>(plans: &'p [Planned<'a>]) -> Vec<(&'p Planned<'a>, &'p Planned<'a>)> {
    plans
        .iter()
        .filter(|c| c.compression.is_some())
        .filter_map(|c| {
            plans
                .iter()
                .find(|b| b.compression.is_none() && same_examples(b, c))
                .map(|b| (b, c))
        })
        .collect()
}

/// An experiment's per-example rows by (config, example id).
fn load_rows(paths: &Paths, p: &Planned<'_>) -> Result<BTreeMap<(String, String), Value>> {
    let dir = experiment_dir(paths, &p.id);
    let multi = p.entries.len() > 1;
    let mut out = BTreeMap::new();
    for e in &p.entries {
        let file = rows_file(&dir, &p.id, &e.config.id, multi);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let row: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON row", file.display(), i + 1))?;
            let id = row["id"].as_str().unwrap_or_default().to_string();
            out.insert((e.config.id.clone(), id), row);
        }
    }
    Ok(out)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The comparison of `compressed` against `baseline` over the examples both answered.
pub fn compare(paths: &Paths, baseline: &Planned<'_>, compressed: &Planned<'_>) -> Result<Value> {
    let metrics: Vec<&str> = compressed
        .metrics
        .iter()
        .filter(|m| baseline.metrics.contains(m))
        .map(|m| m.as_str())
        .collect();
    let mut cmp = compare_rows(
        &load_rows(paths, baseline)?,
        &load_rows(paths, compressed)?,
        &metrics,
        compressed.seed,
    );
    if let Some(obj) = cmp.as_object_mut() {
        obj.insert("baseline".into(), json!(baseline.id));
        obj.insert("compressed".into(), json!(compressed.id));
        obj.insert(
            "method".into(),
            json!(compressed.compression.as_ref().map(|c| c.method.name())),
        );
    }
    Ok(cmp)
}

/// Rows keyed alike, compared over the keys both have without an error.
fn compare_rows(
    b_rows: &BTreeMap<(String, String), Value>,
    c_rows: &BTreeMap<(String, String), Value>,
    metric_names: &[&str],
    seed: u64,
) -> Value {
    let both: Vec<(&Value, &Value)> = c_rows
        .iter()
        .filter_map(|(k, c)| Some((b_rows.get(k)?, c)))
        .filter(|(b, c)| b["error"].is_null() && c["error"].is_null())
        .collect();
    let mut metrics = serde_json::Map::new();
    for &key in metric_names {
        let scored: Vec<(f64, f64)> = both
            .iter()
            .filter_map(|(b, c)| Some((b["metrics"][key].as_f64()?, c["metrics"][key].as_f64()?)))
            .collect();
        let (bs, cs): (Vec<f64>, Vec<f64>) = scored.into_iter().unzip();
        let pb = stats::paired_bootstrap(&cs, &bs, RESAMPLES, seed);
        metrics.insert(
            key.to_string(),
            json!({
                "baseline": stats::mean(&bs),
                "compressed": stats::mean(&cs),
                "diff": pb.as_ref().map(|p| p.mean_diff),
                "ci_low": pb.as_ref().map(|p| p.ci_low),
                "ci_high": pb.as_ref().map(|p| p.ci_high),
                "p_value": pb.as_ref().map(|p| p.p_value),
                "n": bs.len(),
            }),
        );
    }
    let n = both.len().max(1) as f64;
    let comp = |c: &Value, k: &str| num(&c["compression"][k]);
    let b_tokens: f64 = both.iter().map(|(b, _)| num(&b["input_tokens"])).sum();
    let c_tokens: f64 = both.iter().map(|(_, c)| num(&c["input_tokens"])).sum();
    let b_latency = both.iter().map(|(b, _)| num(&b["latency_ms"])).sum::<f64>() / n;
    let c_latency = both
        .iter()
        .map(|(_, c)| num(&c["latency_ms"]) + comp(c, "latency_ms"))
        .sum::<f64>()
        / n;
    // None when any call is unpriced; an unpriced compressor adds nothing it can be charged.
    let b_cost: Option<f64> = both.iter().map(|(b, _)| b["cost_usd"].as_f64()).sum();
    let c_cost: Option<f64> = both
        .iter()
        .map(|(_, c)| {
            let call = c["cost_usd"].as_f64()?;
            Some(call + c["compression"]["cost_usd"].as_f64().unwrap_or(0.0))
        })
        .sum();
    json!({
        "pairs": both.len(),
        "metrics": metrics,
        "input_tokens": {
            "baseline": b_tokens,
            "compressed": c_tokens,
            "reduction": (b_tokens > 0.0).then(|| 1.0 - c_tokens / b_tokens),
        },
        "latency_ms": {
            "baseline": b_latency,
            "compressed": c_latency,
            "overhead": c_latency - b_latency,
        },
        "cost_usd": {
            "baseline": b_cost,
            "compressed": c_cost,
            "saved": b_cost.zip(c_cost).map(|(b, c)| b - c),
        },
    })
}

/// Add `vs_baseline` to the compressed experiment's summary.json.
pub fn record(summary: &Path, cmp: &Value) -> Result<()> {
    let text = std::fs::read_to_string(summary)
        .with_context(|| format!("reading {}", summary.display()))?;
    let mut s: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", summary.display()))?;
    if let Some(obj) = s.as_object_mut() {
        obj.insert("vs_baseline".into(), cmp.clone());
    }
    crate::fsutil::write_json_atomic(summary, &s)?;
    Ok(())
}

fn fmt_opt(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map(|x| format!("{x:.digits$}"))
        .unwrap_or_else(|| "n/a".into())
}

/// The comparison as printed: baseline and compressed side by side.
pub fn table(cmp: &Value) -> String {
    let mut out = format!(
        "{} → {} ({}, {} paired examples)\n",
        cmp["baseline"].as_str().unwrap_or_default(),
        cmp["compressed"].as_str().unwrap_or_default(),
        cmp["method"].as_str().unwrap_or("compressed"),
        cmp["pairs"]
    );
    let t = &cmp["input_tokens"];
    out.push_str(&format!(
        "  {:<14}{:>12} → {:<12} ({}% fewer)\n",
        "input tokens",
        fmt_opt(&t["baseline"], 0),
        fmt_opt(&t["compressed"], 0),
        t["reduction"]
            .as_f64()
            .map(|r| format!("{:.1}", r * 100.0))
            .unwrap_or_else(|| "n/a".into())
    ));
    if let Some(ms) = cmp["metrics"].as_object() {
        for (name, m) in ms {
            out.push_str(&format!(
                "  {:<14}{:>12} → {:<12} Δ {} [{}, {}] p={}\n",
                name,
                fmt_opt(&m["baseline"], 4),
                fmt_opt(&m["compressed"], 4),
                fmt_opt(&m["diff"], 4),
                fmt_opt(&m["ci_low"], 4),
                fmt_opt(&m["ci_high"], 4),
                fmt_opt(&m["p_value"], 3),
            ));
        }
    }
    let l = &cmp["latency_ms"];
    out.push_str(&format!(
        "  {:<14}{:>12} → {:<12} ({} ms incl. compression)\n",
        "latency ms",
        fmt_opt(&l["baseline"], 1),
        fmt_opt(&l["compressed"], 1),
        l["overhead"]
            .as_f64()
            .map(|o| format!("{o:+.1}"))
            .unwrap_or_else(|| "n/a".into())
    ));
    let c = &cmp["cost_usd"];
    out.push_str(&format!(
        "  {:<14}{:>12} → {:<12} (saved {})\n",
        "cost $",
        fmt_opt(&c["baseline"], 6),
        fmt_opt(&c["compressed"], 6),
        fmt_opt(&c["saved"], 6)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        id: &str,
        f1: f64,
        tokens: u64,
        cost: f64,
        comp: Option<(f64, f64)>,
    ) -> ((String, String), Value) {
        let mut r = json!({"id": id, "error": null, "metrics": {"f1": f1},
            "input_tokens": tokens, "latency_ms": 100.0, "cost_usd": cost});
        if let Some((ms, usd)) = comp {
            r["compression"] = json!({"latency_ms": ms, "cost_usd": usd});
        }
        (("cfg".to_string(), id.to_string()), r)
    }

    #[test]
    fn pairs_count_only_examples_both_answered_and_add_the_compressor_cost() {
        let base: BTreeMap<_, _> = [
            row("a", 1.0, 1000, 0.010, None),
            row("b", 0.0, 1000, 0.010, None),
            row("c", 1.0, 1000, 0.010, None),
        ]
        .into_iter()
        .collect();
        let mut comp: BTreeMap<_, _> = [
            row("a", 1.0, 400, 0.004, Some((20.0, 0.001))),
            row("b", 1.0, 400, 0.004, Some((20.0, 0.001))),
            row("c", 0.0, 400, 0.004, Some((20.0, 0.001))),
        ]
        .into_iter()
        .collect();
        comp.get_mut(&("cfg".to_string(), "c".to_string())).unwrap()["error"] = json!("boom");
        let v = compare_rows(&base, &comp, &["f1"], 7);
        assert_eq!(v["pairs"], 2);
        assert_eq!(v["input_tokens"]["baseline"], 2000.0);
        assert_eq!(v["input_tokens"]["compressed"], 800.0);
        assert!((v["input_tokens"]["reduction"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(v["metrics"]["f1"]["baseline"], 0.5);
        assert_eq!(v["metrics"]["f1"]["compressed"], 1.0);
        assert_eq!(v["metrics"]["f1"]["diff"], 0.5);
        assert!((v["cost_usd"]["baseline"].as_f64().unwrap() - 0.02).abs() < 1e-12);
        assert!((v["cost_usd"]["compressed"].as_f64().unwrap() - 0.01).abs() < 1e-12);
        assert!((v["cost_usd"]["saved"].as_f64().unwrap() - 0.01).abs() < 1e-12);
        assert_eq!(v["latency_ms"]["overhead"], 20.0);
    }

    #[test]
    fn the_table_shows_both_sides_and_unknowns_as_na() {
        let cmp = json!({
            "baseline": "b", "compressed": "c", "method": "selective", "pairs": 3,
            "metrics": {"f1": {"baseline": 0.5, "compressed": 0.25, "diff": -0.25,
                "ci_low": -0.5, "ci_high": 0.0, "p_value": 0.2, "n": 3}},
            "input_tokens": {"baseline": 300.0, "compressed": 150.0, "reduction": 0.5},
            "latency_ms": {"baseline": 10.0, "compressed": 12.5, "overhead": 2.5},
            "cost_usd": {"baseline": null, "compressed": null, "saved": null},
        });
        let t = table(&cmp);
        assert!(t.starts_with("b → c (selective, 3 paired examples)"), "{t}");
        assert!(t.contains("300 → 150"), "{t}");
        assert!(t.contains("(50.0% fewer)"), "{t}");
        assert!(
            t.contains("0.5000 → 0.2500       Δ -0.2500 [-0.5000, 0.0000] p=0.200"),
            "{t}"
        );
        assert!(t.contains("(+2.5 ms incl. compression)"), "{t}");
        assert!(t.contains("n/a → n/a"), "{t}");
    }
}
