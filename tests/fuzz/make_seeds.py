#!/usr/bin/env python3
"""Seed corpora for the loader fuzzers: small valid safetensors and GGUF
files of a few tiny-llama-shaped tensors (not a whole model)."""
import json
import os
import struct
import sys

out = sys.argv[1]


def safetensors(tensors):
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, shape, raw in tensors:
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def gguf(tensors):
    def s(x):
        return struct.pack("<Q", len(x)) + x.encode()
    b = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 1) + s("general.alignment") + struct.pack("<II", 4, 32)
    off, blobs = 0, b""
    for name, shape, raw in tensors:
        b += s(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in reversed(shape))
        b += struct.pack("<IQ", 0, off)
        pad = raw + b"\0" * (-len(raw) % 32)
        blobs += pad
        off += len(pad)
    b += b"\0" * (-len(b) % 32)
    return b + blobs


vals = struct.pack("<256f", *[((i * 37) % 101 - 50) / 1000 for i in range(256)])
st = [("model.norm.weight", [256], vals), ("model.layers.0.input_layernorm.weight", [256], vals)]
gg = [("output_norm.weight", [256], vals), ("blk.0.attn_norm.weight", [256], vals)]
for d in ("corpus-safetensors", "corpus-gguf"):
    os.makedirs(os.path.join(out, d), exist_ok=True)
with open(os.path.join(out, "corpus-safetensors", "seed.safetensors"), "wb") as f:
    f.write(safetensors(st))
with open(os.path.join(out, "corpus-gguf", "seed.gguf"), "wb") as f:
    f.write(gguf(gg))
