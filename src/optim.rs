//! The optimiser and the one optimisation loop every trainer plugs into.
//!
//! SCL training, mask training, the toy tasks and the throughput benches differ only in how a
//! step's loss is computed and what happens after the update (logging, evaluation,
//! checkpoints). They implement [`TrainStep`]; [`optimise`] owns the loop: zero the gradients,
//! compute the loss, refuse a non-finite loss, backward, clip, update (burn's `TrainStep` idea).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::{Error, Result};

/// Adam(W) hyper-parameters of one optimisation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decoupled weight decay (AdamW); 0 gives Adam.
    pub weight_decay: f64,
    /// β₁, β₂ (default 0.9, 0.999).
    pub betas: (f64, f64),
    /// ε (default 1e-8).
    pub eps: f64,
    /// Clip the global gradient norm to this value (default none).
    pub clip_grad_norm: Option<f64>,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            betas: (0.9, 0.999),
            eps: 1e-8,
            clip_grad_norm: None,
        }
    }
}

impl AdamConfig {
    /// Plain Adam at `lr` (no decay, no clipping).
    pub fn adam(lr: f64) -> Self {
        AdamConfig {
            lr,
            ..Default::default()
        }
    }
}

/// Adam with decoupled weight decay (AdamW): first and second moments per trainable tensor.
pub struct AdamW {
    /// `(m, v)` per leaf, in the leaves' order (saved in resumable training state).
    pub moments: Vec<(Tensor, Tensor)>,
    /// Updates done so far (the bias-correction step).
    pub step: i32,
}

impl AdamW {
    /// Zero moments for `leaves`.
    pub fn new(leaves: &[Tensor]) -> Self {
        AdamW {
            moments: leaves
                .iter()
                .map(|p| (p.zeros_like(), p.zeros_like()))
                .collect(),
            step: 0,
        }
    }

    /// One update of `leaves` from their gradients (leaves without a gradient are skipped).
    pub fn update(&mut self, leaves: &[Tensor], cfg: &AdamConfig) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let (b1, b2) = cfg.betas;
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        for (p, (m, v)) in leaves.iter().zip(&mut self.moments) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
            let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
            let mut p = p.shallow_clone();
            if cfg.weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - cfg.lr * cfg.weight_decay);
            }
            let step = (&*m / c1) / ((&*v / c2).sqrt() + cfg.eps) * cfg.lr;
            let _ = p.g_sub_(&step);
        }
    }
}

/// Zeroes the gradients of `leaves` (the study forgot this step).
pub fn zero_grads(leaves: &[Tensor]) {
    for l in leaves {
        let mut g = l.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

/// Scales the gradients of `leaves` so that their global L2 norm is at most `max_norm`.
pub fn clip_grad_norm(leaves: &[Tensor], max_norm: f64) {
    let _guard = tch::no_grad_guard();
    let total: f64 = leaves
        .iter()
        .map(|w| w.grad())
        .filter(|g| g.defined())
        .map(|g| g.square().sum(Kind::Double).double_value(&[]))
        .sum::<f64>()
        .sqrt();
    if total > max_norm {
        for w in leaves {
            let mut g = w.grad();
            if g.defined() {
                let _ = g.g_mul_scalar_(max_norm / (total + 1e-6));
            }
        }
    }
}

/// Whether the loop goes on after a step: a task stops early by its own rule (a target
/// accuracy, a converged mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Take the next step.
    Continue,
    /// Stop after this step.
    Stop,
}

/// What a trainer computes per step; [`optimise`] does the rest.
pub trait TrainStep {
    /// This step's scalar loss (the forward pass), with the graph to the leaves.
    fn loss(&mut self, step: usize) -> Result<Tensor>;

    /// Called after the update of `step` with the loss value and the optimiser (whose moments
    /// a resumable state saves): log, evaluate, checkpoint, and say whether to go on.
    fn after_update(&mut self, _step: usize, _loss: f64, _opt: &AdamW) -> Result<Flow> {
        Ok(Flow::Continue)
    }
}

/// The one optimisation loop: for each step, zero the gradients of `leaves`, compute the loss,
/// stop with [`Error::Diverged`] on a non-finite loss, backward, clip, update, report. Returns
/// the last step taken (earlier than the range's end when the task said [`Flow::Stop`]).
pub fn optimise(
    task: &mut impl TrainStep,
    leaves: &[Tensor],
    opt: &mut AdamW,
    cfg: &AdamConfig,
    steps: RangeInclusive<usize>,
) -> Result<usize> {
    let mut last = steps.start().saturating_sub(1);
    for step in steps {
        zero_grads(leaves);
        let loss = task.loss(step)?;
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(Error::Diverged { step, loss: value });
        }
        loss.backward();
        if let Some(max_norm) = cfg.clip_grad_norm {
            clip_grad_norm(leaves, max_norm);
        }
        opt.update(leaves, cfg);
        last = step;
        if task.after_update(step, value, opt)? == Flow::Stop {
            break;
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quadratic {
        x: Tensor,
    }

    impl TrainStep for Quadratic {
        fn loss(&mut self, _step: usize) -> Result<Tensor> {
            Ok((&self.x - 3.0).square().sum(Kind::Float))
        }
    }

    #[test]
    fn optimise_minimises_a_quadratic_with_adam() {
        let x = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut task = Quadratic {
            x: x.shallow_clone(),
        };
        let mut opt = AdamW::new(&[x.shallow_clone()]);
        optimise(
            &mut task,
            &[x.shallow_clone()],
            &mut opt,
            &AdamConfig::adam(0.1),
            1..=500,
        )
        .unwrap();
        let got: Vec<f64> = Vec::try_from(x.detach().to_kind(Kind::Double)).unwrap();
        assert!(got.iter().all(|v| (v - 3.0).abs() < 1e-2), "{got:?}");
        assert_eq!(opt.step, 500);
    }

    struct Nan;

    impl TrainStep for Nan {
        fn loss(&mut self, _step: usize) -> Result<Tensor> {
            Ok(Tensor::from(f32::NAN))
        }
    }

    #[test]
    fn optimise_stops_with_an_error_on_a_non_finite_loss() {
        let x = Tensor::zeros([1], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        let mut opt = AdamW::new(&[x.shallow_clone()]);
        let err = optimise(&mut Nan, &[x], &mut opt, &AdamConfig::adam(0.1), 7..=9).unwrap_err();
        assert!(matches!(err, Error::Diverged { step: 7, .. }), "{err}");
    }
}
