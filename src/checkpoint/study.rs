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
    /// Panel side in pixels (160 in the study's checkpoint).
    pub image_size: i64,
    /// Panels per set the relation net sees: 8 context + 1 candidate (9).
    pub set_size: i64,
    /// Conv channels including the input channel (`[1, 16, 16, 32, 32, 32]`).
    pub conv_channels: Vec<i64>,
    /// Width of the panel embedding (80).
    pub conv_output_dim: i64,
    /// Attribute groups the embedding is split into for the attribute MLP (10).
    pub attr_heads: i64,
    /// Hidden widths of the attribute MLP (`[128]`).
    pub attr_net_hidden_dims: Vec<i64>,
    /// Attributes the relation MLP is shared over (80, one per embedding feature).
    pub rel_heads: i64,
    /// Relation MLP widths after the `set_size` inputs (`[64, 32, 5]`).
    pub rel_net_hidden_dims: Vec<i64>,
}

/// The study's SCL checkpoint: weights + BN statistics (no `num_batches_tracked`).
#[derive(Debug)]
pub struct StudyCheckpoint {
    /// The file it was read from.
    pub path: PathBuf,
    /// The SCL constructor arguments (`'kwargs'`).
    pub kwargs: StudySclKwargs,
    /// State-dict entries without the `scl.` prefix, in the file's order.
    pub params: Params,
    /// Training epoch at save time (`'Epoch'`; −1 when it is not an int).
    pub epoch: i64,
    /// The wandb run id (`'Run ID'`; empty when it is not a string).
    pub run_id: String,
}

/// One of the study's mask files: real-valued logits per parameter.
#[derive(Debug)]
pub struct StudyMask {
    /// The file it was read from.
    pub path: PathBuf,
    /// L1 coefficient α of the mask-training run.
    pub alpha: f64,
    /// Gumbel-sigmoid temperature τ (1 in every study file).
    pub tau: f64,
    /// Optimiser steps done when the file was saved.
    pub global_step: i64,
    /// 0-based epoch index at save time (may disagree with the file name).
    pub train_epoch: i64,
    /// The wandb run id (empty when it is not a string).
    pub run_id: String,
    /// Logits keyed by parameter name (no prefix), in the file's order.
    pub logits: Params,
}

/// Whether a file starts like a pickle of protocol ≥ 2 (how `--ckpt` tells study files apart).
pub fn looks_like_pickle(path: &Path) -> bool {
    let mut head = [0u8; 9];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let n = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
    head_is_pickle(&head[..n])
}

/// The PROTO opcode (`0x80`, protocol 2–5) — but not a safetensors file, whose little-endian
/// header length can begin with the same two bytes (a 640–1535-byte header) and whose JSON
/// header opens at byte 8 with `{`.
fn head_is_pickle(head: &[u8]) -> bool {
    let proto = head.len() >= 2 && head[0] == 0x80 && (2..=5).contains(&head[1]);
    let safetensors = head.len() >= 9 && head[8] == b'{' && head[2..8].iter().all(|&b| b == 0);
    proto && !safetensors
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

#[cfg(test)]
mod head_tests {
    use super::head_is_pickle;

    #[test]
    fn a_safetensors_header_of_1408_bytes_is_not_a_pickle() {
        // 1408 = 0x0580: the header length's first two bytes read like PROTO 5.
        let safetensors = [0x80, 0x05, 0, 0, 0, 0, 0, 0, b'{'];
        assert!(!head_is_pickle(&safetensors));
        // A real protocol-4 pickle: PROTO 4, FRAME, 8-byte length.
        assert!(head_is_pickle(&[0x80, 0x04, 0x95, 0x2a, 0x01, 0, 0, 0, 0]));
        assert!(!head_is_pickle(&[0x80]));
    }
}
