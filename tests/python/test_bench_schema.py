"""`apr bench` output on a tiny synth model follows docs/bench.schema.json, and its CSV and SVG
are what they claim to be: CSV that the csv module reads back to the JSON's numbers, SVG that an
XML parser accepts with one bar per engine and test."""
import csv
import json
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from bench_support import ROOT, apr, validate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.gguf"
    r = apr("synth", "tiny", "-o", out, "--type", "q8_0",
            "--tokenizer", ROOT / "tests/data/tokenizers/llama2/tokenizer.json")
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("out")
    # The imported files hold pp32, tg8 and pp32+tg8 at depths 0 and 64: every one meets ours.
    r = apr("bench", tiny, "--device", "cpu", "-t", "1", "-p", "32", "-n", "8", "--pg", "32,8",
            "-d", "0,64", "--parallel", "1,2", "-r", "3",
            "--import-llama-bench", ROOT / "tests/data/bench/llama-bench.json",
            "--import-llama-bench", "md=" + str(ROOT / "tests/data/bench/llama-bench.md"),
            "--json", d / "r.json", "--csv", d / "r.csv", "--svg", d / "r.svg")
    assert r.returncode == 0, r.stderr
    return json.loads((d / "r.json").read_text()), d


def test_model_result_follows_the_schema(run):
    doc, _ = run
    validate(doc)
    assert doc["kind"] == "model"
    assert doc["environment"]["host"]["logical_cpus"] >= 1
    assert doc["model_file"]["header_sha256"] and doc["model_file"]["quant_mix"][0]["type"] == "Q8_0"
    assert [b["format"] for b in doc["baselines"]] == ["json", "md"]


def test_schema_rejects_what_it_should(run):
    doc, _ = run
    bad = json.loads(json.dumps(doc))
    del bad["results"][0]["tokens_per_second"]["median_ci"]
    with pytest.raises(jsonschema.ValidationError, match="median_ci"):
        validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["results"][0]["test"] = "prefill512"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(doc))
    bad["kind"] = "serve"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_csv_reads_back_to_the_json(run):
    doc, d = run
    rows = list(csv.DictReader((d / "r.csv").open()))
    ours = [r for r in rows if r["engine"] == "realizar"]
    assert [r["test"] for r in ours] == [r["test"] for r in doc["results"]]
    for row, result in zip(ours, doc["results"]):
        s = result["tokens_per_second"]
        assert float(row["mean_tok_s"]) == pytest.approx(s["mean"], rel=1e-12)
        assert float(row["ci_low_tok_s"]) == pytest.approx(s["median_ci"]["low"], rel=1e-12)
        assert int(row["runs"]) == 3
    imported = [r for r in rows if r["engine"] == "md"]
    assert [r["test"] for r in imported] == [r["test"] for r in doc["baselines"][1]["results"]]
    assert all(r["runs"] == "" for r in imported)  # the table has no samples


def test_svg_is_standalone_xml_with_a_bar_per_engine_and_test(run):
    doc, d = run
    root = ET.parse(d / "r.svg").getroot()
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    assert list(root.iter(ns + "script")) == [] and list(root.iter(ns + "image")) == []
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    expected = len(doc["results"])
    tests = {r["test"] for r in doc["results"]}
    for b in doc["baselines"]:
        expected += sum(1 for r in b["results"] if r["test"] in tests)
    assert expected == len(doc["results"]) + 2 * 6
    assert len(bars) == expected
    heights = [float(b.get("height")) for b in bars]
    assert all(h >= 0 for h in heights) and max(heights) > 0
