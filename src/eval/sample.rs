//! What a seed decides: which five training examples are shown in 5-shot prompts (stratified
//! by label where there are labels), and — at scoring time — which bootstrap resample of the
//! test set's predictions the seed's spread is measured on.

use std::collections::BTreeMap;

use crate::data::sample::{rng, shuffle};
use crate::data::Example;

/// Seed `seed`'s bootstrap resample of `n` items: `n` indices drawn with replacement.
pub fn resample_indices(n: usize, task: &str, seed: u64) -> Vec<usize> {
    use rand::RngCore;
    let mut r = rng(seed, &format!("{task}/eval-resample"));
    (0..n)
        .map(|_| ((u128::from(r.next_u64()) * n as u128) >> 64) as usize)
        .collect()
}

/// `k` demonstrations from `train` for seed `seed`: strata visited in a seeded order, one
/// example from each in turn (so five shots cover five labels, or every label of a
/// three-label task at least once); without strata, a seeded sample.
pub fn shots<'a>(train: &'a [Example], task: &str, seed: u64, k: usize) -> Vec<&'a Example> {
    let mut r = rng(seed, &format!("{task}/eval-shots"));
    let mut groups: BTreeMap<Option<&str>, Vec<&Example>> = BTreeMap::new();
    for e in train {
        groups.entry(e.stratum.as_deref()).or_default().push(e);
    }
    let mut order: Vec<Vec<&Example>> = groups.into_values().collect();
    for g in &mut order {
        shuffle(g, &mut r);
    }
    shuffle(&mut order, &mut r);
    let mut out = Vec::with_capacity(k);
    let mut round = 0;
    while out.len() < k {
        let before = out.len();
        for g in &order {
            if out.len() == k {
                break;
            }
            if let Some(e) = g.get(round) {
                out.push(*e);
            }
        }
        if out.len() == before {
            break;
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Answer;

    fn ex(id: usize, label: &str) -> Example {
        Example {
            id: format!("e{id}"),
            task: "t".into(),
            inputs: Default::default(),
            answer: Answer::Label {
                label: label.into(),
            },
            target: label.into(),
            stratum: Some(label.into()),
        }
    }

    #[test]
    fn resample_is_seeded_and_draws_with_replacement() {
        let a = resample_indices(50, "fpb", 1);
        assert_eq!(a, resample_indices(50, "fpb", 1));
        assert_ne!(a, resample_indices(50, "fpb", 2));
        assert_eq!(a.len(), 50);
        assert!(a.iter().all(|&i| i < 50));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() < 50, "a bootstrap repeats");
        assert!(resample_indices(0, "fpb", 1).is_empty());
    }

    #[test]
    fn shots_cover_labels_and_depend_on_seed() {
        let mut train = Vec::new();
        for i in 0..60 {
            train.push(ex(
                i,
                ["neg", "neu", "pos"][usize::from(i % 10 != 0) + usize::from(i % 10 > 5)],
            ));
        }
        for seed in 1..6 {
            let s = shots(&train, "fpb", seed, 5);
            assert_eq!(s.len(), 5);
            let labels: std::collections::BTreeSet<_> =
                s.iter().map(|e| e.target.clone()).collect();
            assert_eq!(labels.len(), 3, "seed {seed}: {labels:?}");
        }
        let ids = |seed| -> Vec<String> {
            shots(&train, "fpb", seed, 5)
                .iter()
                .map(|e| e.id.clone())
                .collect()
        };
        assert_ne!(ids(1), ids(2));
        assert_eq!(shots(&train[..2], "fpb", 1, 5).len(), 2);
    }
}
