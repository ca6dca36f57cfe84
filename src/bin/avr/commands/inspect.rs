//! `avr inspect`: keys, dtypes, shapes, target, predict and configuration of problem files.

use std::path::PathBuf;

use avr_modularity::data::inspect;
use avr_modularity::Result;

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    files: Vec<PathBuf>,
    /// One JSON object per file.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<()> {
    for f in &args.files {
        let s = inspect(f)?;
        if args.json {
            print_json(&s)?;
        } else {
            println!(
                "{}: {} target {} predict {}",
                f.display(),
                s.configuration.as_deref().unwrap_or("?"),
                s.target,
                s.predict
            );
            for ((k, d), sh) in s.keys.iter().zip(&s.dtypes).zip(&s.shapes) {
                println!("  {k:<15} {d:<6} {sh:?}");
            }
        }
    }
    Ok(())
}
