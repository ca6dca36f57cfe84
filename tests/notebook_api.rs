//! The notebook surface end to end on the study's checkpoint and fixture shape sets: masks
//! trained through `train_masks` record their real base checkpoint, save with one argument,
//! and appear in `avr report` (the report used to skip masks whose sidecar named "notebook").

use avr_modularity::analysis::development::MaskRecord;
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
    let shapes = [Shape::Squares, Shape::Pentagons, Shape::Triangles];
    let tasks = TaskSets::open_unsplit(fixtures.join("seed/datasets"), &shapes).unwrap();
    assert!(tasks.control.is_some(), "originals/ is the control set");
    let set = train_masks(&ckpt, &tasks, &tiny()).unwrap();
    assert_eq!(set.runs.len(), 3);
    assert_eq!(set.get(Shape::Pentagons).unwrap().mask.name, "pentagons");
    assert_eq!(set.checkpoint, "SCL_pretrain_80");
    let stats = set.stats().unwrap();
    assert_eq!(stats.df.height(), 3);
    let sharing = set.sharing(Overlap::IoMin).unwrap();
    assert_eq!(sharing.names, vec!["squares", "pentagons", "triangles"]);
    assert!(plot_sharing_matrix(&set).unwrap().svg.contains("pentagons"));

    let dir = tempfile::tempdir().unwrap();
    let masks = dir.path().join("masks");
    let paths = set.save(&masks).unwrap();
    assert_eq!(paths.len(), 3);
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
    // Paths inside the crate are shown relative to it (committed outputs name no machine).
    let inside = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("binary_masks/study");
    assert_eq!(study.shown(&inside), "binary_masks/study");
    assert_eq!(study.shown(std::path::Path::new("/tmp/x")), "/tmp/x");
}

/// The development end to end on two small checkpoints with held-out test readings and two
/// seeds per shape: the x-axis is the test reading, every mask carries its seed and stopping
/// record, and the report states each finding with its interval and test.
#[test]
fn development_reads_test_accuracies_and_reports_findings_with_tests() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (preset, per_config) in [("originals", 40), ("squares", 30), ("circles", 30)] {
        let cfg = GeneratorConfig {
            preset: preset.into(),
            configs: vec!["center_single".into()],
            per_config,
            on_the_fly: true,
            ..Default::default()
        };
        generate_dataset(&cfg, &root.join(preset), false).unwrap();
    }
    let data = AvrDataset::open(root.join("originals")).unwrap();
    let masks_dir = root.join("masks");
    for (stage, steps) in [("early", 4), ("late", 12)] {
        let model = SclModel::init(SclVariant::official(40), 0, tch::Device::Cpu);
        let cfg = TrainConfig::smoke()
            .with_steps(steps)
            .with_val_every(steps)
            .with_batch_size(8);
        let cfg = cfg.with_milestones(vec![0.0]);
        let run = train_scl(model, &data, &cfg, Some(&root.join(stage))).unwrap();
        let mut ckpt = Checkpoint::load(run.milestones[0].path.clone().unwrap()).unwrap();
        let test = evaluate(
            &ckpt.model,
            &data.split(Split::Test),
            &EvalOptions::default(),
        )
        .unwrap();
        ckpt.record(test.recorded("originals", vec!["test".into()]))
            .unwrap();
        assert_eq!(
            Checkpoint::load(&ckpt.path)
                .unwrap()
                .test_accuracy()
                .unwrap()
                .n,
            8
        );
        let tasks = TaskSets::open(root, &[Shape::Squares, Shape::Circles]).unwrap();
        let set = train_mask_replicates(&ckpt, &tasks, &tiny(), &[0, 1]).unwrap();
        assert_eq!(set.runs.len(), 4);
        assert!(
            set.runs[0].unmasked.is_some(),
            "the unmasked reference is recorded"
        );
        set.save(masks_dir.join(stage)).unwrap();
    }
    let dev = Development::from_dir(&masks_dir).unwrap();
    assert!(dev.x_is_test(), "every checkpoint has its test reading");
    assert_eq!(dev.tasks(), vec!["circles", "squares"]);
    let change = dev
        .change("module size", &|r| mask_stats(&r.mask).kept_fraction)
        .unwrap();
    assert_eq!(
        change.interval.n, 2,
        "2 shapes (each the mean over its 2 seeds) paired across checkpoints"
    );
    // The development questions: size, dispersity, and dispersity above its chance level,
    // whose change is the dispersity's change less the change of the chance level itself.
    let chance = ChanceConfig::default().with_draws(20);
    let changes = dev.changes(&chance);
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c.interval.n == 2));
    assert!(changes[2]
        .sentence
        .contains("dispersity minus its chance level"));
    let null_of = |r: &MaskRecord| {
        let mut d = dispersity_chance(std::slice::from_ref(&r.mask), &chance).unwrap();
        d.pop().unwrap().dispersity.null_mean
    };
    let at = |stage: &str| -> Vec<&MaskRecord> {
        let mut v: Vec<&MaskRecord> = dev
            .records
            .iter()
            .filter(|r| r.checkpoint().ends_with(stage))
            .collect();
        v.sort_by_key(|r| (r.task(), r.sidecar.config.seed));
        v
    };
    let (early, late) = (at("early"), at("late"));
    let null_change = late
        .iter()
        .zip(&early)
        .map(|(l, e)| null_of(l) - null_of(e))
        .sum::<f64>()
        / 4.0;
    let expected = changes[1].interval.mean - null_change;
    assert!(
        (changes[2].interval.mean - expected).abs() < 1e-12,
        "{} vs {expected}",
        changes[2].interval.mean
    );
    let out = root.join("report.html");
    avr_modularity::report::write_report(&out, &masks_dir, 2, &[]).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    for needle in [
        "checkpoint test accuracy (held out, %)",
        "paired t interval over 2 tasks, each the mean over its seeds",
        "pairs above chance",
        "smallest attainable p is 0.333",
        "dispersity at chance",
    ] {
        assert!(html.contains(needle), "report lacks '{needle}'");
    }
}

#[test]
fn the_shipped_study_run_reads_back_with_its_milestones_and_test_readings() {
    let study = Study::setup(0).unwrap();
    let run = study.study_run().unwrap();
    assert!(run.metrics.len() >= 11_750, "{} steps", run.metrics.len());
    let names: Vec<&str> = run.milestones.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        &names[..3],
        [
            "scl_official_val36.1",
            "scl_official_val53.2",
            "scl_official_val70.0"
        ]
    );
    let first = &run.milestones[0];
    assert_eq!((first.step, first.val.1), (500, 2100));
    let (acc, n, lo, hi) = first.test.unwrap();
    assert_eq!(n, 14_000);
    assert!(lo < acc && acc < hi && (acc - 0.352).abs() < 0.005, "{acc}");
    let table = run.milestone_table().unwrap();
    assert_eq!(table.df.height(), run.milestones.len());
    let fig = run.curves(250).unwrap();
    assert!(fig.svg.contains("validation (2,100 problems)"));
}

/// mask_SCL at full size reads the study's artifacts instead of training: the best milestone,
/// and the α stage from its shipped masks (saved before readings were kept, so each run's log
/// is its sidecar's final reading) with the rule applied again — the choice alpha.json records.
#[test]
fn the_shipped_alpha_stage_and_checkpoint_read_back_for_the_notebooks() {
    let study = Study::setup(0).unwrap();
    let ckpt = study.shipped_checkpoint().unwrap();
    let best = study.study_run().unwrap();
    let best = best.best_milestone().unwrap();
    assert_eq!(ckpt.name(), best.name);
    assert!(best.val.0 >= 0.80, "{}", best.val.0);
    let sweep = study.shipped_alpha_stage().unwrap();
    assert_eq!(sweep.runs.len(), 7);
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("binary_masks/study/alpha.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sweep.chosen_alpha(),
        record["chosen_alpha"].as_f64().unwrap()
    );
    let run = sweep.chosen_run().unwrap();
    assert_eq!(run.metrics.len(), 1, "the sidecar's final reading");
    assert_eq!(run.metrics[0].step, 3000);
    assert!((run.last(|m| m.kept_fraction).unwrap() - 0.212).abs() < 0.001);
    assert!(sweep.table().unwrap().df.height() == 7);
    // The shipped shape masks were trained at that α, under the manifest's step cap.
    let cfg = study.shipped_mask_config(0).unwrap();
    assert_eq!(cfg.alpha, sweep.chosen_alpha());
    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/study/manifest.env"),
    )
    .unwrap();
    assert!(
        manifest.contains(&format!("\nMASK_STEP_CAP={}\n", cfg.steps)),
        "{cfg:?}"
    );
    assert!(cfg.convergence.is_some() && cfg.seed == 0, "{cfg:?}");
}

/// The shipped study masks as a development: the shape modules leave out exactly the pooled
/// controls, and every development test pairs shape masks only.
#[test]
fn the_shipped_masks_split_into_shape_modules_and_pooled_controls() {
    let study = Study::setup(0).unwrap();
    let dev = Development::from_dir(study.study_masks_dir()).unwrap();
    let pooled = dev
        .records
        .iter()
        .filter(|r| r.task() == "all-shapes")
        .count();
    assert!(pooled >= 1, "the pooled control is shipped");
    let shapes = dev.shape_modules();
    assert_eq!(shapes.records.len(), dev.records.len() - pooled);
    assert!(shapes.records.iter().all(|r| r.task() != "all-shapes"));
    let chance = ChanceConfig::default().with_draws(10);
    let (all, shape) = (dev.changes(&chance), shapes.changes(&chance));
    assert_eq!(
        (all.len(), shape.len()),
        (3, 3),
        "two milestones are shipped"
    );
    for (all, shape) in all.iter().zip(shape) {
        assert!(shape.interval.n < all.interval.n, "{}", shape.sentence);
    }
}

/// train_SCL at full size reads the study run instead of retraining it: its whole log, every
/// milestone with its level and checkpoint file, and its best milestone's model.
#[test]
fn the_shipped_training_run_reads_back_as_a_train_run() {
    let study = Study::setup(0).unwrap();
    let shipped = study.study_run().unwrap();
    let run = study.shipped_training().unwrap();
    assert_eq!(run.metrics.len(), shipped.metrics.len());
    assert!(run.metrics.len() >= 28_500, "{}", run.metrics.len());
    assert_eq!(run.milestones.len(), shipped.milestones.len());
    for m in &run.milestones {
        assert!(m.path.as_ref().unwrap().is_file(), "{:?}", m.path);
        // Each milestone is saved for the highest level its reading reached.
        assert!(m.level <= m.measured_val_accuracy, "{m:?}");
        assert!(m.measured_val_accuracy - m.level < 0.2, "{m:?}");
    }
    let levels: Vec<f64> = run.milestones.iter().map(|m| m.level).collect();
    assert_eq!(levels, vec![0.3, 0.5, 0.7, 0.8]);
    let best = shipped.best_milestone().unwrap();
    // The best milestone's weights, tensor for tensor (not just a model of the same shape).
    let best_weights =
        tch::Tensor::read_safetensors(run.milestones.last().unwrap().path.as_ref().unwrap())
            .unwrap();
    assert_eq!(best_weights.len(), run.model.params.len());
    for (name, tensor) in &best_weights {
        assert!(run.model.params.get(name).unwrap().equal(tensor), "{name}");
    }
    assert_eq!(best.level, Some(0.8));
    // A long log is drawn averaged (≤ ~500 points a line), not one point per step.
    let curves = run.curves().unwrap();
    let every = avr_modularity::plot::readable_window(run.metrics.len());
    assert!(every >= 50 && run.metrics.len() / every <= 500, "{every}");
    assert!(curves
        .svg
        .contains(&format!("Training loss (mean of {every} steps)")));
    assert!(curves.svg.len() < 400_000, "{} bytes", curves.svg.len());
    // A long log shows its ends inline, not all its rows.
    let html = run.metrics_table().unwrap().to_html().unwrap();
    assert_eq!(
        html.matches("<tr><td>").count(),
        avr_modularity::display::HTML_ROWS
    );
    assert!(
        html.contains(&format!("of {} rows not shown", run.metrics.len())),
        "{}",
        &html[..300]
    );
}

/// Inline tables show every row up to HTML_ROWS, and beyond it their first and last halves
/// with one row saying how many are left out; the report's `to_html_all` keeps them all.
#[test]
fn long_tables_elide_their_middle_inline_only() {
    use avr_modularity::display::{Table, HTML_ROWS};
    use avr_modularity::polars::prelude::{df, DataFrame};
    let table = |n: usize| {
        let df: DataFrame = df!("row" => (0..n as u64).collect::<Vec<_>>()).unwrap();
        Table::new(df)
    };
    let rows = |html: &str| html.matches("<tr><td>").count();
    for n in [0, 1, HTML_ROWS] {
        let html = table(n).to_html().unwrap();
        assert_eq!(rows(&html), n);
        assert!(!html.contains("not shown"));
    }
    let html = table(HTML_ROWS + 1).to_html().unwrap();
    assert_eq!(rows(&html), HTML_ROWS);
    assert!(html.contains(&format!("… 1 of {} rows not shown …", HTML_ROWS + 1)));
    assert!(html.contains("<td>0</td>") && html.contains(&format!("<td>{HTML_ROWS}</td>")));
    assert!(
        !html.contains(&format!("<td>{}</td>", HTML_ROWS / 2)),
        "the middle row is out"
    );
    assert_eq!(
        rows(&table(HTML_ROWS + 1).to_html_all().unwrap()),
        HTML_ROWS + 1
    );
}
