"""Split models as gguf-py writes them (GGUFWriter split_max_tensors, the layout of published
split GGUF files) open in apr through their first part: the same tensors and the same greedy
text as the unsplit file."""
import json
import os
import pathlib
import subprocess

import gguf
import pytest

from gguf_split import write_split

APR = os.environ.get("APR", "build/apr")


def apr(*args):
    return subprocess.run([APR, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "tiny.gguf"
    r = apr("synth", "tiny", "-o", out, "--type", "q8_0", "--seed", "11")
    assert r.returncode == 0, r.stderr
    return out


def test_gguf_py_split_reads_as_one_model(whole, tmp_path):
    parts = write_split(whole, tmp_path / "tiny-split.gguf", max_tensors=8)
    assert len(parts) == 3  # 21 tensors, 8 per part
    assert parts[0].name == "tiny-split-00001-of-00003.gguf"
    first = gguf.GGUFReader(parts[0])
    assert first.fields["split.count"].contents() == 3
    assert first.fields["split.tensors.count"].contents() == 21

    got = apr("inspect", parts[0], "--json")
    assert got.returncode == 0, got.stderr
    want = json.loads(apr("inspect", whole, "--json").stdout)
    report = json.loads(got.stdout)
    assert report["tensors"] == want["tensors"]
    assert report["file_size"] == sum(p.stat().st_size for p in parts)

    args = ["-p", "Once upon", "-n", "10", "--temp", "0", "--ignore-eos", "--device", "cpu"]
    split_run, whole_run = apr("run", parts[0], *args), apr("run", whole, *args)
    assert split_run.returncode == 0, split_run.stderr
    assert split_run.stdout == whole_run.stdout and split_run.stdout.strip()


def test_later_part_and_missing_part_are_explained(whole, tmp_path):
    parts = write_split(whole, tmp_path / "m.gguf", max_tensors=10)
    r = apr("inspect", parts[1])
    assert r.returncode == 1
    assert f"this is part 2 of 3 of a split model: open the first part ({parts[0]})" in r.stderr
    parts[2].unlink()
    r = apr("inspect", parts[0])
    assert r.returncode == 1
    assert f"part 3 of 3 is missing: {parts[2]}" in r.stderr
