"""Files apr writes are read by gguf-py (the PyPI `gguf` package): metadata types, tensor names,
types and shapes, and dequantized values equal to the Hugging Face weights they came from."""
import os
import pathlib
import subprocess
import sys

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

APR = os.environ.get("APR", "build/apr")
ROOT = pathlib.Path(os.environ.get("REALIZAR_SOURCE_DIR", pathlib.Path(__file__).parents[2]))


@pytest.fixture(scope="module")
def hf_llama(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    subprocess.run([sys.executable, str(ROOT / "tools/reference/golden_models.py"), "write-hf",
                    str(out), "--model", "llama"], check=True, stdout=subprocess.DEVNULL)
    return out / "llama"


def apr(*args):
    subprocess.run([APR, *map(str, args)], check=True, stdout=subprocess.DEVNULL)


def field(reader, key):
    f = reader.fields[key]
    return f, f.contents()


@pytest.mark.parametrize("scheme,embd_type,tol", [("f16", "F16", 0.0), ("q8_0", "Q8_0", 1 / 127),
                                                  ("q4_k_m", "Q5_0", 1 / 15)])
def test_converted_llama(hf_llama, tmp_path, scheme, embd_type, tol):
    out = tmp_path / "m.gguf"
    apr("convert", hf_llama, "-o", out, "--type", scheme)
    r = gguf.GGUFReader(out)
    f, arch = field(r, "general.architecture")
    assert arch == "llama"
    f, n = field(r, "llama.block_count")
    assert f.types == [gguf.GGUFValueType.UINT32] and n == 2
    f, tokens = field(r, "tokenizer.ggml.tokens")
    assert f.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.STRING]
    f, _ = field(r, "tokenizer.ggml.scores")
    assert f.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.FLOAT32]
    f, _ = field(r, "tokenizer.ggml.token_type")
    assert f.types == [gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.INT32]
    f, bos = field(r, "tokenizer.ggml.bos_token_id")
    assert f.types == [gguf.GGUFValueType.UINT32] and tokens[bos] == "<s>"

    tensors = {t.name: t for t in r.tensors}
    st = load_file(hf_llama / "model.safetensors")
    embd = tensors["token_embd.weight"]
    assert embd.tensor_type.name == embd_type
    assert list(embd.shape) == [64, st["model.embed_tokens.weight"].shape[0]]
    for name, hf in [("token_embd.weight", "model.embed_tokens.weight"),
                     ("blk.1.attn_v.weight", "model.layers.1.self_attn.v_proj.weight")]:
        t = tensors[name]
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(st[hf].shape)
        scale = np.abs(st[hf]).max()
        assert np.abs(values - st[hf]).max() <= tol * scale


def test_synth_tiny_reads(tmp_path):
    out = tmp_path / "tiny.gguf"
    apr("synth", "tiny", "-o", out, "--type", "q8_0", "--seed", "3")
    r = gguf.GGUFReader(out)
    tensors = {t.name: t for t in r.tensors}
    assert len(tensors) == 1 + 2 * 9 + 2
    q = tensors["blk.0.attn_q.weight"]
    assert q.tensor_type.name == "Q8_0" and list(q.shape) == [64, 64]
    values = gguf.quants.dequantize(q.data, q.tensor_type)
    assert abs(values.std() - 0.02) < 0.003
    norm = tensors["blk.0.attn_norm.weight"]
    assert norm.tensor_type.name == "F32" and np.all(norm.data == 1.0)
    f, ftype = field(r, "general.file_type")
    assert ftype == 7
