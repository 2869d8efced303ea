"""Server lifecycle: /health stays non-200 while a real model (the 98 MB SmolLM2 GGUF) loads and
/v1/models answers the moment it turns 200; SmolLM2 goldens through the API; SIGTERM drains an
in-flight stream and exits 0; a model that cannot load makes the process exit non-zero."""

import os
import threading
import time

import pytest
import requests

from conftest import Server, golden, smollm2_gguf
from test_golden import check_cases


@pytest.fixture(scope="module")
def gguf():
    path = smollm2_gguf()
    if path is None:
        if os.environ.get("CANDELA_REQUIRE_GGUF") == "1":
            pytest.fail("the SmolLM2 GGUF is required (scripts/fetch_smollm2.sh)")
        pytest.skip("SmolLM2 GGUF absent: run scripts/fetch_smollm2.sh")
    return path


def test_health_gates_models_and_sigterm_drains(gguf):
    s = Server(str(gguf), "--max-model-len", "512", "--generation-config", "vllm",
               "--kv-cache-memory-bytes", str(64 << 20), "--served-model-name", "smol")
    seen = []
    try:
        deadline = time.monotonic() + 300
        while True:
            assert time.monotonic() < deadline, s.logs()
            assert s.proc.poll() is None, s.logs()
            try:
                code = requests.get(s.url + "/health", timeout=5).status_code
            except requests.ConnectionError:
                code = None
            seen.append(code)
            if code == 200:
                models = requests.get(s.url + "/v1/models", timeout=5)
                break
            if code is not None:
                # Loading may finish between the two calls; before that it is a 503 error body.
                r = requests.get(s.url + "/v1/models", timeout=5)
                assert r.status_code in (200, 503)
                if r.status_code == 503:
                    assert r.json()["error"]["code"] == 503
            time.sleep(0.01)
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "smol"
        assert 503 in seen, f"never saw 503 while loading: {seen[:20]}"
        assert all(c in (None, 503) for c in seen[:-1])

        check_cases(s.url, golden("smollm2-135m-instruct"), model="smol")

        # SIGTERM with a stream in flight: the stream still ends with [DONE], the exit code is 0.
        lines = []

        def consume():
            body = {"model": "smol", "prompt": "Once upon a time", "max_tokens": 64,
                    "ignore_eos": True, "stream": True}
            with requests.post(s.url + "/v1/completions", json=body, stream=True, timeout=120) as r:
                for line in r.iter_lines():
                    if line:
                        lines.append(line.decode())

        t = threading.Thread(target=consume)
        t.start()
        deadline = time.monotonic() + 30
        while not lines:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        code = s.stop(timeout=60)
        t.join(timeout=60)
        assert code == 0, s.logs()
        assert lines[-1] == "data: [DONE]", lines[-3:]
    finally:
        s.stop()


def test_load_failure_exits_nonzero(tmp_path):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    s = Server(str(bad))
    try:
        code = s.proc.wait(timeout=60)
    finally:
        s.stop()
    assert code != 0, s.logs()
