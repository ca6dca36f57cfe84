//! One error type for the library; every variant names the file or key it is about.

use std::path::PathBuf;

/// Errors of the avr-modularity library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- files -----------------------------------------------------------------------
    /// Reading or writing a file failed at the OS level.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file exists but its content is not what it claims to be.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    // --- tensors and plots ----------------------------------------------------------------
    /// An error raised by libtorch.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// An error raised by polars while building a table.
    #[error(transparent)]
    Polars(#[from] polars::error::PolarsError),
    /// Drawing a figure failed.
    #[error("plot: {0}")]
    Plot(String),

    /// A mask does not belong to the model it is applied to (or to the masks it is compared
    /// with): tensor names or shapes differ.
    #[error("mask '{mask}' does not fit: {message}")]
    MaskMismatch {
        /// The mask's name.
        mask: String,
        /// The tensors whose names or shapes differ.
        message: String,
    },

    /// Masks compared with each other were trained with different settings (α, steps, …).
    #[error("{0}")]
    Incomparable(String),

    // --- training ------------------------------------------------------------------------
    /// The loss became NaN or infinite; the last milestone and resumable state are kept.
    #[error("loss became {loss} at step {step}; stopped (the last good checkpoint and resumable state are kept)")]
    Diverged {
        /// The step whose loss was not finite.
        step: usize,
        /// The loss value.
        loss: f64,
    },

    /// A model's settings that no model can have, or weights that do not match its
    /// architecture (names or shapes).
    #[error("model: {0}")]
    Architecture(String),
    /// A tensor of the wrong shape was given (a batch to a model, a weight to a graph).
    #[error("shape: {0}")]
    InputShape(String),
    /// A named tensor is not in a set of parameters.
    #[error("parameter `{0}` is missing")]
    MissingTensor(String),
    /// The planned batches ran out before the planned steps.
    #[error("data ran out: {0}")]
    DataExhausted(String),
    /// The generator found no valid problem for a configuration and preset.
    #[error("generation: {0}")]
    Generation(String),
    /// Our own records could not be written or read as JSON.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    // --- configuration --------------------------------------------------------------------
    /// Too few inputs for what was asked (masks, seeds, layers, problems, draws).
    #[error("not enough input: {0}")]
    NotEnough(String),
    /// A name (preset, configuration, shape, pair) that is not one of the known ones.
    #[error("unknown name: {0}")]
    UnknownName(String),
    /// The reference fixtures (`../shared/fixtures`) are not where they are looked for.
    #[error("reference fixtures not found: set AVR_FIXTURES to the shared/fixtures folder")]
    FixturesMissing,
    /// A setting or argument is out of range or inconsistent with another.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error together with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A file whose content is wrong, with a message saying what is wrong.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}
