//! The bf16 compute precision of pre-training (`Precision::Bf16`): what it changes and what it
//! must not.

use avr_modularity::model::layers::compute_precision;
use avr_modularity::model::{in_precision, BnMode, Precision, SclModel, SclVariant};
use std::path::Path;

use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::fixtures::study_checkpoint_path;
use tch::{Device, Kind, Tensor};

fn model_and_batch(variant: SclVariant) -> (SclModel, Tensor, Tensor) {
    batch_for(SclModel::init(variant, 0, Device::Cpu))
}

/// Random panels and targets of the model's size (4 problems).
fn batch_for(model: SclModel) -> (SclModel, Tensor, Tensor) {
    tch::manual_seed(3);
    let s = model.image_size();
    let x = Tensor::rand([4, 16, s, s], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[0i64, 3, 5, 7]);
    (model, x, y)
}

/// Loss and the flattened gradient of every trainable tensor after one backward pass.
fn loss_and_grads(model: &SclModel, x: &Tensor, y: &Tensor, p: Precision) -> (f64, Tensor) {
    let specs: Vec<_> = model
        .param_specs()
        .into_iter()
        .filter(|s| s.trainable)
        .collect();
    let leaves: Vec<Tensor> = specs
        .iter()
        .map(|s| model.params.get(&s.name).unwrap().set_requires_grad(true))
        .collect();
    for t in &leaves {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let logits = in_precision(p, || model.logits(x, BnMode::Train)).unwrap();
    assert_eq!(logits.kind(), Kind::Float, "logits leave the model in f32");
    let loss = logits.cross_entropy_for_logits(y);
    loss.backward();
    let grads: Vec<Tensor> = leaves
        .iter()
        .map(|t| match t.grad() {
            // LayerNorm(1)'s weight gets no gradient at all (its output is its bias).
            g if !g.defined() => t.zeros_like().flatten(0, -1),
            g => {
                assert_eq!(g.kind(), Kind::Float, "master weights get f32 gradients");
                g.flatten(0, -1).copy()
            }
        })
        .collect();
    (loss.double_value(&[]), Tensor::cat(&grads, 0))
}

#[test]
fn the_scope_sets_the_precision_and_restores_it() {
    assert_eq!(compute_precision(), Precision::F32);
    in_precision(Precision::Bf16, || {
        assert_eq!(compute_precision(), Precision::Bf16);
        in_precision(Precision::F32, || {
            assert_eq!(compute_precision(), Precision::F32)
        });
        assert_eq!(compute_precision(), Precision::Bf16);
    });
    assert_eq!(compute_precision(), Precision::F32);
    // Restored on an early return by error, too.
    let r: Result<(), ()> = in_precision(Precision::Bf16, || Err(()));
    assert!(r.is_err());
    assert_eq!(compute_precision(), Precision::F32);
}

#[test]
fn f32_precision_is_the_plain_forward_bit_for_bit() {
    let (model, x, _) = model_and_batch(SclVariant::official(80));
    let plain = model.logits(&x, BnMode::Eval).unwrap();
    let scoped = in_precision(Precision::F32, || model.logits(&x, BnMode::Eval)).unwrap();
    assert!(plain.equal(&scoped));
}

#[test]
fn bf16_steps_follow_the_f32_loss_and_gradient_closely_but_not_exactly() {
    // Trained weights (at initialisation the loss is ln 8 and its gradient mostly rounding):
    // our study run's 80 % milestone (official) and the study's own checkpoint (seed @160).
    let study = study_checkpoint_path().unwrap();
    let ours = Path::new("model_ckpts/study/scl_official_val80.2.safetensors");
    for path in [ours, study.as_path()] {
        let name = path.display().to_string();
        let (model, x, y) = batch_for(Checkpoint::load(path).unwrap().model);
        let (loss32, g32) = loss_and_grads(&model, &x, &y, Precision::F32);
        let (loss16, g16) = loss_and_grads(&model, &x, &y, Precision::Bf16);
        // bf16 keeps 8 bits of mantissa: the loss agrees to about 1–2 %, not to float
        // rounding, and the gradient points the same way (cosine ≈ 0.99 measured; a lost cast
        // or gradient path gives ≈ 0). The kernels depend on the CPU: on AVX-512-BF16 the seed
        // @160 loss was within 2 %, on an AVX2 CPU (bf16 emulated) 2.05 % (6.596 vs 6.731).
        let rel = (loss16 - loss32).abs() / loss32.abs();
        assert!(rel < 4e-2, "loss {loss16} vs {loss32}");
        assert!(rel > 0.0, "bf16 must actually compute in bf16");
        let cosine = (&g16 * &g32).sum(Kind::Double).double_value(&[])
            / (g16.norm().double_value(&[]) * g32.norm().double_value(&[]));
        eprintln!("{name}: loss {loss32} vs {loss16}, cosine {cosine}");
        assert!(cosine > 0.97, "gradient direction: cosine {cosine}");
    }
}
