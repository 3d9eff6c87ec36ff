//! What a seed decides: which test examples are drawn (a bootstrap resample) and which five
//! training examples are shown in 5-shot prompts (stratified by label where there are labels).

use std::collections::BTreeMap;

use crate::data::sample::{rng, shuffle};
use crate::data::Example;

/// One draw of a resample: the prediction id and the index of the test example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub id: String,
    pub index: usize,
}

/// Seed `seed`'s resample of the test set: `test.len()` draws with replacement, in draw
/// order. Repeated draws of an example get ids `<id>#2`, `<id>#3`, … so every line of a
/// prediction file has its own id while scoring weights each draw once.
pub fn resample(test: &[Example], task: &str, seed: u64) -> Vec<Draw> {
    use rand::RngCore;
    let n = test.len();
    if n == 0 {
        return Vec::new();
    }
    let mut r = rng(seed, &format!("{task}/eval-resample"));
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    (0..n)
        .map(|_| {
            let i = ((u128::from(r.next_u64()) * n as u128) >> 64) as usize;
            let k = seen.entry(i).or_insert(0);
            *k += 1;
            let id = if *k == 1 {
                test[i].id.clone()
            } else {
                format!("{}#{k}", test[i].id)
            };
            Draw { id, index: i }
        })
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
    fn resample_is_seeded_with_unique_ids() {
        let test: Vec<Example> = (0..50).map(|i| ex(i, "x")).collect();
        let a = resample(&test, "fpb", 1);
        assert_eq!(a, resample(&test, "fpb", 1));
        assert_ne!(a, resample(&test, "fpb", 2));
        assert_eq!(a.len(), 50);
        let ids: std::collections::HashSet<_> = a.iter().map(|d| d.id.clone()).collect();
        assert_eq!(ids.len(), 50, "ids must be unique");
        assert!(a.iter().any(|d| d.id.contains('#')), "a bootstrap repeats");
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
