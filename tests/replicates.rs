//! Replicates and the decisive comparison: between-task overlap against same-task (replicate)
//! overlap, on planted masks whose answer is known.

use avr_modularity::analysis::replicates::{paired_sharing, replicate_test, Interval, Replicates};
use avr_modularity::analysis::Overlap;
use avr_modularity::masking::{Mask, MixedSettings};
use avr_modularity::model::Params;
use avr_modularity::rng::Rng;
use tch::Tensor;

/// A mask of `task` for `seed`: its core `core` with each weight dropped with probability 0.1,
/// plus 150 weights chosen at random — what replicates of one module look like.
fn planted(task: &str, core: std::ops::Range<usize>, seed: u64) -> Mask {
    let mut rng = Rng::new(seed).fork(task);
    let mut v = vec![-3f32; 4096];
    core.filter(|_| rng.uniform() > 0.1)
        .for_each(|i| v[i] = 3.0);
    (0..150).for_each(|_| v[rng.below(4096)] = 3.0);
    let mut p = Params::new();
    p.insert("w", Tensor::from_slice(&v).reshape([64, 64]));
    Mask::new(format!("{task}-s{seed}"), p, Some(1e-5))
}

fn replicates(task: &str, core: std::ops::Range<usize>, seeds: std::ops::Range<u64>) -> Replicates {
    let masks: Vec<Mask> = seeds.map(|s| planted(task, core.clone(), s)).collect();
    let mut groups = Replicates::group(&masks);
    assert_eq!(groups.len(), 1, "one task");
    groups.remove(0)
}

#[test]
fn two_planted_modules_share_less_than_their_replicates_and_the_test_says_so() {
    let a = replicates("add", 0..600, 0..4);
    let b = replicates("mul", 300..900, 0..4);
    let t = replicate_test(&a, &b, Overlap::IoMin, false, 0, MixedSettings::Refuse).unwrap();
    assert!(t.within > t.between + 20.0, "{t:?}");
    assert!(t.exact && t.relabelings == 70, "{t:?}");
    assert!(
        (t.p - 2.0 / 70.0).abs() < 1e-12,
        "only the observed split and its mirror: {t:?}"
    );
    assert!(
        t.verdict(0.05)
            .starts_with("add and mul share fewer weights than replicates"),
        "{}",
        t.verdict(0.05)
    );
    // Seed-matched sharing over seeds, with its interval, lies between the two.
    let pair = paired_sharing(&a, &b, Overlap::IoMin).unwrap();
    assert_eq!(pair.n, 4);
    assert!(pair.low < pair.mean && pair.mean < pair.high);
    assert!(pair.high < t.within, "{pair:?} vs {t:?}");
}

/// Two groups of seeds of one task differ only by chance: over 20 independent halvings the
/// test rejects at 0.05 about 1 time in 35 (its exact size), and says "no significant
/// difference" otherwise.
#[test]
fn two_halves_of_one_task_show_no_difference() {
    let tests: Vec<_> = (0..20u64)
        .map(|k| {
            let first = replicates("add", 0..600, 8 * k..8 * k + 4);
            let mut second = replicates("add", 0..600, 8 * k + 4..8 * k + 8);
            second.task = "add (other seeds)".into();
            replicate_test(
                &first,
                &second,
                Overlap::IoMin,
                false,
                0,
                MixedSettings::Refuse,
            )
            .unwrap()
        })
        .collect();
    let rejected = tests.iter().filter(|t| t.p <= 0.05).count();
    assert!(rejected <= 3, "{rejected} of 20 halvings rejected");
    let kept = tests.iter().find(|t| t.p > 0.05).unwrap();
    assert!(
        kept.verdict(0.05).starts_with("no significant difference"),
        "{}",
        kept.verdict(0.05)
    );
    // Two seeds each: the design cannot reach p < 1/3, and the verdict says so.
    let (a2, b2) = (
        replicates("add", 0..600, 0..2),
        replicates("mul", 300..900, 0..2),
    );
    let small = replicate_test(&a2, &b2, Overlap::IoMin, false, 0, MixedSettings::Refuse).unwrap();
    assert!((small.smallest_possible_p - 1.0 / 3.0).abs() < 1e-12);
    assert!(
        small.verdict(0.05).contains("more seeds are needed"),
        "{}",
        small.verdict(0.05)
    );
    // One seed is refused: no replicate overlap to compare with.
    let one = replicates("add", 0..600, 0..1);
    assert!(replicate_test(&one, &b2, Overlap::IoMin, false, 0, MixedSettings::Refuse).is_err());
}

#[test]
fn module_size_over_seeds_carries_its_interval() {
    let a = replicates("add", 0..600, 0..5);
    let kept = a.kept_percent();
    assert_eq!(kept.n, 5);
    // 540 core weights on average + about 150 random ones of 4096: about 16.5 %.
    assert!((14.0..19.0).contains(&kept.mean), "{kept:?}");
    assert!(kept.high - kept.low < 3.0, "{kept:?}");
    assert!(Interval::t95(&[kept.mean])
        .summary(1)
        .contains("no interval"));
}
