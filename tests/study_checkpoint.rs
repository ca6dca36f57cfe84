//! Known answers from the study's real files: its checkpoint in our `seed` SCL must give exactly
//! what PyTorch computes on the fixture datasets (issue: SCL, "Measured, not assumed").

use avr_modularity::checkpoint::{looks_like_pickle, Checkpoint, StudyCheckpoint};
use avr_modularity::data::{AvrDataset, Shape, Split};
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::model::{scl_seed, BnMode, SclVariant};
use avr_modularity::train::eval::{evaluate, EvalOptions};
use tch::Device;

fn checkpoint_path() -> std::path::PathBuf {
    require_fixtures()
        .unwrap()
        .join("seed/checkpoint/SCL_pretrain_80.ckpt")
}

fn on_cpu() -> EvalOptions {
    EvalOptions {
        device: Device::Cpu,
        ..Default::default()
    }
}

#[test]
fn study_checkpoint_has_the_documented_kwargs_keys_and_epoch() {
    let ckpt = StudyCheckpoint::load(checkpoint_path()).unwrap();
    assert_eq!(ckpt.kwargs.rel_net_hidden_dims, vec![64, 32, 5]);
    assert_eq!(ckpt.kwargs.conv_channels, vec![1, 16, 16, 32, 32, 32]);
    assert_eq!(ckpt.epoch, 40);
    assert_eq!(ckpt.run_id, "524go2bj");
    // 56 state-dict entries minus 4 num_batches_tracked.
    assert_eq!(ckpt.params.len(), 52);
    assert_eq!(ckpt.params.names()[0], "vision.net.0.weight");
    assert_eq!(ckpt.params.names()[51], "to_logit.bias");
    assert!(looks_like_pickle(&checkpoint_path()));
}

#[test]
fn seed_variant_has_199838_trainable_parameters_with_study_names() {
    let model = Checkpoint::load(checkpoint_path()).unwrap().model;
    assert_eq!(model.num_trainable(), 199_838);
    let SclVariant::Seed(cfg) = &model.variant else {
        panic!("seed variant expected")
    };
    let trainable: Vec<_> = cfg
        .param_specs()
        .into_iter()
        .filter(|s| s.trainable)
        .collect();
    assert_eq!(trainable.len(), 44);
    assert_eq!(trainable[18].name, "vision.net.10.weight");
    assert_eq!(trainable[18].shape, vec![80, 800]);
}

#[test]
fn study_logits_on_one_fixture_match_pytorch_to_1e_3() {
    let fixtures = require_fixtures().unwrap();
    let model = Checkpoint::load(checkpoint_path()).unwrap().model;
    let data = AvrDataset::open(fixtures.join("seed/datasets/originals")).unwrap();
    let index = data
        .files
        .iter()
        .position(|f| f.path.ends_with("test/center_single/RAVEN_0_train.npz"))
        .unwrap();
    let batch = data
        .batch(&[index], model.batch_options(), Device::Cpu)
        .unwrap();
    let logits = tch::no_grad(|| model.logits(&batch.images, BnMode::Eval).unwrap());
    let got: Vec<f64> = (0..8).map(|i| logits.double_value(&[0, i])).collect();
    let want = [
        -3.290863, -27.444084, -10.555760, -40.575760, -13.567273, 0.665059, -33.953876, -25.988605,
    ];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-3, "logits {got:?} vs PyTorch {want:?}");
    }
}

#[test]
fn sixteen_encode_path_equals_the_studys_72_encode_path() {
    let fixtures = require_fixtures().unwrap();
    let model = Checkpoint::load(checkpoint_path()).unwrap().model;
    let SclVariant::Seed(cfg) = &model.variant else {
        panic!("seed variant expected")
    };
    let data = AvrDataset::open(fixtures.join("iraven")).unwrap();
    let batch = data
        .batch(&[0, 7, 20], model.batch_options(), Device::Cpu)
        .unwrap();
    let (fast, slow) = tch::no_grad(|| {
        (
            scl_seed::forward(cfg, &model.params, &batch.images, BnMode::Eval).unwrap(),
            scl_seed::forward_72(cfg, &model.params, &batch.images, BnMode::Eval).unwrap(),
        )
    });
    let diff = (fast - slow).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max |16-encode − 72-encode| = {diff}");
}

#[test]
fn study_checkpoint_accuracy_on_fixture_datasets_equals_pytorch() {
    let fixtures = require_fixtures().unwrap();
    let model = Checkpoint::load(checkpoint_path()).unwrap().model;
    for (name, correct, n) in [
        ("originals", 21, 24),
        ("squares", 21, 24),
        ("pentagons", 22, 24),
        ("triangles", 62, 70),
    ] {
        let shape_dir = match name.parse::<Shape>() {
            Ok(shape) => shape.dir_in(&fixtures.join("seed/datasets")),
            Err(_) => fixtures.join("seed/datasets").join(name),
        };
        let data = AvrDataset::open(shape_dir)
            .unwrap()
            .select(&Split::ALL, None);
        let report = evaluate(&model, &data, &on_cpu()).unwrap();
        assert_eq!((report.correct, report.n), (correct, n), "{name}");
    }
}

#[test]
fn a_non_pickle_checkpoint_is_refused_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bogus.ckpt");
    std::fs::write(&path, b"PK\x03\x04 not a pickle").unwrap();
    let err = StudyCheckpoint::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("bogus.ckpt") && err.contains("not a Python pickle"),
        "{err}"
    );
    // Through the one loader it is neither a pickle nor safetensors: the error names the file.
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("bogus.ckpt"), "{err}");
}

#[test]
fn the_study_checkpoint_carries_its_input_spec() {
    let ckpt = Checkpoint::load(checkpoint_path()).unwrap();
    let input = ckpt.model.batch_options();
    assert!(
        input.transpose_panels,
        "the study's loader transposed panels"
    );
    assert_eq!(input.resize, Some(160));
    assert_eq!(ckpt.name(), "SCL_pretrain_80");
    assert_eq!(ckpt.val_accuracy(), None);
}
