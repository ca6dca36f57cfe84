//! One module per subcommand: its `#[derive(clap::Args)]` struct and its `run`. Shared here:
//! JSON printing and the value enums that several commands take.

pub mod bench;
pub mod eval;
pub mod generate;
pub mod info;
pub mod inspect;
pub mod mask;
pub mod modularity;
pub mod report;
pub mod results;
pub mod sweep;
pub mod toumei;
pub mod toy;
pub mod train;

use clap::ValueEnum;
use serde::Serialize;

use avr_modularity::data::generate::CandidateMode;
use avr_modularity::model::SclVariant;
use avr_modularity::{Error, Result};

/// Prints `value` as one line of JSON on stdout (what `--json` promises).
pub fn print_json(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string(value).map_err(Error::from)?;
    println!("{text}");
    Ok(())
}

/// Prints `value` as indented JSON on stdout (the human-readable form of some summaries).
pub fn print_json_pretty(value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(Error::from)?;
    println!("{text}");
    Ok(())
}

/// The command-line spelling of a value enum's value (`official`, `iraven`).
pub fn value_name(value: &impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// A value parser for comma-separated lists that tolerates spaces around items (`50, 60`).
pub fn trimmed<T: std::str::FromStr>(s: &str) -> std::result::Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.trim().parse().map_err(|e: T::Err| e.to_string())
}

/// `--variant`: which SCL architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Variant {
    // dhh1995/SCL, the default for new training.
    Official,
    // lucidrains' SCL as used by the study (loads its checkpoint).
    Seed,
}

impl Variant {
    /// The architecture at `size` px panels.
    pub fn at_size(self, size: i64) -> SclVariant {
        match self {
            Variant::Official => SclVariant::official(size),
            Variant::Seed => SclVariant::seed(size),
        }
    }
}

/// `--precision`: the number format of the convolutions and matrix products of training steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    // f32 throughout (the default).
    F32,
    // Autocast-style bf16 convolutions and matmuls, f32 master weights, norms and loss.
    Bf16,
}

impl From<PrecisionArg> for avr_modularity::model::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => avr_modularity::model::Precision::F32,
            PrecisionArg::Bf16 => avr_modularity::model::Precision::Bf16,
        }
    }
}

impl PrecisionArg {
    /// The precision, refused when it is bf16 on a CPU without native bf16
    /// ([`avr_modularity::model::Precision::check_native`]) — before any data is read.
    pub fn checked(self) -> Result<avr_modularity::model::Precision> {
        let precision: avr_modularity::model::Precision = self.into();
        precision.check_native(avr_modularity::session::default_device())?;
        Ok(precision)
    }
}

/// `--mode`: which candidate sets the generator builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    // Balanced candidates (I-RAVEN).
    Iraven,
    // The original RAVEN candidates.
    Raven,
}

impl From<Mode> for CandidateMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Iraven => CandidateMode::Iraven,
            Mode::Raven => CandidateMode::Raven,
        }
    }
}
