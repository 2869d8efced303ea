#!/usr/bin/env bash
# Builds the benchmark models under $PEERS_DIR/models, skipping what exists:
# - a real Qwen2/Qwen2.5 tokenizer rebuilt from the vocab GGUF in the llama-cpp-python sdist;
# - a random-weight Qwen2.5-0.5B-shaped checkpoint (`candela make-random-model`, bf16);
# - its GGUF conversions: F16 (llama.cpp's convert_hf_to_gguf.py, run with the vLLM venv's
#   python, which has torch and transformers) and Q4_0 (llama.cpp's quantizer via ctypes).
set -euo pipefail
. "$(dirname "$0")/common.sh"
mkdir -p "$MODELS"
GGUF_PY="$LLAMA_SRC/vendor/llama.cpp/gguf-py"
[ -d "$LLAMA_SRC" ] || die "llama-cpp-python sdist not unpacked: run setup first"

if [ ! -s "$TOK_DIR/tokenizer.json" ]; then
  log "rebuilding the Qwen2 tokenizer from ggml-vocab-qwen2.gguf"
  py="$VENV_VLLM/bin/python"; [ -x "$py" ] || py="$VENV_LLAMA/bin/python"
  PYTHONPATH="$GGUF_PY" "$py" "$REPO/scripts/peers/qwen2_tokenizer.py" \
    "$LLAMA_SRC/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf" "$TOK_DIR"
fi

if [ ! -s "$RAND_MODEL/model.safetensors" ]; then
  [ -x "$CANDELA" ] || die "$CANDELA not built"
  log "writing the random Qwen2.5-0.5B-shaped checkpoint"
  "$CANDELA" make-random-model --out "$RAND_MODEL" --preset qwen2.5-0.5b --tokenizer-from "$TOK_DIR" --seed 0
fi

if [ ! -s "$RAND_MODEL_AWQ/model.safetensors" ]; then
  [ -x "$CANDELA" ] || die "$CANDELA not built"
  log "writing the random Qwen2.5-0.5B-shaped AWQ int4 checkpoint (group 128, as Qwen2.5-*-AWQ ship)"
  "$CANDELA" make-random-model --out "$RAND_MODEL_AWQ" --preset qwen2.5-0.5b --quant awq --tokenizer-from "$TOK_DIR" --seed 0
fi

if [ ! -s "$GGUF_F16" ]; then
  [ -x "$VENV_VLLM/bin/python" ] || die "F16 GGUF conversion needs torch+transformers (the vLLM venv)"
  log "converting to GGUF F16"
  "$VENV_VLLM/bin/python" "$LLAMA_SRC/vendor/llama.cpp/convert_hf_to_gguf.py" "$RAND_MODEL" \
    --outtype f16 --outfile "$GGUF_F16.tmp" >"$MODELS/convert.log" 2>&1 || { tail -20 "$MODELS/convert.log" >&2; die "conversion failed"; }
  mv "$GGUF_F16.tmp" "$GGUF_F16"
fi

if [ ! -s "$GGUF_Q4_0" ]; then
  log "quantizing to GGUF Q4_0"
  "$VENV_LLAMA/bin/python" "$REPO/scripts/peers/quantize.py" "$GGUF_F16" "$GGUF_Q4_0.tmp" q4_0 >"$MODELS/quantize.log" 2>&1 ||
    { tail -20 "$MODELS/quantize.log" >&2; die "quantization failed"; }
  mv "$GGUF_Q4_0.tmp" "$GGUF_Q4_0"
fi
ls -la "$MODELS" >&2
