#!/usr/bin/env bash
# Flame graph of one `candela bench latency` run (in-process engine, no HTTP), with perf and
# inferno. Writes docs/profiles/<name>.svg and prints the top self-time symbols.
#
#   scripts/profile.sh NAME MODEL [bench-latency flags...]
#   scripts/profile.sh awq-decode ~/.cache/candela/peers/models/qwen25-05b-rand-awq \
#       --input-len 8 --output-len 128
#
# Needs `perf` (apt: linux-perf) and permission to use it; inferno is installed from crates.io
# into ~/.cache/candela/tools if missing. Uses the release build in target/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,9p "$0"; exit 2; }
name=$1 model=$2
shift 2
tools=$HOME/.cache/candela/tools
export PATH=$tools/bin:$PATH
command -v perf >/dev/null || { echo "perf is not installed (apt install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --root "$tools" --quiet
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/bench}
cargo build --release -p candela-server --quiet
bin=$CARGO_TARGET_DIR/release/candela
out=docs/profiles
mkdir -p "$out"
data=$(mktemp /tmp/candela-perf.XXXXXX)
# DWARF unwinding: release builds keep debug info (profile.release debug = 1) but no frame
# pointers. 8 KiB of stack per sample is enough for the engine's call depth.
perf record -q -F 499 --call-graph dwarf,8192 -o "$data" -- \
    "$bin" bench latency --model "$model" --num-iters-warmup 1 "$@" 2>&1 | tail -6
perf script -i "$data" 2>/dev/null | inferno-collapse-perf > "$data.folded"
inferno-flamegraph --title "candela bench latency: $name" < "$data.folded" > "$out/$name.svg"
echo "wrote $out/$name.svg; top self time:"
perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -15 | cut -c1-120
rm -f "$data" "$data.folded"
