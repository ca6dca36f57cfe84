//! The masking engine: K-batched layers equal K separate masked passes, Gumbel-sigmoid sampling
//! statistics and straight-through gradients, and mask training on the study's checkpoint.

use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::data::{AvrDataset, Shape, Split};
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::masking::engine::*;
use avr_modularity::masking::Mask;
use avr_modularity::model::*;
use tch::{Device, Kind, Tensor};

fn official(size: i64) -> SclVariant {
    SclVariant::Official(OfficialSclConfig {
        image_size: size,
        ..Default::default()
    })
}

/// Per-sample binary masks applied in one K-batched pass give the same logits as K separate
/// passes, chunk by chunk — for both variants (conv via grouped conv, BN/LN per-sample affine).
fn batched_equals_separate(variant: SclVariant, size: i64) {
    tch::manual_seed(0);
    let model = SclModel::init(variant, 3, Device::Cpu);
    let k = 3;
    let masks: Vec<Params> = (0..k)
        .map(|_| {
            let mut p = Params::new();
            for spec in model.param_specs().into_iter().filter(|s| s.trainable) {
                p.insert(
                    &spec.name,
                    Tensor::rand(spec.shape.as_slice(), (Kind::Float, Device::Cpu))
                        .gt(0.3)
                        .to_kind(Kind::Float),
                );
            }
            p
        })
        .collect();
    let mut batched = Params::new();
    for spec in model.param_specs() {
        let w = model.params.get(&spec.name).unwrap();
        let t = if spec.trainable {
            Tensor::stack(
                &masks
                    .iter()
                    .map(|m| w * m.get(&spec.name).unwrap())
                    .collect::<Vec<_>>(),
                0,
            )
        } else {
            w.shallow_clone()
        };
        batched.insert(&spec.name, t);
    }
    let x = Tensor::rand([2 * k, 16, size, size], (Kind::Float, Device::Cpu));
    let together = model.logits_with(&batched, &x, BnMode::Eval).unwrap();
    for (i, m) in masks.iter().enumerate() {
        // `Mask::apply` binarises `l > 0`, so 0/1 masks are passed as ±1 logits.
        let logits = m.iter().fold(Params::new(), |mut p, (n, t)| {
            p.insert(n, t * 2.0 - 1.0);
            p
        });
        let params = Mask::new("m", logits, None)
            .apply(&model.params, false)
            .unwrap();
        let alone = model
            .logits_with(&params, &x.narrow(0, 2 * i as i64, 2), BnMode::Eval)
            .unwrap();
        let diff = (together.narrow(0, 2 * i as i64, 2) - alone)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-4, "sample {i}: max |Δlogit| = {diff}");
    }
}

#[test]
fn k_batched_official_forward_equals_separate_passes() {
    batched_equals_separate(official(80), 80);
}

#[test]
fn k_batched_seed_forward_equals_separate_passes() {
    batched_equals_separate(
        SclVariant::Seed(SeedSclConfig {
            image_size: 64,
            ..Default::default()
        }),
        64,
    );
}

#[test]
fn gumbel_sigmoid_keeps_with_probability_sigmoid_l_and_passes_the_sigmoid_slope() {
    tch::manual_seed(1);
    let l = Tensor::from_slice(&[-1.0f32, 0.0, 0.5, 2.0]).set_requires_grad(true);
    let m = sample_mask(&l, 20_000, 1.0);
    let values: Vec<f32> = Vec::try_from(m.flatten(0, -1)).unwrap();
    assert!(
        values.iter().all(|&v| v == 0.0 || v == 1.0),
        "hard forward values are exactly 0/1"
    );
    let freq: Vec<f64> = Vec::<f64>::try_from(m.detach().to_kind(Kind::Double).mean_dim(
        0,
        false,
        Kind::Double,
    ))
    .unwrap();
    for (f, lv) in freq.iter().zip([-1.0f64, 0.0, 0.5, 2.0]) {
        let p = 1.0 / (1.0 + (-lv).exp());
        assert!(
            (f - p).abs() < 4.0 * (p * (1.0 - p) / 20_000.0).sqrt() + 1e-3,
            "P(keep | l = {lv}) = {f}, expected {p}"
        );
    }
    // Straight-through: d(Σ m)/dl = Σ_k s_k (1 − s_k), positive and below K/4.
    m.sum(Kind::Float).backward();
    let g: Vec<f32> = Vec::try_from(l.grad()).unwrap();
    assert!(g.iter().all(|&v| v > 0.0 && v <= 20_000.0 / 4.0), "{g:?}");
}

#[test]
fn weights_only_filter_leaves_biases_and_norms_unmasked() {
    let model = SclModel::init(official(80), 0, Device::Cpu);
    let all = init_logits(&model, MaskFilter::All, 2.5, None);
    let weights = init_logits(&model, MaskFilter::WeightsOnly, 2.5, None);
    assert_eq!(all.numel(), model.num_trainable());
    assert!(weights.numel() < all.numel());
    assert!(weights
        .names()
        .iter()
        .all(|n| n.ends_with(".weight") && weights.get(n).unwrap().dim() >= 2));
}

/// A few mask steps on the study's checkpoint with its `squares` task: the log is complete,
/// strong α shrinks the mask, the saved file reloads to the same binary mask, and evaluation
/// of the deterministic mask matches a direct evaluation.
#[test]
fn train_mask_on_the_study_checkpoint_saves_and_reloads() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt")).unwrap();
    let model = &ckpt.model;
    let squares = AvrDataset::open(fixtures.join("seed/datasets/squares")).unwrap();
    let originals = AvrDataset::open(fixtures.join("seed/datasets/originals")).unwrap();
    let cfg = MaskTrainConfig::default()
        .with_steps(6)
        .with_batch_size(4)
        .with_samples(2)
        .with_alpha(1e-2)
        .with_lr(0.5)
        .with_eval_every(3)
        .with_eval_problems(8);
    let (fit, held_out) = (squares.split(Split::Train), squares.split(Split::Test));
    let control = originals.split(Split::Test);
    let task = MaskTask {
        name: "squares".into(),
        shape: Some(Shape::Squares),
        fit: &fit,
        held_out: &held_out,
        control: Some(&control),
    };
    let run = train_mask(&ckpt, &task, &cfg).unwrap();
    assert_eq!(run.metrics.len(), 6);
    let evals: Vec<&MaskMetricRow> = run
        .metrics
        .iter()
        .filter(|r| r.task_accuracy.is_some())
        .collect();
    assert_eq!(evals.len(), 2);
    assert!(evals
        .iter()
        .all(|r| r.control_accuracy.is_some() && r.inverted_task_accuracy.is_some()));
    // With lr 0.5 and a strong α every logit that the task does not defend falls by ~0.5 per
    // step from 2.5: after 6 steps most are negative.
    let kept = evals.last().unwrap().kept_fraction.unwrap();
    assert!(kept < 0.9, "kept fraction {kept}");
    assert!(run.metrics_table().unwrap().df.height() == 6);
    assert!(run.curves().unwrap().svg.contains("mask training"));
    let dir = tempfile::tempdir().unwrap();
    let path = run.save(dir.path()).unwrap();
    assert_eq!(path, dir.path().join("squares.safetensors"));
    let back = Mask::load(&path).unwrap();
    assert_eq!(back.kept(), run.mask.kept());
    assert_eq!(back.alpha, Some(1e-2));
    let sidecar: MaskSidecar = avr_modularity::checkpoint::read_sidecar(&path).unwrap();
    assert_eq!(sidecar.steps_done, 6);
    assert_eq!(sidecar.base_hash, params_hash(&model.params).unwrap());
    // The run recorded its own provenance: the real base checkpoint, task and control sets.
    assert_eq!(sidecar.base_checkpoint, ckpt.path_string());
    assert_eq!(sidecar.shape, Some(Shape::Squares));
    assert!(
        sidecar.task_dataset.ends_with("squares"),
        "{}",
        sidecar.task_dataset
    );
    assert!(sidecar.control_dataset.unwrap().ends_with("originals"));
    assert!((sidecar.kept_fraction - kept).abs() < 1e-12);
    // The thread count (the order of float reductions) is recorded with the mask.
    let threads = tch::get_num_threads() as usize;
    assert_eq!(sidecar.threads, Some(threads));
    // So is the CPU's vector width, which picks libtorch's kernels (the other half of it).
    let simd = avr_modularity::session::simd_level();
    assert_eq!(sidecar.simd.as_deref(), Some(simd));
    // The readings travel with the mask: a reloaded run has the evaluation rows (and the
    // last), with the same values, so its curves can be drawn without re-training.
    let loaded = MaskRun::load(&path).unwrap();
    let steps: Vec<usize> = loaded.metrics.iter().map(|r| r.step).collect();
    assert_eq!(steps, vec![3, 6]);
    for (a, b) in loaded.metrics.iter().zip(&evals) {
        assert_eq!(a.task_accuracy, b.task_accuracy);
        assert_eq!(a.kept_fraction, b.kept_fraction);
        assert_eq!(a.loss.to_bits(), b.loss.to_bits(), "f64 written in full");
    }
    assert_eq!(loaded.unmasked, run.unmasked);
    assert_eq!(loaded.provenance, run.provenance);
    assert_eq!(
        loaded.threads,
        Some(threads),
        "a reloaded run keeps its own count"
    );
    assert!(loaded.curves().unwrap().svg.contains("mask training"));
    let bad = avr_modularity::masking::engine::mask_readings_path(&path);
    std::fs::write(&bad, "step,loss\n1,2\n").unwrap();
    let err = MaskRun::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("readings.csv") && err.contains("header"),
        "{err}"
    );
    std::fs::remove_file(&bad).unwrap();
    let set = avr_modularity::masking::set::MaskSet::load_dir(dir.path(), None).unwrap();
    assert_eq!(set.runs.len(), 1);
    assert_eq!(set.runs[0].mask.kept(), run.mask.kept());
    let other_seed = avr_modularity::masking::set::MaskSet::load_dir(dir.path(), Some(7));
    assert!(other_seed.unwrap_err().to_string().contains("no masks"));
}

#[test]
fn mask_batch_must_split_into_k_chunks() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt")).unwrap();
    let squares = AvrDataset::open(fixtures.join("seed/datasets/squares")).unwrap();
    let cfg = MaskTrainConfig::default()
        .with_batch_size(6)
        .with_samples(4);
    let task = MaskTask {
        name: "x".into(),
        shape: None,
        fit: &squares,
        held_out: &squares,
        control: None,
    };
    let err = train_mask(&ckpt, &task, &cfg).unwrap_err().to_string();
    assert!(err.contains("divisible"), "{err}");
    let err = alpha_sweep(&ckpt, &task, &MaskTrainConfig::default(), &[]).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn alpha_selection_takes_the_largest_alpha_within_tolerance_of_the_smallest() {
    let runs = [(1e-6, 0.80), (1e-5, 0.78), (1e-4, 0.70), (1e-3, 0.20)];
    assert_eq!(select_alpha(&runs, 0.05), 1);
    assert_eq!(select_alpha(&runs, 0.15), 2);
    assert_eq!(select_alpha(&runs, 0.0), 0);
    // Order of the list does not matter.
    assert_eq!(
        select_alpha(&[(1e-3, 0.2), (1e-5, 0.78), (1e-6, 0.8)], 0.05),
        1
    );
}

/// The flat logit leaf keeps every tensor's place: logits far from 0 make each draw certain
/// (the clamped logistic noise stays within ±13.9), so every sample of every masked tensor must
/// be exactly `w · (l > 0)`, unmasked trainables are the weights repeated K times, buffers pass
/// through, and the gradient reaches logits, never those of zero weights.
#[test]
fn flat_logits_sample_each_tensor_in_its_own_slice() {
    tch::manual_seed(2);
    let model = SclModel::init(official(80), 0, Device::Cpu);
    let _ = model
        .params
        .get("visual.attr_mlp.0.weight")
        .unwrap()
        .narrow(0, 0, 10)
        .zero_(); // 2,560 zero weights
    let mut logits = init_logits(&model, MaskFilter::WeightsOnly, 0.0, None);
    for name in logits.names().to_vec() {
        let sign = Tensor::rand(
            logits.get(&name).unwrap().size().as_slice(),
            (Kind::Float, Device::Cpu),
        )
        .gt(0.5)
        .to_kind(Kind::Float);
        logits.insert(&name, sign * 40.0 - 20.0);
    }
    let flat = FlatLogits::new(&logits);
    assert_eq!(flat.numel(), logits.numel());
    for (name, t) in flat.to_params().iter() {
        assert!(
            t.equal(logits.get(name).unwrap()),
            "{name} does not round-trip"
        );
    }
    let k = 3;
    let specs = model.param_specs();
    let (params, draw) = flat.sample(&specs, &model.params, k, 1.0).unwrap();
    assert_eq!(draw.size(), vec![k, flat.numel()]);
    for spec in &specs {
        let w = model.params.get(&spec.name).unwrap();
        let got = params.get(&spec.name).unwrap();
        match (logits.contains(&spec.name), spec.trainable) {
            (true, _) => {
                let want = w * logits.get(&spec.name).unwrap().gt(0.0).to_kind(Kind::Float);
                for i in 0..k {
                    assert!(
                        got.get(i).equal(&want),
                        "{} sample {i} is not w · (l > 0)",
                        spec.name
                    );
                }
            }
            (false, true) => assert!(
                got.get(k - 1).equal(w),
                "{} should be the weights, repeated",
                spec.name
            ),
            (false, false) => assert!(got.equal(w), "{} is a buffer and passes through", spec.name),
        }
    }
    params
        .iter()
        .map(|(_, t)| t.sum(Kind::Float))
        .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b)
        .backward();
    let grad_nonzero = flat.flat.grad().ne(0.0);
    let weights_nonzero = Tensor::cat(
        &logits
            .iter()
            .map(|(n, _)| model.params.get(n).unwrap().ne(0.0).reshape([-1]))
            .collect::<Vec<_>>(),
        0,
    );
    let stray = grad_nonzero
        .logical_and(&weights_nonzero.logical_not())
        .sum(Kind::Int64)
        .int64_value(&[]);
    assert_eq!(
        stray, 0,
        "a logit of a zero weight got a gradient: slices are misplaced"
    );
    assert!(
        grad_nonzero.sum(Kind::Int64).int64_value(&[]) > 1000,
        "the straight-through gradient reaches the logits"
    );
}

/// A mask of another model is refused with the names that differ (it used to be applied to
/// nothing and print accuracies), and one of another panel size with the shapes (it used to
/// panic inside libtorch's `w * b`).
#[test]
fn a_mask_of_another_model_is_refused_naming_the_tensors() {
    let seed_mask = Mask::new(
        "seed",
        init_logits(
            &SclModel::init(SclVariant::seed(160), 0, Device::Cpu),
            MaskFilter::All,
            1.0,
            None,
        ),
        None,
    );
    let official = SclModel::init(official(80), 0, Device::Cpu);
    let err = seed_mask
        .apply(&official.params, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vision.net.0.weight") && err.contains("not a tensor of the model"),
        "{err}"
    );

    let at_80 = Mask::new(
        "at80",
        init_logits(&official, MaskFilter::All, 1.0, None),
        None,
    );
    let at_160 = SclModel::init(official_at(160), 0, Device::Cpu);
    let err = at_80.apply(&at_160.params, false).unwrap_err().to_string();
    assert!(
        err.contains("visual.spatial.weight") && err.contains("in the model"),
        "{err}"
    );

    let err =
        avr_modularity::masking::shared_by_all(&[seed_mask.binary(), at_80.binary()]).unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");
}

fn official_at(size: i64) -> SclVariant {
    official(size)
}

/// Safetensors keep no tensor order, but per-tensor labels (V1, V2, …) follow it: a saved mask
/// reloads in the model's order, from its sidecar. A sidecar that exists but is broken is an
/// error naming it (it used to be ignored).
#[test]
fn a_saved_mask_reloads_in_model_order_and_a_broken_sidecar_is_an_error() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt")).unwrap();
    let squares = AvrDataset::open(fixtures.join("seed/datasets/squares")).unwrap();
    let task = MaskTask {
        name: "squares".into(),
        shape: Some(Shape::Squares),
        fit: &squares,
        held_out: &squares,
        control: None,
    };
    let cfg = MaskTrainConfig::default()
        .with_steps(1)
        .with_batch_size(4)
        .with_samples(2)
        .with_eval_problems(4);
    let run = train_mask(&ckpt, &task, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = run.save(dir.path()).unwrap();
    let back = Mask::load(&path).unwrap();
    assert_eq!(back.logits.names(), run.mask.logits.names());
    assert_eq!(back.logits.names()[0], "vision.net.0.weight");
    std::fs::write(path.with_extension("json"), "{ not json").unwrap();
    let err = Mask::load(&path).unwrap_err().to_string();
    assert!(err.contains("squares.json"), "{err}");
    // Without a sidecar the order is numeric-aware by name: vision.net.2 before vision.net.10.
    std::fs::remove_file(path.with_extension("json")).unwrap();
    let bare = Mask::load(&path).unwrap();
    let names = bare.logits.names();
    let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
    assert!(pos("vision.net.2.weight") < pos("vision.net.10.weight"));
}

/// The α sweep as a study's record: a figure of kept % and validation accuracy against α, and
/// the choice on file; and the convergence rule stops a mask whose readings have settled.
#[test]
fn alpha_sweep_draws_its_curve_and_writes_its_record() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt")).unwrap();
    let squares = AvrDataset::open(fixtures.join("seed/datasets/squares")).unwrap();
    let task = MaskTask {
        name: "squares".into(),
        shape: None,
        fit: &squares,
        held_out: &squares,
        control: None,
    };
    let cfg = MaskTrainConfig::smoke()
        .with_steps(2)
        .with_batch_size(4)
        .with_samples(2)
        .with_eval_every(1)
        .with_eval_problems(4);
    let sweep = alpha_sweep(&ckpt, &task, &cfg, &[1e-6, 1e-3]).unwrap();
    let svg = sweep.curve().unwrap().svg;
    assert!(
        svg.contains("α curve") && svg.contains("kept weights"),
        "figure"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alpha.json");
    sweep.save_record(&path).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        record["chosen_alpha"].as_f64().unwrap(),
        sweep.chosen_alpha()
    );
    assert_eq!(record["runs"].as_array().unwrap().len(), 2);
    // A huge tolerance settles at once: the run stops after `window` evaluations.
    let rule = avr_modularity::masking::engine::Convergence {
        every: 1,
        window: 2,
        tolerance: 1.0,
    };
    let run = train_mask(
        &ckpt,
        &task,
        &cfg.clone().with_steps(6).with_convergence(Some(rule)),
    )
    .unwrap();
    assert_eq!((run.metrics.len(), run.converged_at), (2, Some(2)));
    let capped = train_mask(&ckpt, &task, &cfg.with_steps(3).with_convergence(None)).unwrap();
    assert_eq!((capped.metrics.len(), capped.converged_at), (3, None));
}

/// A K-batched mask step through the relation experts' kernel (`model::fused_experts`) gives
/// the mask logits the gradient of libtorch's path. The masked weights come out of one shared
/// product, as `FlatLogits::sample` makes them, so the kernel's deferred backward reaches graph
/// nodes that the loss's backward went through first (a backward that freed them failed with
/// "Trying to backward through the graph a second time" in `avr bench mask`). Both f32 paths
/// are measured against the same step in f64, tensor by tensor (an untrained model's logit
/// gradients are small and partly rounding noise, so the two f32 paths are not compared with
/// each other); a misrouted, missing or doubled gradient is off by ~100 %. Everything is drawn
/// without libtorch's global generator, which concurrent tests share.
#[test]
fn a_k_batched_mask_step_through_the_fused_experts_gives_libtorchs_logit_gradients() {
    let model = SclModel::init(official(80), 0, Device::Cpu);
    let specs = model.param_specs();
    let trained: Vec<&ParamSpec> = specs.iter().filter(|s| s.trainable).collect();
    let sizes: Vec<i64> = trained.iter().map(|s| s.shape.iter().product()).collect();
    let total: i64 = sizes.iter().sum();
    let k = 4;
    let wave = |n: i64, step: f64| (Tensor::arange(n, (Kind::Double, Device::Cpu)) * step).sin();
    let x = (wave(8 * 16 * 80 * 80, 0.013) + 1.0).reshape([8, 16, 80, 80]) * 0.5;
    let y = Tensor::from_slice(&[0i64, 3, 5, 7, 1, 2, 4, 6]);
    // One step's logit gradient `(K, T)` in `kind`, through `optimise`'s deferral or not.
    let gradient = |kind: Kind, deferred: bool| {
        let base = model.params.iter().fold(Params::new(), |mut p, (n, t)| {
            p.insert(n, t.detach().to_kind(kind));
            p
        });
        let flat = |s: &&ParamSpec| base.get(&s.name).unwrap().reshape([-1]);
        let weights = Tensor::cat(&trained.iter().map(flat).collect::<Vec<_>>(), 0);
        let logits = (wave(k * total, 0.37) * 3.0)
            .reshape([k, total])
            .to_kind(kind)
            .set_requires_grad(true);
        let parts = (logits.sigmoid() * weights.unsqueeze(0)).split_with_sizes(&sizes, 1);
        let mut masked = base.iter().fold(Params::new(), |mut p, (n, t)| {
            p.insert(n, t.shallow_clone());
            p
        });
        for (s, t) in trained.iter().zip(parts) {
            masked.insert(
                &s.name,
                t.reshape([vec![k], s.shape.clone()].concat().as_slice()),
            );
        }
        let loss = || {
            let out = model
                .logits_with(&masked, &x.to_kind(kind), BnMode::Eval)
                .unwrap();
            out.cross_entropy_for_logits(&y)
        };
        match deferred {
            false => loss().backward(),
            true => {
                let (loss, owed) = avr_modularity::optim::deferring(loss);
                assert!(
                    !owed.is_empty(),
                    "the experts' kernel ran (K-batched weights)"
                );
                owed.backward_from(&loss).unwrap();
            }
        }
        logits.grad().to_kind(Kind::Double)
    };
    let (fused, plain) = (gradient(Kind::Float, true), gradient(Kind::Float, false));
    let truth = gradient(Kind::Double, false);

    let relative = |a: &Tensor, b: &Tensor| {
        (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-300)
    };
    let largest = truth.abs().max().double_value(&[]);
    let mut at = 0;
    for (s, &n) in trained.iter().zip(&sizes) {
        let slice = |g: &Tensor| g.narrow(1, at, n);
        let (ours, theirs, exact) = (slice(&fused), slice(&plain), slice(&truth));
        at += n;
        // What feeds a LayerNorm over one value has no gradient in exact arithmetic.
        if exact.abs().max().double_value(&[]) <= 1e-9 * largest {
            let noise = ours.abs().max().double_value(&[]);
            assert!(
                noise <= 1e-3 * largest,
                "{}: {noise:e} where f64 reads ~0",
                s.name
            );
            continue;
        }
        let (e_ours, e_theirs) = (relative(&ours, &exact), relative(&theirs, &exact));
        assert!(
            e_ours <= 4.0 * e_theirs + 1e-3,
            "{}: off the f64 gradient by {e_ours:e}, libtorch's f32 path by {e_theirs:e}",
            s.name
        );
    }
}
