//! Typed quantization config: which int4 method a checkpoint uses (config.json
//! `quantization_config`, else `quantize_config.json` / `quant_config.json` in the model
//! directory), checked against the method requested with `--quantization`.

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use serde_json::Value;
use std::path::Path;
use std::str::FromStr;

/// A quantization method name as vLLM's `--quantization` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantMethod {
    /// AutoAWQ GEMM checkpoints.
    Awq,
    /// vLLM's Marlin kernels for AWQ checkpoints: same checkpoint format, our CPU kernels.
    AwqMarlin,
    /// AutoGPTQ / GPTQModel checkpoints.
    Gptq,
    /// vLLM's Marlin kernels for GPTQ checkpoints: same checkpoint format, our CPU kernels.
    GptqMarlin,
}

/// Names accepted by [`QuantMethod::from_str`].
pub const SUPPORTED_METHODS: &str = "awq, awq_marlin, gptq, gptq_marlin";

impl QuantMethod {
    /// The vLLM name (`awq`, `awq_marlin`, `gptq`, `gptq_marlin`).
    pub fn name(self) -> &'static str {
        match self {
            QuantMethod::Awq => "awq",
            QuantMethod::AwqMarlin => "awq_marlin",
            QuantMethod::Gptq => "gptq",
            QuantMethod::GptqMarlin => "gptq_marlin",
        }
    }

    /// Whether the method reads AWQ checkpoints (else GPTQ).
    pub fn is_awq(self) -> bool {
        matches!(self, QuantMethod::Awq | QuantMethod::AwqMarlin)
    }
}

impl std::fmt::Display for QuantMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantMethod {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "awq" => Ok(QuantMethod::Awq),
            "awq_marlin" => Ok(QuantMethod::AwqMarlin),
            "gptq" => Ok(QuantMethod::Gptq),
            "gptq_marlin" => Ok(QuantMethod::GptqMarlin),
            other => Err(ModelError::Config(format!(
                "quantization method {other:?} is not supported on CPU (supported: {SUPPORTED_METHODS})"
            ))),
        }
    }
}

/// How the packed tensors of a checkpoint are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    /// AutoAWQ GEMM: `qweight` `[in, out/8]` packed along the output dim, interleaved.
    AwqGemm,
    /// AutoGPTQ v1: `qweight` `[in/8, out]`, zeros stored minus one.
    GptqV1,
    /// GPTQModel `gptq_v2`: as v1 but zeros stored as they are.
    GptqV2,
}

/// The int4 quantization of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantConfig {
    /// Method in effect (the checkpoint's, or the requested Marlin alias of it).
    pub method: QuantMethod,
    /// Packed tensor layout.
    pub format: QuantFormat,
    /// Input channels per scale/zero group; `None` for one group over all inputs (`-1`).
    pub group_size: Option<usize>,
    /// GPTQ `sym` (zeros are then all 8; the kernels read them from `qzeros` either way).
    pub sym: bool,
    /// GPTQ `desc_act` (act-order: non-monotonic `g_idx`).
    pub desc_act: bool,
    /// Module name fragments kept dense (`modules_to_not_convert`).
    pub modules_to_not_convert: Vec<String>,
}

impl QuantConfig {
    /// Parses a `quantization_config` / `quantize_config.json` object. `Ok(None)` for methods
    /// handled elsewhere (`mxfp4`, read by the MoE expert loader); an error for other methods,
    /// bits other than 4 and layouts the CPU kernels cannot read (Marlin-packed, AWQ GEMV).
    pub fn from_json(v: &Value) -> Result<Option<Self>> {
        let bad = |m: String| Err(ModelError::Config(m));
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        let n = |k: &str| v.get(k).and_then(Value::as_i64);
        let b = |k: &str| v.get(k).and_then(Value::as_bool);
        // AutoAWQ's quant_config.json has no quant_method but `w_bit`/`version`.
        let method_name = s("quant_method").or_else(|| v.get("w_bit").map(|_| "awq".to_string()));
        let Some(method_name) = method_name else {
            return bad("quantization config has no quant_method".into());
        };
        if method_name == "mxfp4" {
            return Ok(None);
        }
        let method = QuantMethod::from_str(&method_name)?;
        let bits = n("bits").or_else(|| n("w_bit")).unwrap_or(4);
        if bits != 4 {
            return bad(format!(
                "{method} with {bits}-bit weights is not supported (only 4-bit)"
            ));
        }
        let group_size = match n("group_size").or_else(|| n("q_group_size")).unwrap_or(-1) {
            -1 => None,
            g if g > 0 && g % 8 == 0 => Some(g as usize),
            g => {
                return bad(format!(
                    "{method} group_size {g} is not supported (a positive multiple of 8 or -1)"
                ))
            }
        };
        let modules_to_not_convert = match v.get("modules_to_not_convert") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|m| m.as_str().map(String::from))
                .collect(),
            Some(other) => {
                return bad(format!(
                    "modules_to_not_convert must be a list, got {other}"
                ))
            }
        };
        let format = if method.is_awq() {
            match s("version").as_deref() {
                None | Some("gemm") => QuantFormat::AwqGemm,
                Some(other) => {
                    return bad(format!(
                        "AWQ version {other:?} is not supported (only gemm)"
                    ))
                }
            }
        } else {
            if b("is_marlin_format") == Some(true) {
                return bad(
                    "Marlin-packed GPTQ checkpoints (is_marlin_format) are not supported".into(),
                );
            }
            match s("checkpoint_format").as_deref() {
                None | Some("gptq") => QuantFormat::GptqV1,
                Some("gptq_v2") => QuantFormat::GptqV2,
                Some(other) => {
                    return bad(format!(
                        "GPTQ checkpoint_format {other:?} is not supported (gptq, gptq_v2)"
                    ))
                }
            }
        };
        Ok(Some(QuantConfig {
            method,
            format,
            group_size,
            sym: b("sym").unwrap_or(true),
            desc_act: b("desc_act").unwrap_or(false),
            modules_to_not_convert,
        }))
    }

    /// The quantization of `cfg`'s checkpoint: `quantization_config` from config.json, else
    /// `quantize_config.json` or `quant_config.json` in `model_dir`. `requested` (from
    /// `--quantization`) must name the same family (awq/awq_marlin or gptq/gptq_marlin) and
    /// becomes the method in effect; requesting a method for an unquantized checkpoint is an error.
    pub fn resolve(
        cfg: &ModelConfig,
        model_dir: Option<&Path>,
        requested: Option<QuantMethod>,
    ) -> Result<Option<Self>> {
        let raw = match &cfg.quantization_config {
            Some(v) if !v.is_null() => Some(v.clone()),
            _ => read_dir_config(model_dir)?,
        };
        let parsed = match &raw {
            Some(v) => Self::from_json(v)?,
            None => None,
        };
        match (parsed, requested) {
            (None, None) => Ok(None),
            (None, Some(r)) => {
                let what = raw.as_ref().and_then(|v| v.get("quant_method")).and_then(Value::as_str);
                let found = what.map_or("no quantization config (config.json quantization_config or quantize_config.json)".to_string(), |m| format!("quantization method {m}"));
                Err(ModelError::Config(format!("--quantization {r} was requested but the checkpoint has {found}")))
            }
            (Some(q), None) => Ok(Some(q)),
            (Some(mut q), Some(r)) if r.is_awq() == q.method.is_awq() => {
                q.method = r;
                Ok(Some(q))
            }
            (Some(q), Some(r)) => Err(ModelError::Config(format!(
                "Quantization method specified in the model config ({}) does not match the quantization method specified in the `quantization` argument ({r}).",
                q.method
            ))),
        }
    }

    /// Whether the module `prefix` (e.g. `model.layers.0.self_attn.q_proj`) stays dense: it
    /// contains one of `modules_to_not_convert`, as vLLM matches them.
    pub fn skips(&self, prefix: &str) -> bool {
        self.modules_to_not_convert
            .iter()
            .any(|m| !m.is_empty() && prefix.contains(m.as_str()))
    }
}

fn read_dir_config(model_dir: Option<&Path>) -> Result<Option<Value>> {
    let Some(dir) = model_dir else {
        return Ok(None);
    };
    for name in ["quantize_config.json", "quant_config.json"] {
        let path = dir.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            let v = serde_json::from_str(&text)
                .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
            return Ok(Some(v));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_awq_and_gptq_configs() {
        let awq = json!({"bits":4,"group_size":32,"modules_to_not_convert":null,"quant_method":"awq","version":"gemm","zero_point":true});
        let q = QuantConfig::from_json(&awq).unwrap().unwrap();
        assert_eq!(
            (q.method, q.format, q.group_size),
            (QuantMethod::Awq, QuantFormat::AwqGemm, Some(32))
        );
        let old_awq = json!({"w_bit":4,"q_group_size":128,"zero_point":true,"version":"GEMM"});
        assert_eq!(
            QuantConfig::from_json(&old_awq)
                .unwrap()
                .unwrap()
                .group_size,
            Some(128)
        );
        let gptq = json!({"bits":4,"group_size":-1,"desc_act":true,"sym":false,"quant_method":"gptq","checkpoint_format":"gptq_v2"});
        let q = QuantConfig::from_json(&gptq).unwrap().unwrap();
        assert_eq!(
            (q.format, q.group_size, q.desc_act, q.sym),
            (QuantFormat::GptqV2, None, true, false)
        );
        assert!(QuantConfig::from_json(&json!({"quant_method":"mxfp4"}))
            .unwrap()
            .is_none());
    }

    #[test]
    fn unsupported_configs_are_clear_errors() {
        let msg = |v: Value| QuantConfig::from_json(&v).unwrap_err().to_string();
        assert!(msg(json!({"quant_method":"gptq","bits":8,"group_size":128})).contains("8-bit"));
        assert!(
            msg(json!({"quant_method":"awq","bits":4,"group_size":128,"version":"gemv"}))
                .contains("gemv")
        );
        assert!(msg(
            json!({"quant_method":"gptq","bits":4,"group_size":128,"is_marlin_format":true})
        )
        .contains("Marlin"));
        assert!(msg(json!({"quant_method":"fp8"})).contains("not supported"));
    }

    #[test]
    fn requested_method_must_match_the_checkpoint() {
        let mut cfg = ModelConfig::from_json(r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":16}"#).unwrap();
        assert_eq!(QuantConfig::resolve(&cfg, None, None).unwrap(), None);
        assert!(QuantConfig::resolve(&cfg, None, Some(QuantMethod::Awq)).is_err());
        cfg.quantization_config =
            Some(json!({"bits":4,"group_size":128,"quant_method":"awq","version":"gemm"}));
        let err = QuantConfig::resolve(&cfg, None, Some(QuantMethod::Gptq))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Quantization method specified in the model config (awq) does not match the quantization method specified in the `quantization` argument (gptq)."), "{err}");
        let q = QuantConfig::resolve(&cfg, None, Some(QuantMethod::AwqMarlin))
            .unwrap()
            .unwrap();
        assert_eq!(q.method, QuantMethod::AwqMarlin);
        assert!(QuantConfig::resolve(&cfg, None, Some(QuantMethod::GptqMarlin)).is_err());
    }

    #[test]
    fn modules_to_not_convert_match_by_substring() {
        let v = json!({"bits":4,"group_size":128,"quant_method":"awq","modules_to_not_convert":["visual", "mlp.down_proj"]});
        let q = QuantConfig::from_json(&v).unwrap().unwrap();
        assert!(q.skips("model.layers.3.mlp.down_proj"));
        assert!(!q.skips("model.layers.3.mlp.up_proj"));
    }
}
