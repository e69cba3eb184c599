"""`apr bench engine`: the serving workload run in-process on the engine. Its document follows
docs/bench.schema.json, every planned request completes with exactly its planned output length,
and a request that cannot fit the context is refused before anything runs."""
import json

import pytest

from bench_support import apr, validate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "tiny.gguf"
    r = apr("synth", "tiny", "-o", out, "--type", "q8_0")
    assert r.returncode == 0, r.stderr
    return out


def test_every_planned_request_completes_with_its_length(tiny, tmp_path):
    r = apr("bench", "engine", tiny, "--device", "cpu", "-t", "1", "--ctx", "256", "--parallel", "3",
            "--requests", "7", "--prompt-len", "8-40", "--output-len", "4-20", "--seed", "5",
            "--json", tmp_path / "e.json")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "e.json").read_text())
    validate(doc)
    server = doc["servers"][0]
    assert server["role"] == "subject" and server["completed"] == 7 and server["failed"] == 0
    # The same seed plans the same lengths: a second run generates the same number of tokens.
    again = apr("bench", "engine", tiny, "--device", "cpu", "-t", "1", "--ctx", "256", "--parallel", "1",
                "--requests", "7", "--prompt-len", "8-40", "--output-len", "4-20", "--seed", "5",
                "--json", tmp_path / "f.json")
    assert again.returncode == 0, again.stderr
    other = json.loads((tmp_path / "f.json").read_text())["servers"][0]
    tokens = server["runs"][0]["output_tokens"]
    assert other["runs"][0]["output_tokens"] == tokens
    assert 7 * 4 <= tokens <= 7 * 20
    assert "aggregate decode tok/s" in r.stdout


def test_a_request_over_the_context_is_refused(tiny):
    r = apr("bench", "engine", tiny, "--device", "cpu", "--ctx", "64", "--requests", "2",
            "--prompt-len", "60", "--output-len", "10")
    assert r.returncode != 0
    assert "does not fit the context of 64" in r.stderr
