//! The masking method on its own validation tasks (weight-masking spec §4), at test size (one
//! digit per number, a 128-128 FNN): P_specialize on add/mul and P_reuse on double addition.

use avr_modularity::analysis::replicates::{replicate_test, Replicates};
use avr_modularity::analysis::Overlap;
use avr_modularity::masking::toy::*;
use avr_modularity::masking::{Mask, MixedSettings};
use tch::Device;

/// The smoke preset (one digit, 128-128, 1,500 steps, β = 1e-2, seed 3) for `task`.
fn small(task: ToyTask) -> ToyConfig {
    ToyConfig::smoke().with_task(task)
}

/// The toy trainers seed libtorch's one global generator and draw from it, as one CLI run does.
/// Tests running at once would interleave their draws and train other networks on every run (a
/// null test then fails by chance now and then), so these tests take turns.
static GLOBAL_GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn row<'a>(r: &'a ToyReport, setting: &str) -> &'a (String, f64, f64) {
    r.accuracies
        .iter()
        .find(|a| a.0 == setting)
        .unwrap_or_else(|| panic!("no row {setting}: {:?}", r.accuracies))
}

#[test]
fn add_and_mul_get_their_own_weights() {
    let _turn = my_turn();
    let r = run_toy(&small(ToyTask::AddMul), Device::Cpu).unwrap();
    eprintln!("{:?}\n{:?}\n{:?}", r.accuracies, r.layers, r.kept);
    let full = row(&r, "unmasked");
    assert!(
        full.1 > 0.95 && full.2 > 0.95,
        "pre-training must solve both ops: {full:?}"
    );
    let (plus, times) = (row(&r, "+"), row(&r, "×"));
    assert!(
        plus.1 > 0.9 && plus.2 < 0.5,
        "+ mask keeps + and loses ×: {plus:?}"
    );
    assert!(
        times.2 > 0.9 && times.1 < 0.5,
        "× mask keeps × and loses +: {times:?}"
    );
    let (not_plus, not_times) = (row(&r, "¬+"), row(&r, "¬×"));
    // "¬+ destroys + while ¬× destroys ×" (weight-masking spec §3.16), and on balance removing an
    // operation's weights hurts it more than the other operation. At this test size ¬+ can take
    // × down with + (both at chance: the + mask also holds weights × needs) — seen on one CPU
    // type and not on another, since the runs' float rounding differs — so the asymmetry is
    // asserted for the pair, not for each inverted mask alone.
    assert!(
        not_plus.1 < 0.5 && not_times.2 < 0.5,
        "each inverted mask destroys its own operation: {not_plus:?} {not_times:?}"
    );
    assert!(
        not_plus.1 + not_times.2 < not_plus.2 + not_times.1,
        "removing an operation's weights hurts it more than the other: {not_plus:?} {not_times:?}"
    );
    assert!(
        r.layers.iter().all(|l| l.1 < 0.8),
        "per-layer IoU well below 1: {:?}",
        r.layers
    );
    assert!(
        r.kept.iter().all(|k| k.1 < k.2 / 2),
        "masks are sparse: {:?}",
        r.kept
    );
    // Half-mask test: the control mask keeps both ops; its halves split the tensors in two.
    let h = &r.half_mask;
    eprintln!("{h:?}");
    assert!(
        h.full_mask.0 > 0.9 && h.full_mask.1 > 0.9,
        "control mask solves both ops: {h:?}"
    );
    assert_eq!(
        h.early_tensors,
        vec!["layers.0.weight".to_string(), "layers.1.weight".to_string()],
        "⌈3/2⌉ first sorted tensors"
    );
}

#[test]
fn the_two_pairs_of_double_addition_use_different_weights() {
    let _turn = my_turn();
    let r = run_toy(&small(ToyTask::DoubleAdd), Device::Cpu).unwrap();
    eprintln!("{:?}\n{:?}", r.accuracies, r.layers);
    let full = row(&r, "unmasked");
    assert!(full.1 > 0.95 && full.2 > 0.95, "{full:?}");
    let (p1, p2) = (row(&r, "pair 1"), row(&r, "pair 2"));
    assert!(p1.1 > 0.9 && p1.2 < 0.5, "{p1:?}");
    assert!(p2.2 > 0.9 && p2.1 < 0.5, "{p2:?}");
    let (n1, n2) = (row(&r, "¬pair 1"), row(&r, "¬pair 2"));
    assert!(
        n1.1 < 0.5 && n1.2 > 0.9,
        "removing pair-1 weights kills pair 1 only: {n1:?}"
    );
    assert!(
        n2.2 < 0.5 && n2.1 > 0.9,
        "removing pair-2 weights kills pair 2 only: {n2:?}"
    );
    // The input and output layers of the two pairs are disjoint by construction.
    let first = &r.layers[0];
    assert!(first.1 < 0.2, "input layer IoU {first:?}");
}

/// The planted case on a trained network (the rigour issue): double addition's two pairs have
/// their own input and output weights by construction, so masks of one pair trained with
/// different seeds (replicates) must share more than the masks of the two pairs do, and the
/// permutation test must say so; two groups of seeds of the same pair must show no difference.
#[test]
fn replicates_of_one_pair_share_more_than_the_two_pairs_and_the_test_says_so() {
    let _turn = my_turn();
    let model = pretrain(&small(ToyTask::DoubleAdd), Device::Cpu).unwrap();
    let replicates = |label: &str, part: Part, seeds: std::ops::Range<u64>| -> Replicates {
        let masks: Vec<Mask> = seeds
            .map(|s| train_toy_mask(&model, &format!("{label}-s{s}"), &[part]).unwrap())
            .collect();
        let mut groups = Replicates::group(&masks);
        assert_eq!(groups.len(), 1, "one task per group");
        groups.remove(0)
    };
    let pair1 = replicates("pair 1", 0, 0..4);
    let pair2 = replicates("pair 2", 1, 0..4);
    let pair1_again = replicates("pair 1 again", 0, 4..8);

    let between = replicate_test(
        &pair1,
        &pair2,
        Overlap::IoMin,
        false,
        0,
        MixedSettings::Refuse,
    )
    .unwrap();
    eprintln!("{between:?}\n{}", between.verdict(0.05));
    assert!(between.exact && between.relabelings == 70, "{between:?}");
    assert!(
        between.within > between.between + 10.0,
        "replicates share far more than the two pairs: {between:?}"
    );
    assert!(between.p <= 0.05, "{between:?}");
    assert!(
        between
            .verdict(0.05)
            .starts_with("pair 1 and pair 2 share fewer weights than replicates"),
        "{}",
        between.verdict(0.05)
    );

    let same = replicate_test(
        &pair1,
        &pair1_again,
        Overlap::IoMin,
        false,
        0,
        MixedSettings::Refuse,
    )
    .unwrap();
    eprintln!("{same:?}\n{}", same.verdict(0.05));
    assert!(
        same.p > 0.05,
        "two groups of seeds of one pair differ only by chance: {same:?}"
    );
    assert!(
        same.verdict(0.05).starts_with("no significant difference"),
        "{}",
        same.verdict(0.05)
    );
    assert!(
        (same.within - same.between).abs() < between.difference / 2.0,
        "seed groups of one pair differ far less than the pairs: {same:?} vs {between:?}"
    );
}
