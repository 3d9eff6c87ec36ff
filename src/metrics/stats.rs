//! Summary statistics and significance tests over per-example scores: numpy's `mean`,
//! `std(ddof=1)` and `percentile`, statsmodels' McNemar test, and seeded percentile bootstraps.
//!
//! NaN handling: a NaN value propagates (mean, std, percentile and the bootstrap bounds come
//! out NaN, as in numpy); `None` is reserved for inputs on which the statistic is undefined
//! (too few values, an out-of-range parameter).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Arithmetic mean; `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(values.iter().sum::<f64>() / values.len() as f64)
}

/// Sample standard deviation (`ddof = 1`, numpy's two-pass formula); `None` for fewer than two
/// values.
pub fn std(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let m = mean(values)?;
    let squares: f64 = values.iter().map(|x| (x - m) * (x - m)).sum();
    Some((squares / (values.len() - 1) as f64).sqrt())
}

/// numpy's `np.percentile(values, q)` with the default `linear` method: sort, take the virtual
/// index `(n − 1)·q/100` and interpolate between its neighbours (numpy's `_lerp`, which
/// interpolates from the nearer end). `None` for no values or `q` outside `[0, 100]` (or NaN);
/// `Some(NaN)` if any value is NaN.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }
    if values.iter().any(|v| v.is_nan()) {
        return Some(f64::NAN);
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(percentile_of_sorted(&sorted, q))
}

/// [`percentile`] of sorted, NaN-free, non-empty `sorted` with `q` in `[0, 100]`.
fn percentile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len() - 1;
    let virtual_index = last as f64 * (q / 100.0);
    if virtual_index >= last as f64 {
        return sorted[last];
    }
    let below = virtual_index.floor();
    let (a, b) = (sorted[below as usize], sorted[below as usize + 1]);
    let t = virtual_index - below;
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// The complementary error function `erfc(x) = 1 − erf(x)`, to about 1e-14 relative accuracy
/// over the whole range (checked against `scipy.special.erfc`). NaN → NaN, −∞ → 2, ∞ → 0.
///
/// Method: for `|x| < 1` the everywhere-positive series
/// `erf(x) = 2/√π · e^(−x²) · Σₙ 2ⁿ x^(2n+1) / (1·3·…·(2n+1))`; beyond, the continued fraction
/// `erfc(x) = e^(−x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))` (Abramowitz & Stegun 7.1.14)
/// evaluated with the modified Lentz algorithm; `erfc(−x) = 2 − erfc(x)`.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x >= ERFC_ZERO_FROM {
        return 0.0;
    }
    // e^(−x²) with x² = hi + lo exactly: the rounding of x² would otherwise cost up to
    // x²·2⁻⁵³ relative error, 1e-13 at x = 27.
    let hi = x * x;
    let lo = x.mul_add(x, -hi);
    erfc_nonneg(x, hi, (-hi).exp() * (1.0 - lo))
}

/// `erfc` underflows to 0 from here on (`erfc(27.3) < 1e-325`).
const ERFC_ZERO_FROM: f64 = 27.3;

/// erfc of finite `x ≥ 0` given `x2 ≈ x²` and `exp_neg_x2 = e^(−x²)` computed accurately.
fn erfc_nonneg(x: f64, x2: f64, exp_neg_x2: f64) -> f64 {
    const FRAC_1_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI / 2.0;
    if x < 1.0 {
        // Series for erf; ~20 terms at most.
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= 2.0 * x2 / (2 * n + 1) as f64;
            sum += term;
            if term <= sum * f64::EPSILON / 4.0 {
                break;
            }
        }
        return 1.0 - std::f64::consts::FRAC_2_SQRT_PI * exp_neg_x2 * sum;
    }
    // Continued fraction b₀ + a₁/(b₁ + a₂/(b₂ + …)) with bⱼ = x, aⱼ = j/2; ≤ ~200 steps at x = 1.
    const TINY: f64 = 1e-300;
    let (mut f, mut c, mut d) = (x, x, 0.0);
    for j in 1..1000 {
        let a = j as f64 / 2.0;
        d = x + a * d;
        d = if d == 0.0 { 1.0 / TINY } else { 1.0 / d };
        c = x + a / c;
        if c == 0.0 {
            c = TINY;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() <= f64::EPSILON {
            break;
        }
    }
    exp_neg_x2 * FRAC_1_SQRT_PI / f
}

/// Survival function of the χ² distribution with one degree of freedom:
/// `P(X > stat) = erfc(√(stat/2))`; 1.0 for `stat ≤ 0`, NaN for NaN.
fn chi2_sf_1(stat: f64) -> f64 {
    if stat.is_nan() {
        return f64::NAN;
    }
    if stat <= 0.0 {
        return 1.0;
    }
    let x2 = stat / 2.0; // exact, so e^(−x²) carries no rounding of x²
    let x = x2.sqrt();
    if x >= ERFC_ZERO_FROM {
        return 0.0;
    }
    erfc_nonneg(x, x2, (-x2).exp())
}

/// Result of [`mcnemar`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mcnemar {
    /// Examples only the first system got right.
    pub b: u64,
    /// Examples only the second system got right.
    pub c: u64,
    /// `min(b, c)` for the exact test, the corrected χ² statistic otherwise.
    pub statistic: f64,
    /// Two-sided p-value for "both systems are equally accurate".
    pub p_value: f64,
    /// Whether the exact binomial test was used (`b + c < 25`).
    pub exact: bool,
}

/// McNemar's test on the discordant pairs `b` and `c`, as statsmodels'
/// `mcnemar([[·, b], [c, ·]], exact=(b + c < 25), correction=True)`:
/// * exact (`b + c < 25`): statistic `min(b, c)`, p = `min(1, 2·BinomCDF(min(b, c); b + c, ½))`,
///   computed with exact integers. `b = c = 0` gives p = 1.0.
/// * otherwise: statistic `(|b − c| − 1)² / (b + c)` with continuity correction (so `b = c`
///   gives `1 / (b + c)`, as statsmodels), p = χ²₁ survival function.
pub fn mcnemar(b: u64, c: u64) -> Mcnemar {
    let n = u128::from(b) + u128::from(c);
    let exact = n < 25;
    let (statistic, p_value) = if exact {
        let k = b.min(c);
        // Σ_{i ≤ k} C(n, i) / 2ⁿ; C(24, 12) < 2²², every step exact.
        let (mut coef, mut below) = (1u128, 0u128);
        for i in 0..=u128::from(k) {
            below += coef;
            coef = coef * (n - i) / (i + 1);
        }
        let cdf = below as f64 / (1u128 << n) as f64;
        (k as f64, (2.0 * cdf).min(1.0))
    } else {
        let d = b.abs_diff(c) as f64 - 1.0;
        let statistic = d * d / n as f64;
        (statistic, chi2_sf_1(statistic))
    };
    Mcnemar {
        b,
        c,
        statistic,
        p_value,
        exact,
    }
}

/// Percentile bootstrap confidence interval of the mean: `resamples` resamples of `values`
/// with replacement (indices from `ChaCha8Rng::seed_from_u64(seed)`, so a seed always gives
/// the same interval), and the [`percentile`]s `(1 − level)/2` and `(1 + level)/2` of their
/// means. `level` is a fraction, e.g. 0.95.
///
/// `None` for no values, no resamples or `level` outside `(0, 1)`; `Some((NaN, NaN))` if a
/// value is NaN.
pub fn bootstrap_ci(values: &[f64], resamples: usize, seed: u64, level: f64) -> Option<(f64, f64)> {
    if values.is_empty() || resamples == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let means = resampled_means(values, resamples, seed);
    Some(interval(&means, level))
}

/// Result of [`paired_bootstrap`]: system A minus system B.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedBootstrap {
    /// `mean(a) − mean(b)` on the full data.
    pub mean_diff: f64,
    /// 95 % percentile bootstrap interval of the mean difference.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided bootstrap p-value for "no difference" (see [`paired_bootstrap`]).
    pub p_value: f64,
}

/// Confidence level of [`paired_bootstrap`]'s interval.
pub const PAIRED_LEVEL: f64 = 0.95;

/// Paired bootstrap of two systems scored on the same examples (`a[i]` and `b[i]` belong to
/// example `i`): resample examples with replacement `resamples` times (seeded as in
/// [`bootstrap_ci`]), taking the mean of `a[i] − b[i]` each time.
///
/// The interval is the [`PAIRED_LEVEL`] percentile interval of those means. The p-value is how
/// often a resampled difference lands on either side of zero, doubled and smoothed:
/// `min(1, 2·(min(#{d ≤ 0}, #{d ≥ 0}) + 1) / (resamples + 1))`. It is 1.0 when the systems
/// agree on every example and `2 / (resamples + 1)` — the smallest it can be — when every
/// resample favours the same system.
///
/// `None` for no pairs or no resamples. `a` and `b` must have equal lengths; NaN scores make
/// every field but `p_value` NaN.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<PairedBootstrap> {
    debug_assert_eq!(a.len(), b.len(), "paired scores differ in length");
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    if resamples == 0 {
        return None;
    }
    let mean_diff = mean(&diffs)?;
    let means = resampled_means(&diffs, resamples, seed);
    let at_most_zero = means.iter().filter(|d| **d <= 0.0).count();
    let at_least_zero = means.iter().filter(|d| **d >= 0.0).count();
    let tail = at_most_zero.min(at_least_zero) as f64;
    let p_value = (2.0 * (tail + 1.0) / (resamples as f64 + 1.0)).min(1.0);
    let (ci_low, ci_high) = interval(&means, PAIRED_LEVEL);
    Some(PairedBootstrap {
        mean_diff,
        ci_low,
        ci_high,
        p_value,
    })
}

/// Means of `resamples` seeded resamples of non-empty `values`, drawn with replacement.
fn resampled_means(values: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = values.len();
    (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect()
}

/// The central `level` percentile interval of non-empty `draws`; (NaN, NaN) if any is NaN.
fn interval(draws: &[f64], level: f64) -> (f64, f64) {
    let low = (1.0 - level) / 2.0 * 100.0;
    let high = (1.0 + level) / 2.0 * 100.0;
    match (percentile(draws, low), percentile(draws, high)) {
        (Some(lo), Some(hi)) => (lo, hi),
        _ => (f64::NAN, f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-scores in [0, 1): 0/1 correctness with the given accuracy.
    fn scores(n: usize, accuracy: f64, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| f64::from(u8::from(rng.random::<f64>() < accuracy)))
            .collect()
    }

    #[test]
    fn undefined_inputs_are_none() {
        assert_eq!(mean(&[]), None);
        assert_eq!(std(&[1.0]), None);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0], 100.5), None);
        assert_eq!(percentile(&[1.0], -1.0), None);
        assert_eq!(percentile(&[1.0], f64::NAN), None);
        assert_eq!(bootstrap_ci(&[], 100, 0, 0.95), None);
        assert_eq!(bootstrap_ci(&[1.0], 0, 0, 0.95), None);
        assert_eq!(bootstrap_ci(&[1.0], 10, 0, 1.0), None);
        assert_eq!(bootstrap_ci(&[1.0], 10, 0, f64::NAN), None);
        assert_eq!(paired_bootstrap(&[], &[], 100, 0), None);
        assert_eq!(paired_bootstrap(&[1.0], &[0.0], 0, 0), None);
    }

    #[test]
    fn nan_propagates() {
        assert!(mean(&[1.0, f64::NAN]).is_some_and(f64::is_nan));
        assert!(percentile(&[1.0, f64::NAN], 50.0).is_some_and(f64::is_nan));
        let ci = bootstrap_ci(&[1.0, f64::NAN], 50, 0, 0.9);
        assert!(ci.is_some_and(|(lo, hi)| lo.is_nan() && hi.is_nan()));
    }

    #[test]
    fn erfc_special_values() {
        assert_eq!(erfc(0.0), 1.0);
        assert_eq!(erfc(f64::INFINITY), 0.0);
        assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
        assert_eq!(erfc(30.0), 0.0);
        assert!(erfc(f64::NAN).is_nan());
        assert_eq!(chi2_sf_1(0.0), 1.0);
        assert_eq!(chi2_sf_1(1e6), 0.0);
        assert!(chi2_sf_1(f64::NAN).is_nan());
        // χ²₁ at 3.841458820694124 is the 95 % point.
        assert!((chi2_sf_1(3.841458820694124) - 0.05).abs() < 1e-14);
    }

    #[test]
    fn mcnemar_large_counts_do_not_overflow() {
        let r = mcnemar(u64::MAX, u64::MAX);
        assert!(!r.exact);
        assert!(r.p_value > 0.99);
        let r = mcnemar(u64::MAX, 0);
        assert_eq!(r.p_value, 0.0);
        let r = mcnemar(0, 0);
        assert_eq!((r.statistic, r.p_value, r.exact), (0.0, 1.0, true));
    }

    #[test]
    fn bootstrap_ci_contains_the_mean_and_shrinks_with_n() {
        let small = scores(50, 0.7, 1);
        let large = scores(2000, 0.7, 2);
        let width = |v: &[f64]| {
            let (lo, hi) = bootstrap_ci(v, 1000, 7, 0.95).unwrap();
            let m = mean(v).unwrap();
            assert!(lo <= m && m <= hi, "{lo} <= {m} <= {hi}");
            assert!(0.0 <= lo && hi <= 1.0);
            hi - lo
        };
        let (w_small, w_large) = (width(&small), width(&large));
        assert!(w_large < w_small / 3.0, "{w_large} vs {w_small}");
    }

    #[test]
    fn bootstrap_is_deterministic_for_a_seed() {
        // Continuous values, so two seeds cannot land on the same grid point by chance.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let v: Vec<f64> = (0..100).map(|_| rng.random::<f64>()).collect();
        assert_eq!(
            bootstrap_ci(&v, 500, 11, 0.9),
            bootstrap_ci(&v, 500, 11, 0.9)
        );
        assert_ne!(
            bootstrap_ci(&v, 500, 11, 0.9),
            bootstrap_ci(&v, 500, 12, 0.9)
        );
        let b = scores(100, 0.5, 4);
        assert_eq!(
            paired_bootstrap(&v, &b, 500, 5),
            paired_bootstrap(&v, &b, 500, 5)
        );
    }

    #[test]
    fn bootstrap_of_a_constant_is_the_constant() {
        assert_eq!(bootstrap_ci(&[0.25; 10], 100, 0, 0.95), Some((0.25, 0.25)));
        assert_eq!(bootstrap_ci(&[0.25], 100, 0, 0.95), Some((0.25, 0.25)));
    }

    #[test]
    fn paired_identical_systems_have_no_difference() {
        let a = scores(200, 0.6, 5);
        let r = paired_bootstrap(&a, &a, 1000, 9).unwrap();
        assert_eq!(
            (r.mean_diff, r.ci_low, r.ci_high, r.p_value),
            (0.0, 0.0, 0.0, 1.0)
        );
    }

    #[test]
    fn paired_clear_difference_is_significant() {
        let a = scores(300, 0.9, 6);
        let b = scores(300, 0.4, 7);
        let resamples = 2000;
        let r = paired_bootstrap(&a, &b, resamples, 13).unwrap();
        assert!(r.mean_diff > 0.3);
        assert!(r.ci_low > 0.0 && r.ci_low <= r.mean_diff && r.mean_diff <= r.ci_high);
        assert_eq!(r.p_value, 2.0 / (resamples as f64 + 1.0));
        // Swapping the systems mirrors the result.
        let s = paired_bootstrap(&b, &a, resamples, 13).unwrap();
        assert_eq!(s.mean_diff, -r.mean_diff);
        assert_eq!(s.p_value, r.p_value);
    }

    #[test]
    fn paired_small_difference_is_not_significant() {
        let a = scores(100, 0.5, 8);
        let mut b = a.clone();
        b[0] = 1.0 - b[0]; // one example flipped
        let r = paired_bootstrap(&a, &b, 1000, 17).unwrap();
        assert!(r.p_value > 0.3, "{}", r.p_value);
        assert!(r.ci_low <= 0.0 && 0.0 <= r.ci_high);
    }
}
