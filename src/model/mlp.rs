//! toumei's `SimpleMLP(*dims)` as a functional model (`../shared/specs/graph-modularity.md`
//! §4.2): `fc{i} = Linear(dims[i], dims[i+1])` with a ReLU after **every** layer, the last one
//! included (toumei's choice; a classifier's logits and the adder's sum are therefore ≥ 0).
//! Parameter names are the PyTorch state-dict keys under a prefix (`""`, `"patched_m."`,
//! `"mlp."`), so a patched model's tensors read as toumei's `PatchedModel` would list them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::layers::{linear, linear_relu};
use super::{ParamSpec, Params};
use crate::rng::Rng;
use crate::{Error, Result};

/// `SimpleMLP(dims[0], …, dims[L])`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleMlp {
    /// Layer widths, input first.
    pub dims: Vec<i64>,
    /// Whether the last layer has a ReLU too (toumei's `SimpleMLP`: yes; default true).
    #[serde(default = "yes")]
    pub relu_last: bool,
}

fn yes() -> bool {
    true
}

impl SimpleMlp {
    /// The MLP with these widths; at least an input and an output width, all positive.
    pub fn new(dims: &[i64]) -> Result<Self> {
        if dims.len() < 2 || dims.iter().any(|&d| d <= 0) {
            return Err(Error::Architecture(format!(
                "SimpleMLP{dims:?}: needs at least two positive widths"
            )));
        }
        Ok(SimpleMlp {
            dims: dims.to_vec(),
            relu_last: true,
        })
    }

    /// The same MLP without a ReLU after its last layer (raw logits for a classifier).
    pub fn without_last_relu(self) -> Self {
        SimpleMlp {
            relu_last: false,
            ..self
        }
    }

    /// Number of `Linear` layers.
    pub fn layers(&self) -> usize {
        self.dims.len() - 1
    }

    /// `{prefix}fc{i}.weight` `(out, in)` and `{prefix}fc{i}.bias` `(out,)`, in state-dict order.
    pub fn param_specs(&self, prefix: &str) -> Vec<ParamSpec> {
        (0..self.layers())
            .flat_map(|i| {
                let (d_in, d_out) = (self.dims[i], self.dims[i + 1]);
                [
                    ParamSpec {
                        name: format!("{prefix}fc{i}.weight"),
                        shape: vec![d_out, d_in],
                        trainable: true,
                    },
                    ParamSpec {
                        name: format!("{prefix}fc{i}.bias"),
                        shape: vec![d_out],
                        trainable: true,
                    },
                ]
            })
            .collect()
    }

    /// The weight names, input layer first (the graph's blocks).
    pub fn weight_names(&self, prefix: &str) -> Vec<String> {
        (0..self.layers())
            .map(|i| format!("{prefix}fc{i}.weight"))
            .collect()
    }

    /// PyTorch's `Linear` initialisation, `U(−1/√in, 1/√in)` for weights and biases, drawn
    /// from `rng` (so one seed fixes it), as detached tensors.
    pub fn init(&self, prefix: &str, rng: &mut Rng) -> Params {
        let mut params = Params::new();
        for (i, spec) in self.param_specs(prefix).into_iter().enumerate() {
            let bound = 1.0 / (self.dims[i / 2] as f64).sqrt(); // fan-in of layer i / 2
            let n: i64 = spec.shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect();
            params.insert(
                &spec.name,
                Tensor::from_slice(&values).reshape(spec.shape.as_slice()),
            );
        }
        params
    }

    /// `relu(fc_L(… relu(fc_0(x))))` on `x` `(n, dims[0])` (K-batched weights work as in
    /// [`linear_relu`]).
    pub fn forward(&self, p: &Params, prefix: &str, x: &Tensor) -> Result<Tensor> {
        let width = *x.size().last().unwrap_or(&0);
        if width != self.dims[0] {
            return Err(Error::InputShape(format!(
                "SimpleMLP{:?} got inputs of width {width}",
                self.dims
            )));
        }
        let mut h = x.shallow_clone();
        for i in 0..self.layers() {
            let name = format!("{prefix}fc{i}");
            h = match i + 1 < self.layers() || self.relu_last {
                true => linear_relu(p, &name, &h)?,
                false => linear(p, &name, &h)?,
            };
        }
        Ok(h)
    }
}

/// Copies of `params` that autograd trains (`requires_grad`), for the names `keep` accepts;
/// the rest detached.
pub fn trainable_copy(params: &Params, keep: impl Fn(&str) -> bool) -> Params {
    let mut out = Params::new();
    for (name, t) in params.iter() {
        let copy = t.detach().copy().to_kind(Kind::Float);
        out.insert(
            name,
            if keep(name) {
                copy.set_requires_grad(true)
            } else {
                copy
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_shapes_and_init_bounds_follow_pytorch() {
        let mlp = SimpleMlp::new(&[6, 4, 2]).unwrap();
        let specs = mlp.param_specs("mlp.");
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mlp.fc0.weight",
                "mlp.fc0.bias",
                "mlp.fc1.weight",
                "mlp.fc1.bias"
            ]
        );
        let p = mlp.init("mlp.", &mut Rng::new(0));
        let max = |n: &str| p.get(n).unwrap().abs().max().double_value(&[]);
        assert!(
            max("mlp.fc0.weight") <= 1.0 / 6f64.sqrt() && max("mlp.fc0.bias") <= 1.0 / 6f64.sqrt()
        );
        assert!(max("mlp.fc1.bias") <= 0.5 && max("mlp.fc1.bias") > 0.0);
        let y = mlp
            .forward(
                &p,
                "mlp.",
                &Tensor::ones([3, 6], (Kind::Float, tch::Device::Cpu)),
            )
            .unwrap();
        assert_eq!(y.size(), [3, 2]);
        assert!(
            y.min().double_value(&[]) >= 0.0,
            "ReLU after the last layer too"
        );
        assert!(mlp
            .forward(
                &p,
                "mlp.",
                &Tensor::ones([3, 5], (Kind::Float, tch::Device::Cpu))
            )
            .is_err());
        assert!(SimpleMlp::new(&[4]).is_err() && SimpleMlp::new(&[4, 0]).is_err());
    }
}
