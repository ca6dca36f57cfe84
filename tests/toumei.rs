//! The toumei graph-modularity experiments (`../shared/specs/graph-modularity.md` §4) on
//! scikit-learn's real 8×8 digits: the reader against the known file, the patched model's known
//! block structure (closed-form Q, exact spectral recovery), the weight locks, the goal
//! schedules, a smoke run of every experiment, and the CLI.

use avr_modularity::analysis::graph::{modularity, spectral_clustering, WeightGraph};
use avr_modularity::analysis::toumei::*;
use avr_modularity::data::digits::Digits;
use avr_modularity::rng::Rng;
use avr_modularity::tch::{Kind, Tensor};

fn digits() -> Digits {
    Digits::sklearn().expect("scikit-learn's digits (make setup installs them)")
}

fn total_abs(t: &Tensor) -> f64 {
    t.abs().sum(Kind::Double).double_value(&[])
}

#[test]
fn sklearn_digits_are_read_exactly() {
    let d = digits();
    assert_eq!((d.len(), d.side), (1797, 8));
    let counts: Vec<usize> = (0..10u8)
        .map(|c| d.labels.iter().filter(|&&l| l == c).count())
        .collect();
    // The class counts of scikit-learn's digits (its DESCR lists ~180 per class).
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    // The first row of digits.csv.gz: 0,0,5,13,9,1,0,0,… label 0.
    let first: Vec<f32> = [0., 0., 5., 13., 9., 1., 0., 0.]
        .iter()
        .map(|v| v / 16.0)
        .collect();
    assert_eq!(&d.images[..8], first.as_slice());
    assert_eq!(d.labels[0], 0);
    assert!(d.images.iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn a_bad_digits_file_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("digits.csv");
    let good = vec!["0"; 64].join(",") + ",3";
    std::fs::write(
        &path,
        format!("{good}\n{}\n", vec!["0"; 64].join(",") + ",11"),
    )
    .unwrap();
    let e = Digits::load_sklearn(&path).unwrap_err().to_string();
    assert!(
        e.contains("digits.csv") && e.contains("line 2") && e.contains("label 11"),
        "{e}"
    );
    std::fs::write(&path, format!("{good}\n1,2,x\n")).unwrap();
    let e = Digits::load_sklearn(&path).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("not a number"), "{e}");
}

/// F trained briefly and G, patched: the model at initialisation (cross blocks 0).
fn patched_at_init(seed: u64) -> (ToumeiConfig, avr_modularity::model::Params) {
    let cfg = ToumeiConfig::smoke();
    let task = DigitTask::new(&digits(), &cfg, seed).unwrap();
    let (f, f_accuracy) = train_digit_classifier(&task, &cfg, seed).unwrap();
    assert!(f_accuracy > 0.8, "F learned the digits: {f_accuracy}");
    let (g, _) = train_adder(&cfg, seed).unwrap();
    (cfg, patch(&f, &g, seed).unwrap())
}

#[test]
fn at_initialisation_spectral_clustering_recovers_the_two_f_blocks_and_q_has_its_closed_form() {
    let (_, p) = patched_at_init(0);
    let c_weights =
        ["patched_m.fc0.weight", "patched_m.fc1.weight"].map(|n| p.get(n).unwrap().shallow_clone());
    let c = WeightGraph::from_mlp(&c_weights).unwrap();
    assert_eq!(c.layer_sizes, [128, 64, 20]);
    // C is two disjoint copies of F: k = 2 finds exactly the copies.
    let labels = spectral_clustering(&c.adjacency, 2, 10, &mut Rng::new(0)).unwrap();
    let block1 = block_units(&c.layer_sizes, 1);
    let same = labels
        .iter()
        .zip(&block1)
        .all(|(&l, &b)| (l == labels[0]) == b);
    assert!(same, "the clusters are exactly F₁'s and F₂'s units");
    // Closed form for two disjoint components of equal weight m/2: Q = 2·(1/2 − (1/2)²) = 1/2.
    assert!((modularity(&c.adjacency, &labels, 1.0) - 0.5).abs() < 1e-12);

    // The whole H: F₁, F₂ and the tail (linear_layer's outputs and G). With a = Σ|W_F| over F's
    // layers, t₁ = Σ|linear_layer| split by the F copy its inputs come from, t₂ = Σ|W_G|:
    // Q = (2a + t₂)/m − [(2a + t₁⁽¹⁾)² + (2a + t₁⁽²⁾)² + (t₁ + 2t₂)²] / (2m)², m = 2a + t₁ + t₂.
    let h = weight_graph(&Model::Patched(WeightLock::Model), &p).unwrap();
    assert_eq!(h.layer_sizes, [128, 64, 20, 20, 4, 1]);
    let w = |n: &str| p.get(n).unwrap().shallow_clone();
    let a = (total_abs(&w("patched_m.fc0.weight")) + total_abs(&w("patched_m.fc1.weight"))) / 2.0;
    let lin = w("linear_layer.weight"); // (20 out, 20 in): inputs 0..10 from F₁
    let (t1a, t1b) = (
        total_abs(&lin.narrow(1, 0, 10)),
        total_abs(&lin.narrow(1, 10, 10)),
    );
    let t2 = total_abs(&w("mlp.fc0.weight")) + total_abs(&w("mlp.fc1.weight"));
    let m = 2.0 * a + t1a + t1b + t2;
    let closed = (2.0 * a + t2) / m
        - ((2.0 * a + t1a).powi(2) + (2.0 * a + t1b).powi(2) + (t1a + t1b + 2.0 * t2).powi(2))
            / (2.0 * m).powi(2);
    let groups: Vec<usize> = h
        .layer_sizes
        .iter()
        .enumerate()
        .flat_map(|(l, &n)| (0..n).map(move |i| if l >= 3 { 2 } else { usize::from(i >= n / 2) }))
        .collect();
    let q = modularity(&h.adjacency, &groups, 1.0);
    assert!((q - closed).abs() < 1e-9, "Q {q} vs closed form {closed}");
    // toumei's k = 8 on H never mixes the two copies' input and hidden units (F's output units
    // may join the tail they feed).
    let labels = spectral_clustering(&h.adjacency, 8, 25, &mut Rng::new(0)).unwrap();
    for cluster in 0..8 {
        let copies: std::collections::BTreeSet<usize> = (0..192)
            .filter(|&i| labels[i] == cluster)
            .map(|i| groups[i])
            .collect();
        assert!(
            copies.len() <= 1,
            "cluster {cluster} mixes F₁ and F₂: {labels:?}"
        );
    }
}

#[test]
fn weight_locks_freeze_what_they_say_and_cross_blocks_start_at_zero() {
    let cfg = ToumeiConfig::smoke().with_patched_epochs(5);
    let d = digits();
    let frozen = run_patched(&d, &cfg, WeightLock::Model, 0).unwrap();
    let free = run_patched(&d, &cfg, WeightLock::Param, 0).unwrap();
    for i in 0..2 {
        let name = format!("patched_m.fc{i}.weight");
        let (a, b) = (
            frozen.params.get(&name).unwrap(),
            free.params.get(&name).unwrap(),
        );
        let (rows, cols) = (a.size()[0], a.size()[1]);
        let cross = |t: &Tensor| total_abs(&t.narrow(0, 0, rows / 2).narrow(1, cols / 2, cols / 2));
        let diagonal = |t: &Tensor| t.narrow(0, 0, rows / 2).narrow(1, 0, cols / 2).copy();
        assert_eq!(cross(a), 0.0, "all frozen: cross blocks stay 0");
        assert!(cross(b) > 0.0, "cross free: cross blocks learned");
        assert!(
            diagonal(a).equal(&diagonal(b)),
            "cross free: F's blocks unchanged"
        );
    }
    // G is frozen in both; linear_layer learns in both.
    assert!(frozen
        .params
        .get("mlp.fc0.weight")
        .unwrap()
        .equal(free.params.get("mlp.fc0.weight").unwrap()));
    assert_eq!(
        frozen.readings.first().unwrap().q,
        free.readings.first().unwrap().q
    );
}

#[test]
fn goal_schedules_follow_toumei_and_kashtan_alon() {
    let cfg = ToumeiConfig::smoke(); // 60 epochs, warm-up 20, a change every 10
    let mut rng = Rng::new(0);
    let fixed = goal_schedule(Goal::Fixed, &cfg, &mut rng);
    assert!(fixed
        .iter()
        .all(|&(t, fresh)| t == Target::Weighted(1.0, 1.0) && !fresh));
    let switching = goal_schedule(Goal::Switching, &cfg, &mut rng);
    let changes: Vec<usize> = (0..60).filter(|&i| switching[i].1).map(|i| i + 1).collect();
    assert_eq!(changes, [21, 31, 41, 51]);
    assert_eq!(switching[19].0, Target::Weighted(1.0, 1.0));
    assert_eq!(switching[20].0, Target::Difference);
    assert_eq!(switching[30].0, Target::Weighted(1.0, 1.0));
    let random = goal_schedule(Goal::Random, &cfg, &mut rng);
    let weights: Vec<(f64, f64)> = random
        .iter()
        .skip(20)
        .map(|(t, _)| match t {
            Target::Weighted(a, b) => (*a, *b),
            Target::Difference => panic!("random goals are weighted sums"),
        })
        .collect();
    assert!(weights
        .iter()
        .all(|&(a, b)| (0.0..10.0).contains(&a) && (0.0..10.0).contains(&b)));
    assert_eq!(weights[0], weights[9], "a and b hold for 10 epochs");
    assert_ne!(weights[9], weights[10], "and are redrawn after");
}

#[test]
fn every_experiment_runs_at_smoke_size_and_the_patched_model_is_the_modular_one() {
    let report = run_toumei(&digits(), &ToumeiConfig::smoke(), Experiment::All, &[0, 1]).unwrap();
    // Per seed: two patched, direct, fixed-goal control, switching, random.
    assert_eq!(report.runs.len(), 12);
    let epochs: Vec<usize> = report.runs[0].readings.iter().map(|r| r.epoch).collect();
    assert_eq!(epochs, [0, 10, 20, 30]);
    assert_eq!(report.comparisons.len(), 4);
    assert_eq!(
        report.k_sweep.iter().map(|p| p.k).collect::<Vec<_>>(),
        K_SWEEP
    );
    let at8 = report.k_sweep.iter().find(|p| p.k == 8).unwrap();
    assert!(at8
        .comparisons
        .iter()
        .all(|c| c.intervals.0.n == 2 && c.intervals.1.n == 2));
    assert_eq!(report.k_sweep_table().unwrap().df.height(), K_SWEEP.len());
    assert_eq!(report.recoveries.len(), 4);
    for seed in [0, 1] {
        let q = |m: Model| {
            report
                .runs
                .iter()
                .find(|r| r.model == m && r.seed == seed)
                .unwrap()
                .last()
                .q
        };
        let (patched, direct) = (
            q(Model::Patched(WeightLock::Model)),
            q(Model::Direct(Goal::Fixed)),
        );
        assert!(
            patched > 0.2 && patched > direct + 0.1,
            "seed {seed}: patched {patched} direct {direct}"
        );
    }
    for rec in report
        .recoveries
        .iter()
        .filter(|r| r.model == Model::Patched(WeightLock::Model))
    {
        assert!(
            rec.clusters_exact,
            "frozen cross blocks: the clusters are the blocks"
        );
        for b in &rec.blocks {
            assert!(
                b.in_block.observed > 99.0 && b.in_block.null_mean < 30.0,
                "{b:?}"
            );
            assert!(b.in_block.p < 0.01);
        }
        assert_eq!(rec.masks_iou, 0.0, "the two digits' masks share no weight");
    }
    assert!(report.summary_table().unwrap().df.height() >= 5);
    assert_eq!(report.recovery_table().unwrap().df.height(), 8);
    // Two seeds cannot reach p ≤ 0.05: every sentence says so rather than claim a finding.
    assert!(report
        .findings()
        .iter()
        .all(|f| f.contains("more seeds are needed")));
}

#[test]
fn the_cli_prints_json_and_names_a_bad_digits_file() {
    let avr = env!("CARGO_BIN_EXE_avr");
    let out = std::process::Command::new(avr)
        .args([
            "toumei", "patched", "--size", "smoke", "--seeds", "2", "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 6);
    assert_eq!(report["comparisons"].as_array().unwrap().len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.csv.gz");
    std::fs::write(&bad, [0x1f, 0x8b, 0, 1, 2]).unwrap();
    let out = std::process::Command::new(avr)
        .args([
            "toumei", "direct", "--size", "smoke", "--seeds", "1", "--digits",
        ])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.csv.gz") && err.contains("gzip"),
        "{err}"
    );
}
