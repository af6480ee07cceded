"""Every error status the server promises, in OpenAI's shape, seen through the openai SDK and
raw HTTP: 400, 401, 403 (unit), 404, 413, 422, 429 (rate limit and full queue), 500 (unit)."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import openai
import pytest

from hearth.serve import schemas as s
from tests.serve_support import ServerHandle, start_hearth_server

CHAT = "local:smollm2"
HI = [{"role": "user", "content": "hi"}]


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    s.ErrorResponse.model_validate(body)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    return body["error"]


# --------------------------------------------------------------------------- session server


def test_401_missing_or_wrong_key(hearth_server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}):
        response = httpx.get(hearth_server.base_url + "/v1/models", headers=headers)
        error = assert_error_shape(response, 401, "invalid_api_key")
        assert error["type"] == "authentication_error"
        assert "HEARTH_API_KEYS" in error["message"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=hearth_server.base_url + "/v1", api_key="wrong", max_retries=0
        ).models.list()
    # Liveness and the web UI need no key.
    assert httpx.get(hearth_server.base_url + "/health").status_code == 200


def test_404_unknown_model_document_and_route(client, hearth_server):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=HI)
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    with hearth_server.http() as http:
        assert_error_shape(http.get("/v1/documents/987654"), 404, "not_found")
        assert_error_shape(http.get("/v1/nothing-here"), 404, "not_found")
        assert_error_shape(http.put("/v1/models"), 405, "method_not_allowed")


def test_400_malformed_json(hearth_server):
    with hearth_server.http() as http:
        response = http.post(
            "/v1/chat/completions",
            content=b'{"model": "local:smollm2", "messages": [',
            headers={"Content-Type": "application/json"},
        )
    error = assert_error_shape(response, 400, "invalid_json")
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {"model": CHAT, "messages": []},
        {"model": CHAT, "messages": HI, "temperature": 5},
        {"model": CHAT, "messages": HI, "n": 0},
        {"model": CHAT, "messages": [{"role": "robot", "content": "hi"}]},
        {"model": CHAT, "messages": HI, "max_tokens": "many"},
        {"messages": HI},
    ],
)
def test_422_body_does_not_match_the_schema(hearth_server, body):
    with hearth_server.http() as http:
        response = http.post("/v1/chat/completions", json=body)
    error = assert_error_shape(response, 422, "invalid_request_body")
    assert error["param"]


def test_422_through_the_sdk(client):
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model=CHAT, messages=HI, temperature=3.5)


# --------------------------------------------------------------------------- limits server

KEYS = {"rate": "key-rate", "busy": "key-busy", "queued": "key-queued", "big": "key-big"}


@pytest.fixture(scope="module")
def limits_server(served_index):
    """Tiny limits: 3 requests/minute per key, 0.05 MiB bodies, no queue (1 slot). One key
    per test so the rate limit of one never touches another; one key comes from the env."""
    args = ["--rate-limit", "3", "--max-upload-mb", "0.05", "--queue-size", "0"]
    args += ["--max-concurrency", "1"]
    for name in ("busy", "queued", "big"):
        args += ["--api-key", KEYS[name]]
    env = {"HEARTH_API_KEYS": f" ,{KEYS['rate']}"}
    with start_hearth_server(served_index, *args, api_key=None, env=env) as handle:
        handle.wait_ready()
        yield handle


def sdk(server: ServerHandle, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key, max_retries=0)


def test_429_over_the_per_key_rate_limit(limits_server):
    client = sdk(limits_server, KEYS["rate"])  # this key came from HEARTH_API_KEYS
    for _ in range(3):
        client.models.list()
    with pytest.raises(openai.RateLimitError) as err:
        client.models.list()
    assert err.value.body["code"] == "rate_limit_exceeded"
    assert int(err.value.response.headers["Retry-After"]) >= 1
    # Another key has its own budget.
    assert sdk(limits_server, KEYS["big"]).models.list().data


def test_413_body_over_the_limit(limits_server):
    headers = {"Authorization": f"Bearer {KEYS['big']}"}
    big = "x" * 80_000
    with httpx.Client(base_url=limits_server.base_url, headers=headers) as http:
        upload = http.post("/v1/ingest", files=[("files", ("big.md", big, "text/markdown"))])
        error = assert_error_shape(upload, 413, "request_too_large")
        assert "--max-upload-mb" in error["message"]
        chat = http.post(
            "/v1/chat/completions",
            json={"model": CHAT, "messages": [{"role": "user", "content": big}]},
        )
        assert_error_shape(chat, 413, "request_too_large")
    assert not (limits_server.index / "uploads" / "big.md").exists()


def test_429_when_the_queue_is_full(limits_server):
    """One generation holds the only slot and the queue has no room: the next one gets 429."""
    busy = sdk(limits_server, KEYS["busy"])
    stream = busy.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": "Write a long story about a lighthouse."}],
        max_tokens=400,
        stream=True,
    )
    try:
        next(iter(stream))  # the generation is running now
        with pytest.raises(openai.RateLimitError) as err:
            sdk(limits_server, KEYS["queued"]).chat.completions.create(
                model=CHAT, messages=HI, max_tokens=2
            )
        assert err.value.status_code == 429
        assert err.value.body["code"] == "server_overloaded"
        assert err.value.body["type"] == "rate_limit_error"
        assert int(err.value.response.headers["Retry-After"]) >= 1
    finally:
        stream.close()


# --------------------------------------------------------------------------- units


def test_403_remote_client_without_keys():
    from hearth.serve.auth import authenticate
    from hearth.serve.errors import APIError

    assert authenticate((), "127.0.0.1", None, "/v1/models").id == "host-127.0.0.1"
    assert authenticate((), "::1", None, "/v1/models")
    with pytest.raises(APIError) as err:
        authenticate((), "192.168.1.20", None, "/v1/models")
    assert (err.value.status, err.value.code) == (403, "loopback_only")
    assert "--api-key" in err.value.message
    assert authenticate((), "192.168.1.20", None, "/health")  # liveness probes still work
    # With keys, remote clients are fine as long as they send one.
    assert authenticate(("k",), "192.168.1.20", "Bearer k", "/v1/models").with_key
    with pytest.raises(APIError):
        authenticate(("k",), "192.168.1.20", None, "/metrics")
    assert authenticate(("k",), "127.0.0.1", None, "/metrics")  # a local scraper needs none


def test_500_hides_the_details():
    from hearth.serve.errors import INTERNAL_MESSAGE, from_exception

    error = from_exception(RuntimeError("secret path /home/me/.ssh in a traceback"))
    assert error.status == 500
    assert error.body()["error"] == {
        "message": INTERNAL_MESSAGE,
        "type": "server_error",
        "code": "internal_error",
        "param": None,
    }


def test_refuses_to_listen_beyond_loopback_without_keys(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hearth", "--index", str(tmp_path), "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEARTH_API_KEYS": ""},
    )
    assert result.returncode == 1
    assert "--api-key" in result.stderr and "HEARTH_API_KEYS" in result.stderr


def test_rate_limiter_refills_over_time():
    from hearth.serve.limits import RateLimiter

    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.check("a") == 0 and limiter.check("a") == 0
    wait = limiter.check("a")
    assert wait == pytest.approx(30.0)  # 2 per minute: one token every 30 s
    assert limiter.check("b") == 0  # callers do not share a bucket
    now[0] = 30.0
    assert limiter.check("a") == 0
    assert limiter.check("a") > 0
