#!/usr/bin/env python3
"""Writes the small safetensors fixtures of tests/safetensors_test.cpp with the reference
`safetensors` writer, and expected.json with the float32 bit patterns (or integers) each tensor
must read back as. Expected float32 values come from numpy's own float16 -> float32 conversion;
bf16 tensors are written from float32 values whose low 16 bits are zero, so the expected value is
that float32 itself.

Usage: python3 tools/make_safetensors_fixtures.py [output_dir]   (default tests/data/safetensors)
"""
import json
import pathlib
import sys

import numpy as np
from safetensors import TensorSpec, serialize_file
from safetensors.numpy import save_file


def f32_bits(array):
    return [int(x) for x in np.ascontiguousarray(array, dtype=np.float32).view(np.uint32).ravel()]


def to_bf16(values):
    """bfloat16 array (as uint16) holding exactly the given float32 values."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32)
    assert np.all(bits & 0xFFFF == 0), "value not representable in bfloat16"
    return (bits >> 16).astype(np.uint16)


def write(path, tensors, metadata):
    """tensors: name -> numpy array, or name -> ("bfloat16", uint16 array)."""
    specs, keep_alive = {}, []
    for name, value in tensors.items():
        dtype, array = value if isinstance(value, tuple) else (value.dtype.name, value)
        array = np.asarray(array, order="C")  # keeps 0-d arrays 0-d, unlike ascontiguousarray
        keep_alive.append(array)
        specs[name] = TensorSpec(dtype=dtype, shape=list(array.shape), data_ptr=array.ctypes.data,
                                 data_len=array.nbytes)
    serialize_file(specs, str(path), metadata=metadata)


def expected_entry(value):
    if isinstance(value, tuple):  # bf16: expected = the float32 values it was made from
        return {"dtype": "BF16", "shape": list(value[1].shape),
                "f32_bits": [int(b) << 16 for b in value[1].ravel()]}
    names = {"float32": "F32", "float16": "F16", "int64": "I64"}
    entry = {"dtype": names[value.dtype.name], "shape": list(value.shape)}
    if value.dtype == np.int64:
        entry["i64"] = [int(x) for x in value.ravel()]
    else:
        entry["f32_bits"] = f32_bits(value.astype(np.float32))
    return entry


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/safetensors")
    rng = np.random.default_rng(20261121)
    inf, nan = np.inf, np.nan

    single = {
        "f32.special": np.array([[0.0, -0.0, 1.0, -1.5], [inf, -inf, nan, 1e-45],
                                 [3.4028235e38, 1.17549435e-38, np.pi, -1e-40]], dtype=np.float32),
        "f16.special": np.array([[0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, 6.103515625e-05, 5.960464477539063e-08],
                                 [3.0e-06, -4.5e-07, inf, -inf, nan, 0.333251953125, 1000.5, -0.0001]],
                                dtype=np.float16),
        "bf16.special": ("bfloat16", to_bf16(np.array(
            [1.0, -2.5, 3.140625, inf, -inf, nan, -0.0, 2.0**-130, 3.3895313892515355e38], dtype=np.float32))),
        "i64.position_ids": np.arange(6, dtype=np.int64).reshape(1, 6),
        "f32.scalar": np.array(42.5, dtype=np.float32),
        "f32.empty": np.zeros((0, 3), dtype=np.float32),
    }
    shards = {
        "model-00001-of-00002.safetensors": {
            "model.embed_tokens.weight": rng.standard_normal((4, 3)).astype(np.float16),
            "model.layers.0.mlp.weight": ("bfloat16", to_bf16(
                (rng.standard_normal((2, 2)).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32))),
        },
        "model-00002-of-00002.safetensors": {
            "lm_head.weight": rng.standard_normal((3, 4)).astype(np.float32),
            "model.norm.weight": rng.standard_normal(3).astype(np.float32),
        },
    }

    (out / "single").mkdir(parents=True, exist_ok=True)
    (out / "sharded").mkdir(parents=True, exist_ok=True)
    write(out / "single" / "model.safetensors", single, {"format": "pt", "source": "make_safetensors_fixtures.py"})
    weight_map, total_size = {}, 0
    for shard, tensors in shards.items():
        write(out / "sharded" / shard, tensors, {"format": "pt"})
        for name, value in tensors.items():
            weight_map[name] = shard
            total_size += (value[1] if isinstance(value, tuple) else value).nbytes
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "sharded" / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    expected = {"single": {n: expected_entry(v) for n, v in single.items()},
                "sharded": {n: expected_entry(v) for t in shards.values() for n, v in t.items()}}
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
