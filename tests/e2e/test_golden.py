"""Greedy outputs through the HTTP API equal the HF goldens of the fixtures: every case's 16 greedy
token ids, compared up to the first step whose top-1/top-2 margin is below 1e-3 (a near tie that
float noise may flip). Chat cases run both as rendered text on /v1/completions and as messages
on /v1/chat/completions; /tokenize reproduces the golden prompt ids."""

import pytest
import requests

from conftest import golden, serve_fixture

MARGIN = 1e-3


def comparable(case: dict) -> int:
    """How many leading greedy ids must match."""
    for i, m in enumerate(case["greedy_top1_top2_margin"]):
        if m < MARGIN:
            return i
    return len(case["greedy_ids"])


def check_cases(url: str, g: dict, model: str | None = None):
    body_base = {"temperature": 0, "max_tokens": 16, "ignore_eos": True, "return_token_ids": True}
    if model:
        body_base["model"] = model
    for case in g["cases"]:
        k = comparable(case)
        want = case["greedy_ids"][:k]
        add = case.get("add_special_tokens", case["kind"] == "text")
        tok = requests.post(url + "/tokenize",
                            json={"prompt": case["text"], "add_special_tokens": add}).json()
        assert tok["tokens"] == case["input_ids"], case["text"]
        r = requests.post(url + "/v1/completions",
                          json={**body_base, "prompt": case["text"], "add_special_tokens": add})
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["token_ids"][:k] == want, (case["text"], choice["token_ids"], want)
        assert r.json()["usage"]["prompt_tokens"] == len(case["input_ids"])
        # Same ids through logprobs (the chosen token of every step).
        r = requests.post(url + "/v1/completions",
                          json={**body_base, "prompt": case["input_ids"], "logprobs": 0})
        toks = r.json()["choices"][0]["logprobs"]["tokens"]
        assert len(toks) == 16
        if "messages" in case:
            tok = requests.post(url + "/tokenize", json={
                "messages": case["messages"],
                "add_generation_prompt": case.get("add_generation_prompt", True)}).json()
            assert tok["tokens"] == case["input_ids"]
            r = requests.post(url + "/v1/chat/completions", json={
                **body_base, "messages": case["messages"],
                "add_generation_prompt": case.get("add_generation_prompt", True)})
            assert r.status_code == 200, r.text
            got = r.json()["choices"][0]["token_ids"]
            assert got[:k] == want, (case["messages"], got, want)
    multi = g.get("chat_multi_turn")
    if multi:
        tok = requests.post(url + "/tokenize", json={
            "messages": multi["messages"], "add_generation_prompt": multi["add_generation_prompt"]}).json()
        assert tok["tokens"] == multi["input_ids"]


@pytest.mark.parametrize(
    "name", ["qwen2", "llama", "qwen2-tied", "qwen2-awq", "llama-gptq", "llama-gptq-actorder"])
def test_fixture_goldens(name):
    s = serve_fixture(name)
    try:
        check_cases(s.url, golden(name))
    finally:
        assert s.stop() == 0


def test_qwen2_golden_on_shared_server(server):
    check_cases(server.url, golden("qwen2"), model="qwen2-test")
