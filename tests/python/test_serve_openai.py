"""`apr serve` against OpenAI's own Python client and curl: chat and completions, whole and
streamed, compared with `apr run` on the same model (greedy, so the texts must be identical);
logprobs, stop strings, seeds, prefix-cache usage, concurrency, cancellation by disconnect,
/metrics through prometheus_client's parser, Ollama's endpoints, /health while loading, graceful
shutdown, and the real SmolLM2-135M-Instruct answering as reviewed in docs/real-models.md."""
import concurrent.futures
import json
import signal
import socket
import subprocess
import time

import openai
import pytest

from serve_support import APR, Server, dechunk, metrics, read_until, real_model, sse_events, synth_model

TIMEOUT = 60


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return synth_model(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(model):
    with Server(model, "--parallel", 4, "-t", 2, "--alias", "tiny") as s:
        yield s
        assert s.stop() == 0, s.log
        assert not s.sanitizer_reports(), s.log


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)


def apr_run(model, prompt, n, chat):
    args = [APR, "run", str(model), "-p", prompt, "-n", str(n), "--temp", "0", "-t", "2"] + (["--chat"] if chat else [])
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout
    assert out.endswith("\n")
    return out[:-1]


def chat(client, content, **kwargs):
    kwargs.setdefault("max_tokens", 12)
    kwargs.setdefault("temperature", 0)
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], **kwargs)


def test_chat_equals_apr_run_and_reports_usage(client, model, server):
    response = chat(client, "Tell me a story")
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == apr_run(model, "Tell me a story", 12, chat=True)
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 12
    status, tokens = server.json("POST", "/tokenize", {"content": "Tell me a story"})
    assert status == 200
    assert response.usage.prompt_tokens > len(tokens["tokens"])  # the template's turn markers too
    assert response.usage.total_tokens == response.usage.prompt_tokens + 12
    assert response.model == "tiny"
    assert response.id.startswith("chatcmpl-")
    raw = response.model_extra["timings"]
    assert raw["predicted_n"] == 12 and raw["prompt_n"] + raw["cache_n"] == response.usage.prompt_tokens


def test_chat_stream_role_first_deltas_then_usage(client):
    whole = chat(client, "Stream this").choices[0].message.content
    chunks = list(chat(client, "Stream this", stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_completions_equal_apr_run_whole_and_streamed(client, model):
    prompt = "Once upon a time"
    expected = apr_run(model, prompt, 10, chat=False)
    whole = client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0)
    assert whole.choices[0].text == expected
    assert whole.object == "text_completion" and whole.usage.completion_tokens == 10
    streamed = list(client.completions.create(model="tiny", prompt=prompt, max_tokens=10, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == expected
    assert streamed[-1].choices[0].finish_reason == "length"


def test_token_array_prompt_equals_text_prompt(client, server):
    status, tokens = server.json("POST", "/tokenize", {"content": "Once upon a time", "add_special": True})
    assert status == 200
    by_text = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0)
    by_ids = client.completions.create(model="tiny", prompt=tokens["tokens"], max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    status, text = server.json("POST", "/detokenize", {"tokens": tokens["tokens"]})
    assert status == 200 and text["content"] == "Once upon a time"


def test_raw_sse_framing_with_curl(server):
    body = json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0, "stream": True})
    result = subprocess.run(["curl", "-sS", "-N", "-i", "--max-time", str(TIMEOUT), server.url + "/v1/chat/completions",
                             "-H", "Content-Type: application/json", "-d", body], capture_output=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    head, _, raw = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"Content-Type: text/event-stream" in head and b"Transfer-Encoding: chunked" in head
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and "timings" in chunks[-1]
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) <= 5


def test_logprobs_greedy_token_is_the_most_likely(client):
    response = chat(client, "Logprobs please", max_tokens=5, logprobs=True, top_logprobs=3)
    content = response.choices[0].logprobs.content
    assert len(content) == 5
    for token in content:
        assert len(token.top_logprobs) == 3
        values = [t.logprob for t in token.top_logprobs]
        assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert token.logprob == pytest.approx(values[0], abs=1e-6)  # greedy picks the top one
        assert bytes(token.bytes).decode("utf-8", "replace") == token.token
    completion = openai_completion_logprobs(client)
    assert len(completion.tokens) == 4 and all(len(t) <= 2 for t in completion.top_logprobs)


def openai_completion_logprobs(client):
    return client.completions.create(model="tiny", prompt="Hello", max_tokens=4, temperature=0, logprobs=2).choices[0].logprobs


def test_stop_string_ends_the_text_before_it(client):
    full = chat(client, "Stop test", max_tokens=16).choices[0].message.content
    stop = full[len(full) // 2:len(full) // 2 + 3]
    assert stop.strip() and stop in full
    response = chat(client, "Stop test", max_tokens=16, stop=[stop])
    assert response.choices[0].message.content == full[:full.index(stop)]
    assert response.choices[0].finish_reason == "stop"


def test_seeded_sampling_reproduces(client):
    a = chat(client, "Seeded", temperature=1.0, seed=1234, max_tokens=10).choices[0].message.content
    b = chat(client, "Seeded", temperature=1.0, seed=1234, max_tokens=10).choices[0].message.content
    assert a == b


def test_prefix_cache_reports_cached_tokens(client):
    prompt = " ".join(f"word{i}" for i in range(60))
    first = chat(client, prompt, max_tokens=2)
    second = chat(client, prompt, max_tokens=2)
    assert first.usage.prompt_tokens == second.usage.prompt_tokens
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 32 and cached % 16 == 0 and cached < second.usage.prompt_tokens
    assert second.model_extra["timings"]["cache_n"] == cached


def test_concurrent_greedy_requests_equal_sequential(client):
    prompts = [f"Request number {i} asks for something" for i in range(8)]
    sequential = [chat(client, p, max_tokens=16).choices[0].message.content for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        concurrent_texts = list(pool.map(lambda p: chat(client, p, max_tokens=16).choices[0].message.content, prompts))
    assert concurrent_texts == sequential


def wait_for_metrics(server, predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        samples = metrics(server)
        if predicate(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def test_disconnect_mid_stream_cancels_and_frees_blocks(server):
    aborted_before = metrics(server).get(("realizar:request_success_total", (("finished_reason", "abort"),)), 0)
    body = json.dumps({"prompt": "A long story", "max_tokens": 200, "temperature": 0, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while received.count(b"data: ") < 3:
            received += sock.recv(4096)
    samples = wait_for_metrics(server, lambda m: m[("realizar:num_requests_running", ())] == 0
                               and m[("realizar:kv_cache_blocks_used", ())] == 0)
    assert samples[("realizar:num_requests_running", ())] == 0
    assert samples[("realizar:kv_cache_blocks_used", ())] == 0
    assert samples[("realizar:request_success_total", (("finished_reason", "abort"),))] == aborted_before + 1
    assert any("client gone" in line for line in server.lines), server.log


def test_disconnect_while_waiting_for_a_whole_answer_cancels(server):
    aborted_before = metrics(server).get(("realizar:request_success_total", (("finished_reason", "abort"),)), 0)
    body = json.dumps({"prompt": "Another long story", "max_tokens": 250, "temperature": 0}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.05)
    abort = ("realizar:request_success_total", (("finished_reason", "abort"),))
    samples = wait_for_metrics(server, lambda m: m.get(abort) == aborted_before + 1
                               and m[("realizar:kv_cache_blocks_used", ())] == 0)
    assert samples[abort] == aborted_before + 1, server.log
    assert samples[("realizar:kv_cache_blocks_used", ())] == 0
    assert any('"POST /v1/completions" 499' in line and "client gone" in line for line in server.lines), server.log


def test_metrics_count_exactly_what_was_served(model):
    with Server(model, "--parallel", 2, "-t", 2) as s:
        usages = []
        for i in range(3):
            status, r = s.json("POST", "/v1/completions", {"prompt": f"metrics {i}", "max_tokens": 4 + i, "temperature": 0})
            assert status == 200
            usages.append(r["usage"])
        m = metrics(s)
        assert m[("realizar:generation_tokens_total", ())] == sum(u["completion_tokens"] for u in usages) == 4 + 5 + 6
        assert m[("realizar:request_success_total", (("finished_reason", "length"),))] == 3
        assert m[("realizar:time_to_first_token_seconds_count", ())] == 3
        assert m[("realizar:e2e_request_latency_seconds_count", ())] == 3
        assert m[("realizar:inter_token_latency_seconds_count", ())] == 3 + 4 + 5
        assert m[("realizar:prompt_tokens_total", ())] == sum(u["prompt_tokens"] for u in usages)
        assert m[("realizar:prefix_cache_queries_total", ())] == sum(u["prompt_tokens"] for u in usages)
        assert m[("realizar:time_to_first_token_seconds_bucket", (("le", "+Inf"),))] == 3
        # one step per generated token: the prompt with the first, then each token fed back
        steps = m[("realizar:engine_steps_total", ())]
        assert steps == 4 + 5 + 6
        assert m[("realizar:iteration_tokens_total_count", ())] == steps
        assert m[("realizar:iteration_tokens_total_sum", ())] == sum(u["prompt_tokens"] + u["completion_tokens"] - 1 for u in usages)
        assert m[("realizar:engine_step_duration_seconds_count", ())] == steps
        assert m[("realizar:engine_step_duration_seconds_sum", ())] > 0
        assert m[("realizar:kv_cache_usage_perc", ())] == 0
        assert m[("realizar:kv_cache_blocks_total", ())] > 0
        assert m[("realizar:num_preemptions_total", ())] == 0
        assert m[("realizar:http_responses_total", (("code", "200"),))] >= 3
        assert s.stop() == 0
        assert sum('"POST /v1/completions" 200 cmpl-' in line for line in s.lines) == 3, s.log


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    status, body = server.json("GET", "/health")
    assert (status, body) == (200, {"status": "ok"})


def test_ollama_endpoints(server, client):
    status, headers, raw = server.request("POST", "/api/generate", {"model": "tiny", "prompt": "Once upon a time",
                                                                    "raw": True, "options": {"num_predict": 6, "temperature": 0}})
    assert status == 200 and headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    expected = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0).choices[0].text
    assert "".join(line["response"] for line in lines) == expected
    last = lines[-1]
    assert last["done_reason"] == "length" and last["eval_count"] == 6
    assert 0 < last["eval_duration"] < last["total_duration"] < 60 * 10**9

    status, whole = server.json("POST", "/api/chat", {"model": "tiny", "stream": False, "options": {"num_predict": 8, "temperature": 0},
                                                      "messages": [{"role": "user", "content": "Tell me a story"}]})
    assert status == 200 and whole["done"] and whole["message"]["role"] == "assistant"
    assert whole["message"]["content"] == chat(client, "Tell me a story", max_tokens=8).choices[0].message.content
    status, loaded = server.json("POST", "/api/chat", {"model": "tiny", "messages": []})
    assert status == 200 and loaded["done_reason"] == "load"

    status, tags = server.json("GET", "/api/tags")
    assert status == 200 and tags["models"][0]["name"] == "tiny"
    assert tags["models"][0]["details"]["format"] == "gguf" and tags["models"][0]["digest"].startswith("sha256:")
    status, show = server.json("POST", "/api/show", {"model": "tiny"})
    assert status == 200 and "im_start" in show["template"] and show["details"]["quantization_level"] == "Q8_0"
    status, ps = server.json("GET", "/api/ps")
    assert status == 200 and ps["models"][0]["name"] == "tiny"
    status, version = server.json("GET", "/api/version")
    assert status == 200 and version["version"]


def test_health_says_loading_until_ready_then_ok(model):
    with Server(model, "-t", 2, ready=False) as s:
        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, body = s.json("GET", "/health")
            seen.append((status, body["status"]))
            if status == 200:
                break
        assert seen[-1] == (200, "ok")
        assert set(seen[:-1]) <= {(503, "loading")}
        status, body = s.json("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1})
        assert status == 200


def test_sigterm_lets_a_running_stream_finish_and_exits_0(model):
    with Server(model, "-t", 2, "--grace", 30) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT) as sock:
            body = json.dumps({"prompt": "x", "max_tokens": 120, "temperature": 0, "stream": True}).encode()
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            received = read_until(sock, b"data: ")
            s.process.send_signal(signal.SIGTERM)
            received += read_until(sock, b"\r\n0\r\n\r\n")
        head, _, chunked = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        events = sse_events(dechunk(chunked))
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["choices"][0]["finish_reason"] == "length"
        assert sum(len(json.loads(e)["choices"][0]["text"]) > 0 for e in events[:-2]) > 0
        assert s.process.wait(TIMEOUT) == 0
        assert any("shutting down" in line for line in s.lines) and any("stopped" in line for line in s.lines), s.log


def test_a_model_that_cannot_load_exits_1_with_the_reason(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    result = subprocess.run([APR, "serve", str(bad), "--port", "0"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert "cannot load" in result.stderr and "bad.gguf" in result.stderr


@pytest.fixture(scope="module")
def smollm2():
    path = real_model("smollm2-135m")
    if path is None:
        pytest.skip("REALIZAR_OFFLINE=1 and SmolLM2 could not be fetched")
    return path


def test_smollm2_answers_as_reviewed(smollm2):
    with Server(smollm2, "--device", "cpu", "-t", 2, "--parallel", 2) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", timeout=120, max_retries=0)
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is the capital of France?"}]
        whole = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=40, temperature=0)
        assert whole.choices[0].message.content == "The capital of France is Paris."
        assert whole.choices[0].finish_reason == "stop"
        streamed = client.chat.completions.create(model="smollm2", messages=messages, max_tokens=40, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == "The capital of France is Paris."
        assert s.stop() == 0
