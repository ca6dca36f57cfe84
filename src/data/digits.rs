//! Handwritten digits for the toumei graph-modularity experiments
//! (`../shared/specs/graph-modularity.md` §4): scikit-learn's bundled 8×8 digits (1,797 real
//! handwritten digits, `sklearn/datasets/data/digits.csv.gz`, installed by `make setup`) and
//! MNIST's IDX files for users who have them, plus seeded train/test splits and digit pairs.
//!
//! MNIST cannot be downloaded on the machines this toolkit is built on, so the experiments run
//! on the 8×8 set by default; its models are smaller than toumei's 784-392-10, so Q values
//! compare with toumei's in direction, not digit for digit.

use std::io::Read;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::rng::Rng;
use crate::{Error, Result};

/// Labelled square digit images, pixels scaled to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Digits {
    /// `len × side²` pixels, row-major per image.
    pub images: Vec<f32>,
    /// The digit of every image, `0..=9`.
    pub labels: Vec<u8>,
    /// Image side in pixels (8 for scikit-learn's set, 28 for MNIST).
    pub side: usize,
    /// Where the images were read from (named in errors and tables).
    pub source: PathBuf,
}

/// Where scikit-learn's digits are looked for: `AVR_DIGITS`, else inside `AVR_VENV` (or the
/// cache's venv that `make setup` builds).
pub fn sklearn_digits_path() -> PathBuf {
    if let Ok(path) = std::env::var("AVR_DIGITS") {
        return PathBuf::from(path);
    }
    let venv = std::env::var("AVR_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let cache = std::env::var("AVR_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default())
                        .join(".cache/avr-modularity")
                });
            cache.join("venv")
        });
    venv.join("lib/python3.11/site-packages/sklearn/datasets/data/digits.csv.gz")
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| Error::bad_file(path, format!("not a readable gzip file: {e}")))?;
    Ok(out)
}

impl Digits {
    /// scikit-learn's 8×8 digits from where `make setup` put them ([`sklearn_digits_path`]).
    pub fn sklearn() -> Result<Digits> {
        let path = sklearn_digits_path();
        if !path.exists() {
            return Err(Error::bad_file(
                &path,
                "scikit-learn's digits are not there: run `make setup` (it installs \
                 scikit-learn's wheel into the venv) or set AVR_DIGITS to digits.csv(.gz)",
            ));
        }
        Self::load_sklearn(&path)
    }

    /// Reads scikit-learn's `digits.csv(.gz)`: one image per line, 64 pixel values `0..=16`
    /// then the label.
    pub fn load_sklearn(path: impl AsRef<Path>) -> Result<Digits> {
        let path = path.as_ref();
        let bytes = read_maybe_gzip(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::bad_file(path, "digits CSV is not UTF-8 text"))?;
        let mut digits = Digits {
            images: Vec::new(),
            labels: Vec::new(),
            side: 8,
            source: path.to_path_buf(),
        };
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |what: String| Error::bad_file(path, format!("line {}: {what}", i + 1));
            let values = line
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not a number ({e})")))?;
            if values.len() != 65 {
                return Err(bad(format!(
                    "{} values, expected 64 pixels and a label",
                    values.len()
                )));
            }
            if let Some(v) = values[..64].iter().find(|v| !(0.0..=16.0).contains(*v)) {
                return Err(bad(format!("pixel value {v} outside 0..=16")));
            }
            let label = values[64];
            if label.fract() != 0.0 || !(0.0..=9.0).contains(&label) {
                return Err(bad(format!("label {label} is not a digit")));
            }
            digits
                .images
                .extend(values[..64].iter().map(|v| (*v / 16.0) as f32));
            digits.labels.push(label as u8);
        }
        if digits.labels.is_empty() {
            return Err(Error::bad_file(path, "no digits in the file"));
        }
        Ok(digits)
    }

    /// Reads MNIST-style IDX files (images: magic `0x00000803`, `u8` `n × rows × cols`;
    /// labels: magic `0x00000801`, `u8` `n`), gzipped or not. Images must be square.
    pub fn load_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Digits> {
        let (images, labels) = (images.as_ref(), labels.as_ref());
        let (dims, pixels) = read_idx(images, 3)?;
        let (label_dims, label_bytes) = read_idx(labels, 1)?;
        if dims[1] != dims[2] {
            return Err(Error::bad_file(
                images,
                format!("images are {}×{}, expected square ones", dims[1], dims[2]),
            ));
        }
        if label_dims[0] != dims[0] {
            return Err(Error::bad_file(
                labels,
                format!(
                    "{} labels for {} images in {}",
                    label_dims[0],
                    dims[0],
                    images.display()
                ),
            ));
        }
        if let Some(l) = label_bytes.iter().find(|l| **l > 9) {
            return Err(Error::bad_file(labels, format!("label {l} is not a digit")));
        }
        Ok(Digits {
            images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            labels: label_bytes,
            side: dims[1],
            source: images.to_path_buf(),
        })
    }

    /// Writes the digits as the two IDX files [`Digits::load_idx`] reads (pixels rounded to
    /// `u8`), atomically.
    pub fn write_idx(&self, images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<()> {
        let header = |magic: u32, dims: &[usize]| {
            let mut out = magic.to_be_bytes().to_vec();
            dims.iter()
                .for_each(|d| out.extend((*d as u32).to_be_bytes()));
            out
        };
        let mut image_bytes = header(0x0803, &[self.len(), self.side, self.side]);
        image_bytes.extend(
            self.images
                .iter()
                .map(|p| (p * 255.0).round().clamp(0.0, 255.0) as u8),
        );
        let mut label_bytes = header(0x0801, &[self.len()]);
        label_bytes.extend(&self.labels);
        crate::files::write_atomic(images.as_ref(), &image_bytes)?;
        crate::files::write_atomic(labels.as_ref(), &label_bytes)
    }

    /// Rows of the inline table: source, images, side, images per digit.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let counts: Vec<String> = (0..10u8)
            .map(|d| self.labels.iter().filter(|&&l| l == d).count().to_string())
            .collect();
        vec![
            ("source", crate::files::shown_path(&self.source)),
            ("images", self.len().to_string()),
            ("side", format!("{0}×{0} px", self.side)),
            ("images of 0…9", counts.join(" ")),
        ]
    }

    /// Inline display in evcxr: a two-column table.
    pub fn evcxr_display(&self) {
        crate::display::display_key_values(&self.summary());
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image, `side²`.
    pub fn pixels(&self) -> usize {
        self.side * self.side
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Digits {
        let d = self.pixels();
        Digits {
            images: indices
                .iter()
                .flat_map(|&i| self.images[i * d..(i + 1) * d].iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            side: self.side,
            source: self.source.clone(),
        }
    }

    /// A seeded split into `(train, test)`, `test_fraction` of every digit's images held out
    /// (stratified, so both parts keep the digit frequencies).
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<(Digits, Digits)> {
        if !(0.0..1.0).contains(&test_fraction) {
            return Err(Error::Config(format!(
                "test fraction {test_fraction} outside [0, 1)"
            )));
        }
        let mut rng = Rng::new(seed).fork("digits/split");
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for digit in 0..10u8 {
            let mut of_digit: Vec<usize> = (0..self.len())
                .filter(|&i| self.labels[i] == digit)
                .collect();
            rng.shuffle(&mut of_digit);
            let held = (of_digit.len() as f64 * test_fraction).round() as usize;
            test.extend_from_slice(&of_digit[..held]);
            train.extend_from_slice(&of_digit[held..]);
        }
        rng.shuffle(&mut train);
        rng.shuffle(&mut test);
        if train.is_empty() || test.is_empty() {
            return Err(Error::NotEnough(format!(
                "{}: {} images give an empty train or test part at test fraction {test_fraction}",
                self.source.display(),
                self.len()
            )));
        }
        Ok((self.subset(&train), self.subset(&test)))
    }

    /// Images `(n, side²)` and labels `(n,)` (int64) of `indices`, on `device`.
    pub fn batch(&self, indices: &[usize], device: Device) -> (Tensor, Tensor) {
        let sub = self.subset(indices);
        let x = Tensor::from_slice(&sub.images)
            .reshape([indices.len() as i64, self.pixels() as i64])
            .to_device(device);
        let labels: Vec<i64> = sub.labels.iter().map(|&l| l as i64).collect();
        (x, Tensor::from_slice(&labels).to_device(device))
    }

    /// `n` random pairs: inputs `(n, 2·side²)` (the two images side by side, as toumei
    /// concatenates two flattened MNIST images) and both digits `(n,)` each (int64).
    pub fn pairs(&self, n: usize, rng: &mut Rng, device: Device) -> DigitPairs {
        let first: Vec<usize> = (0..n).map(|_| rng.below(self.len())).collect();
        let second: Vec<usize> = (0..n).map(|_| rng.below(self.len())).collect();
        self.pairs_of(&first, &second, device)
    }

    /// The pairs `(first[i], second[i])`.
    pub fn pairs_of(&self, first: &[usize], second: &[usize], device: Device) -> DigitPairs {
        let (a, da) = self.batch(first, device);
        let (b, db) = self.batch(second, device);
        DigitPairs {
            x: Tensor::cat(&[a, b], 1),
            first: da,
            second: db,
        }
    }

    /// Each image once as the first digit of a pair, with a random second digit: one epoch of
    /// pairs in a seeded order.
    pub fn epoch_pairs(&self, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
        let first = rng.permutation(self.len());
        let second = rng.permutation(self.len());
        (first, second)
    }
}

/// A batch of digit pairs.
#[derive(Debug)]
pub struct DigitPairs {
    /// `(n, 2·side²)` pixels: the first image's, then the second's.
    pub x: Tensor,
    /// The first digits `(n,)`, int64.
    pub first: Tensor,
    /// The second digits `(n,)`, int64.
    pub second: Tensor,
}

impl DigitPairs {
    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.x.size()[0] as usize
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `a·d₁ + b·d₂` as float targets `(n, 1)`.
    pub fn weighted_sum(&self, a: f64, b: f64) -> Tensor {
        (self.first.to_kind(Kind::Float) * a + self.second.to_kind(Kind::Float) * b).unsqueeze(1)
    }
}

/// Reads one IDX file of unsigned bytes with `rank` dimensions: `(dims, data)`.
fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let bytes = read_maybe_gzip(path)?;
    let bad = |m: String| Error::bad_file(path, m);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes, shorter than an IDX magic number",
            bytes.len()
        )));
    }
    let (zero, kind, file_rank) = (u16::from_be_bytes([bytes[0], bytes[1]]), bytes[2], bytes[3]);
    if zero != 0 || kind != 0x08 {
        return Err(bad(format!(
            "magic {:02x}{:02x}{:02x}{:02x} is not an IDX file of unsigned bytes",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if file_rank as usize != rank {
        return Err(bad(format!("{file_rank} dimensions, expected {rank}")));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(bad(format!(
            "{} bytes, shorter than its IDX header",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let at = 4 + 4 * i;
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize
        })
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    if bytes.len() - header != expected {
        return Err(bad(format!(
            "{} data bytes, dimensions {dims:?} need {expected}",
            bytes.len() - header
        )));
    }
    if dims.contains(&0) {
        return Err(bad(format!("dimensions {dims:?} hold no data")));
    }
    Ok((dims, bytes[header..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idx_files_round_trip_and_bad_headers_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let digits = Digits {
            images: (0..3 * 16).map(|i| (i % 7) as f32 * 17.0 / 255.0).collect(),
            labels: vec![3, 0, 9],
            side: 4,
            source: PathBuf::from("made"),
        };
        let (img, lab) = (dir.path().join("img.idx"), dir.path().join("lab.idx"));
        digits.write_idx(&img, &lab).unwrap();
        let back = Digits::load_idx(&img, &lab).unwrap();
        assert_eq!(back.labels, digits.labels);
        assert_eq!(back.side, 4);
        for (a, b) in back.images.iter().zip(&digits.images) {
            assert!((a - b).abs() < 1e-6);
        }
        // The same files gzipped read the same.
        let gz = dir.path().join("img.idx.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &std::fs::read(&img).unwrap()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(Digits::load_idx(&gz, &lab).unwrap().images, back.images);
        // A truncated file and swapped files are errors naming the file.
        let bytes = std::fs::read(&img).unwrap();
        std::fs::write(&img, &bytes[..bytes.len() - 1]).unwrap();
        let e = Digits::load_idx(&img, &lab).unwrap_err().to_string();
        assert!(e.contains("img.idx") && e.contains("data bytes"), "{e}");
        let e = Digits::load_idx(&lab, &lab).unwrap_err().to_string();
        assert!(e.contains("lab.idx") && e.contains("dimensions"), "{e}");
    }

    #[test]
    fn split_is_stratified_seeded_and_disjoint() {
        let digits = Digits {
            images: (0..200 * 4).map(|i| i as f32).collect(),
            labels: (0..200).map(|i| (i % 10) as u8).collect(),
            side: 2,
            source: PathBuf::from("made"),
        };
        let (train, test) = digits.split(0.3, 1).unwrap();
        assert_eq!((train.len(), test.len()), (140, 60));
        for d in 0..10 {
            assert_eq!(test.labels.iter().filter(|&&l| l == d).count(), 6);
        }
        let first_pixels = |s: &Digits| -> Vec<f32> { s.images.chunks(4).map(|c| c[0]).collect() };
        let (a, b) = (first_pixels(&train), first_pixels(&test));
        assert!(a.iter().all(|p| !b.contains(p)), "train and test overlap");
        assert_eq!(digits.split(0.3, 1).unwrap().1, test);
        assert_ne!(digits.split(0.3, 2).unwrap().1, test);
    }
}
