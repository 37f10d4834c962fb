//! A small, safe unpickler for TorchScript's `data.pkl` (pickle protocol 2-5 subset).
//!
//! It never executes anything: `GLOBAL`s become names, `REDUCE`/`NEWOBJ` become plain
//! objects, except for the handful of torch helpers whose meaning is data
//! (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`,
//! `torch.jit._pickle.build_*list`). Persistent ids `('storage', <type>, key, device,
//! numel)` become [`Value::Storage`].

use std::cell::RefCell;
use std::rc::Rc;

/// A storage referenced by a persistent id: the raw data lives in the archive's `data/<key>`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// `FloatStorage`, `DoubleStorage`, ...
    pub kind: String,
    /// File name under `data/`.
    pub key: String,
    /// Number of elements.
    pub numel: usize,
}

/// A tensor view on a storage (`_rebuild_tensor_v2`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// An object built by `NEWOBJ`/`REDUCE` of a class we do not interpret.
#[derive(Debug)]
pub(crate) struct Object {
    /// `module.name` of the class (shown by `Debug`; the converter goes by attribute names).
    #[allow(dead_code)]
    pub class: String,
    /// The state given by `BUILD` (a dict for TorchScript modules).
    pub state: Option<Value>,
}

/// A pickled value. Bools, floats and bytes are parsed but not used by the converter.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Rc<str>),
    Object(Rc<RefCell<Object>>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of a tuple or list.
    pub fn items(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(t) => Some(t.as_ref().clone()),
            Value::List(l) => Some(l.borrow().clone()),
            _ => None,
        }
    }

    fn usizes(&self) -> Option<Vec<usize>> {
        self.items()?
            .iter()
            .map(|v| v.as_int().and_then(|i| usize::try_from(i).ok()))
            .collect()
    }
}

/// Stack entries: values or the MARK sentinel.
enum Slot {
    Mark,
    Value(Value),
}

/// Parses `data` (the bytes of a `data.pkl`) into a value. Errors are plain strings that
/// the caller wraps with the file name.
pub(crate) fn load(data: &[u8]) -> Result<Value, String> {
    Unpickler {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: Vec::new(),
    }
    .run()
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    memo: Vec<Option<Value>>,
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| format!("truncated pickle at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("unterminated text line")?;
        let s = std::str::from_utf8(&rest[..n])
            .map_err(|_| "non-UTF-8 text line".to_string())?
            .to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn utf8(&mut self, n: usize) -> Result<Value, String> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| "invalid UTF-8 string".to_string())?;
        Ok(Value::Str(s.into()))
    }

    fn push(&mut self, v: Value) {
        self.stack.push(Slot::Value(v));
    }

    fn pop(&mut self) -> Result<Value, String> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => Err("unexpected MARK on the stack".into()),
            None => Err("stack underflow".into()),
        }
    }

    fn top(&self) -> Result<&Value, String> {
        match self.stack.last() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err("empty stack or MARK where a value was expected".into()),
        }
    }

    /// Pops everything down to the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        loop {
            match self.stack.pop() {
                Some(Slot::Mark) => break,
                Some(Slot::Value(v)) => items.push(v),
                None => return Err("MARK not found".into()),
            }
        }
        items.reverse();
        Ok(items)
    }

    fn memo_put(&mut self, idx: usize) -> Result<(), String> {
        if idx > 1 << 24 {
            return Err(format!("memo index {idx} too large"));
        }
        let v = self.top()?.clone();
        if self.memo.len() <= idx {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }

    fn memo_get(&mut self, idx: usize) -> Result<(), String> {
        let v = self
            .memo
            .get(idx)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("memo index {idx} not set"))?;
        self.push(v);
        Ok(())
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.take(8)?; // FRAME
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.stack.push(Slot::Mark),
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v));
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v));
                }
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v));
                }
                0x8a => {
                    // LONG1: little-endian two's complement
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err("LONG1 wider than 64 bits".into());
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.utf8(n)?;
                    self.push(v);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    let b: Rc<[u8]> = self.take(n)?.into();
                    self.push(Value::Bytes(b));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b: Rc<[u8]> = self.take(n)?.into();
                    self.push(Value::Bytes(b));
                }
                b')' => self.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(Rc::new(items)));
                }
                b']' => self.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        _ => return Err("APPEND to a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        _ => return Err("APPENDS to a non-list".into()),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict(d) => d.borrow_mut().push((k, v)),
                        _ => return Err("SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err("SETITEMS with an odd number of items".into());
                    }
                    match self.top()? {
                        Value::Dict(d) => {
                            let mut d = d.borrow_mut();
                            let mut it = items.into_iter();
                            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                                d.push((k, v));
                            }
                        }
                        _ => return Err("SETITEMS on a non-dict".into()),
                    }
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(format!("{module}.{name}").into()));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module.as_str(), name.as_str()) {
                        (Some(m), Some(n)) => self.push(Value::Global(format!("{m}.{n}").into())),
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent_load(&pid)?;
                    self.push(v);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = call(&callable, &args)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    match self.top()? {
                        Value::Object(o) => o.borrow_mut().state = Some(state),
                        // OrderedDict state or similar: nothing we need.
                        Value::Dict(_) | Value::Tensor(_) => {}
                        _ => return Err("BUILD on an unsupported value".into()),
                    }
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {}",
                        self.pos - 1
                    ))
                }
            }
        }
    }
}

fn persistent_load(pid: &Value) -> Result<Value, String> {
    let items = pid.items().ok_or("persistent id is not a tuple")?;
    match items.as_slice() {
        [tag, kind, key, _device, numel] if tag.as_str() == Some("storage") => {
            let kind = match kind {
                Value::Global(g) => g.rsplit('.').next().unwrap_or_default().to_string(),
                Value::Str(s) => s.to_string(),
                _ => return Err("storage type is not a name".into()),
            };
            let key = key
                .as_str()
                .ok_or("storage key is not a string")?
                .to_string();
            let numel = numel
                .as_int()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("storage size is not a non-negative integer")?;
            Ok(Value::Storage(Rc::new(StorageRef { kind, key, numel })))
        }
        _ => {
            Err("unsupported persistent id (expected ('storage', type, key, device, numel))".into())
        }
    }
}

fn call(callable: &Value, args: &Value) -> Result<Value, String> {
    let Value::Global(name) = callable else {
        return Err("REDUCE/NEWOBJ of something that is not a global name".into());
    };
    let args = args
        .items()
        .ok_or("REDUCE/NEWOBJ arguments are not a tuple")?;
    match name.as_ref() {
        "torch._utils._rebuild_tensor_v2" => {
            if args.len() < 4 {
                return Err("_rebuild_tensor_v2 with fewer than 4 arguments".into());
            }
            let Value::Storage(storage) = &args[0] else {
                return Err("_rebuild_tensor_v2 without a storage".into());
            };
            let offset = args[1]
                .as_int()
                .and_then(|o| usize::try_from(o).ok())
                .ok_or("tensor storage offset is not a non-negative integer")?;
            let size = args[2]
                .usizes()
                .ok_or("tensor size is not a tuple of integers")?;
            let stride = args[3]
                .usizes()
                .ok_or("tensor stride is not a tuple of integers")?;
            if size.len() != stride.len() {
                return Err("tensor size and stride differ in length".into());
            }
            Ok(Value::Tensor(Rc::new(TensorRef {
                storage: storage.as_ref().clone(),
                offset,
                size,
                stride,
            })))
        }
        "collections.OrderedDict" => Ok(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
        "torch.jit._pickle.build_intlist"
        | "torch.jit._pickle.build_doublelist"
        | "torch.jit._pickle.build_boollist"
        | "torch.jit._pickle.build_tensorlist" => args
            .into_iter()
            .next()
            .ok_or_else(|| format!("{name} without argument")),
        _ => Ok(Value::Object(Rc::new(RefCell::new(Object {
            class: name.to_string(),
            state: None,
        })))),
    }
}

/// Writes pickles in the TorchScript style, for tests that need a synthetic archive.
#[cfg(test)]
pub(crate) mod write {
    /// A tiny pickle writer (protocol 2 subset).
    #[derive(Default)]
    pub struct Pickler {
        pub out: Vec<u8>,
    }

    impl Pickler {
        pub fn new() -> Self {
            Pickler { out: vec![0x80, 2] }
        }
        pub fn op(&mut self, op: u8) -> &mut Self {
            self.out.push(op);
            self
        }
        pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
            self.out.push(b'c');
            self.out.extend_from_slice(module.as_bytes());
            self.out.push(b'\n');
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(b'\n');
            self
        }
        pub fn str(&mut self, s: &str) -> &mut Self {
            self.out.push(b'X');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.out.extend_from_slice(s.as_bytes());
            self
        }
        pub fn int(&mut self, v: u32) -> &mut Self {
            if v < 256 {
                self.out.extend_from_slice(&[b'K', v as u8]);
            } else {
                self.out.push(b'J');
                self.out.extend_from_slice(&v.to_le_bytes());
            }
            self
        }
        pub fn put(&mut self, i: u8) -> &mut Self {
            self.out.extend_from_slice(&[b'q', i]);
            self
        }
        pub fn get(&mut self, i: u8) -> &mut Self {
            self.out.extend_from_slice(&[b'h', i]);
            self
        }
        /// A float tensor `_rebuild_tensor_v2(storage key, 0, size, contiguous stride)`.
        pub fn tensor(&mut self, key: &str, size: &[usize]) -> &mut Self {
            let numel: usize = size.iter().product();
            self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
            self.op(b'(')
                .str("storage")
                .global("torch", "FloatStorage")
                .str(key)
                .str("cpu")
                .int(numel as u32)
                .op(b't')
                .op(b'Q');
            self.int(0).op(b'(');
            for &s in size {
                self.int(s as u32);
            }
            self.op(b't').op(b'(');
            let mut stride = vec![1usize; size.len()];
            for i in (0..size.len().saturating_sub(1)).rev() {
                stride[i] = stride[i + 1] * size[i + 1];
            }
            for s in stride {
                self.int(s as u32);
            }
            self.op(b't').op(0x89);
            self.global("collections", "OrderedDict").op(b')').op(b'R');
            self.op(b't').op(b'R')
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_torchscript_style_module() {
        let mut p = write::Pickler::new();
        p.global("__torch__.m", "Conv").put(0).op(b')').op(0x81);
        p.op(b'}').op(b'(');
        p.str("weight").tensor("0", &[2, 3]);
        p.str("padding")
            .global("torch.jit._pickle", "build_intlist")
            .op(b']')
            .op(b'(')
            .int(0)
            .int(3)
            .op(b'e')
            .op(0x85)
            .op(b'R');
        p.str("stride").int(1000);
        p.op(b'u').op(b'b').op(b'.');
        let v = load(&p.out).unwrap();
        let Value::Object(o) = v else {
            panic!("not an object")
        };
        let o = o.borrow();
        assert_eq!(o.class, "__torch__.m.Conv");
        let Some(Value::Dict(d)) = &o.state else {
            panic!("no state")
        };
        let d = d.borrow();
        assert_eq!(d.len(), 3);
        let Value::Tensor(t) = &d[0].1 else {
            panic!("not a tensor")
        };
        assert_eq!(t.size, vec![2, 3]);
        assert_eq!(t.stride, vec![3, 1]);
        assert_eq!(t.storage.key, "0");
        assert_eq!(t.storage.kind, "FloatStorage");
        assert_eq!(t.storage.numel, 6);
        assert_eq!(d[1].1.usizes(), Some(vec![0, 3]));
        assert_eq!(d[2].1.as_int(), Some(1000));
    }

    #[test]
    fn truncated_and_unknown_input_are_errors_not_panics() {
        assert!(load(&[0x80, 2, b'X', 10, 0]).is_err());
        assert!(load(&[0x80, 2, 0xff]).is_err());
        assert!(load(&[]).is_err());
        assert!(load(&[b'h', 5]).is_err());
        assert!(load(b"u.").is_err());
    }
}
