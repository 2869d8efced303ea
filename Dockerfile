# syntax=docker/dockerfile:1
# candela: a CPU drop-in for the vllm/vllm-openai image in the vLLM Production Stack Helm chart.
#
# The chart replaces the command with `vllm serve <model> --flags…` (or `/opt/venv/bin/vllm` for
# `lmcache/vllm-openai` repositories), so the image puts a `vllm` symlink to the candela binary
# at both places; candela answers to the name it was invoked under (argv[0]).
#
#   docker build -t candela:cpu .
#   docker run --rm -p 8000:8000 -v ~/.cache/huggingface:/root/.cache/huggingface \
#       candela:cpu Qwen/Qwen2.5-0.5B-Instruct --served-model-name qwen
#
# Ray mode (raySpec, contract §2) also needs a `ray` CLI and a Python `ray` module (KubeRay runs
# `ray start`, `ray health-check` and the chart's wait_for_ray.py in this image); they are not
# part of this image yet. bash and python3 are already here for KubeRay's `bash -lc` wrappers.

# ---- build ---------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# Only the workspace sources (target/ and model caches stay out of the layer).
COPY Cargo.toml Cargo.lock ./
COPY kernels kernels
COPY models models
COPY engine engine
COPY server server
COPY tests tests
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p candela-server \
 && install -Dm755 target/release/candela /out/candela

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends bash python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/candela /usr/local/bin/candela
COPY docker/healthcheck.sh /usr/local/bin/candela-healthcheck
RUN ln -s candela /usr/local/bin/vllm \
 && mkdir -p /opt/venv/bin \
 && ln -s /usr/local/bin/candela /opt/venv/bin/vllm \
 && chmod 755 /usr/local/bin/candela-healthcheck \
 && vllm serve --help >/dev/null
# The chart sets HF_HOME (/data, /tmp or the shared PVC); this default serves plain `docker run`.
ENV HF_HOME=/root/.cache/huggingface \
    PATH=/opt/venv/bin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["candela-healthcheck"]
# Same entrypoint as vllm/vllm-openai: `docker run IMAGE <model> [flags]`.
ENTRYPOINT ["vllm", "serve"]
