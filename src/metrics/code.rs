//! Code generation: pass@k.

/// The unbiased pass@k estimator of the Codex paper (Chen et al. 2021, "Evaluating Large
/// Language Models Trained on Code", Figure 3): the probability that at least one of `k`
/// samples drawn without replacement from `n` generated samples, `c` of which pass, passes.
/// Numerically stable product form: 1.0 if `n − c < k`, else `1 − Π_{i=n−c+1..=n} (1 − k/i)`.
///
/// Out-of-range arguments, where the paper's formula is undefined or wrong, are clamped:
/// `c > n` is treated as `c = n`; `k > n` as `k = n` (pass@n: 1.0 if any sample passed, else
/// 0.0, where the raw formula would say 1.0 even with `c = 0`); `k = 0` (so also `n = 0`)
/// gives 0.0: no sample drawn, none passed.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    let c = c.min(n);
    let k = k.min(n);
    if k == 0 {
        return 0.0;
    }
    if n - c < k {
        return 1.0;
    }
    let k = k as f64;
    let fail_all: f64 = (n - c + 1..=n).map(|i| 1.0 - k / i as f64).product();
    1.0 - fail_all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_identities() {
        // pass@1 is the fraction of passing samples.
        assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-15);
        // pass@n: did any pass.
        assert_eq!(pass_at_k(5, 1, 5), 1.0);
        assert_eq!(pass_at_k(5, 0, 5), 0.0);
        assert_eq!(pass_at_k(5, 5, 1), 1.0);
    }

    #[test]
    fn out_of_range_arguments_are_clamped() {
        assert_eq!(pass_at_k(5, 0, 10), 0.0);
        assert_eq!(pass_at_k(5, 2, 10), 1.0);
        assert_eq!(pass_at_k(5, 9, 1), 1.0);
        assert_eq!(pass_at_k(5, 2, 0), 0.0);
        assert_eq!(pass_at_k(0, 0, 1), 0.0);
        assert_eq!(pass_at_k(0, 3, 0), 0.0);
    }

    #[test]
    fn monotone_in_k_and_c() {
        let n = 20;
        for c in 0..=n {
            for k in 1..n {
                assert!(pass_at_k(n, c, k) <= pass_at_k(n, c, k + 1) + 1e-15);
            }
            if c < n {
                assert!(pass_at_k(n, c, 3) <= pass_at_k(n, c + 1, 3) + 1e-15);
            }
        }
    }
}
