//! `avr generate`: an I-RAVEN or RAVEN dataset folder.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::ValueEnum;

use avr_modularity::data::generate::{generate_dataset, GeneratorConfig};
use avr_modularity::data::{Packing, CONFIGURATIONS};
use avr_modularity::Result;

use super::{print_json, value_name, Mode};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    out: PathBuf,
    /// The task preset: the originals, one shape (our or the study's spelling), only light or
    /// dark colours (`lights`, `dark`), or only large sizes (`big`).
    #[arg(long, value_enum, ignore_case = true, default_value = "originals")]
    preset: Preset,
    /// `all` or a comma-separated list of configuration folder names.
    #[arg(long, value_delimiter = ',', default_value = "all", value_parser = configurations())]
    configs: Vec<String>,
    #[arg(long, default_value_t = 10)]
    per_config: usize,
    /// iraven (balanced candidates) or raven (original candidates).
    #[arg(long, value_enum, default_value = "iraven")]
    mode: Mode,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Also write the XML annotation next to each file.
    #[arg(long)]
    xml: bool,
    /// Write only OUT/generator.json: readers then generate each problem from the seed when it
    /// is needed (no disk; the same pixels as the files).
    #[arg(long, conflicts_with = "xml")]
    on_the_fly: bool,
    /// Deflate each problem's pixels: files 10–16× smaller (numpy's `np.load` reads them too)
    /// instead of the originals' stored layout.
    #[arg(long, conflicts_with = "on_the_fly")]
    compress: bool,
    #[arg(long)]
    json: bool,
}

/// `--preset`: the generator's presets (`avr_modularity::data::generate::Preset::NAMES`); the
/// shapes also in the study's singular spelling (`pentagon`, `hexagon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    // Every shape, colour and size.
    Originals,
    #[value(alias = "circle")]
    Circles,
    #[value(alias = "square")]
    Squares,
    #[value(alias = "triangle")]
    Triangles,
    #[value(alias = "pentagon")]
    Pentagons,
    #[value(alias = "hexagon")]
    Hexagons,
    // White entities only.
    Lights,
    // Black entities only.
    Dark,
    // The four largest sizes only.
    Big,
}

/// `all` and the seven configuration folder names.
fn configurations() -> PossibleValuesParser {
    PossibleValuesParser::new(std::iter::once("all").chain(CONFIGURATIONS))
}

/// The configurations `--configs` names (`all` anywhere in the list means all of them).
fn expand_configs(configs: &[String]) -> Vec<String> {
    if configs.is_empty() || configs.iter().any(|c| c == "all") {
        return CONFIGURATIONS.iter().map(|c| c.to_string()).collect();
    }
    let mut out: Vec<String> = Vec::new();
    for c in configs {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

pub fn run(args: Args) -> Result<()> {
    let cfg = GeneratorConfig {
        preset: value_name(&args.preset),
        configs: expand_configs(&args.configs),
        per_config: args.per_config,
        mode: args.mode.into(),
        seed: args.seed,
        threads: args.threads,
        xml: args.xml,
        on_the_fly: args.on_the_fly,
        packing: match args.compress {
            true => Packing::Deflated,
            false => Packing::Stored,
        },
    };
    let report = generate_dataset(&cfg, &args.out, !args.json)?;
    if args.json {
        print_json(&report)
    } else if cfg.on_the_fly {
        println!(
            "{}: generator.json written; {} problems are generated when read",
            report.out.display(),
            cfg.per_config * cfg.configs.len()
        );
        Ok(())
    } else {
        println!(
            "{}: {} written, {} kept, {:.1} s ({:.0} problems/s)",
            report.out.display(),
            report.written,
            report.skipped,
            report.seconds,
            report.problems_per_s
        );
        Ok(())
    }
}
