"""Every bad input `apr serve` must survive, with its HTTP status and OpenAI's error shape
({"error": {"message", "type", "param", "code"}}) or Ollama's ({"error": "..."}) on /api: bad JSON
and types, unknown roles, absurd max_tokens, n > 1, negative temperature, a prompt longer than the
context (code context_length_exceeded, both counts named), bodies over --max-body (413, also
chunked), API keys (401; /health open), unknown paths (404), a full queue (503 + Retry-After),
malformed HTTP. The server must still be healthy afterwards, exit 0 on SIGTERM and (under ASan)
report nothing."""
import json
import socket
import threading

import openai
import pytest

from serve_support import Server, read_until, synth_model

TIMEOUT = 60
CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return synth_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(model):
    with Server(model, "-t", 2, "--ctx", 128, "--max-body", "64KiB") as s:
        yield s
        status, _, _ = s.request("GET", "/health")
        assert status == 200, s.log
        assert s.stop() == 0, s.log
        assert not s.sanitizer_reports(), s.log


def openai_error(server, path, body, status, param=None, code=None, message=None, headers=None):
    got, response_headers, raw = server.request("POST", path, body, headers=headers)
    assert got == status, raw
    assert response_headers["Content-Type"] == "application/json"
    error = json.loads(raw)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param and error["code"] == code
    if message:
        assert message in error["message"], error["message"]
    return error, response_headers


def user(content="hi"):
    return [{"role": "user", "content": content}]


@pytest.mark.parametrize("body,param,message", [
    (b'{"messages": [', None, "not valid JSON"),
    (b"[1, 2]", None, "must be a JSON object"),
    (b"", None, "not valid JSON"),
    (b'{"messages": "hi"}', "messages", "array of messages"),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role", "'wizard'"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', "max_tokens", "between 1 and 128"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000000}', "max_tokens", "got 100000000"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}', "max_tokens", "an integer"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', "n", "must be 1"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -1}', "temperature", "between 0"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "warm"}', "temperature", "a number"),
    (b'{"messages": [{"role": "user", "content": "x"}], "top_k": 1.5}', "top_k", "an integer"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stop": 5}', "stop", "string or an array"),
    (b'{"messages": [{"role": "user", "content": "x"}], "stream": 1}', "stream", "a boolean"),
    (b'{"messages": [{"role": "user", "content": "\xff"}]}', None, "not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, None, "deeper than"),
])
def test_bad_chat_bodies_get_400(server, body, param, message):
    error, _ = openai_error(server, CHAT, body, 400, param=param, message=message)
    assert error["type"] == "invalid_request_error"


def test_bad_completion_bodies_get_400(server):
    openai_error(server, "/v1/completions", {"prompt": [1, 2, 10**9]}, 400, message="outside the vocabulary")
    openai_error(server, "/v1/completions", {"prompt": ["a", "b"]}, 400, param="prompt", message="2 prompts")
    openai_error(server, "/v1/completions", {"max_tokens": 3}, 400, param="prompt", message="missing")


def test_prompt_longer_than_the_context_names_both_counts(server):
    prompt = " ".join(["hello"] * 300)
    error, _ = openai_error(server, "/v1/completions", {"prompt": prompt}, 400, param="prompt",
                            code="context_length_exceeded", message="the context holds 128")
    assert "301 tokens" in error["message"] or "300 tokens" in error["message"]
    error, _ = openai_error(server, CHAT, {"messages": user(prompt)}, 400, param="messages", code="context_length_exceeded")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", timeout=TIMEOUT, max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=user(prompt))
    assert caught.value.status_code == 400 and caught.value.code == "context_length_exceeded"


def test_bodies_over_the_limit_get_413_also_chunked(server):
    big = json.dumps({"prompt": "a" * 70000}).encode()
    openai_error(server, "/v1/completions", big, 413, code="request_too_large", message="65536 bytes")
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(big[i:i + 10000]), big[i:i + 10000]) for i in range(0, len(big), 10000))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        response = read_until(sock, b"}}")
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        # The connection is still in step: a second request on it is answered normally.
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_until(sock, b'"ok"}').split(b"\r\n")[0] == b"HTTP/1.1 200 OK"


def test_unknown_paths_get_404_in_each_apis_shape(server):
    status, headers, raw = server.request("GET", "/v1/nothing")
    assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error"
    status, headers, raw = server.request("POST", "/api/nothing", {})
    assert status == 404 and isinstance(json.loads(raw)["error"], str)


def test_ollama_errors_are_ollama_shaped(server):
    status, _, raw = server.request("POST", "/api/chat", {"messages": [{"role": "user", "content": "x"}], "options": {"temperature": -2}})
    assert status == 400 and "options.temperature" in json.loads(raw)["error"]
    status, _, raw = server.request("POST", "/api/generate", {"prompt": "x", "format": "json"})
    assert status == 400 and "format" in json.loads(raw)["error"]


def test_malformed_http_gets_400_and_the_server_lives(server):
    for raw in [b"NONSENSE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x00\x01\x02\xff\r\n\r\n",
                b"POST /v1/completions HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"pro"]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            response = read_until(sock, b"\r\n\r\n")
            assert response == b"" or response.startswith(b"HTTP/1.1 4"), (raw, response[:100])
    status, _, _ = server.request("GET", "/health")
    assert status == 200


def test_api_key_guards_everything_but_health(model):
    with Server(model, "-t", 2, "--api-key", "s3cret", ready=False) as s:
        s.wait_ready(120)  # /health answers without a key
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}]:
            error, response_headers = openai_error(s, CHAT, {"messages": user()}, 401, code="invalid_api_key", headers=headers)
            assert error["type"] == "authentication_error" and response_headers["WWW-Authenticate"] == "Bearer"
        status, _, _ = s.request("GET", "/metrics")
        assert status == 401
        status, _, _ = s.request("POST", CHAT, {"messages": user(), "max_tokens": 2}, headers={"Authorization": "Bearer s3cret"})
        assert status == 200
        status, _, _ = s.request("GET", "/v1/models", headers={"X-Api-Key": "s3cret"})
        assert status == 200
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret", timeout=TIMEOUT, max_retries=0)
        assert client.chat.completions.create(model="m", messages=user(), max_tokens=2).choices[0].message.content is not None
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="nope", max_retries=0).models.list()
        assert not any("s3cret" in line for line in s.lines)
        assert s.stop() == 0


def test_a_full_queue_answers_503_with_retry_after(model):
    with Server(model, "-t", 2, "--parallel", 1, "--max-queue", 1) as s:
        results = []
        body = {"prompt": "busy", "max_tokens": 200, "temperature": 0}
        threads = [threading.Thread(target=lambda: results.append(s.request("POST", "/v1/completions", body)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        statuses = sorted(r[0] for r in results)
        # One runs, at most one waits (whether the first was admitted yet decides); the rest are refused.
        assert 1 <= statuses.count(200) <= 2 and statuses.count(503) >= 2, statuses
        for status, headers, raw in results:
            if status == 503:
                assert headers["Retry-After"] == "1"
                assert json.loads(raw)["error"]["code"] == "queue_full"
        assert s.stop() == 0
