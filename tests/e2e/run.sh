#!/usr/bin/env bash
# End-to-end tests: installs the Python test dependencies if missing, builds `candela`, and runs
# pytest against `candela serve` (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! python3 -c "import openai, prometheus_client, pytest, requests" 2>/dev/null; then
  python3 -m pip install --quiet openai prometheus_client pytest requests
fi
if [ -z "${CANDELA_SMOLLM2_GGUF:-}" ] && [ -x scripts/fetch_smollm2.sh ]; then
  CANDELA_SMOLLM2_GGUF="$(scripts/fetch_smollm2.sh)" || CANDELA_SMOLLM2_GGUF=""
  export CANDELA_SMOLLM2_GGUF
fi
cargo build -p candela-server
exec python3 -m pytest -q -p no:cacheprovider tests/e2e "$@"
