//! Safetensors checkpoints: finds a model directory's weight files (sharded through
//! `model.safetensors.index.json`, or every top-level `*.safetensors` as vLLM does), memory-maps
//! them, validates every header up front and serves tensors by HF name in their stored dtype.

use crate::error::{ModelError, Result};
use crate::weights::WeightSource;
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

/// File name of the shard index of a sharded safetensors checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Largest header accepted (the reference implementation's limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// An element type of the safetensors format: its name, width in bits and candle equivalent.
#[derive(Debug, Clone, Copy)]
struct StDtype {
    name: &'static str,
    bits: usize,
    candle: Option<DType>,
}

fn parse_dtype(s: &str) -> Option<StDtype> {
    let (name, bits, candle) = match s {
        "BOOL" => ("BOOL", 8, Some(DType::U8)),
        "U8" => ("U8", 8, Some(DType::U8)),
        "I8" => ("I8", 8, None),
        "F8_E4M3" => ("F8_E4M3", 8, Some(DType::F8E4M3)),
        "F8_E5M2" => ("F8_E5M2", 8, None),
        "F8_E8M0" => ("F8_E8M0", 8, None),
        "F4" => ("F4", 4, None),
        "F6_E2M3" => ("F6_E2M3", 6, None),
        "F6_E3M2" => ("F6_E3M2", 6, None),
        "I16" => ("I16", 16, Some(DType::I16)),
        "U16" => ("U16", 16, None),
        "F16" => ("F16", 16, Some(DType::F16)),
        "BF16" => ("BF16", 16, Some(DType::BF16)),
        "I32" => ("I32", 32, Some(DType::I32)),
        "U32" => ("U32", 32, Some(DType::U32)),
        "F32" => ("F32", 32, Some(DType::F32)),
        "I64" => ("I64", 64, Some(DType::I64)),
        "U64" => ("U64", 64, None),
        "F64" => ("F64", 64, Some(DType::F64)),
        "C64" => ("C64", 64, None),
        _ => return None,
    };
    Some(StDtype { name, bits, candle })
}

/// One tensor's place in a mapped file (byte offsets are absolute within the file).
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    dtype: StDtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

/// A safetensors checkpoint (one file or many shards), memory-mapped, addressed by HF tensor name.
pub struct SafetensorsWeights {
    shards: Vec<Shard>,
    tensors: HashMap<String, Entry>,
    metadata: HashMap<String, String>,
}

impl std::fmt::Debug for SafetensorsWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsWeights")
            .field(
                "files",
                &self.shards.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawIndex {
    weight_map: HashMap<String, String>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// The weight files of a checkpoint and, when sharded, which file each tensor is in.
struct Layout {
    files: Vec<PathBuf>,
    index: Option<(PathBuf, HashMap<String, PathBuf>)>,
}

fn corrupt(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Corrupt {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> ModelError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ModelError::MissingFile(path.to_path_buf())
    } else {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The safetensors files a checkpoint at `path` consists of, in load order.
///
/// `path` is a directory (its index's shards, or else every top-level `*.safetensors`, sorted;
/// subdirectories are ignored) or a single `.safetensors` file. Missing files (no weights at all,
/// or a shard the index names) give [`ModelError::MissingFile`].
pub fn weight_files(path: &Path) -> Result<Vec<PathBuf>> {
    Ok(layout(path)?.files)
}

/// Reads an index's `weight_map` (tensor name → shard file name), checking that every shard is a
/// plain file name inside the model directory.
fn read_index(index_path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| io_err(index_path, e))?;
    let raw: RawIndex = serde_json::from_str(&text)
        .map_err(|e| corrupt(index_path, format!("bad index JSON: {e}")))?;
    if raw.weight_map.is_empty() {
        return Err(corrupt(index_path, "weight_map is empty"));
    }
    for (name, file) in &raw.weight_map {
        let plain = !file.is_empty()
            && Path::new(file)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(corrupt(
                index_path,
                format!("shard {file:?} of tensor {name:?} is not a file name inside the model directory"),
            ));
        }
    }
    Ok(raw.weight_map)
}

/// The distinct shard file names (relative to the model directory) that the index at
/// `index_path` names, sorted.
pub fn index_shards(index_path: &Path) -> Result<Vec<String>> {
    let set: BTreeSet<String> = read_index(index_path)?.into_values().collect();
    Ok(set.into_iter().collect())
}

fn layout(path: &Path) -> Result<Layout> {
    if path.is_file() {
        return Ok(Layout {
            files: vec![path.to_path_buf()],
            index: None,
        });
    }
    if !path.is_dir() {
        return Err(ModelError::MissingFile(path.to_path_buf()));
    }
    let index_path = path.join(INDEX_FILE);
    if index_path.is_file() {
        let raw = read_index(&index_path)?;
        let mut map = HashMap::with_capacity(raw.len());
        let mut files = BTreeSet::new();
        for (name, file) in raw {
            let full = path.join(file);
            files.insert(full.clone());
            map.insert(name, full);
        }
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(ModelError::MissingFile(missing.clone()));
        }
        return Ok(Layout {
            files: files.into_iter().collect(),
            index: Some((index_path, map)),
        });
    }
    let entries = std::fs::read_dir(path).map_err(|e| io_err(path, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let p = entry.map_err(|e| io_err(path, e))?.path();
        if p.extension().is_some_and(|x| x == "safetensors") && p.is_file() {
            files.push(p);
        }
    }
    if files.is_empty() {
        return Err(ModelError::MissingFile(path.join("model.safetensors")));
    }
    files.sort();
    Ok(Layout { files, index: None })
}

/// A file's tensors (named, with absolute byte ranges) and its `__metadata__`.
type ParsedHeader = (Vec<(String, Entry)>, HashMap<String, String>);

/// Parses and validates one file's header against the file's length.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<ParsedHeader> {
    let len = bytes.len() as u64;
    let Some(prefix) = bytes.get(..8) else {
        return Err(corrupt(
            path,
            format!("file is {len} bytes, too short for a header"),
        ));
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(prefix);
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES {
        return Err(corrupt(
            path,
            format!("header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    if n > len - 8 {
        return Err(corrupt(
            path,
            format!("header length {n} exceeds the file size {len} (truncated?)"),
        ));
    }
    let data_start = 8 + n as usize;
    let data_len = bytes.len() - data_start;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..data_start])
            .map_err(|e| corrupt(path, format!("bad header JSON: {e}")))?;
    let mut metadata = HashMap::new();
    let mut out = Vec::with_capacity(header.len());
    for (name, value) in header {
        if name == "__metadata__" {
            metadata = serde_json::from_value(value).map_err(|e| {
                corrupt(
                    path,
                    format!("__metadata__ must map strings to strings: {e}"),
                )
            })?;
            continue;
        }
        let raw: RawEntry = serde_json::from_value(value)
            .map_err(|e| corrupt(path, format!("bad header entry for tensor {name:?}: {e}")))?;
        let dtype = parse_dtype(&raw.dtype).ok_or_else(|| {
            corrupt(
                path,
                format!("unknown dtype {:?} for tensor {name:?}", raw.dtype),
            )
        })?;
        let (start, end) = raw.data_offsets;
        if start > end || end > data_len {
            return Err(corrupt(
                path,
                format!("tensor {name:?} data offsets [{start}, {end}) lie outside the {data_len}-byte data section (truncated?)"),
            ));
        }
        let bits = raw
            .shape
            .iter()
            .try_fold(dtype.bits, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!("tensor {name:?} shape {:?} overflows", raw.shape),
                )
            })?;
        if !bits.is_multiple_of(8) || bits / 8 != end - start {
            return Err(corrupt(
                path,
                format!(
                    "tensor {name:?} of dtype {} and shape {:?} needs {bits} bits but has {} bytes",
                    dtype.name,
                    raw.shape,
                    end - start
                ),
            ));
        }
        out.push((
            name,
            Entry {
                shard: 0,
                dtype,
                shape: raw.shape,
                start: data_start + start,
                end: data_start + end,
            },
        ));
    }
    Ok((out, metadata))
}

impl SafetensorsWeights {
    /// Opens the checkpoint at `path` (a model directory or one `.safetensors` file).
    ///
    /// Every file is memory-mapped and its header validated now, so a truncated or corrupt file
    /// fails here with [`ModelError::Corrupt`] rather than later. Missing files give
    /// [`ModelError::MissingFile`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let layout = layout(path.as_ref())?;
        let mut shards: Vec<Shard> = Vec::with_capacity(layout.files.len());
        let mut tensors: HashMap<String, Entry> = HashMap::new();
        let mut metadata = HashMap::new();
        for (i, file_path) in layout.files.into_iter().enumerate() {
            let file = std::fs::File::open(&file_path).map_err(|e| io_err(&file_path, e))?;
            // SAFETY: the map is read-only; like every mmap-based loader we rely on the checkpoint
            // not being modified or truncated by another process while it is mapped.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| io_err(&file_path, e))?;
            let (entries, meta) = parse_header(&file_path, &mmap)?;
            for (k, v) in meta {
                metadata.entry(k).or_insert(v);
            }
            for (name, mut entry) in entries {
                entry.shard = i;
                let designated = match &layout.index {
                    Some((_, map)) => map.get(&name).is_none_or(|f| *f == file_path),
                    None => true,
                };
                if !designated {
                    continue;
                }
                if let Some(prev) = tensors.get(&name) {
                    tracing::warn!(
                        "tensor {name:?} appears in both {} and {}; using the first",
                        shards
                            .get(prev.shard)
                            .map(|s| s.path.display().to_string())
                            .unwrap_or_default(),
                        file_path.display()
                    );
                    continue;
                }
                tensors.insert(name, entry);
            }
            shards.push(Shard {
                path: file_path,
                mmap,
            });
        }
        if let Some((index_path, map)) = &layout.index {
            let mut missing: Vec<_> = map
                .iter()
                .filter(|(n, _)| !tensors.contains_key(*n))
                .collect();
            missing.sort();
            if let Some((name, file)) = missing.first() {
                return Err(corrupt(
                    index_path,
                    format!(
                        "weight_map puts {name:?} in {} but that file has no such tensor ({} such tensors)",
                        file.display(),
                        missing.len()
                    ),
                ));
            }
        }
        Ok(Self {
            shards,
            tensors,
            metadata,
        })
    }

    /// All tensor names in the checkpoint, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The files' `__metadata__` string map (merged over shards; the first file wins on conflicts).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The stored shape of tensor `name`, without reading its data.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape.as_slice())
    }

    /// The mapped files, in load order.
    pub fn files(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, name: &str) -> Result<Tensor> {
        let e = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let shard = self
            .shards
            .get(e.shard)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let dtype = e.dtype.candle.ok_or_else(|| {
            corrupt(
                &shard.path,
                format!(
                    "tensor {name:?} has dtype {}, which is not supported",
                    e.dtype.name
                ),
            )
        })?;
        let bytes = shard
            .mmap
            .get(e.start..e.end)
            .ok_or_else(|| corrupt(&shard.path, format!("tensor {name:?} data out of bounds")))?;
        Ok(Tensor::from_raw_buffer(
            bytes,
            dtype,
            &e.shape,
            &Device::Cpu,
        )?)
    }

    fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

#[cfg(test)]
#[path = "safetensors_tests.rs"]
mod tests;
