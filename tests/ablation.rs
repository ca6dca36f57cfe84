//! Ablation against its chance level, on the shipped study artifacts: the readings agree with
//! what mask training recorded on the same problems, and removing a module that keeps whole
//! BatchNorm scales ties every candidate.

use avr_modularity::analysis::ablation::{ablate, AblationConfig};
use avr_modularity::analysis::development::Development;
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::generate::{generate_dataset, GeneratorConfig};
use avr_modularity::data::{AvrDataset, Split};
use avr_modularity::files::crate_root;
use avr_modularity::masking::engine::MaskSidecar;
use avr_modularity::masking::Mask;

/// The study's `shape` set as `scripts/study.sh data` writes it (only `generator.json`: the
/// problems come from the seed), sized by the manifest, under `dir`; a fresh clone has none.
fn study_shape_set(dir: &std::path::Path, shape: &str) -> std::path::PathBuf {
    let manifest =
        std::fs::read_to_string(crate_root().join("datasets/study/manifest.env")).unwrap();
    let value = |key: &str| -> usize {
        let prefix = format!("{key}=");
        let line = manifest.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].trim().parse().unwrap()
    };
    let cfg = GeneratorConfig {
        preset: shape.into(),
        per_config: value("SHAPE_PER_CONFIG"),
        seed: value("SEED") as u64,
        on_the_fly: true,
        ..Default::default()
    };
    let out = dir.join(shape);
    generate_dataset(&cfg, &out, false).unwrap();
    out
}

#[test]
fn a_study_modules_ablation_agrees_with_its_training_record_and_ties_when_removed() {
    let root = crate_root();
    let ckpt =
        Checkpoint::load(root.join("model_ckpts/study/scl_official_val80.2.safetensors")).unwrap();
    let path = root.join("binary_masks/study/scl_official_val80.2/circles-s0.safetensors");
    let mask = Mask::load(&path).unwrap();
    let side: MaskSidecar = avr_modularity::checkpoint::read_sidecar(&path).unwrap();
    // Mask training read the validation split, 200 problems evenly spread: the same here.
    let data = tempfile::tempdir().unwrap();
    let held_out = AvrDataset::open(study_shape_set(data.path(), "circles"))
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
    assert_eq!(a.module_removed.all_tied, a.module_removed.n);
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
        assert_eq!(r.all_tied, r.n, "{r:?}");
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
    assert!(
        !a.is_current(&cfg.with_problems(8)),
        "measured with other settings"
    );
    // Without a draw there is no chance level to compare with: refused, not a 0 % reading.
    let err = ablate(&ckpt, &mask, &held_out, &cfg.with_draws(0)).unwrap_err();
    assert!(err.to_string().contains("at least one draw"), "{err}");
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
        "all-shapes-s0.safetensors",
        "all-shapes-s0.json",
    ] {
        std::fs::copy(shipped.join(file), folder.join(file)).unwrap();
    }
    // The sidecar names the checkpoint relative to the crate root, where cargo runs the tests,
    // and the task set where the study wrote it; here it points at a copy of that set.
    let data = tempfile::tempdir().unwrap();
    let task = study_shape_set(data.path(), "circles");
    let mut side: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped.join("circles-s0.json")).unwrap())
            .unwrap();
    side["task_dataset"] = task.display().to_string().into();
    std::fs::write(folder.join("circles-s0.json"), side.to_string()).unwrap();
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
