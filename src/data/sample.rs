//! Seeded, platform-independent sampling: the same seed gives the same split on every
//! machine and every version of bwb (ChaCha8 stream + our own Fisher–Yates, so a change in
//! `rand`'s shuffle algorithm can never reshuffle a benchmark).

use std::collections::BTreeMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An RNG for one purpose (`"test"`, `"val"`…) of one task under one seed.
pub fn rng(seed: u64, purpose: &str) -> ChaCha8Rng {
    // FNV-1a of the purpose, so each purpose draws an independent stream.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in purpose.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h)
}

/// Uniform index in 0..n (n ≥ 1); the multiply-shift bias is below 2^-40 for our sizes.
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Fisher–Yates shuffle.
pub fn shuffle<T>(items: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// Group indices by stratum (`None` is its own stratum), each group shuffled.
fn groups<K: Ord + Clone>(keys: &[K], rng: &mut ChaCha8Rng) -> BTreeMap<K, Vec<usize>> {
    let mut g: BTreeMap<K, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        g.entry(k.clone()).or_default().push(i);
    }
    for v in g.values_mut() {
        shuffle(v, rng);
    }
    g
}

/// Order items so that every prefix is (close to) stratified: shuffle within each stratum,
/// then merge by relative rank `(r + ½) / n_stratum`. The first 500 training examples then
/// carry the label mix of the whole set.
pub fn interleave<T, K: Ord + Clone>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    rng: &mut ChaCha8Rng,
) -> Vec<T> {
    let keys: Vec<K> = items.iter().map(&key).collect();
    let g = groups(&keys, rng);
    // (numerator 2r+1, denominator 2n, tie-break by stratum order) for each item.
    let mut order: Vec<(u64, u64, usize, usize)> = Vec::with_capacity(items.len());
    for (gi, idx) in g.values().enumerate() {
        let n = idx.len() as u64;
        for (r, &i) in idx.iter().enumerate() {
            order.push((2 * r as u64 + 1, 2 * n, gi, i));
        }
    }
    order.sort_by(|a, b| {
        (u128::from(a.0) * u128::from(b.1))
            .cmp(&(u128::from(b.0) * u128::from(a.1)))
            .then(a.2.cmp(&b.2))
    });
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(_, _, _, i)| slots[i].take())
        .collect()
}

/// Take `n` items stratified by `key` (largest-remainder quotas); returns (taken, rest).
/// Both keep the input's relative order. With n ≥ len everything is taken.
pub fn stratified_take<T, K: Ord + Clone>(
    items: Vec<T>,
    n: usize,
    key: impl Fn(&T) -> K,
    rng: &mut ChaCha8Rng,
) -> (Vec<T>, Vec<T>) {
    let total = items.len();
    if n >= total {
        return (items, Vec::new());
    }
    let keys: Vec<K> = items.iter().map(&key).collect();
    let g = groups(&keys, rng);
    // Quotas: floor of the proportional share, then the leftover seats by largest remainder.
    let mut quotas: Vec<(usize, usize)> = g
        .values()
        .map(|v| ((v.len() * n) / total, (v.len() * n) % total))
        .collect();
    let assigned: usize = quotas.iter().map(|q| q.0).sum();
    let mut by_rem: Vec<usize> = (0..quotas.len()).collect();
    by_rem.sort_by(|&a, &b| quotas[b].1.cmp(&quotas[a].1).then(a.cmp(&b)));
    for &gi in by_rem.iter().take(n - assigned) {
        quotas[gi].0 += 1;
    }
    let mut take = vec![false; total];
    for (v, (q, _)) in g.values().zip(&quotas) {
        for &i in v.iter().take(*q) {
            take[i] = true;
        }
    }
    let (mut taken, mut rest) = (Vec::with_capacity(n), Vec::with_capacity(total - n));
    for (item, t) in items.into_iter().zip(take) {
        if t {
            taken.push(item);
        } else {
            rest.push(item);
        }
    }
    (taken, rest)
}

/// Down-sample every stratum to the size of the smallest; keeps the input's order.
pub fn balance<T, K: Ord + Clone>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    rng: &mut ChaCha8Rng,
) -> Vec<T> {
    let keys: Vec<K> = items.iter().map(&key).collect();
    let g = groups(&keys, rng);
    let Some(min) = g.values().map(Vec::len).min() else {
        return items;
    };
    let mut keep = vec![false; items.len()];
    for v in g.values() {
        for &i in v.iter().take(min) {
            keep[i] = true;
        }
    }
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(x, k)| k.then_some(x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_take_keeps_proportions_and_partitions() {
        // 60 of A, 30 of B, 10 of C; take 20 → 12, 6, 2.
        let items: Vec<(usize, char)> = (0..100)
            .map(|i| {
                (
                    i,
                    if i < 60 {
                        'A'
                    } else if i < 90 {
                        'B'
                    } else {
                        'C'
                    },
                )
            })
            .collect();
        let (taken, rest) = stratified_take(items, 20, |x| x.1, &mut rng(7, "t"));
        let count = |v: &[(usize, char)], c| v.iter().filter(|x| x.1 == c).count();
        assert_eq!(
            (count(&taken, 'A'), count(&taken, 'B'), count(&taken, 'C')),
            (12, 6, 2)
        );
        assert_eq!(taken.len() + rest.len(), 100);
        let mut all: Vec<usize> = taken.iter().chain(&rest).map(|x| x.0).collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_result_other_seed_differs() {
        let items: Vec<u32> = (0..50).collect();
        let a = interleave(items.clone(), |x| x % 3, &mut rng(1, "x"));
        let b = interleave(items.clone(), |x| x % 3, &mut rng(1, "x"));
        let c = interleave(items, |x| x % 3, &mut rng(2, "x"));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn interleave_prefixes_are_stratified() {
        // 40 of class 0, 20 of class 1: every prefix of 6 holds 4 and 2.
        let items: Vec<u32> = (0..60).collect();
        let out = interleave(items, |x| u32::from(*x >= 40), &mut rng(3, "i"));
        for k in [6, 12, 30] {
            let ones = out[..k].iter().filter(|x| **x >= 40).count();
            assert_eq!(ones, k / 3, "prefix {k}");
        }
    }

    #[test]
    fn balance_equalises_strata() {
        let items: Vec<u32> = (0..30).collect();
        let out = balance(items, |x| *x < 10, &mut rng(4, "b"));
        assert_eq!(out.len(), 20);
        assert_eq!(out.iter().filter(|x| **x < 10).count(), 10);
    }

    const PINNED: [u32; 10] = [6, 7, 4, 2, 0, 3, 1, 5, 9, 8];

    #[test]
    fn shuffle_is_pinned() {
        // Guards against an RNG or algorithm change silently reshuffling every benchmark.
        let mut v: Vec<u32> = (0..10).collect();
        shuffle(&mut v, &mut rng(42, "pin"));
        assert_eq!(v, PINNED);
    }
}
