//! Specificity on the study's own files: each SCL_90 mask on each shape's problems (kept and
//! inverted), and a control mask trained on every shape pooled.

use avr_modularity::analysis::chance::ChanceConfig;
use avr_modularity::analysis::specificity::{cross_shape, inside_control};
use avr_modularity::fixtures::{require_fixtures, study_checkpoint_path, study_masks};
use avr_modularity::prelude::*;

#[test]
fn the_squares_mask_solves_squares_and_the_matrix_covers_every_pair() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(study_checkpoint_path().unwrap()).unwrap();
    let shapes = [Shape::Squares, Shape::Pentagons];
    let tasks = TaskSets::open_unsplit(fixtures.join("seed/datasets"), &shapes).unwrap();
    let masks: Vec<Mask> = study_masks("SCL_90")
        .unwrap()
        .into_iter()
        .filter(|m| m.name.ends_with("squares") || m.name.ends_with("pentagons"))
        .collect();
    let m = cross_shape(&ckpt, &masks, &tasks, 0).unwrap();
    assert_eq!((m.masks.len(), m.tasks.len()), (2, 2));
    let sq = m.masks.iter().position(|n| n == "SCL_90/squares").unwrap();
    let on_sq = m.tasks.iter().position(|n| n == "squares").unwrap();
    // PyTorch: the squares mask keeps 18 of the 24 squares problems.
    assert_eq!(
        (m.masked[sq][on_sq].correct, m.masked[sq][on_sq].n),
        (18, 24)
    );
    assert!(
        m.inverted[sq][on_sq].correct < 18,
        "the inverse loses the task"
    );
    assert_eq!(m.unmasked.len(), 2);
    assert!(
        m.table().unwrap().df.height() == 3,
        "two masks and the unmasked row"
    );
}

#[test]
fn a_pooled_control_mask_holds_part_of_each_shape_module() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(study_checkpoint_path().unwrap()).unwrap();
    let shapes = [Shape::Squares, Shape::Pentagons];
    let tasks = TaskSets::open_unsplit(fixtures.join("seed/datasets"), &shapes).unwrap();
    let pooled = tasks.pooled();
    assert_eq!(pooled.fit.len(), 48, "24 problems of each shape");
    let cfg = MaskTrainConfig::smoke()
        .with_steps(2)
        .with_batch_size(4)
        .with_samples(2)
        .with_eval_every(2)
        .with_eval_problems(4);
    let control = avr_modularity::masking::set::train_control_mask(&ckpt, &tasks, &cfg).unwrap();
    assert_eq!(control.mask.name, "all-shapes");
    let masks = study_masks("SCL_90").unwrap();
    let cfg = ChanceConfig::default().with_draws(20);
    let inside = inside_control(&masks, &control.mask, &cfg).unwrap();
    assert_eq!(inside.len(), 5);
    for m in &inside {
        assert!(m.inside <= m.kept);
        let p = m.inside_percent;
        assert!((0.0..=100.0).contains(&p.observed) && (0.0..=100.0).contains(&p.null_mean));
    }
}
