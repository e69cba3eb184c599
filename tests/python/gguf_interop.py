#!/usr/bin/env python3
"""GGUF interoperability helper built on the independent gguf-py package (PyPI `gguf`).

  gguf_interop.py dump FILE    prints FILE as read by gguf-py's GGUFReader, as JSON
  gguf_interop.py write FILE   writes FILE with gguf-py's GGUFWriter (every metadata type,
                               nested arrays, several tensor types)

Driven by tests/gguf_interop_test.cpp, which compares the dump with realizar's own reading and
writing. JSON form of a value: {"type": "UINT8", "value": 7}; strings as hex of their bytes (so
invalid UTF-8 compares exactly); arrays {"type": "ARRAY", "element_type": T, "elements": [...]}.
Tensors: name, ggml type name, dims in ne order (ne[0] innermost), data as hex.
"""
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter


def typed_value(parts, index, vtype):
    """Decodes one value of `vtype` from a field's parts starting at parts[index].

    gguf-py flattens nested arrays (its FIXME), so the nesting is rebuilt here from the raw parts:
    a scalar is one part, a string two (length, bytes), an array (type, count, elements...).
    Returns (json value, index of the next part).
    """
    if vtype == GGUFValueType.STRING:
        return {"type": "STRING", "value": bytes(parts[index + 1]).hex()}, index + 2
    if vtype == GGUFValueType.ARRAY:
        element_type = GGUFValueType(int(parts[index][0]))
        count = int(parts[index + 1][0])
        index += 2
        elements = []
        for _ in range(count):
            element, index = typed_value(parts, index, element_type)
            elements.append(element)
        return {"type": "ARRAY", "element_type": element_type.name, "elements": elements}, index
    scalar = parts[index][0]
    if vtype == GGUFValueType.BOOL:
        value = bool(scalar)
    elif vtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        value = float(scalar)
    else:
        value = int(scalar)
    return {"type": vtype.name, "value": value}, index + 1


def dump(path):
    reader = GGUFReader(path)
    metadata = []
    for field in reader.fields.values():
        if field.name.startswith("GGUF."):  # the reader's pseudo-fields for the preamble
            continue
        # parts: key length, key bytes, value type, then the value's parts
        value, end = typed_value(field.parts, 3, GGUFValueType(int(field.parts[2][0])))
        assert end == len(field.parts), field.name
        metadata.append({"key": field.name, **value})
    tensors = [{
        "name": t.name,
        "type": GGMLQuantizationType(t.tensor_type).name,
        "dims": [int(d) for d in t.shape],
        "data": t.data.tobytes().hex(),
    } for t in reader.tensors]
    version = int(reader.fields["GGUF.version"].parts[0][0])
    return {"version": version, "alignment": int(reader.alignment), "metadata": metadata,
            "tensors": tensors}


def write(path):
    writer = GGUFWriter(path, arch="llama")
    writer.add_uint8("t.uint8", 255)
    writer.add_int8("t.int8", -128)
    writer.add_uint16("t.uint16", 65535)
    writer.add_int16("t.int16", -32768)
    writer.add_uint32("t.uint32", 4294967295)
    writer.add_int32("t.int32", -2147483648)
    writer.add_float32("t.float32", 1.5e-7)
    writer.add_bool("t.bool", True)
    writer.add_string("t.string", "héllo ▁wörld 🙂")
    writer.add_uint64("t.uint64", 2**64 - 1)
    writer.add_int64("t.int64", -2**63)
    writer.add_float64("t.float64", -2.718281828459045)
    writer.add_array("t.array.string", ["<s>", "", "▁the"])
    writer.add_array("t.array.int32", [-1, 0, 1])
    writer.add_array("t.array.float32", [0.5, -1.25])
    writer.add_array("t.array.bool", [True, False])
    writer.add_key_value("t.array.uint16", [1, 65535], GGUFValueType.ARRAY, GGUFValueType.UINT16)
    writer.add_key_value("t.array.float64", [1e-300], GGUFValueType.ARRAY, GGUFValueType.FLOAT64)
    writer.add_array("t.array.nested", [[1, 2], [3]])
    writer.add_custom_alignment(64)  # sets the key and the padding (add_uint32 would set only the key)
    rng = np.random.default_rng(7)
    writer.add_tensor("f32", rng.standard_normal((3, 5), dtype=np.float32))  # ne = [5, 3]
    writer.add_tensor("f16", rng.standard_normal((7,)).astype(np.float16))
    # Quantized tensors as raw bytes: numpy shape (rows, bytes per row), ne = [elements per row, rows]
    q8_0 = rng.integers(0, 256, size=(2, 2 * 34), dtype=np.uint8)
    writer.add_tensor("q8_0", q8_0, raw_dtype=GGMLQuantizationType.Q8_0)
    q4_k = rng.integers(0, 256, size=(3, 144), dtype=np.uint8)
    writer.add_tensor("q4_k", q4_k, raw_dtype=GGMLQuantizationType.Q4_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    command, path = sys.argv[1], sys.argv[2]
    if command == "dump":
        json.dump(dump(path), sys.stdout)
    elif command == "write":
        write(path)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
