//! `avr sweep` without a scheduler: plan, run one job (twice: the second is skipped), status,
//! gather, the Slurm scripts in dry-run, and bad specs. `tests/slurm.sh` runs the same plan on
//! a real Slurm (`make test-slurm`).

use std::process::Command;

fn avr(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_avr"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_planned_sweep_runs_a_job_once_reports_its_state_and_writes_chained_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = dir.path().join("sweep");
    let s = sweep.to_str().unwrap();
    let table = json(&avr(&[
        "sweep",
        "plan",
        "scripts/sweeps/demo.json",
        "--out",
        s,
        "--json",
    ]));
    let jobs = table["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 13);
    assert_eq!(jobs[12]["stage"], "report");
    assert_eq!(
        jobs[4]["after"],
        serde_json::json!([3]),
        "masks wait for train"
    );
    let first = json(&avr(&["sweep", "run", s, "--task", "0", "--json"]));
    assert_eq!(
        (first["skipped"].as_bool(), first["state"].as_str()),
        (Some(false), Some("done"))
    );
    let again = json(&avr(&[
        "sweep", "run", s, "--stage", "generate", "--index", "0", "--json",
    ]));
    assert_eq!(again["skipped"], true, "whole outputs are not redone");
    let status = json(&avr(&["sweep", "status", s, "--json"]));
    assert_eq!(
        status["counts"],
        serde_json::json!({"done": 1, "pending": 12})
    );
    let gathered = json(&avr(&["sweep", "gather", s, "--json"]));
    let rows = gathered.as_array().unwrap();
    assert!(rows[0]["crc32"].is_u64() && rows[0]["path"] == "{dir}/data/originals/generator.json");
    assert!(
        rows.iter().skip(1).all(|r| r["crc32"].is_null()),
        "the rest is not there yet"
    );
    let dry = avr(&["sweep", "slurm", s, "--max-parallel", "3", "--dry-run"]);
    let lines = String::from_utf8_lossy(&dry.stdout).to_string();
    assert_eq!(lines.lines().count(), 4, "{lines}");
    assert!(
        lines
            .lines()
            .nth(2)
            .unwrap()
            .contains("--dependency=afterok:$JOB2"),
        "{lines}"
    );
    let masks = std::fs::read_to_string(sweep.join("slurm/masks.sbatch")).unwrap();
    assert!(
        masks.contains("#SBATCH --array=0-7%3") && masks.contains("--stage 'masks'"),
        "{masks}"
    );
    // Only what is undone: generate's first job is done, so its array lists 1-2.
    avr(&["sweep", "slurm", s, "--only-undone", "--dry-run"]);
    let generate = std::fs::read_to_string(sweep.join("slurm/generate.sbatch")).unwrap();
    assert!(generate.contains("#SBATCH --array=1-2\n"), "{generate}");
}

#[test]
fn bad_specs_and_jobs_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"name": "x", "stages": [{"name": "a", "args": ["{alpha}"], "outputs": ["o"]}]}"#,
    )
    .unwrap();
    let out = avr(&[
        "sweep",
        "plan",
        spec.to_str().unwrap(),
        "--out",
        dir.path().join("s").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("{alpha}"));
    std::fs::write(
        &spec,
        r#"{"name": "x", "stages": [{"name": "a", "args": [], "outputs": []}]}"#,
    )
    .unwrap();
    let out = avr(&[
        "sweep",
        "plan",
        spec.to_str().unwrap(),
        "--out",
        dir.path().join("s").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        err.contains("spec.json") && err.contains("no outputs"),
        "{err}"
    );
    let s = dir.path().join("t");
    avr(&[
        "sweep",
        "plan",
        "scripts/sweeps/demo.json",
        "--out",
        s.to_str().unwrap(),
    ]);
    let out = avr(&["sweep", "run", s.to_str().unwrap(), "--task", "99"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job 99"));
}

#[test]
fn the_study_mask_sweep_spec_agrees_with_the_study_manifest() {
    // scripts/sweeps/study_masks.json is the study run's mask stage as a sweep; its settings
    // must be the manifest's (datasets/study/manifest.env), so a cluster runs the same masks.
    let manifest = std::fs::read_to_string("datasets/study/manifest.env").unwrap();
    let value = |key: &str| -> String {
        let line = manifest
            .lines()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap();
        line.split_once('=')
            .unwrap()
            .1
            .trim_matches('"')
            .to_string()
    };
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("scripts/sweeps/study_masks.json").unwrap())
            .unwrap();
    // The study's one α: the α stage's choice once it has run (the masks stage reads it from
    // binary_masks/study/alpha.json; the sweep must then say the same), else the manifest's.
    let alpha = match std::fs::read_to_string("binary_masks/study/alpha.json") {
        Ok(text) => {
            let record: serde_json::Value = serde_json::from_str(&text).unwrap();
            format!("{:e}", record["chosen_alpha"].as_f64().unwrap())
        }
        Err(_) => value("MASK_ALPHA"),
    };
    let same_number = |a: &str, b: &str| a.parse::<f64>().unwrap() == b.parse::<f64>().unwrap();
    for stage in &spec["stages"].as_array().unwrap()[..2] {
        let args: Vec<&str> = stage["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let arg = |flag: &str| args[args.iter().position(|a| *a == flag).unwrap() + 1];
        assert!(
            same_number(arg("--alpha"), &alpha),
            "sweep α {} vs the study's {alpha}",
            arg("--alpha")
        );
        assert_eq!(arg("--steps"), value("MASK_STEP_CAP"));
        assert_eq!(arg("--lr"), value("MASK_LR"));
        assert_eq!(arg("--eval-every"), value("MASK_EVAL_EVERY"));
        let seeds: Vec<&str> = stage["grid"]["seed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(seeds.join(" "), value("MASK_SEEDS"));
    }
    let shapes: Vec<&str> = spec["stages"][0]["grid"]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(shapes.join(" "), value("SHAPES"));
    let dir = tempfile::tempdir().unwrap();
    let table = json(&avr(&[
        "sweep",
        "plan",
        "scripts/sweeps/study_masks.json",
        "--out",
        dir.path().to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(table["jobs"].as_array().unwrap().len(), 40 + 8 + 1);
}
