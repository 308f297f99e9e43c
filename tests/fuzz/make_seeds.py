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


def gguf_meta(kvs):
    """A GGUF file with metadata only: (key, type, packed value) entries."""
    def s(x):
        return struct.pack("<Q", len(x.encode())) + x.encode()
    b = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, t, raw in kvs:
        b += s(key) + struct.pack("<I", t) + raw
    return b


def gstr(x):
    return struct.pack("<Q", len(x.encode())) + x.encode()


def garr(t, items):
    return struct.pack("<IQ", t, len(items)) + b"".join(items)


pieces = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + \
         ["\u2581", "a", "e", "t", "\u2581a", "\u2581t", "he", "\u2581the", "on", "ce"]
types = [2, 3, 3] + [6] * 256 + [1] * 10
scores = [0.0] * 259 + [-float(i) for i in range(10)]
spm = [("general.architecture", 8, gstr("llama")),
       ("llama.block_count", 4, struct.pack("<I", 1)), ("llama.embedding_length", 4, struct.pack("<I", 8)),
       ("llama.feed_forward_length", 4, struct.pack("<I", 12)), ("llama.attention.head_count", 4, struct.pack("<I", 2)),
       ("llama.attention.head_count_kv", 4, struct.pack("<I", 1)), ("llama.context_length", 4, struct.pack("<I", 64)),
       ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5)),
       ("tokenizer.ggml.model", 8, gstr("llama")),
       ("tokenizer.ggml.tokens", 9, garr(8, [gstr(p) for p in pieces])),
       ("tokenizer.ggml.scores", 9, garr(6, [struct.pack("<f", x) for x in scores])),
       ("tokenizer.ggml.token_type", 9, garr(5, [struct.pack("<i", x) for x in types])),
       ("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1)), ("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 2))]
with open(os.path.join(out, "corpus-gguf", "llama-spm.gguf"), "wb") as f:
    f.write(gguf_meta(spm))
