//! Seeded mutation fuzzing of the two hand-written parsers, the `.npz` (zip + NPY) reader and
//! the pickle reader: real files from the fixtures, each mutated by 1–8 random edits (bit
//! flips, interesting bytes, insertions, deletions, duplicated ranges, truncation), must parse
//! or fail with an error — never panic, never take more than 5 s. `make test` runs it for
//! `AVR_FUZZ_SECONDS` (default 10) per parser; `make fuzz` for 300.

use std::path::Path;
use std::time::{Duration, Instant};

use avr_modularity::checkpoint::pickle::unpickle;
use avr_modularity::data::npz::{image_and_target, write_npy, write_zip, AvrProblem};
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::rng::Rng;

fn budget() -> Duration {
    let seconds = std::env::var("AVR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    Duration::from_secs_f64(seconds)
}

/// One random edit of `bytes`.
fn mutate_once(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let n = bytes.len().max(1);
    let at = rng.below(n).min(bytes.len());
    let last = at.min(bytes.len().saturating_sub(1));
    match rng.below(6) {
        0 if !bytes.is_empty() => bytes[last] ^= 1u8 << rng.below(8),
        1 if !bytes.is_empty() => {
            let interesting = [0u8, 0xff, 0x7f, 0x80, 0x01, 0xfe];
            bytes[last] = interesting[rng.below(interesting.len())];
        }
        2 => {
            let insert: Vec<u8> = (0..1 + rng.below(16))
                .map(|_| rng.below(256) as u8)
                .collect();
            bytes.splice(at..at, insert);
        }
        3 => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            bytes.drain(at..end);
        }
        4 => {
            let end = (at + 1 + rng.below(64)).min(bytes.len());
            let copy = bytes[at..end].to_vec();
            let to = rng.below(bytes.len().max(1)).min(bytes.len());
            bytes.splice(to..to, copy);
        }
        _ => bytes.truncate(at),
    }
}

/// Runs `parse` on mutants of `seeds` for the time budget; returns (cases, errors).
fn fuzz(label: &str, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) -> bool) -> (usize, usize) {
    let mut rng = Rng::new(11).fork(label);
    let (t0, budget) = (Instant::now(), budget());
    let (mut cases, mut errors) = (0, 0);
    while t0.elapsed() < budget {
        let mut bytes = seeds[rng.below(seeds.len())].clone();
        (0..1 + rng.below(8)).for_each(|_| mutate_once(&mut bytes, &mut rng));
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&bytes)));
        let took = started.elapsed();
        match outcome {
            Ok(ok) => errors += usize::from(!ok),
            Err(_) => {
                let dump = std::env::temp_dir().join(format!("fuzz-{label}-{cases}.bin"));
                std::fs::write(&dump, &bytes).unwrap();
                panic!(
                    "{label}: case {cases} panicked; input saved to {}",
                    dump.display()
                );
            }
        }
        assert!(
            took < Duration::from_secs(5),
            "{label}: case {cases} took {took:?}"
        );
        cases += 1;
    }
    eprintln!(
        "{label}: {cases} mutants in {:?}, {errors} refused, no panic",
        t0.elapsed()
    );
    assert!(cases > 0);
    (cases, errors)
}

#[test]
fn the_npz_reader_never_panics_on_mutated_files() {
    let fixture = require_fixtures()
        .unwrap()
        .join("iraven/center_single/RAVEN_0_train.npz");
    let small = write_zip(&[
        ("image.npy", write_npy("|u1", &[16, 2, 2], &[7; 64])),
        ("target.npy", write_npy("<i8", &[], &3i64.to_le_bytes())),
    ]);
    let seeds = [std::fs::read(fixture).unwrap(), small];
    let path = Path::new("fuzz.npz");
    let (cases, errors) = fuzz("npz", &seeds, |b| {
        let full = AvrProblem::from_bytes(path, b).is_ok();
        let training = image_and_target(path, b).is_ok();
        full && training
    });
    assert!(
        errors > cases / 2,
        "most mutants must be refused: {errors} of {cases}"
    );
}

#[test]
fn the_pickle_reader_never_panics_on_mutated_files() {
    let fixtures = require_fixtures().unwrap();
    let mask = fixtures.join("seed/binary_masks/preprocessing_masks/lights_50");
    let seeds = [std::fs::read(mask).unwrap()];
    fuzz("pickle", &seeds, |b| unpickle(b).is_ok());
}
