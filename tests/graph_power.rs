//! The power of the graph-modularity measure: the shuffle null for Q and the n-cut, the sweep
//! over k, and the graph of the weights one mask keeps (`src/analysis/graph.rs`).

use std::process::Command;

use avr_modularity::analysis::graph::{
    graph_modularity, modularity_sweep, planted_mlp, ModularityConfig, WeightGraph,
};
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::fixtures::{require_fixtures, study_checkpoint_path, study_masks};
use avr_modularity::masking::Mask;
use avr_modularity::model::{Params, SclModel, SclVariant};
use avr_modularity::rng::Rng;
use tch::{Kind, Tensor};

/// 3 layers × 16 units, unit i in group i mod 4; weight 1 within a group, 0.1 across.
fn planted_graph() -> WeightGraph {
    WeightGraph::from_mlp(&planted_mlp(2, 16, 4, 1.0, 0.1)).unwrap()
}

/// A planted MLP with every weight scaled by a seeded factor in `[1 − noise/2, 1 + noise/2]`
/// (so the shuffled networks differ from one another and the null has a spread).
fn noisy_planted(
    layers: usize,
    width: usize,
    groups: usize,
    across: f32,
    noise: f64,
) -> WeightGraph {
    let mut rng = Rng::new(7);
    let weights: Vec<Tensor> = planted_mlp(layers, width, groups, 1.0, across)
        .iter()
        .map(|w| {
            let factors: Vec<f32> = (0..width * width)
                .map(|_| (1.0 + noise * (rng.uniform() - 0.5)) as f32)
                .collect();
            w * Tensor::from_slice(&factors).reshape([width as i64, width as i64])
        })
        .collect();
    WeightGraph::from_mlp(&weights).unwrap()
}

#[test]
fn default_config_runs_100_shuffles() {
    assert_eq!(ModularityConfig::default().shuffles, 100);
}

/// (a) Planted modules: Q beats every shuffle (p = 1/(N+1)) and the n-cut is below every shuffle.
#[test]
fn planted_modules_beat_the_null_in_q_and_in_ncut() {
    let n = 30;
    let report = graph_modularity(
        &planted_graph(),
        &ModularityConfig {
            k: 4,
            shuffles: n,
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.shuffles, n);
    let smallest_p = 1.0 / (n as f64 + 1.0);
    assert_eq!(report.p, Some(smallest_p));
    assert!(report.z.unwrap() > 3.0, "z = {:?}", report.z);
    assert!(report.q_null_mean.unwrap() < report.q);
    assert_eq!(report.ncut_p, Some(smallest_p));
    assert!(
        report.ncut_z.unwrap() < -3.0,
        "ncut z = {:?}",
        report.ncut_z
    );
    assert!(report.ncut_null_mean.unwrap() > report.ncut);
    assert!(report.ncut_null_std.unwrap() > 0.0);
}

/// With k = 1 every partition scores Q = 0 and n-cut = 0 exactly (integer weights, exact sums):
/// all shuffles tie with the network, so both one-sided p's are 1 (ties count against
/// significance) and both z's are 0 (std 0, observed = mean).
#[test]
fn ties_with_the_null_count_against_significance() {
    let graph = WeightGraph::from_mlp(&planted_mlp(2, 8, 2, 2.0, 1.0)).unwrap();
    let report = graph_modularity(
        &graph,
        &ModularityConfig {
            k: 1,
            shuffles: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((report.q, report.ncut), (0.0, 0.0));
    assert_eq!((report.p, report.ncut_p), (Some(1.0), Some(1.0)));
    assert_eq!(
        (report.q_null_std, report.ncut_null_std),
        (Some(0.0), Some(0.0))
    );
    assert_eq!((report.z, report.ncut_z), (Some(0.0), Some(0.0)));
}

/// (b) Four planted groups: over k ∈ {2, 3, 4, 6, 8} the largest z, the largest Q and the
/// largest excess over the null mean are all at k = 4. (The z argmax is the noisiest of the
/// three — k = g ± 1 can come close — hence 96 nodes and 100 shuffles here.)
#[test]
fn k_sweep_peaks_at_the_planted_number_of_groups() {
    let graph = noisy_planted(2, 32, 4, 0.05, 0.5);
    let ks = [2, 3, 4, 6, 8];
    let sweep = modularity_sweep(
        &graph,
        &ks,
        &ModularityConfig {
            shuffles: 100,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(sweep.points.iter().map(|p| p.k).collect::<Vec<_>>(), ks);
    let table: Vec<String> = sweep
        .points
        .iter()
        .map(|p| format!("k {}: Q {:.3} z {:.1}", p.k, p.q, p.z.unwrap()))
        .collect();
    assert_eq!(sweep.best_k(), Some(4), "{table:?}");
    let argmax = |f: &dyn Fn(&avr_modularity::analysis::ModularityReport) -> f64| {
        sweep
            .points
            .iter()
            .max_by(|a, b| f(a).total_cmp(&f(b)))
            .unwrap()
            .k
    };
    assert_eq!(argmax(&|p| p.q), 4, "{table:?}");
    assert_eq!(argmax(&|p| p.q - p.q_null_mean.unwrap()), 4, "{table:?}");
    for p in &sweep.points {
        assert!(p.z.unwrap() > 3.0 && p.ncut_z.unwrap() < -3.0, "{table:?}");
    }
}

/// A sweep point is exactly the single-k run with the same seed (same shuffled graphs, same
/// k-means stream), and without shuffles there is no z to pick a best k by.
#[test]
fn sweep_points_equal_single_k_runs() {
    let graph = noisy_planted(2, 16, 4, 0.1, 0.5);
    let cfg = ModularityConfig {
        shuffles: 8,
        seed: 5,
        ..Default::default()
    };
    let sweep = modularity_sweep(&graph, &[3, 4], &cfg).unwrap();
    for point in &sweep.points {
        let single = graph_modularity(&graph, &ModularityConfig { k: point.k, ..cfg }).unwrap();
        assert_eq!(point.clusters, single.clusters, "k = {}", point.k);
        assert_eq!((point.q, point.ncut), (single.q, single.ncut));
        assert_eq!(point.q_null_mean, single.q_null_mean);
        assert_eq!(point.ncut_null_std, single.ncut_null_std);
        assert_eq!((point.p, point.ncut_p), (single.p, single.ncut_p));
    }
    let json = serde_json::to_string(&sweep).unwrap();
    let back: avr_modularity::analysis::graph::ModularitySweep =
        serde_json::from_str(&json).unwrap();
    assert_eq!(back.points.len(), 2);
    assert_eq!(back.points[1].ncut_z, sweep.points[1].ncut_z);
    let bare = modularity_sweep(&graph, &[3, 4], &ModularityConfig { shuffles: 0, ..cfg }).unwrap();
    assert_eq!(bare.best_k(), None);
    assert!(bare
        .points
        .iter()
        .all(|p| p.z.is_none() && p.ncut_p.is_none()));
}

/// (c) Bad k lists are errors naming the problem, not panics.
#[test]
fn sweep_refuses_an_empty_list_and_out_of_range_k() {
    let graph = planted_graph();
    let cfg = ModularityConfig {
        shuffles: 0,
        ..Default::default()
    };
    let err = modularity_sweep(&graph, &[], &cfg).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    let err = modularity_sweep(&graph, &[2, 0, 4], &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("k = 0") && err.contains("48 nodes"), "{err}");
    let err = modularity_sweep(&graph, &[4, 49], &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("k = 49"), "{err}");
    assert!(modularity_sweep(&graph, &[1, 48], &cfg).is_ok());
}

/// The layer shuffle keeps the score of every layer-aligned partition exactly. On the study
/// checkpoint at k = 2 every shuffle's partition is layer-aligned, so the null's sd is rounding
/// noise (~1e-16) and the z-score must be −∞ (the network is just below all of them), not −1e11.
#[test]
fn a_null_spread_within_rounding_gives_an_infinite_z() {
    require_fixtures().unwrap();
    let model = Checkpoint::load(study_checkpoint_path().unwrap())
        .unwrap()
        .model;
    let report = graph_modularity(
        &WeightGraph::from_scl(&model).unwrap(),
        &ModularityConfig {
            k: 2,
            shuffles: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.q_null_std.unwrap() < 1e-12, "{report:?}");
    assert!(report.q < report.q_null_mean.unwrap());
    assert_eq!(report.z, Some(f64::NEG_INFINITY));
    assert_eq!(report.p, Some(1.0));
}

/// Block `l` (`(n_l, n_{l+1})`) of a graph's adjacency.
fn block(graph: &WeightGraph, l: usize) -> Tensor {
    let start: usize = graph.layer_sizes[..l].iter().sum();
    let (rows, cols) = (graph.layer_sizes[l], graph.layer_sizes[l + 1]);
    graph.adjacency.narrow(0, start as i64, rows as i64).narrow(
        1,
        (start + rows) as i64,
        cols as i64,
    )
}

/// (d) The study's SCL_90 masks on the study checkpoint: every `(C_in, C_out)` edge whose whole
/// kernel slice the mask removes is absent from the graph, no edge grows, some edges go, and
/// Q (k = 8) differs from the unmasked network's.
#[test]
fn masked_study_graph_drops_removed_edges_and_changes_q() {
    require_fixtures().unwrap();
    let model = Checkpoint::load(study_checkpoint_path().unwrap())
        .unwrap()
        .model;
    let cfg = ModularityConfig {
        shuffles: 0,
        ..Default::default()
    };
    let full = WeightGraph::from_scl(&model).unwrap();
    let q_full = graph_modularity(&full, &cfg).unwrap().q;
    let convs = full.layer_sizes.len() - 1;
    for mask in study_masks("SCL_90").unwrap() {
        let masked = WeightGraph::from_scl_masked(&model, &mask).unwrap();
        assert_eq!(masked.layer_sizes, full.layer_sizes);
        let binary = mask.binary();
        let mut removed = 0;
        for l in 0..convs {
            let name = format!("vision.net.{}.weight", 2 * l);
            let kept = binary
                .get(&name)
                .unwrap_or_else(|_| panic!("{}: {name} is not masked", mask.name))
                .sum_dim_intlist([2i64, 3].as_slice(), false, Kind::Double)
                .tr(); // (C_in, C_out), as the block
            let gone = kept.eq(0.0);
            removed += gone.sum(Kind::Int64).int64_value(&[]);
            let (m, f) = (block(&masked, l), block(&full, l));
            let leaked = m
                .masked_select(&gone)
                .abs()
                .sum(Kind::Double)
                .double_value(&[]);
            assert_eq!(leaked, 0.0, "{}: layer {l} keeps a removed edge", mask.name);
            assert!(
                (&m - &f).max().double_value(&[]) <= 1e-12,
                "{}: layer {l} has an edge heavier than unmasked",
                mask.name
            );
        }
        assert!(removed > 0, "{}: the mask removes no whole edge", mask.name);
        assert!(
            masked.adjacency.sum(Kind::Double).double_value(&[])
                < full.adjacency.sum(Kind::Double).double_value(&[])
        );
        let q = graph_modularity(&masked, &cfg).unwrap().q;
        assert!(
            (q - q_full).abs() > 1e-6,
            "{}: Q {q} = unmasked {q_full}",
            mask.name
        );
    }
}

/// A mask of another model is refused by name, not silently ignored.
#[test]
fn masked_graph_refuses_a_mask_of_another_model() {
    let model = SclModel::init(SclVariant::seed(80), 0, tch::Device::Cpu);
    let mut logits = Params::new();
    logits.insert(
        "vision.net.0.weight",
        Tensor::ones([3, 3], (Kind::Float, tch::Device::Cpu)),
    );
    let err = WeightGraph::from_scl_masked(&model, &Mask::new("wrong", logits, None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("vision.net.0.weight"), "{err}");
}

fn avr(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avr"))
        .args(args)
        .output()
        .expect("run avr");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--k-sweep` prints one JSON point per k (or one table line per k), `--mask` restricts the
/// checkpoint's graph and needs `--ckpt`.
#[test]
fn cli_k_sweep_and_mask() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.safetensors");
    let w = planted_mlp(2, 16, 4, 1.0, 0.1);
    Tensor::write_safetensors(
        &[("layers.0.weight", &w[0]), ("layers.1.weight", &w[1])],
        &path,
    )
    .unwrap();
    let weights = path.to_str().unwrap();
    let sweep = [
        "modularity",
        "--weights",
        weights,
        "--k-sweep",
        "2,4",
        "--shuffles",
        "5",
    ];
    let (ok, stdout, stderr) = avr(&[&sweep[..], &["--json"]].concat());
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(points[1]["k"], 4);
    assert!((points[1]["q"].as_f64().unwrap() - 0.519230769).abs() < 1e-8);
    for key in [
        "z",
        "p",
        "ncut_null_mean",
        "ncut_null_std",
        "ncut_z",
        "ncut_p",
    ] {
        assert!(points[0][key].is_number(), "{key} missing in {v}");
    }
    let (ok, stdout, stderr) = avr(&sweep);
    assert!(ok, "{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|k| k == "2" || k == "4")
        })
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(stdout.contains("largest z at k = "), "{stdout}");

    let (ok, _, stderr) = avr(&["modularity", "--weights", weights, "--mask", weights]);
    assert!(!ok && stderr.contains("--mask"), "{stderr}");

    require_fixtures().unwrap();
    let ckpt = study_checkpoint_path().unwrap();
    let mask_dir = require_fixtures()
        .unwrap()
        .join("seed/binary_masks/SCL_90/squares");
    let mask = std::fs::read_dir(&mask_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let q = |extra: &[&str]| {
        let base = [
            "modularity",
            "--ckpt",
            ckpt.to_str().unwrap(),
            "--shuffles",
            "0",
            "--json",
        ];
        let (ok, stdout, stderr) = avr(&[&base[..], extra].concat());
        assert!(ok, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        v["q"].as_f64().unwrap()
    };
    let (plain, masked) = (q(&[]), q(&["--mask", mask.to_str().unwrap()]));
    assert!(
        (plain - masked).abs() > 1e-6,
        "Q {plain} vs masked {masked}"
    );
}
