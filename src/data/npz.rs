//! I-RAVEN / RAVEN problem files: `.npz` = a ZIP of `.npy` members, stored exactly as the
//! original generators write them (`numpy.savez`; `../shared/fixtures/README.md` §4.3).
//!
//! The reader accepts every zip numpy writes, stored (`numpy.savez`) or deflated
//! (`numpy.savez_compressed`), including zip64 extras; the writer reproduces the originals'
//! layout: members in the order `target, predict, image, meta_matrix, meta_structure,
//! meta_target, structure`, NPY format 1.0, `structure` as NUL-padded bytes `|S<n>`. With
//! [`Packing::Deflated`] the pixels are deflated ([`super::deflate`]), 10–16× smaller.
//! Errors name the file and the key.

use std::borrow::Cow;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::files::write_atomic;
use crate::{Error, Result};

/// Side of a panel in the original files.
pub const PANEL_SIZE: usize = 160;
/// Panels per problem: 8 context + 8 candidates.
pub const PANELS: usize = 16;

/// One Raven's progressive matrix as stored in an `.npz`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AvrProblem {
    /// `(16, side, side)` uint8, row-major: panels 0–7 context, 8–15 candidates.
    #[serde(skip)]
    pub image: Vec<u8>,
    /// Panel side in pixels (160 in the originals).
    pub side: usize,
    /// Index 0..7 of the correct candidate.
    pub target: i64,
    /// The generator's heuristic solver's answer.
    pub predict: i64,
    /// `(8, 9)` rule matrix.
    pub meta_matrix: Vec<u8>,
    /// `(9,)` OR of the `meta_matrix` rows.
    pub meta_target: Vec<u8>,
    /// Scene-tree tokens (`Scene`, `Singleton`, …, `/`).
    pub structure: Vec<String>,
    /// `(21,)` multi-hot structure code.
    pub meta_structure: Vec<u8>,
}

/// Parsed NPY array: dtype descriptor, shape, raw C-order data.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// numpy dtype string, e.g. `|u1`, `<i8`, `|S12`.
    pub descr: String,
    /// Array shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements' bytes in C order, as stored (byte order as `descr` says).
    pub data: Vec<u8>,
}

// ------------------------------------------------------------------------------------------
// ZIP container
// ------------------------------------------------------------------------------------------

/// Bounds-checked little-endian reads of a zip archive: a corrupt or truncated file gives an
/// error naming the file and the offset, never an out-of-range slice.
struct ZipBytes<'a, 'p> {
    bytes: &'a [u8],
    path: &'p Path,
}

impl<'a> ZipBytes<'a, '_> {
    fn bad(&self, message: String) -> Error {
        Error::bad_file(self.path, message)
    }
    fn slice(&self, at: usize, n: usize, what: &str) -> Result<&'a [u8]> {
        at.checked_add(n)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| {
                self.bad(format!(
                    "truncated or corrupt zip: {what} needs {n} bytes at offset {at}, the file has {}",
                    self.bytes.len()
                ))
            })
    }
    fn le16(&self, at: usize, what: &str) -> Result<usize> {
        let b = self.slice(at, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn le32(&self, at: usize, what: &str) -> Result<usize> {
        let b = self.slice(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn le64(&self, at: usize, what: &str) -> Result<usize> {
        let b: [u8; 8] = self.slice(at, 8, what)?.try_into().expect("8 bytes");
        usize::try_from(u64::from_le_bytes(b)).map_err(|_| {
            self.bad(format!(
                "corrupt zip: {what} at offset {at} is out of range"
            ))
        })
    }
}

/// A zip member's name and bytes: borrowed from the archive when stored, inflated when deflated.
pub type Member<'a> = (String, Cow<'a, [u8]>);

/// Members of a ZIP archive as `(name, bytes)`, in central-directory order.
pub fn read_zip(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    Ok(zip_slices(path, bytes)?
        .into_iter()
        .map(|(n, b)| (n, b.into_owned()))
        .collect())
}

/// Like [`read_zip`], borrowing stored members from `bytes` (no copies; deflated ones are
/// inflated, so a member is borrowed exactly when it is stored). Every member's CRC-32 is checked against the central directory, as numpy's
/// loader does: flipped bytes are an error.
pub fn zip_slices<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<Member<'a>>> {
    let z = ZipBytes { bytes, path };
    if bytes.len() < 22 || &bytes[..2] != b"PK" {
        return Err(z.bad("not a zip archive (.npz files are zip archives of .npy members)".into()));
    }
    let eocd = (0..=bytes.len() - 22)
        .rev()
        .find(|&i| &bytes[i..i + 4] == b"PK\x05\x06")
        .ok_or_else(|| z.bad("truncated zip: end-of-central-directory record not found".into()))?;
    let mut entries = z.le16(eocd + 10, "entry count")?;
    let mut cd = z.le32(eocd + 16, "central-directory offset")?;
    if (entries == 0xffff || cd == 0xffff_ffff)
        && eocd >= 20
        && &bytes[eocd - 20..eocd - 16] == b"PK\x06\x07"
    {
        let z64 = z.le64(eocd - 12, "zip64 record offset")?;
        if z.slice(z64, 56, "zip64 end-of-central-directory")?[..4] != *b"PK\x06\x06" {
            return Err(z.bad("broken zip64 end-of-central-directory".into()));
        }
        entries = z.le64(z64 + 32, "zip64 entry count")?;
        cd = z.le64(z64 + 48, "zip64 central-directory offset")?;
    }
    // Each central-directory entry takes at least 46 bytes: a larger count is corrupt (and
    // must not reserve memory for it).
    if entries > bytes.len() / 46 {
        return Err(z.bad(format!(
            "corrupt zip: {entries} members claimed in a file of {} bytes",
            bytes.len()
        )));
    }
    let mut members = Vec::with_capacity(entries);
    let mut at = cd;
    for _ in 0..entries {
        let (member, next) = zip_member(&z, at)?;
        members.push(member);
        at = next;
    }
    Ok(members)
}

/// The member whose central-directory entry starts at `at`, and where the next entry starts.
fn zip_member<'a>(z: &ZipBytes<'a, '_>, at: usize) -> Result<(Member<'a>, usize)> {
    if z.slice(at, 46, "central-directory entry")?[..4] != *b"PK\x01\x02" {
        return Err(z.bad("truncated or corrupt zip central directory".into()));
    }
    let method = z.le16(at + 10, "compression method")?;
    let stored_crc = z.le32(at + 16, "CRC-32")? as u32;
    let mut size = z.le32(at + 20, "member size")?;
    let mut original_size = z.le32(at + 24, "original size")?;
    let name_len = z.le16(at + 28, "name length")?;
    let extra_len = z.le16(at + 30, "extra-field length")?;
    let comment_len = z.le16(at + 32, "comment length")?;
    let mut local = z.le32(at + 42, "local-header offset")?;
    let name = String::from_utf8_lossy(z.slice(at + 46, name_len, "member name")?).into_owned();
    // zip64 extra field (id 1): original size, compressed size, local offset — only those
    // whose 32-bit field is saturated, in that order.
    let mut extra = at + 46 + name_len;
    let extra_end = extra + extra_len;
    z.slice(extra, extra_len, "extra field")?;
    while extra + 4 <= extra_end {
        let (id, len) = (
            z.le16(extra, "extra id")?,
            z.le16(extra + 2, "extra length")?,
        );
        if id == 1 {
            let mut f = extra + 4;
            if original_size == 0xffff_ffff {
                original_size = z.le64(f, "zip64 original size")?;
                f += 8;
            }
            if size == 0xffff_ffff {
                size = z.le64(f, "zip64 member size")?;
                f += 8;
            }
            if local == 0xffff_ffff {
                local = z.le64(f, "zip64 local-header offset")?;
            }
        }
        extra += 4 + len;
    }
    if method != STORED && method != DEFLATED {
        return Err(z.bad(format!("member '{name}' uses compression method {method}; .npz members are stored (0) or deflated (8)")));
    }
    let header = z.slice(local, 30, "local header").map_err(|_| {
        z.bad(format!(
            "member '{name}': local header missing (truncated file?)"
        ))
    })?;
    if header[..4] != *b"PK\x03\x04" {
        return Err(z.bad(format!(
            "member '{name}': local header missing (truncated file?)"
        )));
    }
    let start = local
        + 30
        + z.le16(local + 26, "local name length")?
        + z.le16(local + 28, "local extra length")?;
    let data = z.slice(start, size, "member data").map_err(|_| {
        z.bad(format!(
            "member '{name}' is truncated: needs {size} bytes at offset {start}, file has {}",
            z.bytes.len()
        ))
    })?;
    let data = match method {
        DEFLATED => Cow::Owned(inflate(z, &name, data, original_size)?),
        _ => Cow::Borrowed(data),
    };
    let computed = crc32(&data);
    if computed != stored_crc {
        return Err(z.bad(format!(
            "member '{name}' is corrupt: CRC-32 {computed:08x} does not match the stored {stored_crc:08x}"
        )));
    }
    Ok(((name, data), at + 46 + name_len + extra_len + comment_len))
}

const STORED: usize = 0;
const DEFLATED: usize = 8;

/// A deflated member's bytes, which must fill exactly the `original_size` its entry states.
fn inflate(z: &ZipBytes<'_, '_>, name: &str, data: &[u8], original_size: usize) -> Result<Vec<u8>> {
    // Deflate expands at most ~1032×: a larger claim is a corrupt header, not an allocation.
    if original_size > data.len().saturating_mul(1032).saturating_add(64) {
        return Err(z.bad(format!(
            "member '{name}' claims {original_size} bytes from {} deflated ones: corrupt entry",
            data.len()
        )));
    }
    let mut out = vec![0u8; original_size];
    let mut inflater = flate2::Decompress::new(false);
    let status = inflater
        .decompress(data, &mut out, flate2::FlushDecompress::Finish)
        .map_err(|e| z.bad(format!("member '{name}' does not inflate: {e}")))?;
    if status != flate2::Status::StreamEnd || inflater.total_out() as usize != original_size {
        return Err(z.bad(format!(
            "member '{name}' inflates to {} bytes without its end, the entry states {original_size}",
            inflater.total_out()
        )));
    }
    Ok(out)
}

/// CRC-32 (IEEE), as ZIP requires; slicing-by-8 (8 bytes per step) because every written
/// problem checksums 410 KB of pixels.
pub fn crc32(data: &[u8]) -> u32 {
    static TABLES: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLES.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for (i, slot) in t[0].iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xff) as usize];
            }
        }
        t
    });
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        let lo = u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]) ^ c;
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][ch[4] as usize]
            ^ t[2][ch[5] as usize]
            ^ t[1][ch[6] as usize]
            ^ t[0][ch[7] as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// How a problem's pixels are kept in its `.npz`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    /// Stored, like `numpy.savez` and the original generators (default): 410 kB a problem.
    #[default]
    Stored,
    /// `image.npy` deflated by [`super::deflate::deflate_runs`] (the small members stay
    /// stored): 10–16× smaller, read by numpy's `np.load` and by this reader.
    Deflated,
}

/// A stored ZIP archive like Python's `zipfile` writes it (DOS time 1980-01-01, no extras).
pub fn write_zip(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    write_zip_deflating(members, &[])
}

/// [`write_zip`] with the members named in `deflate` deflated, the rest stored.
pub fn write_zip_deflating(members: &[(&str, Vec<u8>)], deflate: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in members {
        let offset = out.len() as u32;
        let crc = crc32(data);
        let packed = match deflate.contains(name) {
            true => Some(super::deflate::deflate_runs(data)),
            false => None,
        };
        let (method, body) = match &packed {
            Some(bytes) => (DEFLATED as u16, bytes.as_slice()),
            None => (STORED as u16, data.as_slice()),
        };
        let header = |sig: &[u8], central: bool| {
            let mut h = Vec::new();
            h.extend_from_slice(sig);
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // version needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&method.to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // time
            h.extend_from_slice(&0x21u16.to_le_bytes()); // date 1980-01-01
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(body.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                h.extend_from_slice(&[0u8; 6]); // comment len, disk, internal attrs
                h.extend_from_slice(&(0o600u32 << 16).to_le_bytes()); // external attrs
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend(header(b"PK\x03\x04", false));
        out.extend_from_slice(body);
        central.extend(header(b"PK\x01\x02", true));
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

// ------------------------------------------------------------------------------------------
// NPY members
// ------------------------------------------------------------------------------------------

/// Parses one `.npy` member (format 1.0–3.0, C order).
pub fn parse_npy(bytes: &[u8]) -> std::result::Result<NpyArray, String> {
    let (descr, shape, data) = npy_view(bytes)?;
    Ok(NpyArray {
        descr,
        shape,
        data: data.to_vec(),
    })
}

/// Parses an `.npy` header and borrows its data: `(descr, shape, data)`.
pub fn npy_view(bytes: &[u8]) -> std::result::Result<(String, Vec<usize>, &[u8]), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an NPY array (bad magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        2 | 3 => return Err("truncated NPY header".into()),
        v => return Err(format!("unsupported NPY version {v}")),
    };
    if start + header_len > bytes.len() {
        return Err("truncated NPY header".into());
    }
    let header = std::str::from_utf8(&bytes[start..start + header_len])
        .map_err(|_| "NPY header is not text")?;
    let value_of = |key: &str| -> std::result::Result<&str, String> {
        let at = header
            .find(&format!("'{key}':"))
            .ok_or(format!("NPY header lacks '{key}'"))?;
        Ok(header[at + key.len() + 3..].trim_start())
    };
    let descr = value_of("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|d| d.split('\'').next())
        .ok_or("bad descr")?
        .to_string();
    if value_of("fortran_order")?.starts_with("True") {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let shape_text = value_of("shape")?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("bad shape")?;
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape entry '{s}'"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let data = &bytes[start + header_len..];
    let item = item_size(&descr).ok_or(format!("unsupported dtype '{descr}'"))?;
    let needed = shape
        .iter()
        .try_fold(item, |n, &d| n.checked_mul(d))
        .ok_or(format!("shape {shape:?} of '{descr}' is too large"))?;
    if data.len() != needed {
        return Err(format!(
            "data holds {} bytes, shape {shape:?} of '{descr}' needs {needed}",
            data.len(),
        ));
    }
    Ok((descr, shape, data))
}

/// Bytes per element of `descr`; `None` for an unsupported or zero-sized type (a zero-sized
/// string type would make every element empty).
fn item_size(descr: &str) -> Option<usize> {
    if descr.len() < 3 || !descr.is_char_boundary(2) {
        return None;
    }
    let (kind, n) = descr.split_at(2);
    let n: usize = n.parse().ok().filter(|&n| n > 0)?;
    match kind {
        "|u" | "|i" | "|b" => (n == 1).then_some(1),
        "<i" | "<u" | "<f" => Some(n),
        "|S" => Some(n),
        "<U" => Some(4 * n),
        _ => None,
    }
}

/// An NPY 1.0 member with numpy's header layout (padded so data starts at a multiple of 64).
pub fn write_npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

// ------------------------------------------------------------------------------------------
// Problems
// ------------------------------------------------------------------------------------------

/// The member order of the original generators' files.
const MEMBER_ORDER: [&str; 7] = [
    "target",
    "predict",
    "image",
    "meta_matrix",
    "meta_structure",
    "meta_target",
    "structure",
];

struct Members<'a> {
    path: &'a Path,
    members: Vec<(String, Vec<u8>)>,
}

impl Members<'_> {
    fn array(&self, key: &str) -> Result<NpyArray> {
        let bytes = self
            .members
            .iter()
            .find(|(n, _)| n.strip_suffix(".npy") == Some(key))
            .map(|(_, b)| b)
            .ok_or_else(|| Error::bad_file(self.path, format!("missing key '{key}'")))?;
        parse_npy(bytes).map_err(|e| Error::bad_file(self.path, format!("key '{key}': {e}")))
    }

    /// An array of the expected dtype and shape.
    fn expect(&self, key: &str, descrs: &[&str], shape: &[usize]) -> Result<NpyArray> {
        let a = self.array(key)?;
        if !descrs.contains(&a.descr.as_str()) {
            return Err(Error::bad_file(
                self.path,
                format!(
                    "key '{key}' has dtype '{}', expected {}",
                    a.descr,
                    descrs.join(" or ")
                ),
            ));
        }
        if a.shape != shape {
            return Err(Error::bad_file(
                self.path,
                format!("key '{key}' has shape {:?}, expected {:?}", a.shape, shape),
            ));
        }
        Ok(a)
    }

    fn scalar_i64(&self, key: &str) -> Result<i64> {
        let a = self.expect(key, &["<i8"], &[])?;
        Ok(i64::from_le_bytes(a.data[..8].try_into().unwrap()))
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        let a = self.array(key)?;
        if a.shape.len() != 1 {
            return Err(Error::bad_file(
                self.path,
                format!("key '{key}' has shape {:?}, expected one axis", a.shape),
            ));
        }
        let n = a.shape[0];
        let decode = |chunk: &[u8]| {
            String::from_utf8_lossy(chunk)
                .trim_end_matches('\0')
                .to_string()
        };
        match &a.descr[..2] {
            "|S" if n > 0 => Ok(a.data.chunks(a.data.len() / n).map(decode).collect()),
            "<U" if n > 0 => Ok(a
                .data
                .chunks(a.data.len() / n)
                .map(|c| {
                    c.chunks(4)
                        .filter_map(|u| char::from_u32(u32::from_le_bytes(u.try_into().unwrap())))
                        .filter(|&c| c != '\0')
                        .collect()
                })
                .collect()),
            _ if n == 0 => Ok(Vec::new()),
            _ => Err(Error::bad_file(
                self.path,
                format!(
                    "key '{key}' has dtype '{}', expected strings (|S or <U)",
                    a.descr
                ),
            )),
        }
    }
}

/// How a problem file's pixels (`image.npy`) are packed: stored or deflated.
pub fn image_packing(path: &Path, bytes: &[u8]) -> Result<Packing> {
    let members = zip_slices(path, bytes)?;
    match members.iter().find(|(n, _)| n == "image.npy") {
        Some((_, Cow::Borrowed(_))) => Ok(Packing::Stored),
        Some((_, Cow::Owned(_))) => Ok(Packing::Deflated),
        None => Err(Error::bad_file(path, "missing key 'image'")),
    }
}

/// The pixels (borrowed), panel side and target of a problem file's bytes — the part training
/// needs, without copying the image.
pub fn image_and_target<'a>(path: &Path, bytes: &'a [u8]) -> Result<(Cow<'a, [u8]>, usize, i64)> {
    let mut members = zip_slices(path, bytes)?;
    let mut member = |key: &str| {
        members
            .iter_mut()
            .find(|(n, _)| n.strip_suffix(".npy") == Some(key))
            .map(|(_, b)| std::mem::take(b))
            .ok_or_else(|| Error::bad_file(path, format!("missing key '{key}'")))
    };
    let bad = |key: &str, m: String| Error::bad_file(path, format!("key '{key}': {m}"));
    let image_member = member("image")?;
    let (descr, shape, image) = npy_view(&image_member).map_err(|m| bad("image", m))?;
    let image_len = image.len();
    if descr != "|u1"
        || shape.len() != 3
        || shape[0] != PANELS
        || shape[1] != shape[2]
        || shape[1] == 0
    {
        return Err(bad(
            "image",
            format!("dtype '{descr}' shape {shape:?}, expected |u1 (16, H, H) with H > 0"),
        ));
    }
    let target_member = member("target")?;
    let (descr, shape, t) = npy_view(&target_member).map_err(|m| bad("target", m))?;
    if descr != "<i8" || !shape.is_empty() {
        return Err(bad(
            "target",
            format!("dtype '{descr}' shape {shape:?}, expected an <i8 scalar"),
        ));
    }
    let target = i64::from_le_bytes(t.try_into().expect("8 bytes"));
    if !(0..8).contains(&target) {
        return Err(bad("target", format!("{target}, expected 0..7")));
    }
    let image = npy_data(image_member, image_len);
    Ok((image, shape_side(image_len), target))
}

/// The last `data_len` bytes of an `.npy` member (its data, the header dropped), borrowed when
/// the member is.
fn npy_data(member: Cow<'_, [u8]>, data_len: usize) -> Cow<'_, [u8]> {
    let start = member.len() - data_len;
    match member {
        Cow::Borrowed(bytes) => Cow::Borrowed(&bytes[start..]),
        Cow::Owned(mut bytes) => {
            bytes.drain(..start);
            Cow::Owned(bytes)
        }
    }
}

fn shape_side(image_len: usize) -> usize {
    ((image_len / PANELS) as f64).sqrt().round() as usize
}

impl AvrProblem {
    /// Reads a problem file; errors name the file and the offending key.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses the bytes of a problem file (`path` is only used in errors).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let m = Members {
            path,
            members: read_zip(path, bytes)?,
        };
        let image = m.array("image")?;
        if image.descr != "|u1"
            || image.shape.len() != 3
            || image.shape[0] != PANELS
            || image.shape[1] != image.shape[2]
        {
            return Err(Error::bad_file(
                path,
                format!(
                    "key 'image' has dtype '{}' shape {:?}, expected |u1 (16, H, H)",
                    image.descr, image.shape
                ),
            ));
        }
        let problem = AvrProblem {
            side: image.shape[1],
            image: image.data,
            target: m.scalar_i64("target")?,
            predict: m.scalar_i64("predict")?,
            meta_matrix: m.expect("meta_matrix", &["|u1"], &[8, 9])?.data,
            meta_target: m.expect("meta_target", &["|u1"], &[9])?.data,
            structure: m.strings("structure")?,
            meta_structure: m.expect("meta_structure", &["|u1"], &[21])?.data,
        };
        if !(0..8).contains(&problem.target) {
            return Err(Error::bad_file(
                path,
                format!("key 'target' is {}, expected 0..7", problem.target),
            ));
        }
        Ok(problem)
    }

    /// The `.npz` bytes, laid out like the original generators' files.
    pub fn to_npz_bytes(&self) -> Vec<u8> {
        self.to_npz_bytes_packed(Packing::Stored)
    }

    /// The `.npz` bytes with the pixels packed as `packing` says.
    pub fn to_npz_bytes_packed(&self, packing: Packing) -> Vec<u8> {
        let width = self
            .structure
            .iter()
            .map(|s| s.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let structure: Vec<u8> = self
            .structure
            .iter()
            .flat_map(|s| {
                let mut b = s.as_bytes().to_vec();
                b.resize(width, 0);
                b
            })
            .collect();
        let array = |key: &str| -> Vec<u8> {
            match key {
                "target" => write_npy("<i8", &[], &self.target.to_le_bytes()),
                "predict" => write_npy("<i8", &[], &self.predict.to_le_bytes()),
                "image" => write_npy("|u1", &[PANELS, self.side, self.side], &self.image),
                "meta_matrix" => {
                    write_npy("|u1", &[8, self.meta_matrix.len() / 8], &self.meta_matrix)
                }
                "meta_structure" => {
                    write_npy("|u1", &[self.meta_structure.len()], &self.meta_structure)
                }
                "meta_target" => write_npy("|u1", &[self.meta_target.len()], &self.meta_target),
                _ => write_npy(&format!("|S{width}"), &[self.structure.len()], &structure),
            }
        };
        let names: Vec<String> = MEMBER_ORDER.iter().map(|k| format!("{k}.npy")).collect();
        let members: Vec<(&str, Vec<u8>)> = names
            .iter()
            .zip(MEMBER_ORDER)
            .map(|(name, key)| (name.as_str(), array(key)))
            .collect();
        match packing {
            Packing::Stored => write_zip(&members),
            Packing::Deflated => write_zip_deflating(&members, &["image.npy"]),
        }
    }

    /// Writes the problem atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_npz_bytes())
    }

    /// Writes a generated problem atomically without `fsync` ([`write_atomic_unsynced`]): it
    /// can be made again from its seed, and a resumed generation checks every file it keeps.
    pub fn write_generated(&self, path: impl AsRef<Path>, packing: Packing) -> Result<()> {
        let bytes = self.to_npz_bytes_packed(packing);
        crate::files::write_atomic_unsynced(path.as_ref(), &bytes)
    }

    /// Pixels of panel `i` (0..16), row-major.
    pub fn panel(&self, i: usize) -> &[u8] {
        let n = self.side * self.side;
        &self.image[i * n..(i + 1) * n]
    }

    /// The configuration name derived from the scene tree (`center_single`, …).
    pub fn configuration(&self) -> Option<&'static str> {
        configuration_of(&self.structure)
    }
}

/// The 7 configurations, named like the original folders.
pub const CONFIGURATIONS: [&str; 7] = [
    "center_single",
    "distribute_four",
    "distribute_nine",
    "in_center_single_out_center_single",
    "in_distribute_four_out_center_single",
    "left_center_single_right_center_single",
    "up_center_single_down_center_single",
];

/// Maps the `structure` tokens to a configuration folder name.
pub fn configuration_of(structure: &[String]) -> Option<&'static str> {
    let has = |t: &str| structure.iter().any(|s| s == t);
    Some(if has("Left_Center_Single") {
        "left_center_single_right_center_single"
    } else if has("Up_Center_Single") {
        "up_center_single_down_center_single"
    } else if has("In_Distribute_Four") {
        "in_distribute_four_out_center_single"
    } else if has("In_Center_Single") {
        "in_center_single_out_center_single"
    } else if has("Distribute_Nine") {
        "distribute_nine"
    } else if has("Distribute_Four") {
        "distribute_four"
    } else if has("Center_Single") {
        "center_single"
    } else {
        return None;
    })
}

/// What `avr inspect --json` prints for one file.
#[derive(Debug, Clone, Serialize)]
pub struct NpzSummary {
    /// The file inspected.
    pub path: PathBuf,
    /// Member names without `.npy`, in archive order.
    pub keys: Vec<String>,
    /// numpy dtype string of each member, parallel to `keys`.
    pub dtypes: Vec<String>,
    /// Shape of each member, parallel to `keys`.
    pub shapes: Vec<Vec<usize>>,
    /// Index 0..7 of the correct candidate.
    pub target: i64,
    /// The generator's heuristic solver's answer.
    pub predict: i64,
    /// Configuration folder name read from `structure`, when it is one of the 7.
    pub configuration: Option<String>,
}

/// Keys, dtypes and shapes of every member plus the problem's labels.
pub fn inspect(path: impl AsRef<Path>) -> Result<NpzSummary> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let problem = AvrProblem::from_bytes(path, &bytes)?;
    let mut summary = NpzSummary {
        path: path.to_path_buf(),
        keys: vec![],
        dtypes: vec![],
        shapes: vec![],
        target: problem.target,
        predict: problem.predict,
        configuration: problem.configuration().map(str::to_string),
    };
    for (name, data) in read_zip(path, &bytes)? {
        let a =
            parse_npy(&data).map_err(|e| Error::bad_file(path, format!("key '{name}': {e}")))?;
        summary.keys.push(name.trim_end_matches(".npy").to_string());
        summary.dtypes.push(a.descr);
        summary.shapes.push(a.shape);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn npy_header_is_padded_like_numpy() {
        let npy = write_npy("|u1", &[16, 160, 160], &vec![0u8; 16 * 160 * 160]);
        assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(
            u16::from_le_bytes([npy[8], npy[9]]) as usize + 10,
            128,
            "data must start at offset 128 like the originals"
        );
        let back = parse_npy(&npy).unwrap();
        assert_eq!(back.shape, vec![16, 160, 160]);
    }
}
