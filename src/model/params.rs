//! [`Params`]: named tensors in a fixed order, the input of every functional model.
//!
//! Names are the PyTorch state-dict keys (`vision.net.0.weight`, …); order is PyTorch's
//! `state_dict()` order, so tables and plots list tensors as the study did.

use std::collections::HashMap;

use tch::Tensor;

use crate::{Error, Result};

/// Named tensors in insertion order.
#[derive(Debug, Default)]
pub struct Params {
    names: Vec<String>,
    tensors: HashMap<String, Tensor>,
}

impl Clone for Params {
    /// Shallow: the copy shares storage with the original (like PyTorch `dict(sd)`).
    fn clone(&self) -> Self {
        let tensors = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect();
        Params {
            names: self.names.clone(),
            tensors,
        }
    }
}

impl Params {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces a tensor; a new name goes to the end of the order.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        if !self.tensors.contains_key(&name) {
            self.names.push(name.clone());
        }
        self.tensors.insert(name, tensor);
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `(name, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names
            .iter()
            .map(move |n| (n.as_str(), &self.tensors[n]))
    }

    /// Number of tensors (not scalars; see [`Params::numel`]).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the map holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Total number of scalars.
    pub fn numel(&self) -> i64 {
        self.tensors.values().map(|t| t.numel() as i64).sum()
    }

    /// Moves (or copies) every tensor to `device`.
    pub fn to_device(&self, device: tch::Device) -> Params {
        let tensors = self
            .tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.to_device(device)))
            .collect();
        Params {
            names: self.names.clone(),
            tensors,
        }
    }

    /// Mask sample `i` of K-batched parameters: tensors with more axes than `plain_dims(name)`
    /// lose their leading sample axis; the others are shared.
    pub fn sample(&self, i: i64, plain_dims: impl Fn(&str) -> usize) -> Params {
        let mut out = Params::new();
        for (name, t) in self.iter() {
            out.insert(
                name,
                if t.dim() > plain_dims(name) {
                    t.get(i)
                } else {
                    t.shallow_clone()
                },
            );
        }
        out
    }

    /// Keeps only the tensors whose name passes `keep`, in order.
    pub fn filter(&self, keep: impl Fn(&str) -> bool) -> Params {
        let mut out = Params::new();
        for (name, t) in self.iter() {
            if keep(name) {
                out.insert(name, t.shallow_clone());
            }
        }
        out
    }
}

/// Expected name and shape of one parameter of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The state-dict key, e.g. `vision.net.0.weight`.
    pub name: String,
    /// The unbatched shape, e.g. `[16, 1, 3, 3]` (a K-batched tensor adds a leading axis).
    pub shape: Vec<i64>,
    /// Trainable (weights, biases, norm affines) vs buffers (BN running statistics).
    pub trainable: bool,
}

/// Checks `params` against `specs`: every expected key present with its shape, no extra key.
/// The error lists every missing, unexpected and mis-shaped key at once.
pub fn check_params(params: &Params, specs: &[ParamSpec], source: &str) -> Result<()> {
    let mut problems = Vec::new();
    for spec in specs {
        match params.tensors.get(&spec.name) {
            None => problems.push(format!("missing `{}` {:?}", spec.name, spec.shape)),
            Some(t) if t.size() != spec.shape => problems.push(format!(
                "`{}` has shape {:?}, expected {:?}",
                spec.name,
                t.size(),
                spec.shape
            )),
            Some(_) => {}
        }
    }
    for name in &params.names {
        if !specs.iter().any(|s| &s.name == name) {
            problems.push(format!("unexpected `{name}`"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Architecture(format!(
            "{source}: parameters do not match the model: {}",
            problems.join("; ")
        )))
    }
}
