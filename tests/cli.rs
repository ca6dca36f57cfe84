//! The `avr` binary end to end: JSON outputs a scheduler can gather, and clear errors.

use std::process::Command;

use avr_modularity::fixtures::require_fixtures;

fn avr(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_avr")).args(args).output().expect("run avr");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn eval_json_has_accuracy_and_n() {
    let fx = require_fixtures().unwrap();
    let ckpt = fx.join("seed/checkpoint/SCL_pretrain_80.ckpt");
    let data = fx.join("seed/datasets/pentagon");
    let (ok, stdout, stderr) = avr(&["eval", "--ckpt", ckpt.to_str().unwrap(), "--data", data.to_str().unwrap(), "--transpose-panels", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["n"], 24);
    assert!((v["accuracy"].as_f64().unwrap() - 22.0 / 24.0).abs() < 1e-12, "{v}");
}

#[test]
fn mask_sharing_json_and_svg() {
    let fx = require_fixtures().unwrap();
    let level = fx.join("seed/binary_masks/SCL_70");
    let mask = |shape: &str| std::fs::read_dir(level.join(shape)).unwrap().next().unwrap().unwrap().path();
    let (a, b) = (mask("circles"), mask("hexagon"));
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("s.svg");
    let (ok, stdout, stderr) = avr(&["mask", "sharing", a.to_str().unwrap(), b.to_str().unwrap(), "--metric", "iou", "--json", "--svg", svg.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["names"][0], "SCL_70/circles");
    let m = v["matrix"][0][1].as_f64().unwrap();
    assert!(m > 0.0 && m < 100.0 && v["matrix"][1][0].as_f64().unwrap() == m);
    let text = std::fs::read_to_string(svg).unwrap();
    assert!(text.starts_with("<svg") && text.contains("circles") && text.contains("hexagon"));
}

#[test]
fn modularity_json_from_safetensors_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.safetensors");
    let w = avr_modularity::analysis::graph::planted_mlp(2, 16, 4, 1.0, 0.1);
    tch::Tensor::write_safetensors(&[("layers.0.weight", &w[0]), ("layers.1.weight", &w[1])], &path).unwrap();
    let (ok, stdout, stderr) = avr(&["modularity", "--weights", path.to_str().unwrap(), "--k", "4", "--shuffles", "5", "--json"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!((v["q"].as_f64().unwrap() - 0.519230769).abs() < 1e-8);
    assert_eq!(v["clusters"].as_array().unwrap().len(), 48);
    for key in ["ncut", "q_null_mean", "q_null_std", "z", "p"] {
        assert!(v[key].is_number(), "{key} missing in {v}");
    }
}

#[test]
fn inspect_bad_file_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.npz");
    std::fs::write(&path, b"not a zip at all, just text").unwrap();
    let (ok, _, stderr) = avr(&["inspect", path.to_str().unwrap(), "--json"]);
    assert!(!ok);
    assert!(stderr.contains("broken.npz") && stderr.contains("not a zip"), "{stderr}");
}
