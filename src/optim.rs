//! The optimiser and the one optimisation loop every trainer plugs into.
//!
//! SCL training, mask training, the toy tasks and the throughput benches differ only in how a
//! step's loss is computed and what happens after the update (logging, evaluation,
//! checkpoints). They implement [`TrainStep`]; [`optimise`] owns the loop: zero the gradients,
//! compute the loss, refuse a non-finite loss, backward (and the deferred backward passes of
//! hand-written kernels), clip, update (burn's `TrainStep` idea).

use std::cell::RefCell;
use std::ffi::{c_char, c_int};
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
///
/// The update runs on flat buffers: a model's 112 small tensors cost about 1,500 elementwise
/// calls a step one by one (3.3 ms for the official SCL, during which libtorch's second thread
/// idles), and 14 (15 with weight decay) plus one concatenation of the gradients on flat
/// buffers. The first update packs the leaves that have a gradient, their values and moments,
/// into three buffers and makes each such leaf and its moments views of them (`set_data`: the
/// same tensors, with their values, gradients and places in autograd's graphs, another
/// storage); a later update packs again if another set of leaves has gradients or a leaf got
/// another storage. Leaves without a gradient are skipped, as one tensor at a time would. The
/// elementwise operations are the same, in the same order, so the result is bit for bit the
/// per-tensor update's (tested; `AVR_FLAT_ADAM=0` takes that path).
///
/// One thing differs: the flat update writes through the buffers, so it does not bump the
/// leaves' own version counters. A graph that saved a leaf must not be run backward after the
/// update (autograd would not notice the change); [`optimise`] drops each step's graph first.
pub struct AdamW {
    /// `(m, v)` per leaf, in the leaves' order (saved in resumable training state).
    pub moments: Vec<(Tensor, Tensor)>,
    /// Updates done so far (the bias-correction step).
    pub step: i32,
    /// The flat buffers and which leaves they hold, once packed.
    flat: Option<Packed>,
}

/// The flat buffers of [`AdamW`]: `members`' values and moments, one after the other.
struct Packed {
    members: Vec<usize>,
    values: Tensor,
    m: Tensor,
    v: Tensor,
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
            flat: None,
        }
    }

    /// One update of `leaves` from their gradients (leaves without a gradient are skipped).
    pub fn update(&mut self, leaves: &[Tensor], cfg: &AdamConfig) {
        self.update_with(leaves, cfg, flat_enabled());
    }

    /// [`AdamW::update`], on the flat buffers where `flat` and they apply.
    fn update_with(&mut self, leaves: &[Tensor], cfg: &AdamConfig, flat: bool) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let grads: Vec<Tensor> = leaves.iter().map(Tensor::grad).collect();
        // An empty leaf has nothing to update (and no data pointer to check a view by).
        let members: Vec<usize> = (0..leaves.len())
            .filter(|&i| grads[i].defined() && leaves[i].numel() > 0)
            .collect();
        if flat && self.packed(leaves, &members) {
            let packed = self.flat.as_ref().expect("packed");
            let g = members
                .iter()
                .map(|&i| grads[i].reshape(-1))
                .collect::<Vec<_>>();
            update_one(
                &packed.values,
                &Tensor::cat(&g, 0),
                &packed.m,
                &packed.v,
                self.step,
                cfg,
            );
            return;
        }
        for ((p, g), (m, v)) in leaves.iter().zip(&grads).zip(&self.moments) {
            if g.defined() {
                update_one(p, g, m, v, self.step, cfg);
            }
        }
    }

    /// Whether `members` of `leaves` are packed (packing them now if they can be: at least two,
    /// all f32 and contiguous on one device, with moments of their shapes, no two sharing
    /// memory — the per-tensor update would update shared memory twice).
    fn packed(&mut self, leaves: &[Tensor], members: &[usize]) -> bool {
        let fresh = self.flat.as_ref().is_some_and(|f| {
            f.members == members
                && viewed_in_order(&f.values, members.iter().map(|&i| &leaves[i]))
                && viewed_in_order(&f.m, members.iter().map(|&i| &self.moments[i].0))
                && viewed_in_order(&f.v, members.iter().map(|&i| &self.moments[i].1))
        });
        if fresh {
            return true;
        }
        self.flat = None;
        let device = members.first().map(|&i| leaves[i].device());
        let packable = members.len() > 1
            && self.moments.len() == leaves.len()
            && disjoint(members.iter().map(|&i| &leaves[i]))
            && members.iter().all(|&i| {
                let (p, (m, v)) = (&leaves[i], &self.moments[i]);
                [p, m, v].iter().all(|t| {
                    t.kind() == Kind::Float
                        && Some(t.device()) == device
                        && t.is_contiguous()
                        && t.size() == p.size()
                })
            });
        if !packable {
            return false;
        }
        let pick = |t: &dyn Fn(usize) -> Tensor| members.iter().map(|&i| t(i)).collect::<Vec<_>>();
        let values = pack(&pick(&|i| leaves[i].shallow_clone()));
        let m = pack(&pick(&|i| self.moments[i].0.shallow_clone()));
        let v = pack(&pick(&|i| self.moments[i].1.shallow_clone()));
        self.flat = Some(Packed {
            members: members.to_vec(),
            values,
            m,
            v,
        });
        true
    }
}

/// AdamW on one tensor (or one flat buffer of them): every operation elementwise.
fn update_one(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, step: i32, cfg: &AdamConfig) {
    let (b1, b2) = cfg.betas;
    let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
    let (mut p, mut m, mut v) = (p.shallow_clone(), m.shallow_clone(), v.shallow_clone());
    let _ = m.g_mul_scalar_(b1).g_add_(&(g * (1.0 - b1)));
    let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
    if cfg.weight_decay > 0.0 {
        let _ = p.g_mul_scalar_(1.0 - cfg.lr * cfg.weight_decay);
    }
    let step = (&m / c1) / ((&v / c2).sqrt() + cfg.eps) * cfg.lr;
    let _ = p.g_sub_(&step);
}

/// `AVR_FLAT_ADAM=0` updates one tensor at a time (the same result, bit for bit), so that
/// `avr bench switch` can measure what the flat buffers gain.
pub fn flat_enabled() -> bool {
    std::env::var("AVR_FLAT_ADAM").map_or(true, |v| v != "0")
}

/// Whether `parts` lie in `flat`'s buffer one after the other from its start, each contiguous.
fn viewed_in_order<'a>(flat: &Tensor, parts: impl Iterator<Item = &'a Tensor>) -> bool {
    let base = flat.data_ptr() as usize;
    let size = flat.kind().elt_size_in_bytes();
    let mut offset = 0;
    for t in parts {
        if t.data_ptr() as usize != base + offset * size || !t.is_contiguous() {
            return false;
        }
        offset += t.numel();
    }
    offset == flat.numel()
}

/// Whether no two of the contiguous `tensors` share a byte of memory.
fn disjoint<'a>(tensors: impl Iterator<Item = &'a Tensor>) -> bool {
    let mut spans: Vec<(usize, usize)> = tensors
        .map(|t| {
            let start = t.data_ptr() as usize;
            (start, start + t.numel() * t.kind().elt_size_in_bytes())
        })
        .collect();
    spans.sort_unstable();
    spans.windows(2).all(|w| w[0].1 <= w[1].0)
}

/// One buffer holding the tensors' values in order; each tensor becomes a view of it (its
/// values, shape and autograd identity unchanged).
fn pack(tensors: &[Tensor]) -> Tensor {
    let flat = Tensor::cat(
        &tensors
            .iter()
            .map(|t| t.detach().view(-1))
            .collect::<Vec<_>>(),
        0,
    );
    let mut offset = 0;
    for t in tensors {
        let n = t.numel() as i64;
        t.shallow_clone()
            .set_data(&flat.narrow(0, offset, n).view(t.size().as_slice()));
        offset += n;
    }
    flat
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

// --- Deferred backward passes: a hand-written kernel's backward, run after `loss.backward()`.
// tch offers no custom autograd function, so such a kernel returns a fresh leaf and registers
// how to turn that leaf's gradient into its inputs' gradients. ---

/// A backward pass owed by a forward computed outside autograd (see `model::fused`).
pub trait DeferredBackward {
    /// Runs after `loss.backward()` has filled the gradients of the kernel's output leaf. Its
    /// own `backward` (of a surrogate that carries the gradients on) keeps the graph when
    /// `keep_graph` says more passes follow (see [`backward`]).
    fn apply(self: Box<Self>, keep_graph: bool) -> Result<()>;
}

/// `t.backward()`, keeping the graph's saved tensors when `keep_graph` (PyTorch's
/// `retain_graph=True`, which tch's `backward` does not offer: this calls the C shim tch's
/// `backward` calls, with the flag set).
///
/// Why keep it: a deferred pass's surrogate may reach graph nodes that an earlier backward of
/// the same step already went through and freed. Mask training is the case: the relation
/// experts' masked weights come out of the same sampling ops as weights the loss's backward
/// reached ("Trying to backward through the graph a second time"). The step's graph is
/// dropped with its loss at the end of the step either way.
pub fn backward(t: &Tensor, keep_graph: bool) -> Result<()> {
    if !keep_graph {
        return Ok(t.f_backward()?);
    }
    extern "C" {
        fn at_backward(t: *mut std::ffi::c_void, keep_graph: c_int, create_graph: c_int);
        fn get_and_reset_last_err() -> *mut c_char;
        fn free(p: *mut std::ffi::c_void);
    }
    // SAFETY: `at_backward` is tch's own C shim (torch-sys, linked into every tch binary), given
    // a live tensor; it catches C++ exceptions into the thread's last error, which
    // `get_and_reset_last_err` hands over (malloc'ed, freed here as tch frees it).
    unsafe {
        at_backward(t.as_ptr() as *mut std::ffi::c_void, 1, 0);
        let err = get_and_reset_last_err();
        if !err.is_null() {
            let message = std::ffi::CStr::from_ptr(err).to_string_lossy().into_owned();
            free(err as *mut std::ffi::c_void);
            return Err(tch::TchError::Torch(message).into());
        }
    }
    Ok(())
}

/// One backward of the surrogate `Σ t·g` over the pairs whose `t` needs a gradient: each such
/// `t` (through any graph above it) gets `g` added to its gradient. How a deferred pass hands
/// its kernel's gradients to autograd; nothing to do when no `t` needs one.
pub fn backward_with_grads<'a>(
    pairs: impl IntoIterator<Item = (&'a Tensor, Tensor)>,
    keep_graph: bool,
) -> Result<()> {
    let surrogate = pairs
        .into_iter()
        .filter(|(t, _)| t.requires_grad())
        .map(|(t, g)| (t * g).sum(Kind::Float))
        .reduce(|a, b| a + b);
    match surrogate {
        Some(s) => backward(&s, keep_graph),
        None => Ok(()),
    }
}

thread_local! {
    // Open (Some) while a step's forward pass runs inside [`deferring`].
    static DEFERRED: RefCell<Option<Vec<Box<dyn DeferredBackward>>>> = const { RefCell::new(None) };
}

/// The deferred backward passes of one forward pass, in the order they were registered.
#[must_use = "the kernels' inputs get no gradient unless `apply` runs after `loss.backward()`"]
pub struct DeferredGrads(Vec<Box<dyn DeferredBackward>>);

impl DeferredGrads {
    /// Runs every deferred backward pass, last registered first (as autograd would); each
    /// but the last keeps the graph for the next.
    pub fn apply(self) -> Result<()> {
        let n = self.0.len();
        (self.0.into_iter().rev().enumerate()).try_for_each(|(i, d)| d.apply(i + 1 < n))
    }

    /// `loss`'s backward, then these passes: the loss's backward keeps the graph when passes
    /// follow (see [`backward`]).
    pub fn backward_from(self, loss: &Tensor) -> Result<()> {
        backward(loss, !self.is_empty())?;
        self.apply()
    }

    /// How many backward passes are owed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is owed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `f` (a forward pass) with deferral open: kernels that need it may then register
/// [`DeferredBackward`]s, returned with `f`'s result. Nested scopes keep their own lists.
pub fn deferring<T>(f: impl FnOnce() -> T) -> (T, DeferredGrads) {
    /// Restores the enclosing scope's list, also on a panic.
    struct Restore(Option<Vec<Box<dyn DeferredBackward>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEFERRED.with(|d| *d.borrow_mut() = self.0.take());
        }
    }
    let restore = Restore(DEFERRED.with(|d| d.borrow_mut().replace(Vec::new())));
    let out = f();
    let owed = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
    drop(restore);
    (out, DeferredGrads(owed))
}

/// Whether a [`deferring`] scope is open on this thread (else a kernel takes autograd's path).
pub fn deferral_open() -> bool {
    DEFERRED.with(|d| d.borrow().is_some())
}

/// Registers a backward pass with the open scope; returns `false` (and drops it) if none is open.
pub fn defer(backward: Box<dyn DeferredBackward>) -> bool {
    DEFERRED.with(|d| match d.borrow_mut().as_mut() {
        Some(list) => {
            list.push(backward);
            true
        }
        None => false,
    })
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
        let (loss, deferred) = deferring(|| task.loss(step));
        let loss = loss?;
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(Error::Diverged { step, loss: value });
        }
        deferred.backward_from(&loss)?;
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

    /// The per-tensor AdamW update as it was before the flat buffers: the reference.
    fn update_one_by_one(
        leaves: &[Tensor],
        moments: &[(Tensor, Tensor)],
        step: i32,
        cfg: &AdamConfig,
    ) {
        let _guard = tch::no_grad_guard();
        let (b1, b2) = cfg.betas;
        let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
        for (p, (m, v)) in leaves.iter().zip(moments) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let (mut m, mut v) = (m.shallow_clone(), v.shallow_clone());
            let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
            let _ = v.g_mul_scalar_(b2).g_add_(&(g.square() * (1.0 - b2)));
            let mut p = p.shallow_clone();
            let _ = p.g_mul_scalar_(1.0 - cfg.lr * cfg.weight_decay);
            let step = (&m / c1) / ((&v / c2).sqrt() + cfg.eps) * cfg.lr;
            let _ = p.g_sub_(&step);
        }
    }

    #[test]
    fn the_flat_update_equals_the_per_tensor_update_bit_for_bit() {
        tch::manual_seed(3);
        // Leaf 5 is empty: never packed (its update is nothing either way).
        let shapes: [&[i64]; 6] = [&[16, 1, 3, 3], &[16], &[7, 33], &[1], &[5, 9, 64], &[0, 4]];
        let make = || -> Vec<Tensor> {
            shapes
                .iter()
                .map(|s| Tensor::randn(*s, (Kind::Float, tch::Device::Cpu)))
                .collect()
        };
        let start = make();
        let copy = |ts: &[Tensor]| -> Vec<Tensor> {
            ts.iter()
                .map(|t| t.copy().set_requires_grad(true))
                .collect()
        };
        let (ours, theirs) = (copy(&start), copy(&start));
        let cfg = AdamConfig {
            lr: 0.01,
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(&ours);
        let reference: Vec<(Tensor, Tensor)> = theirs
            .iter()
            .map(|p| (p.zeros_like(), p.zeros_like()))
            .collect();
        let mut values_at = 0;
        for step in 1..=8 {
            if step == 6 {
                // A resume writes the moments in place: they stay views of the buffers.
                for (mine, theirs) in opt.moments.iter_mut().zip(&reference) {
                    mine.0.copy_(&theirs.0);
                    mine.1.copy_(&theirs.1);
                }
            }
            if step == 7 {
                // A leaf that gets another storage (a reload through `set_data`): packed again.
                values_at = opt.flat.as_ref().unwrap().values.data_ptr() as usize;
                ours[0].shallow_clone().set_data(&ours[0].detach().copy());
            }
            let g = make();
            // Leaf 2 has no gradient before step 4: packed without it (and skipped, as one
            // tensor at a time would) until then, and packed again with it at step 4.
            let with_grad = |i: usize| step >= 4 || i != 2;
            for leaves in [&ours, &theirs] {
                zero_grads(leaves);
                let loss = (leaves.iter().zip(&g).enumerate())
                    .filter(|(i, _)| with_grad(*i))
                    .map(|(_, (p, g))| (p * g).sum(Kind::Float) + (p * p).sum(Kind::Float) * 0.5)
                    .reduce(|a, b| a + b)
                    .unwrap();
                loss.backward();
            }
            assert_eq!(ours[2].grad().defined(), step >= 4);
            // Packed from the first update on: without leaf 2 until step 4, with it after.
            let members = opt.flat.as_ref().map(|f| f.members.clone());
            let want = match step {
                1 => None,
                2..=4 => Some(vec![0, 1, 3, 4]),
                _ => Some(vec![0, 1, 2, 3, 4]),
            };
            assert_eq!(members, want, "step {step}");
            opt.update_with(&ours, &cfg, true);
            update_one_by_one(&theirs, &reference, step, &cfg);
            if step == 7 {
                let now = opt.flat.as_ref().unwrap().values.data_ptr() as usize;
                assert_ne!(now, values_at, "packed again after a leaf's new storage");
            }
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                assert!(a.is_leaf() && a.requires_grad() && a.size() == b.size());
                assert!(a.equal(b), "step {step}: leaf {i} differs");
                assert!(
                    opt.moments[i].0.equal(&reference[i].0),
                    "step {step}: m of {i}"
                );
                assert!(
                    opt.moments[i].1.equal(&reference[i].1),
                    "step {step}: v of {i}"
                );
            }
        }
        let flat = opt.flat.as_ref().unwrap();
        assert!(
            viewed_in_order(&flat.values, ours[..5].iter()),
            "the leaves view one buffer"
        );
        assert!(viewed_in_order(
            &flat.m,
            opt.moments[..5].iter().map(|(m, _)| m)
        ));
    }

    #[test]
    fn leaves_that_share_memory_are_updated_one_at_a_time() {
        let base = Tensor::randn([6], (Kind::Float, tch::Device::Cpu));
        let (a, b) = (base.narrow(0, 0, 4), base.narrow(0, 2, 4)); // two values in common
        let leaves = [a.set_requires_grad(true), b.set_requires_grad(true)];
        let mut opt = AdamW::new(&leaves);
        (leaves[0].sum(Kind::Float) + leaves[1].sum(Kind::Float)).backward();
        opt.update_with(&leaves, &AdamConfig::adam(0.1), true);
        assert!(opt.flat.is_none(), "not packed");
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

    struct Record(
        &'static str,
        std::rc::Rc<std::cell::RefCell<Vec<&'static str>>>,
    );

    impl DeferredBackward for Record {
        fn apply(self: Box<Self>, _keep_graph: bool) -> Result<()> {
            self.1.borrow_mut().push(self.0);
            Ok(())
        }
    }

    #[test]
    fn deferred_backwards_run_last_first_and_only_inside_a_scope() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let record = |name| Box::new(Record(name, log.clone()));
        assert!(!deferral_open() && !defer(record("outside")));
        let (inner, outer) = deferring(|| {
            assert!(defer(record("first")));
            let ((), inner) = deferring(|| assert!(defer(record("nested"))));
            assert!(deferral_open() && defer(record("second")));
            inner
        });
        assert!(!deferral_open());
        assert_eq!((inner.len(), outer.len()), (1, 2));
        outer.apply().unwrap();
        inner.apply().unwrap();
        assert_eq!(*log.borrow(), ["second", "first", "nested"]);
    }
}
