//! Both SCL variants: parameter counts and names, output shape, and the symmetry every SCL has:
//! permuting the 8 candidates permutes the logits (eval mode), permuting context panels does not.

use avr_modularity::model::{BnMode, OfficialSclConfig, SclModel, SclVariant, SeedSclConfig};
use tch::{Device, Kind, Tensor};

fn official(size: i64) -> SclVariant {
    SclVariant::Official(OfficialSclConfig {
        image_size: size,
        ..Default::default()
    })
}

#[test]
fn official_has_137286_parameters_at_160_and_131286_at_80() {
    assert_eq!(
        SclModel::init(official(160), 0, Device::Cpu).num_trainable(),
        137_286
    );
    assert_eq!(
        SclModel::init(official(80), 0, Device::Cpu).num_trainable(),
        131_286
    );
}

#[test]
fn seed_init_has_199838_parameters_and_no_duplicate_names() {
    let m = SclModel::init(SclVariant::Seed(SeedSclConfig::default()), 0, Device::Cpu);
    assert_eq!(m.num_trainable(), 199_838);
    let mut names = m.params.names().to_vec();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n);
    assert_eq!(
        m.params
            .get("vision.net.1.running_var")
            .unwrap()
            .double_value(&[0]),
        1.0
    );
}

#[test]
fn init_is_reproducible_for_a_seed() {
    let a = SclModel::init(official(80), 7, Device::Cpu);
    let b = SclModel::init(official(80), 7, Device::Cpu);
    let c = SclModel::init(official(80), 8, Device::Cpu);
    let w = |m: &SclModel| {
        m.params
            .get("visual.attr_mlp.0.weight")
            .unwrap()
            .shallow_clone()
    };
    assert!(w(&a).equal(&w(&b)));
    assert!(!w(&a).equal(&w(&c)));
}

fn check_symmetries(model: &SclModel) {
    let s = model.image_size();
    tch::manual_seed(1);
    let x = Tensor::rand([2, 16, s, s], (Kind::Float, Device::Cpu));
    let _guard = tch::no_grad_guard();
    let logits = model.logits(&x, BnMode::Eval).unwrap();
    assert_eq!(logits.size(), vec![2, 8]);
    assert!(logits.isfinite().all().int64_value(&[]) == 1);
    // Reverse the candidates: logits reverse too.
    let order: Vec<i64> = (0..8).chain((8..16).rev()).collect();
    let swapped = x.index_select(1, &Tensor::from_slice(&order));
    let permuted = model.logits(&swapped, BnMode::Eval).unwrap();
    let diff = (permuted - logits.flip([1])).abs().max().double_value(&[]);
    assert!(
        diff < 1e-4,
        "candidate permutation changed scores by {diff}"
    );
    // Swap two context panels: scores change.
    let order: Vec<i64> = [1, 0].into_iter().chain(2..16).collect();
    let other = model
        .logits(
            &x.index_select(1, &Tensor::from_slice(&order)),
            BnMode::Eval,
        )
        .unwrap();
    assert!((other - &logits).abs().max().double_value(&[]) > 1e-6);
}

#[test]
fn official_scores_are_candidate_equivariant_and_context_sensitive() {
    check_symmetries(&SclModel::init(official(80), 3, Device::Cpu));
}

#[test]
fn seed_scores_are_candidate_equivariant_and_context_sensitive() {
    check_symmetries(&SclModel::init(
        SclVariant::Seed(SeedSclConfig {
            image_size: 64,
            ..Default::default()
        }),
        3,
        Device::Cpu,
    ));
}
