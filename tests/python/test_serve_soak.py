"""A bounded soak of `apr serve`: 64 concurrent clients x 10 requests each (chat and completions,
whole and streamed, over raw sockets), a random quarter of the streams dropped mid-way. Every
request that was not dropped must complete with a well-formed answer, the dropped ones must be
cancelled (the KV cache empty afterwards), the resident memory after the soak within 10 % of
before it (measured after a warm-up round at the same concurrency, when thread stacks and
allocator arenas exist), and (under ASan/UBSan) no sanitizer report. ASan holds freed memory in a
quarantine (256 MB by default) that would read as growth; the soak shrinks it to a few MB, so the
RSS check means the same in both builds."""
import concurrent.futures
import json
import random
import socket
import time

import pytest

from serve_support import Server, dechunk, metrics, read_until, sse_events, synth_model

CLIENTS = 64
REQUESTS = 10
TIMEOUT = 300


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # The byte-level vocabulary (no --tokenizer) keeps the output layer small, so the soak stays
    # quick under ASan; chat requests fall back to ChatML.
    return synth_model(tmp_path_factory.mktemp("models"), type_="f32", tokenizer=None)


def exchange(port, body, path, drop_after=None):
    """One request over its own connection; the parsed answer, or None when dropped on purpose."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                     % (path.encode(), len(payload)) + payload)
        if drop_after is not None:
            read_until(sock, b"data: ")
            for _ in range(drop_after):
                sock.recv(64)
            return None
        received = read_until(sock, b"\x00" * 8)  # reads until the server closes
    head, _, content = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), received[:300]
    if b"Transfer-Encoding: chunked" in head:
        content = dechunk(content)
    if body.get("stream"):
        events = sse_events(content)
        assert events[-1] == "[DONE]", events[-3:]
        chunks = [json.loads(e) for e in events[:-1]]
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        assert len(finish) == 1 and finish[0] in ("stop", "length")
        return chunks
    answer = json.loads(content)
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] <= body["max_tokens"]
    return answer


def client_run(port, seed, drops):
    rng = random.Random(seed)
    for i in range(REQUESTS):
        chat = rng.random() < 0.5
        stream = rng.random() < 0.6
        body = {"max_tokens": rng.randint(4, 24), "temperature": rng.choice([0, 0.8]), "stream": stream}
        if chat:
            body["messages"] = [{"role": "user", "content": f"client {seed} request {i} " * rng.randint(1, 6)}]
        else:
            body["prompt"] = f"client {seed} request {i} " * rng.randint(1, 6)
        drop = stream and drops and rng.random() < 0.25
        exchange(port, body, "/v1/chat/completions" if chat else "/v1/completions", rng.randint(0, 3) if drop else None)


def soak_round(port, drops, seed):
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client_run, port, seed * 1000 + c, drops) for c in range(CLIENTS)]
        for f in futures:
            f.result(TIMEOUT)


def idle(server):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = metrics(server)
        if m[("realizar:num_requests_running", ())] == 0 and m[("realizar:num_requests_waiting", ())] == 0:
            return m
        time.sleep(0.1)
    raise AssertionError("requests still running 30 s after the soak")


def test_soak_64_clients_with_random_disconnects(model):
    asan = {"ASAN_OPTIONS": "quarantine_size_mb=4:thread_local_quarantine_size_kb=64"}
    with Server(model, "--parallel", 8, "--max-queue", 64, "--ctx", 256, "-t", 2, env=asan) as s:
        soak_round(s.port, drops=True, seed=1)  # warm-up: thread stacks, arenas, the prefix cache
        idle(s)
        before = s.rss_kib()
        soak_round(s.port, drops=True, seed=2)
        m = idle(s)
        after = s.rss_kib()
        assert m[("realizar:kv_cache_blocks_used", ())] == 0
        assert m[("realizar:request_success_total", (("finished_reason", "abort"),))] > 0
        assert m.get(("realizar:request_success_total", (("finished_reason", "error"),)), 0) == 0
        print(f"RSS {before} KiB before the soak, {after} KiB after; {m[('realizar:generation_tokens_total', ())]:.0f} "
              f"tokens generated, {m[('realizar:request_success_total', (('finished_reason', 'abort'),))]:.0f} aborted")
        assert abs(after - before) <= 0.10 * before, (before, after)
        status, _, _ = s.request("GET", "/health")
        assert status == 200
        assert s.stop() == 0
        assert not s.sanitizer_reports(), "".join(s.sanitizer_reports()[:20])
