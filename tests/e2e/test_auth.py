"""API keys: /v1 paths need `Authorization: Bearer <key>` (401 `{"error": "Unauthorized"}`
otherwise); health, metrics, ping, version, load, tokenize and detokenize stay open."""

import openai
import pytest
import requests

from conftest import API_KEY


def test_v1_requires_the_key(auth_server):
    url = auth_server.url
    r = requests.get(url + "/v1/models")
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
    r = requests.get(url + "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = requests.post(url + "/v1/completions", json={"prompt": "x", "max_tokens": 1})
    assert r.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        auth_server.client("wrong").models.list()
    c = auth_server.client(API_KEY)
    assert c.models.list().data
    r = c.completions.create(model=c.models.list().data[0].id, prompt="Hi", max_tokens=2)
    assert r.usage.completion_tokens <= 2


def test_open_paths_stay_open(auth_server):
    url = auth_server.url
    for path in ["/health", "/metrics", "/ping", "/version", "/load"]:
        assert requests.get(url + path).status_code == 200, path
    assert requests.post(url + "/tokenize", json={"prompt": "hello"}).status_code == 200
    assert requests.post(url + "/detokenize", json={"tokens": [1, 2]}).status_code == 200


def test_no_key_means_no_auth(server):
    assert requests.get(server.url + "/v1/models").status_code == 200
