//! How much two binary masks overlap: the study's IoMin and the IoU, globally and per tensor.

use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::model::Params;
use crate::Result;

/// How two masks' overlap is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// `|A ∧ B| / min(|A|, |B|)` — the study's sharing metric.
    IoMin,
    /// `|A ∧ B| / |A ∨ B|`.
    IoU,
}

impl Overlap {
    /// `iomin` or `iou`, any case.
    pub fn parse(s: &str) -> Option<Overlap> {
        match s.to_ascii_lowercase().as_str() {
            "iomin" => Some(Overlap::IoMin),
            "iou" => Some(Overlap::IoU),
            _ => None,
        }
    }

    /// The overlap of sets of sizes `a` and `b` that share `both` elements (0 when empty).
    pub fn of(self, both: i64, a: i64, b: i64) -> f64 {
        let denominator = match self {
            Overlap::IoMin => a.min(b),
            Overlap::IoU => a + b - both,
        };
        if denominator == 0 {
            0.0
        } else {
            both as f64 / denominator as f64
        }
    }
}

/// Overlap per tensor and globally between two binary masks, in [0, 1].
pub fn overlap(a: &Params, b: &Params, metric: Overlap) -> Result<(f64, Vec<(String, f64)>)> {
    // Same names and shapes, or an error naming the difference (libtorch would broadcast or
    // panic).
    super::same_layout(&[a.clone(), b.clone()])?;
    let (mut both_all, mut a_all, mut b_all) = (0, 0, 0);
    let mut per_tensor = Vec::new();
    for (name, ta) in a.iter() {
        let tb = b.get(name)?;
        let (ta, tb) = (ta.gt(0.0), tb.gt(0.0));
        let both = ta.logical_and(&tb).sum(Kind::Int64).int64_value(&[]);
        let (na, nb) = (
            ta.sum(Kind::Int64).int64_value(&[]),
            tb.sum(Kind::Int64).int64_value(&[]),
        );
        per_tensor.push((name.to_string(), metric.of(both, na, nb)));
        both_all += both;
        a_all += na;
        b_all += nb;
    }
    Ok((metric.of(both_all, a_all, b_all), per_tensor))
}
