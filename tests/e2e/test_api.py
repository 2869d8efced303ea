"""The OpenAI-compatible API through the official `openai` SDK and raw HTTP: chat and completions,
streaming, n, logprobs, stop strings, seeds, usage against /tokenize, models, errors, metrics."""

import json
import socket
import time

import openai
import pytest
import requests

from conftest import ALIAS, SERVED, metric, metric_samples

MESSAGES = [{"role": "user", "content": "What is 2+2?"}]
GREEDY = dict(temperature=0, max_tokens=12, extra_body={"ignore_eos": True})


def test_models_lists_every_served_name(server):
    r = requests.get(server.url + "/v1/models")
    assert r.status_code == 200
    data = r.json()["data"]
    assert [m["id"] for m in data] == [SERVED, ALIAS]
    for m in data:
        assert m["object"] == "model" and m["owned_by"] == "vllm" and m["parent"] is None
        assert m["max_model_len"] == 512 and m["root"].endswith("qwen2")
        assert isinstance(m["permission"], list)
    assert server.client().models.list().data[0].id == SERVED


def test_chat_non_streaming(client, server):
    r = client.chat.completions.create(model=SERVED, messages=MESSAGES, **GREEDY)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == SERVED
    c = r.choices[0]
    assert c.message.role == "assistant" and c.finish_reason == "length"
    assert r.usage.completion_tokens == 12
    tok = requests.post(server.url + "/tokenize", json={"model": SERVED, "messages": MESSAGES}).json()
    assert r.usage.prompt_tokens == tok["count"]
    assert r.usage.total_tokens == tok["count"] + 12
    # The alias answers too, and echoes its own name.
    r2 = client.chat.completions.create(model=ALIAS, messages=MESSAGES, **GREEDY)
    assert r2.model == ALIAS and r2.choices[0].message.content == c.message.content


def test_chat_streaming_matches_non_streaming(client):
    full = client.chat.completions.create(model=SERVED, messages=MESSAGES, **GREEDY)
    stream = client.chat.completions.create(
        model=SERVED, messages=MESSAGES, stream=True, stream_options={"include_usage": True}, **GREEDY)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(ch.object == "chat.completion.chunk" for ch in chunks)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    finals = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finals == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens


def test_completions_and_streaming(client, server):
    prompt = "The quick brown fox"
    r = client.completions.create(model=SERVED, prompt=prompt, **GREEDY)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    tok = requests.post(server.url + "/tokenize", json={"prompt": prompt}).json()
    assert r.usage.prompt_tokens == tok["count"] and r.usage.completion_tokens == 12
    chunks = list(client.completions.create(model=SERVED, prompt=prompt, stream=True, **GREEDY))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    # Several prompts (text and token ids), echo.
    ids = tok["tokens"]
    r = client.completions.create(model=SERVED, prompt=[ids, ids], echo=True, **GREEDY)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[0].text == r.choices[1].text and r.choices[0].text.startswith(prompt)
    assert r.usage.prompt_tokens == 2 * len(ids)


def test_n_and_seed(client):
    kw = dict(model=SERVED, messages=MESSAGES, temperature=1.0, max_tokens=16, seed=1234,
              extra_body={"ignore_eos": True})
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert a.choices[0].message.content == b.choices[0].message.content
    others = {client.chat.completions.create(**{**kw, "seed": s}).choices[0].message.content
              for s in (1, 2, 3)}
    assert len(others | {a.choices[0].message.content}) > 1
    r = client.chat.completions.create(**{**kw, "n": 2})
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert r.usage.completion_tokens == 32
    r = client.completions.create(model=SERVED, prompt="Hello", n=2, temperature=1.0, seed=7,
                                  max_tokens=5, extra_body={"ignore_eos": True})
    assert len(r.choices) == 2


def test_logprobs(client):
    r = client.chat.completions.create(model=SERVED, messages=MESSAGES, logprobs=True,
                                       top_logprobs=3, **GREEDY)
    content = r.choices[0].logprobs.content
    assert len(content) == 12
    for t in content:
        assert len(t.top_logprobs) == 3
        assert t.logprob <= 0 and abs(t.logprob - t.top_logprobs[0].logprob) < 1e-4
        assert t.bytes == list(t.token.encode())
    r = client.completions.create(model=SERVED, prompt="Hello", logprobs=2, **GREEDY)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == 12
    assert all(len(d) >= 2 for d in lp.top_logprobs)
    assert "".join(lp.tokens) == r.choices[0].text


def test_stop_strings(client):
    base = client.completions.create(model=SERVED, prompt="Once upon a time", **GREEDY)
    text = base.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    assert stop.strip(), f"need a visible stop string in {text!r}"
    r = client.completions.create(model=SERVED, prompt="Once upon a time", stop=[stop], **GREEDY)
    c = r.choices[0]
    assert c.finish_reason == "stop" and c.text == text[:text.index(stop)]
    assert c.model_extra["stop_reason"] == stop
    r = client.completions.create(model=SERVED, prompt="Once upon a time", stop=stop,
                                  temperature=0, max_tokens=12,
                                  extra_body={"ignore_eos": True, "include_stop_str_in_output": True})
    assert r.choices[0].text == text[:text.index(stop) + len(stop)]


def test_errors(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert e.value.body["message"] == "The model `nope` does not exist."
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=SERVED, messages=MESSAGES, temperature=-2)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=SERVED, prompt=[5] * 600)
    assert "600" in e.value.body["message"] and "512" in e.value.body["message"]
    r = requests.post(server.url + "/v1/chat/completions", data="{oops",
                      headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "BadRequestError"
    r = requests.post(server.url + "/v1/completions", json={"prompt": "x", "suffix": "y"})
    assert r.status_code == 400 and "suffix" in r.json()["error"]["message"]


def test_version_load_ping(server):
    assert "version" in requests.get(server.url + "/version").json()
    assert requests.get(server.url + "/load").json() == {"server_load": 0}
    assert requests.get(server.url + "/ping").status_code == 200
    assert requests.post(server.url + "/ping").status_code == 200
    r = requests.get(server.url + "/health")
    assert r.status_code == 200 and r.content == b""


def test_metrics_counters_move(client, server):
    before = metric_samples(server.url)
    labels = {"model_name": SERVED, "engine": "0"}
    for name in ["vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:gpu_cache_usage_perc", "vllm:gpu_prefix_cache_hit_rate"]:
        assert (name, frozenset(labels.items())) in before, name
    r = client.completions.create(model=SERVED, prompt="Hello there", **GREEDY)
    time.sleep(0.2)
    after = metric_samples(server.url)
    d = lambda n, **kw: metric(after, n, **kw) - metric(before, n, **kw)  # noqa: E731
    assert d("vllm:prompt_tokens_total") == r.usage.prompt_tokens
    assert d("vllm:generation_tokens_total") == 12
    assert d("vllm:request_success_total", finished_reason="length") == 1
    assert d("vllm:e2e_request_latency_seconds_count") == 1
    assert d("vllm:time_to_first_token_seconds_count") == 1
    assert d("vllm:request_queue_time_seconds_count") == 1
    assert d("vllm:request_prompt_tokens_sum") == r.usage.prompt_tokens
    assert d("vllm:prefix_cache_queries_total") >= 0
    assert metric(after, "vllm:gpu_prefix_cache_queries_total") == metric(after, "vllm:prefix_cache_queries_total")
    assert metric(after, "vllm:num_requests_running") == 0


def test_client_disconnect_aborts(server):
    before = metric_samples(server.url)
    body = json.dumps({"model": SERVED, "prompt": "Once", "max_tokens": 490, "ignore_eos": True})
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall((f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        deadline = time.monotonic() + 10
        while metric(metric_samples(server.url), "vllm:num_requests_running") == 0:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.02)
    deadline = time.monotonic() + 10
    while True:
        after = metric_samples(server.url)
        if metric(after, "vllm:num_requests_running") == 0 and metric(after, "vllm:kv_cache_usage_perc") == 0:
            break
        assert time.monotonic() < deadline, "the request was not aborted"
        time.sleep(0.05)
    aborted = metric(after, "vllm:request_success_total", finished_reason="abort")
    assert aborted - metric(before, "vllm:request_success_total", finished_reason="abort") == 1
    assert metric(after, "vllm:generation_tokens_total") - metric(before, "vllm:generation_tokens_total") < 490
