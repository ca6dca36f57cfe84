//! The study's own files: `SCL_pretrain_80.ckpt` and its binary-mask pickles, read in pure Rust.
//!
//! Formats: `../shared/fixtures/README.md` §1–§3. Keys are returned without the `scl.` prefix
//! (stripped as a prefix, not as a character set like the study's `lstrip('scl.')`), so they
//! match our `seed` model and the mask files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::pickle::{unpickle, RawTensor, StorageKind, Value};
use crate::model::Params;
use crate::{Error, Result};

/// Constructor arguments stored in the study checkpoint (`'kwargs'`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudySclKwargs {
    pub image_size: i64,
    pub set_size: i64,
    pub conv_channels: Vec<i64>,
    pub conv_output_dim: i64,
    pub attr_heads: i64,
    pub attr_net_hidden_dims: Vec<i64>,
    pub rel_heads: i64,
    pub rel_net_hidden_dims: Vec<i64>,
}

/// The study's SCL checkpoint: weights + BN statistics (no `num_batches_tracked`).
#[derive(Debug)]
pub struct StudyCheckpoint {
    pub path: PathBuf,
    pub kwargs: StudySclKwargs,
    /// State-dict entries without the `scl.` prefix, in the file's order.
    pub params: Params,
    pub epoch: i64,
    pub run_id: String,
}

/// One of the study's mask files: real-valued logits per parameter.
#[derive(Debug)]
pub struct StudyMask {
    pub path: PathBuf,
    pub alpha: f64,
    pub tau: f64,
    pub global_step: i64,
    pub train_epoch: i64,
    pub run_id: String,
    /// Logits keyed by parameter name (no prefix), in the file's order.
    pub logits: Params,
}

/// Whether a file starts like a pickle of protocol ≥ 2 (how `--ckpt` tells study files apart).
pub fn looks_like_pickle(path: &Path) -> bool {
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && head[0] == 0x80
        && (2..=5).contains(&head[1])
}

fn read_pickle(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() < 2 || bytes[0] != 0x80 {
        return Err(Error::bad_file(
            path,
            "not a Python pickle (expected the study's pickle.dump format)",
        ));
    }
    let (value, used) = unpickle(&bytes).map_err(|e| Error::bad_file(path, e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::bad_file(
            path,
            format!("{} bytes after the pickle's STOP", bytes.len() - used),
        ));
    }
    Ok(value)
}

/// Converts a pickled tensor to a CPU tch tensor (float32 or int64).
pub fn raw_to_tensor(raw: &RawTensor) -> Result<Tensor> {
    let kind = match raw.kind {
        StorageKind::Float => Kind::Float,
        StorageKind::Long => Kind::Int64,
    };
    let elem = raw.data.len() / kind.elt_size_in_bytes().max(1);
    let storage = Tensor::f_from_data_size(&raw.data, &[elem as i64], kind)?;
    Ok(storage
        .f_as_strided(
            raw.size.as_slice(),
            raw.stride.as_slice(),
            Some(raw.offset as i64),
        )?
        .f_contiguous()?)
}

fn field<'a>(top: &'a [(String, Value)], key: &str, path: &Path) -> Result<&'a Value> {
    top.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .ok_or_else(|| Error::bad_file(path, format!("missing key '{key}'")))
}

fn tensor_dict(
    value: &Value,
    strip: Option<&str>,
    skip: impl Fn(&str) -> bool,
    path: &Path,
    what: &str,
) -> Result<Params> {
    let items = value
        .str_items()
        .ok_or_else(|| Error::bad_file(path, format!("'{what}' is not a dict with string keys")))?;
    let mut params = Params::new();
    for (key, v) in items {
        let name = match strip {
            Some(prefix) => key
                .strip_prefix(prefix)
                .ok_or_else(|| {
                    Error::bad_file(
                        path,
                        format!("'{what}' key `{key}` lacks the prefix `{prefix}`"),
                    )
                })?
                .to_string(),
            None => key.clone(),
        };
        if skip(&name) {
            continue;
        }
        let Value::Tensor(raw) = v else {
            return Err(Error::bad_file(
                path,
                format!("'{what}'[`{key}`] is not a tensor"),
            ));
        };
        params.insert(name, raw_to_tensor(&raw)?);
    }
    Ok(params)
}

impl StudyCheckpoint {
    /// Reads `SCL_pretrain_80.ckpt`-style files.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let top = read_pickle(path)?
            .str_items()
            .ok_or_else(|| Error::bad_file(path, "top level is not a dict"))?;
        let kwargs_value = field(&top, "kwargs", path)?;
        let kwargs = study_kwargs(kwargs_value).ok_or_else(|| {
            Error::bad_file(path, "'kwargs' does not hold the SCL constructor arguments")
        })?;
        let params = tensor_dict(
            field(&top, "model state dict", path)?,
            Some("scl."),
            |n| n.ends_with("num_batches_tracked"),
            path,
            "model state dict",
        )?;
        let epoch = field(&top, "Epoch", path)?.as_i64().unwrap_or(-1);
        let run_id = field(&top, "Run ID", path)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(StudyCheckpoint {
            path: path.to_path_buf(),
            kwargs,
            params,
            epoch,
            run_id,
        })
    }
}

fn study_kwargs(v: &Value) -> Option<StudySclKwargs> {
    let int = |k: &str| v.get(k).and_then(|x| x.as_i64());
    let list = |k: &str| match v.get(k)? {
        Value::List(l) => l.borrow().iter().map(Value::as_i64).collect(),
        _ => None,
    };
    Some(StudySclKwargs {
        image_size: int("image_size")?,
        set_size: int("set_size")?,
        conv_channels: list("conv_channels")?,
        conv_output_dim: int("conv_output_dim")?,
        attr_heads: int("attr_heads")?,
        attr_net_hidden_dims: list("attr_net_hidden_dims")?,
        rel_heads: int("rel_heads")?,
        rel_net_hidden_dims: list("rel_net_hidden_dims")?,
    })
}

impl StudyMask {
    /// Reads one of the study's `binary_masks/**` files.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let top = read_pickle(path)?
            .str_items()
            .ok_or_else(|| Error::bad_file(path, "top level is not a dict"))?;
        let number = |k: &str| -> Result<f64> {
            field(&top, k, path)?
                .as_f64()
                .ok_or_else(|| Error::bad_file(path, format!("'{k}' is not a number")))
        };
        Ok(StudyMask {
            path: path.to_path_buf(),
            alpha: number("alpha")?,
            tau: number("tau")?,
            global_step: number("global_step")? as i64,
            train_epoch: number("train_epoch")? as i64,
            run_id: field(&top, "run_id", path)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            logits: tensor_dict(
                field(&top, "logit_tensors_dict", path)?,
                None,
                |_| false,
                path,
                "logit_tensors_dict",
            )?,
        })
    }
}
