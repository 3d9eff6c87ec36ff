//! The load test's arithmetic, with vLLM's serving-benchmark definitions (so the same command
//! against bwb and against vLLM compares like with like):
//! - TTFT: request sent → first chunk carrying output text;
//! - E2E latency: request sent → last chunk carrying output text;
//! - TPOT per request: `(E2E − TTFT) / (output tokens − 1)`, taken over requests with more
//!   than one output token (and counted as 0 for the goodput test of the others);
//! - ITL: every gap between consecutive text chunks, pooled over all requests;
//! - goodput: requests meeting every SLO (`value ≤ SLO`), per second of the run;
//! - percentiles: linear interpolation between order statistics (numpy's default).

use serde::Serialize;

/// The `p`-th percentile (0–100) of `v`, linearly interpolated; `None` when `v` is empty.
pub fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let pos = (p.clamp(0.0, 100.0) / 100.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(s[lo] + (s[hi] - s[lo]) * (pos - lo as f64))
}

/// Mean and percentiles of a latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

impl Stats {
    /// From samples in seconds; `None` when there are none.
    pub fn of_seconds(v: &[f64]) -> Option<Stats> {
        let ms: Vec<f64> = v.iter().map(|x| x * 1e3).collect();
        Some(Stats {
            mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
            p50: percentile(&ms, 50.0)?,
            p95: percentile(&ms, 95.0)?,
            p99: percentile(&ms, 99.0)?,
        })
    }
}

/// Time per output token after the first, in seconds; 0 for one token or none.
pub fn tpot(e2e: f64, ttft: f64, output_tokens: usize) -> f64 {
    if output_tokens > 1 {
        (e2e - ttft) / (output_tokens - 1) as f64
    } else {
        0.0
    }
}

/// Service-level objectives, milliseconds (`--slo ttft=MS,tpot=MS[,e2el=MS]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Slo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2el_ms: Option<f64>,
}

impl Slo {
    /// `ttft=500,tpot=50` (any of ttft, tpot, e2el; positive milliseconds).
    pub fn parse(text: &str) -> Result<Slo, String> {
        let mut slo = Slo::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!(
                    "--slo: `{part}` is not KEY=MS; write e.g. --slo ttft=500,tpot=50"
                ));
            };
            let ms: f64 = match v.trim().parse() {
                Ok(x) if x > 0.0 && f64::is_finite(x) => x,
                _ => {
                    return Err(format!(
                        "--slo: `{part}`: the value must be a positive number of milliseconds"
                    ))
                }
            };
            let slot = match k.trim() {
                "ttft" => &mut slo.ttft_ms,
                "tpot" => &mut slo.tpot_ms,
                "e2el" => &mut slo.e2el_ms,
                other => {
                    return Err(format!(
                        "--slo: unknown key `{other}`; valid keys: ttft, tpot, e2el"
                    ))
                }
            };
            *slot = Some(ms);
        }
        if slo == Slo::default() {
            return Err("--slo names no objective; write e.g. --slo ttft=500,tpot=50".into());
        }
        Ok(slo)
    }

    /// Whether a request (seconds) meets every objective set.
    pub fn met(&self, ttft: f64, tpot: f64, e2el: f64) -> bool {
        let ok = |slo: Option<f64>, v: f64| slo.is_none_or(|ms| v * 1e3 <= ms);
        ok(self.ttft_ms, ttft) && ok(self.tpot_ms, tpot) && ok(self.e2el_ms, e2el)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        // numpy.percentile([1, 2, 3, 4], 99) = 3.97
        assert!((percentile(&v, 99.0).unwrap() - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let s = Stats::of_seconds(&[0.1, 0.2, 0.3]).unwrap();
        assert!((s.mean - 200.0).abs() < 1e-9 && (s.p50 - 200.0).abs() < 1e-9);
        assert!((s.p95 - 290.0).abs() < 1e-9, "{s:?}");
        assert!(Stats::of_seconds(&[]).is_none());
    }

    #[test]
    fn tpot_excludes_the_first_token() {
        assert!((tpot(1.0, 0.1, 10) - 0.1).abs() < 1e-12);
        assert_eq!(tpot(1.0, 0.1, 1), 0.0);
        assert_eq!(tpot(1.0, 0.1, 0), 0.0);
    }

    #[test]
    fn slos_parse_and_judge_each_objective() {
        let s = Slo::parse("ttft=500, tpot=50").unwrap();
        assert_eq!(
            (s.ttft_ms, s.tpot_ms, s.e2el_ms),
            (Some(500.0), Some(50.0), None)
        );
        assert!(s.met(0.5, 0.05, 100.0), "equal to the objective is good");
        assert!(!s.met(0.501, 0.01, 0.0));
        assert!(!s.met(0.1, 0.051, 0.0));
        assert!(Slo::parse("e2el=1000").unwrap().met(0.9, 9.0, 1.0));
        for bad in ["ttft", "ttft=0", "ttft=-3", "ttft=x", "itl=5", "", ","] {
            let e = Slo::parse(bad).unwrap_err();
            assert!(e.starts_with("--slo"), "{bad}: {e}");
        }
    }
}
