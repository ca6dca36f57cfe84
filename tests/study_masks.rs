//! Known answers from the study's SCL_90 masks: kept fractions, accuracies under the mask (what
//! PyTorch computes), and the preprocessed IoMin sharing matrix.

use std::path::PathBuf;

use avr_modularity::analysis::masks::{
    mask_stats, sharing_matrix, sharing_matrix_with, tensor_dispersity, Overlap,
};
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::{AvrDataset, Shape, Split};
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::masking::{Mask, MixedSettings};
use avr_modularity::train::eval::{evaluate_with, EvalOptions};
use tch::{Device, Tensor};

/// The first mask file of `shape` (any spelling) in the study's `level` folder.
fn mask_file(level: &str, shape: &str) -> PathBuf {
    let folder = shape.parse::<Shape>().unwrap().study_folder();
    let dir = require_fixtures()
        .unwrap()
        .join("seed/binary_masks")
        .join(level)
        .join(folder);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.remove(0)
}

fn scl90(shape: &str) -> Mask {
    Mask::load_study(mask_file("SCL_90", shape)).unwrap()
}

#[test]
fn scl90_kept_fractions_match_the_study() {
    for (shape, want) in [
        ("circles", 0.241606),
        ("triangles", 0.110595),
        ("squares", 0.346250),
        ("pentagons", 0.321320),
        ("hexagons", 0.089798),
    ] {
        let m = scl90(shape);
        assert_eq!(m.name, format!("SCL_90/{shape}"));
        let (kept, total) = m.kept();
        assert_eq!(total, 199_838);
        assert!(
            (kept as f64 / total as f64 - want).abs() < 5e-7,
            "{shape}: {kept}/{total}"
        );
        assert_eq!(mask_stats(&m).kept, kept);
    }
}

#[test]
fn mask_metadata_is_read_from_inside_the_file() {
    let m = Mask::load_study(mask_file("SCL_90", "squares")).unwrap();
    assert_eq!(m.alpha, Some(1e-6));
    assert_eq!(m.logits.len(), 44);
}

#[test]
fn scl90_masks_on_the_study_checkpoint_give_pytorchs_accuracies() {
    let fixtures = require_fixtures().unwrap();
    let model = Checkpoint::load(fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt"))
        .unwrap()
        .model;
    let opts = EvalOptions {
        device: Device::Cpu,
        ..Default::default()
    };
    let data = |name: &str| {
        AvrDataset::open(fixtures.join("seed/datasets").join(name))
            .unwrap()
            .select(&Split::ALL, None)
    };
    let originals = data("originals");
    for (shape, task, (tc, tn), (oc, on)) in [
        ("squares", "squares", (18, 24), (8, 24)),
        ("pentagons", "pentagon", (19, 24), (14, 24)),
        ("triangles", "triangles", (55, 70), (9, 24)),
    ] {
        let mask = scl90(shape);
        let masked = mask.apply(&model.params, false).unwrap();
        let t = evaluate_with(&model, &masked, &data(task), &opts).unwrap();
        let o = evaluate_with(&model, &masked, &originals, &opts).unwrap();
        assert_eq!((t.correct, t.n), (tc, tn), "{shape} task accuracy");
        assert_eq!((o.correct, o.n), (oc, on), "{shape} originals accuracy");
        // Inverted masks leave the model near chance (ties are common, so only loosely).
        let inverse = mask.apply(&model.params, true).unwrap();
        let inverted = evaluate_with(&model, &inverse, &data(task), &opts).unwrap();
        assert!(
            inverted.accuracy < 0.5,
            "{shape}: inverted mask still at {:.2}",
            inverted.accuracy
        );
    }
}

#[test]
fn scl90_preprocessed_iomin_sharing_matrix_matches_known_values() {
    let masks = avr_modularity::fixtures::study_masks("SCL_90").unwrap();
    // The study's SCL_90 masks were trained with three different α: comparing them is an
    // explicit choice.
    assert!(sharing_matrix(&masks, Overlap::IoMin, true).is_err());
    let m = sharing_matrix_with(&masks, Overlap::IoMin, true, MixedSettings::Allow).unwrap();
    assert_eq!(m.shared_by_all, 11_812);
    let want = [
        ("circles", "triangles", 69.08),
        ("circles", "pentagons", 75.83),
        ("circles", "hexagons", 81.67),
        ("circles", "squares", 76.82),
        ("triangles", "pentagons", 78.37),
        ("triangles", "hexagons", 21.08),
        ("triangles", "squares", 82.97),
        ("pentagons", "hexagons", 84.05),
        ("pentagons", "squares", 74.97),
        ("hexagons", "squares", 81.97),
    ];
    for (a, b, v) in want {
        let got = m
            .get(&format!("SCL_90/{a}"), &format!("SCL_90/{b}"))
            .unwrap();
        assert!((got - v).abs() < 0.05, "{a}–{b}: {got:.2} vs {v}");
    }
    let raw = sharing_matrix_with(&masks, Overlap::IoU, false, MixedSettings::Allow).unwrap();
    assert!(raw.matrix[0][1] > 0.0 && raw.matrix[0][1] < 100.0);
}

#[test]
fn dispersity_follows_the_study_formula_on_a_hand_computed_mask() {
    // Ones at (0,0) and (2,2): μ = (1,1), spread = (2 + 2)/2 = 2, ‖μ‖² = 2 → v = 1.
    let m = Tensor::from_slice(&[1.0f32, 0., 0., 0., 0., 0., 0., 0., 1.]).reshape([3, 3]);
    assert!((tensor_dispersity(&m) - 1.0).abs() < 1e-12);
    assert_eq!(
        tensor_dispersity(&Tensor::zeros([4], (tch::Kind::Float, Device::Cpu))),
        0.0
    );
}

#[test]
fn spatial_distribution_and_histogram_render_with_labels() {
    use avr_modularity::plot::{mask_probability_histogram, spatial_distribution};
    let masks = avr_modularity::fixtures::study_masks("SCL_50").unwrap();
    let stats: Vec<_> = masks.iter().map(mask_stats).collect();
    let fig = spatial_distribution("Model accuracy: SCL_50", &stats).unwrap();
    let has = |svg: &str, t: &str| svg.lines().any(|l| l.trim() == t);
    for t in [
        "Model accuracy: SCL_50",
        "V19",
        "vision",
        "attr_net",
        "rel_net",
        "n_i / n_total",
    ] {
        assert!(has(&fig.svg, t), "missing {t}");
    }
    let hist = mask_probability_histogram(&masks[0], 20).unwrap();
    assert!(has(&hist.svg, "Mask probabilities: SCL_50/circles") && has(&hist.svg, "removed"));
}

#[test]
fn weight_usage_image_colours_each_mask_and_their_overlap() {
    let fixtures = avr_modularity::fixtures::require_fixtures().unwrap();
    let dir = fixtures.join("seed/binary_masks/SCL_90");
    let first = |shape: &str| {
        std::fs::read_dir(dir.join(shape))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    let (a, b) = (
        Mask::load(first("squares")).unwrap(),
        Mask::load(first("circles")).unwrap(),
    );
    let fig = avr_modularity::plot::weight_usage(&a, &b, None, "vision.net.0.weight").unwrap();
    assert!(
        fig.svg.contains("weight usage of vision.net.0.weight")
            && fig.svg.contains("only SCL_90/squares")
    );
    assert!(fig.svg.contains("data:image/png;base64,iVBORw0KGgo"));
    assert!(
        avr_modularity::plot::weight_usage(&a, &b, None, "no.such.tensor")
            .unwrap_err()
            .to_string()
            .contains("no.such.tensor")
    );
}
