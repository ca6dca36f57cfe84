//! A fast deflate encoder for rendered panels: one fixed-Huffman block (RFC 1951 §3.2.6) of
//! literals and distance-1 matches, i.e. run-length coding inside deflate.
//!
//! Why not a general compressor: a rendered panel is a white page with thin lines, so nearly
//! every byte repeats the one before it. Runs of up to 258 equal bytes cost 13 bits here, and
//! finding them takes one 8-byte comparison per 8 bytes, so the encoder runs several times faster
//! than zlib's fastest level at a ratio that takes generation off the disk's limit. The output
//! is plain deflate: numpy, Python's `zipfile` and every inflater read it.

/// A deflate stream of `data`: one final fixed-Huffman block.
pub fn deflate_runs(data: &[u8]) -> Vec<u8> {
    let codes = fixed_codes();
    let mut out = BitWriter::with_capacity(data.len() / 8 + 64);
    out.put(0b011, 3); // BFINAL = 1, BTYPE = 01 (fixed Huffman), LSB first
    let mut i = 0;
    while i < data.len() {
        let run = match i {
            0 => 0,
            _ => run_length(data, i, data[i - 1]),
        };
        if run >= MIN_MATCH {
            let (bits, n) = codes.run[run];
            out.put(bits, n);
            i += run;
        } else {
            let (bits, n) = codes.literal[data[i] as usize];
            out.put(bits, n);
            i += 1;
        }
    }
    let (bits, n) = codes.literal[END_OF_BLOCK];
    out.put(bits, n);
    out.finish()
}

const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const END_OF_BLOCK: usize = 256;

/// How many bytes from `at` on equal `byte` (at most [`MAX_MATCH`]), eight at a time.
fn run_length(data: &[u8], at: usize, byte: u8) -> usize {
    let end = data.len().min(at + MAX_MATCH);
    let pattern = u64::from_ne_bytes([byte; 8]);
    let mut j = at;
    while j + 8 <= end {
        let word = u64::from_le_bytes(data[j..j + 8].try_into().expect("8 bytes"));
        let diff = word ^ pattern;
        if diff != 0 {
            return j - at + (diff.trailing_zeros() / 8) as usize;
        }
        j += 8;
    }
    while j < end && data[j] == byte {
        j += 1;
    }
    j - at
}

/// The fixed Huffman code of every literal (and end of block), and of every distance-1 match
/// by its length: bits already reversed for LSB-first output, with their count.
struct FixedCodes {
    literal: [(u64, u32); 257],
    run: [(u64, u32); MAX_MATCH + 1],
}

fn fixed_codes() -> &'static FixedCodes {
    static CODES: std::sync::OnceLock<FixedCodes> = std::sync::OnceLock::new();
    CODES.get_or_init(|| {
        let mut literal = [(0, 0); 257];
        for (symbol, slot) in literal.iter_mut().enumerate() {
            *slot = fixed_symbol(symbol);
        }
        let mut run = [(0, 0); MAX_MATCH + 1];
        for (length, slot) in run.iter_mut().enumerate().skip(MIN_MATCH) {
            let (symbol, extra_bits, extra) = length_symbol(length);
            let (code, n) = fixed_symbol(symbol);
            // Then the extra bits, then distance code 0 (distance 1): five zero bits.
            *slot = (code | (extra << n), n + extra_bits + 5);
        }
        FixedCodes { literal, run }
    })
}

/// A literal/length symbol's fixed Huffman code (RFC 1951 §3.2.6), reversed, and its length.
fn fixed_symbol(symbol: usize) -> (u64, u32) {
    let (code, n) = match symbol {
        0..=143 => (0x30 + symbol, 8),
        144..=255 => (0x190 + symbol - 144, 9),
        256..=279 => (symbol - 256, 7),
        _ => (0xC0 + symbol - 280, 8),
    };
    (reverse_bits(code as u64, n), n)
}

/// A match length's symbol (257–285), extra-bit count and extra value (RFC 1951 §3.2.5).
fn length_symbol(length: usize) -> (usize, u32, u64) {
    if length == MAX_MATCH {
        return (285, 0, 0);
    }
    let mut base = 3;
    for symbol in 257..285 {
        let extra_bits = match symbol {
            257..=264 => 0,
            _ => (symbol - 261) as u32 / 4,
        };
        let span = 1 << extra_bits;
        if length < base + span {
            return (symbol, extra_bits, (length - base) as u64);
        }
        base += span;
    }
    unreachable!("lengths 3..=258 all have a symbol")
}

fn reverse_bits(code: u64, n: u32) -> u64 {
    code.reverse_bits() >> (64 - n)
}

/// Bits written least significant first, flushed 32 at a time.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    filled: u32,
}

impl BitWriter {
    fn with_capacity(n: usize) -> Self {
        BitWriter {
            bytes: Vec::with_capacity(n),
            acc: 0,
            filled: 0,
        }
    }

    fn put(&mut self, bits: u64, n: u32) {
        self.acc |= bits << self.filled;
        self.filled += n;
        if self.filled >= 32 {
            self.bytes
                .extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.filled -= 32;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let n = self.filled.div_ceil(8) as usize;
        self.bytes.extend_from_slice(&self.acc.to_le_bytes()[..n]);
        self.bytes
    }
}
