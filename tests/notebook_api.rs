//! The notebook surface end to end on the study's checkpoint and fixture shape sets: masks
//! trained through `train_masks` record their real base checkpoint, save with one argument,
//! and appear in `avr report` (the report used to skip masks whose sidecar named "notebook").

use avr_modularity::fixtures::{require_fixtures, study_checkpoint_path};
use avr_modularity::prelude::*;

fn tiny() -> MaskTrainConfig {
    MaskTrainConfig::smoke()
        .with_steps(2)
        .with_batch_size(4)
        .with_samples(2)
        .with_eval_every(2)
        .with_eval_problems(4)
}

#[test]
fn masks_saved_from_the_notebook_api_appear_in_the_report() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(study_checkpoint_path().unwrap()).unwrap();
    let shapes = [Shape::Squares, Shape::Pentagons];
    let tasks = TaskSets::open_unsplit(fixtures.join("seed/datasets"), &shapes).unwrap();
    assert!(tasks.control.is_some(), "originals/ is the control set");
    let set = train_masks(&ckpt, &tasks, &tiny()).unwrap();
    assert_eq!(set.runs.len(), 2);
    assert_eq!(set.get(Shape::Pentagons).unwrap().mask.name, "pentagons");
    assert_eq!(set.checkpoint, "SCL_pretrain_80");
    let stats = set.stats().unwrap();
    assert_eq!(stats.df.height(), 2);
    let sharing = set.sharing(Overlap::IoMin).unwrap();
    assert_eq!(sharing.names, vec!["squares", "pentagons"]);
    assert!(plot_sharing_matrix(&set).unwrap().svg.contains("pentagons"));

    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("masks");
    let paths = set.save(&masks).unwrap();
    assert_eq!(paths.len(), 2);
    let out = dir.path().join("report.html");
    avr_modularity::report::write_report(&out, &masks, 2, &[]).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    for needle in ["squares", "pentagons", "SCL_pretrain_80"] {
        assert!(html.contains(needle), "report lacks {needle}");
    }
    assert!(
        !html.contains("no graph modularity for"),
        "the base checkpoint must load: {}",
        html.split("no graph modularity for").nth(1).unwrap_or("")
    );
}

#[test]
fn a_shape_missing_from_the_tasks_folder_is_an_error_naming_it() {
    let fixtures = require_fixtures().unwrap();
    let err = TaskSets::open(fixtures.join("seed/datasets"), &[Shape::Hexagons]).unwrap_err();
    assert!(err.to_string().contains("hexagons"), "{err}");
}

#[test]
fn study_setup_reads_paths_once_and_picks_by_size() {
    let study = Study::setup(7).unwrap();
    assert_eq!(study.seed, 7);
    assert_eq!(study.train_config().seed, 7);
    assert_eq!(study.mask_config().seed, 7);
    assert!(study.out_dir("binary_masks/x").ends_with("binary_masks/x"));
    let rows = study.summary();
    assert!(rows.iter().any(|(k, _)| *k == "checkpoint"));
}
