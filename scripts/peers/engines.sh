#!/usr/bin/env bash
# The engine configurations compare_peers.sh can run, with matched settings (2 threads, context
# 2048, prefix caching off, loopback), and how to start each one. Sourced after common.sh.
#
# Tags: candela-bf16 candela-awq candela-awq-f32 candela-f16 candela-q4_0 vllm-fp32 vllm-bf16 llamacpp-f16 llamacpp-q4_0
#       (random Qwen2.5-0.5B shape) and candela-smollm2 llamacpp-smollm2 (real SmolLM2-135M Q4_1).

MAX_MODEL_LEN="${MAX_MODEL_LEN:-2048}"
THREADS="${THREADS:-2}"

# engine_meta TAG: sets ENGINE PRECISION MODEL_LABEL MODEL_PATH TOKENIZER SERVED EXTRA_BODY PORT.
engine_meta() {
  local tag="$1"
  EXTRA_BODY=""
  SERVED=qwen25-05b
  MODEL_LABEL="Qwen2.5-0.5B shape, random weights"
  TOKENIZER="$TOK_DIR"
  case "$tag" in
    candela-*) ENGINE=candela; PORT=8013 ;;
    vllm-*) ENGINE=vllm; PORT=8011 ;;
    llamacpp-*) ENGINE=llama.cpp; PORT=8012
      # llama-cpp-python's server ignores ignore_eos: ban the end-of-text ids instead. It runs
      # one request at a time; --interrupt_requests False queues the others instead of cutting them.
      EXTRA_BODY='{"logit_bias": {"151643": -100, "151645": -100}}' ;;
    *) return 1 ;;
  esac
  case "$tag" in
    candela-bf16) PRECISION=bf16; MODEL_PATH="$RAND_MODEL" ;;
    # --dtype bfloat16: computed as a bf16 model (bf16 activations times the exact codes in
    # prefill), as the bf16 rows; the checkpoint's own float16 would prefill in exact f32.
    # Decode GEMVs then take int8 activations (--int4-activations auto), as vLLM's CPU W4A8
    # and llama.cpp's Q4_0 x Q8_0.
    candela-awq) PRECISION="AWQ int4, bf16"; MODEL_PATH="$RAND_MODEL_AWQ" ;;
    # The same with exact f32 activations in the decode GEMVs.
    candela-awq-f32) PRECISION="AWQ int4, bf16, f32 decode act."; MODEL_PATH="$RAND_MODEL_AWQ" ;;
    candela-f16) PRECISION="F16 GGUF"; MODEL_PATH="$GGUF_F16" ;;
    candela-q4_0) PRECISION="Q4_0 GGUF"; MODEL_PATH="$GGUF_Q4_0" ;;
    vllm-fp32) PRECISION=fp32; MODEL_PATH="$RAND_MODEL" ;;
    vllm-bf16) PRECISION=bf16; MODEL_PATH="$RAND_MODEL" ;;
    llamacpp-f16) PRECISION="F16 GGUF"; MODEL_PATH="$GGUF_F16" ;;
    llamacpp-q4_0) PRECISION="Q4_0 GGUF"; MODEL_PATH="$GGUF_Q4_0" ;;
    *-smollm2)
      PRECISION="Q4_1 GGUF"; SERVED=smollm2
      MODEL_LABEL="SmolLM2-135M-Instruct (real weights)"
      MODEL_PATH="$("$REPO/scripts/fetch_smollm2.sh" 2>/dev/null || true)"
      TOKENIZER="$MODEL_PATH"
      if [ "$ENGINE" = llama.cpp ]; then EXTRA_BODY='{"logit_bias": {"0": -100, "1": -100, "2": -100}}'; fi ;;
    *) return 1 ;;
  esac
  return 0
}

# engine_cmd TAG: prints the server command line (after engine_meta), one word per line.
engine_cmd() {
  local tag="$1"
  case "$ENGINE" in
    candela)
      local dtype=auto
      local extra=()
      case "$PRECISION" in bf16 | *", bf16"*) dtype=bfloat16 ;; esac
      [ "$tag" = candela-awq-f32 ] && extra=(--int4-activations float32)
      printf '%s\n' env "RAYON_NUM_THREADS=$THREADS" "$CANDELA" serve "$MODEL_PATH" --host 127.0.0.1 --port "$PORT" \
        --served-model-name "$SERVED" --dtype "$dtype" --max-model-len "$MAX_MODEL_LEN" --no-enable-prefix-caching \
        "${extra[@]}" ;;
    vllm)
      local dtype=float32 preload=""
      case "$PRECISION" in bf16 | *", bf16"*) dtype=bfloat16 ;; esac
      [ -e /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 ] && preload=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
      [ -e "$VENV_VLLM/lib/libiomp5.so" ] && preload="${preload:+$preload:}$VENV_VLLM/lib/libiomp5.so"
      printf '%s\n' env VLLM_TARGET_DEVICE=cpu "VLLM_CPU_OMP_THREADS_BIND=0-$((THREADS - 1))" VLLM_CPU_NUM_OF_RESERVED_CPU=0 \
        VLLM_CPU_KVCACHE_SPACE=4 "LD_PRELOAD=$preload" "$VENV_VLLM/bin/vllm" serve "$MODEL_PATH" --host 127.0.0.1 \
        --port "$PORT" --served-model-name "$SERVED" --dtype "$dtype" --max-model-len "$MAX_MODEL_LEN" \
        --no-enable-prefix-caching ;;
    llama.cpp)
      printf '%s\n' "$VENV_LLAMA/bin/python" -m llama_cpp.server --model "$MODEL_PATH" --model_alias "$SERVED" \
        --n_threads "$THREADS" --n_threads_batch "$THREADS" --n_ctx "$MAX_MODEL_LEN" --interrupt_requests False \
        --host 127.0.0.1 --port "$PORT" ;;
  esac
}

# engine_ready TAG: whether the engine is installed and its model exists (prints why not).
engine_ready() {
  case "$ENGINE" in
    candela) [ -x "$CANDELA" ] || { echo "candela not built"; return 1; }
      "$CANDELA" serve --help >/dev/null 2>&1 || { echo "candela serve not available (pending)"; return 1; } ;;
    vllm) [ -f "$VENV_VLLM/.done" ] || { echo "vllm-cpu not installed"; return 1; } ;;
    llama.cpp) [ -f "$VENV_LLAMA/.done" ] || { echo "llama-cpp-python not installed"; return 1; } ;;
  esac
  [ -n "$MODEL_PATH" ] && [ -e "$MODEL_PATH" ] || { echo "model missing: ${MODEL_PATH:-?}"; return 1; }
}
