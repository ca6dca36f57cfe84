//! Training: the official SCL over-fits a small set of real I-RAVEN problems, milestones are
//! named from measured accuracy, and the same seed gives the same loss curve.

use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::AvrDataset;
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::model::{OfficialSclConfig, Precision, SclModel, SclVariant};
use avr_modularity::train::{train, TrainConfig};
use tch::Device;

fn setup() -> (AvrDataset, TrainConfig) {
    let data = AvrDataset::open(require_fixtures().unwrap().join("iraven")).unwrap();
    let cfg = TrainConfig {
        steps: 40,
        batch_size: 16,
        val_every: 10,
        lr: 3e-3,
        milestones: vec![0.3, 0.99],
        ..Default::default()
    };
    (data, cfg)
}

fn small_official() -> SclModel {
    SclModel::init(
        SclVariant::Official(OfficialSclConfig {
            image_size: 40,
            ..Default::default()
        }),
        1,
        Device::Cpu,
    )
}

#[test]
fn official_scl_overfits_real_problems_and_names_milestones_by_measured_accuracy() {
    let (data, cfg) = setup();
    let dir = tempfile::tempdir().unwrap();
    let run = train(small_official(), &data, &data, &cfg, Some(dir.path())).unwrap();
    let first = run.metrics.first().unwrap().train_loss;
    let last = run.metrics.last().unwrap().train_loss;
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let best = run
        .metrics
        .iter()
        .filter_map(|m| m.val_accuracy)
        .fold(0.0, f64::max);
    assert!(
        best > 0.5,
        "accuracy on the training problems only reached {best}"
    );
    let m = run
        .milestones
        .iter()
        .find(|m| m.level == 0.3)
        .expect("0.3 milestone");
    let name = m
        .path
        .as_ref()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        name,
        format!(
            "scl_official_val{:.1}.safetensors",
            100.0 * m.measured_val_accuracy
        )
    );
    let sidecar: serde_json::Value = serde_json::from_slice(
        &std::fs::read(m.path.as_ref().unwrap().with_extension("json")).unwrap(),
    )
    .unwrap();
    assert!(
        (sidecar["measured_val_accuracy"].as_f64().unwrap() - m.measured_val_accuracy).abs()
            < 1e-12
    );
    assert_eq!(sidecar["variant"], "official");
    let curves = run.curves().unwrap();
    assert!(
        curves.svg.lines().any(|l| l.trim() == "validation")
            && curves.svg.lines().any(|l| l.trim() == "Training loss")
    );
    // The weights load back by the same names.
    let loaded = tch::Tensor::read_safetensors(m.path.as_ref().unwrap()).unwrap();
    assert_eq!(loaded.len(), run.model.params.len());
}

#[test]
fn same_seed_same_loss_curve() {
    tch::set_num_threads(1);
    let (data, cfg) = setup();
    let cfg = TrainConfig { steps: 5, ..cfg };
    let a: Vec<f64> = train(small_official(), &data, &data, &cfg, None)
        .unwrap()
        .metrics
        .iter()
        .map(|m| m.train_loss)
        .collect();
    let b: Vec<f64> = train(small_official(), &data, &data, &cfg, None)
        .unwrap()
        .metrics
        .iter()
        .map(|m| m.train_loss)
        .collect();
    assert_eq!(a, b);
}

/// A run cut short and resumed from its state gives exactly the loss curve of an uninterrupted
/// run (weights, Adam moments and data order restored).
#[test]
fn resumed_run_continues_the_same_loss_curve() {
    tch::set_num_threads(1);
    let (data, cfg) = setup();
    let cfg = TrainConfig {
        steps: 8,
        state_every: 3,
        val_every: 4,
        milestones: vec![],
        ..cfg
    };
    let whole = tempfile::tempdir().unwrap();
    let a: Vec<f64> = train(small_official(), &data, &data, &cfg, Some(whole.path()))
        .unwrap()
        .metrics
        .iter()
        .map(|m| m.train_loss)
        .collect();
    // "Killed" after step 5: the last state on disk is from step 3.
    let cut = tempfile::tempdir().unwrap();
    train(
        small_official(),
        &data,
        &data,
        &TrainConfig {
            steps: 5,
            ..cfg.clone()
        },
        Some(cut.path()),
    )
    .unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cut.path().join("last.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 5);
    let resumed = train(
        small_official(),
        &data,
        &data,
        &TrainConfig {
            resume: true,
            ..cfg.clone()
        },
        Some(cut.path()),
    )
    .unwrap();
    let b: Vec<f64> = resumed.metrics.iter().map(|m| m.train_loss).collect();
    assert_eq!(b.len(), 8);
    assert_eq!(a, b, "resumed loss curve differs");
    // A state of another architecture is refused.
    let other = SclModel::init(
        SclVariant::Official(OfficialSclConfig {
            image_size: 80,
            ..Default::default()
        }),
        1,
        Device::Cpu,
    );
    let err = train(
        other,
        &data,
        &data,
        &TrainConfig {
            resume: true,
            ..cfg
        },
        Some(cut.path()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cannot resume"), "{err}");
}

#[test]
fn our_checkpoints_load_back_and_other_sizes_are_refused() {
    let (data, cfg) = setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        steps: 10,
        milestones: vec![0.0],
        ..cfg
    };
    let run = train(small_official(), &data, &data, &cfg, Some(dir.path())).unwrap();
    let path = run.milestones[0].path.clone().unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    let (model, sidecar) = (&ckpt.model, ckpt.sidecar.clone().unwrap());
    assert_eq!(sidecar.image_size, 40);
    assert_eq!(sidecar.val_problems, data.len());
    for (name, t) in model.params.iter() {
        assert!(
            t.equal(run.model.params.get(name).unwrap()),
            "{name} differs after reload"
        );
    }
    // A sidecar claiming another size does not match the stored tensors: refused, naming them.
    let mut side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
    side["model"]["config"]["image_size"] = 160.into();
    std::fs::write(path.with_extension("json"), side.to_string()).unwrap();
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("visual.spatial.weight") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_keeps_its_checkpoints() {
    let (data, cfg) = setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        steps: 60,
        lr: 1e12,
        weight_decay: 0.0,
        milestones: vec![0.0],
        val_every: 1,
        ..cfg
    };
    let err = train(small_official(), &data, &data, &cfg, Some(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("loss became"), "{err}");
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .collect();
    assert!(
        !kept.is_empty(),
        "the milestone checkpoint written before the divergence is kept"
    );
}

/// The sidecar holds the whole architecture: a non-default SCL (other channel widths and
/// experts) rebuilds itself from its checkpoint alone.
#[test]
fn a_non_default_architecture_rebuilds_from_its_checkpoint() {
    let (data, cfg) = setup();
    let variant = SclVariant::Official(OfficialSclConfig {
        image_size: 40,
        channels: vec![8, 8, 16, 16],
        experts: 3,
        ..Default::default()
    });
    let model = SclModel::init(variant.clone(), 3, Device::Cpu);
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg
        .with_steps(2)
        .with_val_every(2)
        .with_milestones(vec![0.0]);
    let run = train(model, &data, &data, &cfg, Some(dir.path())).unwrap();
    let ckpt = Checkpoint::load(run.milestones[0].path.as_ref().unwrap()).unwrap();
    assert_eq!(ckpt.model.variant, variant);
    assert_eq!(ckpt.model.num_trainable(), run.model.num_trainable());
    for (name, t) in ckpt.model.params.iter() {
        assert!(t.equal(run.model.params.get(name).unwrap()), "{name}");
    }
}

#[test]
fn presets_differ_by_run_size_and_setters_change_one_field() {
    use avr_modularity::session::RunSize;
    assert_eq!(TrainConfig::for_size(RunSize::Smoke), TrainConfig::smoke());
    assert_eq!(TrainConfig::for_size(RunSize::Full), TrainConfig::study());
    assert!(TrainConfig::smoke().steps < TrainConfig::study().steps);
    let cfg = TrainConfig::study().with_lr(0.5);
    assert_eq!(cfg.lr, 0.5);
    assert_eq!(
        TrainConfig {
            lr: TrainConfig::study().lr,
            ..cfg
        },
        TrainConfig::study()
    );
}

/// A run stops at the first validation that reaches its target, writes its state there, and a
/// resumed run takes no further step (the study run stops at 90 % or 60 epochs).
#[test]
fn a_run_stops_at_its_target_accuracy_and_stays_stopped_when_resumed() {
    tch::set_num_threads(1);
    let (data, cfg) = setup();
    let cfg = TrainConfig {
        steps: 9,
        state_every: 100,
        val_every: 3,
        milestones: vec![],
        stop_at_accuracy: Some(0.0),
        ..cfg
    };
    let out = tempfile::tempdir().unwrap();
    let run = train(small_official(), &data, &data, &cfg, Some(out.path())).unwrap();
    assert_eq!(run.metrics.len(), 3, "stopped at the first validation");
    let csv = avr_modularity::train::trainer::read_metrics_csv(&out.path().join("metrics.csv"));
    assert_eq!(
        csv.unwrap().len(),
        3,
        "the log on disk reaches the stopping step"
    );
    let again = train(
        small_official(),
        &data,
        &data,
        &cfg.clone().with_resume(true),
        Some(out.path()),
    );
    assert_eq!(
        again.unwrap().metrics.len(),
        3,
        "a finished run takes no step"
    );
    // A kill between the last state's two writes leaves last.json behind the weights file. The
    // resumed run takes no step, yet it must not leave last.json stale: a kill test once found
    // exactly that.
    let readable = out.path().join("last.json");
    let whole = std::fs::read(&readable).unwrap();
    std::fs::write(&readable, b"{\"step\": 0}").unwrap();
    train(
        small_official(),
        &data,
        &data,
        &cfg.with_resume(true),
        Some(out.path()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&readable).unwrap(),
        whole,
        "last.json restored"
    );
}

/// Re-estimating the BatchNorm statistics depends on the weights and the fixed problems alone:
/// the plain mean of the batch statistics, so twice on the same set gives the same numbers
/// (an exponential average would still carry the first pass's start).
#[test]
fn batch_norm_recalibration_is_a_function_of_the_weights() {
    tch::set_num_threads(1);
    let (data, _) = setup();
    let model = small_official();
    let stats = |m: &SclModel| -> Vec<f64> {
        m.params
            .iter()
            .filter(|(n, _)| n.ends_with("running_mean"))
            .map(|(_, t)| t.abs().sum(tch::Kind::Double).double_value(&[]))
            .collect()
    };
    let before = stats(&model);
    assert!(
        !before.is_empty() && before.iter().all(|&v| v == 0.0),
        "fresh running means are 0"
    );
    let recalibrate = avr_modularity::train::trainer::recalibrate_batch_norm;
    recalibrate(&model, &data.spread(16), 8).unwrap();
    let once = stats(&model);
    recalibrate(&model, &data.spread(16), 8).unwrap();
    let twice = stats(&model);
    assert!(once.iter().all(|&v| v > 0.0), "{once:?}");
    for (a, b) in once.iter().zip(&twice) {
        assert!(
            (a - b).abs() <= 1e-6 * a.abs().max(1e-9),
            "{a} vs {b}: not the plain mean"
        );
    }
}

#[test]
fn bf16_training_is_refused_on_a_cpu_that_would_emulate_it() {
    let (data, cfg) = setup();
    let cfg = TrainConfig {
        precision: Precision::Bf16,
        steps: 1,
        ..cfg
    };
    let result = train(small_official(), &data, &data, &cfg, None);
    let simd = avr_modularity::session::simd_level();
    if simd == "avx512_bf16" {
        assert!(result.is_ok(), "{:?}", result.err());
    } else {
        let Err(err) = result else {
            panic!("bf16 on {simd} must be refused")
        };
        let err = err.to_string();
        assert!(err.contains("AVX-512-BF16") && err.contains(simd), "{err}");
    }
    // On a GPU the CPU's vector level does not matter.
    assert!(Precision::Bf16.check_native(Device::Cuda(0)).is_ok());
    assert!(Precision::F32.check_native(Device::Cpu).is_ok());
}
