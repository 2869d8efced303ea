//! Tests of the GGUF loader: the real SmolLM2 file, synthetic llama/qwen2 files (naming, layout,
//! q/k un-permutation) and truncated or garbage files.

use super::*;
use crate::loader::gguf_names::permute_rows;
use crate::loader::scratch::ScratchDir;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};

fn smollm2_path() -> Option<PathBuf> {
    let p = std::env::var_os("CANDELA_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/candela/SmolLM2-135M-Instruct.Q4_1.gguf"))
        })?;
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("skipping: SmolLM2 GGUF not found at {}", p.display());
        None
    }
}

#[test]
fn smollm2_config_and_shapes() {
    let Some(path) = smollm2_path() else { return };
    let w = GgufWeights::open(&path).unwrap();
    assert_eq!(w.architecture(), "llama");
    let c = w.config().unwrap();
    assert_eq!(c.architecture, "LlamaForCausalLM");
    assert_eq!(c.model_type, "llama");
    assert_eq!(c.num_hidden_layers, 30);
    assert_eq!(c.hidden_size, 576);
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (9, 3, 64)
    );
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.rope_theta, 1e5);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.rope_scaling, RopeScaling::None);
    assert!(c.tie_word_embeddings);
    assert!(!c.attention_bias);
    assert_eq!(c.max_position_embeddings, 8192);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(1), vec![2])
    );
    assert!(
        matches!(w.metadata().get("tokenizer.ggml.tokens"), Some(Value::Array(v)) if v.len() == 49152)
    );

    assert!(!w.contains("lm_head.weight"));
    assert!(matches!(
        w.get("lm_head.weight"),
        Err(ModelError::MissingTensor(_))
    ));
    assert_eq!(w.names().len(), 30 * 9 + 2);
    let q = w.get("model.layers.0.self_attn.q_proj.weight").unwrap();
    assert_eq!((q.dims(), q.dtype()), (&[576, 576][..], DType::F32));
    let k = w.get("model.layers.29.self_attn.k_proj.weight").unwrap();
    assert_eq!(k.dims(), &[192, 576]);
    assert_eq!(
        w.get("model.layers.0.self_attn.v_proj.weight")
            .unwrap()
            .dims(),
        &[192, 576]
    );
    assert_eq!(
        w.get("model.layers.0.mlp.down_proj.weight").unwrap().dims(),
        &[576, 1536]
    );
    assert_eq!(
        w.get("model.layers.0.mlp.up_proj.weight").unwrap().dims(),
        &[1536, 576]
    );
    assert_eq!(w.get("model.norm.weight").unwrap().dims(), &[576]);
    let e = w.get("model.embed_tokens.weight").unwrap();
    assert_eq!(e.dims(), &[49152, 576]);
    let absmax = e
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(absmax.is_finite() && absmax > 0.0);
}

#[test]
fn truncated_smollm2_is_an_error() {
    let Some(path) = smollm2_path() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let d = ScratchDir::new("gguf-trunc-real");
    // Inside the metadata (tokenizer arrays), inside the tensor infos region, and one byte short.
    for cut in [100, 1 << 20, bytes.len() / 2, bytes.len() - 1] {
        let p = d.write("m.gguf", &bytes[..cut]);
        match GgufWeights::open(&p) {
            Err(ModelError::Corrupt { msg, .. }) => {
                assert!(msg.contains("trunc"), "cut {cut}: {msg}")
            }
            other => panic!("cut {cut}: expected Corrupt, got {other:?}"),
        }
    }
}

/// HF-layout test weights for a llama-like model: 2 heads / 1 KV head of head_dim 4, hidden 8.
struct Synth {
    q: Tensor,
    k: Tensor,
    q_bias: Tensor,
}

fn synth() -> Synth {
    let dev = &Device::Cpu;
    Synth {
        q: Tensor::arange(0f32, 64., dev)
            .unwrap()
            .reshape((8, 8))
            .unwrap(),
        k: (Tensor::arange(0f32, 32., dev)
            .unwrap()
            .reshape((4, 8))
            .unwrap()
            * -1.0)
            .unwrap(),
        q_bias: Tensor::arange(100f32, 108., dev).unwrap(),
    }
}

/// Writes a one-layer GGUF; llama files get llama.cpp's q/k row permutation, like the converter.
fn write_synthetic(d: &ScratchDir, arch: &str, extra: &[(&str, Value)]) -> PathBuf {
    let s = synth();
    let permute = arch == "llama";
    let qk = |t: &Tensor, n| {
        if permute {
            permute_rows("t", t, n).unwrap()
        } else {
            t.clone()
        }
    };
    let dev = &Device::Cpu;
    let ones = |n: usize| Tensor::ones(n, DType::F32, dev).unwrap();
    let mat =
        |r: usize, c: usize, s: f64| (Tensor::ones((r, c), DType::F32, dev).unwrap() * s).unwrap();
    let tensors: Vec<(&str, Tensor)> = vec![
        ("token_embd.weight", mat(16, 8, 0.5)),
        ("output_norm.weight", ones(8)),
        ("output.weight", mat(16, 8, 0.25)),
        ("blk.0.attn_norm.weight", ones(8)),
        ("blk.0.ffn_norm.weight", ones(8)),
        ("blk.0.attn_q.weight", qk(&s.q, 2)),
        ("blk.0.attn_q.bias", qk(&s.q_bias, 2)),
        ("blk.0.attn_k.weight", qk(&s.k, 1)),
        ("blk.0.attn_v.weight", mat(4, 8, 2.0)),
        ("blk.0.attn_output.weight", mat(8, 8, 3.0)),
        ("blk.0.ffn_gate.weight", mat(12, 8, 4.0)),
        ("blk.0.ffn_up.weight", mat(12, 8, 5.0)),
        ("blk.0.ffn_down.weight", mat(8, 12, 6.0)),
    ];
    let qt: Vec<(&str, QTensor)> = tensors
        .iter()
        .map(|(n, t)| (*n, QTensor::quantize(t, GgmlDType::F32).unwrap()))
        .collect();
    let k = |s: &str| format!("{arch}.{s}");
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (k("embedding_length"), Value::U32(8)),
        (k("feed_forward_length"), Value::U32(12)),
        (k("block_count"), Value::U32(1)),
        (k("attention.head_count"), Value::U32(2)),
        (k("attention.head_count_kv"), Value::U32(1)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        (k("rope.freq_base"), Value::F32(500000.0)),
        (k("context_length"), Value::U32(256)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    meta.extend(extra.iter().map(|(n, v)| (n.to_string(), v.clone())));
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let qt_refs: Vec<(&str, &QTensor)> = qt.iter().map(|(n, t)| (*n, t)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &meta_refs, &qt_refs).unwrap();
    d.write(&format!("{arch}.gguf"), &buf.into_inner())
}

fn same(a: &Tensor, b: &Tensor) -> bool {
    a.dims() == b.dims()
        && a.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            == b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn synthetic_llama_round_trips_to_hf_layout() {
    let d = ScratchDir::new("gguf-llama");
    let p = write_synthetic(
        &d,
        "llama",
        &[
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(4.0)),
        ],
    );
    let w = GgufWeights::open(&p).unwrap();
    let s = synth();
    assert!(same(
        &w.get("model.layers.0.self_attn.q_proj.weight").unwrap(),
        &s.q
    ));
    assert!(same(
        &w.get("model.layers.0.self_attn.k_proj.weight").unwrap(),
        &s.k
    ));
    assert!(same(
        &w.get("model.layers.0.self_attn.q_proj.bias").unwrap(),
        &s.q_bias
    ));
    assert_eq!(
        w.get("model.layers.0.mlp.down_proj.weight").unwrap().dims(),
        &[8, 12]
    );
    assert_eq!(w.get("lm_head.weight").unwrap().dims(), &[16, 8]);
    assert!(w.contains("lm_head.weight") && !w.contains("model.layers.1.mlp.up_proj.weight"));
    let c = w.config().unwrap();
    assert_eq!(
        (
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            c.vocab_size
        ),
        (8, 12, 1, 16)
    );
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        (2, 1, 4)
    );
    assert_eq!(
        (c.rms_norm_eps, c.rope_theta, c.max_position_embeddings),
        (1e-6, 5e5, 256)
    );
    assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 4.0 });
    assert!(!c.tie_word_embeddings);
    assert!(
        c.attention_bias,
        "a llama GGUF with attn_q.bias has attention biases"
    );
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.clone()),
        (Some(1), vec![2])
    );
    assert_eq!(w.names().len(), 13);
}

#[test]
fn synthetic_qwen2_is_not_unpermuted() {
    let d = ScratchDir::new("gguf-qwen2");
    let p = write_synthetic(&d, "qwen2", &[]);
    let w = GgufWeights::open(&p).unwrap();
    let s = synth();
    assert!(same(
        &w.get("model.layers.0.self_attn.q_proj.weight").unwrap(),
        &s.q
    ));
    assert!(same(
        &w.get("model.layers.0.self_attn.k_proj.weight").unwrap(),
        &s.k
    ));
    let c = w.config().unwrap();
    assert_eq!(
        (c.architecture.as_str(), c.model_type.as_str()),
        ("Qwen2ForCausalLM", "qwen2")
    );
    assert!(c.attention_bias);
}

#[test]
fn unsupported_metadata_is_reported() {
    let d = ScratchDir::new("gguf-meta");
    let p = write_synthetic(
        &d,
        "llama",
        &[("llama.rope.scaling.type", Value::String("yarn".into()))],
    );
    assert!(
        matches!(GgufWeights::open(&p).unwrap().config(), Err(ModelError::Config(m)) if m.contains("yarn"))
    );
    let p = write_synthetic(&d, "llama", &[("general.alignment", Value::U32(0))]);
    assert!(
        matches!(GgufWeights::open(&p), Err(ModelError::Corrupt { msg, .. }) if msg.contains("alignment"))
    );
    let mut bytes = std::fs::read(write_synthetic(&d, "qwen2", &[])).unwrap();
    // Rename the architecture in place: "qwen2" -> "gemma" (same length).
    let at = bytes.windows(5).position(|w| w == b"qwen2").unwrap();
    bytes[at..at + 5].copy_from_slice(b"gemma");
    let p = d.write("gemma.gguf", &bytes);
    assert!(
        matches!(GgufWeights::open(&p), Err(ModelError::UnsupportedArchitecture { name, .. }) if name == "gemma")
    );
}

#[test]
fn garbage_and_truncation_are_errors_not_panics() {
    let d = ScratchDir::new("gguf-garbage");
    let full = std::fs::read(write_synthetic(&d, "llama", &[])).unwrap();
    for cut in 0..full.len() {
        let p = d.write("t.gguf", &full[..cut]);
        assert!(GgufWeights::open(&p).is_err(), "cut at {cut} accepted");
    }
    let mut header = b"GGUF".to_vec();
    header.extend_from_slice(&3u32.to_le_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not a gguf file at all, just text".to_vec(), "magic"),
        (
            [b"GGUF".as_slice(), &1u32.to_le_bytes(), &[0; 16]].concat(),
            "version",
        ),
        // One metadata entry whose key claims to be 2^60 bytes long.
        (
            [
                header.as_slice(),
                &0u64.to_le_bytes(),
                &1u64.to_le_bytes(),
                &(1u64 << 60).to_le_bytes(),
                &[0; 8],
            ]
            .concat(),
            "impossible",
        ),
        // A u32 array with 2^40 elements.
        (
            [
                header.as_slice(),
                &0u64.to_le_bytes(),
                &1u64.to_le_bytes(),
                &1u64.to_le_bytes(),
                b"k",
                &9u32.to_le_bytes(),
                &4u32.to_le_bytes(),
                &(1u64 << 40).to_le_bytes(),
            ]
            .concat(),
            "impossible",
        ),
        // A tensor of rank 100.
        (
            [
                header.as_slice(),
                &1u64.to_le_bytes(),
                &0u64.to_le_bytes(),
                &1u64.to_le_bytes(),
                b"t",
                &100u32.to_le_bytes(),
                &[0; 32],
            ]
            .concat(),
            "rank",
        ),
        // A tensor whose dims overflow.
        (
            [
                header.as_slice(),
                &1u64.to_le_bytes(),
                &0u64.to_le_bytes(),
                &1u64.to_le_bytes(),
                b"t",
                &2u32.to_le_bytes(),
                &u64::MAX.to_le_bytes(),
                &u64::MAX.to_le_bytes(),
                &[0; 12],
            ]
            .concat(),
            "element count",
        ),
    ];
    for (bytes, needle) in cases {
        let p = d.write("g.gguf", &bytes);
        match GgufWeights::open(&p) {
            Err(ModelError::Corrupt { msg, .. }) => {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
            }
            other => panic!("expected Corrupt({needle}), got {other:?}"),
        }
    }
    assert!(matches!(
        GgufWeights::open(d.path().join("absent.gguf")),
        Err(ModelError::MissingFile(_))
    ));
}

#[test]
fn flipped_header_bytes_never_panic() {
    let d = ScratchDir::new("gguf-flip");
    let full = std::fs::read(write_synthetic(&d, "llama", &[])).unwrap();
    let header_len = Content::read(&mut Cursor::new(&full[..]))
        .unwrap()
        .tensor_data_offset as usize;
    for pos in 0..header_len {
        for mask in [0xffu8, 0x80, 0x01] {
            let mut bytes = full.clone();
            bytes[pos] ^= mask;
            let p = d.write("f.gguf", &bytes);
            if let Ok(w) = GgufWeights::open(&p) {
                let _ = w.config();
                for n in w.names() {
                    let _ = w.get(&n);
                }
            }
        }
    }
}
