//! `avr info`: the library version, libtorch device and thread settings.

use avr_modularity::{session, Result};

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    let s = session::setup(args.seed);
    let cuda = tch::Cuda::is_available();
    if args.json {
        let simd = session::simd_level();
        print_json(&serde_json::json!({"session": s, "cuda_available": cuda, "simd": simd}))
    } else {
        println!(
            "avr-modularity {} · device {} · {} threads · {} · CUDA available: {cuda}",
            s.crate_version,
            s.device,
            s.threads,
            session::simd_level()
        );
        Ok(())
    }
}
