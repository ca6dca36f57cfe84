//! Known answers for graph modularity (`graph-modularity.md` §5.5).

use avr_modularity::analysis::graph::{
    graph_modularity, modularity, ncut, planted_mlp, ModularityConfig, WeightGraph,
};
use tch::Tensor;

/// 3 layers × 16 units, unit i in group i mod 4; weight a = 1 within a group, b = 0.1 across.
fn planted() -> Vec<Tensor> {
    planted_mlp(2, 16, 4, 1.0, 0.1)
}

#[test]
fn planted_partition_gives_the_analytic_q_and_ncut_and_recovers_groups() {
    let graph = WeightGraph::from_mlp(&planted()).unwrap();
    let report = graph_modularity(
        &graph,
        &ModularityConfig {
            k: 4,
            ..Default::default()
        },
    )
    .unwrap();
    assert!((report.q - 0.519230769).abs() < 1e-8, "Q = {}", report.q);
    assert!(
        (report.ncut - 0.923076923).abs() < 1e-7,
        "n-cut = {}",
        report.ncut
    );
    // Same cluster ⇔ same planted group.
    let group = |node: usize| (node % 16) % 4;
    for i in 0..48 {
        for j in 0..48 {
            assert_eq!(
                report.clusters[i] == report.clusters[j],
                group(i) == group(j),
                "nodes {i}, {j}"
            );
        }
    }
}

#[test]
fn two_disconnected_copies_give_q_one_half_at_k_2() {
    let w = Tensor::rand([6, 6], (tch::Kind::Float, tch::Device::Cpu)) + 0.5;
    let zero = Tensor::zeros([6, 6], (tch::Kind::Float, tch::Device::Cpu));
    let block = Tensor::cat(
        &[Tensor::cat(&[&w, &zero], 1), Tensor::cat(&[&zero, &w], 1)],
        0,
    );
    let graph = WeightGraph::from_mlp(&[block.shallow_clone(), block]).unwrap();
    let report = graph_modularity(
        &graph,
        &ModularityConfig {
            k: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert!((report.q - 0.5).abs() < 1e-9, "Q = {}", report.q);
    assert!(report.ncut.abs() < 1e-9);
}

#[test]
fn singletons_give_minus_sum_of_squared_degree_shares() {
    let graph = WeightGraph::from_mlp(&planted()).unwrap();
    let labels: Vec<usize> = (0..48).collect();
    let degrees = graph
        .adjacency
        .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Double);
    let two_m = degrees.sum(tch::Kind::Double).double_value(&[]);
    let want: f64 = (0..48)
        .map(|i| -(degrees.double_value(&[i]) / two_m).powi(2))
        .sum();
    assert!((modularity(&graph.adjacency, &labels, 1.0) - want).abs() < 1e-12);
    assert!((ncut(&graph.adjacency, &labels) - 48.0).abs() < 1e-6);
}

#[test]
fn planted_structure_beats_the_shuffle_null_model() {
    let graph = WeightGraph::from_mlp(&planted()).unwrap();
    let report = graph_modularity(
        &graph,
        &ModularityConfig {
            k: 4,
            shuffles: 20,
            seed: 3,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.p, Some(1.0 / 21.0));
    assert!(report.z.unwrap() > 3.0, "z = {:?}", report.z);
    assert!(report.q_null_mean.unwrap() < report.q);
}

#[test]
fn same_seed_same_clusters() {
    let noisy: Vec<Tensor> = planted()
        .iter()
        .map(|w| w * (Tensor::rand([16, 16], (tch::Kind::Float, tch::Device::Cpu)) + 0.5))
        .collect();
    let graph = WeightGraph::from_mlp(&noisy).unwrap();
    let cfg = ModularityConfig {
        k: 4,
        seed: 9,
        ..Default::default()
    };
    assert_eq!(
        graph_modularity(&graph, &cfg).unwrap().clusters,
        graph_modularity(&graph, &cfg).unwrap().clusters
    );
}

#[test]
fn layers_that_do_not_chain_are_refused() {
    let a = Tensor::ones([4, 3], (tch::Kind::Float, tch::Device::Cpu));
    let b = Tensor::ones([2, 5], (tch::Kind::Float, tch::Device::Cpu));
    let err = WeightGraph::from_mlp(&[a, b]).unwrap_err().to_string();
    assert!(err.contains("does not chain"), "{err}");
}
