//! `candela make-random-model`: writes an HF checkpoint with random weights in a real model's
//! shape (config.json + model.safetensors), for benchmarks that need no download: dense bf16, or
//! AutoAWQ GEMM int4 (group 128, fp16 scales, embeddings and norms fp16) as Qwen2.5-*-AWQ ship.

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
    /// Write the linear layers as AutoAWQ GEMM int4 (`awq`) instead of dense bf16.
    #[arg(long)]
    pub quant: Option<String>,
}

/// AWQ group size, as the published Qwen2.5 AWQ checkpoints use.
const AWQ_GROUP: usize = 128;

/// A deterministic xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

fn half_bytes(n: usize, rng: &mut Rng, f: impl Fn(f32) -> f32, as_f16: bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(n * 2);
    for _ in 0..n {
        let v = f(rng.unit());
        if as_f16 {
            bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes());
        } else {
            bytes.extend_from_slice(&bf16::from_f32(v).to_le_bytes());
        }
    }
    bytes
}

/// AutoAWQ GEMM tensors of a `[out, in]` projection: qweight `[in, out/8]`, qzeros
/// `[in/128, out/8]` (random nibbles are valid codes in either layout), scales fp16 `[in/128, out]`
/// sized so that dequantized weights have std ≈ 0.02.
fn awq_entries(prefix: &str, out: usize, inp: usize, rng: &mut Rng) -> Vec<Entry> {
    let words = |n: usize, rng: &mut Rng| {
        (0..n)
            .flat_map(|_| (rng.next() as u32).to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let groups = inp / AWQ_GROUP;
    vec![
        (
            format!("{prefix}.qweight"),
            Dtype::I32,
            vec![inp, out / 8],
            words(inp * out / 8, rng),
        ),
        (
            format!("{prefix}.qzeros"),
            Dtype::I32,
            vec![groups, out / 8],
            words(groups * out / 8, rng),
        ),
        (
            format!("{prefix}.scales"),
            Dtype::F16,
            vec![groups, out],
            half_bytes(groups * out, rng, |u| 0.0045 * (1.0 + 0.2 * u), true),
        ),
    ]
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
        "qwen2.5-0.5b" => Shape {
            hidden: 896,
            layers: 24,
            heads: 14,
            kv_heads: 2,
            inter: 4864,
            vocab: 151936,
        },
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
    let mut config = config;
    if args.quant.as_deref() == Some("awq") {
        config["torch_dtype"] = json!("float16");
        config["quantization_config"] = json!({"bits": 4, "group_size": AWQ_GROUP, "modules_to_not_convert": null, "quant_method": "awq", "version": "gemm", "zero_point": true});
    }
    std::fs::write(
        args.out.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        let src = args.tokenizer_from.join(f);
        if src.exists() {
            std::fs::copy(&src, args.out.join(f))?;
        }
    }
    let awq = match args.quant.as_deref() {
        None => false,
        Some("awq") => true,
        Some(other) => anyhow::bail!("unknown --quant {other:?} (known: awq)"),
    };
    let mut rng = Rng(args
        .seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1);
    // Dense tensors: norms near 1, others uniform with std 0.02 (HF's initializer_range).
    let amp = 0.02 * 3f32.sqrt();
    let dense = |name: String, shape: Vec<usize>, rng: &mut Rng| -> Entry {
        let n = shape.iter().product();
        let norm = name.ends_with("norm.weight");
        let bytes = half_bytes(n, rng, |u| if norm { 1.0 + 0.1 * u } else { amp * u }, awq);
        (
            name,
            if awq { Dtype::F16 } else { Dtype::BF16 },
            shape,
            bytes,
        )
    };
    let mut entries: Vec<Entry> = vec![
        dense(
            "model.embed_tokens.weight".into(),
            vec![s.vocab, s.hidden],
            &mut rng,
        ),
        dense("model.norm.weight".into(), vec![s.hidden], &mut rng),
    ];
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        for n in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            entries.push(dense(format!("{p}.{n}"), vec![s.hidden], &mut rng));
        }
        for (n, len) in [
            ("q_proj", s.heads * d),
            ("k_proj", s.kv_heads * d),
            ("v_proj", s.kv_heads * d),
        ] {
            entries.push(dense(
                format!("{p}.self_attn.{n}.bias"),
                vec![len],
                &mut rng,
            ));
        }
        for (n, out, inp) in [
            ("self_attn.q_proj", s.heads * d, s.hidden),
            ("self_attn.k_proj", s.kv_heads * d, s.hidden),
            ("self_attn.v_proj", s.kv_heads * d, s.hidden),
            ("self_attn.o_proj", s.hidden, s.heads * d),
            ("mlp.gate_proj", s.inter, s.hidden),
            ("mlp.up_proj", s.inter, s.hidden),
            ("mlp.down_proj", s.hidden, s.inter),
        ] {
            if awq {
                entries.extend(awq_entries(&format!("{p}.{n}"), out, inp, &mut rng));
            } else {
                entries.push(dense(format!("{p}.{n}.weight"), vec![out, inp], &mut rng));
            }
        }
    }
    let views: Vec<(String, TensorView<'_>)> = entries
        .iter()
        .map(|(name, dt, shape, bytes)| {
            Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?))
        })
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &args.out.join("model.safetensors"))?;
    let bytes: usize = entries.iter().map(|e| e.3.len()).sum();
    eprintln!(
        "wrote {} ({} tensors, {bytes} bytes, {})",
        args.out.display(),
        entries.len(),
        if awq { "AWQ int4 + fp16" } else { "bf16" }
    );
    Ok(())
}
