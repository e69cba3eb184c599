#!/usr/bin/env python3
"""Writes the golden files of tests/quant_test.cpp into tests/data/quant/, using gguf-py.

gguf-py (PyPI `gguf`, gguf.quants) is an independent numpy implementation of the GGUF formats.
For each type, little-endian raw files:
  <type>.blocks        random blocks (finite fp16 scales), then <type>.dequant.f32: gguf-py's
                       dequantization of them (numpy for F16; Q8_K, which gguf-py lacks, uses
                       the one-line definition x = d * q in numpy float32).
  <type>.input.f32     floats to quantize, then <type>.quant.blocks: gguf-py's quantization
                       (numpy astype for F16), for the types gguf-py quantizes.
Run: python3 tools/make_quant_golden.py  (deterministic: fixed seed).
"""
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "quant"
rng = np.random.default_rng(20261121)

# Byte offsets of the fp16 scale fields in each block (ggml-common.h).
HALF_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
DEQUANT_BLOCKS = {32: 8, 256: 2}  # blocks per file by block size: keeps files a few KB
QUANTIZE_TYPES = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]


def random_halves(count: int) -> np.ndarray:
    """Finite fp16 scales of varied sign and size, with one exact zero."""
    values = rng.standard_normal(count) * np.exp(rng.uniform(-6, 1, count))
    values[0] = 0.0
    return values.astype(np.float16).view(np.uint8).reshape(count, 2)


def random_blocks(qtype: T) -> np.ndarray:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = DEQUANT_BLOCKS[block_size]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for offset in HALF_FIELDS.get(qtype, []):
        blocks[:, offset:offset + 2] = random_halves(n_blocks)
    if qtype == T.Q8_K:  # float32 d at offset 0
        d = (rng.standard_normal(n_blocks) * 0.01).astype(np.float32)
        blocks[:, 0:4] = d.view(np.uint8).reshape(n_blocks, 4)
    return blocks


def dequantize(qtype: T, raw: np.ndarray) -> np.ndarray:
    if qtype == T.Q8_K:
        d = raw[:, 0:4].copy().view(np.float32)
        q = raw[:, 4:4 + 256].copy().view(np.int8).astype(np.float32)
        return (d * q).astype(np.float32)
    return quants.dequantize(raw, qtype).astype(np.float32, copy=False)


def write_dequant_cases() -> None:
    for qtype in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K,
                  T.Q6_K, T.Q8_K]:
        raw = random_blocks(qtype)
        save(qtype, "blocks", raw)
        save(qtype, "dequant.f32", dequantize(qtype, raw))
    # F16 / BF16: every class of 16-bit pattern (zeros, subnormals, normals, inf, NaN).
    for qtype in [T.F16, T.BF16]:
        raw = rng.integers(0, 1 << 16, size=240, dtype=np.uint16)
        specials = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0x7C00, 0xFC00,
                    0x7E00, 0x7F80, 0xFF80, 0x7FC0, 0x3C00, 0x3F80, 0x0080]
        raw = np.concatenate([raw, np.array(specials, dtype=np.uint16)])
        save(qtype, "blocks", raw)
        if qtype == T.F16:
            out = raw.view(np.float16).astype(np.float32)
        else:
            out = quants.dequantize(raw.view(np.uint8), qtype)
        save(qtype, "dequant.f32", out)


def quantize_inputs(n_blocks: int, block_size: int) -> np.ndarray:
    """Gaussian blocks of varied scale, plus the corner cases the quantizers branch on."""
    x = rng.standard_normal((n_blocks, block_size)) * np.exp(rng.uniform(-4, 2, (n_blocks, 1)))
    x[0] = 0.0                                    # all zero: d = 0
    x[1] = 0.75                                   # constant positive block
    x[2, 5] = -40.0                               # one large negative outlier sets the sign of d
    x[3] = np.abs(x[3])                           # all positive (min > 0)
    return x.astype(np.float32)


def write_quantize_cases() -> None:
    for qtype in QUANTIZE_TYPES:
        block_size = GGML_QUANT_SIZES[qtype][0]
        x = quantize_inputs(8, block_size)
        save(qtype, "input.f32", x)
        save(qtype, "quant.blocks", quants.quantize(x, qtype))
    # F16: numpy's round-to-nearest-even cast, on values around every rounding edge.
    halfway = (np.arange(1, 64, dtype=np.float32) + 0.5) * np.float32(2.0 ** -24)  # subnormal ties
    edges = np.array([65504.0, 65519.0, 65520.0, 1e6, -1e6, 2.0 ** -14, 2.0 ** -25, 2.0 ** -26,
                      1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, -0.0, np.inf, -np.inf],
                     dtype=np.float32)
    x16 = np.concatenate([rng.standard_normal(128).astype(np.float32) *
                          np.exp2(rng.integers(-30, 16, 128)).astype(np.float32), halfway, edges])
    save(T.F16, "input.f32", x16)
    save(T.F16, "quant.blocks", x16.astype(np.float16))
    # BF16: gguf-py's port of ggml_compute_fp32_to_bf16 (ties to even, NaN kept quiet).
    bits = np.array([0x3F808000, 0x3F818000, 0x3F808001, 0x7F7FFFFF, 0x7F800000, 0xFF800000,
                     0x7F800001, 0xFFC00000, 0x00000001, 0x80000000, 0x007FFFFF],
                    dtype=np.uint32)
    xb = np.concatenate([rng.standard_normal(245).astype(np.float32), bits.view(np.float32)])
    save(T.BF16, "input.f32", xb)
    save(T.BF16, "quant.blocks", quants.quantize(xb, T.BF16))


def save(qtype: T, suffix: str, array: np.ndarray) -> None:
    (OUT / f"{qtype.name.lower()}.{suffix}").write_bytes(np.ascontiguousarray(array).tobytes())


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write_dequant_cases()
    write_quantize_cases()
