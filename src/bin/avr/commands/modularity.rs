//! `avr modularity`: graph modularity of an SCL checkpoint's vision stack (optionally restricted
//! to one mask's weights) or of an MLP, at one `k` or swept over several.

use std::path::{Path, PathBuf};

use avr_modularity::analysis::graph::{
    graph_modularity, modularity_sweep, ModularityConfig, ModularityReport, WeightGraph,
};
use avr_modularity::checkpoint::Checkpoint;
use avr_modularity::masking::Mask;
use avr_modularity::{Error, Result};

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: Source,
    /// A binary mask (the study's pickle or our `.safetensors` logits) applied to the
    /// checkpoint's weights first: the graph of the weights the mask keeps (needs --ckpt).
    // `conflicts_with`, not `requires = "ckpt"`: clap lets any member of the required group
    // satisfy `requires` (clap-rs/clap#5910), so `--weights` would pass.
    #[arg(long, conflicts_with = "weights")]
    mask: Option<PathBuf>,
    /// Number of clusters.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Cluster counts to sweep, comma-separated (`2,3,4,6,8`): one line (or JSON point) per k,
    /// all against the same shuffled networks; `--k` is then unused.
    #[arg(long, value_delimiter = ',', value_name = "K,K,...")]
    k_sweep: Option<Vec<usize>>,
    /// Resolution γ of Newman's Q.
    #[arg(long, default_value_t = 1.0)]
    gamma: f64,
    /// Layer-shuffled networks for the null model (0 = none).
    #[arg(long, default_value_t = 100)]
    shuffles: usize,
    /// k-means restarts (the lowest inertia wins).
    #[arg(long, default_value_t = 25)]
    restarts: usize,
    /// Seed of k-means and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// One JSON object on stdout (the report, or `{"points": [...]}` with --k-sweep).
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
        (Some(ckpt), None) => {
            let model = Checkpoint::load(ckpt)?.model;
            match &args.mask {
                Some(mask) => WeightGraph::from_scl_masked(&model, &Mask::load(mask)?)?,
                None => WeightGraph::from_scl(&model)?,
            }
        }
        (None, Some(_)) if args.mask.is_some() => {
            return Err(Error::Config(
                "--mask restricts an SCL checkpoint's weights: it needs --ckpt".into(),
            ))
        }
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
    if let Some(ks) = &args.k_sweep {
        let sweep = modularity_sweep(&graph, ks, &cfg)?;
        if args.json {
            return print_json(&sweep);
        }
        println!(
            "nodes {} (layers {:?}), γ {}, {} layer shuffles{}",
            graph.num_nodes(),
            graph.layer_sizes,
            args.gamma,
            args.shuffles,
            mask_note(&args)
        );
        println!(
            "{:>4}  {:>9}  {:>21}  {:>8}  {:>7}  {:>9}  {:>21}  {:>8}",
            "k", "Q", "null mean ± sd", "z", "p", "ncut", "ncut null", "ncut z"
        );
        for point in &sweep.points {
            println!("{}", sweep_line(point));
        }
        if let Some(k) = sweep.best_k() {
            println!("largest z at k = {k}");
        }
        return Ok(());
    }
    let report = graph_modularity(&graph, &cfg)?;
    if args.json {
        return print_json(&report);
    }
    println!(
        "nodes {} (layers {:?}), k {}, γ {}{}: Q = {:.6}, n-cut = {:.6}",
        report.nodes,
        report.layer_sizes,
        args.k,
        args.gamma,
        mask_note(&args),
        report.q,
        report.ncut
    );
    if let (Some(m), Some(s), Some(z), Some(p)) =
        (report.q_null_mean, report.q_null_std, report.z, report.p)
    {
        println!(
            "null model ({} layer shuffles): Q = {m:.6} ± {s:.6}, z = {z:.2}, p = {p:.4}",
            args.shuffles
        );
    }
    if let (Some(m), Some(s), Some(z), Some(p)) = (
        report.ncut_null_mean,
        report.ncut_null_std,
        report.ncut_z,
        report.ncut_p,
    ) {
        println!("null model n-cut = {m:.6} ± {s:.6}, z = {z:.2}, p = {p:.4} (lower than chance)");
    }
    Ok(())
}

/// `, mask <path>` when a mask restricts the graph, else nothing.
fn mask_note(args: &Args) -> String {
    args.mask
        .as_ref()
        .map(|m| format!(", mask {}", m.display()))
        .unwrap_or_default()
}

/// One row of the `--k-sweep` table: `k  Q  null mean ± sd  z  p  ncut  ncut null  ncut z`.
fn sweep_line(r: &ModularityReport) -> String {
    let band = |m: Option<f64>, s: Option<f64>| match (m, s) {
        (Some(m), Some(s)) => format!("{m:.6} ± {s:.6}"),
        _ => "–".into(),
    };
    let num = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "–".into(),
    };
    format!(
        "{:>4}  {:>9.6}  {:>21}  {:>8}  {:>7}  {:>9.6}  {:>21}  {:>8}",
        r.k,
        r.q,
        band(r.q_null_mean, r.q_null_std),
        num(r.z, 2),
        num(r.p, 4),
        r.ncut,
        band(r.ncut_null_mean, r.ncut_null_std),
        num(r.ncut_z, 2),
    )
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
