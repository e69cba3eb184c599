"""Splits a GGUF file with gguf-py's GGUFWriter (split_max_tensors), the writer llama.cpp's
convert_hf_to_gguf.py uses for --split-max-tensors: the layout of published split models."""
import pathlib

import gguf


def write_split(source, out, max_tensors):
    """Writes `source`'s metadata and tensors as OUT-0000K-of-0000N.gguf parts of at most
    `max_tensors` tensors each; returns the part paths in order. Empty arrays are left out
    (GGUFWriter refuses them; the byte-level vocabulary of `apr synth` has no merges)."""
    pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
    reader = gguf.GGUFReader(source)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch=arch, split_max_tensors=max_tensors)
    for f in reader.fields.values():
        if f.name == "general.architecture" or f.name.startswith("GGUF."):
            continue  # the writer adds these itself
        main_type = f.types[0]
        sub_type = f.types[-1] if main_type == gguf.GGUFValueType.ARRAY else None
        if sub_type is not None and len(f.data) == 0:
            continue
        writer.add_key_value(f.name, f.contents(), main_type, sub_type=sub_type)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data)
    writer.close()
    out = pathlib.Path(out)
    return sorted(out.parent.glob(f"{out.stem}-*-of-*.gguf"))
