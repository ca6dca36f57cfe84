//! Training: the official SCL over-fits a small set of real I-RAVEN problems, milestones are
//! named from measured accuracy, and the same seed gives the same loss curve.

use avr_modularity::data::dataset::BatchOptions;
use avr_modularity::data::AvrDataset;
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::model::{OfficialSclConfig, SclModel, SclVariant};
use avr_modularity::train::{train, TrainConfig};
use tch::Device;

fn setup() -> (AvrDataset, TrainConfig) {
    let data = AvrDataset::open(require_fixtures().unwrap().join("iraven")).unwrap();
    let cfg = TrainConfig { steps: 40, batch_size: 16, val_every: 10, lr: 3e-3, batch: BatchOptions { resize: Some(40), ..Default::default() }, milestones: vec![0.3, 0.99], ..Default::default() };
    (data, cfg)
}

fn small_official() -> SclModel {
    SclModel::init(SclVariant::Official(OfficialSclConfig { image_size: 40, ..Default::default() }), 1, Device::Cpu)
}

#[test]
fn official_scl_overfits_real_problems_and_names_milestones_by_measured_accuracy() {
    let (data, cfg) = setup();
    let dir = tempfile::tempdir().unwrap();
    let run = train(small_official(), &data, &data, &cfg, Some(dir.path())).unwrap();
    let first = run.metrics.first().unwrap().train_loss;
    let last = run.metrics.last().unwrap().train_loss;
    assert!(last < 0.5 * first, "loss {first} -> {last}");
    let best = run.metrics.iter().filter_map(|m| m.val_accuracy).fold(0.0, f64::max);
    assert!(best > 0.5, "accuracy on the training problems only reached {best}");
    let m = run.milestones.iter().find(|m| m.level == 0.3).expect("0.3 milestone");
    let name = m.path.as_ref().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(name, format!("scl_official_val{:.1}.safetensors", 100.0 * m.measured_val_accuracy));
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(m.path.as_ref().unwrap().with_extension("json")).unwrap()).unwrap();
    assert_eq!(sidecar["measured_val_accuracy"], m.measured_val_accuracy);
    assert_eq!(sidecar["variant"], "official");
    let curves = run.curves().unwrap();
    assert!(curves.svg.lines().any(|l| l.trim() == "validation") && curves.svg.lines().any(|l| l.trim() == "Training loss"));
    // The weights load back by the same names.
    let loaded = tch::Tensor::read_safetensors(m.path.as_ref().unwrap()).unwrap();
    assert_eq!(loaded.len(), run.model.params.len());
}

#[test]
fn same_seed_same_loss_curve() {
    tch::set_num_threads(1);
    let (data, cfg) = setup();
    let cfg = TrainConfig { steps: 5, ..cfg };
    let a: Vec<f64> = train(small_official(), &data, &data, &cfg, None).unwrap().metrics.iter().map(|m| m.train_loss).collect();
    let b: Vec<f64> = train(small_official(), &data, &data, &cfg, None).unwrap().metrics.iter().map(|m| m.train_loss).collect();
    assert_eq!(a, b);
}
