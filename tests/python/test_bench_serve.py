"""`apr bench serve` against the loopback OpenAI-compatible test server (openai_sse_server.py):
the workload it sends (lengths, arrivals, concurrency, the same requests to every server), the
metrics it derives from the stream compared with the server's known pacing, schema-valid JSON,
and a clear message and non-zero exit for every way a server can fail."""
import json
import socket
import time

import pytest

from bench_support import ROOT, apr, read_log, sse_server, validate


def serve(url, out, *args, timeout=120):
    return apr("bench", "serve", url, "--json", out, *args, timeout=timeout)


def test_workload_and_metrics_against_a_paced_server(tmp_path):
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    with sse_server(log_a, "--ttft-ms", 60, "--itl-ms", 10, "--cached-tokens", 3) as a, \
         sse_server(log_b, "--ttft-ms", 30, "--itl-ms", 20, "--model", "other-model") as b:
        r = serve("fast=" + a, tmp_path / "s.json", "--baseline", f"slow={b}/v1", "--requests", 12,
                  "--prompt-len", "20-60", "--output-len", "8-24", "--concurrency", 4, "--seed", 3,
                  "-r", 2, "--csv", tmp_path / "s.csv", "--svg", tmp_path / "s.svg")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    validate(doc)
    fast, slow = doc["servers"]
    assert (fast["name"], fast["role"], fast["model"]) == ("fast", "subject", "test-model")
    assert (slow["name"], slow["role"], slow["model"]) == ("slow", "baseline", "other-model")

    sent_a, sent_b = read_log(log_a), read_log(log_b)
    # One warm-up request, then 12 requests per run, two runs.
    assert len(sent_a) == len(sent_b) == 1 + 24
    measured_a, measured_b = sent_a[1:], sent_b[1:]
    for entry in measured_a:
        assert 20 <= entry["prompt_words"] <= 60 and 8 <= entry["max_tokens"] <= 24
        assert entry["stream"] is True and entry["include_usage"] is True
        assert entry["ignore_eos"] is True and entry["in_flight"] <= 4
    assert max(e["in_flight"] for e in measured_a) == 4  # all arrive at once: the limit is reached
    # The same workload to both servers and in both runs.
    plan = sorted((e["prompt_words"], e["max_tokens"]) for e in measured_a[:12])
    assert plan == sorted((e["prompt_words"], e["max_tokens"]) for e in measured_a[12:])
    assert plan == sorted((e["prompt_words"], e["max_tokens"]) for e in measured_b[:12])
    assert len(set(plan)) > 1

    for server, ttft, itl in ((fast, 60, 10), (slow, 30, 20)):
        assert server["completed"] == 24 and server["failed"] == 0
        assert len(server["runs"]) == 2
        run = server["runs"][0]
        assert run["output_tokens"] == sum(t for _, t in plan)  # usage: exactly max_tokens
        assert run["prompt_tokens"] == sum(p for p, _ in plan)  # usage: the server's count
        # The server sleeps before each token: measured latencies cannot be shorter, and on an
        # idle loopback they are not much longer.
        assert ttft <= server["ttft_ms"]["p50"] < ttft + 250
        assert itl * 0.9 <= server["itl_ms"]["p50"] < itl + 40
        assert itl * 0.9 <= server["tpot_ms"]["p50"] < itl + 40
        # Four streams at a time, each at most 1000 / itl tokens per second.
        assert 0 < server["aggregate_decode_throughput"]["mean"] <= 4 * 1000 / (itl * 0.9)
        assert server["output_throughput"]["count"] == 2
    assert fast["runs"][0]["cached_prompt_tokens"] == 3 * 12
    assert slow["runs"][0]["cached_prompt_tokens"] == 0

    table = r.stdout
    assert "| metric | fast | slow | ratio to slow |" in table
    assert "| requests completed / failed | 24 / 0 | 24 / 0 |" in table
    csv_lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[1].startswith("fast,http://127.0.0.1:")
    assert (tmp_path / "s.svg").read_text().startswith("<?xml")


def test_chat_endpoint_and_poisson_arrivals(tmp_path):
    log = tmp_path / "a.log"
    with sse_server(log, "--ttft-ms", 5, "--itl-ms", 2) as url:
        r = serve(url, tmp_path / "s.json", "--endpoint", "chat", "--requests", 10, "--rate", 10,
                  "--prompt-len", "5", "--output-len", "6", "--warmup", 0, "--no-ignore-eos")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    validate(doc)
    sent = read_log(log)
    assert [e["path"] for e in sent] == ["/v1/chat/completions"] * 10
    assert all(e["ignore_eos"] is None and e["prompt_words"] == 5 for e in sent)
    # Poisson arrivals at 10/s: nine gaps of 0.1 s on average; all ten within 0.2 s would take
    # a probability below 1e-4.
    assert sent[-1]["time"] - sent[0]["time"] > 0.2
    server = doc["servers"][0]
    assert server["runs"][0]["output_tokens"] == 60  # the role-only chunk is not a token
    assert doc["workload"]["rate"] == 10 and doc["workload"]["endpoint"] == "chat"


def test_exact_prompt_lengths_with_the_tokenizer(tmp_path):
    """With --tokenizer every prompt is exactly the planned length, as Hugging Face's tokenizers
    (an independent implementation) counts it."""
    from tokenizers import Tokenizer
    log = tmp_path / "a.log"
    for name in ("qwen2", "llama2"):
        tokenizer = ROOT / "tests/data/tokenizers" / name / "tokenizer.json"
        with sse_server(log, "--ttft-ms", 1, "--itl-ms", 1) as url:
            r = serve(url, tmp_path / "s.json", "--requests", 6, "--prompt-len", "137",
                      "--output-len", "2", "--tokenizer", tokenizer, "--warmup", 0)
        assert r.returncode == 0, r.stderr
        doc = json.loads((tmp_path / "s.json").read_text())
        assert doc["workload"]["tokenizer"] == str(tokenizer)
        sent = read_log(log)
        log.unlink()
        assert len(sent) == 6
        hf = Tokenizer.from_file(str(tokenizer))
        lengths = [len(hf.encode(e["prompt"], add_special_tokens=False).ids) for e in sent]
        assert lengths == [137] * 6, lengths
        assert len({e["prompt"] for e in sent}) == 6  # a different text for each request
        # The test server counts words as tokens; usage carries its count back.
        assert doc["servers"][0]["runs"][0]["prompt_tokens"] == sum(e["prompt_words"] for e in sent)


def test_output_tokens_without_usage_come_from_the_tokenizer_or_the_chunks(tmp_path):
    from tokenizers import Tokenizer
    tokenizer = ROOT / "tests/data/tokenizers/qwen2/tokenizer.json"
    piece = " internationalization"  # several tokens in every chunk
    per_piece = len(Tokenizer.from_file(str(tokenizer)).encode(piece * 12, add_special_tokens=False).ids)
    assert per_piece > 12
    for with_tokenizer in (True, False):
        with sse_server(tmp_path / "a.log", "--no-usage", "--piece", piece, "--ttft-ms", 1, "--itl-ms", 1) as url:
            extra = ["--tokenizer", tokenizer] if with_tokenizer else []
            r = serve(url, tmp_path / "s.json", "--requests", 3, "--prompt-len", "40",
                      "--output-len", "12", "--warmup", 0, *extra)
        assert r.returncode == 0, r.stderr
        run = json.loads((tmp_path / "s.json").read_text())["servers"][0]["runs"][0]
        if with_tokenizer:
            assert run["output_tokens"] == 3 * per_piece  # counted as the model's tokenizer does
            assert run["prompt_tokens"] == 3 * 40  # as planned: exact under the tokenizer
        else:
            assert run["output_tokens"] == 3 * 12  # one token per chunk


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server(tmp_path):
    r = serve(f"http://127.0.0.1:{free_port()}", tmp_path / "s.json", "--requests", 1)
    assert r.returncode == 1
    assert "cannot reach http://127.0.0.1:" in r.stderr and "is the server running?" in r.stderr
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("fault,args,message", [
    ("models404", [], "/v1/models answered HTTP 404: models are not listed here"),
    ("http500", [], "did not answer a completions request for model 'test-model': HTTP 500: model exploded"),
    (None, ["--model", "nope"], "does not serve model 'nope' (it lists: test-model)"),
])
def test_preflight_failures(tmp_path, fault, args, message):
    extra = ["--fault", fault] if fault else []
    with sse_server(tmp_path / "a.log", *extra) as url:
        r = serve(url, tmp_path / "s.json", "--requests", 2, *args)
    assert r.returncode == 1
    assert message in r.stderr, r.stderr


@pytest.mark.parametrize("fault,message", [
    ("http500", "HTTP 500: model exploded"),
    ("malformed", "malformed stream chunk: {not json"),
    ("no-done", "the stream ended before data: [DONE]"),
    ("hang", "Operation timed out"),
    ("endless-line", "a stream event grew past 16 MiB without ending"),
])
def test_failed_requests_are_recorded_and_fail_the_run(tmp_path, fault, message):
    start = time.monotonic()
    with sse_server(tmp_path / "a.log", "--fault", fault, "--ttft-ms", 1, "--itl-ms", 1) as url:
        r = serve(url, tmp_path / "s.json", "--requests", 3, "--warmup", 0, "--output-len", "4",
                  "--timeout", 1)
    assert time.monotonic() - start < 30  # a hanging server cannot hang the bench
    assert r.returncode == 1
    assert "3 of 3 measured requests failed" in r.stderr
    doc = json.loads((tmp_path / "s.json").read_text())
    validate(doc)
    server = doc["servers"][0]
    assert server["failed"] == 3 and server["completed"] == 0
    assert any(message in e for e in server["errors"]), server["errors"]
    assert message in r.stdout  # the table names the error too


def test_against_a_real_apr_serve(tmp_path):
    """The load client against `apr serve` itself (tiny synth model, CPU): every request completes,
    the token counts are the planned ones (exact prompt lengths through the model's tokenizer,
    ignore_eos), the stream gives latencies, and the server counted the same generated tokens."""
    from serve_support import Server, metrics, synth_model

    model = synth_model(tmp_path)
    with Server(model, "--device", "cpu", "-t", 2, "--parallel", 4, "--ctx", 256) as server:
        r = serve(server.url, tmp_path / "s.json", "--requests", 6, "--concurrency", 3, "--prompt-len", 24,
                  "--output-len", 8, "--tokenizer", model, "--warmup", 0)
        assert r.returncode == 0, r.stderr
        served = metrics(server)
    doc = json.loads((tmp_path / "s.json").read_text())
    validate(doc)
    [subject] = doc["servers"]
    assert subject["completed"] == 6 and subject["failed"] == 0
    [run] = subject["runs"]
    assert run["output_tokens"] == 6 * 8
    assert run["prompt_tokens"] == 6 * 24
    assert served[("realizar:generation_tokens_total", ())] == 6 * 8
    assert served[("realizar:prompt_tokens_total", ())] == 6 * 24
    assert 0 < subject["ttft_ms"]["p50"] <= subject["ttft_ms"]["p99"]
    assert subject["itl_ms"]["p50"] > 0
