//! Tests of the safetensors loader: fixtures, sharding, dtypes, and corrupt or missing files.

use super::*;
use crate::loader::scratch::ScratchDir;
use serde_json::json;

const FIXTURES: &str = "/work/shared/fixtures";

/// Serializes tensors `(name, dtype, shape, bytes)` into a safetensors file image.
fn st_bytes(
    tensors: &[(&str, &str, &[usize], Vec<u8>)],
    meta: Option<serde_json::Value>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if let Some(m) = meta {
        header.insert("__metadata__".into(), m);
    }
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let start = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn small_file() -> Vec<u8> {
    st_bytes(
        &[
            ("a", "F32", &[2, 2], f32_bytes(&[1.0, 2.0, 3.0, 4.0])),
            (
                "b",
                "I32",
                &[3],
                [-1i32, 0, 7].iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            ("c", "U8", &[2], vec![5, 6]),
        ],
        Some(json!({"format": "pt"})),
    )
}

fn expect_corrupt(r: Result<SafetensorsWeights>, needle: &str) {
    match r {
        Err(ModelError::Corrupt { msg, .. }) => {
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}")
        }
        other => panic!("expected Corrupt({needle}), got {other:?}"),
    }
}

#[test]
fn fixture_checkpoint_loads_in_stored_dtype() {
    let dir = Path::new(FIXTURES).join("llama");
    if !dir.is_dir() {
        eprintln!("skipping: fixtures not found at {}", dir.display());
        return;
    }
    let w = SafetensorsWeights::open(&dir).unwrap();
    assert_eq!(w.metadata().get("format").map(String::as_str), Some("pt"));
    // Only the top-level model.safetensors is read, not reference/golden.safetensors.
    assert_eq!(w.files().len(), 1);
    assert!(w.names().iter().all(|n| !n.starts_with("logits")));
    assert!(w.contains("lm_head.weight"));
    let q = w.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!(q.dims(), &[64, 64]);
    assert_eq!(q.dtype(), DType::BF16);
    let k = w.get("model.layers.1.self_attn.k_proj.weight").unwrap();
    assert_eq!(k.dims(), &[32, 64]);
    assert_eq!(
        w.shape("model.embed_tokens.weight"),
        Some(&[512usize, 64][..])
    );
    assert!(matches!(w.get("nope"), Err(ModelError::MissingTensor(_))));
    assert!(!w.contains("nope"));
}

#[test]
fn values_and_dtypes_round_trip() {
    let d = ScratchDir::new("st-values");
    d.write("model.safetensors", &small_file());
    let w = SafetensorsWeights::open(d.path()).unwrap();
    assert_eq!(w.names(), vec!["a", "b", "c"]);
    let a = w.get("a").unwrap();
    assert_eq!(a.dtype(), DType::F32);
    assert_eq!(
        a.to_vec2::<f32>().unwrap(),
        vec![vec![1.0, 2.0], vec![3.0, 4.0]]
    );
    let b = w.get("b").unwrap();
    assert_eq!(b.dtype(), DType::I32);
    assert_eq!(b.to_vec1::<i32>().unwrap(), vec![-1, 0, 7]);
    assert_eq!(w.get("c").unwrap().to_vec1::<u8>().unwrap(), vec![5, 6]);
    // A single file can be opened directly too.
    let single = SafetensorsWeights::open(d.path().join("model.safetensors")).unwrap();
    assert!(single.contains("a"));
}

#[test]
fn sharded_checkpoint_follows_the_index() {
    let d = ScratchDir::new("st-sharded");
    let s1 = st_bytes(&[("x", "F32", &[1], f32_bytes(&[1.5]))], None);
    let s2 = st_bytes(
        &[
            ("y", "F16", &[2], vec![0, 0x3c, 0, 0x40]),
            ("x", "F32", &[1], f32_bytes(&[9.0])),
        ],
        None,
    );
    d.write("model-00001-of-00002.safetensors", &s1);
    d.write("model-00002-of-00002.safetensors", &s2);
    // Not named by the index: must be ignored even though it is a top-level *.safetensors.
    d.write(
        "consolidated.safetensors",
        &st_bytes(&[("z", "U8", &[1], vec![1])], None),
    );
    let index = json!({"metadata": {"total_size": 8}, "weight_map": {
        "x": "model-00001-of-00002.safetensors",
        "y": "model-00002-of-00002.safetensors"}});
    d.write(INDEX_FILE, index.to_string().as_bytes());
    let w = SafetensorsWeights::open(d.path()).unwrap();
    assert_eq!(w.files().len(), 2);
    assert!(!w.contains("z"));
    // The index decides where `x` lives, even though shard 2 also has one.
    assert_eq!(w.get("x").unwrap().to_vec1::<f32>().unwrap(), vec![1.5]);
    let y = w.get("y").unwrap();
    assert_eq!(y.dtype(), DType::F16);
    assert_eq!(
        y.to_dtype(DType::F32).unwrap().to_vec1::<f32>().unwrap(),
        vec![1.0, 2.0]
    );
}

#[test]
fn index_problems_are_reported() {
    let d = ScratchDir::new("st-badindex");
    d.write("a.safetensors", &small_file());
    d.write(
        INDEX_FILE,
        json!({"weight_map": {"a": "missing.safetensors"}})
            .to_string()
            .as_bytes(),
    );
    assert!(
        matches!(SafetensorsWeights::open(d.path()), Err(ModelError::MissingFile(p)) if p.ends_with("missing.safetensors"))
    );
    d.write(
        INDEX_FILE,
        json!({"weight_map": {"q": "a.safetensors"}})
            .to_string()
            .as_bytes(),
    );
    expect_corrupt(SafetensorsWeights::open(d.path()), "no such tensor");
    d.write(
        INDEX_FILE,
        json!({"weight_map": {"a": "../a.safetensors"}})
            .to_string()
            .as_bytes(),
    );
    expect_corrupt(SafetensorsWeights::open(d.path()), "not a file name");
    d.write(INDEX_FILE, b"{not json");
    expect_corrupt(SafetensorsWeights::open(d.path()), "bad index JSON");
}

#[test]
fn unindexed_dir_reads_every_top_level_file_only() {
    let d = ScratchDir::new("st-multi");
    d.write(
        "b.safetensors",
        &st_bytes(&[("p", "F32", &[1], f32_bytes(&[2.0]))], None),
    );
    d.write("a.safetensors", &small_file());
    d.write(
        "sub/c.safetensors",
        &st_bytes(&[("q", "F32", &[1], f32_bytes(&[3.0]))], None),
    );
    d.write("notes.txt", b"hello");
    let w = SafetensorsWeights::open(d.path()).unwrap();
    assert_eq!(w.names(), vec!["a", "b", "c", "p"]);
    assert_eq!(w.metadata().get("format").map(String::as_str), Some("pt"));
}

#[test]
fn missing_files_are_missing_file_errors() {
    let d = ScratchDir::new("st-missing");
    assert!(matches!(
        SafetensorsWeights::open(d.path()),
        Err(ModelError::MissingFile(_))
    ));
    let nowhere = d.path().join("does-not-exist");
    assert!(
        matches!(SafetensorsWeights::open(&nowhere), Err(ModelError::MissingFile(p)) if p == nowhere)
    );
}

#[test]
fn corrupt_headers_are_corrupt_errors() {
    let d = ScratchDir::new("st-corrupt");
    let open = |bytes: &[u8]| {
        d.write("model.safetensors", bytes);
        SafetensorsWeights::open(d.path())
    };
    expect_corrupt(open(b""), "too short");
    expect_corrupt(open(&[1, 2, 3]), "too short");
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    expect_corrupt(open(&huge), "limit");
    let mut long = 64u64.to_le_bytes().to_vec();
    long.extend_from_slice(b"{}");
    expect_corrupt(open(&long), "exceeds the file size");
    let mut bad_json = 4u64.to_le_bytes().to_vec();
    bad_json.extend_from_slice(b"{x:1");
    expect_corrupt(open(&bad_json), "bad header JSON");
    expect_corrupt(
        open(&st_bytes(&[("t", "Q4", &[2], vec![0])], None)),
        "unknown dtype",
    );
    expect_corrupt(
        open(&st_bytes(&[("t", "F32", &[2], vec![0; 4])], None)),
        "needs 64 bits",
    );
    let neg = json!({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}).to_string();
    let mut neg_b = (neg.len() as u64).to_le_bytes().to_vec();
    neg_b.extend_from_slice(neg.as_bytes());
    neg_b.extend_from_slice(&[0; 4]);
    expect_corrupt(open(&neg_b), "bad header entry");
    expect_corrupt(open(&st_bytes(&[], Some(json!({"n": 1})))), "__metadata__");
    // Data offsets past the end of the file: cut the data section short.
    let full = small_file();
    expect_corrupt(open(&full[..full.len() - 1]), "outside");
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let d = ScratchDir::new("st-trunc");
    let full = small_file();
    for cut in 0..full.len() {
        d.write("model.safetensors", &full[..cut]);
        assert!(
            SafetensorsWeights::open(d.path()).is_err(),
            "cut at {cut} was accepted"
        );
    }
    d.write("model.safetensors", &full);
    assert!(SafetensorsWeights::open(d.path()).is_ok());
}

#[test]
fn unsupported_dtype_fails_on_get_only() {
    let d = ScratchDir::new("st-i8");
    d.write(
        "model.safetensors",
        &st_bytes(
            &[("t", "I8", &[2], vec![1, 2]), ("u", "BOOL", &[1], vec![1])],
            None,
        ),
    );
    let w = SafetensorsWeights::open(d.path()).unwrap();
    assert!(matches!(w.get("t"), Err(ModelError::Corrupt { msg, .. }) if msg.contains("I8")));
    assert_eq!(w.get("u").unwrap().dtype(), DType::U8);
}
