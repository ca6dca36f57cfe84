//! Faults lose nothing: `avr generate`, `avr train --resume` and `avr mask train`, killed with
//! SIGKILL at seeded random moments (at least 20 kills per command), then run to the end. After
//! every kill each file present loads (a killed write leaves at most a hidden `.<name>.tmp<pid>`,
//! which no reader looks at), and the finished outputs equal an uninterrupted run's byte for
//! byte (same seed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use avr_modularity::checkpoint::{read_safetensors, Checkpoint};
use avr_modularity::data::npz::AvrProblem;
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::masking::Mask;
use avr_modularity::rng::Rng;
use avr_modularity::train::trainer::read_metrics_csv;

const KILLS: usize = 20;

/// A killed write's leftover: hidden, named after its target, ignored by readers.
fn is_temp(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    name.starts_with('.') && name.contains(".tmp")
}

/// Every file under `dir` (temp leftovers excluded), relative path → bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !is_temp(&path) {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Every file under `dir` must load with the reader of its kind.
fn assert_whole(dir: &Path, after: &str) {
    for rel in files(dir).keys() {
        let path = dir.join(rel);
        let name = rel.to_string_lossy();
        let ok = match path.extension().and_then(|e| e.to_str()) {
            Some("npz") => AvrProblem::read(&path).map(drop),
            Some("csv") if name.ends_with(".readings.csv") => {
                avr_modularity::masking::engine::read_mask_readings_csv(&path).map(drop)
            }
            Some("csv") => read_metrics_csv(&path).map(drop),
            Some("safetensors") if name.contains("last") => read_safetensors(&path).map(drop),
            Some("safetensors") if name.starts_with("scl_") => Checkpoint::load(&path).map(drop),
            Some("safetensors") => Mask::load(&path).map(drop),
            Some("resume") => read_safetensors(&path).map(drop),
            Some("json") => {
                serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap())
                    .map(drop)
                    .map_err(|e| avr_modularity::Error::bad_file(&path, e.to_string()))
            }
            _ => Ok(()),
        };
        if let Err(e) = ok {
            panic!("after {after}: {name} is not whole: {e}");
        }
    }
}

/// `avr args` run in `cwd`: every run writes to the relative folder `out`, so the paths that
/// sidecars record are the same for the reference and the killed runs.
fn avr(cwd: &Path, args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_avr"));
    c.current_dir(cwd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Runs `args` uninterrupted in a fresh folder; returns its outputs and wall time.
fn reference(args: &[String]) -> (BTreeMap<PathBuf, Vec<u8>>, Duration) {
    let scratch = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let status = avr(scratch.path(), args)
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(status.success(), "reference run {args:?} failed");
    (files(&scratch.path().join("out")), t0.elapsed())
}

/// Kills runs of `args` at seeded moments within `[5 %, 60 %)` of an uninterrupted run's time
/// until `KILLS` kills have landed; each scenario is then finished without a kill and compared
/// with `expected`. A scenario that finishes early starts over in a fresh folder.
fn kill_repeatedly(
    label: &str,
    args: &[String],
    expected: &BTreeMap<PathBuf, Vec<u8>>,
    took: Duration,
) {
    let mut rng = Rng::new(7).fork(label);
    let (mut kills, mut scenarios) = (0, 0);
    while kills < KILLS {
        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("out");
        scenarios += 1;
        loop {
            let mut child = avr(scratch.path(), args).spawn().unwrap();
            let delay = took.mul_f64(0.05 + 0.55 * rng.uniform());
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_some() || kills >= KILLS {
                assert!(
                    child.wait().unwrap().success(),
                    "{label}: a run after kills failed"
                );
                break;
            }
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            assert_whole(&out, &format!("{label} kill {kills} at {delay:?}"));
        }
        // Finish (a no-op when the last attempt already did) and compare.
        let finish = avr(scratch.path(), args).status().unwrap();
        assert!(finish.success(), "{label}: final run failed");
        let found = files(&out);
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{label}: the files differ after kills"
        );
        let differing: Vec<String> = found
            .iter()
            .filter(|(rel, bytes)| *bytes != &expected[*rel])
            .map(|(rel, bytes)| first_difference(rel, &expected[rel], bytes))
            .collect();
        assert!(
            differing.is_empty(),
            "{label}: files differ after kills (scenario {scenarios}, {kills} kills so far):\n{}",
            differing.join("\n")
        );
    }
    eprintln!("{label}: {kills} kills over {scenarios} scenarios; outputs byte-identical");
}

/// Where two versions of a file part: the first differing byte, with the text around it (so
/// that a failure says what the resumed run did differently).
fn first_difference(rel: &Path, expected: &[u8], found: &[u8]) -> String {
    let at = expected
        .iter()
        .zip(found)
        .position(|(x, y)| x != y)
        .unwrap_or(expected.len().min(found.len()));
    let around = |b: &[u8]| {
        let (from, to) = (at.saturating_sub(120), (at + 120).min(b.len()));
        String::from_utf8_lossy(&b[from..to]).into_owned()
    };
    format!(
        "  {}: {} vs {} bytes, first difference at byte {at}\n    expected …{}…\n    found    …{}…",
        rel.display(),
        expected.len(),
        found.len(),
        around(expected),
        around(found)
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn generate_args(out: &str) -> Vec<String> {
    let mut a = strings(&[
        "generate",
        "--configs",
        "center_single,distribute_four",
        "--per-config",
    ]);
    a.extend(strings(&[
        "30",
        "--seed",
        "4",
        "--threads",
        "1",
        "--out",
        out,
    ]));
    a
}

#[test]
fn generate_killed_twenty_times_loses_nothing() {
    let args = generate_args("out");
    let (expected, took) = reference(&args);
    assert!(expected.len() >= 60, "{} files", expected.len());
    kill_repeatedly("generate", &args, &expected, took);
}

#[test]
fn training_killed_twenty_times_resumes_to_the_same_bytes() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data").display().to_string();
    assert!(avr(scratch.path(), &generate_args(&data))
        .status()
        .unwrap()
        .success());
    let mut args = strings(&["train", "--size", "40", "--steps", "24", "--batch", "8"]);
    args.extend(strings(&[
        "--val-every",
        "8",
        "--milestones",
        "10,20",
        "--seed",
        "2",
    ]));
    args.extend(strings(&[
        "--state-every",
        "3",
        "--bn-recalibration",
        "2",
        "--resume",
    ]));
    args.extend(strings(&["--data", &data, "--out", "out"]));
    let (expected, took) = reference(&args);
    assert!(
        expected.keys().any(|k| k.ends_with("metrics.csv")),
        "{:?}",
        expected.keys()
    );
    kill_repeatedly("train", &args, &expected, took);
}

fn mask_args() -> Vec<String> {
    let fixtures = require_fixtures().unwrap();
    let ckpt = fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt");
    let squares = fixtures.join("seed/datasets/squares");
    let mut a = strings(&[
        "mask",
        "train",
        "--name",
        "squares-s0",
        "--steps",
        "12",
        "--state-every",
        "2",
    ]);
    a.extend(strings(&[
        "--batch",
        "4",
        "--samples",
        "2",
        "--eval-every",
        "6",
        "--seed",
        "0",
    ]));
    a.extend(["--ckpt".into(), ckpt.display().to_string()]);
    a.extend(["--task".into(), squares.display().to_string()]);
    a.extend(strings(&["--out", "out/squares-s0.safetensors"]));
    a
}

#[test]
fn mask_training_killed_twenty_times_ends_in_the_same_bytes() {
    let args = mask_args();
    let (expected, took) = reference(&args);
    assert!(
        expected.keys().any(|k| k.ends_with("squares-s0.json")),
        "{:?}",
        expected.keys()
    );
    kill_repeatedly("mask train", &args, &expected, took);
}

/// A killed mask run continues from its saved state (logits and Adam moments), not from step
/// 0, and still ends in the uninterrupted run's bytes.
#[test]
fn a_killed_mask_run_resumes_mid_run_from_its_state() {
    let args = mask_args();
    let (expected, _) = reference(&args);
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("out/squares-s0.safetensors.resume");
    let mut child = avr(scratch.path(), &args).spawn().unwrap();
    let t0 = Instant::now();
    while !state.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before saving any state"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "no state saved");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let rerun = avr(scratch.path(), &args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&rerun.stderr);
    assert!(rerun.status.success(), "{log}");
    assert!(log.contains("resuming from step"), "{log}");
    assert!(
        !state.exists(),
        "the state is removed once the mask is saved"
    );
    let found = files(&scratch.path().join("out"));
    assert!(
        found == expected,
        "a resumed mask must equal the uninterrupted one"
    );
}

/// A full disk at save time (simulated with a file-size limit: writes past 256 KB fail with
/// EFBIG, as on a full disk): a clear error naming the file, exit 1, the previous file intact.
#[test]
fn a_failed_save_keeps_the_previous_file_and_says_which() {
    let scratch = tempfile::tempdir().unwrap();
    assert!(avr(scratch.path(), &mask_args())
        .status()
        .unwrap()
        .success());
    let out = scratch.path().join("out/squares-s0.safetensors");
    let before = std::fs::read(&out).unwrap();
    assert!(before.len() > 256 << 10, "the mask must exceed the limit");
    let mut args = mask_args();
    let seed = args.iter().position(|a| a == "--seed").unwrap();
    args[seed + 1] = "1".into(); // another mask, so a successful write would change the file
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "trap '' XFSZ; ulimit -f 256; exec '{}' {}",
        env!("CARGO_BIN_EXE_avr"),
        quoted.join(" ")
    );
    let run = Command::new("bash")
        .args(["-c", &script])
        .current_dir(scratch.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{log}");
    assert!(
        log.contains("squares-s0") && log.contains("avr: error"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the previous mask must be intact"
    );
    Mask::load(&out).unwrap();
}

/// Two processes writing the same output (a cluster job and its retry): the result is one
/// whole file — the uninterrupted run's — never a mix.
#[test]
fn two_runs_writing_the_same_mask_leave_one_whole_file() {
    let args = mask_args();
    let (expected, _) = reference(&args);
    let scratch = tempfile::tempdir().unwrap();
    let mut a = avr(scratch.path(), &args).spawn().unwrap();
    let mut b = avr(scratch.path(), &args).spawn().unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let found = files(&scratch.path().join("out"));
    assert!(
        found == expected,
        "two writers must leave the one run's bytes: {:?}",
        found.keys()
    );
}
