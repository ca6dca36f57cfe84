//! Ablation against its chance level, on the shipped study artifacts: the readings agree with
//! what mask training recorded on the same problems, and removing a module that keeps whole
//! BatchNorm scales ties every candidate.

use avr_modularity::analysis::ablation::{ablate, AblationConfig};
use avr_modularity::analysis::development::Development;
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::{AvrDataset, Split};
use avr_modularity::files::crate_root;
use avr_modularity::masking::engine::MaskSidecar;
use avr_modularity::masking::Mask;

#[test]
fn a_study_modules_ablation_agrees_with_its_training_record_and_ties_when_removed() {
    let root = crate_root();
    let ckpt =
        Checkpoint::load(root.join("model_ckpts/study/scl_official_val80.2.safetensors")).unwrap();
    let path = root.join("binary_masks/study/scl_official_val80.2/circles-s0.safetensors");
    let mask = Mask::load(&path).unwrap();
    let side: MaskSidecar = avr_modularity::checkpoint::read_sidecar(&path).unwrap();
    // Mask training read the validation split, 200 problems evenly spread: the same here.
    let held_out = AvrDataset::open(root.join("datasets/study/circles"))
        .unwrap()
        .split(Split::Val);
    let cfg = AblationConfig::default().with_draws(2);
    let a = ablate(&ckpt, &mask, &held_out, &cfg).unwrap();
    assert_eq!(a.module_only.n, 200);
    assert_eq!(
        a.module_only.accuracy,
        side.final_task_accuracy.unwrap(),
        "the module alone, as its training recorded it"
    );
    assert_eq!(a.unmasked.accuracy, side.unmasked.unwrap().task.accuracy);
    // The module keeps every BatchNorm scale of layers 1–3 whole; zeroing them leaves one
    // embedding for every panel, so all 8 candidates tie on every problem.
    for bn in [
        "visual.bn.1.weight",
        "visual.bn.2.weight",
        "visual.bn.3.weight",
    ] {
        assert!(
            a.whole_tensors.iter().any(|t| t == bn),
            "{:?}",
            a.whole_tensors
        );
    }
    assert_eq!(a.module_removed.tied, a.module_removed.n);
    assert!((a.module_removed.expected_accuracy - 0.125).abs() < 1e-12);
    // Removing as many random weights leaves scores that differ, and costs less.
    assert_eq!(a.random_removed.len(), 2);
    for r in &a.random_removed {
        assert!(r.tied < r.n / 10, "{r:?}");
        assert!(
            r.expected_accuracy > a.module_removed.expected_accuracy,
            "{r:?}"
        );
    }
    assert!(a.excess_loss_points() > 0.0);
    // A per-tensor count-matched removal zeroes the same whole BatchNorm scales: it collapses
    // the same way, so the ablation cannot tell the module's weights from its layer profile.
    assert_eq!(a.layer_matched_removed.len(), 2);
    for r in &a.layer_matched_removed {
        assert_eq!(r.tied, r.n, "{r:?}");
    }
    assert_eq!(a.layer_matched_excess_points(), Some(0.0));
    // Each whole BatchNorm scale, removed alone, already ties every candidate.
    let collapsing = a.collapsing_tensors.as_ref().unwrap();
    for bn in [
        "visual.bn.1.weight",
        "visual.bn.2.weight",
        "visual.bn.3.weight",
    ] {
        assert!(collapsing.iter().any(|t| t == bn), "{collapsing:?}");
    }
    assert!(a.is_current(&cfg));
}

#[test]
fn a_development_measures_only_the_missing_ablations_and_reads_them_back() {
    let root = crate_root();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("scl_official_val80.2");
    std::fs::create_dir_all(&folder).unwrap();
    let shipped = root.join("binary_masks/study/scl_official_val80.2");
    for file in [
        "circles-s0.safetensors",
        "circles-s0.json",
        "all-shapes-s0.safetensors",
        "all-shapes-s0.json",
    ] {
        std::fs::copy(shipped.join(file), folder.join(file)).unwrap();
    }
    // The sidecars name the checkpoint and task set relative to the crate root, where cargo
    // runs the tests.
    let dev = Development::from_dir(dir.path()).unwrap();
    let cfg = AblationConfig::default().with_draws(1).with_problems(40);
    // Only the shape mask: the pooled control has no shape.
    assert_eq!(dev.ablate_missing(&cfg).unwrap(), 1);
    assert!(folder.join("circles-s0.ablation.json").is_file());
    assert!(!folder.join("all-shapes-s0.ablation.json").exists());
    assert_eq!(
        dev.ablate_missing(&cfg).unwrap(),
        0,
        "a measured mask is kept"
    );
    let ablations = dev.ablations("study/scl_official_val80.2").unwrap();
    assert_eq!(ablations.records.len(), 1);
    assert_eq!(ablations.records[0].module_removed.n, 40);
    let table = dev.shape_modules().ablation_table().unwrap();
    assert_eq!(table.df.height(), 1);
}
