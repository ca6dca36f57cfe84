//! Chance levels of the mask measures on the study's own masks (`avr-seed-study.md` §6) and on
//! planted cases whose answer is known.

use avr_modularity::analysis::chance::{dispersity_chance, sharing_chance, ChanceConfig};
use avr_modularity::analysis::{mask_stats, sharing_matrix, Overlap};
use avr_modularity::fixtures::study_masks;
use avr_modularity::masking::bits::Binarize;
use avr_modularity::masking::{Mask, MixedSettings};
use avr_modularity::model::Params;
use tch::Tensor;

/// The null keeps every mask's per-tensor counts, so its raw IoMin is the overlap of random
/// sets: known in closed form for one tensor (|A ∧ B| ≈ |A||B|/n).
#[test]
fn the_null_of_two_random_masks_is_the_product_of_their_densities() {
    let logits = |keep: i64, seed: i64| {
        let mut p = Params::new();
        let v: Vec<f32> = (0..10_000i64)
            .map(|i| {
                if (i * 7919 + seed) % 10_000 < keep * 100 {
                    3.0
                } else {
                    -3.0
                }
            })
            .collect();
        p.insert("w", Tensor::from_slice(&v).reshape([100, 100]));
        p
    };
    let masks = vec![
        Mask::new("a", logits(30, 0), None),
        Mask::new("b", logits(20, 5_000), None),
    ];
    let cfg = ChanceConfig::default().with_draws(400).with_seed(1);
    let m = sharing_chance(&masks, Overlap::IoMin, false, &cfg).unwrap();
    // |A| = 3000, |B| = 2000: E|A ∧ B| = 600, IoMin = 600 / 2000 = 30 %.
    assert!(
        (m.null_mean[0][1] - 30.0).abs() < 0.3,
        "{}",
        m.null_mean[0][1]
    );
    // Observed equals the deterministic sharing matrix, and both IoMin counted by hand.
    let kept = |m: &Mask| m.logits.get("w").unwrap().gt(0.0);
    let (a, b) = (kept(&masks[0]), kept(&masks[1]));
    let count = |t: &Tensor| t.sum(tch::Kind::Int64).int64_value(&[]) as f64;
    let by_hand = 100.0 * count(&a.logical_and(&b)) / count(&a).min(count(&b));
    let plain = sharing_matrix(&masks, Overlap::IoMin, false).unwrap();
    assert!(
        (plain.matrix[0][1] - by_hand).abs() < 1e-9,
        "{plain:?} vs {by_hand}"
    );
    assert!((m.matrix[0][1] - by_hand).abs() < 1e-9);
    // Same seed, same null; another seed, another draw.
    let again = sharing_chance(&masks, Overlap::IoMin, false, &cfg).unwrap();
    assert_eq!(again.null_mean, m.null_mean);
    let other = sharing_chance(&masks, Overlap::IoMin, false, &cfg.with_seed(2)).unwrap();
    assert_ne!(other.null_mean, m.null_mean);
}

/// A planted module: two masks that keep the same block share far above chance (z ≫ 0, the
/// smallest p), and the dispersity of a compact block in the middle of its tensor lies far
/// below the null's. (The study's dispersity divides by ‖μ‖²: the same block in a corner near
/// index 0 would read as *more* dispersed than chance — a property of the metric.)
#[test]
fn a_planted_shared_block_is_far_above_chance_and_compact() {
    let block = |offset: i64| {
        let mut p = Params::new();
        let v: Vec<f32> = (0..4_096i64)
            .map(|i| {
                let (row, col) = (i / 64, i % 64 - offset);
                if (24..40).contains(&row) && (24..40).contains(&col) {
                    4.0
                } else {
                    -4.0
                }
            })
            .collect();
        p.insert("w", Tensor::from_slice(&v).reshape([64, 64]));
        p
    };
    let masks = vec![
        Mask::new("a", block(0), None),
        Mask::new("b", block(2), None),
    ];
    let cfg = ChanceConfig::default().with_draws(200);
    let m = sharing_chance(&masks, Overlap::IoU, false, &cfg).unwrap();
    assert!(m.z[0][1] > 10.0, "z {}", m.z[0][1]);
    assert!((m.p[0][1] - 1.0 / 201.0).abs() < 1e-12);
    let d = dispersity_chance(&masks[..1], &cfg).unwrap();
    assert!(
        d[0].dispersity.z < -5.0,
        "a compact block is less dispersed than chance: {:?}",
        d[0]
    );
    // Observed dispersity equals the analysis' own.
    assert!((d[0].dispersity.observed - mask_stats(&masks[0]).dispersity).abs() < 1e-9);
}

/// The study's SCL_90 masks: a count-matched null already shares a fifth to two fifths after
/// preprocessing; the study's published triangles–hexagons cell (33.5 %) came from one sample,
/// the deterministic reading is 21.1 %.
#[test]
fn the_study_sharing_against_chance_and_its_sampled_binarisation() {
    let masks = study_masks("SCL_90").unwrap();
    let names: Vec<String> = masks.iter().map(|m| m.name.clone()).collect();
    let (tri, hex) = (
        names
            .iter()
            .find(|n| n.contains("triangles"))
            .unwrap()
            .clone(),
        names
            .iter()
            .find(|n| n.contains("hexagons"))
            .unwrap()
            .clone(),
    );
    // The study compared masks trained with different α: refused unless the caller opts in.
    let strict = ChanceConfig::default().with_draws(50).with_seed(0);
    let refused = sharing_chance(&masks, Overlap::IoMin, true, &strict)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("alpha"), "{refused}");
    let cfg = strict.with_mixed(MixedSettings::Allow);
    let threshold = sharing_chance(&masks, Overlap::IoMin, true, &cfg).unwrap();
    let cell = threshold.get(&tri, &hex).unwrap();
    assert!(
        (cell.observed - 21.1).abs() < 0.05,
        "l > 0 gives 21.1 %: {}",
        cell.observed
    );
    for i in 0..5 {
        for j in (i + 1)..5 {
            let null = threshold.null_mean[i][j];
            assert!((10.0..50.0).contains(&null), "null mean {null} for {i},{j}");
        }
    }
    let (above, below) = threshold.above_below();
    assert_eq!(above + below, 10);
    let sampled = sharing_chance(
        &masks,
        Overlap::IoMin,
        true,
        &cfg.with_binarize(Binarize::Sample)
            .with_samples(8)
            .with_draws(8),
    )
    .unwrap();
    let s = sampled.get(&tri, &hex).unwrap();
    // Within three sampling SDs of the published 33.5 % (sampled draws, not one).
    assert!(
        (s.observed - 33.5).abs() < 3.0 * s.observed_sd.max(0.5),
        "sampled {s:?}"
    );
    assert!(
        s.observed > cell.observed + 5.0,
        "sampling raises the cell: {s:?} vs {cell:?}"
    );
}

/// With replicates the study's preprocessing is done per seed: two masks of one seed lose what
/// every mask of that seed keeps (the study's rule for its one set), two masks of different
/// seeds lose what every mask of either seed keeps; never only what every mask of every seed
/// keeps. Checked against sets built by hand, in the observed matrix of both the plain and the
/// chance-level sharing, and refused where a seed has only two masks. The bits lie in two
/// tensors, which the last mask stores in the other order (as a study pickle may), and the
/// counts are summed over both.
#[test]
fn preprocessing_removes_what_each_seed_keeps_in_common() {
    let n = 600usize;
    let bits = |k: usize| -> Vec<bool> {
        // Each mask keeps a block every seed shares, a block its seed shares, and its own bits.
        let seed = k / 3;
        (0..n)
            .map(|i| {
                i < 60 || (60 + 40 * seed..100 + 40 * seed).contains(&i) || (i * (k + 3)) % 7 < 3
            })
            .collect()
    };
    let names = ["a-s0", "b-s0", "c-s0", "a-s1", "b-s1", "c-s1"];
    let masks: Vec<Mask> = (0..6)
        .map(|k| {
            let v: Vec<f32> = bits(k)
                .iter()
                .map(|&b| if b { 3.0 } else { -3.0 })
                .collect();
            let (w, rest) = v.split_at(400);
            let mut p = Params::new();
            let mut insert = |name: &str| match name {
                "w" => p.insert("w", Tensor::from_slice(w).reshape([20, 20])),
                _ => p.insert("v", Tensor::from_slice(rest).reshape([10, 20])),
            };
            let order = if k == 5 { ["v", "w"] } else { ["w", "v"] };
            order.into_iter().for_each(&mut insert);
            Mask::new(names[k], p, None)
        })
        .collect();
    let common =
        |ks: &[usize]| -> Vec<bool> { (0..n).map(|i| ks.iter().all(|&k| bits(k)[i])).collect() };
    let seed_common = [common(&[0, 1, 2]), common(&[3, 4, 5])];
    // The pair (i, j) less what every mask of i's seed or of j's seed keeps.
    let preprocessed = |i: usize, j: usize| -> (Vec<bool>, Vec<bool>) {
        let cut: Vec<bool> = (0..n)
            .map(|w| seed_common[i / 3][w] || seed_common[j / 3][w])
            .collect();
        let less = |k: usize| (0..n).map(|w| bits(k)[w] && !cut[w]).collect::<Vec<bool>>();
        (less(i), less(j))
    };
    let count = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64;
    let iomin = |a: &[bool], b: &[bool]| {
        let both: Vec<bool> = a.iter().zip(b).map(|(x, y)| *x && *y).collect();
        100.0 * count(&both) / count(a).min(count(b))
    };
    let iou = |a: &[bool], b: &[bool]| {
        let both: Vec<bool> = a.iter().zip(b).map(|(x, y)| *x && *y).collect();
        100.0 * count(&both) / (count(a) + count(b) - count(&both))
    };
    let plain = sharing_matrix(&masks, Overlap::IoMin, true).unwrap();
    let plain_iou = sharing_matrix(&masks, Overlap::IoU, true).unwrap();
    let cfg = ChanceConfig::default().with_draws(20);
    let chance = sharing_chance(&masks, Overlap::IoMin, true, &cfg).unwrap();
    for i in 0..6 {
        for j in (i + 1)..6 {
            let (a, b) = preprocessed(i, j);
            let expected = iomin(&a, &b);
            assert!((plain.matrix[i][j] - expected).abs() < 1e-9, "{i},{j}");
            assert!((chance.matrix[i][j] - expected).abs() < 1e-9, "{i},{j}");
            assert!(
                (plain_iou.matrix[i][j] - iou(&a, &b)).abs() < 1e-9,
                "{i},{j}"
            );
        }
    }
    let removed: Vec<(String, usize, u64)> = chance
        .shared_within_seed
        .iter()
        .map(|g| (g.seed.clone(), g.masks, g.shared))
        .collect();
    let kept_by_seed = |s: usize| count(&seed_common[s]) as u64;
    assert_eq!(
        removed,
        [
            ("s0".into(), 3, kept_by_seed(0)),
            ("s1".into(), 3, kept_by_seed(1))
        ]
    );
    assert_eq!(plain.shared_within_seed, chance.shared_within_seed);
    // What all six keep is the shared block alone: less than either seed's common part.
    assert_eq!(
        chance.shared_by_all,
        count(&common(&[0, 1, 2, 3, 4, 5])) as u64
    );
    assert!(chance.shared_by_all < kept_by_seed(0).min(kept_by_seed(1)));
    assert_eq!(plain.shared_by_all as u64, chance.shared_by_all);
    let short = sharing_chance(&masks[..5], Overlap::IoMin, true, &cfg)
        .unwrap_err()
        .to_string();
    assert!(short.contains("s1 has 2 (a-s1, b-s1)"), "{short}");
}
