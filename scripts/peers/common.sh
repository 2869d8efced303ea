#!/usr/bin/env bash
# Shared settings for scripts/compare_peers.sh and the helpers under scripts/peers/: where the
# scratch virtualenvs, models and results live, pinned peer versions, and small log helpers.
# Sourced, never run.

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS_DIR="${PEERS_DIR:-$HOME/.cache/candela/peers}"
DL="$PEERS_DIR/dl"
LLAMA_VERSION="${LLAMA_VERSION:-0.3.36}"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
LLAMA_SRC="$PEERS_DIR/src/llama_cpp_python-$LLAMA_VERSION"
VENV_LLAMA="$PEERS_DIR/venv-llama"
VENV_VLLM="$PEERS_DIR/venv-vllm"
MODELS="$PEERS_DIR/models"
TOK_DIR="$MODELS/qwen2-tokenizer"
RAND_MODEL="$MODELS/qwen25-05b-rand"
RAND_MODEL_AWQ="$MODELS/qwen25-05b-rand-awq"
GGUF_F16="$MODELS/qwen25-05b-rand.f16.gguf"
GGUF_Q4_0="$MODELS/qwen25-05b-rand.q4_0.gguf"
RESULTS="${RESULTS:-$PEERS_DIR/results}"
CANDELA_TARGET="${CANDELA_TARGET:-$REPO/target/bench}"
CANDELA="${CANDELA:-$CANDELA_TARGET/release/candela}"
PY="${PYTHON:-python3}"

log() { printf '[peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
