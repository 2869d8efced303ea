"""Fixtures for the end-to-end tests: start the already-built `candela serve` on a free loopback
port, wait for /health, hand out base URLs and OpenAI clients, and stop the server with SIGTERM
(checking it exits 0). Nothing is built here: tests/e2e/run.sh builds the binary first."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import openai
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("CANDELA_FIXTURES", ROOT.parent / "shared" / "fixtures"))
BINARY = Path(os.environ.get("CANDELA_BIN", ROOT / "target" / "debug" / "candela"))
SERVED = "qwen2-test"
ALIAS = "qwen2-alias"
API_KEY = "e2e-secret-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> Path | None:
    """The SmolLM2 GGUF (scripts/fetch_smollm2.sh), or None when it is not on this machine."""
    env = os.environ.get("CANDELA_SMOLLM2_GGUF")
    path = Path(env) if env else Path.home() / ".cache/candela/SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def golden(name: str) -> dict:
    return json.loads((FIXTURES / name / "golden.json").read_text())


class Server:
    """A `candela serve` child process on 127.0.0.1."""

    def __init__(self, model: str, *args: str, env: dict | None = None):
        if not BINARY.is_file():
            pytest.fail(f"{BINARY} is missing: build it first (tests/e2e/run.sh does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="candela-e2e-", suffix=".log", delete=False)
        cmd = [str(BINARY), "serve", model, "--host", "127.0.0.1", "--port", str(self.port), *args]
        full_env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")}
        full_env.pop("VLLM_API_KEY", None)
        full_env.update(env or {})
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)

    def logs(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        pytest.fail(f"server not healthy after {timeout}s:\n{self.logs()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def client(self, api_key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120)


def serve_fixture(name: str, *extra: str) -> Server:
    # --dtype float32: the fixtures store bf16 weights, and HF computed the goldens in float32;
    # widening them to f32 keeps every activation exact (with bf16 weights, AVX512_BF16 hosts
    # round activations to bf16, which moves logits by ~0.1 and flips near-tie greedy steps).
    s = Server(str(FIXTURES / name), "--max-model-len", "512", "--generation-config", "vllm",
               "--kv-cache-memory-bytes", str(64 << 20), "--dtype", "float32", *extra)
    s.wait_healthy()
    return s


@pytest.fixture(scope="session")
def server():
    s = serve_fixture("qwen2", "--served-model-name", SERVED, ALIAS)
    yield s
    code = s.stop()
    assert code == 0, f"exit code {code} after SIGTERM:\n{s.logs()}"


@pytest.fixture(scope="session")
def client(server):
    return server.client()


@pytest.fixture(scope="session")
def auth_server():
    s = serve_fixture("qwen2", "--api-key", API_KEY)
    yield s
    s.stop()


def metric_samples(url: str) -> dict:
    """Every sample of /metrics as {(name, frozenset(labels)): value}, via prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def metric(samples: dict, name: str, **labels) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))
