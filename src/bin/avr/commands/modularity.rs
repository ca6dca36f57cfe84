//! `avr modularity`: graph modularity of an SCL checkpoint's vision stack or of an MLP.

use std::path::{Path, PathBuf};

use avr_modularity::analysis::graph::{graph_modularity, ModularityConfig, WeightGraph};
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::{Error, Result};

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Source,
    #[arg(long, default_value_t = 8)]
    k: usize,
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    #[arg(long, default_value_t = 0)]
    shuffles: usize,
    #[arg(long, default_value_t = 25)]
    restarts: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

/// The network: exactly one of `--ckpt` and `--weights`.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Source {
    /// The vision conv stack of an SCL checkpoint (channel graph, BatchNorm folded).
    #[arg(long)]
    ckpt: Option<PathBuf>,
    /// A safetensors file of an MLP: `layers.<i>.weight` tensors `[out, in]`, in order.
    #[arg(long)]
    weights: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let graph = match (&args.source.ckpt, &args.source.weights) {
        (Some(ckpt), None) => WeightGraph::from_scl(&Checkpoint::load(ckpt)?.model)?,
        (None, Some(weights)) => mlp_graph_from_safetensors(weights)?,
        _ => {
            return Err(Error::Config(
                "give exactly one of --ckpt or --weights".into(),
            ))
        }
    };
    let cfg = ModularityConfig {
        k: args.k,
        gamma: args.gamma,
        restarts: args.restarts,
        shuffles: args.shuffles,
        seed: args.seed,
    };
    let report = graph_modularity(&graph, &cfg)?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "nodes {} (layers {:?}), k {}, γ {}: Q = {:.6}, n-cut = {:.6}",
        report.nodes, report.layer_sizes, args.k, args.gamma, report.q, report.ncut
    );
    if let (Some(m), Some(s), Some(z), Some(p)) =
        (report.q_null_mean, report.q_null_std, report.z, report.p)
    {
        println!(
            "null model ({} layer shuffles): Q = {m:.6} ± {s:.6}, z = {z:.2}, p = {p:.4}",
            args.shuffles
        );
    }
    Ok(())
}

/// The layer graph of the `layers.<i>.weight` tensors of a safetensors file, in index order.
fn mlp_graph_from_safetensors(path: &Path) -> Result<WeightGraph> {
    let tensors =
        tch::Tensor::read_safetensors(path).map_err(|e| Error::bad_file(path, e.to_string()))?;
    let mut layers: Vec<(usize, tch::Tensor)> = tensors
        .into_iter()
        .filter_map(|(name, t)| {
            let index = name
                .strip_prefix("layers.")?
                .strip_suffix(".weight")?
                .parse()
                .ok()?;
            Some((index, t))
        })
        .collect();
    if layers.is_empty() {
        return Err(Error::bad_file(path, "no `layers.<i>.weight` tensors"));
    }
    layers.sort_by_key(|(i, _)| *i);
    WeightGraph::from_mlp(&layers.into_iter().map(|(_, t)| t).collect::<Vec<_>>())
}
