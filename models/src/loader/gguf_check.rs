//! Up-front structural validation of a GGUF file image, so that a truncated or garbage file is
//! reported as [`ModelError::Corrupt`] instead of reaching candle's reader, which trusts lengths
//! (allocating whatever a corrupt length says) and divides by `general.alignment`.
//!
//! The walk follows the GGUF v2/v3 layout (ggml `docs/gguf.md`): magic, version, tensor count,
//! metadata count, metadata key/values, then tensor infos; every length is checked against the
//! bytes that remain before it is used.

use crate::error::{ModelError, Result};
use std::collections::HashSet;
use std::path::Path;

/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but unused by real files; bound the recursion.
const MAX_ARRAY_DEPTH: usize = 3;

/// A bounds-checked little-endian reader over the file image.
struct Walker<'a> {
    path: &'a Path,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Walker<'a> {
    fn corrupt(&self, msg: String) -> ModelError {
        ModelError::Corrupt {
            path: self.path.to_path_buf(),
            msg,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.corrupt(format!(
                "truncated: {what} needs {n} bytes at offset {} but the file has {} bytes",
                self.pos,
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A count of items each at least `min_size` bytes long, checked against the bytes left.
    fn count(&mut self, min_size: usize, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        if n > (self.remaining() / min_size.max(1)) as u64 {
            return Err(self.corrupt(format!(
                "{what} {n} is impossible: only {} bytes remain at offset {} (truncated or corrupt file)",
                self.remaining(),
                self.pos
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8]> {
        let n = self.count(1, what)?;
        self.take(n, what)
    }

    fn value(&mut self, ty: u32, depth: usize, key: &str) -> Result<()> {
        if let Some(size) = fixed_size(ty) {
            self.take(size, key)?;
            return Ok(());
        }
        match ty {
            8 => {
                self.string(key)?;
            }
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.corrupt(format!("metadata {key:?}: arrays nested too deeply")));
                }
                let elem = self.u32(key)?;
                let min = match (fixed_size(elem), elem) {
                    (Some(s), _) => s,
                    (None, 8) => 8,
                    (None, 9) => 12,
                    _ => {
                        return Err(self.corrupt(format!(
                            "metadata {key:?}: unknown array element type {elem}"
                        )))
                    }
                };
                let n = self.count(min, "array length")?;
                if fixed_size(elem).is_some() {
                    self.take(n * min, key)?;
                } else {
                    for _ in 0..n {
                        self.value(elem, depth + 1, key)?;
                    }
                }
            }
            _ => return Err(self.corrupt(format!("metadata {key:?}: unknown value type {ty}"))),
        }
        Ok(())
    }

    /// Reads an integer alignment value of type `ty` as candle interprets it (`None`: default).
    fn alignment(&mut self, ty: u32) -> Result<Option<u64>> {
        let v = match ty {
            0 => Some(self.take(1, "alignment")?[0] as u64),
            1 => {
                Some(self.take(1, "alignment")?[0] as i8 as i64).and_then(|v| u64::try_from(v).ok())
            }
            2 | 3 => {
                let b = self.take(2, "alignment")?;
                let raw = u16::from_le_bytes([b[0], b[1]]);
                if ty == 2 {
                    Some(raw as u64)
                } else {
                    u64::try_from(raw as i16).ok()
                }
            }
            4 => Some(self.u32("alignment")? as u64),
            5 => u64::try_from(self.u32("alignment")? as i32).ok(),
            other => {
                self.value(other, 0, "general.alignment")?;
                None
            }
        };
        Ok(v)
    }
}

/// Size in bytes of a fixed-size GGUF metadata value type.
fn fixed_size(ty: u32) -> Option<usize> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Checks that `buf` (the whole file at `path`) is a structurally sound GGUF v2/v3 image:
/// every string, array, metadata entry and tensor info lies inside the file, tensor ranks are at
/// most 4 with element counts that fit in memory, names are unique and the alignment is non-zero.
///
/// Tensor data ranges are checked afterwards, against the parsed tensor infos.
pub(crate) fn check_gguf_layout(path: &Path, buf: &[u8]) -> Result<()> {
    let mut w = Walker { path, buf, pos: 0 };
    let magic = w.take(4, "magic")?;
    if magic != b"GGUF" {
        return Err(w.corrupt(format!("not a GGUF file (magic {magic:02x?})")));
    }
    let version = w.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(w.corrupt(format!(
            "GGUF version {version} is not supported (only v2 and v3)"
        )));
    }
    let n_tensors = w.u64("tensor count")?;
    // Each metadata entry is at least a key length, a type and one byte of value.
    let n_kv = w.count(13, "metadata count")?;
    for _ in 0..n_kv {
        let key = String::from_utf8_lossy(w.string("metadata key")?).into_owned();
        let ty = w.u32("metadata type")?;
        if key == "general.alignment" {
            if w.alignment(ty)? == Some(0) {
                return Err(w.corrupt("general.alignment is 0".into()));
            }
        } else {
            w.value(ty, 0, &key)?;
        }
    }
    // Each tensor info is at least a name length, a rank, a type and an offset.
    if n_tensors > (w.remaining() / 24) as u64 {
        return Err(w.corrupt(format!(
            "tensor count {n_tensors} is impossible for the file size (truncated or corrupt file)"
        )));
    }
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let name = String::from_utf8_lossy(w.string("tensor name")?).into_owned();
        let rank = w.u32("tensor rank")?;
        if rank > MAX_DIMS {
            return Err(w.corrupt(format!(
                "tensor {name:?} has rank {rank} (at most {MAX_DIMS})"
            )));
        }
        let mut elems: usize = 1;
        for _ in 0..rank {
            let d = w.u64("tensor dimension")?;
            elems = usize::try_from(d)
                .ok()
                .and_then(|d| elems.checked_mul(d))
                .ok_or_else(|| {
                    w.corrupt(format!("tensor {name:?} has an impossible element count"))
                })?;
        }
        w.u32("tensor type")?;
        w.u64("tensor offset")?;
        if !names.insert(name.clone()) {
            return Err(w.corrupt(format!("tensor {name:?} appears twice")));
        }
    }
    Ok(())
}
