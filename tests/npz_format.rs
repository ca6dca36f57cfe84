//! The `.npz` reader and writer against the originals' files and against numpy itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use avr_modularity::data::npz::{inspect, AvrProblem, Packing};
use avr_modularity::data::{AvrDataset, Split};
use avr_modularity::fixtures::require_fixtures;

fn npz_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            npz_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "npz") {
            out.push(path);
        }
    }
}

#[test]
fn reads_every_fixture_problem_and_rewrites_it_byte_compatibly() {
    let fixtures = require_fixtures().unwrap();
    let mut files = Vec::new();
    for dir in ["iraven", "raven", "seed/datasets"] {
        npz_files(&fixtures.join(dir), &mut files);
    }
    assert_eq!(files.len(), 42 + 21 + 24 * 3 + 70, "fixture count changed");
    for path in &files {
        let p = AvrProblem::read(path).unwrap();
        assert_eq!(
            (p.side, p.image.len()),
            (160, 16 * 160 * 160),
            "{}",
            path.display()
        );
        assert!(p.configuration().is_some(), "{}", path.display());
        // Everything but zip timestamps is reproduced: same members, same NPY bytes.
        let original = std::fs::read(path).unwrap();
        let ours = p.to_npz_bytes();
        assert_eq!(
            ours.len(),
            original.len(),
            "{}: size differs",
            path.display()
        );
        let (a, b) = (
            avr_modularity::data::npz::read_zip(path, &original).unwrap(),
            avr_modularity::data::npz::read_zip(path, &ours).unwrap(),
        );
        assert_eq!(a, b, "{}: members differ", path.display());
    }
}

#[test]
fn inspect_reports_keys_dtypes_shapes_and_configuration() {
    let path = require_fixtures()
        .unwrap()
        .join("iraven/distribute_four/RAVEN_6_val.npz");
    let s = inspect(&path).unwrap();
    assert_eq!(
        s.keys,
        [
            "target",
            "predict",
            "image",
            "meta_matrix",
            "meta_structure",
            "meta_target",
            "structure"
        ]
    );
    assert_eq!(s.dtypes[2], "|u1");
    assert_eq!(s.dtypes[6], "|S15");
    assert_eq!(s.shapes[2], vec![16, 160, 160]);
    assert_eq!(s.configuration.as_deref(), Some("distribute_four"));
    assert_eq!(
        s.target, s.predict,
        "the generator's solver is right on I-RAVEN"
    );
}

#[test]
fn both_folder_layouts_are_scanned_with_the_right_splits() {
    let fixtures = require_fixtures().unwrap();
    let iraven = AvrDataset::open(fixtures.join("iraven")).unwrap();
    assert_eq!(iraven.len(), 42);
    assert_eq!(iraven.select(&[Split::Val], None).len(), 14);
    assert_eq!(
        iraven
            .select(&[Split::Test], Some(&["center_single"]))
            .len(),
        2
    );
    let seed = AvrDataset::open(fixtures.join("seed/datasets/originals")).unwrap();
    assert_eq!(
        (
            seed.select(&[Split::Train], None).len(),
            seed.select(&[Split::Val], None).len(),
            seed.select(&[Split::Test], None).len()
        ),
        (3, 7, 14)
    );
}

fn corrupt(name: &str, edit: impl Fn(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let source = require_fixtures()
        .unwrap()
        .join("iraven/center_single/RAVEN_0_train.npz");
    let mut bytes = std::fs::read(source).unwrap();
    edit(&mut bytes);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

#[test]
fn bad_files_name_the_file_and_what_is_wrong() {
    let (_d, truncated) = corrupt("truncated.npz", |b| b.truncate(200_000));
    let e = AvrProblem::read(&truncated).unwrap_err().to_string();
    assert!(
        e.contains("truncated.npz") && e.contains("truncated"),
        "{e}"
    );

    let (_d, not_zip) = corrupt("notzip.npz", |b| b[..4].copy_from_slice(b"JUNK"));
    let e = AvrProblem::read(&not_zip).unwrap_err().to_string();
    assert!(e.contains("notzip.npz") && e.contains("not a zip"), "{e}");

    let mut p = AvrProblem::read(
        require_fixtures()
            .unwrap()
            .join("iraven/center_single/RAVEN_0_train.npz"),
    )
    .unwrap();
    p.meta_target.push(0); // wrong shape (10,)
    let dir = tempfile::tempdir().unwrap();
    let wrong_shape = dir.path().join("shape.npz");
    p.write(&wrong_shape).unwrap();
    let e = AvrProblem::read(&wrong_shape).unwrap_err().to_string();
    assert!(
        e.contains("shape.npz") && e.contains("'meta_target'") && e.contains("shape [10]"),
        "{e}"
    );
}

/// Runs a Python `script` with numpy from the project venv on `args`; its failure fails the test.
fn run_numpy(script: &str, args: &[&Path]) {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "run `make setup` first: {} is missing",
        python.display()
    );
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "numpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// numpy (from the project venv) must load what we write with identical arrays, and we must read
/// what numpy writes.
#[test]
fn numpy_round_trip_in_both_directions() {
    let source = require_fixtures()
        .unwrap()
        .join("raven/up_center_single_down_center_single/RAVEN_8_test.npz");
    let problem = AvrProblem::read(&source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.npz");
    let theirs = dir.path().join("theirs.npz");
    problem.write(&ours).unwrap();
    let script = r#"
import sys, numpy as np
src, ours, theirs = sys.argv[1:4]
a, b = np.load(src), np.load(ours)
assert sorted(a.files) == sorted(b.files), (a.files, b.files)
for k in a.files:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all(), k
np.savez(theirs, **{k: a[k] for k in a.files})
print("ok")
"#;
    run_numpy(script, &[&source, &ours, &theirs]);
    assert_eq!(AvrProblem::read(&theirs).unwrap(), problem);
}

/// A deflated problem (`avr generate --compress`) is the same problem to numpy and to us, and
/// numpy's own `savez_compressed` files (zlib's dynamic Huffman codes) read the same too.
#[test]
fn deflated_files_round_trip_through_numpy_in_both_directions() {
    let source = require_fixtures()
        .unwrap()
        .join("iraven/distribute_nine/RAVEN_8_test.npz");
    let problem = AvrProblem::read(&source).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours.npz"), dir.path().join("theirs.npz"));
    problem.write_generated(&ours, Packing::Deflated).unwrap();
    let stored = std::fs::metadata(&source).unwrap().len();
    let deflated = std::fs::metadata(&ours).unwrap().len();
    assert!(
        deflated * 8 < stored,
        "deflated {deflated} bytes against {stored} stored"
    );
    let script = r#"
import sys, zipfile, numpy as np
src, ours, theirs = sys.argv[1:4]
assert zipfile.ZipFile(ours).getinfo("image.npy").compress_type == zipfile.ZIP_DEFLATED
assert zipfile.ZipFile(ours).testzip() is None
a, b = np.load(src), np.load(ours)
assert sorted(a.files) == sorted(b.files), (a.files, b.files)
for k in a.files:
    assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and (a[k] == b[k]).all(), k
np.savez_compressed(theirs, **{k: a[k] for k in a.files})
print("ok")
"#;
    run_numpy(script, &[&source, &ours, &theirs]);
    assert_eq!(AvrProblem::read(&ours).unwrap(), problem);
    assert_eq!(AvrProblem::read(&theirs).unwrap(), problem);
}

/// A folder of deflated problems gives the stored folder's batches exactly, at 160 and 80 px.
#[test]
fn deflated_and_stored_folders_give_identical_batches() {
    let fixtures = require_fixtures().unwrap().join("iraven");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures.join("center_single")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "npz") {
            let to = dir
                .path()
                .join("center_single")
                .join(path.file_name().unwrap());
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let p = AvrProblem::read(&path).unwrap();
            p.write_generated(&to, Packing::Deflated).unwrap();
        }
    }
    let stored = AvrDataset::open(&fixtures).unwrap();
    let stored = stored.select(
        &[Split::Train, Split::Val, Split::Test],
        Some(&["center_single"]),
    );
    let deflated = AvrDataset::open(dir.path()).unwrap();
    assert_eq!(deflated.len(), stored.len());
    assert!(deflated.len() >= 6);
    let indices: Vec<usize> = (0..deflated.len()).collect();
    for resize in [None, Some(80)] {
        let options = avr_modularity::data::dataset::BatchOptions {
            resize,
            ..Default::default()
        };
        let device = tch::Device::Cpu;
        let a = stored.batch(&indices, options, device).unwrap();
        let b = deflated.batch(&indices, options, device).unwrap();
        assert!(
            a.images.equal(&b.images),
            "resize {resize:?}: pixels differ"
        );
        assert!(
            a.targets.equal(&b.targets),
            "resize {resize:?}: targets differ"
        );
    }
}

/// A damaged deflated member is an error naming the file, never a panic or a wrong image.
#[test]
fn damaged_deflated_members_name_the_file() {
    let source = require_fixtures()
        .unwrap()
        .join("iraven/center_single/RAVEN_0_train.npz");
    let bytes = AvrProblem::read(&source)
        .unwrap()
        .to_npz_bytes_packed(Packing::Deflated);
    let image_at = bytes.windows(9).position(|w| w == b"image.npy").unwrap() + 9;
    let dir = tempfile::tempdir().unwrap();
    let damage = |name: &str, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        edit(&mut b);
        let path = dir.path().join(name);
        std::fs::write(&path, b).unwrap();
        AvrProblem::read(&path).unwrap_err().to_string()
    };
    let flipped = damage("flipped.npz", &|b| b[image_at + 500] ^= 0x55);
    assert!(
        flipped.contains("flipped.npz") && flipped.contains("'image.npy'"),
        "{flipped}"
    );
    // The central directory's "original size" of image.npy claims 4 GB.
    let entry_of_image = (0..bytes.len() - 55)
        .filter(|&i| bytes[i..].starts_with(b"PK\x01\x02"))
        .find(|&i| bytes[i + 46..].starts_with(b"image.npy"))
        .unwrap();
    let huge = damage("huge.npz", &|b| {
        b[entry_of_image + 24..entry_of_image + 28].copy_from_slice(&0xfff0_0000u32.to_le_bytes())
    });
    assert!(
        huge.contains("huge.npz") && huge.contains("corrupt"),
        "{huge}"
    );
}

#[test]
fn integer_downscaling_equals_area_resizing() {
    use avr_modularity::data::dataset::BatchOptions;
    let fixtures = avr_modularity::fixtures::require_fixtures().unwrap();
    let ds = avr_modularity::data::AvrDataset::open(fixtures.join("iraven")).unwrap();
    let fast = ds
        .batch(
            &[0, 1, 2],
            BatchOptions {
                resize: Some(80),
                transpose_panels: true,
                ..Default::default()
            },
            tch::Device::Cpu,
        )
        .unwrap();
    let full = ds
        .batch(
            &[0, 1, 2],
            BatchOptions {
                transpose_panels: true,
                ..Default::default()
            },
            tch::Device::Cpu,
        )
        .unwrap();
    let reference = full.images.adaptive_avg_pool2d([80, 80]);
    assert_eq!(fast.images.size(), vec![3, 16, 80, 80]);
    let diff = (fast.images - reference).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "max difference {diff}");
}

/// The run-length deflate coder against an independent inflater (miniz_oxide, through flate2) on
/// every match length, every literal, noise, and real panels.
#[test]
fn run_length_deflate_inflates_to_its_input() {
    use avr_modularity::data::deflate::deflate_runs;
    use std::io::Read;
    let inflate = |packed: &[u8]| {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(packed)
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new(), vec![7], (0..=255).collect()];
    for run in 0..=600 {
        let mut v = vec![255u8; run];
        v.extend([0, 0, 1, 255]);
        inputs.push(v);
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    inputs.push(
        (0..100_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 3) as u8 * 127
            })
            .collect(),
    );
    let panel = AvrProblem::read(
        require_fixtures()
            .unwrap()
            .join("iraven/distribute_nine/RAVEN_8_test.npz"),
    )
    .unwrap();
    inputs.push(panel.image.clone());
    for input in &inputs {
        let packed = deflate_runs(input);
        assert_eq!(inflate(&packed), *input, "input of {} bytes", input.len());
    }
    let packed = deflate_runs(&panel.image).len();
    assert!(
        packed * 8 < panel.image.len(),
        "a panel packs to {packed} bytes"
    );
}
