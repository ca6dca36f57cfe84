//! The PyTorch reference of `make bench` (`scripts/bench_pytorch.py`) masks and trains exactly
//! the tensors our models have: same names, shapes and trainable flags, in the same order — so
//! the side-by-side figures of BENCHMARKS.md compare the same work. (`make bench` also checks the
//! reference's seed forward against the study's PyTorch logits; that needs the full torch wheel,
//! which the test machine does not have.)

use std::process::Command;

use avr_modularity::model::{OfficialSclConfig, SclModel, SclVariant, SeedSclConfig};
use tch::Device;

fn reference_specs(variant: &str, size: i64) -> Vec<(String, Vec<i64>, bool)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_pytorch.py");
    let out = Command::new("python3")
        .args([
            script,
            "specs",
            "--variant",
            variant,
            "--size",
            &size.to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} specs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON list");
    rows.iter()
        .map(|r| {
            let shape = r["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().expect("dim"))
                .collect();
            (
                r["name"].as_str().expect("name").to_string(),
                shape,
                r["trainable"].as_bool().expect("flag"),
            )
        })
        .collect()
}

fn ours(variant: SclVariant) -> Vec<(String, Vec<i64>, bool)> {
    SclModel::init(variant, 0, Device::Cpu)
        .param_specs()
        .into_iter()
        .map(|s| (s.name, s.shape, s.trainable))
        .collect()
}

#[test]
fn the_reference_has_the_official_models_tensors_at_80_and_160() {
    for size in [80, 160] {
        let want = ours(SclVariant::Official(OfficialSclConfig {
            image_size: size,
            ..Default::default()
        }));
        assert_eq!(reference_specs("official", size), want, "official @{size}");
    }
}

#[test]
fn the_reference_has_the_seed_models_tensors() {
    let want = ours(SclVariant::Seed(SeedSclConfig::default()));
    let got = reference_specs("seed", 160);
    assert_eq!(got, want);
    let scalars: i64 = got
        .iter()
        .filter(|s| s.2)
        .map(|s| s.1.iter().product::<i64>())
        .sum();
    assert_eq!(scalars, 199_838, "the study's masked scalars");
}
