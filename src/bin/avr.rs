//! `avr` — the command-line face of avr-modularity: every pipeline step for headless and
//! cluster runs. Logic lives in the library; this file only parses arguments and prints.

use clap::{Parser, Subcommand};

use avr_modularity::session;

#[derive(Parser)]
#[command(name = "avr", version, about = "Functional modularity of SCL on I-RAVEN")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the library version, libtorch device and thread settings.
    Info {
        /// Seed applied to libtorch.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("avr: error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> avr_modularity::Result<()> {
    match cli.command {
        Command::Info { seed, json } => {
            let s = session::setup(seed);
            let cuda = tch::Cuda::is_available();
            if json {
                let value = serde_json::json!({"session": s, "cuda_available": cuda});
                println!("{value}");
            } else {
                println!("avr-modularity {} · device {} · {} threads · CUDA available: {cuda}", s.crate_version, s.device, s.threads);
            }
        }
    }
    Ok(())
}
