//! PyTorch-default initialisation from a list of [`ParamSpec`]s, seeded.
//!
//! Linear/conv weights and biases ~ U(±1/√fan_in); norm weights 1, biases 0; running mean 0,
//! running var 1. FCResBlock linears (`fc1`/`fc2` in a `.res`/`_res` block) use N(0, 0.005²)
//! weights as the official SCL does.

use tch::{Device, Kind, Tensor};

use super::{ParamSpec, Params};
use crate::rng::Rng;

/// Values drawn on the Rust side from our own seeded stream, so initialisation never depends on
/// libtorch's global generator (which other threads may be using).
fn sample(shape: &[i64], rng: &mut Rng, draw: impl Fn(&mut Rng) -> f64, device: Device) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| draw(rng) as f32).collect();
    Tensor::from_slice(&values).reshape(shape).to_device(device)
}

fn standard_normal(rng: &mut Rng) -> f64 {
    // Box–Muller; 1 − u keeps the logarithm finite.
    let (u, v) = (1.0 - rng.uniform(), rng.uniform());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn is_norm(name: &str) -> bool {
    [
        ".bn.",
        "ln_in",
        "ln_out",
        "vision.net.1.",
        "vision.net.3.",
        "vision.net.5.",
        "vision.net.7.",
        "net.1.",
    ]
    .iter()
    .any(|k| name.contains(k))
}

/// Fresh parameters for `specs`, reproducible for a given `seed`.
pub fn init_params(specs: &[ParamSpec], seed: u64, device: Device) -> Params {
    let mut rng = Rng::new(seed).fork("init");
    let opts = (Kind::Float, device);
    let mut p = Params::new();
    for spec in specs {
        let shape = spec.shape.as_slice();
        let name = spec.name.as_str();
        let t = if name.ends_with("running_mean") {
            Tensor::zeros(shape, opts)
        } else if name.ends_with("running_var") {
            Tensor::ones(shape, opts)
        } else if is_norm(name) && spec.shape.len() == 1 {
            if name.ends_with(".weight") {
                Tensor::ones(shape, opts)
            } else {
                Tensor::zeros(shape, opts)
            }
        } else if (name.contains("res.fc1") || name.contains("res.fc2"))
            && name.ends_with(".weight")
        {
            sample(shape, &mut rng, |r| 0.005 * standard_normal(r), device)
        } else {
            // fan_in of the weight this tensor belongs to: its own for weights, the sibling's for biases.
            let weight_shape = specs
                .iter()
                .find(|s| s.name == name.replace(".bias", ".weight"))
                .map_or(spec.shape.clone(), |s| s.shape.clone());
            let fan_in: i64 = weight_shape.iter().skip(1).product::<i64>().max(1);
            let bound = 1.0 / (fan_in as f64).sqrt();
            sample(
                shape,
                &mut rng,
                |r| (2.0 * r.uniform() - 1.0) * bound,
                device,
            )
        };
        p.insert(name, t);
    }
    p
}
