//! `avr sweep`: a sweep spec expanded into a job table, run here or on Slurm.

use std::path::PathBuf;

use clap::Subcommand;

use avr_modularity::sweep::{self, JobTable, SlurmSettings, SweepSpec};
use avr_modularity::{Error, Result};

use super::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Expand SPEC (JSON) into DIR/jobs.json: id, stage, command, inputs, outputs, dependencies.
    Plan {
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run one job (skipped when its outputs are whole); by id, or by stage and array index.
    Run {
        dir: PathBuf,
        #[arg(long, conflicts_with_all = ["stage", "index"])]
        task: Option<usize>,
        #[arg(long, requires = "index")]
        stage: Option<String>,
        #[arg(long, requires = "stage")]
        index: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Done / running / failed / pending of every job.
    Status {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Every output with its size and CRC-32 (two runs of one plan compare byte for byte).
    Gather {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run the whole table on this machine, stage by stage, JOBS at a time.
    Local {
        dir: PathBuf,
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        #[arg(long)]
        json: bool,
    },
    /// One sbatch job array per stage, chained with afterok, submitted (or printed).
    Slurm {
        dir: PathBuf,
        #[arg(long)]
        partition: Option<String>,
        #[arg(long)]
        time: Option<String>,
        #[arg(long)]
        cpus: Option<usize>,
        #[arg(long)]
        gpus: Option<usize>,
        #[arg(long)]
        max_parallel: Option<usize>,
        /// Only the jobs not done yet (resubmit failed or killed array tasks alone).
        #[arg(long)]
        only_undone: bool,
        /// Write the scripts and print the sbatch lines without submitting.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

fn avr_binary() -> Result<PathBuf> {
    std::env::current_exe().map_err(|e| Error::io("avr", e))
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Plan { spec, out, json } => {
            let workdir = std::env::current_dir().map_err(|e| Error::io(".", e))?;
            let table = SweepSpec::load(&spec)?.plan(&out, &workdir)?;
            let path = table.save(&out)?;
            match json {
                true => print_json(&table),
                false => {
                    for stage in &table.stages {
                        println!("{stage}: {} jobs", table.stage_jobs(stage).len());
                    }
                    println!("wrote {}", path.display());
                    Ok(())
                }
            }
        }
        Command::Run {
            dir,
            task,
            stage,
            index,
            json,
        } => {
            let id = match (task, stage, index) {
                (Some(id), _, _) => id,
                (None, Some(stage), Some(index)) => JobTable::load(&dir)?.job_at(&stage, index)?.id,
                _ => {
                    return Err(Error::Config(
                        "sweep run: give --task N or --stage S --index I".into(),
                    ))
                }
            };
            let outcome = sweep::run_job(&avr_binary()?, &dir, id)?;
            match json {
                true => print_json(&outcome),
                false => {
                    println!(
                        "job {id}: {:?}{}",
                        outcome.state,
                        if outcome.skipped { " (skipped)" } else { "" }
                    );
                    Ok(())
                }
            }
        }
        Command::Status { dir, json } => {
            let status = sweep::status(&dir)?;
            if json {
                return print_json(&status);
            }
            for (id, stage, index, state) in &status.jobs {
                println!("{id:>4}  {stage:<12} {index:>4}  {state:?}");
            }
            println!("{:?}", status.counts);
            Ok(())
        }
        Command::Gather { dir, json } => {
            let outputs = sweep::gather(&dir)?;
            if json {
                return print_json(&outputs);
            }
            for o in &outputs {
                let crc = o
                    .crc32
                    .map_or("missing".to_string(), |c| format!("{c:08x}"));
                println!(
                    "{:>4}  {:<10} {:>10}  {crc}  {}",
                    o.job, o.stage, o.bytes, o.path
                );
            }
            Ok(())
        }
        Command::Local { dir, jobs, json } => {
            let results = sweep::run_local(&avr_binary()?, &dir, jobs)?;
            match json {
                true => print_json(&sweep::status(&dir)?),
                false => {
                    println!("{} jobs ran or were found done", results.len());
                    Ok(())
                }
            }
        }
        Command::Slurm {
            dir,
            partition,
            time,
            cpus,
            gpus,
            max_parallel,
            only_undone,
            dry_run,
            json,
        } => {
            let settings = SlurmSettings {
                partition,
                time,
                cpus,
                gpus,
                max_parallel,
            };
            let scripts = sweep::write_slurm_scripts(&avr_binary()?, &dir, &settings, only_undone)?;
            let submitted = sweep::submit(&scripts, dry_run)?;
            match json {
                true => print_json(&submitted),
                false => {
                    for (line, id) in &submitted {
                        println!(
                            "{line}{}",
                            id.as_ref()
                                .map_or(String::new(), |i| format!("   # job {i}"))
                        );
                    }
                    Ok(())
                }
            }
        }
    }
}
