#!/usr/bin/env python3
"""Writes the corpus of malformed GGUF files used by tests/gguf_test.cpp and the fuzzer seeds.

Each file has exactly one defect. The manifest tests/data/gguf/malformed/expected.txt lists
`file<TAB>fragment`, where the fragment (offset included) must appear in the reader's error.
Layout follows the GGUF specification (ggml/docs/gguf.md); the bytes are built by hand here, not
with gguf-py, because most of these files cannot be produced by a correct writer.

Usage: tools/make_malformed_gguf.py [OUTPUT_DIR]   (default tests/data/gguf/malformed)
"""
import pathlib
import struct
import sys

# Value type ids (gguf_metadata_value_type) and tensor type ids (ggml_type).
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
F32, Q8_0, Q4_K = 0, 8, 12


def u32(v):
    return struct.pack("<I", v)


def u64(v):
    return struct.pack("<Q", v)


def gstr(text):
    raw = text.encode() if isinstance(text, str) else text
    return u64(len(raw)) + raw


def kv(key, vtype, payload):
    """One metadata pair: key, type id, already encoded value."""
    return gstr(key) + u32(vtype) + payload


def tensor_info(name, dims, ttype, offset, n_dims=None):
    n = len(dims) if n_dims is None else n_dims
    return gstr(name) + u32(n) + b"".join(u64(d) for d in dims) + u32(ttype) + u64(offset)


class Gguf:
    """A GGUF file built from encoded parts; records where each part starts."""

    def __init__(self, kvs=(), tensors=(), data=b"", version=3, alignment=32, magic=b"GGUF",
                 n_tensors=None, n_kv=None):
        self.header = magic + u32(version)
        self.header += u64(len(tensors) if n_tensors is None else n_tensors)
        self.header += u64(len(kvs) if n_kv is None else n_kv)
        self.kv_offsets, self.tensor_offsets = [], []
        for part in kvs:
            self.kv_offsets.append(len(self.header))
            self.header += part
        for part in tensors:
            self.tensor_offsets.append(len(self.header))
            self.header += part
        # Padding to the data section only when there is one, so that files without tensors end
        # right after their metadata (the counts in the messages then do not depend on padding).
        self.data_offset = -(-len(self.header) // alignment) * alignment if tensors else len(self.header)
        self.bytes = self.header + b"\0" * (self.data_offset - len(self.header)) + data


ARCH = kv("general.architecture", STRING, gstr("llama"))
# Two valid tensors: 'a' F32 4x2 (32 bytes at data offset 0), 'b' Q8_0 32 (34 bytes at 32).
TENSORS = [tensor_info("a", [4, 2], F32, 0), tensor_info("b", [32], Q8_0, 32)]
DATA = bytes(range(32)) + bytes(34) + bytes(30)


def valid():
    return Gguf([ARCH], TENSORS, DATA)


def nested(depth, inner=u32(UINT8) + u64(1) + b"\x07"):
    """An ARRAY value payload nested `depth` arrays deep around an array of one UINT8."""
    payload = inner
    for _ in range(depth - 1):
        payload = u32(ARRAY) + u64(1) + payload
    return payload


def cases():
    """Yields (file name, bytes, expected message fragment)."""
    base = valid()
    yield "bad_magic.gguf", b"GGUX" + base.bytes[4:], "offset 0: not a GGUF file"
    yield "empty.gguf", b"", "offset 0: truncated file: the magic needs 4 bytes, only 0 remain"
    yield "version_1.gguf", Gguf([ARCH], version=1).bytes, "offset 4: GGUF version 1 is not supported"
    yield "version_4.gguf", Gguf([ARCH], version=4).bytes, "offset 4: GGUF version 4 is not supported"
    big_endian = b"GGUF" + struct.pack(">IQQ", 3, 0, 1) + base.bytes[24:]
    yield "big_endian.gguf", big_endian, "offset 4: big-endian GGUF files are not supported"
    yield "truncated_in_counts.gguf", base.bytes[:12], "offset 8: truncated file: the tensor count needs 8 bytes, only 4 remain"

    g = Gguf([ARCH])
    key_start = g.kv_offsets[0]
    yield ("truncated_in_key.gguf", g.bytes[:key_start + 13],
           f"offset {key_start}: metadata pair 0: key of 20 bytes extends past the end")
    g = Gguf([kv("general.file_type", UINT64, u64(7))])
    value_at = g.kv_offsets[0] + 8 + len("general.file_type") + 4
    yield ("truncated_in_value.gguf", g.bytes[:value_at + 5],
           f"offset {value_at}: metadata key 'general.file_type': truncated file: the UINT64 value needs 8 bytes, only 5 remain")
    # Cut in the last field of the last tensor info (earlier cuts fail the tensor count check).
    offset_at = base.tensor_offsets[1] + 8 + 1 + 4 + 8 + 4
    yield ("truncated_in_tensor_info.gguf", base.bytes[:offset_at + 5],
           f"offset {offset_at}: tensor 'b': truncated file: the tensor data offset needs 8 bytes, only 5 remain")
    yield ("truncated_tensor_count_check.gguf", base.bytes[:base.tensor_offsets[0]],
           "offset 8: tensor count 2 exceeds what the remaining")
    end_b = base.data_offset + 32 + 34
    yield ("truncated_tensor_data.gguf", base.bytes[:end_b - 1],
           f"offset {base.tensor_offsets[1]}: tensor 'b': data [{base.data_offset + 32}, {end_b}) extends past the end of the file (size {end_b - 1})")
    g = Gguf([ARCH], TENSORS, bytes(32))
    yield ("tensor_data_missing.gguf", g.bytes,
           f"offset {g.tensor_offsets[1]}: tensor 'b': data [{g.data_offset + 32}, {g.data_offset + 66}) extends past the end")

    huge_key = u64(1 << 63) + b"general.architecture"
    g = Gguf([huge_key])
    yield "huge_string_length.gguf", g.bytes, f"offset {g.kv_offsets[0]}: metadata pair 0: key of 9223372036854775808 bytes extends past the end"
    g = Gguf([kv("tokenizer.ggml.tokens", STRING, u64(1 << 62) + b"x")])
    yield "huge_string_value.gguf", g.bytes, "metadata key 'tokenizer.ggml.tokens': string of 4611686018427387904 bytes extends past the end"
    g = Gguf([kv("x.array", ARRAY, u32(UINT32) + u64(1 << 60) + u32(1))])
    count_at = g.kv_offsets[0] + 8 + 7 + 4 + 4
    yield "huge_array_count.gguf", g.bytes, f"offset {count_at}: metadata key 'x.array': array of 1152921504606846976 UINT32 elements exceeds the remaining 4 bytes"
    g = Gguf([kv("x.strings", ARRAY, u32(STRING) + u64(3) + gstr("one") + gstr("two") + u64(99) + b"thr")])
    yield "truncated_in_array.gguf", g.bytes, "metadata key 'x.strings': string of 99 bytes extends past the end"
    yield "huge_metadata_count.gguf", Gguf([ARCH], n_kv=1 << 40).bytes, "offset 16: metadata count 1099511627776 exceeds what the remaining"
    yield "huge_tensor_count.gguf", Gguf([ARCH], n_tensors=(1 << 64) - 1).bytes, "offset 8: tensor count 18446744073709551615 exceeds what the remaining"
    g = Gguf([kv("x.unknown", 13, u32(0))])
    yield "unknown_value_type.gguf", g.bytes, f"offset {g.kv_offsets[0] + 8 + 9}: metadata key 'x.unknown': unknown value type 13"
    g = Gguf([kv("x.array", ARRAY, u32(99) + u64(1) + u32(0))])
    yield "invalid_array_element_type.gguf", g.bytes, f"offset {g.kv_offsets[0] + 8 + 7 + 4}: metadata key 'x.array': unknown value type 99"
    g = Gguf([kv("x.nested", ARRAY, u32(ARRAY) + u64(1) + u32(77) + u64(1) + b"\0")])
    yield "invalid_nested_element_type.gguf", g.bytes, f"offset {g.kv_offsets[0] + 8 + 8 + 4 + 12}: metadata key 'x.nested': unknown value type 77"
    g = Gguf([kv("x.flag", BOOL, b"\x02")])
    yield "invalid_bool.gguf", g.bytes, f"offset {g.kv_offsets[0] + 8 + 6 + 4}: metadata key 'x.flag': invalid BOOL byte 2"
    g = Gguf([kv("x.bools", ARRAY, u32(BOOL) + u64(2) + b"\x01\xff")])
    yield "invalid_bool_in_array.gguf", g.bytes, "metadata key 'x.bools': invalid BOOL byte 255"
    g = Gguf([kv("x.deep", ARRAY, nested(17))])
    yield "too_deep_nesting.gguf", g.bytes, "metadata key 'x.deep': arrays nested more than 16 deep"
    g = Gguf([ARCH, kv("general.architecture", STRING, gstr("qwen2"))])
    yield "duplicate_metadata_key.gguf", g.bytes, f"offset {g.kv_offsets[1]}: metadata key 'general.architecture': duplicate metadata key"
    for name, value, fragment in [
        ("alignment_not_power_of_two.gguf", u32(48), "general.alignment 48 is not a power of two"),
        ("alignment_zero.gguf", u32(0), "general.alignment 0 is not a power of two"),
    ]:
        g = Gguf([ARCH, kv("general.alignment", UINT32, value)])
        yield name, g.bytes, f"offset {g.kv_offsets[1]}: {fragment}"
    g = Gguf([kv("general.alignment", UINT64, u64(64))])
    yield "alignment_wrong_type.gguf", g.bytes, "offset 24: general.alignment must be UINT32, not UINT64"

    def one_tensor(info, data=bytes(64)):
        g = Gguf([ARCH], [info], data)
        return g, g.tensor_offsets[0]

    g, at = one_tensor(tensor_info("t", [4, 1, 1, 1, 1], F32, 0))
    yield "n_dims_5.gguf", g.bytes, f"offset {at + 9}: tensor 't': n_dims 5 is out of range (1 to 4)"
    g, at = one_tensor(tensor_info("t", [], F32, 0))
    yield "n_dims_0.gguf", g.bytes, f"offset {at + 9}: tensor 't': n_dims 0 is out of range (1 to 4)"
    g, at = one_tensor(tensor_info("t", [4, 0], F32, 0))
    yield "dim_zero.gguf", g.bytes, f"offset {at + 21}: tensor 't': dimension ne[1] = 0 is out of range"
    g, at = one_tensor(tensor_info("t", [1 << 63], F32, 0))
    yield "dim_over_int64.gguf", g.bytes, f"offset {at + 13}: tensor 't': dimension ne[0] = 9223372036854775808 is out of range"
    g, at = one_tensor(tensor_info("t", [1 << 32, 1 << 32], F32, 0))
    yield "element_count_overflow.gguf", g.bytes, f"offset {at}: tensor 't': element count of dims 4294967296 x 4294967296 overflows int64"
    g, at = one_tensor(tensor_info("t", [1 << 31, 1 << 31], F32, 0))
    yield "byte_size_overflow.gguf", g.bytes, f"offset {at}: tensor 't': byte size of dims 2147483648 x 2147483648 of F32 overflows int64"
    g, at = one_tensor(tensor_info("t", [100], Q4_K, 0))
    yield "row_not_block_multiple.gguf", g.bytes, f"offset {at}: tensor 't': row length ne[0] = 100 is not a multiple of the Q4_K block size 256"
    g, at = one_tensor(tensor_info("t", [4], 4, 0))
    yield "removed_tensor_type.gguf", g.bytes, f"offset {at + 21}: tensor 't': unknown tensor type 4"
    g, at = one_tensor(tensor_info("t", [4], 1000, 0))
    yield "unknown_tensor_type.gguf", g.bytes, f"offset {at + 21}: tensor 't': unknown tensor type 1000"
    g, at = one_tensor(tensor_info("t", [4], F32, 4))
    yield "unaligned_tensor_offset.gguf", g.bytes, f"offset {at}: tensor 't': data offset 4 is not a multiple of the alignment 32"
    g, at = one_tensor(tensor_info("t", [4], F32, (1 << 64) - 32))
    yield "tensor_offset_past_end.gguf", g.bytes, f"offset {at}: tensor 't': data [{g.data_offset + (1 << 64) - 32}, {g.data_offset + (1 << 64) - 16}) extends past the end of the file"

    g = Gguf([ARCH], [tensor_info("a", [4], F32, 0), tensor_info("a", [4], F32, 32)], bytes(64))
    yield "duplicate_tensor_name.gguf", g.bytes, f"offset {g.tensor_offsets[1]}: tensor 'a': duplicate tensor name"
    g = Gguf([ARCH], [tensor_info("a", [16], F32, 0), tensor_info("b", [4], F32, 32)], bytes(64))
    yield "overlapping_tensors.gguf", g.bytes, f"offset {g.tensor_offsets[1]}: tensor 'b': data [{g.data_offset + 32}, {g.data_offset + 48}) overlaps the data of tensor 'a' [{g.data_offset}, {g.data_offset + 64})"


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/gguf/malformed")
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for name, data, fragment in cases():
        (out / name).write_bytes(data)
        manifest.append(f"{name}\t{fragment}\n")
    (out / "expected.txt").write_text("".join(manifest))
    valid_dir = out.parent / "valid"
    valid_dir.mkdir(exist_ok=True)
    (valid_dir / "two_tensors.gguf").write_bytes(valid().bytes)
    print(f"wrote {len(manifest)} malformed files to {out} and {valid_dir / 'two_tensors.gguf'}")


if __name__ == "__main__":
    main()
