//! Corruption sweeps: every reader against truncated files, flipped bytes, an empty file and a
//! folder where the file belongs. Each case must end in an `Err` whose message names the file
//! — or, for a flip the format cannot see (a zip timestamp, padding), load exactly the original
//! content — never a panic and never a hang (each case runs on its own thread under a time
//! limit). Formats with a checksum (`.npz` members' CRC-32; our safetensors, whose sidecars
//! record the file's CRC-32) must never load changed content; the study's pickles, our JSON
//! sidecars and `metrics.csv` carry none, so a flipped digit there can load as another value:
//! those are counted and printed, not hidden (TESTING.md quotes the counts).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use avr_modularity::checkpoint::{save_checkpoint, Checkpoint, CheckpointSidecar};
use avr_modularity::data::npz::{
    crc32, image_and_target, npy_view, write_npy, write_zip, zip_slices, AvrProblem,
};
use avr_modularity::data::{AvrDataset, Shape};
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::masking::engine::{params_hash, train_mask, MaskTask, MaskTrainConfig};
use avr_modularity::masking::Mask;
use avr_modularity::model::{OfficialSclConfig, SclModel, SclVariant};
use avr_modularity::rng::Rng;
use avr_modularity::train::trainer::read_metrics_csv;
use tch::Device;

/// What a reader made of a file: a fingerprint of what it loaded, or its error message.
type Reader = fn(&Path) -> avr_modularity::Result<String>;

/// How one sweep's cases ended.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    errors: usize,
    /// Loaded, with exactly the original content (the damage hit bytes nobody reads).
    unchanged: usize,
    /// Loaded, with different content: only allowed where the format has no checksum.
    changed: usize,
}

/// Runs `read` on `path` on its own thread: `Ok(fingerprint)`, `Err(message)`, or a panic or
/// a hang (20 s), which fail the test with the case's name.
fn attempt(read: Reader, path: &Path, case: &str) -> Result<String, String> {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(read(&owned).map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(outcome) => {
            worker.join().expect("the reader's thread ended");
            outcome
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{case}: the reader hung (> 20 s)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{case}: the reader panicked"),
    }
}

/// The damaged copies of `original` that every sweep tries: truncations (the first and last
/// 48 offsets, and 120 spread over the file), 120 seeded 4-byte flips, and an empty file.
fn damaged_copies(original: &[u8], seed: u64) -> Vec<(String, Vec<u8>)> {
    let n = original.len();
    let mut cuts: Vec<usize> = (0..48.min(n)).chain(n.saturating_sub(48)..n).collect();
    cuts.extend((0..120).map(|i| i * n / 120));
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<(String, Vec<u8>)> = cuts
        .into_iter()
        .map(|c| (format!("truncated at {c}"), original[..c].to_vec()))
        .collect();
    let mut rng = Rng::new(seed).fork("flips");
    for _ in 0..120 {
        let at = rng.below(n.saturating_sub(4).max(1));
        let mut bytes = original.to_vec();
        bytes[at..(at + 4).min(n)]
            .iter_mut()
            .for_each(|b| *b ^= 0x5a);
        out.push((format!("4 bytes flipped at {at}"), bytes));
    }
    out.push(("empty".into(), Vec::new()));
    out
}

/// Sweeps `target` with every damaged copy, restoring it afterwards, then a folder where the
/// file belongs; `read` opens `through` (the weights, when `target` is their sidecar) and must
/// name `target` in every error. `checksummed`: changed content must never load.
fn sweep_through(target: &Path, through: &Path, read: Reader, checksummed: bool) -> Tally {
    let original = std::fs::read(target).unwrap();
    let name = target.file_name().unwrap().to_string_lossy().into_owned();
    let expected = read(through).unwrap();
    let mut tally = Tally::default();
    let mut judge = |case: &str, outcome: Result<String, String>| {
        tally.cases += 1;
        match outcome {
            Err(message) => {
                assert!(
                    message.contains(&name),
                    "{name}, {case}: '{message}' names no file"
                );
                tally.errors += 1;
            }
            Ok(found) if found == expected => tally.unchanged += 1,
            Ok(_) => {
                assert!(
                    !checksummed,
                    "{name}, {case}: changed content loaded without an error"
                );
                tally.changed += 1;
            }
        }
    };
    for (case, bytes) in damaged_copies(&original, crc32(&original) as u64) {
        std::fs::write(target, &bytes).unwrap();
        judge(&case, attempt(read, through, &case));
    }
    std::fs::remove_file(target).unwrap();
    std::fs::create_dir(target).unwrap();
    judge("a folder", attempt(read, through, "a folder"));
    std::fs::remove_dir(target).unwrap();
    std::fs::write(target, &original).unwrap();
    eprintln!("{name}: {tally:?}");
    if checksummed {
        assert!(
            tally.errors > tally.cases / 2,
            "{name}: most damage must be refused: {tally:?}"
        );
    }
    tally
}

/// [`sweep_through`] of a file read by itself.
fn sweep(target: &Path, read: Reader, checksummed: bool) -> Tally {
    sweep_through(target, target, read, checksummed)
}

fn copy_into(dir: &Path, source: &Path) -> PathBuf {
    let target = dir.join(source.file_name().unwrap());
    std::fs::copy(source, &target).unwrap();
    target
}

fn problem_fixture() -> PathBuf {
    require_fixtures()
        .unwrap()
        .join("iraven/center_single/RAVEN_0_train.npz")
}

fn read_problem(path: &Path) -> avr_modularity::Result<String> {
    let p = AvrProblem::read(path)?;
    Ok(format!("{:08x}", crc32(&p.to_npz_bytes())))
}

/// The training path: the loader reads only the image and the target.
fn read_for_training(path: &Path) -> avr_modularity::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| avr_modularity::Error::io(path, e))?;
    let (image, side, target) = image_and_target(path, &bytes)?;
    Ok(format!("{:08x} {side} {target}", crc32(&image)))
}

fn read_checkpoint(path: &Path) -> avr_modularity::Result<String> {
    params_hash(&Checkpoint::load(path)?.model.params)
}

fn read_mask(path: &Path) -> avr_modularity::Result<String> {
    let m = Mask::load(path)?;
    Ok(format!(
        "{} {:?} {}",
        m.name,
        m.alpha,
        params_hash(&m.logits)?
    ))
}

fn read_metrics(path: &Path) -> avr_modularity::Result<String> {
    Ok(format!("{:?}", read_metrics_csv(path)?))
}

#[test]
fn npz_problems_refuse_every_damaged_copy() {
    let dir = tempfile::tempdir().unwrap();
    let target = copy_into(dir.path(), &problem_fixture());
    let full = sweep(&target, read_problem, true);
    let training = sweep(&target, read_for_training, true);
    // Only zip metadata (timestamps, version fields) can be hit without an error.
    assert!(
        full.unchanged + training.unchanged < full.cases / 10,
        "{full:?} {training:?}"
    );
}

/// Every byte of the zip's central directory and end record (the archive's map, where a bad
/// length or offset used to index past the end) set to 0x00, 0xff and +1 in turn.
#[test]
fn every_byte_of_the_zip_directory_damaged_is_refused() {
    let original = std::fs::read(problem_fixture()).unwrap();
    let path = Path::new("RAVEN_0_train.npz");
    let expected = read_for_training_bytes(path, &original).unwrap();
    let tail = original.len() - 600;
    let (mut cases, mut errors) = (0, 0);
    for at in tail..original.len() {
        for edit in [|_: u8| 0u8, |_: u8| 0xff, |b: u8| b.wrapping_add(1)] {
            let mut bytes = original.clone();
            bytes[at] = edit(bytes[at]);
            cases += 1;
            match std::panic::catch_unwind(|| read_for_training_bytes(path, &bytes)) {
                Err(_) => panic!("byte {at} edited: the reader panicked"),
                Ok(Err(e)) => {
                    assert!(e.contains("RAVEN_0_train.npz"), "{e}");
                    errors += 1;
                }
                Ok(Ok(found)) => assert_eq!(found, expected, "byte {at}: changed content read"),
            }
        }
    }
    eprintln!("zip directory: {cases} cases, {errors} errors, the rest read unchanged");
    assert!(errors > cases / 3, "{errors} of {cases}");
}

fn read_for_training_bytes(path: &Path, bytes: &[u8]) -> Result<String, String> {
    let (image, side, target) = image_and_target(path, bytes).map_err(|e| e.to_string())?;
    Ok(format!("{:08x} {side} {target}", crc32(&image)))
}

/// Hand-made members that used to panic: a one-character dtype, a version-2 header cut at
/// 10 bytes, a zero-sized string type, panels of side 0, and a member name running past the
/// end of the archive.
#[test]
fn malformed_npy_members_are_errors() {
    let mut v2 = write_npy("<i8", &[], &3i64.to_le_bytes());
    v2[6] = 2;
    v2.truncate(10);
    assert!(npy_view(&v2).unwrap_err().contains("truncated"));
    let short = write_npy("|", &[1], &[0]);
    assert!(npy_view(&short).unwrap_err().contains("dtype"));
    let empty_strings = write_npy("|S0", &[2], &[]);
    assert!(npy_view(&empty_strings).unwrap_err().contains("dtype"));
    let target = write_npy("<i8", &[], &3i64.to_le_bytes());
    let zip = write_zip(&[
        ("image.npy", write_npy("|u1", &[16, 0, 0], &[])),
        ("target.npy", target),
    ]);
    let path = Path::new("side0.npz");
    let err = image_and_target(path, &zip).unwrap_err().to_string();
    assert!(err.contains("side0.npz") && err.contains("H > 0"), "{err}");
    // The central-directory entry's name length pointed past the end of the file.
    let mut zip = write_zip(&[("target.npy", write_npy("<i8", &[], &3i64.to_le_bytes()))]);
    let entry = zip.len() - 22 - 46 - "target.npy".len();
    zip[entry + 28..entry + 30].copy_from_slice(&0xffffu16.to_le_bytes());
    let err = zip_slices(Path::new("name.npz"), &zip)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("name.npz") && err.contains("member name"),
        "{err}"
    );
}

#[test]
fn a_damaged_problem_reaches_the_training_loop_as_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("center_single");
    std::fs::create_dir(&config).unwrap();
    let target = copy_into(&config, &problem_fixture());
    let mut bytes = std::fs::read(&target).unwrap();
    bytes[200_000] ^= 0xff; // inside the image member: only its CRC-32 can tell
    std::fs::write(&target, &bytes).unwrap();
    let data = AvrDataset::open(dir.path()).unwrap();
    let mut loader = avr_modularity::data::loader::Loader::new(
        &data,
        vec![vec![0]],
        &Default::default(),
        Device::Cpu,
    );
    let err = loader.next().unwrap().unwrap_err().to_string();
    assert!(
        err.contains("RAVEN_0_train.npz") && err.contains("CRC-32"),
        "{err}"
    );
    // Indices past the set are an error naming the folder, not an index panic.
    let err = data
        .batch(&[5], Default::default(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("problem 5") && err.contains("holds 1"),
        "{err}"
    );
}

/// A small official SCL (40 px panels) and a sidecar describing it, ready to save.
fn small_checkpoint() -> (SclModel, CheckpointSidecar) {
    let model = SclModel::init(
        SclVariant::Official(OfficialSclConfig {
            image_size: 40,
            ..Default::default()
        }),
        3,
        Device::Cpu,
    );
    let sidecar = CheckpointSidecar {
        variant: "official".into(),
        image_size: 40,
        model: Some(model.variant.clone()),
        transpose_panels: false,
        step: 10,
        measured_val_accuracy: 0.5,
        val_problems: 100,
        train_config: serde_json::json!({}),
        code_version: "test".into(),
        evaluations: Vec::new(),
        weights_crc32: None,
    };
    (model, sidecar)
}

#[test]
fn our_checkpoints_and_their_sidecars_refuse_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (model, sidecar) = small_checkpoint();
    let weights = save_checkpoint(&model, dir.path(), "ck", &sidecar).unwrap();
    sweep(&weights, read_checkpoint, true);
    let side = sweep_through(
        &weights.with_extension("json"),
        &weights,
        read_checkpoint,
        false,
    );
    eprintln!("checkpoint sidecar: {side:?}");
    // A sidecar whose architecture cannot exist is an error, not a panic in param_specs.
    let text = std::fs::read_to_string(weights.with_extension("json")).unwrap();
    std::fs::write(
        weights.with_extension("json"),
        text.replace("\"groups\": 10", "\"groups\": 0"),
    )
    .unwrap();
    let err = Checkpoint::load(&weights).unwrap_err().to_string();
    assert!(
        err.contains("ck.safetensors") && err.contains("positive"),
        "{err}"
    );
}

#[test]
fn our_masks_and_their_sidecars_refuse_damage() {
    let fixtures = require_fixtures().unwrap();
    let ckpt = Checkpoint::load(fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt")).unwrap();
    let squares = AvrDataset::open(fixtures.join("seed/datasets/squares")).unwrap();
    let task = MaskTask {
        name: "squares".into(),
        shape: Some(Shape::Squares),
        fit: &squares,
        held_out: &squares,
        control: None,
    };
    let cfg = MaskTrainConfig::default()
        .with_steps(1)
        .with_batch_size(4)
        .with_samples(2)
        .with_eval_problems(4);
    let dir = tempfile::tempdir().unwrap();
    let path = train_mask(&ckpt, &task, &cfg)
        .unwrap()
        .save(dir.path())
        .unwrap();
    sweep(&path, read_mask, true);
    sweep_through(&path.with_extension("json"), &path, read_mask, false);
}

#[test]
fn the_studys_pickles_refuse_damage_without_panicking() {
    let fixtures = require_fixtures().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = copy_into(
        dir.path(),
        &fixtures.join("seed/checkpoint/SCL_pretrain_80.ckpt"),
    );
    sweep(&ckpt, read_checkpoint, false);
    let level = dir.path().join("SCL_90").join("squares");
    std::fs::create_dir_all(&level).unwrap();
    let source = std::fs::read_dir(fixtures.join("seed/binary_masks/SCL_90/squares"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mask = copy_into(&level, &source);
    sweep(&mask, read_mask, false);
}

#[test]
fn metrics_logs_refuse_damage() {
    let dir = tempfile::tempdir().unwrap();
    let target = copy_into(dir.path(), Path::new("model_ckpts/study/metrics.csv"));
    sweep(&target, read_metrics, false);
}

/// Masks of different layouts compared or plotted together: errors naming the mask, where
/// the per-tensor loops used to index past the shorter mask or libtorch broadcast.
#[test]
fn masks_of_different_layouts_are_refused_not_indexed() {
    use avr_modularity::analysis::masks::mask_stats;
    use avr_modularity::analysis::Overlap;
    use avr_modularity::masking::overlap::overlap;
    use avr_modularity::model::Params;
    use avr_modularity::plot::{spatial_distribution, weight_usage};
    use tch::Tensor;
    let mask = |name: &str, tensors: &[(&str, i64)]| {
        let mut p = Params::new();
        for (t, n) in tensors {
            p.insert(*t, Tensor::ones([*n], (tch::Kind::Float, Device::Cpu)));
        }
        Mask::new(name, p, None)
    };
    let two = mask("two", &[("a", 4), ("b", 4)]);
    let one = mask("one", &[("a", 4)]);
    let wide = mask("wide", &[("a", 8), ("b", 4)]);
    let err = spatial_distribution("x", &[mask_stats(&two), mask_stats(&one)]).unwrap_err();
    assert!(err.to_string().contains("'one'"), "{err}");
    let err = overlap(&two.binary(), &wide.binary(), Overlap::IoU).unwrap_err();
    assert!(err.to_string().contains("`a` is [4] vs [8]"), "{err}");
    let err = weight_usage(&two, &wide, None, "a").unwrap_err();
    assert!(err.to_string().contains("tensor 'a'"), "{err}");
    let empty = Mask::new("empty", Params::new(), None);
    let err = empty.apply(&two.logits, false).unwrap_err();
    assert!(err.to_string().contains("no tensors"), "{err}");
}

/// A checkpoint whose weights hold NaN (a diverged run saved by someone else's tool) is refused
/// on load with the tensor's name, so `avr eval` cannot report accuracies from it; the same for
/// a mask's logits.
#[test]
fn non_finite_weights_and_logits_are_refused() {
    use avr_modularity::checkpoint::write_safetensors_atomic;
    let dir = tempfile::tempdir().unwrap();
    let (model, sidecar) = small_checkpoint();
    let name = model.params.names()[0].clone();
    let _ = model
        .params
        .get(&name)
        .unwrap()
        .shallow_clone()
        .fill_(f64::NAN);
    let weights = save_checkpoint(&model, dir.path(), "nan", &sidecar).unwrap();
    let err = Checkpoint::load(&weights).unwrap_err().to_string();
    assert!(
        err.contains("nan.safetensors") && err.contains(&name) && err.contains("non-finite"),
        "{err}"
    );
    let mut logits = avr_modularity::model::Params::new();
    logits.insert("w", tch::Tensor::from_slice(&[1.0f32, f32::INFINITY]));
    let path = dir.path().join("inf.safetensors");
    write_safetensors_atomic(&path, &logits).unwrap();
    let err = Mask::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("inf.safetensors") && err.contains("'w'"),
        "{err}"
    );
}

/// The study manifest through its reader (`scripts/manifest.sh`, which reads KEY=VALUE lines
/// and never executes the file).
fn read_study_manifest(path: &Path) -> avr_modularity::Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/manifest.sh");
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "source \"$0\" && read_manifest \"$1\" && print_manifest",
            script,
        ])
        .arg(path)
        .output()
        .map_err(|e| avr_modularity::Error::io(path, e))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(avr_modularity::Error::Config(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
    }
}

#[test]
fn the_study_manifest_refuses_damage() {
    let dir = tempfile::tempdir().unwrap();
    let target = copy_into(dir.path(), Path::new("datasets/study/manifest.env"));
    let tally = sweep(&target, read_study_manifest, false);
    assert!(tally.errors > tally.cases / 2, "{tally:?}");
}
