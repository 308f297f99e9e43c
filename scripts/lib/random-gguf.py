#!/usr/bin/env python3
"""Write a Llama-shaped GGUF v3 file with random Q8_0 weights, no download: the file that
scripts/bench-functional times in etchsim's functional mode and in llama.cpp (node-llama-cpp).
   python3 scripts/lib/random-gguf.py OUT.gguf [--layers N --dim N --heads N --kv-heads N --ffn N
                                                 --vocab N --seed S]
Defaults: SmolLM-135M's shape, from its published config.json
(huggingface.co/HuggingFaceTB/SmolLM-135M, commit 08113ae: LlamaForCausalLM, hidden_size 576,
num_hidden_layers 30, num_attention_heads 9, num_key_value_heads 3, intermediate_size 1536,
vocab_size 49152, rms_norm_eps 1e-5, rope_theta 10000, max_position_embeddings 2048,
tie_word_embeddings true: no output.weight, the LM head is token_embd): 134.5 M weights.

Every 2-D tensor is Q8_0 (GGUF type 8; 34 bytes per 32 weights: fp16 d, int8 q[32]; y = d q), the
RMSNorm weights F32, as llama.cpp's llama-quantize writes a Q8_0 file (it quantizes 2-D tensors only).
Codes are uniform in -127..127 from SHAKE-256 of "etchsim random-gguf SEED TENSOR" (no -128), and
element 0 of every block is +127 or -127, so each block's absmax is 127 d: an absmax Q8_0
quantizer (d = amax / 127, q = round(x / d), etchsim's and llama.cpp's) turns the decoded weights
back into the same bytes, and both programs compute with exactly these weights. d per block is
S (0.75 + 0.5 k / 255) for a random byte k, rounded to fp16, with S = 0.02 / (127 / sqrt(3)): the
weights' standard deviation is about 0.02, SmolLM's initializer_range. Norm weights are
1 + 0.2 (u - 0.5) x 2 for u a random byte / 255. The vocabulary is SentencePiece-shaped ("llama"):
<unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, then "▁t<i>" pieces with score -i.
"""
import argparse
import hashlib
import struct

Q8_0, F32 = 8, 0


def stream(seed, name, n):
    return hashlib.shake_256(f"etchsim random-gguf {seed} {name}".encode()).digest(n)


def q8_0_tensor(seed, name, n):
    """n weights (a multiple of 32) as Q8_0 blocks."""
    nb = n // 32
    r = stream(seed, name, nb * 33)
    codes, dsel = r[:nb * 32], r[nb * 32:]
    no_m128 = bytes(range(256)).replace(b"\x80", b"\x81", 1)
    codes = codes.translate(no_m128)
    first = codes[0::32].translate(bytes(0x7F if b & 1 else 0x81 for b in range(256)))
    s = 0.02 / (127 / 3 ** 0.5)
    d16 = [struct.pack("<e", s * (0.75 + 0.5 * k / 255)) for k in range(256)]
    out = bytearray(nb * 34)
    out[0::34] = dsel.translate(bytes(d[0] for d in d16))
    out[1::34] = dsel.translate(bytes(d[1] for d in d16))
    out[2::34] = first
    for j in range(1, 32):
        out[2 + j::34] = codes[j::32]
    return bytes(out)


def norm_tensor(seed, name, n):
    return struct.pack(f"<{n}f", *(1 + 0.2 * (b / 255 - 0.5) * 2 for b in stream(seed, name, n)))


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, t, raw):
    return gstr(key) + struct.pack("<I", t) + raw


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    for k, v in [("layers", 30), ("dim", 576), ("heads", 9), ("kv-heads", 3), ("ffn", 1536), ("vocab", 49152),
                 ("seed", 1)]:
        p.add_argument("--" + k, type=int, default=v)
    a = p.parse_args()
    hd = a.dim // a.heads
    if a.dim % a.heads or a.heads % a.kv_heads or a.dim % 32 or a.ffn % 32 or a.vocab < 259:
        p.error("dim must divide into heads, heads into kv-heads, dim and ffn by 32; vocab at least 259")
    u32, f32 = (lambda v: struct.pack("<I", v)), (lambda v: struct.pack("<f", v))
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"\u2581t{i}" for i in range(len(toks), a.vocab)]
    types = [2, 3, 3] + [6] * 256 + [1] * (a.vocab - 259)
    scores = [0.0] * 259 + [-float(i) for i in range(259, a.vocab)]
    arr = lambda et, items: struct.pack("<IQ", et, len(items)) + b"".join(items)
    kvs = [kv("general.architecture", 8, gstr("llama")), kv("general.name", 8, gstr("random SmolLM-135M-shaped")),
           kv("general.file_type", 4, u32(7)),  # LLAMA_FTYPE_MOSTLY_Q8_0
           kv("llama.context_length", 4, u32(2048)), kv("llama.embedding_length", 4, u32(a.dim)),
           kv("llama.block_count", 4, u32(a.layers)), kv("llama.feed_forward_length", 4, u32(a.ffn)),
           kv("llama.attention.head_count", 4, u32(a.heads)), kv("llama.attention.head_count_kv", 4, u32(a.kv_heads)),
           kv("llama.attention.layer_norm_rms_epsilon", 6, f32(1e-5)), kv("llama.rope.freq_base", 6, f32(10000.0)),
           kv("llama.rope.dimension_count", 4, u32(hd)), kv("llama.vocab_size", 4, u32(a.vocab)),
           kv("tokenizer.ggml.model", 8, gstr("llama")),
           kv("tokenizer.ggml.tokens", 9, arr(8, [gstr(t) for t in toks])),
           kv("tokenizer.ggml.scores", 9, arr(6, [f32(s) for s in scores])),
           kv("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", t) for t in types])),
           kv("tokenizer.ggml.unknown_token_id", 4, u32(0)), kv("tokenizer.ggml.bos_token_id", 4, u32(1)),
           kv("tokenizer.ggml.eos_token_id", 4, u32(2))]
    shapes = [("token_embd.weight", [a.dim, a.vocab]), ("output_norm.weight", [a.dim])]
    kvd = hd * a.kv_heads
    for i in range(a.layers):
        b = f"blk.{i}."
        shapes += [(b + "attn_norm.weight", [a.dim]), (b + "attn_q.weight", [a.dim, a.dim]),
                   (b + "attn_k.weight", [a.dim, kvd]), (b + "attn_v.weight", [a.dim, kvd]),
                   (b + "attn_output.weight", [a.dim, a.dim]), (b + "ffn_norm.weight", [a.dim]),
                   (b + "ffn_gate.weight", [a.dim, a.ffn]), (b + "ffn_up.weight", [a.dim, a.ffn]),
                   (b + "ffn_down.weight", [a.ffn, a.dim])]
    head = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(shapes), len(kvs)) + b"".join(kvs))
    off, sizes = 0, []
    for name, ne in shapes:
        n = 1
        for d in ne:
            n *= d
        t = F32 if len(ne) == 1 else Q8_0
        head += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        head += struct.pack("<IQ", t, off)
        size = n * 4 if t == F32 else n // 32 * 34
        sizes.append((name, n, t, size))
        off += size + (-size % 32)
    head += b"\0" * (-len(head) % 32)
    with open(a.out, "wb") as f:
        f.write(head)
        for name, n, t, size in sizes:
            f.write(norm_tensor(a.seed, name, n) if t == F32 else q8_0_tensor(a.seed, name, n))
            f.write(b"\0" * (-size % 32))
    total = sum(n for _, n, _, _ in sizes)
    print(f"random-gguf: wrote {a.out}: {a.layers} layers, dim {a.dim}, {a.heads}/{a.kv_heads} heads, ffn {a.ffn}, "
          f"vocab {a.vocab}, {total / 1e6:.1f} M weights, Q8_0")


if __name__ == "__main__":
    main()
