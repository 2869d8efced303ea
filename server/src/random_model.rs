//! `candela make-random-model`: writes an HF checkpoint with random weights in a real model's
//! shape (config.json + model.safetensors in bf16), for benchmarks that need no download.

use clap::Args;
use half::bf16;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;
use std::path::PathBuf;

/// `make-random-model` flags.
#[derive(Debug, Clone, Args)]
pub struct RandomModelArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Shape preset: `qwen2.5-0.5b`.
    #[arg(long, default_value = "qwen2.5-0.5b")]
    pub preset: String,
    /// Override the number of layers (smaller models for quick runs).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Directory whose tokenizer files (tokenizer.json, tokenizer_config.json) are copied.
    #[arg(long)]
    pub tokenizer_from: PathBuf,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

struct Shape {
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    inter: usize,
    vocab: usize,
}

/// Runs `make-random-model`.
pub fn run(args: RandomModelArgs) -> anyhow::Result<()> {
    let mut s = match args.preset.as_str() {
        "qwen2.5-0.5b" => Shape { hidden: 896, layers: 24, heads: 14, kv_heads: 2, inter: 4864, vocab: 151936 },
        other => anyhow::bail!("unknown preset {other:?} (known: qwen2.5-0.5b)"),
    };
    if let Some(l) = args.layers {
        s.layers = l;
    }
    std::fs::create_dir_all(&args.out)?;
    let d = s.hidden / s.heads;
    let config = json!({
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": s.hidden, "intermediate_size": s.inter, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "vocab_size": s.vocab,
        "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "hidden_act": "silu",
        "use_sliding_window": false, "bos_token_id": 151643, "eos_token_id": 151643,
    });
    std::fs::write(args.out.join("config.json"), serde_json::to_string_pretty(&config)?)?;
    for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        let src = args.tokenizer_from.join(f);
        if src.exists() {
            std::fs::copy(&src, args.out.join(f))?;
        }
    }
    let mut shapes: Vec<(String, Vec<usize>)> = vec![("model.embed_tokens.weight".into(), vec![s.vocab, s.hidden]), ("model.norm.weight".into(), vec![s.hidden])];
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        for (n, shape) in [
            ("input_layernorm.weight", vec![s.hidden]),
            ("post_attention_layernorm.weight", vec![s.hidden]),
            ("self_attn.q_proj.weight", vec![s.heads * d, s.hidden]),
            ("self_attn.q_proj.bias", vec![s.heads * d]),
            ("self_attn.k_proj.weight", vec![s.kv_heads * d, s.hidden]),
            ("self_attn.k_proj.bias", vec![s.kv_heads * d]),
            ("self_attn.v_proj.weight", vec![s.kv_heads * d, s.hidden]),
            ("self_attn.v_proj.bias", vec![s.kv_heads * d]),
            ("self_attn.o_proj.weight", vec![s.hidden, s.heads * d]),
            ("mlp.gate_proj.weight", vec![s.inter, s.hidden]),
            ("mlp.up_proj.weight", vec![s.inter, s.hidden]),
            ("mlp.down_proj.weight", vec![s.hidden, s.inter]),
        ] {
            shapes.push((format!("{p}.{n}"), shape));
        }
    }
    let mut rng = args.seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<Vec<u8>> = shapes
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let is_norm = name.ends_with("norm.weight");
            // Norm weights near 1; others uniform with std 0.02, like HF's initializer_range.
            let amp = 0.02 * 3f32.sqrt();
            let mut bytes = Vec::with_capacity(n * 2);
            for _ in 0..n {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let u = (rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                let v = if is_norm { 1.0 + 0.1 * u } else { amp * u };
                bytes.extend_from_slice(&bf16::from_f32(v).to_le_bytes());
            }
            bytes
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = shapes
        .iter()
        .zip(&data)
        .map(|((name, shape), bytes)| Ok((name.clone(), TensorView::new(Dtype::BF16, shape.clone(), bytes)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &args.out.join("model.safetensors"))?;
    let params: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    eprintln!("wrote {} ({params} parameters, bf16)", args.out.display());
    Ok(())
}
