//! A small pickle virtual machine for the study's files — no Python at run time.
//!
//! The study's checkpoint and mask files are one plain `pickle.dump` (protocol 4) whose tensors
//! are pickled through `torch.Tensor.__reduce_ex__`: `_rebuild_tensor_v2(_load_from_bytes(b), …)`,
//! where each `b` is a complete legacy `torch.save` stream (five protocol-2 pickles + raw data).
//! Both layers run on this VM (`../shared/fixtures/README.md` §3). Only the opcodes and globals
//! those files use are implemented; anything else is an error naming the opcode and offset,
//! never arbitrary code execution.

use std::cell::RefCell;
use std::rc::Rc;

/// Element type of a torch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// `torch.FloatStorage`: `f32`, 4 bytes per element.
    Float,
    /// `torch.LongStorage`: `i64`, 8 bytes per element.
    Long,
}

/// A torch tensor as the pickle describes it: storage data plus size/stride/offset.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Element type of the storage.
    pub kind: StorageKind,
    /// Little-endian element bytes of the whole storage.
    pub data: Rc<Vec<u8>>,
    /// Storage offset of the first element, in elements (not bytes).
    pub offset: usize,
    /// The view's shape.
    pub size: Vec<i64>,
    /// The view's strides, in elements, one per dimension of `size`.
    pub stride: Vec<i64>,
}

/// A value on the pickle stack. Lists and dicts are shared (the memo refers to them and later
/// opcodes mutate them), so they sit behind `Rc<RefCell<…>>`.
#[derive(Debug, Clone)]
pub enum Value {
    /// Python `None`.
    None,
    /// Python `True` / `False`.
    Bool(bool),
    /// A Python `int` (every integer these files hold fits in 64 bits).
    Int(i64),
    /// A Python `float`.
    Float(f64),
    /// A Python `str` (UTF-8).
    Str(String),
    /// A Python `bytes` object (e.g. an embedded legacy `torch.save` stream).
    Bytes(Rc<Vec<u8>>),
    /// A Python `tuple` (immutable, so shared without a `RefCell`).
    Tuple(Rc<Vec<Value>>),
    /// A Python `list`, shared and mutable (`APPEND`/`APPENDS` grow it in place).
    List(Rc<RefCell<Vec<Value>>>),
    /// Dict entries in insertion order; keys need not be hashable here (the Adam state keys
    /// are Parameter objects).
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A global reference (`GLOBAL` / `STACK_GLOBAL`), e.g. `collections.OrderedDict`; only
    /// a few may be called (see `reduce`).
    Global {
        /// The module, e.g. `torch._utils`.
        module: String,
        /// The name inside the module, e.g. `_rebuild_tensor_v2`.
        name: String,
    },
    /// A torch storage read from a legacy `torch.save` stream (`_load_from_bytes`).
    Storage {
        /// Element type of the storage.
        kind: StorageKind,
        /// Little-endian element bytes of the whole storage.
        data: Rc<Vec<u8>>,
    },
    /// A tensor (or `Parameter`) rebuilt by `_rebuild_tensor_v2` over a storage.
    Tensor(Rc<RawTensor>),
    /// Any other object (e.g. the pickled Adam optimiser): kept opaque.
    Object {
        /// The object's class as `module.name` (`?` when it was not a global).
        class: String,
    },
    /// `BINPERSID`'s persistent id (only inside legacy storage streams).
    PersistentId(Rc<Value>),
    /// The `MARK` sentinel that `TUPLE`, `APPENDS` and `SETITEMS` pop back to; never part of a
    /// finished value.
    Mark,
}

impl Value {
    /// Looks up a string key in a dict value.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d
                .borrow()
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// Dict entries with string keys, in order.
    pub fn str_items(&self) -> Option<Vec<(String, Value)>> {
        match self {
            Value::Dict(d) => Some(
                d.borrow()
                    .iter()
                    .filter_map(|(k, v)| match k {
                        Value::Str(s) => Some((s.clone(), v.clone())),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The value as a float: a `Float`, or an `Int` converted; `None` for anything else.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The value of an `Int` (no conversion from `Float` or `Bool`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The text of a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn int_tuple(&self) -> Option<Vec<i64>> {
        match self {
            Value::Tuple(t) => t.iter().map(Value::as_i64).collect(),
            _ => None,
        }
    }
}

/// What went wrong while unpickling, with the byte offset.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Byte offset into the pickle being read where the error was found.
    pub offset: usize,
    /// What was wrong (e.g. the unsupported opcode or the refused global).
    pub message: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pickle error at byte {}: {}", self.offset, self.message)
    }
}

type PResult<T> = std::result::Result<T, PickleError>;

/// Unpickles one complete pickle from `bytes`, returning the value and the offset after `STOP`.
pub fn unpickle(bytes: &[u8]) -> PResult<(Value, usize)> {
    Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: Vec::new(),
    }
    .run()
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: Vec<Option<Value>>,
}

impl<'a> Machine<'a> {
    fn err<T>(&self, message: impl Into<String>) -> PResult<T> {
        Err(PickleError {
            offset: self.pos,
            message: message.into(),
        })
    }

    fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        if n > self.bytes.len() - self.pos {
            return self.err(format!(
                "truncated: wanted {n} bytes, {} left",
                self.bytes.len() - self.pos
            ));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> PResult<usize> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]) as usize)
    }
    fn u32(&mut self) -> PResult<usize> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().unwrap()) as usize)
    }
    fn u64(&mut self) -> PResult<usize> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap()) as usize)
    }
    fn utf8(&mut self, n: usize) -> PResult<String> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => self.err("invalid UTF-8 in string"),
        }
    }
    fn line(&mut self) -> PResult<String> {
        let rest = &self.bytes[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("unterminated text line");
        };
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn pop(&mut self) -> PResult<Value> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }
    fn top(&mut self) -> PResult<&mut Value> {
        let pos = self.pos;
        self.stack.last_mut().ok_or(PickleError {
            offset: pos,
            message: "empty stack".into(),
        })
    }
    /// Pops everything above the last MARK (and the mark).
    fn pop_mark(&mut self) -> PResult<Vec<Value>> {
        let Some(i) = self.stack.iter().rposition(|v| matches!(v, Value::Mark)) else {
            return self.err("no MARK on the stack");
        };
        let items = self.stack.split_off(i + 1);
        self.stack.pop();
        Ok(items)
    }
    fn memo_put(&mut self, index: usize) -> PResult<()> {
        let v = self.top()?.clone();
        // A memo index far beyond the entries so far is corrupt (pickle numbers them in
        // order); refusing it avoids a huge allocation.
        if index > self.memo.len() + 1_000_000 {
            return self.err(format!("memo index {index} is out of range"));
        }
        if self.memo.len() <= index {
            self.memo.resize(index + 1, None);
        }
        self.memo[index] = Some(v);
        Ok(())
    }
    fn memo_get(&mut self, index: usize) -> PResult<()> {
        match self.memo.get(index).cloned().flatten() {
            Some(v) => {
                self.stack.push(v);
                Ok(())
            }
            None => self.err(format!("memo key {index} not found")),
        }
    }
    fn set_items(&mut self, dict: &Value, items: Vec<Value>) -> PResult<()> {
        let Value::Dict(d) = dict else {
            return self.err("SETITEM(S) on a non-dict");
        };
        let mut d = d.borrow_mut();
        for pair in items.chunks(2) {
            if pair.len() != 2 {
                return self.err("odd number of items for SETITEMS");
            }
            d.push((pair[0].clone(), pair[1].clone()));
        }
        Ok(())
    }
    fn append(&mut self, list: &Value, items: Vec<Value>) -> PResult<()> {
        match list {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            _ => self.err("APPEND(S) on a non-list"),
        }
    }

    fn run(mut self) -> PResult<(Value, usize)> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME length: frames need no special handling
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok((v, self.pos));
                }
                b'(' => self.stack.push(Value::Mark),
                b'}' => self
                    .stack
                    .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b']' => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.stack.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.u32()? as u32 as i32 as i64;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n bytes.
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        0
                    } else if n <= 8 {
                        let mut buf = if b[n - 1] & 0x80 != 0 {
                            [0xffu8; 8]
                        } else {
                            [0u8; 8]
                        };
                        buf[..n].copy_from_slice(b);
                        i64::from_le_bytes(buf)
                    } else {
                        i64::MAX // only the legacy magic number is this long; its value is checked by bytes
                    };
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    self.stack
                        .push(Value::Float(f64::from_be_bytes(b.try_into().unwrap())));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'X' => {
                    let n = self.u32()?;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.u64()?;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(Rc::new(b)));
                }
                b'B' => {
                    let n = self.u32()?;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(Rc::new(b)));
                }
                0x8e => {
                    let n = self.u64()?;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(Rc::new(b)));
                }
                0x94 => {
                    let index = self.memo.len();
                    self.memo_put(index)?;
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return self.err("stack underflow in TUPLEn");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let d = self.top()?.clone();
                    self.set_items(&d, items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let l = self.top()?.clone();
                    self.append(&l, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let l = self.top()?.clone();
                    self.append(&l, items)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            self.stack.push(Value::Global { module, name })
                        }
                        _ => return self.err("STACK_GLOBAL needs two strings"),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global { module, name });
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(Value::PersistentId(Rc::new(pid)));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let class = self.pop()?;
                    let class = match class {
                        Value::Global { module, name } => format!("{module}.{name}"),
                        _ => "?".into(),
                    };
                    self.stack.push(Value::Object { class });
                }
                b'b' => {
                    // BUILD sets attributes (`__dict__`), e.g. a state dict's `_metadata` or the
                    // Adam optimiser's state; none of them is data we read, so it is dropped.
                    self.pop()?;
                }
                other => return self.err(format!("unsupported pickle opcode 0x{other:02x}")),
            }
        }
    }

    /// The callables the study's files use; anything else is refused.
    fn reduce(&mut self, callable: Value, args: Value) -> PResult<Value> {
        let Value::Global { module, name } = &callable else {
            return self.err("REDUCE on a non-global");
        };
        let Value::Tuple(args) = args else {
            return self.err("REDUCE arguments are not a tuple");
        };
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict")
            | ("builtins", "dict")
            | ("collections", "defaultdict") => Ok(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
            ("torch.storage", "_load_from_bytes") => match args.first() {
                Some(Value::Bytes(b)) => legacy_storage(b).map_err(|e| PickleError {
                    offset: self.pos,
                    message: format!("embedded storage: {e}"),
                }),
                _ => self.err("_load_from_bytes expects bytes"),
            },
            ("torch._utils", "_rebuild_tensor_v2") => self.rebuild_tensor(&args),
            ("torch._utils", "_rebuild_parameter") => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => self.err("_rebuild_parameter expects a tensor"),
            },
            _ => self.err(format!("refusing to call {module}.{name}")),
        }
    }

    fn rebuild_tensor(&self, args: &[Value]) -> PResult<Value> {
        let bad = |m: &str| {
            Err(PickleError {
                offset: self.pos,
                message: format!("_rebuild_tensor_v2: {m}"),
            })
        };
        let (
            Some(Value::Storage { kind, data }),
            Some(Value::Int(offset)),
            Some(size),
            Some(stride),
        ) = (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return bad("expected (storage, offset, size, stride, …)");
        };
        let (Some(size), Some(stride)) = (size.int_tuple(), stride.int_tuple()) else {
            return bad("size/stride are not int tuples");
        };
        if size.len() != stride.len() || *offset < 0 {
            return bad("size and stride differ in length");
        }
        if size.iter().chain(&stride).any(|&v| v < 0) {
            return bad("negative size or stride");
        }
        let elem = element_size(*kind);
        let numel = data.len() / elem;
        let last = size.iter().zip(&stride).try_fold(*offset, |acc, (s, st)| {
            (s - 1)
                .max(0)
                .checked_mul(*st)
                .and_then(|d| acc.checked_add(d))
        });
        let Some(last) = last else {
            return bad("view size overflows");
        };
        if size.iter().all(|&s| s > 0) && last as usize >= numel {
            return bad("view reaches past its storage");
        }
        Ok(Value::Tensor(Rc::new(RawTensor {
            kind: *kind,
            data: data.clone(),
            offset: *offset as usize,
            size,
            stride,
        })))
    }
}

fn element_size(kind: StorageKind) -> usize {
    match kind {
        StorageKind::Float => 4,
        StorageKind::Long => 8,
    }
}

/// Parses a legacy `torch.save` stream holding one storage: magic, protocol version, sys info,
/// the persistent-id object, the key list, then an i64 element count and the raw data.
fn legacy_storage(bytes: &[u8]) -> std::result::Result<Value, String> {
    let mut pos = 0;
    let mut next = |what: &str| -> std::result::Result<Value, String> {
        let (v, used) = unpickle(&bytes[pos..]).map_err(|e| format!("{what}: {e}"))?;
        pos += used;
        Ok(v)
    };
    let _magic = next("magic number")?;
    let version = next("protocol version")?;
    if version.as_i64() != Some(1001) {
        return Err(format!(
            "legacy protocol version {version:?}, expected 1001"
        ));
    }
    let sys_info = next("sys info")?;
    if !matches!(sys_info.get("little_endian"), Some(Value::Bool(true))) {
        return Err("big-endian storages are not supported".into());
    }
    let object = next("storage object")?;
    let _keys = next("storage keys")?;
    let Value::PersistentId(pid) = object else {
        return Err("expected a persistent id for the storage".into());
    };
    let Value::Tuple(fields) = pid.as_ref() else {
        return Err("persistent id is not a tuple".into());
    };
    let kind = match fields.get(1) {
        Some(Value::Global { name, .. }) if name == "FloatStorage" => StorageKind::Float,
        Some(Value::Global { name, .. }) if name == "LongStorage" => StorageKind::Long,
        other => return Err(format!("unsupported storage type {other:?}")),
    };
    let numel = fields
        .get(4)
        .and_then(Value::as_i64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("storage numel missing or negative")?;
    let rest = &bytes[pos..];
    if rest.len() < 8 {
        return Err("missing element count".into());
    }
    let count = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
    let want = numel.checked_mul(element_size(kind));
    if count != numel || want != Some(rest.len() - 8) {
        return Err(format!(
            "storage says {numel} elements, data holds count {count} and {} bytes",
            rest.len() - 8
        ));
    }
    Ok(Value::Storage {
        kind,
        data: Rc::new(rest[8..].to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpickles_nested_protocol_2_containers() {
        // pickle.dumps({'a': [1, 2.5, 'x'], 'b': (True, None)}, protocol=2)
        let bytes = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00xq\x03eX\x01\x00\x00\x00bq\x04\x88N\x86q\x05u.";
        let (v, used) = unpickle(bytes).unwrap();
        assert_eq!(used, bytes.len());
        let Value::List(a) = v.get("a").unwrap() else {
            panic!()
        };
        let a = a.borrow();
        assert_eq!(a[0].as_i64(), Some(1));
        assert_eq!(a[1].as_f64(), Some(2.5));
        assert_eq!(a[2].as_str(), Some("x"));
        let Value::Tuple(b) = v.get("b").unwrap() else {
            panic!()
        };
        assert!(matches!(b[0], Value::Bool(true)) && matches!(b[1], Value::None));
    }

    #[test]
    fn refuses_unknown_callables() {
        // pickle.dumps(os.system, protocol=4) followed by a REDUCE: must not be executed.
        let bytes = b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x02ls\x85R.";
        let err = unpickle(bytes).unwrap_err();
        assert!(err.message.contains("refusing to call os.system"), "{err}");
    }

    #[test]
    fn truncated_input_is_an_error_with_offset() {
        let err = unpickle(b"\x80\x04\x8c\x05ab").unwrap_err();
        assert!(err.message.contains("truncated"), "{err}");
    }
}
